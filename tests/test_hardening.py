"""Regressions for defects found by adversarial review (stores, retries, errors, closing)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as redis_asyncio

from sfauth import (
    AuthSession,
    CircuitOpenError,
    ConfigurationError,
    InvalidSessionError,
    RequestTimeoutError,
    RetryPolicy,
    SessionClosedError,
    SFAuthError,
    TokenStoreError,
    TransientAPIError,
    TransportError,
)
from sfauth.stores import MemoryTokenStore, RedisTokenStore, TokenStore
from sfauth.testing import Emulator, EmulatorCredentials, ScriptedResponse, no_backoff

from .conftest import REDIS_URL, SessionFactory, start_garbage_server

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}
EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
UNAVAILABLE = [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}]


async def _get(sf: AuthSession) -> int:
    async with sf.get(QUERY, params=SOQL) as resp:
        return resp.status


@pytest.fixture(params=["memory", "redis"])
async def shared(request: pytest.FixtureRequest) -> AsyncIterator[TokenStore]:
    if request.param == "memory":
        yield MemoryTokenStore()
        return
    async with RedisTokenStore(REDIS_URL, prefix=request.getfixturevalue("prefix")) as store:
        yield store


async def test_a_dead_token_adopted_from_the_store_is_replaced_not_fatal(
    shared: TokenStore, make_session: SessionFactory, emulator: Emulator
) -> None:
    a = make_session(token_store=shared)
    b = make_session(token_store=shared)
    assert await _get(a) == 200
    assert await _get(b) == 200
    await a.replace_token(await a.token())  # A alone moves to a newer token in the store
    assert emulator.token_request_count == 2
    emulator.expire_all_sessions()  # B still holds the first token; the store's is dead too
    assert await _get(b) == 200  # adopts the dead one, sees 401, logs in once, succeeds
    assert emulator.token_request_count == 3


async def test_garbage_in_redis_falls_back_to_a_local_login(
    prefix: str, emulator: Emulator, creds: EmulatorCredentials
) -> None:
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as store,
        AuthSession(
            client_id=creds.client_id,
            username=creds.username,
            private_key=creds.private_key_pem,
            login_url=emulator.url,
            allow_http_loopback=True,
            token_store=store,
        ) as sf,
    ):
        assert await _get(sf) == 200
        name, _logins = sorted([k async for k in client.scan_iter(match=prefix + "*")])
        token = json.loads(await client.hget(name, "data"))
        for bad in (
            {**token, "access_token": 7},
            {**token, "obtained_at": "yesterday"},
            {**token, "instance_url": "http://attacker.example"},
        ):
            await client.hset(name, "data", json.dumps(bad))
            emulator.expire_all_sessions()
            assert await _get(sf) == 200
            assert emulator.requests[-1].host == emulator.url.split("://")[1]
    await client.aclose()


@pytest.mark.parametrize("value", ["", b""])
def test_an_empty_encryption_key_is_refused(value: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match="encryption_key must be a Fernet key"):
        RedisTokenStore(REDIS_URL, encryption_key=value)


def test_an_empty_encryption_key_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFAUTH_REDIS_ENCRYPTION_KEY", "")
    with pytest.raises(ConfigurationError, match="encryption_key must be a Fernet key"):
        RedisTokenStore(REDIS_URL)


async def test_edge_errors_do_not_prove_a_token_and_logins_stay_bounded(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()
    unauthorized = ScriptedResponse(status=401, json=EXPIRED)
    edge = ScriptedResponse(status=503, json=UNAVAILABLE)
    emulator.script_rest_responses([unauthorized, edge] * 8)
    with no_backoff(), pytest.raises(SFAuthError) as info:
        await _get(sf)
    assert isinstance(info.value, TransientAPIError | InvalidSessionError | CircuitOpenError)
    assert emulator.token_request_count <= 3  # the first login and at most two refreshes


async def test_a_malformed_response_is_a_transport_error_without_the_bearer(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    server, url = await start_garbage_server()
    emulator.set_instance_url(url)
    sf = make_session(retry=RetryPolicy.none())
    token = await sf.token()
    try:
        with pytest.raises(TransportError) as info:
            await sf.get(QUERY, params=SOQL)
    finally:
        server.close()
        await server.wait_closed()
    assert token.access_token not in repr(info.value)
    assert token.access_token not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None  # nothing holding request headers rides along


async def test_the_total_timeout_is_a_typed_timeout(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(timeout=aiohttp.ClientTimeout(total=0.3), retry=RetryPolicy.none())
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(status=200, json={}, delay=5)])
    with pytest.raises(RequestTimeoutError) as info:
        await sf.get(QUERY, params=SOQL)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, TransportError)


async def test_replace_token_treats_an_equal_copy_as_the_token_in_use(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    token = await sf.token()
    fresh = await sf.replace_token(copy.copy(token))
    assert fresh.access_token != token.access_token
    assert emulator.token_request_count == 2


async def test_a_stream_body_that_cannot_be_resent_keeps_the_transient_error(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()

    async def body() -> AsyncIterator[bytes]:
        yield b'{"Name": "streamed"}'

    emulator.script_rest_responses([ScriptedResponse(status=503, json=UNAVAILABLE)])
    with no_backoff(), pytest.raises(TransientAPIError):
        await sf.patch(
            "/services/data/v62.0/sobjects/Account/ExtId__c/S-1",
            data=body(),
            headers={"Content-Type": "application/json"},
            idempotent=True,
        )
    assert [r.status for r in emulator.requests] == [503]


async def test_a_store_outage_does_not_open_the_login_circuit(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    class Down(MemoryTokenStore):
        fallback_to_local = False

        async def get(self, key: str) -> None:
            raise TokenStoreError("Redis get failed: ConnectionError: down")

    sf = make_session(token_store=Down(), failure_threshold=2)
    for _ in range(4):
        with pytest.raises(TokenStoreError):
            await sf.token()
    assert emulator.token_request_count == 0  # no login was tried, and no circuit opened


async def test_the_retry_opt_in_header_is_honoured_and_never_sent(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(status=503, json=UNAVAILABLE)])
    with no_backoff():
        async with sf.post(
            "/services/data/v62.0/sobjects/Account/",
            json={"Name": "opt-in by header"},
            headers={"X-Sfauth-Retry-Unsafe": "1"},
        ) as resp:
            assert resp.status == 201
    assert [r.status for r in emulator.requests] == [503, 201]
    assert all("X-Sfauth-Retry-Unsafe" not in r.headers for r in emulator.requests)


async def test_close_stops_a_refresh_in_flight(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.script_token_responses([ScriptedResponse(status=503, delay=30)])
    sf = make_session()
    waiter = asyncio.create_task(sf.token())
    await emulator.wait_for_token_requests(1)
    await sf.close()
    with pytest.raises(SessionClosedError):
        await waiter
    assert sf.auth._engine.manager._task is None
