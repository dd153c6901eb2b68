"""The fast paths: once a token has worked, requests go out without an Exchange.

``AuthSession``'s requests skip aiohttp's middleware chain then (the direct path, section 7);
other clients' requests take the middleware's own fast path.

Checked from outside: what the servers see (bearer, concurrency, retries), what the caller
gets, and how many token requests were made.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, web
from aiohttp.test_utils import TestServer

from sfauth import (
    AuthSession,
    ConfigurationError,
    InvalidSessionError,
    RequestTimeoutError,
    RetryPolicy,
    SalesforceAuthMiddleware,
    SessionClosedError,
    TransportError,
)
from sfauth._gate import SendGate
from sfauth._middleware import RETRY_UNSAFE_HEADER, _Continued
from sfauth._oauth import TokenClient
from sfauth.testing import Emulator, ScriptedResponse, no_backoff

from .conftest import SessionFactory

LIMITS = "/services/data/v62.0/limits"
SOBJECTS = "/services/data/v62.0/sobjects/Account"
UNAVAILABLE = [{"errorCode": "SERVER_UNAVAILABLE", "message": "Server unavailable"}]
INVALID = [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]


class Probe:
    """An API server that counts the requests it is answering at once.

    With ``hold`` set, each request waits for a ``release()`` before it is answered.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.arrived = 0
        self.authorizations: list[str | None] = []
        self.hold = False
        self.redirect_to: str | None = None
        self._releases = asyncio.Semaphore(0)
        self._changed = asyncio.Condition()
        self.server = TestServer(self._app())

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        if request.path == "/redirect" and self.redirect_to is not None:
            raise web.HTTPFound(self.redirect_to)
        self.arrived += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        async with self._changed:
            self._changed.notify_all()
        try:
            if self.hold:
                await self._releases.acquire()
        finally:
            self.in_flight -= 1
        return web.json_response({"path": request.path})

    def release(self) -> None:
        """Let one held request be answered."""
        self._releases.release()

    async def arrivals(self, count: int) -> None:
        """Return once ``count`` requests have arrived (since the last ``reset``)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.arrived >= count)

    def reset(self) -> None:
        self.arrived = self.peak = 0
        self.authorizations.clear()


@pytest.fixture
async def probe() -> AsyncIterator[Probe]:
    probe = Probe()
    await probe.server.start_server()
    yield probe
    await probe.server.close()


async def status_of(
    sf: AuthSession, path: str = LIMITS, method: str = "GET", **kwargs: Any
) -> int:
    async with sf.request(method, path, **kwargs) as resp:
        await resp.read()
        return resp.status


def slots_in_use(sf: AuthSession) -> int:
    """The session's send slots taken now."""
    gate = sf.auth._engine.gate
    assert gate is not None
    return gate.in_use


async def release_in_waves(probe: Probe, total: int, cap: int) -> None:
    """Answer held requests one at a time, each once ``cap`` more are there (or all are)."""
    for answered in range(total):
        await probe.arrivals(min(answered + cap, total))
        probe.release()


async def held_burst(
    probe: Probe, send: Callable[[], Coroutine[Any, Any, int]], total: int
) -> list[int]:
    """Send ``total`` requests at once to a holding probe, answered two at a time; statuses.

    The probe records the most requests it saw at once (``peak``) from here on.
    """
    probe.reset()
    probe.hold = True
    requests = [asyncio.create_task(send()) for _ in range(total)]
    await release_in_waves(probe, total, cap=2)
    return list(await asyncio.gather(*requests))


# --- (1) at most max_in_flight sends at once ---------------------------------------------------


async def test_auth_session_limit_caps_requests_in_flight(
    emulator: Emulator, make_session: SessionFactory, probe: Probe
) -> None:
    emulator.set_instance_url(probe.url)
    sf = make_session(limit=2)  # two pooled connections, and so two send slots
    assert await status_of(sf) == 200  # the token has worked: the rest take the fast path
    token = await sf.token()
    assert await held_burst(probe, lambda: status_of(sf), 20) == [200] * 20
    assert probe.peak == 2
    assert probe.authorizations == [f"Bearer {token.access_token}"] * 20
    assert emulator.token_request_count == 1


async def test_max_in_flight_caps_sends_even_with_an_unlimited_pool(
    emulator: Emulator, flow: dict[str, Any], probe: Probe
) -> None:
    emulator.set_instance_url(probe.url)
    auth = SalesforceAuthMiddleware(**flow, max_in_flight=2)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, middlewares=(auth,)) as http:

        async def get() -> int:
            async with http.get(f"{probe.url}{LIMITS}") as resp:
                await resp.read()
                return resp.status

        token = await auth.token(http)
        assert await get() == 200
        assert await held_burst(probe, get, 20) == [200] * 20
    assert probe.peak == 2
    assert probe.authorizations == [f"Bearer {token.access_token}"] * 20
    assert emulator.token_request_count == 1


