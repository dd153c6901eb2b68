"""Soak: many requests through one AuthSession while the emulator misbehaves.

Run with ``make soak`` (or ``python -m benchmarks.soak --help``). The emulator injects seeded
random transient faults (503, 502 HTML pages, 429, the concurrent-request limit, resets,
truncated JSON, slow answers, token-endpoint ``unknown_error``), expires every session several
times and revokes the token once, while a fixed number of requests stay in flight. The summary
counts what happened; the run passes when no request failed and every expiry or revocation cost
exactly one login.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from sfauth import AuthSession, SFAuthError
from sfauth.testing import Emulator

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id, Name FROM Account LIMIT 3"}


@dataclass
class SoakResult:
    requests: int
    ok: int
    failed: dict[str, int]
    faults: dict[str, int]
    served: int
    retries: int
    replays: int
    token_requests: int
    logins: int
    expiries: int
    revocations: int
    seconds: float

    @property
    def passed(self) -> bool:
        return (
            not self.failed
            and self.ok == self.requests
            and self.logins == 1 + self.expiries + self.revocations
        )

    def report(self) -> str:
        failed = sum(self.failed.values())
        lines = [
            f"requests:        {self.requests} in {self.seconds:.1f} s "
            f"({self.requests / self.seconds:,.0f} requests/s)",
            f"requests ok:     {self.ok}",
            f"requests failed: {failed}",
            *(f"  {k}: {v}" for k, v in sorted(self.failed.items())),
            f"faults injected: {sum(self.faults.values())} of {self.served} requests served "
            f"({sum(self.faults.values()) / max(self.served, 1):.1%}: "
            f"{', '.join(f'{k} {v}' for k, v in sorted(self.faults.items()))})",
            f"retries:         {self.retries}",
            f"401 replays:     {self.replays}",
            f"token requests:  {self.token_requests} "
            f"({self.logins} logins = 1 + {self.expiries} expiries + {self.revocations} "
            f"revocation; the rest were retries after injected token faults)",
            f"result:          {'PASS' if self.passed else 'FAIL'}",
        ]
        return "\n".join(lines)


async def soak(
    *,
    requests: int = 20_000,
    in_flight: int = 1_000,
    fault_rate: float = 0.12,
    expiries: int = 3,
    seed: int = 7,
) -> SoakResult:
    """Run the soak in this event loop and return its counts."""
    events: collections.Counter[str] = collections.Counter()

    def count(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        events[event["event"]] += 1
        raise structlog.DropEvent

    structlog.configure(processors=[count], wrapper_class=structlog.make_filtering_bound_logger(0))
    try:
        return await _soak(requests, in_flight, fault_rate, expiries, seed, events)
    finally:
        structlog.reset_defaults()


async def _soak(
    n: int,
    in_flight: int,
    fault_rate: float,
    expiries: int,
    seed: int,
    events: collections.Counter[str],
) -> SoakResult:
    async with Emulator(record_requests=False) as emu:
        creds = emu.create_credentials(username="soak@example.com")
        async with AuthSession(
            client_id=creds.client_id,
            username=creds.username,
            private_key=creds.private_key_pem,
            login_url=emu.url,
            allow_http_loopback=True,
            limit=in_flight,
        ) as sf:
            await sf.token()
            emu.inject_faults(fault_rate, seed=seed)
            # Expire every session at evenly spaced points, then revoke the token once. An action
            # whose moment has come waits for the next completion if no token is current yet.
            actions = [(n * (i + 1) // (expiries + 2), "expire") for i in range(expiries)]
            actions.append((n * (expiries + 1) // (expiries + 2), "revoke"))
            done = {"expire": 0, "revoke": 0}
            ok = 0
            finished = 0
            failed: collections.Counter[str] = collections.Counter()
            gate = asyncio.Semaphore(in_flight)

            def act() -> None:
                while actions and finished >= actions[0][0]:
                    current = sf.auth.current_token
                    if current is None:
                        return  # a refresh is in flight: act at the next completion
                    _, action = actions.pop(0)
                    if action == "expire":
                        emu.expire_all_sessions()
                    elif not emu.revoke(current.access_token):
                        continue
                    done[action] += 1

            async def one() -> None:
                nonlocal ok, finished
                async with gate:
                    try:
                        async with sf.get(QUERY, params=SOQL) as resp:
                            body = await resp.json()
                            if resp.status == 200 and len(body["records"]) == 3:
                                ok += 1
                            else:
                                failed[f"HTTP {resp.status}"] += 1
                    except (SFAuthError, aiohttp.ClientError, ValueError) as exc:
                        failed[type(exc).__name__] += 1
                    finished += 1
                    act()

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            seconds = time.perf_counter() - started
            emu.inject_faults(0)
        logins = sum(
            1 for r in emu.token_requests if r.status == 200 and r.fault in (None, "slow")
        )
        return SoakResult(
            requests=n,
            ok=ok,
            failed=dict(failed),
            faults=dict(emu.faults_injected),
            served=sum(emu.counters.values()),
            retries=events["sfauth.retry.scheduled"],
            replays=events["sfauth.request.replayed"],
            token_requests=emu.token_request_count,
            logins=logins,
            expiries=done["expire"],
            revocations=done["revoke"],
            seconds=seconds,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=1_000)
    parser.add_argument("--fault-rate", type=float, default=0.12)
    parser.add_argument("--expiries", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    print(
        f"soak: {args.requests} requests, {args.in_flight} in flight, fault rate "
        f"{args.fault_rate:.0%}, {args.expiries} expiries + 1 revocation, seed {args.seed}"
    )
    result = asyncio.run(
        soak(
            requests=args.requests,
            in_flight=args.in_flight,
            fault_rate=args.fault_rate,
            expiries=args.expiries,
            seed=args.seed,
        )
    )
    print(result.report())
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
