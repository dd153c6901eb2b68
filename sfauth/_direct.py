"""The direct path's pieces (``SalesforceAuthMiddleware.send``): a send outside aiohttp's chain.

Which ``request()`` arguments it may pass to aiohttp twice (``sendable_twice``), the arguments
it sends with the bearer (``stamped``), and its 401 replay (``DirectResend``, driven by
``after_rejection`` as the chain's ``Exchange`` is).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

import aiohttp
from aiohttp import ClientResponse, hdrs
from multidict import CIMultiDict
from yarl import URL

from ._refresh import TokenManager
from ._scoping import close_idle, closed_after_rejection, origin_of
from ._timeouts import total_seconds, with_total, within_total
from ._token import Token

__all__ = ["RETRY_UNSAFE_HEADER", "DirectResend", "left_of", "sendable_twice", "stamped"]

#: Request header by which a caller allows retrying a non-idempotent request (value ``"1"``).
#: The middleware removes it before sending.
RETRY_UNSAFE_HEADER = "X-Sfauth-Retry-Unsafe"

#: ``request()`` arguments a direct send can pass to aiohttp twice (once more on a handover);
#: any other (``auth``, ``raise_for_status``, ``upload_tracker``, a new one) takes the chain.
_DIRECT_ARGUMENTS = frozenset(
    {
        "params",
        "json",
        "data",
        "headers",
        "cookies",
        "skip_auto_headers",
        "timeout",
        "allow_redirects",
        "max_redirects",
        "compress",
        "chunked",
        "expect100",
        "read_until_eof",
        "ssl",
        "server_hostname",
        "proxy",
        "proxy_auth",
        "read_bufsize",
        "auto_decompress",
        "max_line_size",
        "max_field_size",
        "version",
    }
)
#: Arguments that may be given as any iterable, and the types aiohttp can read twice.
_ITERABLE_ARGUMENTS = ("headers", "cookies", "skip_auto_headers")
_REREADABLE = (Mapping, list, tuple, set, frozenset)


def stamped(kwargs: dict[str, Any], token: Token) -> dict[str, Any]:
    """The ``request()`` arguments of a direct send: the bearer, no redirects, no chain."""
    headers = kwargs.get("headers")
    bearer: MutableMapping[str, str] = CIMultiDict() if headers is None else CIMultiDict(headers)
    bearer[hdrs.AUTHORIZATION] = "Bearer " + token.access_token
    return {**kwargs, "headers": bearer, "allow_redirects": False, "middlewares": ()}


def sendable_twice(kwargs: dict[str, Any]) -> bool:
    """Whether a direct send can pass ``kwargs`` to aiohttp twice (once more on a handover).

    Not when an argument is one the direct path does not know (``auth=``,
    ``raise_for_status=``…), a body is a stream or a form, an iterable argument is one-shot
    (a generator of headers, say), or the headers opt in to retries (the chain removes the
    opt-in header).
    """
    for name, value in kwargs.items():
        if name not in _DIRECT_ARGUMENTS:
            return False
        if value is None:
            continue
        if name in _ITERABLE_ARGUMENTS:
            if not isinstance(value, _REREADABLE):
                return False
            if name == "headers" and RETRY_UNSAFE_HEADER in CIMultiDict(value):
                return False
        elif name == "data" and not isinstance(value, bytes | str):
            return False
    return True


def _snapshot(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with its containers copied (``json`` deeply), to be sent again later.

    A direct send's arguments are bytes, str, JSON and re-readable containers (``send``
    checks): the copy is what aiohttp would build the same request from.
    """
    copied = dict(kwargs)
    for name in ("params", "cookies", "skip_auto_headers"):
        value = copied.get(name)
        if value is not None and not isinstance(value, str):
            copied[name] = copy.copy(value)
    headers = copied.get("headers")
    if headers is not None:
        copied["headers"] = CIMultiDict(headers)
    if copied.get("json") is not None:
        copied["json"] = copy.deepcopy(copied["json"])
    return copied


