"""No secret leaks, no bearer to the wrong host, clear errors for bad input (issue #6)."""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
import structlog
from aiohttp import web

from sfauth import (
    AuthSession,
    ConfigurationError,
    RestApiNotAllowedError,
    RetryPolicy,
    SessionClosedError,
    SessionError,
    SFAuthError,
    Token,
    TokenResponseError,
    redact_secrets,
)
from sfauth._assertion import AssertionSigner
from sfauth._oauth import TokenClient
from sfauth.testing import Emulator, EmulatorCredentials, ScriptedResponse, no_backoff

from .conftest import (
    SessionFactory,
    fake_session_id,
    pem_block,
    pem_header,
    start_garbage_server,
)

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}


# --- redaction -----------------------------------------------------------------------------

SESSION_ID = fake_session_id()
SECRET_PART = SESSION_ID.split("!", 1)[1]
KEY_BODY = secrets.token_hex(24)
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl-_x"


class Info(NamedTuple):
    url: str
    headers: dict[str, str]


def test_redact_secrets_masks_keys_and_shapes_everywhere() -> None:
    event: dict[str, Any] = {
        "event": f"calling with {SESSION_ID}",
        "Authorization": f"Bearer {SESSION_ID}",
        "access_token": "anything",
        "nested": {"deeper": [{"assertion": JWT}, f"x {JWT} y", (SESSION_ID,)]},
        "raw": SESSION_ID.encode(),
        "encoded": SESSION_ID.replace("!", "%21"),
        "set": {SESSION_ID},
        "info": Info("https://x", {"Proxy-Authorization": "Basic abc", "cookie": "sid=1"}),
        "pem": pem_block(KEY_BODY),
        "exc": ValueError(f"boom {SESSION_ID}"),
        "count": 3,
    }
    out = redact_secrets(None, "info", event)
    text = repr(out)
    for secret in (SESSION_ID, JWT, SECRET_PART, KEY_BODY, "Basic abc", "sid=1"):
        assert secret not in text
    assert out["event"] == "calling with <redacted>"
    assert out["Authorization"] == "<redacted>"
    assert out["info"] == [
        "https://x",
        {"Proxy-Authorization": "<redacted>", "cookie": "<redacted>"},
    ]
    assert out["exc"] == "ValueError: boom <redacted>"
    assert out["count"] == 3


def test_redact_secrets_replaces_what_is_nested_too_deep() -> None:
    deep: Any = SESSION_ID
    for _ in range(20):
        deep = [deep]
    out = redact_secrets(None, "info", {"event": "x", "deep": deep})
    assert SESSION_ID not in repr(out)


# --- the canary ----------------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Render every event at debug level, tracebacks included, as the README documents."""
    buffer = io.StringIO()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(buffer),
    )
    try:
        yield buffer
    finally:
        structlog.reset_defaults()


def _pieces(secret: str) -> list[str]:
    """The secret and its base64 pieces: JWT segments, PEM lines, a session id's secret part.

    The part of a session id before ``!`` is the org id, which is not a secret.
    """
    if "!" in secret and "\n" not in secret:
        return [secret, secret.split("!", 1)[1]]
    parts = [secret, *re.split(r"[.\n]", secret)]
    return [p for p in parts if len(p) >= 12 and "BEGIN" not in p and "END" not in p]


