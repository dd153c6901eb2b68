"""An ETL spread over the workers of a Dask cluster, all sharing one org through Redis.

The driver splits the source records into chunks; each chunk is a Dask task that opens an
``AuthSession`` on a ``RedisTokenStore`` and upserts its records by external id
(``PATCH /services/data/vXX.X/sobjects/Account/External_Id__c/{value}``, ``idempotent=True``).
Through the store every task of every worker process shares:

- **one token**: the first task logs in, every other adopts its token (one login in all);
- **one refusal memory**: if Salesforce refuses the login (``invalid_grant``...), one token
  request is sent for the whole fleet and every other task gets the same error unsent;
- **one concurrency limit**: with ``--fleet-limit N`` the org never sees more than N of the
  fleet's requests at once (``fleet_limit_scope="all"``; mark only long-running requests with
  ``long_running=True`` in your own code).

Secrets never travel through the scheduler: each worker reads the integration from its own
environment (``SF_CLIENT_ID``, ``SF_USERNAME``, ``SF_JWT_KEY_FILE``, ``SF_LOGIN_URL``... see
``settings_from_env``), Redis from ``SF_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and
the token's encryption key from ``SFAUTH_REDIS_ENCRYPTION_KEY``.

Usage::

    python examples/dask_etl.py                       # demo: embedded emulator, 4 local workers
    python examples/dask_etl.py --from-env            # your org, 4 local workers
    python examples/dask_etl.py --from-env --scheduler tcp://scheduler:8786

The demo starts the sfauth emulator in this process (the workers reach it over loopback),
points ``SF_*`` at it, starts a ``LocalCluster`` of ``--workers`` processes and checks after the
run that every record arrived once, with one login. It prints one JSON summary; the exit status
is 0 only when every record was upserted, 1 otherwise, 2 for bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sfauth import AuthSession, ConfigurationError, SFAuthError
from sfauth.stores import RedisTokenStore

API_VERSION = "62.0"
REDIS_URL = "redis://127.0.0.1:6379/0"
UPSERT = f"/services/data/v{API_VERSION}/sobjects/Account/External_Id__c/{{}}"


def load_chunk(records: list[dict[str, str]], options: dict[str, Any]) -> dict[str, Any]:
    """One Dask task: upsert ``records`` into the org; runs in a worker process.

    Args:
        records: ``{"External_Id__c": ..., "Name": ...}`` rows.
        options: Non-secret settings from the driver: ``prefix`` (Redis key prefix),
            ``fleet_limit`` (or ``None``), ``concurrency`` (requests at once in this task).

    Returns:
        ``{"worker": pid, "upserted": n, "created": n, "failed": {reason: n},
        "token_requests": n}``.
    """
    return asyncio.run(_load_chunk(records, options))


async def _load_chunk(records: list[dict[str, str]], options: dict[str, Any]) -> dict[str, Any]:
    failed: collections.Counter[str] = collections.Counter()
    upserted = created = 0
    redis_url = os.environ.get("SF_REDIS_URL", REDIS_URL)
    async with (
        RedisTokenStore(redis_url, prefix=options["prefix"]) as store,
        AuthSession.from_env(
            token_store=store,
            api_version=API_VERSION,
            fleet_limit=options["fleet_limit"],
            fleet_limit_scope="all",
        ) as sf,
    ):
        slots = asyncio.Semaphore(options["concurrency"])

        async def upsert(record: dict[str, str]) -> None:
            nonlocal upserted, created
            fields = {k: v for k, v in record.items() if k != "External_Id__c"}
            path = UPSERT.format(record["External_Id__c"])
            async with slots:
                try:
                    async with sf.patch(path, json=fields, idempotent=True) as resp:
                        body = await resp.json() if resp.status in (200, 201) else None
                        if body is None:
                            failed[f"HTTP {resp.status}"] += 1
                            return
                except SFAuthError as exc:
                    failed[type(exc).__name__] += 1
                    return
            upserted += 1
            created += bool(body.get("created"))

        await asyncio.gather(*(upsert(record) for record in records))
        token_requests = sf.token_requests
    return {
        "worker": os.getpid(),
        "upserted": upserted,
        "created": created,
        "failed": dict(failed),
        "token_requests": token_requests,
    }


async def run_fleet(
    records: list[dict[str, str]],
    *,
    chunk_size: int,
    workers: int,
    scheduler: str | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Run every chunk as a Dask task and add up what the tasks report."""
    from dask.distributed import Client, LocalCluster

    chunks = [records[i : i + chunk_size] for i in range(0, len(records), chunk_size)]
    if scheduler is not None:
        cluster = None
        client = await Client(scheduler, asynchronous=True)
    else:
        cluster = await LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            asynchronous=True,
            dashboard_address=None,
        )
        client = await Client(cluster, asynchronous=True)
    try:
        futures = client.map(load_chunk, chunks, options=options, pure=False)
        results: list[dict[str, Any]] = await client.gather(futures)
    finally:
        await client.close()
        if cluster is not None:
            await cluster.close()
    failed: collections.Counter[str] = collections.Counter()
    for result in results:
        failed.update(result["failed"])
    return {
        "records": len(records),
        "chunks": len(chunks),
        "workers": len({r["worker"] for r in results}),
        "upserted": sum(r["upserted"] for r in results),
        "created": sum(r["created"] for r in results),
        "failed": dict(failed),
        "token_requests": sum(r["token_requests"] for r in results),
    }


