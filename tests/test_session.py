"""AuthSession against the emulator over real sockets (design.md sections 2-3, issue #2)."""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

from sfauth import (
    AuthSession,
    CircuitOpenError,
    CrossOriginError,
    InvalidClientError,
    InvalidGrantError,
    InvalidSessionError,
    RestApiNotAllowedError,
    RetryPolicy,
    SalesforceAuthMiddleware,
    SessionClosedError,
    SFAuthError,
    Token,
    TokenEndpointError,
    TransientTokenError,
    UnsupportedGrantTypeError,
)
from sfauth._assertion import AssertionSigner
from sfauth._oauth import TokenClient
from sfauth.testing import Emulator, EmulatorCredentials, ScriptedResponse

from .conftest import SessionFactory

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id, Name FROM Account LIMIT 2"}


async def query(sf: AuthSession) -> int:
    async with sf.get(QUERY, params=SOQL) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return len(body["records"])


async def test_token_shape(
    make_session: SessionFactory, emulator: Emulator, creds: EmulatorCredentials
) -> None:
    sf = make_session()
    token = await sf.token()
    assert isinstance(token, Token)
    assert token.instance_url == emulator.url
    assert token.org_id == creds.org_id
    assert token.user_id == creds.user_id
    assert token.id == f"{emulator.url}/id/{creds.org_id}/{creds.user_id}"
    assert token.token_type == "Bearer"
    assert token.scope == "web openid api full"
    assert await sf.token() is token
    assert emulator.token_request_count == 1