async def test_canary_no_secret_in_logs_errors_or_reprs(
    captured: io.StringIO,
    emulator: Emulator,
    creds: EmulatorCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens: list[str] = []
    assertions: list[str] = []
    original_fetch, original_mint = TokenClient.fetch, AssertionSigner.mint

    async def fetch(
        self: TokenClient, http: aiohttp.ClientSession, assertion: str | None = None
    ) -> Token:
        token = await original_fetch(self, http, assertion)
        tokens.append(token.access_token)
        return token

    def mint(self: AssertionSigner) -> str:
        assertions.append(original_mint(self))
        return assertions[-1]

    monkeypatch.setattr(TokenClient, "fetch", fetch)
    monkeypatch.setattr(AssertionSigner, "mint", mint)
    passphrase = "canary-Passphrase-42"
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(creds.private_key_pem, None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    errors: list[BaseException] = []
    reprs: list[str] = []

    async def expect(coro: Any) -> None:
        try:
            async with coro as resp:
                await resp.read()
        except SFAuthError as exc:
            errors.append(exc)

    with no_backoff():
        async with AuthSession(
            client_id=creds.client_id,
            username=creds.username,
            private_key=encrypted,
            passphrase=passphrase,
            login_url=emulator.url,
            allow_http_loopback=True,
            retry=RetryPolicy(attempts=2),
            refresh_cooldown=0,
        ) as sf:
            await expect(sf.get(QUERY, params=SOQL))  # success
            emulator.expire_all_sessions()
            await expect(sf.get(QUERY, params=SOQL))  # refresh + replay
            emulator.script_rest_responses(
                [ScriptedResponse(status=503, json=[{"errorCode": "SERVER_UNAVAILABLE"}])] * 2
            )
            await expect(sf.get(QUERY, params=SOQL))  # retries exhausted
            emulator.script_rest_responses([ScriptedResponse(reset=True)] * 2)
            await expect(sf.get(QUERY, params=SOQL))  # transport errors
            emulator.reject_rest_api = True
            await expect(sf.get(QUERY, params=SOQL))  # not valid for the REST API
            emulator.reject_rest_api = False
            emulator.always_401 = True
            await expect(sf.get(QUERY, params=SOQL))  # rejected after refresh
            emulator.always_401 = False
            emulator.expire_all_sessions()
            body = {"error": "invalid_grant", "error_description": f"bad {assertions[0]}"}
            emulator.script_token_responses([ScriptedResponse(status=400, json=body)])
            await expect(sf.get(QUERY, params=SOQL))  # refused login echoing the assertion
            reprs += [repr(sf), repr(sf.auth), repr(sf.auth.current_token), repr(creds)]
            reprs += [repr(r) for r in emulator.requests + emulator.token_requests]  # type: ignore[operator]
    with pytest.raises(SFAuthError) as info:
        AuthSession(
            client_id="x",
            username="y",
            private_key=encrypted,
            passphrase="wrong",
            login_url=emulator.url,
            allow_http_loopback=True,
        )
    errors.append(info.value)

    assert tokens
    assert len(assertions) >= 3
    assert {type(e).__name__ for e in errors} >= {
        "TransientAPIError",
        "TransportError",
        "RestApiNotAllowedError",
        "InvalidSessionError",
        "InvalidGrantError",
        "PrivateKeyError",
    }
    texts = [captured.getvalue(), *reprs]
    for exc in errors:
        texts += [str(exc), repr(exc), str(exc.__cause__), str(exc.__context__)]
        texts += [str(getattr(exc, attr, "")) for attr in ("message", "error_description", "hint")]
    haystack = "\n".join(texts)
    assert "sfauth.token.obtained" in haystack  # the logs were really captured
    secrets = [
        *tokens,
        *assertions,
        passphrase,
        creds.private_key_pem.decode(),
        encrypted.decode(),
    ]
    for secret in secrets:
        for piece in _pieces(secret):
            assert piece not in haystack, f"leaked: {piece[:8]}…"


# --- bearer scoping -------------------------------------------------------------------------


async def test_redirect_to_another_origin_arrives_without_authorization(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    other = await emulator.add_instance()  # a second origin (another port)
    sf = make_session()
    await sf.token()
    emulator.script_rest_responses(
        [ScriptedResponse(status=302, headers={"Location": f"{other}/services/data/"})]
    )
    async with sf.get(QUERY, params=SOQL) as resp:
        assert resp.status == 200
    first, second = emulator.requests
    assert first.status == 302
    assert first.authorization is not None
    assert second.host == other.split("://")[1]
    assert second.authorization is None
    assert "Authorization" not in second.headers


async def test_redirect_back_to_the_instance_gets_the_bearer_again(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    token = await sf.token()
    emulator.script_rest_responses(
        [ScriptedResponse(status=307, headers={"Location": f"{emulator.url}{QUERY}?q=x"})]
    )
    async with sf.get("/services/data/v62.0/limits") as resp:
        assert resp.status == 400  # the emulator's MALFORMED_QUERY for q=x
    assert [r.authorization for r in emulator.requests] == [f"Bearer {token.access_token}"] * 2


@pytest.mark.parametrize(
    "target",
    [
        "https://other.example/x",
        "//other.example/x",
        "http://other.example/x",
        "https://user:pw@other.example/x",
        "http:/x",
    ],
)
async def test_other_origins_are_refused_with_no_connection(
    make_session: SessionFactory, emulator: Emulator, target: str
) -> None:
    sf = make_session()
    await sf.token()
    with pytest.raises((SFAuthError, ValueError)) as info:
        await sf.get(target)
    assert isinstance(info.value, SFAuthError)
    assert emulator.requests == []


async def test_middleware_leaves_unrelated_hosts_alone(
    emulator: Emulator, creds: EmulatorCredentials, flow: dict[str, Any]
) -> None:
    from sfauth import SalesforceAuthMiddleware

    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    auth = SalesforceAuthMiddleware(**flow)
    try:
        async with aiohttp.ClientSession(middlewares=(auth,)) as http:
            await auth.token(http)
            async with http.get(f"http://127.0.0.1:{port}/") as resp:
                assert await resp.text() == "ok"
    finally:
        await runner.cleanup()
    assert seen == [None]
    assert emulator.token_request_count == 1


async def test_http_instance_url_is_rejected_without_the_opt_in(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    body = {
        "access_token": "00D000000000001AAA!AQ0token",
        "instance_url": "http://na1.salesforce.com",
        "id": "https://login.salesforce.com/id/00D000000000001AAA/005000000000001AAA",
        "token_type": "Bearer",
    }
    emulator.script_token_responses([ScriptedResponse(status=200, json=body)])
    async with AuthSession(
        client_id=creds.client_id,
        username=creds.username,
        private_key=creds.private_key_pem,
        login_url=emulator.url,
        allow_http_loopback=True,
    ) as sf:
        with pytest.raises(TokenResponseError, match="is not https"):
            await sf.token()


# --- bad token responses, end to end --------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "phrase"),
    [
        (ScriptedResponse(status=200, text=""), "is not a JSON object"),
        (ScriptedResponse(status=200, text="<html>hi</html>"), "is not a JSON object"),
        (ScriptedResponse(status=200, text='{"access_token": "00D'), "is not a JSON object"),
        (ScriptedResponse(status=200, json=[1, 2]), "is not a JSON object"),
        (ScriptedResponse(status=200, json={"instance_url": "https://x"}), "access_token is"),
        (
            ScriptedResponse(status=200, json={"access_token": "a", "instance_url": 3}),
            "instance_url is missing or not a non-empty string",
        ),
        (ScriptedResponse(status=200, text="x" * (5 << 20)), "more than 262144 bytes"),
    ],
)
async def test_bad_token_responses_are_typed(
    make_session: SessionFactory,
    emulator: Emulator,
    response: ScriptedResponse,
    phrase: str,
) -> None:
    emulator.script_token_responses([response])
    sf = make_session(retry=RetryPolicy.none())
    with pytest.raises(TokenResponseError) as info:
        await sf.token()
    assert phrase in str(info.value)


@pytest.mark.parametrize(
    "instance_url",
    ["https://[::1", "https://host:99999", "https://host:abc", "https://a b", "https://x/y?z"],
)
async def test_malformed_instance_url_is_a_typed_error(
    make_session: SessionFactory, emulator: Emulator, instance_url: str
) -> None:
    body = {
        "access_token": "00D000000000001AAA!AQ0token",
        "instance_url": instance_url,
        "id": "https://login.salesforce.com/id/00D000000000001AAA/005000000000001AAA",
        "token_type": "Bearer",
    }
    emulator.script_token_responses([ScriptedResponse(status=200, json=body)])
    sf = make_session(retry=RetryPolicy.none())
    with pytest.raises(TokenResponseError, match="instance_url"):
        await sf.token()


async def test_access_token_with_control_characters_is_refused(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    body = {
        "access_token": "00D000000000001AAA!AQ0\r\nX-Injected: 1",
        "instance_url": emulator.url,
        "id": "https://login.salesforce.com/id/00D000000000001AAA/005000000000001AAA",
        "token_type": "Bearer",
    }
    emulator.script_token_responses([ScriptedResponse(status=200, json=body)])
    sf = make_session(retry=RetryPolicy.none())
    with pytest.raises(TokenResponseError, match="characters a session id never has"):
        await sf.token()


# --- odd 401 bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (ScriptedResponse(status=401, text="Unauthorized"), "(the body is not JSON)"),
        (
            ScriptedResponse(status=401, json=[]),
            "(a JSON body without Salesforce's [{errorCode, message}] shape)",
        ),
        (
            ScriptedResponse(status=401, json=[{"errorCode": "APEX_ERROR", "message": "x"}]),
            "x",
        ),
    ],
)
async def test_401_that_is_not_invalid_session_does_not_log_in(
    make_session: SessionFactory, emulator: Emulator, response: ScriptedResponse, message: str
) -> None:
    sf = make_session()
    await sf.token()
    emulator.script_rest_responses([response])
    with pytest.raises(SessionError, match="not treated as an expired session") as info:
        await sf.get(QUERY, params=SOQL)
    assert info.value.message == message
    assert emulator.token_request_count == 1


async def test_401_as_a_dict_is_understood(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()
    body = {"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}
    emulator.script_rest_responses([ScriptedResponse(status=401, json=body)])
    async with sf.get(QUERY, params=SOQL) as resp:
        assert resp.status == 200
    assert emulator.token_request_count == 2


async def test_huge_401_body_is_not_read_whole(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(status=401, text="x" * (8 << 20))])
    with pytest.raises(SessionError) as info:
        await sf.get(QUERY, params=SOQL)
    assert info.value.message == "(a body over 64 KiB)"


async def test_not_valid_for_rest_api_as_a_dict(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()
    body = {
        "errorCode": "INVALID_SESSION_ID",
        "message": "This session is not valid for use with the REST API",
    }
    emulator.script_rest_responses([ScriptedResponse(status=401, json=body)])
    with pytest.raises(RestApiNotAllowedError):
        await sf.get(QUERY, params=SOQL)


# --- bad settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        ({"assertion_lifetime": "180"}, "assertion_lifetime must be > 0"),
        ({"assertion_lifetime": None}, "assertion_lifetime must be > 0"),
        ({"assertion_lifetime": 0}, "assertion_lifetime must be > 0"),
        ({"assertion_lifetime": 181}, "assertion_lifetime must be > 0 and <= 180"),
        ({"private_key": None}, "private_key must be PEM text"),
        ({"limit": -1}, "limit must be an int >= 0"),
        ({"limit": "10"}, "limit must be an int >= 0"),
        ({"timeout": 30}, "timeout must be an aiohttp.ClientTimeout"),
        ({"keepalive_timeout": "x"}, "keepalive_timeout must be a finite number of seconds"),
        ({"ssl": "no"}, "ssl must be True, False or an ssl.SSLContext"),
        ({"allow_http_loopback": "false"}, "allow_http_loopback must be True or False"),
        ({"refresh_timeout": 0}, "refresh_timeout must be a finite number of seconds > 0"),
        ({"refresh_cooldown": None}, "refresh_cooldown must be a finite number of seconds >= 0"),
        ({"failure_threshold": 0}, "failure_threshold must be an int >= 1"),
        ({"usage_warning": 2}, "usage_warning must be in (0, 1]"),
        ({"client_id": ""}, "client_id is empty"),
        ({"username": " "}, "username is empty"),
        ({"site": "customers"}, "site must be a path prefix starting with '/'"),
        ({"login_url": "login.salesforce.com"}, "needs a scheme and a host"),
        ({"login_url": "https://login.salesforce.com/x"}, "no path, query or fragment"),
        ({"login_url": "http://login.salesforce.com"}, "Salesforce requires https"),
    ],
)
def test_bad_settings_are_configuration_errors(
    creds: EmulatorCredentials, emulator: Emulator, overrides: dict[str, Any], phrase: str
) -> None:
    kwargs: dict[str, Any] = {
        "client_id": creds.client_id,
        "username": creds.username,
        "private_key": creds.private_key_pem,
        "login_url": emulator.url,
        "allow_http_loopback": True,
    }
    kwargs.update(overrides)
    with pytest.raises(ConfigurationError) as info:
        AuthSession(**kwargs)
    assert phrase in str(info.value)


def test_key_file_readable_by_others_logs_a_warning(
    tmp_path: Path, creds: EmulatorCredentials
) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(creds.private_key_pem)
    os.chmod(path, 0o644)
    with structlog.testing.capture_logs() as logs:
        AuthSession(client_id="c", username="u", private_key=path)
    (event,) = [e for e in logs if e["event"] == "sfauth.key.permissions"]
    assert event["mode"] == "0o644"
    assert event["log_level"] == "warning"
    os.chmod(path, 0o600)
    with structlog.testing.capture_logs() as logs:
        AuthSession(client_id="c", username="u", private_key=path)
    assert [e for e in logs if e["event"] == "sfauth.key.permissions"] == []


def test_without_structlog_configuration_events_go_to_stdlib_logging(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, creds: EmulatorCredentials
) -> None:
    structlog.reset_defaults()
    path = tmp_path / "key.pem"
    path.write_bytes(creds.private_key_pem)
    os.chmod(path, 0o640)
    with caplog.at_level(logging.WARNING, logger="sfauth"):
        AuthSession(client_id="c", username="u", private_key=path)
    (record,) = caplog.records
    assert record.name == "sfauth"
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("sfauth.key.permissions path=")


# --- closing mid-flight ---------------------------------------------------------------------


async def test_closing_while_requests_wait_gives_typed_errors(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sleeping = asyncio.Event()

    async def parked(_: float) -> None:
        sleeping.set()
        await asyncio.sleep(0.05)

    sf = make_session(retry=RetryPolicy(sleep=parked))
    await sf.token()
    emulator.script_rest_responses(
        [ScriptedResponse(status=503, json=[{"errorCode": "SERVER_UNAVAILABLE"}])] * 10
    )
    tasks = [asyncio.create_task(sf.get(QUERY, params=SOQL).__aenter__()) for _ in range(5)]
    await sleeping.wait()
    await sf.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results
    assert all(isinstance(r, SessionClosedError | SFAuthError) for r in results), results
    assert any(isinstance(r, SessionClosedError) for r in results)


# --- nothing reachable from an error holds a secret (trust issue item 16) --------------------


def _reachable(root: BaseException, depth: int = 8) -> list[object]:
    """Every object reachable from ``root`` through causes, contexts, args and attributes.

    Tracebacks (frames and their locals) are left out: they belong to the code that raised.
    """
    seen: set[int] = set()
    found: list[object] = []
    # Breadth first: each object is met at its shortest distance from the root, so the depth
    # bound cannot hide one that a longer path reached first.
    queue: collections.deque[tuple[object, int]] = collections.deque([(root, 0)])
    while queue:
        obj, level = queue.popleft()
        if obj is None or id(obj) in seen or level > depth:
            continue
        seen.add(id(obj))
        found.append(obj)
        children: list[object] = []
        if isinstance(obj, BaseException):
            children += [obj.__cause__, obj.__context__, *obj.args]
        if isinstance(obj, str | bytes | int | float | bool | type):
            continue
        if isinstance(obj, dict):
            children += [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            children += list(obj)
        else:
            children += list(getattr(obj, "__dict__", {}).values())
            for cls in type(obj).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    children.append(getattr(obj, slot, None))
            if hasattr(obj, "items") and hasattr(obj, "keys"):  # multidicts: request headers
                children += [value for _, value in obj.items()]
        queue.extend((child, level + 1) for child in children)
    return found


async def test_no_object_reachable_from_an_error_holds_the_bearer(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(retry=RetryPolicy.none())
    url = f"{emulator.url}{QUERY}"
    errors: list[SFAuthError] = []

    async def collect(**kwargs: Any) -> None:
        try:
            async with sf.get(QUERY, params=SOQL, **kwargs):
                pass
        except SFAuthError as exc:
            errors.append(exc)

    emulator.script_rest_responses([ScriptedResponse(reset=True)])
    await collect()  # dropped connection
    emulator.script_rest_responses([ScriptedResponse(status=200, delay=5.0)])
    await collect(timeout=aiohttp.ClientTimeout(total=0.1))  # read timeout
    emulator.script_rest_responses([ScriptedResponse(status=302, headers={"Location": url})] * 3)
    await collect(max_redirects=2)  # too many redirects (request_info, history)
    tokens = [await sf.token()]
    server, garbage_url = await start_garbage_server()
    emulator.set_instance_url(garbage_url)
    try:
        sf = make_session(retry=RetryPolicy.none())
        tokens.append(await sf.token())
        await collect()  # a malformed response
    finally:
        server.close()
        await server.wait_closed()
    assert [type(e).__name__ for e in errors] == [
        "TransportError",
        "RequestTimeoutError",
        "TransportError",
        "TransportError",
    ]
    assert [e.reason for e in errors] == [  # type: ignore[attr-defined]
        "ServerDisconnectedError",
        "TimeoutError",
        "TooManyRedirects",
        "ClientResponseError",
    ]
    for error in errors:
        for obj in _reachable(error):
            text = repr(obj) + str(obj)
            for token in tokens:
                assert token.access_token.split("!")[1] not in text, f"{error!r} -> {type(obj)}"


async def test_no_object_reachable_from_a_token_error_holds_the_assertion(
    emulator: Emulator, creds: EmulatorCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    assertions: list[str] = []
    original = AssertionSigner.mint

    def mint(self: AssertionSigner) -> str:
        assertions.append(original(self))
        return assertions[-1]

    monkeypatch.setattr(AssertionSigner, "mint", mint)
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    errors: list[SFAuthError] = []
    try:
        for login_url in (f"http://127.0.0.1:{port}", emulator.url):
            sf = AuthSession(
                client_id=creds.client_id,
                username=creds.username,
                private_key=creds.private_key_pem,
                login_url=login_url,
                allow_http_loopback=True,
                retry=RetryPolicy(attempts=2),
            )
            if login_url == emulator.url:
                body = {"error": "invalid_grant", "error_description": "bad"}
                emulator.script_token_responses([ScriptedResponse(status=400, json=body)])
            async with sf:
                with no_backoff(), pytest.raises(SFAuthError) as info:
                    await sf.token()
            errors.append(info.value)
    finally:
        listener.close()
        await listener.wait_closed()
    assert [type(e).__name__ for e in errors] == ["TransientTokenError", "InvalidGrantError"]
    assert len(assertions) == 3
    for error in errors:
        for obj in _reachable(error):
            text = repr(obj) + str(obj)
            for assertion in assertions:
                assert assertion.split(".")[2] not in text


async def test_no_object_reachable_from_bulk_errors_holds_the_bearer(
    make_session: Any, emulator: Emulator
) -> None:
    """A BulkJobError carries the ingest's result: it must not lead to the session's token."""
    from sfauth import BulkInputError, BulkJobError

    sf = make_session(api_version="62.0")
    fast = {"poll_interval": 0.001, "max_poll_interval": 0.01}
    errors: list[BaseException] = []
    with pytest.raises(BulkJobError) as failed:  # an unknown column fails the job
        await sf.bulk.insert("Contact", [{"LastName": "x", "Nope__c": "y"}], **fast)
    errors.append(failed.value)
    records: list[Any] = [{"LastName": f"L{n}", "Description": "d" * 80} for n in range(50)]
    with pytest.raises(BulkInputError) as bad:  # a bad record after a job was sent
        await sf.bulk.insert(
            "Contact", [*records, {"LastName": object()}], max_job_bytes=2048, **fast
        )
    errors.append(bad.value)
    token = (await sf.token()).access_token
    for error in errors:
        for obj in _reachable(error, depth=12):
            text = repr(obj) + str(obj)
            assert token.split("!")[1] not in text, f"{error!r} -> {type(obj)}"
    assert failed.value.result is not None
    # Still readable while the session lives.
    assert [r async for r in failed.value.result.unprocessed_records()] == [
        {"LastName": "x", "Nope__c": "y"}
    ]


# --- redaction keeps prose; odd key input (trust issue items 17, 18) -------------------------


def test_redaction_masks_bearer_credentials_but_not_prose() -> None:
    prose = (
        "Redis will hold live bearer tokens in clear; pass encryption_key or set "
        "$SFAUTH_REDIS_ENCRYPTION_KEY"
    )
    event = redact_secrets(None, "warning", {"hint": prose, "note": "bearer authentication"})
    assert event == {"hint": prose, "note": "bearer authentication"}
    for credential in (
        "Bearer 6f1cA9x2b3c4d5e6f7a8",
        "bearer sk_live_0123456789abcdef",
        "Bearer " + "A" * 40,
        f"Bearer {SESSION_ID}",
    ):
        assert redact_secrets(None, "info", {"text": f"sent {credential} !"}) == {
            "text": "sent <redacted> !"
        }


async def test_the_unencrypted_store_hint_reaches_the_log_intact(
    captured: io.StringIO, prefix: str
) -> None:
    from sfauth.stores import RedisTokenStore

    async with RedisTokenStore("redis://127.0.0.1:6379/0", prefix=prefix) as store:
        assert "sfauth.store.unencrypted" not in captured.getvalue()  # nothing written yet
        token = Token(
            access_token=SESSION_ID,
            instance_url="https://acme.my.salesforce.com",
            id="https://login.salesforce.com/id/00D5e000000AbCdEAA/0055e000000AbCdEAA",
            org_id="00D5e000000AbCdEAA",
            user_id="0055e000000AbCdEAA",
            scope="api",
            token_type="Bearer",
            issued_at=None,
            obtained_at=1700000000.0,
        )
        await store.publish("k", token)
        await store.publish("k", token)
    log = captured.getvalue()
    assert log.count("sfauth.store.unencrypted") == 1  # once per store
    assert "Redis holds live bearer tokens in clear" in log


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("key\x00.pem", "private_key contains a NUL character"),
        (Path("a\x00b"), "private_key contains a NUL character"),
        ("-----BEGIN\x00", "not a private key"),
    ],
)
def test_a_private_key_with_a_nul_character_is_a_private_key_error(
    value: object, phrase: str
) -> None:
    from sfauth import PrivateKeyError

    with pytest.raises(PrivateKeyError) as info:
        AuthSession(client_id="c", username="u", private_key=value)  # type: ignore[arg-type]
    assert phrase in str(info.value)


@pytest.mark.timeout(10)
def test_scrubbing_is_linear_in_the_text() -> None:
    from sfauth._logging import scrub

    # Quadratic patterns take minutes on a megabyte of these; linear ones milliseconds.
    for text, left in (
        ("eyJ" * 350_000, "eyJ" * 350_000),
        ("bearer " * 150_000, "bearer " * 150_000),
        ("00D" * 350_000, "00D" * 350_000),
        (pem_header() * 40_000, "<redacted>" * 40_000),
    ):
        assert scrub(text) == left


@pytest.mark.parametrize("content_type", ["text/plain", "application/json"])
async def test_an_error_body_of_unknown_length_is_never_buffered_past_64_kib(
    make_session: SessionFactory, emulator: Emulator, content_type: str
) -> None:
    written = 0
    hits = 0

    async def huge(request: web.Request) -> web.StreamResponse:
        nonlocal written, hits
        hits += 1
        response = web.StreamResponse(status=500, headers={"Content-Type": content_type})
        await response.prepare(request)  # chunked: no Content-Length
        try:
            for _ in range(4096):
                await response.write(b"x" * 16384)  # 64 MiB in all
                written += 16384
        except ConnectionError:
            pass
        return response

    app = web.Application()
    app.router.add_get(QUERY, huge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    emulator.set_instance_url(f"http://127.0.0.1:{port}")
    try:
        sf = make_session()
        resp = await sf.get(QUERY, params=SOQL)
        assert resp.status == 500  # handed back, not retried as a broken transfer
        assert resp.closed  # read up to 64 KiB, then dropped
    finally:
        await runner.cleanup()
    assert hits == 1
    assert written < 16 * 1024 * 1024


@pytest.mark.parametrize(
    "template",
    [
        '{{"log": "request failed\\n{}"}}',  # after a JSON-escaped newline
        '{{"log": "sid:\\t{}"}}',  # after a JSON-escaped tab
        "https://x/?a%3D{}",  # after a percent-encoded '='
        "assertion={}",
        "Authorization: Bearer {}",
    ],
)
def test_secrets_are_masked_after_escapes_and_percent_encodings(template: str) -> None:
    from sfauth._logging import scrub

    for secret in (SESSION_ID, JWT):
        masked = scrub(template.format(secret))
        assert secret.split("!")[-1] not in masked
        assert "<redacted>" in masked


def test_a_login_url_error_never_echoes_its_query_or_credentials() -> None:
    url = f"https://login.salesforce.com/x?sid={SESSION_ID}#{SECRET_PART}"
    with pytest.raises(ConfigurationError) as info:
        AuthSession(client_id="c", username="u", private_key=b"k", login_url=url)
    assert str(info.value) == (
        "login_url 'https://login.salesforce.com/x' (query and fragment not shown) must be only "
        "scheme and host (no path, query or fragment); an Experience Cloud prefix goes in "
        "site=..."
    )
    with pytest.raises(ConfigurationError) as info:
        AuthSession(client_id="c", username="u", private_key=b"k", login_url="https://u:pw@h/p")
    assert str(info.value) == "login_url must not contain credentials"
