"""An ETL worker on Bulk API 2.0: query Accounts, transform them, upsert the copies.

Extract: one Bulk query job streams ``SELECT Id, Name, Industry FROM Account`` (its pages parsed
as they download). Transform: each Account becomes an ``Account_Copy__c`` record keyed by
``Source_Id__c`` (the Account's id). Load: one Bulk upsert by that external id, fed by the
transform as it goes (records are encoded and gzipped as they come, so memory stays flat).
Salesforce's refusals come back as a failed-records report (``--failed-records FILE``, CSV with
``sf__Error`` and the columns sent). All of it runs through one ``AuthSession``: one login, one
shared refresh when the session expires, retries of transient answers while the jobs run.

Usage::

    python examples/etl_worker.py              # against an embedded emulator (the default)
    python examples/etl_worker.py --from-env   # against a real org, see settings_from_env()

The demo mode starts the sfauth emulator with ``--accounts`` Accounts, ``--invalid`` of them with
a name too long for the copy (81 characters; ``Name`` of ``Account_Copy__c`` holds 80), injects
transient faults into ``--fault-rate`` of the job polls, uploads and result downloads, and
expires every session twice: once the query job is done and once the upsert job is. It then
checks that every valid Account has exactly one copy and that the failed records are exactly the
invalid ones.

The exit status is 0 when every record was loaded (in the demo: when the failures are exactly
the planted ones), 1 otherwise, 2 for bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfauth import (
    AuthSession,
    BulkProgress,
    ConfigurationError,
    RetryPolicy,
    SFAuthError,
    settings_from_env,
)
from sfauth.testing import Emulator

SOQL = "SELECT Id, Name, Industry FROM Account"
TARGET = "Account_Copy__c"
EXTERNAL_ID = "Source_Id__c"
INDUSTRIES = ("Technology", "Finance", "Healthcare", None)
#: Emulator endpoints that get injected faults in the demo: what the session may resend. Job
#: creation is a POST sfauth never resends, and the token endpoint stays clean so that the
#: token request count is exact: one login plus one refresh per expiry.
FAULTED_ENDPOINTS = (
    "bulk_query_info",
    "bulk_query_results",
    "bulk_ingest_upload",
    "bulk_ingest_info",
    "bulk_ingest_results",
)


@dataclass
class Summary:
    """What one run did."""

    read: int = 0
    created: int = 0
    updated: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    jobs: int = 0
    token_requests: int = 0


def transform(account: dict[str, str | None]) -> dict[str, str | None]:
    """One Account (a Bulk query row) as its ``Account_Copy__c`` record.

    Args:
        account: ``{"Id", "Name", "Industry"}``; ``None`` for a null field.

    Returns:
        The copy: ``Source_Id__c`` (the external id), ``Name`` and ``Industry__c`` (``None``
        sets null).
    """
    return {
        EXTERNAL_ID: account["Id"],
        "Name": account["Name"],
        "Industry__c": account["Industry"],
    }


async def copy_accounts(
    sf: AuthSession,
    *,
    failed_records: Path | None = None,
    on_progress: Callable[[BulkProgress], None] | None = None,
    poll_interval: float = 0.5,
) -> Summary:
    """Bulk-query every Account, transform it, and bulk-upsert the copies.

    Args:
        sf: An open session.
        failed_records: A new CSV file for the records Salesforce refused (``sf__Error`` and
            the columns sent), or ``None``.
        on_progress: Called with each job's progress (query and upsert).
        poll_interval: Seconds before a job's first poll (it grows from there).

    Returns:
        The run's summary (``token_requests`` is filled in by the caller).
    """
    summary = Summary()

    async def copies() -> AsyncIterator[dict[str, str | None]]:
        query = sf.bulk.query(SOQL, poll_interval=poll_interval, progress=on_progress)
        async for account in query:
            summary.read += 1
            yield transform(account)

    result = await sf.bulk.upsert(
        TARGET, EXTERNAL_ID, copies(), poll_interval=poll_interval, progress=on_progress
    )
    summary.jobs = 1 + len(result.jobs)
    async for row in result.successful_records():
        if row["sf__Created"] == "true":
            summary.created += 1
        else:
            summary.updated += 1
    writer: Any = None
    # (a blocking open of a new, empty file: cheap enough for an example)
    report = open(failed_records, "x", newline="") if failed_records else None  # noqa: SIM115, ASYNC230
    with report if report is not None else contextlib.nullcontext() as out:
        async for row in result.failed_records():
            summary.failed.append(row)
            if out is not None:
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
                    writer.writeheader()
                writer.writerow(row)
    return summary


def print_summary(summary: Summary, failed_records: Path | None) -> None:
    """Print the run's numbers, one per line, and the first failures.

    Args:
        summary: The run's summary.
        failed_records: Where the failed records were written, if anywhere.
    """
    loaded = summary.created + summary.updated
    print(f"records read:    {summary.read}")
    print(f"upserted:        {loaded} (created {summary.created}, updated {summary.updated})")
    print(f"failed:          {len(summary.failed)}")
    for row in summary.failed[:3]:
        print(f"  {row[EXTERNAL_ID]}: {row['sf__Error']}")
    if len(summary.failed) > 3:
        print(f"  ... and {len(summary.failed) - 3} more")
    if failed_records is not None and summary.failed:
        print(f"failed records:  written to {failed_records}")
    print(f"bulk jobs:       {summary.jobs}")
    print(f"token requests:  {summary.token_requests}")


async def run_demo(args: argparse.Namespace) -> int:
    """Run against an embedded emulator with faults and two session expiries.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """
    async with Emulator(default_accounts=0, record_requests=False) as emu:
        # The target object, as an admin would create it in the org.
        emu.schema.add_object("Account_Copy__c", {"Industry__c": "string"})
        emu.schema.add_field(
            "Account_Copy__c", EXTERNAL_ID, "string", external_id=True, unique=True
        )
        # Accounts; the planted ones have a name fine for an Account (255 characters) but too
        # long for a copy (80).
        step = max(1, args.accounts // args.invalid) if args.invalid else 0
        planted_at = set(range(0, args.accounts, step)[: args.invalid]) if step else set()
        accounts = emu.seed(
            "Account",
            (
                {
                    "Name": "N" * 81 if n in planted_at else f"Account {n:05d}",
                    "Industry": INDUSTRIES[n % len(INDUSTRIES)],
                }
                for n in range(args.accounts)
            ),
        )
        planted = {accounts[n] for n in planted_at}
        creds = emu.create_credentials()
        print(
            f"etl_worker: Salesforce emulator at {emu.url} with {args.accounts} Accounts "
            f"({len(planted)} with a name too long for a copy); {args.fault_rate:.0%} of job "
            "polls, uploads and downloads get a transient fault; every session expires when "
            "each job is done"
        )
        if args.fault_rate > 0:
            emu.inject_faults(args.fault_rate, seed=args.seed, endpoints=FAULTED_ENDPOINTS)
        expired: set[str] = set()

        def expire_when_done(progress: BulkProgress) -> None:
            if progress.state == "JobComplete" and progress.job_id not in expired:
                expired.add(progress.job_id)  # the next request meets an expired session
                emu.expire_all_sessions()

        async with AuthSession(
            client_id=creds.client_id,
            username=creds.username,
            private_key=creds.private_key_pem,
            login_url=emu.url,
            allow_http_loopback=True,
            # Short backoff for the demo; keep the default RetryPolicy() against a real org.
            retry=RetryPolicy(backoff_base=0.01, backoff_cap=0.1),
        ) as sf:
            started = time.perf_counter()
            summary = await copy_accounts(
                sf,
                failed_records=args.failed_records,
                on_progress=expire_when_done,
                poll_interval=0.01,  # the emulator runs jobs at once
            )
            wall = time.perf_counter() - started
            summary.token_requests = sf.token_requests

        print()
        print_summary(summary, args.failed_records)
        print(f"faults injected: {sum(emu.faults_injected.values())} (retried by sfauth)")
        sources = [str(r[EXTERNAL_ID]) for r in emu.records(TARGET)]
        valid = set(accounts) - planted
        copied = set(sources) == valid and len(sources) == len(valid)
        reported = {row[EXTERNAL_ID] for row in summary.failed} == planted
        print(
            f"verified:        {len(sources)} {TARGET} records, "
            + ("one per valid Account" if copied else "NOT one per valid Account")
            + ("" if not planted else "; failed: the planted ones" if reported else "")
            + ("" if reported else "; UNEXPECTED failures")
        )
        print(f"wall time:       {wall:.2f} s ({summary.read / wall:,.0f} records/s)")
    return 0 if copied and reported and summary.read == args.accounts else 1


async def run_from_env(args: argparse.Namespace) -> int:
    """Run against the org configured by ``SF_*`` environment variables.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """
    async with AuthSession(**settings_from_env()) as sf:
        token = await sf.token()
        print(f"etl_worker: {token.instance_url} as {sf.auth.config.username}")
        started = time.perf_counter()
        summary = await copy_accounts(sf, failed_records=args.failed_records)
        wall = time.perf_counter() - started
        summary.token_requests = sf.token_requests
    print()
    print_summary(summary, args.failed_records)
    print(f"wall time:       {wall:.2f} s")
    return 0 if not summary.failed else 1


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _new_file(text: str) -> Path:
    path = Path(text)
    if path.exists():
        raise argparse.ArgumentTypeError(f"{text} exists; name a new file")
    return path


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the worker.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The exit status: 0 when every record was loaded, 1 when anything failed, 2 for bad
        settings.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument(
        "--from-env", action="store_true", help="use the org configured by SF_* variables"
    )
    parser.add_argument(
        "--failed-records",
        type=_new_file,
        metavar="FILE",
        help="write the records Salesforce refused to this new CSV file",
    )
    demo = parser.add_argument_group("demo mode (embedded emulator)")
    demo.add_argument("--accounts", type=_positive, default=10_000, help="default 10000")
    demo.add_argument(
        "--invalid", type=_count, default=3, help="Accounts planted to fail (default 3)"
    )
    demo.add_argument("--fault-rate", type=_rate, default=0.2, help="default 0.2")
    demo.add_argument("--seed", type=int, default=1, help="fault seed (default 1)")
    args = parser.parse_args(argv)
    if args.invalid > args.accounts:
        parser.error("--invalid must not exceed --accounts")
    try:
        return asyncio.run(run_from_env(args) if args.from_env else run_demo(args))
    except ConfigurationError as exc:
        print(f"etl_worker: error: {exc}", file=sys.stderr)
        return 2
    except SFAuthError as exc:  # e.g. the login itself failed, or a job failed
        print(f"etl_worker: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