async def test_a_session_keeps_its_send_slots_when_another_loop_used_its_middleware(
    emulator: Emulator, make_session: SessionFactory, probe: Probe
) -> None:
    emulator.set_instance_url(probe.url)
    sf = make_session(max_in_flight=2)  # a larger pool: only the send slots cap the sends
    assert await status_of(sf) == 200

    async def own_client() -> int:  # another event loop, its own ClientSession
        async with (
            aiohttp.ClientSession(middlewares=(sf.auth,)) as http,
            http.get(f"{probe.url}{LIMITS}") as resp,
        ):
            return resp.status

    assert await asyncio.to_thread(asyncio.run, own_client()) == 200
    assert await held_burst(probe, lambda: status_of(sf), 8) == [200] * 8
    assert probe.peak == 2


async def test_without_a_cap_the_probe_sees_every_request_at_once(
    emulator: Emulator, make_session: SessionFactory, probe: Probe
) -> None:
    """The control for the two tests above: the probe does see more than two when uncapped."""
    emulator.set_instance_url(probe.url)
    sf = make_session(limit=0)  # no pool limit, hence no send gate
    assert await status_of(sf) == 200
    probe.reset()
    probe.hold = True
    requests = [asyncio.create_task(status_of(sf)) for _ in range(20)]
    await probe.arrivals(20)
    assert probe.in_flight == 20
    for _ in range(20):
        probe.release()
    assert await asyncio.gather(*requests) == [200] * 20
    assert probe.peak == 20


# --- (2) an expiry mid-stream --------------------------------------------------------------------


