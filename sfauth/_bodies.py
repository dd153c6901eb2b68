"""Request and response bodies: resending a request body, reading a capped error body."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import ClientResponse
from aiohttp.multipart import MultipartWriter
from aiohttp.payload import BytesPayload, IOBasePayload

from ._logging import scrub

__all__ = [
    "MAX_ERROR_BODY",
    "NOT_JSON",
    "OVER_CAP",
    "read_body",
    "read_error",
    "resendable_as_is",
    "rewinder",
]

#: An error answer is Salesforce's short JSON; nothing longer is buffered or parsed.
MAX_ERROR_BODY = 64 * 1024
NOT_JSON = "(the body is not JSON)"
OVER_CAP = f"(a body over {MAX_ERROR_BODY // 1024} KiB)"


def _always() -> bool:
    return True


#: Bodies aiohttp holds as bytes (bytes, str, JSON, form data): sent again as they are.
_AS_IS = (bytes, bytearray, BytesPayload)


def resendable_as_is(body: object) -> bool:
    """Whether ``body`` (``ClientRequest.body``) can be sent again without any preparation.

    True for no body, bytes, str, JSON and form bodies (aiohttp holds them as bytes).
    """
    return body is None or isinstance(body, _AS_IS)


def rewinder(body: object) -> Callable[[], bool] | None:
    """How to put a request body back for another send, decided from the body itself.

    Args:
        body: ``ClientRequest.body``: ``b""``/``None``, bytes, or an aiohttp ``Payload``.

    Returns:
        A function that prepares the body for another send and says whether it could:
        always ``True`` for bytes, str, JSON and form bodies; for a seekable file (also as a
        multipart part), a seek back to where the first send started (``False`` once the file
        is closed). ``None`` for a body that can never be sent twice: an async iterable, a
        stream reader, a non-seekable file, or a payload type sfauth does not know.
    """
    if resendable_as_is(body):
        return _always
    if isinstance(body, IOBasePayload):
        # The file object the caller gave (aiohttp has kept it in ``_value`` since 2.0; if
        # that ever changes, files are simply not resent).
        file: Any = getattr(body, "_value", None)
        try:
            start = file.tell() if file is not None and file.seekable() else None
        except (OSError, ValueError, AttributeError):
            start = None
        if start is None:
            return None

        def seek_back() -> bool:
            try:
                file.seek(start)
            except (OSError, ValueError):  # closed (older aiohttp closes files it sent)
                return False
            return True

        return seek_back
    if isinstance(body, MultipartWriter):
        parts = [rewinder(part) for part, _, _ in body]
        if any(part is None for part in parts):
            return None
        rewinds = [part for part in parts if part is not None and part is not _always]
        return (lambda: all([rewind() for rewind in rewinds])) if rewinds else _always
    return None


async def _read_prefix(response: ClientResponse) -> bytes:
    """At most ``MAX_ERROR_BODY + 1`` bytes of the body (more means: over the cap)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ERROR_BODY:
            break
    return b"".join(chunks)


async def read_body(response: ClientResponse) -> bytes | None:
    """Read a short error answer whole and keep it readable for the caller.

    Returns:
        The body; ``None`` (and the response is closed) when it is over 64 KiB, whether or
        not it declared a length: an error answer is never buffered past that; ``b""`` when
        reading failed.
    """
    declared = response.content_length
    if declared is not None and declared > MAX_ERROR_BODY:
        return None
    try:
        if declared is not None:
            return await response.read()
        body = await _read_prefix(response)
    except (aiohttp.ClientError, TimeoutError):
        return b""
    if len(body) > MAX_ERROR_BODY:
        response.close()
        return None
    # The body of unknown length was read off the stream: keep it where aiohttp keeps a read
    # body, so the caller's .read()/.json()/.text() return it.
    response._body = body
    return body


async def read_error(response: ClientResponse, *, keep: bool = False) -> tuple[str | None, str]:
    """Read a REST error body (``[{"message", "errorCode"}]``) → ``(errorCode, message)``.

    At most 64 KiB are read; the message is redacted (``scrub``) and cut to
    ``MESSAGE_LIMIT`` characters (``clip``).
    With ``keep`` the body stays readable by the caller (a larger one is not kept: the
    response is closed); otherwise the response is released (or closed, when more was left).
    """
    if keep:
        kept = await read_body(response)
        if kept is None:
            return None, OVER_CAP
        body = kept
    else:
        try:
            body = await _read_prefix(response)
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        finally:
            if response.content.at_eof():
                response.release()
            else:
                response.close()
    if len(body) > MAX_ERROR_BODY:
        return None, OVER_CAP
    errors = salesforce_errors(body)
    if errors is None:
        return None, NOT_JSON
    return first_error(errors)


#: Salesforce's error messages are kept up to this many characters (a SOQL error quotes the
#: query and points at the fault with a caret line); a longer one ends with "…".
MESSAGE_LIMIT = 2000


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text``, cut to ``limit`` characters and ending with "…" when it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: What an error's ``message`` says when the body had no usable one.
NO_SHAPE = "(a JSON body without Salesforce's [{errorCode, message}] shape)"


def salesforce_errors(body: bytes) -> list[dict[str, Any]] | None:
    """Salesforce's error list (``[{"errorCode", "message", "fields"}]``), cleaned.

    Codes are cut to 100 characters, messages redacted (``scrub``) and cut to
    ``MESSAGE_LIMIT`` (``clip``), ``fields``
    kept when they are strings. A single error object counts as a list of one.

    Args:
        body: A REST error body.

    Returns:
        The errors (``[]`` for JSON of another shape), or ``None`` when the body is not JSON.
    """
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return []
    errors = []
    for item in data:
        if isinstance(item, dict):
            code, message, fields = item.get("errorCode"), item.get("message"), item.get("fields")
            errors.append(
                {
                    "errorCode": code[:100] if isinstance(code, str) else None,
                    "message": clip(scrub(message[: 2 * MESSAGE_LIMIT]))
                    if isinstance(message, str)
                    else None,
                    "fields": [f for f in fields if isinstance(f, str)]
                    if isinstance(fields, list)
                    else [],
                }
            )
    return errors


def first_error(errors: list[dict[str, Any]]) -> tuple[str | None, str]:
    """``(errorCode, message)`` of the first error, with a description when there is none."""
    if not errors:
        return None, NO_SHAPE
    message = errors[0]["message"]
    return errors[0]["errorCode"], message if message is not None else "(no message)"
