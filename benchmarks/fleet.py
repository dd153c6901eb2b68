"""Token requests per session expiry for a fleet of N processes, with and without Redis.

``python -m benchmarks.fleet`` (part of ``make bench``; needs Redis at 127.0.0.1:6379, or
``--redis URL``). For N = 1, 4, 8 worker processes (benchmarks/fleet_worker.py), each running
concurrent queries through its own AuthSession against one emulator: a cold start, then every
session expires, then another round. The table shows the logins each phase cost: with a
``RedisTokenStore`` the fleet logs in once per phase; without, once per process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sfauth.testing import Emulator

ROOT = Path(__file__).parent.parent


async def fleet(processes: int, *, redis: str | None, requests: int) -> dict[str, Any]:
    async with Emulator(record_requests=False) as emu:
        creds = emu.create_credentials()
        with tempfile.TemporaryDirectory() as tmp:
            key_file = creds.write_private_key(Path(tmp) / "key.pem")
            prefix = f"sfauth-bench:{uuid.uuid4().hex}:"
            args = [
                "--login-url", emu.url,
                "--client-id", creds.client_id,
                "--username", creds.username,
                "--key-file", str(key_file),
                "--prefix", prefix,
                "--requests", str(requests),
                "--phases", "2",
            ]  # fmt: skip
            args += ["--redis", redis] if redis else ["--no-store"]
            workers = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "benchmarks.fleet_worker",
                    *args,
                    cwd=ROOT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                for _ in range(processes)
            ]

            async def line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
                assert proc.stdout is not None
                result: dict[str, Any] = json.loads(await proc.stdout.readline())
                return result

            cold = [await line(w) for w in workers]
            cold_logins = emu.token_request_count
            emu.expire_all_sessions()
            for w in workers:
                assert w.stdin is not None
                w.stdin.write(b"go\n")
            warm = [await line(w) for w in workers]
            for w in workers:
                assert w.stdin is not None
                w.stdin.close()
                await w.wait()
            failed = sum(sum(r["failed"].values()) for r in cold + warm)
            return {
                "processes": processes,
                "store": "redis" if redis else "none",
                "cold_logins": cold_logins,
                "logins_per_expiry": emu.token_request_count - cold_logins,
                "requests": sum(r["ok"] for r in cold + warm),
                "failed": failed,
            }


async def main_async(redis: str, requests: int, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        for store in (None, redis):
            rows.append(await fleet(n, redis=store, requests=requests))
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| processes | token store | logins at cold start | logins per expiry | requests ok "
        "| failed |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['processes']} | {r['store']} | {r['cold_logins']} | "
            f"{r['logins_per_expiry']} | {r['requests']} | {r['failed']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=100, help="per process and phase")
    parser.add_argument("--sizes", default="1,4,8")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    started = time.perf_counter()
    rows = asyncio.run(main_async(args.redis, args.requests, sizes))
    print(render(rows))
    print(f"\n({time.perf_counter() - started:.1f} s)")
    ok = all(
        r["failed"] == 0
        and r["logins_per_expiry"] == (1 if r["store"] == "redis" else r["processes"])
        for r in rows
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
