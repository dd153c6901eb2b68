"""What the fleet tests share: sessions on a store, and worker processes (fleet_worker.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from sfauth import AuthSession
from sfauth.stores import TokenStore
from sfauth.stores._base import store_key
from sfauth.testing import Emulator, EmulatorCredentials

from .conftest import REDIS_URL

ROOT = Path(__file__).parent.parent
QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}


def store_session(
    emulator: Emulator, creds: EmulatorCredentials, store: TokenStore | None, **overrides: Any
) -> AuthSession:
    """A session of ``creds`` on ``emulator`` sharing ``store`` (not opened)."""
    return AuthSession(
        client_id=creds.client_id,
        username=creds.username,
        private_key=creds.private_key_pem,
        login_url=emulator.url,
        allow_http_loopback=True,
        token_store=store,
        **overrides,
    )


async def query_status(sf: AuthSession, **options: Any) -> int:
    """Send the test query (``options``: marks, timeout...), read the body; the status."""
    async with sf.get(QUERY, params=SOQL, **options) as resp:
        await resp.read()
        return resp.status


def integration_key(emulator: Emulator, creds: EmulatorCredentials) -> str:
    """The store key of the sessions ``store_session`` makes."""
    token_url = f"{emulator.url}/services/oauth2/token"
    return store_key(token_url, creds.client_id, creds.username, creds.audience)


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
