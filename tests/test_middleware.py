"""The middleware in a user's own ClientSession passes the same 401/single-flight tests (#7)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sfauth import (
    CircuitOpenError,
    InvalidSessionError,
    RestApiNotAllowedError,
    SalesforceAuthMiddleware,
)
from sfauth.testing import Emulator, EmulatorCredentials

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id, Name FROM Account LIMIT 2"}


@pytest.fixture
async def user_session(
    emulator: Emulator, creds: EmulatorCredentials, flow: dict[str, Any]
) -> AsyncIterator[tuple[aiohttp.ClientSession, SalesforceAuthMiddleware]]:
    auth = SalesforceAuthMiddleware(**flow)
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector, middlewares=(auth,)) as http:
        yield http, auth


async def query(http: aiohttp.ClientSession, auth: SalesforceAuthMiddleware, **kw: str) -> int:
    token = await auth.token(http)
    async with http.get(f"{token.instance_url}{QUERY}", params=SOQL, headers=kw) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return len(body["records"])


async def test_1000_concurrent_first_requests_make_one_token_request(
    user_session: tuple[aiohttp.ClientSession, SalesforceAuthMiddleware], emulator: Emulator
) -> None:
    http, auth = user_session
    assert await asyncio.gather(*(query(http, auth) for _ in range(1000))) == [2] * 1000
    assert emulator.token_request_count == 1


async def test_expiry_with_1000_in_flight_makes_exactly_one_more_token_request(
    user_session: tuple[aiohttp.ClientSession, SalesforceAuthMiddleware], emulator: Emulator
) -> None:
    http, auth = user_session
    await auth.token(http)
    done = 0

    async def one() -> int:
        nonlocal done
        n = await query(http, auth)
        done += 1
        if done == 100:
            emulator.expire_all_sessions()
        return n

    assert await asyncio.gather(*(one() for _ in range(1000))) == [2] * 1000
    assert emulator.token_request_count == 2
    assert emulator.counters[("query", 401)] > 0


async def test_api_answering_401_forever_is_bounded(
    user_session: tuple[aiohttp.ClientSession, SalesforceAuthMiddleware], emulator: Emulator
) -> None:
    http, auth = user_session
    await auth.token(http)
    emulator.always_401 = True
    results = await asyncio.gather(
        *(query(http, auth, **{"X-Req": str(i)}) for i in range(300)), return_exceptions=True
    )
    assert all(isinstance(r, InvalidSessionError | CircuitOpenError) for r in results)
    assert emulator.token_request_count <= 3
    sends = collections.Counter(r.headers["X-Req"] for r in emulator.requests)
    assert max(sends.values()) <= 2


async def test_session_not_valid_for_rest_api_is_not_refreshed(
    user_session: tuple[aiohttp.ClientSession, SalesforceAuthMiddleware], emulator: Emulator
) -> None:
    http, auth = user_session
    await auth.token(http)
    emulator.reject_rest_api = True
    with pytest.raises(RestApiNotAllowedError):
        await query(http, auth)
    assert emulator.counters[("query", 401)] == 1
    assert emulator.token_request_count == 1


async def test_the_replay_follows_a_new_instance_url(
    user_session: tuple[aiohttp.ClientSession, SalesforceAuthMiddleware], emulator: Emulator
) -> None:
    http, auth = user_session
    old = (await auth.token(http)).instance_url
    new = await emulator.add_instance()
    emulator.set_instance_url(new)
    emulator.expire_all_sessions()
    async with http.get(f"{old}{QUERY}", params=SOQL) as resp:  # addressed to the old origin
        assert resp.status == 200
    assert [(r.host, r.status) for r in emulator.requests] == [
        (old.split("://")[1], 401),
        (new.split("://")[1], 200),
    ]


async def test_cancelling_the_refresh_starter_does_not_cancel_the_refresh(
    user_session: tuple[aiohttp.ClientSession, SalesforceAuthMiddleware], emulator: Emulator
) -> None:
    http, auth = user_session
    starter = asyncio.create_task(auth.token(http))
    waiters = [asyncio.create_task(auth.token(http)) for _ in range(10)]
    await emulator.wait_for_token_requests(1)  # the starter's exchange is on the wire
    starter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starter
    tokens = await asyncio.gather(*waiters)
    assert all(t is tokens[0] for t in tokens)
    assert emulator.token_request_count == 1
