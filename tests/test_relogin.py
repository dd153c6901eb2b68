"""Logins after rejections of tokens that had worked are bounded (trust issue items 3, 4).

An expiry or a revocation is not a failed login: it never opens the circuit. But every login
counts against Salesforce's hourly allowance per user, so logins that replace rejected tokens
that had worked are bounded per time window (``max_relogins`` per ``relogin_window``).
"""

from __future__ import annotations

import asyncio

import pytest

from sfauth import AuthSession, CircuitOpenError, InvalidSessionError
from sfauth.testing import Emulator

from .conftest import SessionFactory

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}
LIMITS = "/services/data/v62.0/limits"


async def status(sf: AuthSession, path: str) -> int | str:
    try:
        async with sf.get(path, params=SOQL if path == QUERY else None) as resp:
            return resp.status
    except InvalidSessionError as exc:
        return type(exc).__name__


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_replace_token_after_normal_expiries_never_opens_the_circuit(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    token = await sf.token()
    for _ in range(5):  # the README's hand-off: another client saw each token expire
        emulator.expire_all_sessions()
        token = await sf.replace_token(token)
    assert emulator.token_request_count == 6
    assert await status(sf, QUERY) == 200


async def test_replace_token_past_max_relogins_is_refused_until_the_window_moves(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(max_relogins=2, relogin_window=60.0)
    clock = Clock()
    sf.auth._engine.manager._clock = clock
    token = await sf.token()
    token = await sf.replace_token(token)
    token = await sf.replace_token(token)
    with pytest.raises(InvalidSessionError, match=r"2 logins already replaced .* 60 s"):
        await sf.replace_token(token)
    assert emulator.token_request_count == 3
    clock.now += 60.0
    assert (await sf.replace_token(token)).access_token != token.access_token
    assert emulator.token_request_count == 4


async def test_an_endpoint_that_rejects_working_sessions_cannot_cause_a_login_per_request(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.sessions_refused_at.add(LIMITS)
    sf = make_session()
    results = []
    for _ in range(50):
        results.append(await status(sf, QUERY))
        results.append(await status(sf, LIMITS))
    assert results[0::2] == [200] * 50
    assert results[1::2] == ["InvalidSessionError"] * 50
    assert emulator.token_request_count == 1 + 5  # the first login and max_relogins


async def test_concurrent_rejections_by_one_endpoint_stay_bounded(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.sessions_refused_at.add(LIMITS)
    sf = make_session(failure_threshold=100)  # only the relogin window may stop them
    assert await status(sf, QUERY) == 200
    results = await asyncio.gather(*(status(sf, p) for p in [QUERY, LIMITS] * 50))
    assert results[0::2] == [200] * 50
    assert results[1::2] == ["InvalidSessionError"] * 50
    assert emulator.token_request_count <= 1 + 5 + 2 * 5  # relogins, and each one's replay
    assert await status(sf, QUERY) == 200


async def test_fresh_tokens_rejected_before_they_work_still_open_the_circuit(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(refresh_cooldown=60.0)
    assert await status(sf, QUERY) == 200
    emulator.always_401 = True
    for _ in range(3):  # each: a refresh whose fresh token is rejected at once
        assert await status(sf, QUERY) == "InvalidSessionError"
    with pytest.raises(CircuitOpenError):
        async with sf.get(QUERY, params=SOQL):
            pass
    assert emulator.token_request_count == 4  # 1 + 3 rejected fresh tokens, then no more


@pytest.mark.parametrize("pattern", ["X", "XG", "XXG", "XXXG", "XGG"])
async def test_no_pattern_of_requests_gets_past_max_relogins(
    make_session: SessionFactory, emulator: Emulator, pattern: str
) -> None:
    emulator.sessions_refused_at.add(LIMITS)
    sf = make_session(max_relogins=3, failure_threshold=100)
    assert await status(sf, QUERY) == 200
    for _ in range(10):
        for step in pattern:
            await status(sf, LIMITS if step == "X" else QUERY)
    assert emulator.token_request_count == 1 + 3
    assert await status(sf, QUERY) == 200  # the working session was never given up


async def test_a_token_that_works_closes_the_circuit(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.sessions_refused_at.add(LIMITS)
    sf = make_session(refresh_cooldown=60.0)
    assert await status(sf, QUERY) == 200
    assert [await status(sf, LIMITS) for _ in range(3)] == ["InvalidSessionError"] * 3
    assert await status(sf, QUERY) == 200  # the current token works: the circuit is closed
    emulator.expire_all_sessions()  # an ordinary expiry is then an ordinary refresh
    assert await status(sf, QUERY) == 200