def left_of(kwargs: dict[str, Any], http: aiohttp.ClientSession, sent_at: float) -> dict[str, Any]:
    """``kwargs`` with what is left of their total timeout (counted from ``sent_at``)."""
    timeout = kwargs.get("timeout", http.timeout)
    total = total_seconds(timeout)
    if total is None:
        return kwargs
    left = max(total - time.monotonic() + sent_at, 0.001)
    return {**kwargs, "timeout": with_total(timeout, left)}


class DirectResend:
    """A direct send's 401 replay (``after_rejection``), sent again outside aiohttp's chain.

    While the refresh runs, a waiting request holds this and its coroutines, not a second
    aiohttp request and middleware chain (a herd of thousands holds them all at once).

    Args:
        manager: The middleware's tokens.
        http: The session the request was sent through.
        method: The request's method.
        url: Its absolute URL, built on ``token.instance_url``.
        token: The token it was sent with.
        kwargs: Its ``request()`` arguments (a body sent again as it is: bytes, str or JSON).
        sent_at: ``time.monotonic()`` when it was sent (its total timeout counts from then).
    """

    __slots__ = (
        "_http",
        "_instance_url",
        "_sent_at",
        "kwargs",
        "manager",
        "method",
        "refreshes",
        "url",
    )

    def __init__(
        self,
        manager: TokenManager,
        http: aiohttp.ClientSession,
        method: str,
        url: str,
        token: Token,
        kwargs: dict[str, Any],
        sent_at: float,
    ) -> None:
        self.manager = manager
        self._http = http
        self.method = method
        self.url = url
        self._instance_url = token.instance_url
        #: What the 401'd send carried: the caller may reuse its dicts while this waits.
        self.kwargs = _snapshot(kwargs)
        self._sent_at = sent_at
        self.refreshes = 0

    async_api = False  # the async API never takes the direct path

    def where(self) -> str:
        """The URL as an error or a log event shows it (no query string)."""
        return self.url.split("#", 1)[0].split("?", 1)[0]

    async def renewed(self, rejected: Token) -> Token:
        """A token newer than ``rejected`` (one refresh for all), within the total timeout.

        Raises:
            SessionClosedError: The session was closed.
            RequestTimeoutError: The request's total timeout ran out first (not retried).
            TokenEndpointError, CircuitOpenError: The refresh failed.
        """
        http = self._http
        if http.closed:
            raise closed_after_rejection(self.method, self.url)
        token, _ = await within_total(
            self.manager.replace(rejected, http),
            self.kwargs.get("timeout", http.timeout),
            what="a new session after a 401",
            method=self.method,
            url=self.where(),
            sent_at=self._sent_at,
        )
        return token

    def rewind_or_raise(self, status: int) -> None:
        """Nothing to rewind: a direct send's body (bytes, str, JSON) is sent as it is."""

    def move(self, instance_url: str) -> None:
        """Point the request at ``instance_url``, keeping the path (the org moved).

        The old origin's idle pooled connections are closed (``close_idle``).
        """
        old, self._instance_url = self._instance_url, instance_url
        self.url = instance_url + self.url[len(old) :]
        headers = self.kwargs.get("headers")
        if headers is not None and hdrs.HOST in headers:  # the caller's, for the old instance
            headers[hdrs.HOST] = URL(instance_url).host_port_subcomponent or ""
        if origin_of(old) != origin_of(instance_url):  # not a respelling
            close_idle(self._http.connector, URL(old))

    async def send(self, token: Token) -> tuple[ClientResponse, Token]:
        """Send again, directly, with ``token`` or a newer one (``TokenManager.newest``).

        Raises:
            SessionClosedError: The session was closed.
            aiohttp.ClientError: The send failed (the middleware recovers from it).
        """
        http = self._http
        if http.closed:
            raise closed_after_rejection(self.method, self.url)
        token = await self.manager.newest(token, http)
        if http.closed:  # closed while a refresh ran
            raise closed_after_rejection(self.method, self.url)
        if token.instance_url != self._instance_url:
            self.move(token.instance_url)
        kwargs = left_of(self.kwargs, http, self._sent_at)
        return await http.request(self.method, self.url, **stamped(kwargs, token)), token
