"""Sharing one token through a TokenStore, in one process and across OS processes (issue #4).

REDIS REQUIRED: these tests use the Redis server at 127.0.0.1:6379 (REDIS_URL to override) and
FAIL, never skip, when it is not reachable; .ci/run starts it when it is not running. The tests
that stop Redis mid-run start a private redis-server of their own.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
import structlog
from cryptography.fernet import Fernet

from sfauth import AuthSession, TokenStoreError
from sfauth._fleet import user_key
from sfauth._token import Token
from sfauth.stores import MemoryTokenStore, RedisTokenStore, TokenStore
from sfauth.testing import Emulator, EmulatorCredentials, ScriptedResponse

from .conftest import REDIS_URL
from .fleet import Worker, integration_key, query_status, store_session

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}
ROOT = Path(__file__).parent.parent


def token(n: int) -> Token:
    return Token(
        access_token=f"00D000000000001AAA!AQ0token{n}",
        instance_url="https://acme.my.salesforce.com",
        id="https://login.salesforce.com/id/00D000000000001AAA/005000000000001AAA",
        org_id="00D000000000001AAA",
        user_id="005000000000001AAA",
        scope="api",
        token_type="Bearer",
        issued_at=1700000000000 + n,
        obtained_at=1700000000.0 + n,
    )


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[TokenStore]:
    if request.param == "memory":
        yield MemoryTokenStore()
        return
    name = request.getfixturevalue("prefix")
    async with RedisTokenStore(REDIS_URL, prefix=name) as redis_store:
        yield redis_store


# --- the protocol ----------------------------------------------------------------------------


async def test_publish_get_roundtrip(store: TokenStore) -> None:
    assert await store.get("k") is None
    await store.publish("k", token(1))
    assert await store.get("k") == token(1)
    assert await store.get("other") is None


async def test_invalidate_only_if_still_current(store: TokenStore) -> None:
    await store.publish("k", token(2))
    assert await store.invalidate("k", token(1)) is False  # a stale 401 keeps the new token
    assert await store.get("k") == token(2)
    assert await store.invalidate("k", token(2)) is True
    assert await store.get("k") is None


async def test_lock_has_one_owner_and_only_the_owner_releases(store: TokenStore) -> None:
    first = await store.acquire("k", 10.0)
    assert first is not None
    assert await store.acquire("k", 10.0) is None
    assert await store.locked("k") is True
    await store.release("k", "not-the-owner")
    assert await store.locked("k") is True
    await store.release("k", first)
    assert await store.locked("k") is False
    assert await store.acquire("k", 10.0) is not None


async def test_holder_names_the_current_owner(store: TokenStore) -> None:
    assert await store.holder("k") is None  # type: ignore[attr-defined]
    first = await store.acquire("k", 10.0)
    assert first is not None
    mark = await store.holder("k")  # type: ignore[attr-defined]
    assert isinstance(mark, str)
    assert mark
    await store.release("k", first)
    assert await store.holder("k") is None  # type: ignore[attr-defined]
    second = await store.acquire("k", 10.0)
    assert second is not None
    assert await store.holder("k") not in (None, mark)  # type: ignore[attr-defined]


async def test_a_new_lock_holder_gets_a_new_allowance_from_the_waiters(
    emulator: Emulator, creds: EmulatorCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A holder died with the lock for 1 s more. The next holder's login takes 0.55 s, so it
    # publishes after the waiters' first allowance (2 x refresh_timeout = 1.2 s from their
    # start) has run out: they must still wait for it, not log in themselves.
    from sfauth._oauth import TokenClient

    original = TokenClient.fetch

    async def slow(self: TokenClient, http: Any, assertion: str | None = None) -> Token:
        await asyncio.sleep(0.55)  # a slow login endpoint
        return await original(self, http, assertion)

    monkeypatch.setattr(TokenClient, "fetch", slow)
    store = MemoryTokenStore()
    sessions = [
        store_session(emulator, creds, store, refresh_timeout=0.6, failure_threshold=1)
        for _ in range(3)
    ]
    key = sessions[0].auth._engine.manager._store_key
    assert await store.acquire(key, 1.0) is not None  # the dead holder's lock
    try:
        for sf in sessions:
            sf.open()
        assert await asyncio.gather(*(query_status(sf) for sf in sessions)) == [200, 200, 200]
        assert emulator.token_request_count == 1
    finally:
        for sf in sessions:
            await sf.close()


async def test_a_memory_lock_whose_holder_vanished_expires() -> None:
    store = MemoryTokenStore()
    assert await store.acquire("k", 0.05) is not None
    await asyncio.sleep(0.1)  # the holder "died": only time frees the lock
    assert await store.locked("k") is False
    assert await store.acquire("k", 0.05) is not None


async def test_a_redis_lock_is_renewed_while_held_and_expires_when_its_holder_dies(
    prefix: str,
) -> None:
    holder = RedisTokenStore(REDIS_URL, prefix=prefix, lock_ttl=0.2)
    other = RedisTokenStore(REDIS_URL, prefix=prefix, lock_ttl=0.2)
    try:
        owner = await holder.acquire("k", 30.0)
        assert owner is not None
        await asyncio.sleep(0.5)  # longer than lock_ttl: the holder keeps renewing it
        assert await other.acquire("k", 30.0) is None
        await holder.close()  # the holder "dies": no release, no more renewals
        await asyncio.sleep(0.3)  # only time frees the lock
        assert await other.locked("k") is False
        assert await other.acquire("k", 30.0) is not None
    finally:
        await other.close()


# --- sessions sharing a store in one process -------------------------------------------------


async def test_sessions_sharing_a_store_log_in_once(
    store: TokenStore, emulator: Emulator, creds: EmulatorCredentials
) -> None:
    async with (
        store_session(emulator, creds, store) as a,
        store_session(emulator, creds, store) as b,
    ):
        results = await asyncio.gather(*(query_status(s) for s in [a, b] * 250))
        assert results == [200] * 500
        assert emulator.token_request_count == 1
        emulator.expire_all_sessions()
        results = await asyncio.gather(*(query_status(s) for s in [a, b] * 250))
        assert results == [200] * 500
        assert emulator.token_request_count == 2


async def test_stale_401_after_another_session_refreshed_makes_no_token_request(
    store: TokenStore, emulator: Emulator, creds: EmulatorCredentials
) -> None:
    # Two sessions sharing nothing but the store stand for two processes.
    async with (
        store_session(emulator, creds, store) as a,
        store_session(emulator, creds, store) as b,
    ):
        assert await query_status(a) == 200
        assert await query_status(b) == 200
        first = await a.token()
        assert (await b.token()).access_token == first.access_token
        emulator.expire_all_sessions()
        assert await query_status(b) == 200  # B: 401, refresh, publish
        assert emulator.token_request_count == 2
        assert await query_status(a) == 200  # A: 401 for the old token, adopts B's
        assert emulator.token_request_count == 2
        assert (await a.token()).access_token == (await b.token()).access_token


async def test_encrypted_tokens_do_not_appear_in_redis(
    prefix: str,
    redis_client: redis_asyncio.Redis,
    emulator: Emulator,
    creds: EmulatorCredentials,
) -> None:
    key = Fernet.generate_key()
    async with RedisTokenStore(REDIS_URL, prefix=prefix, encryption_key=key) as store:
        assert repr(store) == f"RedisTokenStore(prefix={prefix!r}, encrypted)"
        async with store_session(emulator, creds, store) as sf:
            access = (await sf.token()).access_token
        # The token (under a hex key) and the user's login count: nothing else.
        name, logins = sorted([k async for k in redis_client.scan_iter(match=prefix + "*")])
        assert logins.decode() == f"{prefix}logins:{user_key(creds.username)}"
        stored = await redis_client.hgetall(name)
        raw = b"".join(stored.values())
        assert access.encode() not in raw
        assert access.split("!")[1][:20].encode() not in raw
    # Another process with the same key reads it; one with another key gets a typed error.
    async with RedisTokenStore(REDIS_URL, prefix=prefix, encryption_key=key) as same:
        shared = await same.get(name.decode().removeprefix(prefix))
        assert shared is not None
        assert shared.access_token == access
    # One with another key cannot read it: absent for it (it logs in and overwrites).
    async with RedisTokenStore(
        REDIS_URL, prefix=prefix, encryption_key=Fernet.generate_key()
    ) as wrong:
        assert await wrong.get(name.decode().removeprefix(prefix)) is None


async def test_without_a_key_the_token_is_in_clear(
    prefix: str, redis_client: redis_asyncio.Redis
) -> None:
    async with RedisTokenStore(REDIS_URL, prefix=prefix) as store:
        assert repr(store) == f"RedisTokenStore(prefix={prefix!r}, NOT encrypted)"
        await store.publish("k", token(7))
    assert token(7).access_token.encode() in await redis_client.hget(prefix + "k", "data")


def test_bad_store_settings() -> None:
    from sfauth import ConfigurationError

    with pytest.raises(ConfigurationError, match="encryption_key must be a Fernet key"):
        RedisTokenStore(REDIS_URL, encryption_key="not-a-key")
    with pytest.raises(ConfigurationError, match="on_unavailable must be 'fallback' or 'raise'"):
        RedisTokenStore(REDIS_URL, on_unavailable="retry")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="lock_ttl must be a number of seconds > 0"):
        RedisTokenStore(REDIS_URL, lock_ttl=0)
    with pytest.raises(
        ConfigurationError,
        match="token_ttl must be a number of seconds > 0 and <= 604800; got inf",
    ):
        RedisTokenStore(REDIS_URL, token_ttl=float("inf"))
    with pytest.raises(ConfigurationError, match="redis must be a Redis URL"):
        RedisTokenStore(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="token_store must implement"):
        AuthSession(client_id="c", username="u", private_key="k.pem", token_store=object())  # type: ignore[arg-type]


# --- Redis going away ------------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A redis-server of this test's own, which the test may stop."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is required on PATH for this test", pytrace=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    with subprocess.Popen(
        [*command, "no"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # the server says when it listens; EOF if it failed
            if "Ready to accept connections" in line:
                break
        else:
            pytest.fail(f"redis-server did not start (exit {proc.wait()})", pytrace=False)
        try:
            yield f"redis://127.0.0.1:{port}/0", proc
        finally:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("on_unavailable", ["fallback", "raise"])
async def test_redis_stopped_mid_run(
    private_redis: tuple[str, subprocess.Popen[str]],
    emulator: Emulator,
    creds: EmulatorCredentials,
    on_unavailable: str,
) -> None:
    url, proc = private_redis
    store = RedisTokenStore(url, on_unavailable=on_unavailable, socket_timeout=0.5)  # type: ignore[arg-type]
    async with store, store_session(emulator, creds, store) as sf:
        assert await asyncio.gather(*(query_status(sf) for _ in range(50))) == [200] * 50
        proc.kill()
        proc.wait()
        assert await query_status(sf) == 200  # the token in hand needs no Redis
        emulator.expire_all_sessions()  # now a refresh needs the store
        with structlog.testing.capture_logs() as logs:
            if on_unavailable == "fallback":
                assert await asyncio.gather(*(query_status(sf) for _ in range(50))) == [200] * 50
                assert emulator.token_request_count == 2
            else:
                with pytest.raises(TokenStoreError, match=r"Redis \S+ failed"):
                    await query_status(sf)
                assert emulator.token_request_count == 1
    events = [e["event"] for e in logs]
    assert ("sfauth.store.unavailable" in events) is (on_unavailable == "fallback")


# --- OS processes ----------------------------------------------------------------------------


async def test_four_processes_log_in_once_and_refresh_once(
    emulator: Emulator, creds: EmulatorCredentials, key_file: Path, prefix: str
) -> None:
    workers = [
        await Worker.start(emulator, creds, key_file, prefix, "--requests", "250", "--phases", "2")
        for _ in range(4)
    ]
    cold = [await w.line() for w in workers]
    assert [r["ok"] for r in cold] == [250] * 4
    assert emulator.token_request_count == 1  # 4 processes x 250 concurrent, cold start

    emulator.expire_all_sessions()  # every process holds a token that is now dead
    for w in workers:
        w.go()
    warm = [await w.line() for w in workers]
    assert [r["ok"] for r in warm] == [250] * 4
    assert [r["failed"] for r in warm] == [{}] * 4
    assert emulator.token_request_count == 2  # exactly one more in total
    assert sum(r["token_requests"] for r in warm) == 2
    assert [await w.finish() for w in workers] == [0] * 4


async def test_killed_lock_holder_blocks_the_others_only_for_the_lock_ttl(
    emulator: Emulator, creds: EmulatorCredentials, key_file: Path, prefix: str
) -> None:
    # The first token request hangs: the process that sent it holds the Redis lock.
    emulator.script_token_responses([ScriptedResponse(status=503, delay=60.0)])
    options = ("--requests", "50", "--lock-ttl", "1", "--refresh-timeout", "30")
    holder = await Worker.start(emulator, creds, key_file, prefix, *options)
    await emulator.wait_for_token_requests(1)
    other = await Worker.start(emulator, creds, key_file, prefix, *options)
    holder.proc.send_signal(signal.SIGKILL)  # mid-refresh, lock held
    assert await holder.proc.wait() == -signal.SIGKILL
    result = await other.line()  # the other process waited out the TTL, then logged in
    assert result == {"phase": 0, "ok": 50, "failed": {}, "unsent": 0, "token_requests": 1}
    assert emulator.token_request_count == 2
    assert await other.finish() == 0


# --- what another writer left under the key (trust issue items 5-7) --------------------------


@pytest.mark.parametrize(
    "garbage",
    [b"not a token", b"gAAAAABlZm9yZWlnbi1mZXJuZXQ=", json.dumps({"v": 2}).encode()],
    ids=["garbage", "other-fernet", "other-format"],
)
async def test_an_unreadable_shared_value_is_overwritten_not_a_fleet_of_solo_logins(
    garbage: bytes,
    prefix: str,
    redis_client: redis_asyncio.Redis,
    emulator: Emulator,
    creds: EmulatorCredentials,
) -> None:
    # The value has no TTL: only an overwrite can ever remove it.
    async def spoil() -> None:
        mapping = {"fp": "x", "data": garbage}
        await redis_client.hset(prefix + integration_key(emulator, creds), mapping=mapping)  # type: ignore[arg-type]

    await spoil()
    stores = [RedisTokenStore(REDIS_URL, prefix=prefix) for _ in range(4)]
    sessions = [store_session(emulator, creds, store) for store in stores]
    try:
        with structlog.testing.capture_logs() as events:
            for sf in sessions:
                sf.open()
            for round_ in range(4):  # a cold start, then 3 expiries
                if round_:
                    emulator.expire_all_sessions()
                for sf in sessions:  # one "process" after another
                    assert await query_status(sf) == 200
            assert emulator.token_request_count == 4  # 1 + 3, not 4 + 12
            await spoil()
            emulator.expire_all_sessions()
            assert await query_status(sessions[0]) == 200
        assert emulator.token_request_count == 5
        unreadable = [e for e in events if e["event"] == "sfauth.store.unreadable"]
        assert len(unreadable) == 1  # once per store (per process), not once per refresh
        assert unreadable[0]["log_level"] == "warning"
    finally:
        for sf in sessions:
            await sf.close()
        for store in stores:
            await store.close()


async def test_encryption_keys_rotate_with_a_list(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    async with RedisTokenStore(REDIS_URL, prefix=prefix, encryption_key=old) as before:
        await before.publish("k", token(3))
    async with RedisTokenStore(REDIS_URL, prefix=prefix, encryption_key=[new, old]) as during:
        assert await during.get("k") == token(3)  # reads the old key's value
        await during.publish("k", token(4))  # writes with the new key
    monkeypatch.setenv("SFAUTH_REDIS_ENCRYPTION_KEY", f"{new.decode()}, {old.decode()}")
    async with RedisTokenStore(REDIS_URL, prefix=prefix) as from_env:
        assert await from_env.get("k") == token(4)
    async with RedisTokenStore(REDIS_URL, prefix=prefix, encryption_key=[new]) as after:
        assert await after.get("k") == token(4)
    async with RedisTokenStore(REDIS_URL, prefix=prefix, encryption_key=[old]) as stale:
        assert await stale.get("k") is None


def test_an_empty_key_list_is_refused() -> None:
    from sfauth import ConfigurationError

    with pytest.raises(ConfigurationError, match="encryption_key is an empty list"):
        RedisTokenStore(REDIS_URL, encryption_key=[])


async def test_waiting_for_a_dead_lock_holder_is_not_a_failed_login(
    prefix: str,
    redis_client: redis_asyncio.Redis,
    emulator: Emulator,
    creds: EmulatorCredentials,
) -> None:
    # A holder with the default refresh_timeout (30 s) and lock_ttl=1 died mid-refresh: its
    # lock lives 1 s more. These sessions may spend only 0.6 s on a login of their own.
    await redis_client.set(prefix + integration_key(emulator, creds) + ":lock", "dead", px=1000)
    stores = [RedisTokenStore(REDIS_URL, prefix=prefix, lock_ttl=1.0) for _ in range(3)]
    # failure_threshold=1: a single failed login would open the circuit.
    sessions = [
        store_session(emulator, creds, store, refresh_timeout=0.6, failure_threshold=1)
        for store in stores
    ]
    try:
        for sf in sessions:
            sf.open()
        results = await asyncio.gather(*(query_status(sf) for sf in sessions))
        assert results == [200, 200, 200]
        assert emulator.token_request_count == 1  # the others adopted it
        assert await query_status(sessions[0]) == 200  # and the circuit is closed
    finally:
        for sf in sessions:
            await sf.close()
        for store in stores:
            await store.close()


async def test_redis_lock_lives_at_most_the_ttl_asked_for(prefix: str) -> None:
    store = RedisTokenStore(REDIS_URL, prefix=prefix, lock_ttl=15.0)
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        assert await store.acquire("k", 0.3) is not None
        assert 0 < await client.pttl(prefix + "k:lock") <= 300  # min(lock_ttl, ttl)
    finally:
        await store.close()
        await client.aclose()


async def test_a_shared_token_of_another_org_is_never_adopted(
    store: TokenStore, emulator: Emulator, creds: EmulatorCredentials
) -> None:
    async with store_session(emulator, creds, store) as sf:
        assert await query_status(sf) == 200
        mine = await sf.token()
        foreign = token(9)  # another org, another user, another instance
        assert (foreign.org_id, foreign.instance_url) != (mine.org_id, mine.instance_url)
        key = integration_key(emulator, creds)
        await store.publish(key, foreign)
        emulator.expire_all_sessions()
        with structlog.testing.capture_logs() as events:
            async with sf.post(
                "/services/data/v62.0/sobjects/Account", json={"Name": "Kept"}
            ) as resp:
                assert resp.status == 201
        assert emulator.token_request_count == 2  # it logged in instead
        now = await sf.token()
        assert now.access_token not in (mine.access_token, foreign.access_token)
        assert now.instance_url == emulator.url
        stored = await store.get(key)
        assert stored is not None
        assert stored.access_token == now.access_token  # and overwrote the foreign value
        assert [r["Name"] for r in emulator.records("Account")][-1] == "Kept"
        ignored = [e for e in events if e["event"] == "sfauth.store.token_ignored"]
        assert len(ignored) == 1
        assert foreign.org_id in ignored[0]["reason"]


async def test_another_redis_type_under_the_token_key_is_overwritten(
    prefix: str,
    redis_client: redis_asyncio.Redis,
    emulator: Emulator,
    creds: EmulatorCredentials,
) -> None:
    name = prefix + integration_key(emulator, creds)
    await redis_client.set(name, "garbage")  # a string, no TTL: HGET answers WRONGTYPE
    stores = [RedisTokenStore(REDIS_URL, prefix=prefix, on_unavailable="raise") for _ in range(3)]
    sessions = [store_session(emulator, creds, store) for store in stores]
    try:
        for sf in sessions:
            sf.open()
            assert await query_status(sf) == 200
        assert emulator.token_request_count == 1
        assert await redis_client.type(name) == b"hash"
    finally:
        for sf in sessions:
            await sf.close()
        for store in stores:
            await store.close()


@pytest.mark.parametrize("kind", ["string without a TTL", "list"])
async def test_a_lock_key_that_no_sfauth_process_set_is_cleared(
    kind: str,
    prefix: str,
    redis_client: redis_asyncio.Redis,
    emulator: Emulator,
    creds: EmulatorCredentials,
) -> None:
    name = prefix + integration_key(emulator, creds) + ":lock"
    if kind == "list":
        await redis_client.rpush(name, "x")  # type: ignore[misc]
    else:
        await redis_client.set(name, "stuck")
    stores = [RedisTokenStore(REDIS_URL, prefix=prefix, on_unavailable="raise") for _ in range(2)]
    sessions = [store_session(emulator, creds, store) for store in stores]
    try:
        with structlog.testing.capture_logs() as events:
            for sf in sessions:
                sf.open()
                assert await query_status(sf) == 200
        assert emulator.token_request_count == 1  # logged in once, and shared
        assert [e["event"] for e in events].count("sfauth.store.stuck_lock_cleared") == 1
    finally:
        for sf in sessions:
            await sf.close()
        for store in stores:
            await store.close()


# --- cancellation (redis-py can swallow a CancelledError that arrives mid-command) -----------


async def test_a_cancelled_redis_call_is_cancelled(prefix: str) -> None:
    async with RedisTokenStore(REDIS_URL, prefix=prefix) as store:
        outcomes: list[str] = []
        for _ in range(30):
            tasks = [asyncio.create_task(store.get("k")) for _ in range(10)]
            await asyncio.sleep(0)
            await asyncio.sleep(0)  # the commands are on the wire
            asked = [task.cancel() for task in tasks]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            pairs = zip(asked, results, strict=True)
            outcomes += [type(r).__name__ for cancelled, r in pairs if cancelled]
        assert outcomes
        assert set(outcomes) == {"CancelledError"}  # none completed as if not cancelled


async def test_a_lock_taken_after_its_caller_was_cancelled_is_given_back(prefix: str) -> None:
    async with RedisTokenStore(REDIS_URL, prefix=prefix) as store:
        for _ in range(30):
            task = asyncio.create_task(store.acquire("k", 30.0))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if task.cancel():
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                owner = await task
                assert owner is not None
                await store.release("k", owner)
            assert not await store.locked("k")  # a lock taken as the cancel came: given back
