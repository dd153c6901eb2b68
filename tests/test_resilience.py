"""Retries, the circuit breaker, proactive refresh and API usage, against the emulator (#3)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time

import pytest
import structlog

from sfauth import (
    AuthSession,
    CircuitOpenError,
    RequestLimitError,
    RetryPolicy,
    TransientAPIError,
    TransientTokenError,
    TransportError,
)
from sfauth.testing import Emulator, ScriptedResponse

from .conftest import SessionFactory
from .fakes import FakeTime

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id, Name FROM Account LIMIT 2"}
CREATE = "/services/data/v62.0/sobjects/Account/"
UNAVAILABLE = [{"errorCode": "SERVER_UNAVAILABLE", "message": "Server temporarily unavailable"}]


def fake_policy(fake: FakeTime, **kw: float) -> RetryPolicy:
    return RetryPolicy(sleep=fake.sleep, clock=fake.clock, **kw)  # type: ignore[arg-type]


def statuses(emulator: Emulator) -> list[int]:
    return [r.status for r in emulator.requests]


# --- token endpoint ----------------------------------------------------------------------


async def test_token_500_then_200_is_one_retry(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    emulator.script_token_responses([ScriptedResponse(status=500, text="oops")])
    sf = make_session(retry=fake_policy(fake))
    token = await sf.token()
    assert token.org_id
    assert [r.status for r in emulator.token_requests] == [500, 200]
    assert len(fake.sleeps) == 1
    assert sf.token_requests == 2


async def test_invalid_grant_is_exactly_one_attempt(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    body = {"error": "invalid_grant", "error_description": "user hasn't approved this consumer"}
    emulator.script_token_responses([ScriptedResponse(status=400, json=body)])
    sf = make_session(retry=fake_policy(fake))
    with pytest.raises(Exception, match="user hasn't approved this consumer"):
        await sf.token()
    assert emulator.token_request_count == 1
    assert fake.sleeps == []


async def test_unknown_error_then_200_uses_a_fresh_assertion(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime(start=float(int(time.time())))
    body = {"error": "unknown_error", "error_description": "retry your request"}
    emulator.script_token_responses(
        [ScriptedResponse(status=400, json=body, headers={"Retry-After": "5"})]
    )
    sf = make_session(retry=fake_policy(fake, backoff_base=0.01, backoff_cap=0.01))
    # The wall clock advances with the wait.
    sf.auth._engine.manager.client.signer._clock = fake.clock
    await sf.token()
    first, second = emulator.token_requests
    assert (first.status, second.status) == (400, 200)
    assert fake.sleeps == [5.0]
    assert first.assertion != second.assertion
    assert second.claims["exp"] == first.claims["exp"] + 5  # minted at the second attempt


async def test_token_retry_after_is_honoured(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    emulator.script_token_responses(
        [ScriptedResponse(status=503, text="<html>busy</html>", headers={"Retry-After": "3"})]
    )
    sf = make_session(retry=fake_policy(fake, backoff_base=0.01, backoff_cap=0.01))
    await sf.token()
    assert fake.sleeps == [3.0]


# --- API requests --------------------------------------------------------------------------


async def test_503_with_retry_after_seconds_waits_at_least_that(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    sf = make_session(retry=fake_policy(fake, backoff_base=0.01, backoff_cap=0.01))
    await sf.token()
    emulator.script_rest_responses(
        [ScriptedResponse(status=503, json=UNAVAILABLE, headers={"Retry-After": "2"})]
    )
    async with sf.get(QUERY, params=SOQL) as resp:
        assert resp.status == 200
    assert fake.sleeps == [2.0]
    assert statuses(emulator) == [503, 200]


async def test_503_with_http_date_retry_after(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    sf = make_session(retry=fake_policy(fake, backoff_base=0.01, backoff_cap=0.01))
    await sf.token()
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    emulator.script_rest_responses(
        [ScriptedResponse(status=503, json=UNAVAILABLE, headers={"Retry-After": when})]
    )
    async with sf.get(QUERY, params=SOQL) as resp:
        assert resp.status == 200
    (wait,) = fake.sleeps
    assert 28.0 <= wait <= 30.0


async def test_total_requests_limit_is_one_attempt_and_typed(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    sf = make_session(retry=fake_policy(fake))
    await sf.token()
    body = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]
    emulator.script_rest_responses([ScriptedResponse(status=403, json=body)])
    with pytest.raises(RequestLimitError, match="24-hour API request limit is spent") as info:
        await sf.get(QUERY, params=SOQL)
    assert info.value.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert info.value.message == "TotalRequests Limit exceeded."
    assert statuses(emulator) == [403]
    assert fake.sleeps == []


async def test_concurrent_requests_limit_is_retried(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    sf = make_session(retry=fake_policy(fake))
    await sf.token()
    body = [
        {"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentRequests Limit exceeded."}
    ]
    emulator.script_rest_responses([ScriptedResponse(status=403, json=body)] * 2)
    async with sf.get(QUERY, params=SOQL) as resp:
        assert resp.status == 200
    assert statuses(emulator) == [403, 403, 200]


async def test_other_403_is_returned_untouched(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()
    body = [{"errorCode": "INSUFFICIENT_ACCESS", "message": "no"}]
    emulator.script_rest_responses([ScriptedResponse(status=403, json=body)])
    async with sf.get(QUERY, params=SOQL) as resp:
        assert resp.status == 403
        assert await resp.json() == body


async def test_exhausted_retries_raise_transient_api_error(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    sf = make_session(retry=fake_policy(fake, attempts=3))
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(status=503, json=UNAVAILABLE)] * 5)
    with pytest.raises(TransientAPIError) as info:
        await sf.get(QUERY, params=SOQL)
    assert info.value.status == 503
    assert info.value.error_code == "SERVER_UNAVAILABLE"
    assert info.value.attempts == 3
    assert str(info.value).endswith(
        "-> HTTP 503 SERVER_UNAVAILABLE: Server temporarily unavailable, 3 attempts)"
    )
    assert statuses(emulator) == [503, 503, 503]


async def test_post_503_is_not_retried_by_default(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    sf = make_session(retry=fake_policy(fake))
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(status=503, json=UNAVAILABLE)])
    async with sf.post(CREATE, json={"Name": "Once"}) as resp:
        assert resp.status == 503
    assert statuses(emulator) == [503]
    assert fake.sleeps == []


async def test_post_503_is_retried_with_the_opt_in(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    sf = make_session(retry=fake_policy(fake))
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(status=503, json=UNAVAILABLE)])
    async with sf.post(CREATE, json={"Name": "Twice"}, idempotent=True) as resp:
        assert resp.status == 201
    first, second = emulator.requests
    assert (first.status, second.status) == (503, 201)
    assert first.body == second.body == json.dumps({"Name": "Twice"}).encode()
    assert "X-Sfauth-Retry-Unsafe" not in first.headers  # the marker never leaves the client


async def test_post_whose_connection_was_refused_is_retried(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    with socket.socket() as probe:  # a port with nobody listening (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeTime()
    opened: list[str] = []

    async def sleep_then_listen(seconds: float) -> None:
        await fake.sleep(seconds)
        if not opened:
            opened.append(await emulator.add_instance(port=port))

    emulator.set_instance_url(f"http://127.0.0.1:{port}")
    sf = make_session(retry=RetryPolicy(sleep=sleep_then_listen, clock=fake.clock))
    async with sf.post(CREATE, json={"Name": "Refused first"}) as resp:
        assert resp.status == 201
    assert len(fake.sleeps) == 1
    assert [r.status for r in emulator.requests] == [201]  # the refused try never arrived


async def test_dropped_post_is_not_retried(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    sf = make_session(retry=fake_policy(fake))
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(reset=True)])
    with pytest.raises(TransportError) as info:
        await sf.post(CREATE, json={"Name": "Maybe"})
    assert info.value.sent is True
    assert info.value.attempts == 1
    assert fake.sleeps == []


async def test_dropped_get_is_retried(make_session: SessionFactory, emulator: Emulator) -> None:
    fake = FakeTime()
    sf = make_session(retry=fake_policy(fake))
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(reset=True)])
    async with sf.get(QUERY, params=SOQL) as resp:
        assert resp.status == 200
    assert statuses(emulator) == [0, 200]


async def test_cancelling_during_backoff_stops_at_once(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sleeping = asyncio.Event()

    async def long_sleep(seconds: float) -> None:
        sleeping.set()
        await asyncio.sleep(3600)

    sf = make_session(retry=RetryPolicy(sleep=long_sleep))
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(status=503, json=UNAVAILABLE)] * 3)
    task = asyncio.create_task(_get(sf))
    await sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert statuses(emulator) == [503]


async def _get(sf: AuthSession) -> int:
    async with sf.get(QUERY, params=SOQL) as resp:
        return resp.status


async def test_401_replay_resends_identical_body_and_headers(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.schema.add_field("Account", "ExtId__c", "string", external_id=True)
    sf = make_session()
    await sf.token()
    emulator.expire_all_sessions()
    headers = {"Sforce-Auto-Assign": "FALSE", "X-Trace": "abc"}
    async with sf.patch(
        "/services/data/v62.0/sobjects/Account/ExtId__c/E-1", json={"Name": "Up"}, headers=headers
    ) as resp:
        assert resp.status == 201
    first, replay = emulator.requests
    assert (first.status, replay.status) == (401, 201)
    assert first.body == replay.body
    assert first.authorization != replay.authorization
    without_auth = [
        {k: v for k, v in r.headers.items() if k.lower() != "authorization"}
        for r in (first, replay)
    ]
    assert without_auth[0] == without_auth[1]


# --- refresh failures: the circuit ---------------------------------------------------------


async def test_login_down_under_1000_callers_is_bounded_then_recovers(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    sf = make_session(
        retry=fake_policy(fake, attempts=3), failure_threshold=3, refresh_cooldown=30.0
    )
    sf.auth._engine.manager._clock = fake.clock
    down = ScriptedResponse(status=503, text="<html>maintenance</html>", content_type="text/html")
    emulator.script_token_responses([down] * 1000)

    async def call() -> BaseException | int:
        try:
            return await _get(sf)
        except (TransientTokenError, CircuitOpenError) as exc:
            return exc

    for _ in range(5):
        results = await asyncio.gather(*(call() for _ in range(1000)))
        assert all(isinstance(r, TransientTokenError | CircuitOpenError) for r in results)
    # Three refreshes of three attempts each, then the circuit opened: no more logins.
    assert emulator.token_request_count == 9
    last = results[-1]
    assert isinstance(last, CircuitOpenError)
    assert last.failures == 3
    assert isinstance(last.last_error, TransientTokenError)

    emulator.clear_scripts()  # the login endpoint recovers
    fake.now += 30.0
    assert await _get(sf) == 200
    assert emulator.token_request_count == 10


# --- proactive refresh and usage -----------------------------------------------------------


async def test_proactive_refresh_after_max_token_age(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    sf = make_session(max_token_age=3600.0)
    sf.auth._engine.manager._clock = fake.clock
    first = await sf.token()
    fake.now += 3599
    assert await _get(sf) == 200
    assert emulator.token_request_count == 1
    fake.now += 2
    assert await _get(sf) == 200
    assert emulator.token_request_count == 2
    assert (await sf.token()) is not first
    assert [r.status for r in emulator.requests] == [200, 200]  # no 401 was needed


async def test_failing_proactive_refresh_keeps_using_the_valid_token(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    fake = FakeTime()
    sf = make_session(max_token_age=60.0, retry=fake_policy(fake, attempts=2))
    sf.auth._engine.manager._clock = fake.clock
    first = await sf.token()
    fake.now += 61
    emulator.script_token_responses([ScriptedResponse(status=503, text="down")] * 2)
    with structlog.testing.capture_logs() as logs:
        assert await _get(sf) == 200
    assert emulator.token_requests[-1].status == 503
    assert emulator.requests[-1].authorization == f"Bearer {first.access_token}"
    events = [e["event"] for e in logs]
    assert "sfauth.token.proactive_refresh_failed" in events


async def test_api_usage_is_tracked_and_warned_once() -> None:
    async with Emulator(daily_api_limit=8) as emu:
        creds = emu.create_credentials(username="usage@example.com")
        async with AuthSession(
            client_id=creds.client_id,
            username=creds.username,
            private_key=creds.private_key_pem,
            login_url=emu.url,
            allow_http_loopback=True,
            usage_warning=0.125,
        ) as sf:
            with structlog.testing.capture_logs() as logs:
                for _ in range(6):
                    assert await _get(sf) == 200
            usage = sf.api_usage
    assert usage is not None
    assert (usage.used, usage.limit) == (6, 8)
    assert usage.fraction == 0.75
    warnings = [e for e in logs if e["event"] == "sfauth.limits.high"]
    # The first response is checked (1 of 8 requests used: the threshold); the usage stays
    # high, so it is not logged again (the timing of later checks: test_limits.py).
    assert warnings == [
        {
            "event": "sfauth.limits.high",
            "log_level": "warning",
            "used": 1,
            "limit": 8,
            "fraction": 0.125,
        }
    ]
