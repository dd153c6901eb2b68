"""Seeded random fault injection: transient failures a correct client may retry."""

from __future__ import annotations

import json
import random
from collections.abc import Collection
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from sfauth.testing._state import JSON_CONTENT_TYPE, abort_connection

__all__ = ["FAULT_KINDS", "SLOW_DELAY", "FaultInjector", "serve_fault"]

#: Kinds of fault :meth:`Emulator.inject_faults` can serve. Every one is transient: a correct
#: client may retry it (a ``"reset"`` is only ever served where a retry is safe).
#:
#: - ``"503"``: 503 ``[{"errorCode":"SERVER_UNAVAILABLE","message":"Server temporarily
#:   unavailable"}]``; on the token endpoint 503
#:   ``{"error":"unknown_error","error_description":"retry your request"}``.
#: - ``"502_html"``: 502 with a ``text/html`` "502 Bad Gateway" page (any endpoint).
#: - ``"429"``: 429 with ``Retry-After: 0`` and
#:   ``[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"Too many requests"}]``; on the token
#:   endpoint the ``unknown_error`` body above.
#: - ``"concurrent_limit"``: 403 ``[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":
#:   "ConcurrentPerOrgLongTxn Limit exceeded."}]``; the token endpoint serves (and counts) a
#:   ``"503"`` instead.
#: - ``"token_unknown_error"``: token endpoint only: 400 with the ``unknown_error`` body.
#: - ``"reset"``: the request is read, then the connection is closed without an answer; only
#:   for GET, HEAD, PUT and DELETE requests and on the token endpoint (never for a REST POST
#:   or PATCH, which a client must not blindly retry).
#: - ``"truncated_json"``: on REST GET requests, a 200 JSON answer whose connection drops
#:   mid-body (``Content-Length`` announces more than the ``{"totalSize":1,"done":tr`` that is
#:   sent); on the token endpoint, a complete 200 answer whose JSON is cut
#:   (``{"access_token":"00D``, no usable token).
#: - ``"slow"``: the normal answer, after :data:`SLOW_DELAY` seconds.
FAULT_KINDS: tuple[str, ...] = (
    "503",
    "502_html",
    "429",
    "concurrent_limit",
    "token_unknown_error",
    "reset",
    "truncated_json",
    "slow",
)

#: Seconds a ``"slow"`` fault delays the normal answer.
SLOW_DELAY = 0.05

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_HTML_502 = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    b"</center><hr><center>nginx</center></body></html>"
)