def source_records(count: int) -> list[dict[str, str]]:
    """The rows an ETL would read from its source: here, made up."""
    return [{"External_Id__c": f"EXT-{i:06d}", "Name": f"Customer {i}"} for i in range(count)]


async def demo(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    """The fleet against an embedded emulator, then the emulator's view of what happened."""
    from cryptography.fernet import Fernet

    from sfauth.testing import Emulator

    async with Emulator(default_accounts=0) as emulator:
        # Account's external id, as an admin would add it in the org.
        emulator.schema.add_field(
            "Account", "External_Id__c", "string", external_id=True, unique=True
        )
        emulator.response_delay = 0.002  # answers take a moment, as an org's do
        creds = emulator.create_credentials()
        with tempfile.TemporaryDirectory() as tmp:
            key_file = creds.write_private_key(Path(tmp) / "key.pem")
            # The workers inherit these; nothing secret goes through the scheduler.
            os.environ.update(
                SF_CLIENT_ID=creds.client_id,
                SF_USERNAME=creds.username,
                SF_JWT_KEY_FILE=str(key_file),
                SF_LOGIN_URL=emulator.url,
                SF_ALLOW_HTTP_LOOPBACK="true",
                SFAUTH_REDIS_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            )
            try:
                summary = await run_fleet(
                    source_records(args.records),
                    chunk_size=args.chunk_size,
                    workers=args.workers,
                    scheduler=None,
                    options=options,
                )
            finally:
                await _forget(options["prefix"])
        stored = {r["External_Id__c"] for r in emulator.records("Account")}
        summary["emulator"] = {
            "token_requests": emulator.token_request_count,
            "accounts": len(emulator.records("Account")),
            "distinct_external_ids": len(stored),
            "peak_in_flight": emulator.peak_in_flight,
        }
    return summary


async def _forget(prefix: str) -> None:
    """Delete what the demo's fleet left in Redis under its own prefix."""
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.Redis.from_url(os.environ.get("SF_REDIS_URL", REDIS_URL))
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the fleet, print the summary; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="default 2000")
    parser.add_argument("--chunk-size", type=int, default=100, help="records per task")
    parser.add_argument("--workers", type=int, default=4, help="local worker processes")
    parser.add_argument("--concurrency", type=int, default=10, help="requests at once per task")
    parser.add_argument(
        "--fleet-limit", type=int, default=8, help="requests in flight fleet-wide (default 8)"
    )
    parser.add_argument("--scheduler", default=None, help="tcp://host:8786 of a running cluster")
    parser.add_argument(
        "--from-env", action="store_true", help="use SF_* and SF_REDIS_URL, not the emulator"
    )
    parser.add_argument(
        "--prefix",
        default=None,
        help="Redis key prefix (default: sfauth: with --from-env, so runs share the token; "
        "a fresh one per demo run, deleted after it)",
    )
    args = parser.parse_args(argv)
    for name in ("records", "chunk_size", "workers", "concurrency", "fleet_limit"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.scheduler is not None and not args.from_env:
        parser.error("--scheduler needs --from-env (remote workers cannot reach the demo)")
    try:
        import dask.distributed  # noqa: F401
        import redis  # noqa: F401
    except ImportError as exc:
        print(
            f"dask_etl: error: {exc.name} is not installed: pip install distributed redis "
            "(make test installs both into .venv)",
            file=sys.stderr,
        )
        return 2
    options = {
        "prefix": args.prefix
        or ("sfauth:" if args.from_env else f"sfauth-dask-{uuid.uuid4().hex[:8]}:"),
        "fleet_limit": args.fleet_limit,
        "concurrency": args.concurrency,
    }
    try:
        if args.from_env:
            summary = asyncio.run(
                run_fleet(
                    source_records(args.records),
                    chunk_size=args.chunk_size,
                    workers=args.workers,
                    scheduler=args.scheduler,
                    options=options,
                )
            )
        else:
            summary = asyncio.run(demo(args, options))
    except ConfigurationError as exc:
        print(f"dask_etl: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0 if summary["upserted"] == summary["records"] else 1


if __name__ == "__main__":
    sys.exit(main())