async def test_a_request_after_the_aiohttp_session_was_closed_says_so(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    assert await query(sf) == 2  # a token in hand: the next request goes straight to aiohttp
    await sf.http.close()
    with pytest.raises(SessionClosedError) as info:
        await query(sf)
    assert str(info.value) == (
        "the session was closed before GET "
        f"{emulator.url}/services/data/v62.0/query was sent; open it again to send more"
    )
    assert emulator.counters[("query", 200)] == 1
    sf.open()
    assert await query(sf) == 2


@pytest.mark.parametrize("marks", [{}, {"long_running": True}])
async def test_a_request_used_with_a_plain_with_says_to_use_async_with(
    make_session: SessionFactory, emulator: Emulator, marks: dict[str, bool]
) -> None:
    sf = make_session()
    request = sf.get("/services/data/v62.0/limits", **marks)
    with pytest.raises(TypeError) as info, request:
        pass
    assert str(info.value) == (
        "a request of an AuthSession is asynchronous: use `async with sf.get(...) as resp:` "
        "(or `resp = await sf.get(...)`, then `resp.release()`), not `with`"
    )
    assert emulator.token_request_count == 0  # nothing was sent


async def test_1000_concurrent_first_requests_make_one_token_request(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    results = await asyncio.gather(*(query(sf) for _ in range(1000)))
    assert results == [2] * 1000
    assert emulator.token_request_count == 1
    assert sf.token_requests == 1
    assert emulator.counters[("query", 200)] == 1000


async def test_expiry_with_1000_in_flight_makes_exactly_one_more_token_request(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(limit=50)
    await sf.token()
    done = 0

    async def one() -> int:
        nonlocal done
        n = await query(sf)
        done += 1
        if done == 100:  # 900 requests are still queued or on the wire
            emulator.expire_all_sessions()
        return n

    results = await asyncio.gather(*(one() for _ in range(1000)))
    assert results == [2] * 1000
    assert emulator.token_request_count == 2
    assert emulator.counters[("query", 401)] > 0  # the expiry really hit requests in flight
    assert emulator.counters[("query", 200)] == 1000


async def test_401_for_an_already_replaced_token_does_not_refresh_again(
    emulator: Emulator, creds: EmulatorCredentials, flow: dict[str, Any]
) -> None:
    auth = SalesforceAuthMiddleware(**flow)
    hold = asyncio.Event()
    held = asyncio.Event()

    async def gate(req: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        if req.headers.get("X-Hold") and not hold.is_set():
            held.set()
            await hold.wait()
        return await handler(req)

    async with aiohttp.ClientSession(middlewares=(auth, gate)) as http:
        first = await auth.token(http)
        emulator.expire_all_sessions()
        url = f"{first.instance_url}{QUERY}"
        # B is stamped with the first token, then held before it reaches the wire.
        b = asyncio.ensure_future(http.get(url, params=SOQL, headers={"X-Hold": "1"}))
        await held.wait()
        async with http.get(url, params=SOQL) as a:  # 401 -> refresh -> replay
            assert a.status == 200
        second = auth.current_token
        assert second is not None
        assert second is not first
        assert emulator.token_request_count == 2
        hold.set()
        async with await b as resp:  # 401 for the replaced token -> replay, no refresh
            assert resp.status == 200
    assert emulator.token_request_count == 2
    sent = [(r.status, r.authorization) for r in emulator.requests]
    assert sent == [
        (401, f"Bearer {first.access_token}"),  # A
        (200, f"Bearer {second.access_token}"),  # A replayed
        (401, f"Bearer {first.access_token}"),  # B, stale
        (200, f"Bearer {second.access_token}"),  # B replayed without a new login
    ]


async def test_replay_meeting_a_second_invalidation_of_a_working_token_is_replayed_again(
    emulator: Emulator, creds: EmulatorCredentials, flow: dict[str, Any]
) -> None:
    auth = SalesforceAuthMiddleware(**flow)
    sends = 0
    held = asyncio.Event()
    release = asyncio.Event()

    async def gate(req: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        nonlocal sends
        if req.headers.get("X-Hold"):
            sends += 1
            if sends == 2:  # B's replay, already stamped with the new token
                held.set()
                await release.wait()
        return await handler(req)

    async with aiohttp.ClientSession(middlewares=(auth, gate)) as http:
        first = await auth.token(http)
        url = f"{first.instance_url}{QUERY}"
        emulator.expire_all_sessions()
        b = asyncio.ensure_future(http.get(url, params=SOQL, headers={"X-Hold": "1"}))
        await held.wait()
        second = auth.current_token
        assert second is not None
        assert second is not first
        async with http.get(url, params=SOQL) as a:  # the new token works for A ...
            assert a.status == 200
        assert emulator.revoke(second.access_token)  # ... then is revoked
        release.set()
        async with await b as resp:
            assert resp.status == 200
    assert emulator.token_request_count == 3
    assert [r.status for r in emulator.requests] == [401, 200, 401, 200]


async def test_cancelling_the_refresh_starter_does_not_cancel_the_refresh(
    make_session: SessionFactory, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sf = make_session()
    original = TokenClient.fetch
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow_fetch(
        self: TokenClient, http: aiohttp.ClientSession, assertion: str | None = None
    ) -> Token:
        started.set()
        await release.wait()  # the exchange is held until the starter is cancelled
        return await original(self, http, assertion)

    monkeypatch.setattr(TokenClient, "fetch", slow_fetch)
    starter = asyncio.create_task(sf.token())
    await started.wait()
    waiters = [asyncio.create_task(sf.token()) for _ in range(10)]
    starter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starter
    release.set()
    tokens = await asyncio.gather(*waiters)
    assert all(t is tokens[0] for t in tokens)
    assert emulator.token_request_count == 1
    assert await query(sf) == 2


async def test_api_answering_401_forever_is_bounded(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    emulator.always_401 = True

    async def tagged(i: int) -> int:
        async with sf.get(QUERY, params=SOQL, headers={"X-Req": str(i)}) as resp:
            return resp.status

    results = await asyncio.gather(*(tagged(i) for i in range(1000)), return_exceptions=True)
    assert all(isinstance(r, InvalidSessionError | CircuitOpenError) for r in results)
    rejected = [r for r in results if isinstance(r, InvalidSessionError)]
    assert rejected
    assert rejected[0].error_code == "INVALID_SESSION_ID"
    assert rejected[0].message == "Session expired or invalid"
    assert rejected[0].status == 401
    # Logins stop at failure_threshold (3) fresh tokens rejected before they ever worked.
    assert emulator.token_request_count == 3
    sends = collections.Counter(r.headers["X-Req"] for r in emulator.requests)
    assert len(sends) == 1000
    assert max(sends.values()) == 2  # sent once, replayed at most once

    # The circuit is open: later requests fail fast, one send each, no login.
    before = len(emulator.requests)
    for _ in range(5):
        with pytest.raises(CircuitOpenError, match=r"not logging in again for \d+\.\d s") as info:
            await query(sf)
        assert info.value.failures == 3
        assert isinstance(info.value.last_error, InvalidSessionError)
    assert emulator.token_request_count == 3
    assert len(emulator.requests) == before + 5


async def test_refresh_allowed_again_after_cooldown(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(refresh_cooldown=0.0)
    emulator.always_401 = True
    with pytest.raises(InvalidSessionError, match="even after a refresh"):
        await query(sf)
    emulator.always_401 = False
    emulator.expire_all_sessions()
    assert await query(sf) == 2
    assert emulator.token_request_count == 3


async def test_session_not_valid_for_rest_api_is_not_refreshed(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    emulator.reject_rest_api = True
    with pytest.raises(RestApiNotAllowedError) as info:
        await query(sf)
    assert info.value.message == "This session is not valid for use with the REST API"
    assert "give the connected app the 'api' OAuth scope" in str(info.value)
    assert emulator.counters[("query", 401)] == 1
    assert emulator.token_request_count == 1


async def test_replay_and_later_requests_follow_a_new_instance_url(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    old = emulator.url
    assert await query(sf) == 2
    new = await emulator.add_instance()
    assert new != old
    emulator.set_instance_url(new)
    emulator.expire_all_sessions()
    assert await query(sf) == 2
    assert (await sf.token()).instance_url == new
    assert await query(sf) == 2
    old_host, new_host = old.split("://")[1], new.split("://")[1]
    assert [(r.host, r.status) for r in emulator.requests] == [
        (old_host, 200),
        (old_host, 401),
        (new_host, 200),  # the replay went to the new origin
        (new_host, 200),
    ]


class CountedInstance:
    """An instance over keep-alive HTTP/1.1 that counts its open connections.

    Each GET is answered 200 ``{}`` (the next ``rejections`` ones 401 ``INVALID_SESSION_ID``),
    after ``together`` requests have arrived (so that many connections are opened).
    """

    def __init__(self, together: int) -> None:
        self.open = 0
        self.accepted = 0
        self.arrived = 0
        self.rejections = 0
        self._together = together
        self._changed = asyncio.Condition()
        self.url = ""

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await self._count(open=1)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await self._count(arrived=1)
                async with self._changed:
                    await self._changed.wait_for(lambda: self.arrived >= self._together)
                status, body = ("200 OK", b"{}")
                if self.rejections:
                    self.rejections -= 1
                    status = "401 Unauthorized"
                    body = b'[{"errorCode": "INVALID_SESSION_ID", "message": "x"}]'
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        finally:
            writer.close()
            await self._count(open=-1)

    async def _count(self, open: int = 0, arrived: int = 0) -> None:
        async with self._changed:
            self.open += open
            self.arrived += arrived
            self._changed.notify_all()

    async def all_closed(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.open == 0)


async def test_a_move_closes_the_pooled_connections_to_the_instance_the_org_left(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    old = CountedInstance(together=2)
    server = await old.start()
    try:
        emulator.set_instance_url(old.url)
        sf = make_session()
        path = "/services/data/v62.0/limits"
        first = await asyncio.gather(_status(sf, path), _status(sf, path))
        assert (first, old.open) == ([200, 200], 2)  # two connections, idle in the pool
        old.rejections = 1
        emulator.set_instance_url(emulator.url)  # the org moves; its session there is gone
        assert await _status(sf, path) == 200  # 401 at the old instance, replayed at the new
        assert (await sf.token()).instance_url == emulator.url
        async with asyncio.timeout(5):  # not sf's 30 s keepalive_timeout
            await old.all_closed()
    finally:
        server.close()
        await server.wait_closed()
    assert emulator.requests[-1].status == 200
    assert emulator.token_request_count == 2


async def test_a_refresh_to_the_same_instance_spelled_otherwise_keeps_its_connections(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    instance = CountedInstance(together=2)
    server = await instance.start()
    try:
        emulator.set_instance_url(instance.url)
        sf = make_session()
        path = "/services/data/v62.0/limits"
        assert await asyncio.gather(_status(sf, path), _status(sf, path)) == [200, 200]
        instance.rejections = 1
        emulator.set_instance_url(instance.url.replace("http:", "HTTP:"))  # the same origin
        assert await _status(sf, path) == 200  # 401, refresh, replay
        assert emulator.token_request_count == 2
        assert (instance.accepted, instance.open) == (2, 2)  # the replay used a pooled one
    finally:
        server.close()
        await server.wait_closed()


async def _status(sf: AuthSession, path: str) -> int:
    async with sf.get(path) as resp:
        await resp.read()
        return resp.status


async def test_401_replay_resends_the_identical_body(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()
    emulator.expire_all_sessions()
    payload = {"Name": "Replayed Co", "Industry": "Energy"}
    async with sf.post("/services/data/v62.0/sobjects/Account/", json=payload) as resp:
        assert resp.status == 201
        created = await resp.json()
    first, replay = emulator.requests[-2:]
    assert (first.status, replay.status) == (401, 201)
    assert first.body == replay.body == json.dumps(payload).encode()
    assert first.headers["Content-Type"] == replay.headers["Content-Type"]
    assert [r["Name"] for r in emulator.records("Account") if r["Id"] == created["id"]] == [
        "Replayed Co"
    ]


async def test_my_domain_token_url_keeps_login_audience(
    make_session: SessionFactory, emulator: Emulator, creds: EmulatorCredentials
) -> None:
    sf = make_session()  # the emulator plays the My Domain host
    await sf.token()
    (record,) = emulator.token_requests
    assert record.path == "/services/oauth2/token"
    assert record.host == emulator.url.split("://")[1]
    assert record.content_type == "application/x-www-form-urlencoded"
    assert record.form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert record.claims["aud"] == "https://login.salesforce.com"
    assert record.claims["iss"] == creds.client_id
    assert record.claims["sub"] == creds.username


async def test_explicit_audience_is_sent(make_session: SessionFactory, emulator: Emulator) -> None:
    sf = make_session(audience=emulator.url)
    await sf.token()
    assert emulator.token_requests[0].claims["aud"] == emulator.url


async def test_each_token_request_mints_a_fresh_assertion(
    make_session: SessionFactory, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    minted: list[str] = []
    original = AssertionSigner.mint

    def spy(self: AssertionSigner) -> str:
        minted.append(original(self))
        return minted[-1]

    monkeypatch.setattr(AssertionSigner, "mint", spy)
    sf = make_session()
    await sf.token()
    emulator.expire_all_sessions()
    assert await query(sf) == 2
    assert [r.assertion for r in emulator.token_requests] == minted
    assert len(minted) == 2
    assert jwt.get_unverified_header(minted[1]) == {"alg": "RS256", "typ": "JWT"}


# --- the token endpoint's refusals, end to end -------------------------------------------


async def test_wrong_key_is_invalid_assertion(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    other = emulator.create_credentials(username="other@example.com")
    sf = make_session(private_key=other.private_key_pem)
    with pytest.raises(InvalidGrantError) as info:
        await sf.token()
    assert (info.value.error, info.value.error_description) == (
        "invalid_grant",
        "invalid assertion",
    )
    assert "does not match the certificate" in info.value.hint
    assert info.value.token_url == f"{emulator.url}/services/oauth2/token"
    assert info.value.audience == "https://login.salesforce.com"


async def test_unknown_client_id(make_session: SessionFactory) -> None:
    sf = make_session(client_id="3MVG9-no-such-app")
    with pytest.raises(InvalidClientError, match="invalid_client_id: client identifier invalid"):
        await sf.token()


async def test_user_not_approved(
    make_session: SessionFactory, emulator: Emulator, creds: EmulatorCredentials
) -> None:
    emulator.register_user("stranger@example.com", client_id=creds.client_id, approved=False)
    sf = make_session(username="stranger@example.com")
    with pytest.raises(InvalidGrantError, match="user hasn't approved this consumer") as info:
        await sf.token()
    assert "Pre-authorize the user's profile or permission set" in str(info.value)


async def test_inactive_user(
    make_session: SessionFactory, emulator: Emulator, creds: EmulatorCredentials
) -> None:
    emulator.register_user("gone@example.com", client_id=creds.client_id, active=False)
    sf = make_session(username="gone@example.com")
    with pytest.raises(InvalidGrantError, match="inactive user"):
        await sf.token()


async def test_wrong_audience(make_session: SessionFactory) -> None:
    sf = make_session(audience="https://elsewhere.example.com")
    with pytest.raises(InvalidGrantError, match="audience is invalid") as info:
        await sf.token()
    assert info.value.audience == "https://elsewhere.example.com"


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "expired authorization code"},
            InvalidGrantError,
        ),
        (
            400,
            {
                "error": "app_not_found",
                "error_description": "External client app is not installed in this org",
            },
            InvalidClientError,
        ),
        (
            400,
            {
                "error": "invalid_app_access",
                "error_description": "user is not admin approved to access this app",
            },
            InvalidClientError,
        ),
        (
            400,
            {"error": "unsupported_grant_type", "error_description": "grant type not supported"},
            UnsupportedGrantTypeError,
        ),
        (
            400,
            {"error": "unknown_error", "error_description": "retry your request"},
            TransientTokenError,
        ),
    ],
)
async def test_scripted_token_errors(
    make_session: SessionFactory,
    emulator: Emulator,
    status: int,
    body: dict[str, str],
    cls: type[TokenEndpointError],
) -> None:
    emulator.script_token_responses([ScriptedResponse(status=status, json=body)])
    sf = make_session(retry=RetryPolicy.none())
    with pytest.raises(cls) as info:
        await sf.token()
    assert info.value.error == body["error"]
    assert info.value.error_description == body["error_description"]
    assert emulator.token_request_count == 1


async def test_maintenance_page_is_transient(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.script_token_responses(
        [
            ScriptedResponse(
                status=503, text="<html>Down for maintenance</html>", content_type="text/html"
            )
        ]
    )
    sf = make_session(retry=RetryPolicy.none())
    with pytest.raises(TransientTokenError, match="HTTP 503 with an HTML page"):
        await sf.token()


async def test_all_waiters_of_a_failed_refresh_get_the_same_error(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.script_token_responses(
        [
            ScriptedResponse(
                status=400, json={"error": "invalid_grant", "error_description": "inactive user"}
            )
        ]
    )
    sf = make_session()
    results = await asyncio.gather(*(sf.token() for _ in range(50)), return_exceptions=True)
    assert all(r is results[0] for r in results)
    assert isinstance(results[0], InvalidGrantError)
    assert emulator.token_request_count == 1
    # The next caller may try again.
    assert (await sf.token()).org_id
    assert emulator.token_request_count == 2


async def test_connection_refused_is_transient(creds: EmulatorCredentials) -> None:
    async with Emulator() as dead:
        url = dead.url
    async with AuthSession(
        client_id=creds.client_id,
        username=creds.username,
        private_key=creds.private_key_pem,
        login_url=url,
        allow_http_loopback=True,
    ) as sf:
        with pytest.raises(TransientTokenError, match="connection_error: ClientConnectorError"):
            await sf.token()


# --- where the bearer goes ----------------------------------------------------------------


@pytest.mark.parametrize("target", ["https://other.example/x", "//other.example/x"])
async def test_other_origins_are_refused_before_sending(
    make_session: SessionFactory, emulator: Emulator, target: str
) -> None:
    sf = make_session()
    await sf.token()
    with pytest.raises(CrossOriginError, match="requests go only to the org's instance_url"):
        await sf.get(target)
    assert emulator.requests == []


async def test_absolute_url_on_the_instance_is_allowed(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    token = await sf.token()
    async with sf.get(f"{token.instance_url}/services/data/v62.0/limits") as resp:
        assert resp.status == 200


async def test_closed_session_says_how_to_open_it(make_session: SessionFactory) -> None:
    sf = make_session()
    await sf.close()
    with pytest.raises(SFAuthError, match=r"use `async with AuthSession\(...\)`"):
        await sf.token()


async def test_repr_has_no_secrets(
    make_session: SessionFactory, creds: EmulatorCredentials
) -> None:
    sf = make_session()
    token = await sf.token()
    for text in (repr(sf), repr(sf.auth), repr(token)):
        assert token.access_token not in text
        assert "PRIVATE KEY" not in text
    assert repr(sf).startswith(f"AuthSession(client_id={creds.client_id!r}")