def _json(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class _Canned:
    """A prebuilt fault answer."""

    status: int
    body: bytes
    content_type: str
    retry_after: bool = False
    #: OAuth ``error`` code of the body (token endpoint), for the request record.
    error: str | None = None


_RETRY = _json({"error": "unknown_error", "error_description": "retry your request"})
_REST: dict[str, _Canned] = {
    "503": _Canned(
        503,
        _json([{"errorCode": "SERVER_UNAVAILABLE", "message": "Server temporarily unavailable"}]),
        JSON_CONTENT_TYPE,
    ),
    "502_html": _Canned(502, _HTML_502, "text/html"),
    "429": _Canned(
        429,
        _json([{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "Too many requests"}]),
        JSON_CONTENT_TYPE,
        retry_after=True,
    ),
    "concurrent_limit": _Canned(
        403,
        _json(
            [
                {
                    "errorCode": "REQUEST_LIMIT_EXCEEDED",
                    "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                }
            ]
        ),
        JSON_CONTENT_TYPE,
    ),
    "truncated_json": _Canned(200, b'{"totalSize":1,"done":tr', JSON_CONTENT_TYPE),
}
_TOKEN: dict[str, _Canned] = {
    "503": _Canned(503, _RETRY, JSON_CONTENT_TYPE, error="unknown_error"),
    "502_html": _REST["502_html"],
    "429": _Canned(429, _RETRY, JSON_CONTENT_TYPE, retry_after=True, error="unknown_error"),
    "token_unknown_error": _Canned(400, _RETRY, JSON_CONTENT_TYPE, error="unknown_error"),
    "truncated_json": _Canned(200, b'{"access_token":"00D', JSON_CONTENT_TYPE),
}


def _applicable(kinds: tuple[str, ...], endpoint: str, method: str) -> tuple[str, ...]:
    """Return the kinds that may hit one request, in :data:`FAULT_KINDS` order, deduplicated."""
    if endpoint == "token":
        return tuple(dict.fromkeys("503" if k == "concurrent_limit" else k for k in kinds))
    return tuple(kind for kind in kinds if _rest_applies(kind, method))


def _rest_applies(kind: str, method: str) -> bool:
    if kind == "token_unknown_error":
        return False
    if kind == "reset":
        return method in _IDEMPOTENT
    if kind == "truncated_json":
        return method == "GET"
    return True


class FaultInjector:
    """Decides, with its own seeded generator, which requests get which fault.

    The decision for a request depends only on the generator's state, the endpoint name and the
    method, so the same seed and the same request order give the same faults, in any process
    (kinds are always considered in :data:`FAULT_KINDS` order, never in set order).

    Args:
        rate: Probability (0 to 1) that an eligible request gets a fault.
        seed: Seed of the generator; ``None`` seeds from the OS.
        endpoints: Endpoint names to fault; ``None`` means all.
        kinds: Fault kinds to choose from, a non-empty subset of :data:`FAULT_KINDS`.
    """

    __slots__ = ("_cache", "_endpoints", "_kinds", "_rate", "_rng")

    def __init__(
        self,
        rate: float,
        seed: int | None,
        endpoints: frozenset[str] | None,
        kinds: Collection[str],
    ) -> None:
        self._rate = rate
        self._rng = random.Random(seed)  # noqa: S311 - test fault injection, not crypto
        self._endpoints = endpoints
        self._kinds = tuple(kind for kind in FAULT_KINDS if kind in kinds)
        self._cache: dict[tuple[str, str], tuple[str, ...]] = {}

    def pick(self, endpoint: str, method: str) -> str | None:
        """Draw the fault for one request.

        Requests no configured kind applies to (e.g. a REST POST when only ``"reset"`` is
        enabled) and endpoints outside the filter get no fault and consume no randomness.

        Args:
            endpoint: Endpoint name as used in :attr:`Emulator.counters`, e.g. ``"query"``.
            method: HTTP method of the request.

        Returns:
            The fault kind, or ``None`` for the normal answer.
        """
        key = (endpoint, method)
        candidates = self._cache.get(key)
        if candidates is None:
            if self._endpoints is not None and endpoint not in self._endpoints:
                candidates = ()
            else:
                candidates = _applicable(self._kinds, endpoint, method)
            self._cache[key] = candidates
        if not candidates or self._rng.random() >= self._rate:
            return None
        if len(candidates) == 1:
            return candidates[0]
        return candidates[self._rng.randrange(len(candidates))]


class _CutResponse(web.StreamResponse):
    """A 200 JSON answer whose body is cut off: the connection drops mid-body.

    The headers announce more bytes than are sent, so the client sees the payload end early
    (aiohttp raises ``ClientPayloadError``), as when a proxy or the network cuts a response.
    """

    def __init__(self, partial: bytes) -> None:
        super().__init__(status=200, headers={"Content-Type": JSON_CONTENT_TYPE})
        self.content_length = len(partial) * 4
        self._partial = partial

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        writer = await super().prepare(request)
        await self.write(self._partial)
        abort_connection(request)
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        """Send nothing more: the connection is already gone."""


def serve_fault(
    request: web.Request, kind: str, *, token: bool
) -> tuple[web.StreamResponse, int, str | None]:
    """Build the answer of a fault that replaces the normal one (any kind but ``"slow"``).

    Args:
        request: The request being answered (already read).
        kind: A kind returned by :meth:`FaultInjector.pick`, not ``"slow"``.
        token: Whether the request is on the token endpoint (OAuth-shaped bodies).

    Returns:
        ``(response, status, error)``: status is ``0`` for a reset (the response is never
        delivered); ``error`` is the OAuth ``error`` code of a token-endpoint body, else
        ``None``.
    """
    if kind == "reset":
        abort_connection(request)
        return web.Response(status=500), 0, None
    if kind == "truncated_json" and not token:
        return _CutResponse(_REST[kind].body), 200, None
    canned = (_TOKEN if token else _REST)[kind]
    response = web.Response(
        status=canned.status, body=canned.body, headers={"Content-Type": canned.content_type}
    )
    if canned.retry_after:
        response.headers["Retry-After"] = "0"
    return response, canned.status, canned.error
