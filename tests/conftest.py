"""Shared fixtures: keys generated at test time, a running emulator, sessions bound to it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sfauth import AuthSession
from sfauth.testing import Emulator, EmulatorCredentials


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """Undo what a test configured: ``sfauth.cli.main()`` configures structlog, as CLIs do."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def pkcs8_pem(rsa_key: rsa.RSAPrivateKey) -> bytes:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator() as emu:
        yield emu


@pytest.fixture
def creds(emulator: Emulator) -> EmulatorCredentials:
    return emulator.create_credentials(username="etl@example.com")


@pytest.fixture
async def redis_client(prefix: str) -> AsyncIterator[Any]:
    """A ``redis.asyncio`` client of the shared Redis, for tests that look at its keys."""
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def key_file(tmp_path: Path, creds: EmulatorCredentials) -> Path:
    """``creds``' private key written to a PEM file (for worker processes and the CLI)."""
    return creds.write_private_key(tmp_path / "key.pem")


SessionFactory = Callable[..., AuthSession]


@pytest.fixture
def flow(emulator: Emulator, creds: EmulatorCredentials) -> dict[str, Any]:
    """The flow settings of ``creds`` on ``emulator``: ``AuthSession(**flow)``."""
    return {
        "client_id": creds.client_id,
        "username": creds.username,
        "private_key": creds.private_key_pem,
        "login_url": emulator.url,
        "allow_http_loopback": True,
    }


# --- secret-shaped values, made at test time (nothing key- or token-shaped is committed) -----


def pem_header(label: str = "PRIVATE KEY") -> str:
    """The ``-----BEGIN <label>-----`` line of a PEM block."""
    return f"{'-' * 5}BEGIN {label}{'-' * 5}"


def pem_block(body: str, label: str = "PRIVATE KEY") -> str:
    """A PEM-armoured block around ``body`` (not a usable key)."""
    return f"{pem_header(label)}\n{body}\n{'-' * 5}END {label}{'-' * 5}\n"


def fake_session_id(org_id: str = "00D5e000000AbCdEAA") -> str:
    """A Salesforce-shaped session id (``{org_id}!…``) with a random part, new every run."""
    return org_id + "!" + "AQ4AQ" + secrets.token_urlsafe(48)


@pytest.fixture
async def make_session(flow: dict[str, Any]) -> AsyncIterator[SessionFactory]:
    """Build AuthSessions bound to the emulator; every one is closed after the test."""
    opened: list[AuthSession] = []

    def make(cls: type[AuthSession] = AuthSession, **overrides: Any) -> AuthSession:
        session = cls(**{**flow, **overrides})
        session.open()
        opened.append(session)
        return session

    yield make
    for session in opened:
        await session.close()


# --- Redis (REQUIRED: tests that use it fail, never skip, when it is not reachable) ----------

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _require_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is required at {REDIS_URL} and is not reachable ({exc}); start it with "
            "`redis-server --daemonize yes --port 6379 --save '' --appendonly no`",
            pytrace=False,
        )
    finally:
        client.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    import redis

    _require_redis()
    name = f"sfauth-test:{uuid.uuid4().hex}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=name + "*"))
    if keys:
        client.delete(*keys)
    client.close()


# --- servers of other kinds ------------------------------------------------------------------


@contextlib.contextmanager
def serve_emulator(*flags: str) -> Iterator[dict[str, str]]:
    """`sfauth emulator FLAGS` in its own process, and the JSON line it printed."""
    command = [sys.executable, "-m", "sfauth", "emulator", *flags]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        try:
            yield info
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            Path(info["private_key_file"]).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    """`sfauth emulator` in its own process, and the JSON line it printed.

    It outlives the tests' event loops (for tests that call ``asyncio.run()`` themselves).
    """
    with serve_emulator() as info:
        yield info


async def start_garbage_server() -> tuple[asyncio.Server, str]:
    """A server answering every request with a malformed HTTP response; ``(server, url)``."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: banana\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
