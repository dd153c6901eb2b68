"""What the fleet features add per request: leases (``fleet_limit``) and the budget guard.

``python -m benchmarks.leases [--write benchmarks/LEASES.md]`` (part of ``make bench``; needs
Redis at 127.0.0.1:6379, or ``--redis URL``). One client process sends GET queries to the
emulator (in this process) through one ``AuthSession`` per mode, in interleaved rounds:

- ``plain``: an unmarked request (what every request costs without the features);
- ``lease (memory)``: ``long_running=True`` with ``fleet_limit`` on a ``MemoryTokenStore``;
- ``lease (redis)``: the same on a ``RedisTokenStore`` (a lease is one Lua call to take, one
  ``ZREM`` to give back);
- ``low priority (redis)``: ``low_priority=True`` with ``api_budget`` on Redis (the fleet's
  reading is read at most once a second);
- ``lease + low priority (redis)``: both.

Sequential requests (one in flight) show the latency each adds; the Redis round trips per
request are counted on the session's client, not assumed. The limit is never
reached here (``fleet_limit`` = 1,000): this measures the bookkeeping, not waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._provenance import machine, revision
from sfauth import AuthSession
from sfauth.stores import MemoryTokenStore, RedisTokenStore, TokenStore
from sfauth.testing import Emulator

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}
LEASES_SUMMARY = Path(__file__).resolve().parent / "LEASES.md"

#: (mode, marks, store kind, settings)
MODES: tuple[tuple[str, dict[str, bool], str | None, dict[str, Any]], ...] = (
    ("plain", {}, None, {}),
    ("lease (memory)", {"long_running": True}, "memory", {"fleet_limit": 1000}),
    ("lease (redis)", {"long_running": True}, "redis", {"fleet_limit": 1000}),
    ("low priority (redis)", {"low_priority": True}, "redis", {"api_budget": 0.99}),
    (
        "lease + low priority (redis)",
        {"long_running": True, "low_priority": True},
        "redis",
        {"fleet_limit": 1000, "api_budget": 0.99},
    ),
)


async def run(redis_url: str, requests: int, rounds: int) -> dict[str, Any]:
    async with Emulator(record_requests=False, daily_api_limit=10**9) as emu:
        creds = emu.create_credentials()
        prefix = f"sfauth-bench-leases:{uuid.uuid4().hex}:"
        stores: dict[str | None, TokenStore | None] = {
            None: None,
            "memory": MemoryTokenStore(),
            "redis": RedisTokenStore(redis_url, prefix=prefix),
        }
        latencies: dict[str, list[float]] = {mode: [] for mode, *_ in MODES}
        trips: dict[str, list[float]] = {mode: [] for mode, *_ in MODES}
        sent = _count_round_trips(stores["redis"])
        sessions: dict[str, AuthSession] = {}
        try:
            for mode, _marks, kind, settings in MODES:
                sf = AuthSession(
                    client_id=creds.client_id,
                    username=creds.username,
                    private_key=creds.private_key_pem,
                    login_url=emu.url,
                    allow_http_loopback=True,
                    api_version="62.0",
                    token_store=stores[kind],
                    **settings,
                )
                sf.open()
                sessions[mode] = sf
            for _ in range(rounds):
                for mode, marks, _kind, _settings in MODES:
                    sf = sessions[mode]
                    for _ in range(50):  # warm: login, pool, the store's scripts loaded
                        async with sf.get(QUERY, params=SOQL, **marks) as resp:
                            await resp.read()
                    before = sent[0]
                    samples = []
                    for _ in range(requests):
                        started = time.perf_counter()
                        async with sf.get(QUERY, params=SOQL, **marks) as resp:
                            await resp.read()
                        samples.append(time.perf_counter() - started)
                    latencies[mode].append(statistics.median(samples))
                    trips[mode].append((sent[0] - before) / requests)
        finally:
            for sf in sessions.values():
                await sf.close()
            redis_store = stores["redis"]
            assert isinstance(redis_store, RedisTokenStore)
            await redis_store.close()
            await _forget(redis_url, prefix)
    return {"latency": latencies, "round_trips": trips, "requests": requests, "rounds": rounds}


def _count_round_trips(store: object) -> list[int]:
    """Count the commands ``store``'s Redis client sends (one round trip each), in a 1-list."""
    sent = [0]
    client = store._redis  # type: ignore[attr-defined]  # the store's own client
    execute = client.execute_command

    async def counted(*args: Any, **options: Any) -> Any:
        sent[0] += 1
        return await execute(*args, **options)

    client.execute_command = counted
    return sent


async def _forget(url: str, prefix: str) -> None:
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def render(result: dict[str, Any], *, command: str, seconds: float) -> str:
    plain = statistics.median(result["latency"]["plain"])
    info = machine(["aiohttp", "redis"])
    lines = [
        "## Fleet leases and the API budget guard\n",
        f"`{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{revision(LEASES_SUMMARY)}, {seconds:.0f} s; {info['cpu']}, {info['python']}, "
        f"{info['versions']}; emulator in the same process, Redis on loopback.\n",
        f"Sequential GET queries through one `AuthSession` per mode: {result['rounds']} "
        f"interleaved rounds of {result['requests']} requests each; the median request's "
        "latency per round, and the median over rounds (range in brackets). Round trips are "
        "the commands the session's Redis client sent, counted on the client (a lease is one "
        "Lua script to take it, which runs TIME, ZREMRANGEBYSCORE, ZCARD, ZADD, ZRANGE and "
        "PEXPIREAT inside Redis, and one ZREM to give it back). Once logged in, the token "
        "store sends none.\n",
        "| mode | latency per request | added vs plain | Redis round trips per request |",
        "|---|---:|---:|---:|",
    ]
    for mode, *_ in MODES:
        samples = result["latency"][mode]
        median = statistics.median(samples)
        spread = f"[{min(samples) * 1e6:.0f}-{max(samples) * 1e6:.0f}]"
        added = "-" if mode == "plain" else f"{(median - plain) * 1e6:+.0f} µs"
        trips = statistics.median(result["round_trips"][mode])
        lines.append(f"| {mode} | {median * 1e6:.0f} µs {spread} | {added} | {trips:.2f} |")
    lines.append("")
    lines.append(
        "Unmarked requests run none of this code (one boolean test per request); the "
        "hot-path benchmark above measures them."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.leases", description=__doc__)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=1000, help="per mode and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", type=Path, default=None, help="write the markdown here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = asyncio.run(run(args.redis, args.requests, args.rounds))
    command = "python -m benchmarks.leases" + (
        f" --write {args.write}" if args.write is not None else ""
    )
    text = render(result, command=command, seconds=time.perf_counter() - started)
    print(text)
    if args.write is not None:
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
