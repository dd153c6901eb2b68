"""One worker process of a fleet sharing a token through Redis (used by tests and benchmarks).

Runs ``--requests`` concurrent queries per phase through one AuthSession with a
RedisTokenStore; after each phase prints one JSON line and, if more phases follow, waits for a
line on stdin before starting the next one (so a driver can act between phases).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys

import aiohttp

from sfauth import AuthSession, RetryPolicy, SFAuthError
from sfauth.stores import RedisTokenStore

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}


async def run(args: argparse.Namespace) -> None:
    store_kwargs: dict[str, object] = {"prefix": args.prefix, "lock_ttl": args.lock_ttl}
    store = None if args.no_store else RedisTokenStore(args.redis, **store_kwargs)  # type: ignore[arg-type]
    async with AuthSession(
        client_id=args.client_id,
        username=args.username,
        private_key=args.key_file,
        login_url=args.login_url,
        allow_http_loopback=True,
        limit=args.requests,
        token_store=store,
        refresh_timeout=args.refresh_timeout,
        refusal_cooldown=args.refusal_cooldown,
        fleet_limit=args.fleet_limit,
        lease_ttl=args.lease_ttl,
        retry=RetryPolicy(attempts=3, backoff_base=0.01, backoff_cap=0.05),
    ) as sf:
        loop = asyncio.get_running_loop()
        for phase in range(args.phases):
            failed: collections.Counter[str] = collections.Counter()
            ok = unsent = 0

            async def one(failed: collections.Counter[str] = failed) -> None:
                nonlocal ok, unsent
                try:
                    request = sf.get(QUERY, params=SOQL, long_running=args.long_running)
                    async with request as resp:
                        if resp.status == 200:
                            ok += 1
                        else:
                            failed[f"HTTP {resp.status}"] += 1
                except (SFAuthError, aiohttp.ClientError) as exc:
                    failed[type(exc).__name__] += 1
                    unsent += getattr(exc, "sent", True) is False  # refused before sending

            await asyncio.gather(*(one() for _ in range(args.requests)))
            line = {
                "phase": phase,
                "ok": ok,
                "failed": dict(failed),
                "unsent": unsent,
                "token_requests": sf.token_requests,
            }
            print(json.dumps(line), flush=True)
            if phase + 1 < args.phases:
                await loop.run_in_executor(None, sys.stdin.readline)
    if store is not None:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--login-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--requests", type=int, default=250)
    parser.add_argument("--phases", type=int, default=1)
    parser.add_argument("--lock-ttl", type=float, default=15.0)
    parser.add_argument("--refresh-timeout", type=float, default=30.0)
    parser.add_argument("--refusal-cooldown", type=float, default=300.0)
    parser.add_argument("--no-store", action="store_true")
    parser.add_argument("--fleet-limit", type=int, default=None)
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--long-running", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
