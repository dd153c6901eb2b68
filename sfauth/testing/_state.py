"""Session, user and cursor records plus the response helpers shared by the endpoints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from sfauth.testing._models import ScriptedResponse

__all__ = [
    "JSON_CONTENT_TYPE",
    "NOT_FOUND",
    "Cursor",
    "Handler",
    "Session",
    "User",
    "abort_connection",
    "json_response",
    "rest_error",
    "serve_script",
]

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]


@dataclass(slots=True)
class User:
    """A registered user and the apps it is pre-authorised for."""

    username: str
    user_id: str
    org_id: str
    active: bool
    name: str
    approved: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Session:
    """A live access token's session."""

    user: User
    client_id: str
    id_url: str
    last_use: float


@dataclass(slots=True)
class Cursor:
    """The remaining pages of a query (``nextRecordsUrl``)."""

    records: list[dict[str, object]]
    batch: int


#: A REST handler: request, authenticated session (``None`` for open endpoints), raw body.
Handler = Callable[[web.Request, Session | None, bytes], Awaitable[web.Response]]


def json_response(status: int, payload: object) -> web.Response:
    """Return a compact JSON response with Salesforce's content type.

    Args:
        status: HTTP status.
        payload: JSON-serialisable body.

    Returns:
        The response.
    """
    body = json.dumps(payload, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, headers={"Content-Type": JSON_CONTENT_TYPE})


def rest_error(status: int, error_code: str, message: str) -> web.Response:
    """Return a REST API error: a JSON list with one ``{message, errorCode}`` object.

    Args:
        status: HTTP status.
        error_code: Salesforce ``errorCode``, e.g. ``MALFORMED_QUERY``.
        message: Human-readable message.

    Returns:
        The response.
    """
    return json_response(status, [{"message": message, "errorCode": error_code}])


def abort_connection(request: web.BaseRequest) -> None:
    """Close the request's connection at once, without an answer (the client sees a disconnect).

    Args:
        request: The request whose connection to drop.
    """
    transport = request.transport
    if transport is not None:
        transport.abort()


async def serve_script(request: web.Request, script: ScriptedResponse) -> tuple[web.Response, int]:
    """Build the answer for a scripted response, waiting or resetting as scripted.

    Args:
        request: The request being answered.
        script: The scripted answer.

    Returns:
        ``(response, status)``; status is ``0`` for a reset (the response is never delivered).
    """
    if script.delay > 0:
        await asyncio.sleep(script.delay)
    if script.reset:
        abort_connection(request)
        # Never delivered: aiohttp drops it because the transport is closed.
        return web.Response(status=script.status), 0
    headers = dict(script.headers)
    content_type = script.content_type
    if script.text is not None:
        body = script.text.encode()
        content_type = content_type or "text/plain;charset=UTF-8"
    elif script.json is not None:
        body = json.dumps(script.json, separators=(",", ":")).encode()
        content_type = content_type or JSON_CONTENT_TYPE
    else:
        body = b""
    if content_type:
        headers["Content-Type"] = content_type
    return web.Response(status=script.status, body=body, headers=headers), script.status
