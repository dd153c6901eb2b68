"""An async ETL worker: copy every Account into Account_Copy__c, upserting by external id.

One reader pages ``SELECT Id, Name, Industry FROM Account`` with ``sf.query()`` (the next page
is fetched only when the workers have taken the previous one); ``--concurrency`` worker tasks
upsert each record with ``PATCH /services/data/vXX.X/sobjects/Account_Copy__c/Source_Id__c/{Id}``
(``idempotent=True``: an upsert by external id is safe to resend, so sfauth retries it after
transient failures). All of it runs through one ``AuthSession``: one login, one shared refresh
when the session expires.

Usage::

    python examples/etl_worker.py              # against an embedded emulator (the default)
    python examples/etl_worker.py --from-env   # against a real org, see settings_from_env()

The demo mode starts the sfauth emulator with ``--accounts`` Accounts, injects transient faults
(503, 502 pages, 429, the concurrent-request limit, slow answers) into ``--fault-rate`` of the
query and upsert requests, and expires every session once half of the records are upserted.
It then checks that every Account has exactly one copy.

The summary lists records read, upserted (created/updated), failed and token requests. The exit
status is 0 only when nothing failed; 1 otherwise; 2 for bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from sfauth import AuthSession, ConfigurationError, RetryPolicy, SFAuthError, settings_from_env
from sfauth.testing import Emulator

SOQL = "SELECT Id, Name, Industry FROM Account"
TARGET = "Account_Copy__c"
EXTERNAL_ID = "Source_Id__c"
#: Emulator endpoints that get injected faults in the demo (the token endpoint does not, so
#: the token request count stays exact: one login plus one refresh after the expiry).
FAULTED_ENDPOINTS = ("query", "query_more", "sobject_upsert")


@dataclass
class Summary:
    """What one run did."""

    read: int = 0
    created: int = 0
    updated: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    query_error: str | None = None
    token_requests: int = 0

    @property
    def upserted(self) -> int:
        """Records created or updated."""
        return self.created + self.updated

    @property
    def failed(self) -> int:
        """Records that could not be upserted."""
        return sum(self.failures.values())

    @property
    def done(self) -> int:
        """Records handled so far, upserted or failed."""
        return self.upserted + self.failed


async def upsert(sf: AuthSession, version: str, record: dict[str, Any], summary: Summary) -> None:
    """Upsert one Account into ``Account_Copy__c`` by ``Source_Id__c``; count the outcome.

    Args:
        sf: The session.
        version: REST API version, e.g. ``"62.0"``.
        record: An Account from the query.
        summary: Where the outcome is counted.
    """
    path = (
        f"/services/data/v{version}/sobjects/{TARGET}/{EXTERNAL_ID}/"
        f"{quote(str(record['Id']), safe='')}"
    )
    body = {"Name": record["Name"], "Industry__c": record["Industry"]}
    try:
        async with sf.patch(path, json=body, idempotent=True) as resp:
            if resp.status == 201:
                summary.created += 1
            elif resp.status in (200, 204):
                summary.updated += 1
            else:
                summary.failures[f"HTTP {resp.status}{_error_code(await resp.read())}"] += 1
    except SFAuthError as exc:  # retries exhausted, or an error retrying would not fix
        code = getattr(exc, "error_code", None)
        summary.failures[type(exc).__name__ + (f" {code}" if code else "")] += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        summary.failures[type(exc).__name__] += 1


def _error_code(body: bytes) -> str:
    """`` ERROR_CODE`` from a Salesforce error body, or ``""``."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return f" {data[0].get('errorCode', '')}".rstrip()
    return ""


async def copy_accounts(
    sf: AuthSession,
    *,
    concurrency: int,
    batch_size: int,
    on_progress: Callable[[Summary], None] | None = None,
) -> Summary:
    """Read every Account and upsert it into ``Account_Copy__c`` with bounded concurrency.

    Args:
        sf: An open session.
        concurrency: Number of worker tasks, i.e. upserts in flight at most.
        batch_size: Records per query page (200 to 2000).
        on_progress: Called after every upsert with the running summary.

    Returns:
        The summary of the run (``token_requests`` is filled in by the caller).
    """
    summary = Summary()
    version = await sf.api_version_resolved()
    # Bounded: the reader waits (and so does the next page) while the workers are busy.
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=concurrency)

    async def read() -> None:
        try:
            async for record in sf.query(SOQL, batch_size=batch_size):
                summary.read += 1
                await queue.put(record)
        except SFAuthError as exc:
            summary.query_error = f"{type(exc).__name__}: {exc}"
        finally:
            for _ in range(concurrency):
                await queue.put(None)  # one stop signal per worker

    async def work() -> None:
        while (record := await queue.get()) is not None:
            await upsert(sf, version, record, summary)
            if on_progress is not None:
                on_progress(summary)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(read())
        for _ in range(concurrency):
            tasks.create_task(work())
    return summary


