"""What an answer means: classify() and rejection() on real responses from a real socket.

A tiny aiohttp.web server answers each path with a chosen status, body and headers; a client
middleware calls the function under test on the real ``ClientRequest``/``ClientResponse``,
as sfauth's own middleware does.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, web
from aiohttp.test_utils import TestServer

from sfauth import (
    RequestLimitError,
    RestApiNotAllowedError,
    SessionError,
    TransientAPIError,
    TransportError,
)
from sfauth._bodies import NOT_JSON
from sfauth._classify import (
    _async_invalid_session,
    classify,
    is_rejection,
    rejection,
    transport_error,
)
from sfauth._scoping import where

from .conftest import fake_session_id

JSON = "application/json;charset=UTF-8"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False  # no Content-Length: the body is streamed


def errors(code: str, message: str) -> bytes:
    return json.dumps([{"message": message, "errorCode": code}]).encode()


ANSWERS: dict[str, Answer] = {
    "/503-retry-after": Answer(
        503, errors("SERVER_UNAVAILABLE", "Down for maintenance"), headers={"Retry-After": "7"}
    ),
    "/429-html": Answer(429, b"<html>Too many</html>", "text/html"),
    "/403-total": Answer(403, errors("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")),
    "/403-concurrent": Answer(
        403,
        errors(
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        ),
    ),
    "/403-access": Answer(403, errors("INSUFFICIENT_ACCESS", "insufficient access rights")),
    "/403-access-chunked": Answer(
        403, errors("INSUFFICIENT_ACCESS", "insufficient access rights"), chunked=True
    ),
    "/500-json": Answer(500, errors("UNKNOWN_EXCEPTION", "An unexpected error occurred.")),
    "/500-html": Answer(500, b"<html><body>Service Unavailable</body></html>", "text/html"),
    "/500-retry-after": Answer(
        500, errors("UNKNOWN_EXCEPTION", "try later"), headers={"Retry-After": "2"}
    ),
    "/500-unavailable": Answer(500, errors("SERVER_UNAVAILABLE", "Server unavailable")),
    "/401-expired": Answer(401, errors("INVALID_SESSION_ID", "Session expired or invalid")),
    "/401-not-rest": Answer(
        401,
        errors("INVALID_SESSION_ID", "This session is not valid for use with the REST API"),
    ),
    "/401-other": Answer(401, errors("INVALID_AUTH_HEADER", "INVALID_HEADER_TYPE")),
    "/401-html": Answer(401, b"<html>Unauthorized</html>", "text/html"),
    "/services/async/62.0/job/xml": Answer(
        400,
        b'<?xml version="1.0" encoding="UTF-8"?><error '
        b'xmlns="http://www.force.com/2009/06/asyncapi/dataload">'
        b"<exceptionCode>InvalidSessionId</exceptionCode>"
        b"<exceptionMessage>Invalid session id</exceptionMessage></error>",
        "application/xml",
    ),
    "/services/async/62.0/job/json": Answer(
        400, b'{"exceptionCode":"InvalidSessionId","exceptionMessage":"Invalid session id"}'
    ),
    "/services/async/62.0/job/json-list": Answer(
        400, b'[{"exceptionCode":"InvalidSessionId","exceptionMessage":"Invalid session id"}]'
    ),
    "/services/async/62.0/job/other": Answer(
        400,
        b'<?xml version="1.0" encoding="UTF-8"?><error>'
        b"<exceptionCode>InvalidJob</exceptionCode>"
        b"<exceptionMessage>Unable to find object: 750x</exceptionMessage></error>",
        "application/xml",
        chunked=True,
    ),
}


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async def answer(request: web.Request) -> web.StreamResponse:
        chosen = ANSWERS[request.path]
        headers = {"Content-Type": chosen.content_type, **chosen.headers}
        if not chosen.chunked:
            return web.Response(status=chosen.status, body=chosen.body, headers=headers)
        response = web.StreamResponse(status=chosen.status, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(chosen.body)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    test_server = TestServer(app)
    await test_server.start_server()
    yield test_server
    await test_server.close()


Check = Callable[[ClientResponse, ClientRequest], Awaitable[object]]


@dataclass
class Outcome:
    value: object = None
    request: ClientRequest | None = None
    response: ClientResponse | None = None
    status: int = 0
    body: bytes | None = None


async def through(
    server: TestServer, check: Check, path: str, method: str = "GET", *, read: bool = True
) -> Outcome:
    """Send ``method path`` and run ``check`` on the live response, inside a middleware.

    With ``read``, ``body`` is what the caller reads afterwards (it proves a body was left
    readable); a ``check`` that released the response is run without.
    """
    outcome = Outcome()

    async def middleware(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        response = await handler(request)
        outcome.request, outcome.response = request, response
        outcome.value = await check(response, request)
        return response

    url = server.make_url(path)
    async with (
        aiohttp.ClientSession(middlewares=(middleware,)) as http,
        http.request(method, url) as resp,
    ):
        outcome.status = resp.status
        if read:
            outcome.body = await resp.read()
    return outcome


def rejected(response: ClientResponse, request: ClientRequest) -> Awaitable[object]:
    return rejection(response, request.method, where(request))


def classifier(*, may_resend: bool) -> Check:
    return lambda response, request: classify(response, request, may_resend=may_resend)


# --- classify --------------------------------------------------------------------------------


async def test_503_with_retry_after_is_transient(server: TestServer) -> None:
    with pytest.raises(TransientAPIError) as info:
        await through(server, classifier(may_resend=True), "/503-retry-after?sid=secret#x")
    error = info.value
    assert (error.status, error.error_code, error.message) == (
        503,
        "SERVER_UNAVAILABLE",
        "Down for maintenance",
    )
    assert (error.method, error.url) == ("GET", str(server.make_url("/503-retry-after")))
    assert error.retry_after == 7.0
    assert error.retryable is True
    assert "secret" not in str(error)


async def test_503_to_a_request_that_may_not_be_resent_is_returned_unread(
    server: TestServer,
) -> None:
    outcome = await through(server, classifier(may_resend=False), "/503-retry-after", "POST")
    assert outcome.status == 503
    assert outcome.body == ANSWERS["/503-retry-after"].body


async def test_429_without_retry_after_is_transient_with_no_wait(server: TestServer) -> None:
    with pytest.raises(TransientAPIError) as info:
        await through(server, classifier(may_resend=True), "/429-html")
    assert (info.value.status, info.value.error_code, info.value.message) == (429, None, NOT_JSON)
    assert info.value.retry_after is None


@pytest.mark.parametrize("may_resend", [True, False])
async def test_403_total_requests_is_the_spent_daily_quota(
    server: TestServer, may_resend: bool
) -> None:
    with pytest.raises(RequestLimitError) as info:
        await through(server, classifier(may_resend=may_resend), "/403-total")
    error = info.value
    assert type(error) is RequestLimitError
    assert (error.status, error.error_code, error.message) == (
        403,
        "REQUEST_LIMIT_EXCEEDED",
        "TotalRequests Limit exceeded.",
    )
    assert error.retryable is False
    assert error.url == str(server.make_url("/403-total"))


async def test_403_concurrent_requests_is_transient(server: TestServer) -> None:
    with pytest.raises(TransientAPIError) as info:
        await through(server, classifier(may_resend=True), "/403-concurrent")
    assert (info.value.status, info.value.error_code) == (403, "REQUEST_LIMIT_EXCEEDED")
    assert info.value.message == "ConcurrentRequests (Concurrent API Requests) Limit exceeded."
    assert info.value.retry_after is None


async def test_403_concurrent_requests_to_a_request_that_may_not_be_resent_is_returned(
    server: TestServer,
) -> None:
    outcome = await through(server, classifier(may_resend=False), "/403-concurrent", "POST")
    assert outcome.status == 403
    assert outcome.body == ANSWERS["/403-concurrent"].body


@pytest.mark.parametrize("path", ["/403-access", "/403-access-chunked"])
async def test_another_403_is_returned_with_its_body_still_readable(
    server: TestServer, path: str
) -> None:
    outcome = await through(server, classifier(may_resend=True), path)
    assert outcome.value is outcome.response
    assert outcome.status == 403
    assert outcome.body == ANSWERS[path].body
    assert json.loads(outcome.body)[0]["errorCode"] == "INSUFFICIENT_ACCESS"


async def test_a_500_json_error_without_a_transient_mark_is_returned(server: TestServer) -> None:
    outcome = await through(server, classifier(may_resend=True), "/500-json")
    assert outcome.value is outcome.response
    assert outcome.status == 500
    assert outcome.body == ANSWERS["/500-json"].body


async def test_a_500_edge_page_that_is_not_json_is_transient(server: TestServer) -> None:
    with pytest.raises(TransientAPIError) as info:
        await through(server, classifier(may_resend=True), "/500-html")
    assert (info.value.status, info.value.error_code, info.value.message) == (500, None, NOT_JSON)


async def test_a_500_edge_page_to_a_request_that_may_not_be_resent_is_returned(
    server: TestServer,
) -> None:
    outcome = await through(server, classifier(may_resend=False), "/500-html", "POST")
    assert outcome.status == 500
    assert outcome.body == ANSWERS["/500-html"].body


@pytest.mark.parametrize(
    ("path", "code", "retry_after"),
    [
        ("/500-retry-after", "UNKNOWN_EXCEPTION", 2.0),
        ("/500-unavailable", "SERVER_UNAVAILABLE", None),
    ],
)
async def test_a_500_marked_transient_is_transient(
    server: TestServer, path: str, code: str, retry_after: float | None
) -> None:
    with pytest.raises(TransientAPIError) as info:
        await through(server, classifier(may_resend=True), path)
    assert (info.value.status, info.value.error_code) == (500, code)
    assert info.value.retry_after == retry_after


# --- rejection -------------------------------------------------------------------------------


async def test_401_invalid_session_id_is_a_rejected_session(server: TestServer) -> None:
    outcome = await through(server, rejected, "/401-expired", read=False)
    assert outcome.value == ("INVALID_SESSION_ID", "Session expired or invalid")
    assert outcome.status == 401


async def test_401_not_valid_for_the_rest_api_is_its_own_error(server: TestServer) -> None:
    with pytest.raises(RestApiNotAllowedError) as info:
        await through(server, rejected, "/401-not-rest?q=1")
    error = info.value
    assert (error.status, error.error_code, error.message) == (
        401,
        "INVALID_SESSION_ID",
        "This session is not valid for use with the REST API",
    )
    assert (error.method, error.url) == ("GET", str(server.make_url("/401-not-rest")))


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        ("/401-other", "INVALID_AUTH_HEADER", "INVALID_HEADER_TYPE"),
        ("/401-html", None, NOT_JSON),
    ],
)
async def test_a_401_without_invalid_session_id_is_a_session_error(
    server: TestServer, path: str, code: str | None, message: str
) -> None:
    with pytest.raises(SessionError) as info:
        await through(server, rejected, path)
    assert type(info.value) is SessionError
    assert (info.value.status, info.value.error_code, info.value.message) == (401, code, message)
    assert info.value.description.startswith(
        "HTTP 401 without Salesforce's INVALID_SESSION_ID error"
    )


@pytest.mark.parametrize("kind", ["xml", "json", "json-list"])
async def test_an_async_api_400_invalid_session_id_is_a_rejected_session(
    server: TestServer, kind: str
) -> None:
    outcome = await through(server, rejected, f"/services/async/62.0/job/{kind}", read=False)
    assert outcome.value == (
        "INVALID_SESSION_ID",
        "InvalidSessionId (HTTP 400 from the async API)",
    )


async def test_another_async_api_400_is_not_a_rejection_and_stays_readable(
    server: TestServer,
) -> None:
    path = "/services/async/62.0/job/other"
    outcome = await through(server, rejected, path)
    assert outcome.value is None
    assert outcome.status == 400
    assert outcome.body == ANSWERS[path].body


async def test_a_401_to_head_is_a_rejected_session_without_a_body(server: TestServer) -> None:
    outcome = await through(server, rejected, "/401-other", "HEAD", read=False)
    assert outcome.value == ("INVALID_SESSION_ID", "(HTTP 401 to HEAD, which has no body)")
    assert outcome.status == 401


def test_what_may_be_a_rejection() -> None:
    assert is_rejection(401, False) is True
    assert is_rejection(401, True) is True
    assert is_rejection(400, True) is True
    assert is_rejection(400, False) is False
    assert is_rejection(403, True) is False


def test_async_invalid_session_bodies() -> None:
    assert _async_invalid_session(b"<exceptionCode> InvalidSessionId\n</exceptionCode>") is True
    assert _async_invalid_session(b'[{"exceptionCode": "InvalidSessionId"}]') is True
    assert _async_invalid_session(b'{"exceptionCode": "InvalidJob"}') is False
    assert _async_invalid_session(b"[]") is False
    assert _async_invalid_session(b'"InvalidSessionId"') is False
    assert _async_invalid_session(b"[" * 100_000) is False  # too deep to parse: not a rejection


# --- transport_error -------------------------------------------------------------------------


async def captured_request(server: TestServer, path: str) -> ClientRequest:
    async def keep(response: ClientResponse, request: ClientRequest) -> None:
        return None

    outcome = await through(server, keep, path)
    assert outcome.request is not None
    return outcome.request


async def test_transport_error_is_not_chained_and_shows_no_token(server: TestServer) -> None:
    request = await captured_request(server, "/500-json?sid=query-secret")
    session_id = fake_session_id()
    try:
        raise aiohttp.ClientOSError(f"write failed; Authorization: Bearer {session_id}")
    except aiohttp.ClientError as exc:
        error = transport_error(exc, request, sent=True, retryable=False)
    assert type(error) is TransportError
    assert error.__cause__ is None
    assert error.__context__ is None
    assert error.__traceback__ is None
    assert (error.method, error.url) == ("GET", str(server.make_url("/500-json")))
    assert (error.reason, error.sent, error.retryable) == ("ClientOSError", True, False)
    assert error.description == "write failed; Authorization: <redacted>"
    assert session_id.split("!")[1] not in str(error)
    assert "query-secret" not in str(error)


async def test_transport_error_masks_an_opaque_bearer_value(server: TestServer) -> None:
    request = await captured_request(server, "/500-json")
    token = secrets.token_hex(20)
    error = transport_error(
        aiohttp.ClientConnectionError(f"proxy refused Bearer {token} for {fake_session_id()}"),
        request,
        sent=False,
        retryable=True,
    )
    assert error.description == "proxy refused <redacted> for <redacted>"


async def test_transport_error_message_is_bounded_and_never_empty(server: TestServer) -> None:
    request = await captured_request(server, "/500-json")
    empty = transport_error(
        aiohttp.ServerDisconnectedError(""), request, sent=False, retryable=True
    )
    assert empty.description == "no details"
    assert (empty.reason, empty.sent, empty.retryable) == ("ServerDisconnectedError", False, True)
    long = transport_error(
        aiohttp.ClientPayloadError("x" * 1000), request, sent=True, retryable=True
    )
    assert long.description == "x" * 300
