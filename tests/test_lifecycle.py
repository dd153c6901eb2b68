"""The session's own contract: reopening, event loops, shared middlewares, timeouts.

Trust issue items 8, 9, 11 and 12.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sfauth import AuthSession, RequestTimeoutError, SalesforceAuthMiddleware, SessionClosedError
from sfauth.testing import Emulator, EmulatorCredentials, ScriptedResponse

from .conftest import SessionFactory

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}


async def status(sf: AuthSession) -> int:
    async with sf.get(QUERY, params=SOQL) as resp:
        return resp.status


# --- item 8: a closed session opens again -----------------------------------------------------


async def test_a_session_reopened_after_close_refreshes_as_before(
    emulator: Emulator, creds: EmulatorCredentials, flow: dict[str, Any]
) -> None:
    sf = AuthSession(**flow)
    async with sf:
        assert await status(sf) == 200
    async with sf:
        assert await status(sf) == 200  # the token is kept
        emulator.expire_all_sessions()
        assert await status(sf) == 200  # and replaced when it expires
    assert emulator.token_request_count == 2
    sf.open()
    try:
        emulator.expire_all_sessions()
        token = await sf.token()
        assert (await sf.replace_token(token)).access_token != token.access_token
    finally:
        await sf.close()
    assert emulator.token_request_count == 3


# --- item 9: one session object, two event loops ----------------------------------------------


def test_one_session_in_two_successive_asyncio_runs(served: dict[str, str]) -> None:
    sf = AuthSession(
        client_id=served["client_id"],
        username=served["username"],
        private_key=Path(served["private_key_file"]),
        login_url=served["url"],
        allow_http_loopback=True,
        limit=4,  # fewer connections than callers: they queue at the send gate
    )

    async def burst() -> list[int]:
        async with sf:
            return await asyncio.gather(*(status(sf) for _ in range(20)))

    assert asyncio.run(burst()) == [200] * 20
    assert asyncio.run(burst()) == [200] * 20
    assert sf.token_requests == 1


# --- item 11: a middleware shared by two ClientSessions ---------------------------------------


async def test_closing_the_session_that_started_a_refresh_does_not_fail_the_others(
    emulator: Emulator, creds: EmulatorCredentials, flow: dict[str, Any]
) -> None:
    auth = SalesforceAuthMiddleware(**flow)
    url = f"{emulator.url}{QUERY}"
    # The first token request hangs: the refresh runs on session a's pool while b waits.
    emulator.script_token_responses([ScriptedResponse(status=503, delay=30.0)])
    async with aiohttp.ClientSession(middlewares=(auth,)) as b:
        a = aiohttp.ClientSession(middlewares=(auth,))
        first = asyncio.create_task(a.get(url, params=SOQL))
        await emulator.wait_for_token_requests(1)
        second = asyncio.create_task(b.get(url, params=SOQL))
        await asyncio.sleep(0)  # b joins the refresh in flight
        await a.close()
        with pytest.raises(SessionClosedError):
            await first
        async with await second as resp:
            assert resp.status == 200  # b logged in on its own pool instead
    assert emulator.token_request_count == 2


# --- item 12: aiohttp's "no timeout" ----------------------------------------------------------


async def test_a_total_timeout_of_zero_means_no_timeout(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(timeout=aiohttp.ClientTimeout(total=0))
    assert await status(sf) == 200
    async with sf.get(QUERY, params=SOQL, timeout=aiohttp.ClientTimeout(total=None)) as resp:
        assert resp.status == 200


async def test_a_timeout_while_waiting_for_a_token_names_the_request_and_the_token_url(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(timeout=aiohttp.ClientTimeout(total=0.2))
    emulator.script_token_responses([ScriptedResponse(status=503, delay=30.0)])
    with pytest.raises(RequestTimeoutError) as info:
        await sf.get(QUERY, params=SOQL)
    error = info.value
    assert (error.method, error.url, error.sent) == ("GET", QUERY, False)
    assert str(error) == (
        f"GET {QUERY} failed: TimeoutError: the request's total timeout ran out while "
        f"it waited for a token from {emulator.url}/services/oauth2/token"
    )


async def test_waiters_of_a_refresh_stopped_by_close_get_session_closed_even_after_reopen(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    emulator.script_token_responses([ScriptedResponse(status=503, delay=30.0)])
    waiter = asyncio.create_task(status(sf))
    await emulator.wait_for_token_requests(1)
    await sf.close()
    sf.open()  # at once: the waiter has not run since the refresh was cancelled
    with pytest.raises(SessionClosedError, match="closed while waiting for a token"):
        await waiter
    assert not waiter.cancelled()
    assert await status(sf) == 200  # a new caller starts a new refresh
    assert emulator.token_request_count == 2


async def test_the_total_timeout_covers_the_wait_for_a_token(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(timeout=aiohttp.ClientTimeout(total=1.0))
    emulator.inject_faults(1.0, endpoints={"token"}, kinds={"slow"})
    emulator.script_rest_responses([ScriptedResponse(status=200, json={}, delay=0.98)])
    with pytest.raises(RequestTimeoutError, match="the request's total timeout ran out"):
        await sf.get(QUERY, params=SOQL)
    assert emulator.token_request_count == 1  # the login took part of the second


async def test_head_after_an_expiry_is_replayed_too(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    path = "/services/data/v62.0/sobjects/Account/001000000000001AAA"
    async with sf.request("HEAD", path) as resp:
        assert resp.status == 404
    emulator.expire_all_sessions()
    async with sf.request("HEAD", path) as resp:
        assert resp.status == 404  # a 401 to HEAD has no body to say INVALID_SESSION_ID
    assert [r.status for r in emulator.requests] == [404, 401, 404]
    assert emulator.token_request_count == 2