def print_summary(summary: Summary) -> None:
    """Print the run's numbers, one per line.

    Args:
        summary: The run's summary.
    """
    print(f"records read:    {summary.read}")
    print(
        f"upserted:        {summary.upserted} "
        f"(created {summary.created}, updated {summary.updated})"
    )
    print(f"failed:          {summary.failed}")
    for reason, count in sorted(summary.failures.items()):
        print(f"  {reason}: {count}")
    if summary.query_error is not None:
        print(f"query failed:    {summary.query_error}")
    print(f"token requests:  {summary.token_requests}")


def print_wall_time(summary: Summary, wall: float) -> None:
    """Print the wall time and throughput.

    Args:
        summary: The run's summary.
        wall: Wall time of the run, seconds.
    """
    rate = summary.done / wall if wall > 0 else 0.0
    print(f"wall time:       {wall:.2f} s ({rate:,.0f} records/s)")


def succeeded(summary: Summary) -> bool:
    """Whether the run read something and every record read was upserted.

    Args:
        summary: The run's summary.

    Returns:
        ``True`` when nothing failed.
    """
    return summary.query_error is None and summary.failed == 0 and summary.upserted == summary.read


async def run_demo(args: argparse.Namespace) -> int:
    """Run against an embedded emulator with faults and a mid-run session expiry.

    Args:
        args: The parsed command line.

    Returns:
        The exit status.
    """
    async with Emulator(default_accounts=args.accounts) as emu:
        # The target object, as an admin would create it in the org (an external id field
        # makes the PATCH .../Source_Id__c/{Id} upserts possible).
        emu.schema.add_object("Account_Copy__c", {"Industry__c": "string"})
        emu.schema.add_field("Account_Copy__c", "Source_Id__c", "string", external_id=True)
        creds = emu.create_credentials()
        print(
            f"etl_worker: Salesforce emulator at {emu.url} with {args.accounts} Accounts; "
            f"{args.fault_rate:.0%} of query/upsert requests get a transient fault; every "
            "session expires halfway"
        )
        if args.fault_rate > 0:
            emu.inject_faults(args.fault_rate, seed=args.seed, endpoints=FAULTED_ENDPOINTS)
        expired = False

        def expire_halfway(summary: Summary) -> None:
            nonlocal expired
            if not expired and summary.done >= args.accounts // 2:
                expired = True
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
                concurrency=args.concurrency,
                batch_size=args.batch_size,
                on_progress=expire_halfway,
            )
            wall = time.perf_counter() - started
            summary.token_requests = sf.token_requests

        print()
        print_summary(summary)
        faults = sum(emu.faults_injected.values())
        replays = sum(n for (_, status), n in emu.counters.items() if status == 401)
        print(f"faults injected: {faults} (retried by sfauth)")
        print(f"401 replays:     {replays} (requests sent with the expired session)")
        sources = collections.Counter(str(r.get(EXTERNAL_ID)) for r in emu.records(TARGET))
        accounts = {str(r["Id"]) for r in emu.records("Account")}
        verified = set(sources) == accounts and all(n == 1 for n in sources.values())
        print(
            f"verified:        {len(sources)} {TARGET} records, "
            + ("one per Account" if verified else "NOT one per Account")
        )
        print_wall_time(summary, wall)
    return 0 if succeeded(summary) and verified and summary.read == args.accounts else 1


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
        summary = await copy_accounts(sf, concurrency=args.concurrency, batch_size=args.batch_size)
        wall = time.perf_counter() - started
        summary.token_requests = sf.token_requests
    print()
    print_summary(summary)
    print_wall_time(summary, wall)
    return 0 if succeeded(summary) else 1


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _batch_size(text: str) -> int:
    value = int(text)
    if not 200 <= value <= 2000:
        raise argparse.ArgumentTypeError(f"must be from 200 to 2000, got {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the worker.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The exit status: 0 when every record was upserted, 1 when anything failed, 2 for bad
        settings.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument(
        "--from-env", action="store_true", help="use the org configured by SF_* variables"
    )
    parser.add_argument("--concurrency", type=_positive, default=20, help="default 20")
    parser.add_argument(
        "--batch-size", type=_batch_size, default=200, help="query page size (default 200)"
    )
    demo = parser.add_argument_group("demo mode (embedded emulator)")
    demo.add_argument("--accounts", type=_positive, default=1000, help="default 1000")
    demo.add_argument("--fault-rate", type=_rate, default=0.05, help="default 0.05")
    demo.add_argument("--seed", type=int, default=1, help="fault seed (default 1)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run_from_env(args) if args.from_env else run_demo(args))
    except ConfigurationError as exc:
        print(f"etl_worker: error: {exc}", file=sys.stderr)
        return 2
    except SFAuthError as exc:  # e.g. the login itself failed
        print(f"etl_worker: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
