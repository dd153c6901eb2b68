"""Worker processes of a fleet (``benchmarks/fleet_worker.py``), driven by the fleet tests."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from sfauth.testing import Emulator, EmulatorCredentials

from .conftest import REDIS_URL

ROOT = Path(__file__).parent.parent


class Worker:
    """A benchmarks/fleet_worker.py process: one JSON line per phase on its stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(
        cls,
        emulator: Emulator,
        creds: EmulatorCredentials,
        key_file: Path,
        prefix: str,
        *extra: str,
    ) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.fleet_worker",
            "--login-url", emulator.url,
            "--client-id", creds.client_id,
            "--username", creds.username,
            "--key-file", str(key_file),
            "--redis", REDIS_URL,
            "--prefix", prefix,
            *extra,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        assert raw, f"worker exited with {await self.proc.wait()}"
        result: dict[str, Any] = json.loads(raw)
        return result

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def finish(self) -> int:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        return await self.proc.wait()
