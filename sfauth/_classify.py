"""Response and failure classification: what a status or an exception means for a request.

Salesforce's REST API Developer Guide ("Status Codes and Error Responses") and the Bulk API
Developer Guide ("Errors") define the answers read here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import ClientRequest, ClientResponse

from ._bodies import NOT_JSON, read_body, read_error
from ._logging import scrub
from ._retry import parse_retry_after
from ._scoping import where
from .exceptions import (
    APIError,
    RequestLimitError,
    RestApiNotAllowedError,
    SessionError,
    TransientAPIError,
    TransportError,
)

__all__ = [
    "ASYNC_API",
    "CLASSIFIED",
    "classify",
    "is_rejection",
    "rejection",
    "session_error",
    "transport_error",
]

#: Always transient: rate limited, or a gateway that could not reach the instance.
_ALWAYS_TRANSIENT = frozenset({429, 502, 503, 504})
#: Statuses ``classify`` reads: the transient ones, 403 (the request limits) and 500.
CLASSIFIED = _ALWAYS_TRANSIENT | {403, 500}
_NOT_FOR_REST = "not valid for use with the rest api"
#: Bulk API 1.0 and the other ``/services/async/`` endpoints answer an expired session with HTTP
#: 400 ``InvalidSessionId`` (Bulk API Developer Guide, "Errors"), as XML or JSON, and read the
#: session from ``X-SFDC-Session``.
ASYNC_API = "/services/async/"
_ASYNC_INVALID_SESSION = re.compile(rb"<exceptionCode>\s*InvalidSessionId\s*</exceptionCode>")


def is_rejection(status: int, async_api: bool) -> bool:
    """Whether an answer may be a rejected session: a 401, or a 400 of the async API."""
    return status == 401 or (status == 400 and async_api)


async def rejection(
    response: ClientResponse, method: str, url: str
) -> tuple[str | None, str] | None:
    """Read a 401 (or an async-API 400): ``(error_code, message)`` of a rejected session.

    Args:
        response: The answer.
        method: The request's method (a 401 to ``HEAD`` has no body to read).
        url: The request's URL as an error shows it (no query string).

    Returns:
        The error, or ``None`` for a 400 that is not about the session (its body stays
        readable).

    Raises:
        RestApiNotAllowedError: 401 "This session is not valid for use with the REST API".
        SessionError: A 401 without Salesforce's ``INVALID_SESSION_ID``.
    """
    if response.status == 400:
        body = await read_body(response)
        if body is None or not _async_invalid_session(body):
            return None
        response.release()
        return "INVALID_SESSION_ID", "InvalidSessionId (HTTP 400 from the async API)"
    if method == "HEAD":  # no body to read: a 401 to a bearer request is the session
        response.release()
        return "INVALID_SESSION_ID", "(HTTP 401 to HEAD, which has no body)"
    error_code, message = await read_error(response)
    if _NOT_FOR_REST in message.lower():
        raise session_error(RestApiNotAllowedError, method, url, error_code, message)
    if error_code != "INVALID_SESSION_ID":
        raise session_error(
            SessionError,
            method,
            url,
            error_code,
            message,
            "HTTP 401 without Salesforce's INVALID_SESSION_ID error; not treated as an "
            "expired session (is a proxy or another service answering?)",
        )
    return error_code, message


async def classify(
    response: ClientResponse, request: ClientRequest, *, may_resend: bool
) -> ClientResponse:
    """Raise for transient answers worth retrying and for the spent daily quota.

    Transient: 429, 502, 503, 504; 403 ``REQUEST_LIMIT_EXCEEDED`` for the concurrent request
    limits; a 500 marked transient (``Retry-After``, ``SERVER_UNAVAILABLE``, or an edge page
    that is not JSON). A transient answer to a request that may not be resent is returned.

    Returns:
        ``response`` when it is not a failure worth raising; its body stays readable.

    Raises:
        TransientAPIError: A transient answer (``retryable``; ``retry_after`` from the header).
        RequestLimitError: 403 ``TotalRequests Limit exceeded``: the daily quota is spent.
    """
    status = response.status
    if status in _ALWAYS_TRANSIENT:
        if not may_resend:
            return response
        error_code, message = await read_error(response)
    else:
        error_code, message = await read_error(response, keep=True)
        if status == 403:
            if error_code != "REQUEST_LIMIT_EXCEEDED":
                return response
            if "TotalRequests" in message:
                response.release()
                raise RequestLimitError(
                    "the org's 24-hour API request limit is spent; requests fail until "
                    "usage falls below the limit (see Setup > Company Information)",
                    status=status,
                    error_code=error_code,
                    message=message,
                    method=request.method,
                    url=where(request),
                )
            transient = "ConcurrentRequests" in message or "ConcurrentPerOrgLongTxn" in message
        else:  # 500 is transient only when marked so: Retry-After, or an edge page
            transient = (
                "Retry-After" in response.headers
                or error_code == "SERVER_UNAVAILABLE"
                or message == NOT_JSON
            )
        if not transient or not may_resend:
            return response
        response.release()
    error = TransientAPIError(
        "Salesforce answered with a transient error",
        status=status,
        error_code=error_code,
        message=message,
        method=request.method,
        url=where(request),
    )
    error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
    raise error


def transport_error(
    exc: BaseException, request: ClientRequest, *, sent: bool, retryable: bool
) -> TransportError:
    """A secret-free ``TransportError`` for an aiohttp failure (never chained to it)."""
    error = TransportError(
        scrub(str(exc))[:300] or "no details",
        method=request.method,
        url=where(request),
        reason=type(exc).__name__,
        sent=sent,
    )
    error.retryable = retryable
    return error


def session_error(
    cls: type[SessionError],
    method: str,
    url: str,
    error_code: str | None,
    message: str,
    description: str | None = None,
) -> APIError:
    """A typed 401 error for ``method url`` (the default description: not valid for REST)."""
    if description is None:
        description = (
            "the session is not valid for the REST API; a new token will not help: give the "
            "connected app the 'api' OAuth scope and check the session security level policy"
        )
    return cls(
        description,
        status=401,
        error_code=error_code,
        message=message,
        method=method,
        url=url,
    )


def _async_invalid_session(body: bytes) -> bool:
    """Whether an async-API error body (XML or JSON) says ``InvalidSessionId``."""
    if _ASYNC_INVALID_SESSION.search(body):
        return True
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if isinstance(data, list) and data:
        data = data[0]
    return isinstance(data, dict) and data.get("exceptionCode") == "InvalidSessionId"