async def test_an_expiry_between_requests_costs_one_token_request_and_one_replay(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    assert [await status_of(sf) for _ in range(3)] == [200] * 3
    first = await sf.token()
    emulator.expire_all_sessions()
    assert [await status_of(sf) for _ in range(3)] == [200] * 3
    second = await sf.token()
    assert second.access_token != first.access_token
    assert [r.status for r in emulator.requests] == [200, 200, 200, 401, 200, 200, 200]
    bearers = [r.authorization for r in emulator.requests]
    assert bearers == [f"Bearer {first.access_token}"] * 4 + [f"Bearer {second.access_token}"] * 3
    assert emulator.token_request_count == 2


async def test_an_expiry_while_requests_are_in_flight_costs_one_token_request(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    done = 0

    async def worker(w: int) -> list[int]:
        nonlocal done
        statuses = []
        for n in range(10):
            statuses.append(await status_of(sf, headers={"X-Req": f"{w}-{n}"}))
            done += 1
            if done == 10:  # the other workers' requests keep going out meanwhile
                emulator.expire_all_sessions()
        return statuses

    assert await asyncio.gather(*(worker(w) for w in range(6))) == [[200] * 10] * 6
    assert emulator.token_request_count == 2
    by_request = collections.defaultdict(list)
    for record in emulator.requests[1:]:
        by_request[record.headers["X-Req"]].append(record.status)
    assert sorted(by_request) == sorted(f"{w}-{n}" for w in range(6) for n in range(10))
    assert {tuple(statuses) for statuses in by_request.values()} <= {(200,), (401, 200)}
    assert emulator.counters[("limits", 401)] >= 1


async def test_an_expiry_on_the_direct_path_is_replayed_there_without_an_exchange(
    emulator: Emulator, make_session: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    exchanges: list[str] = []
    new_exchange = SalesforceAuthMiddleware._new_exchange

    def counted(
        self: SalesforceAuthMiddleware,
        request: ClientRequest,
        handler: ClientHandlerType,
        *,
        opt_in: bool = False,
    ) -> Any:
        exchanges.append(request.url.path)
        return new_exchange(self, request, handler, opt_in=opt_in)

    monkeypatch.setattr(SalesforceAuthMiddleware, "_new_exchange", counted)
    sf = make_session()
    assert await status_of(sf) == 200  # the first login: an exchange in the chain
    assert exchanges == [LIMITS]
    emulator.expire_all_sessions()
    assert await status_of(sf, headers={"X-Req": "1"}) == 200
    assert exchanges == [LIMITS]  # the 401 was replayed by the direct send itself
    assert [r.status for r in emulator.requests] == [200, 401, 200]
    assert emulator.requests[-1].headers["X-Req"] == "1"
    assert emulator.token_request_count == 2
    assert slots_in_use(sf) == 0


async def test_a_direct_replay_waits_for_the_new_session_within_the_total_timeout(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session(timeout=aiohttp.ClientTimeout(total=0.5))
    assert await status_of(sf) == 200
    emulator.expire_all_sessions()
    emulator.script_token_responses([ScriptedResponse(status=503, delay=30)])
    with pytest.raises(RequestTimeoutError) as info:
        await status_of(sf)
    error = info.value
    assert str(error) == (
        f"GET {emulator.instance_url}{LIMITS} failed: TimeoutError: the request's total "
        "timeout ran out while it waited for a new session after a 401"
    )
    assert (error.sent, error.retryable) == (True, False)
    assert [r.status for r in emulator.requests] == [200, 401]
    assert slots_in_use(sf) == 0


@pytest.mark.parametrize("chain", [{}, {"raise_for_status": False}])  # direct, then chain
async def test_a_close_while_a_replay_waits_for_the_new_session_says_it_is_safe_to_resend(
    emulator: Emulator,
    make_session: SessionFactory,
    monkeypatch: pytest.MonkeyPatch,
    chain: dict[str, Any],
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    logins = HeldLogins(monkeypatch)
    emulator.expire_all_sessions()
    waiting = asyncio.create_task(status_of(sf, **chain))
    await logins.entered.wait()
    await sf.close()
    with pytest.raises(SessionClosedError) as info:
        await waiting
    assert str(info.value) == (
        f"the session was closed before GET {emulator.instance_url}{LIMITS} was sent again "
        "after a 401; Salesforce had rejected its session and done nothing with it, so it is "
        "safe to resend once the session is open again"
    )
    assert [r.status for r in emulator.requests] == [200, 401]  # not sent again
    assert slots_in_use(sf) == 0


async def test_a_direct_replay_rejected_again_names_the_url_without_its_fragment(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    emulator.script_rest_responses([ScriptedResponse(status=401, json=INVALID)] * 2)
    with pytest.raises(InvalidSessionError) as info:
        await status_of(sf, f"{LIMITS}#top")
    assert str(info.value) == (
        "Salesforce rejected the session even after a refresh and a replay (GET "
        f"{emulator.instance_url}{LIMITS} -> HTTP 401 INVALID_SESSION_ID: Session expired or "
        "invalid)"
    )
    assert info.value.url == f"{emulator.instance_url}{LIMITS}"
    assert [r.status for r in emulator.requests] == [200, 401, 401]


async def test_a_failed_refresh_during_a_direct_replay_is_retried_like_the_request(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session(retry=RetryPolicy(attempts=2))
    assert await status_of(sf) == 200
    emulator.expire_all_sessions()
    unavailable = ScriptedResponse(status=503, json={"error": "unknown_error"})
    emulator.script_token_responses([unavailable, unavailable])  # both of the login's tries
    with no_backoff():
        assert await status_of(sf) == 200  # the request's second attempt logs in
    assert emulator.token_request_count == 4
    assert [r.status for r in emulator.requests] == [200, 401, 200]


async def test_a_dropped_replay_on_the_direct_path_is_retried(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    emulator.script_rest_responses(
        [ScriptedResponse(status=401, json=INVALID), ScriptedResponse(reset=True)]
    )
    with no_backoff():
        assert await status_of(sf) == 200  # 401, refresh, replay dropped, retried
    assert [r.status for r in emulator.requests] == [200, 401, 0, 200]
    assert emulator.token_request_count == 2


async def test_the_logins_of_a_direct_replay_count_toward_the_requests_cap_on_retries(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session(retry=RetryPolicy(attempts=3))
    assert await status_of(sf) == 200
    expired = ScriptedResponse(status=401, json=INVALID)
    busy = ScriptedResponse(status=503, json=UNAVAILABLE)
    emulator.script_rest_responses([expired, busy, expired, busy, expired])
    with no_backoff(), pytest.raises(InvalidSessionError):
        await status_of(sf)
    # The direct replay's login and the retry's: MAX_REFRESHES (2), not one more.
    assert emulator.token_request_count == 3
    assert [r.status for r in emulator.requests] == [200, 401, 503, 401, 503, 401]


class HeldLogins:
    """Token requests wait until ``release()``; ``entered`` is set when the first one comes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        fetch = TokenClient.fetch

        async def held(client: TokenClient, http: aiohttp.ClientSession, *args: Any) -> Any:
            self.entered.set()
            await self.open.wait()
            return await fetch(client, http, *args)

        monkeypatch.setattr(TokenClient, "fetch", held)

    def release(self) -> None:
        self.open.set()


async def test_a_direct_replay_waits_for_the_new_session_without_holding_its_401(
    emulator: Emulator, make_session: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    logins = HeldLogins(monkeypatch)
    emulator.expire_all_sessions()
    waiting = asyncio.create_task(status_of(sf))
    await logins.entered.wait()  # the 401 was read: the request waits for the new session
    gc.collect()
    held = [o for o in gc.get_objects() if isinstance(o, ClientResponse) and o.status == 401]
    logins.release()
    assert await waiting == 200
    assert held == []  # a herd of thousands waits here: none keeps its 401 alive


async def test_a_direct_replay_sends_what_the_rejected_send_carried(
    emulator: Emulator, make_session: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    logins = HeldLogins(monkeypatch)
    emulator.expire_all_sessions()
    record = {"Name": "First"}
    params = {"page": "1"}
    headers = {"X-Page": "1"}
    sent = asyncio.create_task(
        status_of(sf, SOBJECTS, "POST", json=record, params=params, headers=headers)
    )
    await logins.entered.wait()
    record["Name"], params["page"], headers["X-Page"] = "Second", "2", "2"  # the next one
    logins.release()
    assert await sent == 201
    rejected, replayed = emulator.requests[-2:]
    assert (rejected.status, replayed.status) == (401, 201)
    assert replayed.body == rejected.body == b'{"Name": "First"}'
    assert replayed.query_string == rejected.query_string == "page=1"
    assert replayed.headers["X-Page"] == rejected.headers["X-Page"] == "1"
    assert [r["Name"] for r in emulator.records("Account")][-1] == "First"
    assert not [r for r in emulator.records("Account") if r["Name"] == "Second"]


async def test_a_direct_replay_to_a_new_instance_carries_its_host(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    old = emulator.url.split("://")[1]
    new = await emulator.add_instance()
    emulator.set_instance_url(new)
    emulator.expire_all_sessions()
    assert await status_of(sf, headers={"Host": old}) == 200
    rejected, replayed = emulator.requests[-2:]
    assert [(r.host, r.status) for r in (rejected, replayed)] == [
        (old, 401),
        (new.split("://")[1], 200),
    ]


# --- (3) the caller's own middlewares ------------------------------------------------------------

Middleware = Callable[[ClientRequest, ClientHandlerType], Awaitable[ClientResponse]]


def recording(calls: list[tuple[object, ...]]) -> Middleware:
    async def mine(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        calls.append((request.method, request.url.path, has_bearer(request)))
        request.headers["X-Mine"] = "1"
        response = await handler(request)
        calls.append(("answered", response.status))
        return response

    return mine


def has_bearer(request: ClientRequest) -> bool:
    return request.headers.get("Authorization", "").startswith("Bearer ")


async def test_the_callers_middleware_runs_and_the_request_still_gets_the_bearer(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    token = await sf.token()
    calls: list[tuple[object, ...]] = []
    assert await status_of(sf, middlewares=(recording(calls),)) == 200
    # It runs outside sfauth's middleware: before the bearer is stamped, after the answer.
    assert calls == [("GET", LIMITS, False), ("answered", 200)]
    last = emulator.requests[-1]
    assert (last.status, last.authorization) == (200, f"Bearer {token.access_token}")
    assert last.headers["X-Mine"] == "1"
    assert emulator.token_request_count == 1


async def test_a_bare_middleware_and_a_non_bool_idempotent_are_refused(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    with pytest.raises(ConfigurationError) as info:
        await status_of(sf, middlewares=recording([]))
    assert str(info.value) == (
        "middlewares must be a tuple or list of aiohttp client middlewares, such as (mine,); "
        "got function"
    )
    with pytest.raises(ConfigurationError) as info:
        sf.post(SOBJECTS, json={"Name": "Acme"}, idempotent="false")  # type: ignore[arg-type]
    assert str(info.value) == "idempotent must be True or False; got 'false'"
    assert len(emulator.requests) == 1


async def test_the_callers_middleware_sees_one_answer_when_sfauth_replays(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    emulator.expire_all_sessions()
    calls: list[tuple[object, ...]] = []
    assert await status_of(sf, middlewares=(recording(calls),)) == 200
    assert calls == [("GET", LIMITS, False), ("answered", 200)]
    assert [(r.status, r.headers.get("X-Mine")) for r in emulator.requests[1:]] == [
        (401, "1"),
        (200, "1"),
    ]
    assert emulator.token_request_count == 2


# --- (4) transient answers on the fast path ------------------------------------------------------


async def test_a_503_then_200_is_retried(emulator: Emulator, make_session: SessionFactory) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    emulator.script_rest_responses([ScriptedResponse(status=503, json=UNAVAILABLE)])
    with no_backoff():
        async with sf.get(LIMITS) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["DailyApiRequests"]["Max"] == 15000
    assert [r.status for r in emulator.requests] == [200, 503, 200]
    assert emulator.token_request_count == 1


@pytest.mark.parametrize("retry", [True, False])
async def test_connection_failures_give_their_send_slot_back(
    emulator: Emulator, make_session: SessionFactory, retry: bool
) -> None:
    # More failures than slots: a slot kept by any of them would stall the last request.
    policy = None if retry else RetryPolicy.none()
    sf = make_session(limit=2, retry=policy, timeout=aiohttp.ClientTimeout(total=10))
    assert await status_of(sf) == 200
    outcomes = []
    with no_backoff():
        for _ in range(3):
            emulator.script_rest_responses([ScriptedResponse(reset=True)])
            try:
                outcomes.append(await status_of(sf))
            except TransportError as exc:
                outcomes.append(exc.reason)
        assert await status_of(sf) == 200
    expected = 200 if retry else "ServerDisconnectedError"
    assert outcomes == [expected] * 3
    served = [200, 0, 200, 0, 200, 0, 200, 200] if retry else [200, 0, 0, 0, 200]
    assert [r.status for r in emulator.requests] == served
    assert slots_in_use(sf) == 0


async def test_a_503_to_a_post_is_returned_not_retried(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    emulator.script_rest_responses([ScriptedResponse(status=503, json=UNAVAILABLE)])
    with no_backoff():
        async with sf.post(SOBJECTS, json={"Name": "Acme"}) as resp:
            assert resp.status == 503
            assert await resp.json() == UNAVAILABLE
    assert [(r.method, r.status) for r in emulator.requests] == [("GET", 200), ("POST", 503)]


async def test_a_503_to_an_idempotent_post_is_retried(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    emulator.script_rest_responses([ScriptedResponse(status=503, json=UNAVAILABLE)])
    with no_backoff():
        async with sf.post(SOBJECTS, json={"Name": "Acme"}, idempotent=True) as resp:
            assert resp.status == 201
    assert [(r.method, r.status) for r in emulator.requests] == [
        ("GET", 200),
        ("POST", 503),
        ("POST", 201),
    ]
    assert [r["Name"] for r in emulator.records("Account")].count("Acme") == 1


# --- (5) the per-request views --------------------------------------------------------------


async def test_for_request_views_are_made_once_and_share_the_token(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    auth = sf.auth
    flags = [(r, i) for r in (False, True) for i in (False, True)]
    views = {key: auth.for_request(relative=key[0], idempotent=key[1]) for key in flags}
    for (relative, idempotent), view in views.items():
        assert auth.for_request(relative=relative, idempotent=idempotent) is view
        assert view.for_request(relative=relative, idempotent=idempotent) is view
        assert view is not auth
        assert view.settings is auth.settings
    assert len({id(view) for view in views.values()}) == 4
    assert [view.token_requests for view in views.values()] == [0] * 4
    assert [view.current_token for view in views.values()] == [None] * 4

    assert await status_of(sf) == 200
    first = auth.current_token
    assert first is not None
    assert [view.token_requests for view in views.values()] == [1] * 4
    assert all(view.current_token is first for view in views.values())
    assert all(view.api_usage == auth.api_usage for view in views.values())

    emulator.expire_all_sessions()
    assert await status_of(sf) == 200
    second = auth.current_token
    assert second is not None
    assert second is not first
    assert [view.token_requests for view in views.values()] == [2] * 4
    assert all(view.current_token is second for view in views.values())
    assert auth.token_requests == emulator.token_request_count == 2


# --- (6) other origins never get the bearer ------------------------------------------------------


async def test_another_origin_gets_no_bearer_through_a_plain_client_session(
    emulator: Emulator, flow: dict[str, Any], probe: Probe
) -> None:
    auth = SalesforceAuthMiddleware(**flow)
    async with aiohttp.ClientSession(middlewares=(auth,)) as http:
        token = await auth.token(http)
        async with http.get(f"{token.instance_url}{LIMITS}") as resp:  # the token now works
            assert resp.status == 200
        async with http.get(f"{probe.url}{LIMITS}") as resp:
            assert resp.status == 200
    assert probe.authorizations == [None]
    assert [(r.status, r.authorization) for r in emulator.requests] == [
        (200, f"Bearer {token.access_token}")
    ]
    assert emulator.token_request_count == 1


async def test_a_redirect_to_another_origin_carries_no_bearer(
    emulator: Emulator, make_session: SessionFactory, probe: Probe
) -> None:
    elsewhere = Probe()
    await elsewhere.server.start_server()
    try:
        emulator.set_instance_url(probe.url)
        probe.redirect_to = f"{elsewhere.url}/landing"
        sf = make_session()
        assert await status_of(sf) == 200
        token = await sf.token()
        async with sf.get("/redirect") as resp:
            assert resp.status == 200
            assert await resp.json() == {"path": "/landing"}
    finally:
        await elsewhere.server.close()
    assert probe.authorizations == [f"Bearer {token.access_token}"] * 2
    assert elsewhere.authorizations == [None]


# --- (7) the direct path: AuthSession's common case skips aiohttp's middleware chain -------------


@pytest.fixture
def chain_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the hops that went through the middleware (aiohttp's chain)."""
    calls: list[str] = []
    through_chain = SalesforceAuthMiddleware.__call__

    async def counted(
        self: SalesforceAuthMiddleware, request: ClientRequest, handler: ClientHandlerType
    ) -> ClientResponse:
        calls.append(request.url.path)
        return await through_chain(self, request, handler)

    monkeypatch.setattr(SalesforceAuthMiddleware, "__call__", counted)
    return calls


async def test_a_token_that_works_sends_outside_the_chain_and_the_rest_through_it(
    emulator: Emulator, make_session: SessionFactory, chain_calls: list[str]
) -> None:
    async def stream() -> AsyncIterator[bytes]:
        yield b'{"Name": "Streamed"}'

    sf = make_session()
    assert await status_of(sf) == 200  # the first login: through the chain
    assert chain_calls == [LIMITS]
    assert await status_of(sf) == 200  # the token has worked: direct
    assert await status_of(sf, headers={"Accept": "application/json"}) == 200
    async with sf.post(SOBJECTS, json={"Name": "Json"}) as resp:
        assert resp.status == 201
    assert chain_calls == [LIMITS]
    token = await sf.token()
    assert await status_of(sf, f"{token.instance_url}{LIMITS}") == 200  # absolute: checked
    async with sf.post(SOBJECTS, data=stream(), headers={"Content-Type": "application/json"}):
        pass  # a stream: the chain sends it
    async with sf.post(SOBJECTS, json={"Name": "OptIn"}, headers={RETRY_UNSAFE_HEADER: "1"}):
        pass  # the opt-in header: the chain removes it
    assert await status_of(sf, raise_for_status=True) == 200
    assert chain_calls == [LIMITS, LIMITS, SOBJECTS, SOBJECTS, LIMITS]
    bearer = f"Bearer {token.access_token}"
    assert [(r.method, r.status, r.authorization) for r in emulator.requests] == [
        ("GET", 200, bearer),
        ("GET", 200, bearer),
        ("GET", 200, bearer),
        ("POST", 201, bearer),
        ("GET", 200, bearer),
        ("POST", 201, bearer),
        ("POST", 201, bearer),
        ("GET", 200, bearer),
    ]
    assert all(RETRY_UNSAFE_HEADER not in r.headers for r in emulator.requests)
    assert [r["Name"] for r in emulator.records("Account")][-3:] == ["Json", "Streamed", "OptIn"]


async def test_the_direct_path_does_not_look_up_the_running_loop(
    make_session: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asyncio.get_running_loop() is a getpid() system call on CPython 3.11: AuthSession binds
    # the send slots to the loop its pool was opened in, which it keeps.
    sf = make_session()
    assert await status_of(sf) == 200
    looked_up: list[str] = []
    real = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        caller = sys._getframe(1).f_globals["__name__"]
        # The usage check's timer looks it up once per check_interval (1 s), not per request.
        if caller.startswith("sfauth") and caller != "sfauth._limits":
            looked_up.append(caller)
        return real()

    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    assert [await status_of(sf) for _ in range(5)] == [200] * 5
    assert looked_up == []
    assert await status_of(sf, raise_for_status=True) == 200  # through the chain: it binds
    assert looked_up == ["sfauth._middleware"]


async def test_a_redirect_on_the_instance_continues_through_the_chain_with_the_bearer(
    emulator: Emulator, make_session: SessionFactory, chain_calls: list[str]
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    token = await sf.token()
    emulator.script_rest_responses(
        [ScriptedResponse(status=307, headers={"Location": f"{emulator.url}{SOBJECTS}"})]
    )
    async with sf.get(LIMITS) as resp:
        assert resp.status == 200
        assert [r.status for r in resp.history] == [307]
        assert resp.url.path == SOBJECTS
    assert chain_calls == [LIMITS, SOBJECTS]  # the login's request, then the second hop
    bearer = f"Bearer {token.access_token}"
    assert [(r.path, r.status, r.authorization) for r in emulator.requests] == [
        (LIMITS, 200, bearer),
        (LIMITS, 307, bearer),
        (SOBJECTS, 200, bearer),
    ]
    async with sf.get(LIMITS, allow_redirects=False) as resp:  # not followed when asked so
        emulator.script_rest_responses([])
    assert emulator.requests[-1].status == 200


async def test_a_503_after_most_of_the_total_timeout_is_retried_within_what_is_left(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session(timeout=aiohttp.ClientTimeout(total=0.5))
    assert await status_of(sf) == 200
    emulator.script_rest_responses(
        [
            ScriptedResponse(status=503, json=UNAVAILABLE, delay=0.3),
            ScriptedResponse(status=200, json={"late": True}, delay=0.3),
        ]
    )
    with no_backoff(), pytest.raises(RequestTimeoutError) as info:
        await status_of(sf)
    assert info.value.sent is True
    assert [r.status for r in emulator.requests][:2] == [200, 503]
    assert slots_in_use(sf) == 0


class CutOnce:
    """An instance whose first answer declares 100 bytes of JSON and closes after 10."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.server = TestServer(self._app())

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.methods.append(request.method)
        if len(self.methods) != 2:  # the first (the login's) and the third are whole
            return web.json_response({"whole": True})
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 100
        await response.prepare(request)
        await response.write(b'{"whole": ')
        assert request.transport is not None
        request.transport.close()
        return response


@pytest.mark.parametrize(
    ("method", "outcome"), [("GET", 200), ("POST", ("ClientPayloadError", True))]
)
async def test_a_body_cut_short_is_retried_when_the_request_may_be_resent(
    emulator: Emulator, make_session: SessionFactory, method: str, outcome: object
) -> None:
    cut = CutOnce()
    await cut.server.start_server()
    try:
        emulator.set_instance_url(str(cut.server.make_url("")).rstrip("/"))
        sf = make_session()
        assert await status_of(sf) == 200
        got: object
        with no_backoff():
            try:
                async with sf.request(method, LIMITS) as resp:
                    assert await resp.json() == {"whole": True}
                    got = resp.status
            except TransportError as exc:
                got = (exc.reason, exc.sent)
        assert slots_in_use(sf) == 0
    finally:
        await cut.server.close()
    assert got == outcome
    assert cut.methods == ["GET", method, method] if outcome == 200 else ["GET", method]


async def test_a_handed_over_answer_is_closed_and_its_slot_freed_if_aiohttp_stops_first(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    view = sf.auth.for_request(relative=True, idempotent=False)
    gate = sf.auth._engine.gate
    assert gate is not None
    assert gate.try_enter()
    emulator.script_rest_responses([ScriptedResponse(status=503, json=UNAVAILABLE)])
    response = await sf.http.get(f"{emulator.url}{LIMITS}", middlewares=())
    assert response.status == 503
    rest = _Continued(view, 0.0, response=response, token=await sf.token())
    closed = aiohttp.ClientSession()
    await closed.close()
    with pytest.raises(SessionClosedError) as info:
        await rest.send(closed, "GET", f"{emulator.url}{LIMITS}?q=1", {}, 0.0)
    assert str(info.value) == (
        f"the session was closed before GET {emulator.url}{LIMITS} was answered (it had "
        "reached Salesforce: resend it only if it may be sent twice); open it again to send more"
    )
    assert response.closed
    assert gate.in_use == 0


async def test_one_shot_headers_and_cookies_reach_every_send(
    emulator: Emulator, make_session: SessionFactory, chain_calls: list[str]
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    async with sf.get(LIMITS, headers=(pair for pair in [("X-Mine", "1")])) as resp:
        assert resp.status == 200
    emulator.expire_all_sessions()
    async with sf.get(LIMITS, cookies=(pair for pair in [("c", "1")])) as resp:
        assert resp.status == 200
    assert [
        (r.status, r.headers.get("X-Mine"), r.headers.get("Cookie")) for r in emulator.requests
    ] == [
        (200, None, None),
        (200, "1", None),
        (401, None, "c=1"),
        (200, None, "c=1"),
    ]
    assert chain_calls == [LIMITS, LIMITS, LIMITS]  # an iterator is read once: the chain sends
    assert emulator.token_request_count == 2


@pytest.mark.skipif(not hasattr(aiohttp, "UploadTracker"), reason="aiohttp < 3.14: no trackers")
@pytest.mark.parametrize(
    "first",
    [
        ScriptedResponse(status=401, json=INVALID),
        ScriptedResponse(status=503, json=UNAVAILABLE),
        ScriptedResponse(status=307, headers={"Location": SOBJECTS}),
    ],
    ids=["401", "503", "307"],
)
async def test_an_argument_the_direct_path_does_not_know_takes_the_chain(
    emulator: Emulator, make_session: SessionFactory, first: ScriptedResponse
) -> None:
    sf = make_session()
    assert await status_of(sf) == 200
    emulator.script_rest_responses([first])
    tracker = aiohttp.UploadTracker()  # bound to one request: it cannot be passed twice
    with no_backoff():
        async with sf.post(
            SOBJECTS, json={"Name": "Tracked"}, idempotent=True, upload_tracker=tracker
        ) as resp:
            assert resp.status == 201
    assert tracker.upload_complete.done()
    assert [r.status for r in emulator.requests] == [200, first.status, 201]
    assert [r["Name"] for r in emulator.records("Account")].count("Tracked") == 1


async def one_held(
    emulator: Emulator, make_session: SessionFactory, probe: Probe, **options: Any
) -> tuple[AuthSession, asyncio.Task[int]]:
    """A session on ``probe`` (logged in), and a request the probe holds (answers later)."""
    emulator.set_instance_url(probe.url)
    sf = make_session(**options)
    assert await status_of(sf) == 200
    probe.reset()
    probe.hold = True
    held = asyncio.create_task(status_of(sf))
    await probe.arrivals(1)
    return sf, held


async def test_a_request_waiting_for_a_slot_times_out_unsent_and_builds_nothing(
    emulator: Emulator, make_session: SessionFactory, probe: Probe, chain_calls: list[str]
) -> None:
    sf, first = await one_held(emulator, make_session, probe, limit=1)
    with pytest.raises(RequestTimeoutError) as info:
        await status_of(sf, timeout=aiohttp.ClientTimeout(total=0.2))
    assert info.value.sent is False
    assert "waited for a send slot" in str(info.value)
    probe.hold = False
    probe.release()
    assert await first == 200
    assert probe.arrived == 1  # the request that timed out never reached the server
    assert chain_calls == [LIMITS]  # only the login's request went through the chain
    assert slots_in_use(sf) == 0
    assert await status_of(sf) == 200


async def test_a_request_that_waited_for_a_slot_has_the_wait_counted_once_in_a_retry(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    # 2 s in all: 0.8 s for the slot, a 503 after 0.6 s, a 200 after 0.1 s (1.5 s). Counting
    # the wait twice would leave the retry 2 - 0.8 - (0.8 + 0.6) < 0 s.
    sf = make_session(limit=1)
    assert await status_of(sf) == 200
    emulator.script_rest_responses(
        [
            ScriptedResponse(status=200, json={"first": True}, delay=0.8),
            ScriptedResponse(status=503, json=UNAVAILABLE, delay=0.6),
            ScriptedResponse(status=200, json={"retried": True}, delay=0.1),
        ]
    )
    first = asyncio.create_task(status_of(sf))
    await emulator.wait_for_in_flight(1)  # the first holds the only slot
    with no_backoff():
        queued = await status_of(sf, timeout=aiohttp.ClientTimeout(total=2.0))
    assert (await first, queued) == (200, 200)
    assert [r.status for r in emulator.requests][1:] == [200, 503, 200]


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> asyncio.Queue[None]:
    """One item per request that starts waiting for a send slot."""
    waiting: asyncio.Queue[None] = asyncio.Queue()
    enter = SendGate.enter

    async def counted(self: SendGate) -> None:
        if self._free == 0 or self._waiters:
            waiting.put_nowait(None)  # it queues once this returns to the event loop
        await enter(self)

    monkeypatch.setattr(SendGate, "enter", counted)
    return waiting


@pytest.mark.parametrize("reopen", [False, True])
async def test_requests_waiting_for_a_slot_get_session_closed_error_when_it_closes(
    emulator: Emulator,
    make_session: SessionFactory,
    probe: Probe,
    queued: asyncio.Queue[None],
    reopen: bool,
) -> None:
    sf, holder = await one_held(emulator, make_session, probe, limit=1)
    waiters = [asyncio.create_task(status_of(sf)) for _ in range(3)]
    for _ in waiters:
        await queued.get()
    await sf.close()
    if reopen:
        sf.open()
    results = await asyncio.gather(holder, *waiters, return_exceptions=True)
    assert [type(r) for r in results] == [SessionClosedError] * 4
    assert str(results[1]) == (
        f"the session was closed before GET {probe.url}{LIMITS} was sent; open it again to "
        "send more"
    )
    assert probe.arrived == 1
    gate = sf.auth._engine.gate
    assert gate is not None
    assert (gate.in_use, len(gate._waiters)) == (0, 0)


async def test_a_total_timeout_of_zero_or_less_is_no_timeout_for_a_queued_request(
    emulator: Emulator, make_session: SessionFactory, queued: asyncio.Queue[None]
) -> None:
    sf = make_session(limit=1)
    assert await status_of(sf) == 200
    emulator.script_rest_responses([ScriptedResponse(status=200, json={}, delay=0.2)])
    first = asyncio.create_task(status_of(sf))
    await emulator.wait_for_in_flight(1)
    waiting = [
        asyncio.create_task(status_of(sf, timeout=aiohttp.ClientTimeout(total=total)))
        for total in (0, -1)
    ]
    for _ in waiting:
        await queued.get()
    assert await asyncio.gather(first, *waiting) == [200, 200, 200]  # as aiohttp reads them


@pytest.fixture
def pooled(monkeypatch: pytest.MonkeyPatch) -> asyncio.Queue[None]:
    """One item per request that starts waiting for a connection in aiohttp's pool."""
    waiting: asyncio.Queue[None] = asyncio.Queue()
    wait = aiohttp.BaseConnector._wait_for_available_connection

    async def counted(self: aiohttp.BaseConnector, *args: Any) -> None:
        waiting.put_nowait(None)
        await wait(self, *args)

    monkeypatch.setattr(aiohttp.BaseConnector, "_wait_for_available_connection", counted)
    return waiting


async def test_a_request_waiting_for_a_pooled_connection_gets_session_closed_error(
    emulator: Emulator, make_session: SessionFactory, probe: Probe, pooled: asyncio.Queue[None]
) -> None:
    # aiohttp's close() cancels the requests waiting for a connection: not a cancellation.
    sf, holder = await one_held(emulator, make_session, probe, limit=4, limit_per_host=1)
    waiter = asyncio.create_task(status_of(sf))  # a send slot, but no connection
    await pooled.get()
    await sf.close()
    results = await asyncio.gather(holder, waiter, return_exceptions=True)
    assert [type(r) for r in results] == [SessionClosedError] * 2
    assert probe.arrived == 1
    assert slots_in_use(sf) == 0


async def test_a_post_at_the_server_when_the_session_closes_is_not_reported_unsent(
    emulator: Emulator, make_session: SessionFactory, probe: Probe
) -> None:
    sf, held = await one_held(emulator, make_session, probe)
    probe.hold = True
    post = asyncio.create_task(status_of(sf, method="POST"))
    await probe.arrivals(2)  # the POST is at the server
    await sf.close()
    results = await asyncio.gather(held, post, return_exceptions=True)
    assert [type(r) for r in results] == [SessionClosedError] * 2
    assert str(results[1]) == (
        f"the session was closed before POST {probe.url}{LIMITS} was answered (it may have "
        "reached Salesforce: resend it only if it may be sent twice); open it again to send more"
    )


async def test_a_middleware_request_waiting_for_a_connection_gets_session_closed_error(
    emulator: Emulator, flow: dict[str, Any], probe: Probe, pooled: asyncio.Queue[None]
) -> None:
    emulator.set_instance_url(probe.url)
    connector = aiohttp.TCPConnector(limit_per_host=1)
    http = aiohttp.ClientSession(
        connector=connector, middlewares=(SalesforceAuthMiddleware(**flow),)
    )

    async def get() -> int:
        async with http.get(f"{probe.url}{LIMITS}") as resp:
            await resp.read()
            return resp.status

    assert await get() == 200
    probe.reset()
    probe.hold = True
    holder = asyncio.create_task(get())
    await probe.arrivals(1)
    waiter = asyncio.create_task(get())  # waits for the only connection to the host
    await pooled.get()
    await http.close()
    results = await asyncio.gather(holder, waiter, return_exceptions=True)
    assert [type(r) for r in results] == [SessionClosedError] * 2
    assert str(results[1]) == (
        f"the session was closed before GET {probe.url}{LIMITS} was answered (it may have "
        "reached Salesforce: resend it only if it may be sent twice); open it again to send more"
    )
