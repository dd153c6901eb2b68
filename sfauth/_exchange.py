"""One request's exchange with the org: send slots, bearer stamping, the replay, retries.

The middleware's fast path covers the common case itself (a valid token, a free slot, an
ordinary answer) and hands anything else to an ``Exchange``: the first login, a queue for a
send slot, a 401, a transient answer, a dropped connection, a body that needs rewinding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, hdrs

from ._bodies import rewinder
from ._classify import ASYNC_API, CLASSIFIED, classify, is_rejection, transport_error
from ._gate import SendGate
from ._limits import UsageTracker
from ._refresh import TokenManager
from ._replay import after_rejection
from ._retry import RetryPolicy, call_with_retries
from ._scoping import closed_not_cancelled, open_session, rebind, request_origin, where
from ._telemetry import retry_reason
from ._token import Token
from .exceptions import InvalidSessionError, SFAuthError, TransportError

__all__ = ["SFDC_SESSION", "Engine", "Exchange", "is_json", "read_json"]

#: The async API (Bulk API 1.0) reads the session from this header.
SFDC_SESSION = "X-SFDC-Session"
_NOT_SENT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_TLS_ERRORS = (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)


@dataclass(frozen=True, slots=True)
class Engine:
    """What every request of one middleware shares: tokens, retry policy, usage, send slots."""

    manager: TokenManager
    retry: RetryPolicy
    usage: UsageTracker
    gate: SendGate | None


def is_json(response: ClientResponse) -> bool:
    """Whether the answer declares a JSON body (read inside the retry loop)."""
    return response.headers.get(hdrs.CONTENT_TYPE, "").startswith("application/json")


class Exchange:
    """One request's attempts: a slot, the bearer, the 401 replay, classification, retries.

    Each send attempt replays at most once after a 401 (twice when the token had worked; see
    ``after_rejection``). A request that is also retried for a transient failure may meet a
    later, separate session expiry on a later attempt and is then replayed on that attempt
    too. Whether the request may be sent again is decided here, once, from the body it was
    given (``rewinder``), never from aiohttp's view of a payload after sending it.

    Args:
        engine: The middleware's shared state.
        request: The request hop aiohttp is sending.
        handler: The next handler in aiohttp's middleware chain.
        may_resend: The method is idempotent, or the caller allowed resending it.
    """

    __slots__ = (
        "async_api",
        "engine",
        "handler",
        "manager",
        "may_resend",
        "refreshes",
        "request",
        "rewind",
    )

    def __init__(
        self,
        engine: Engine,
        request: ClientRequest,
        handler: ClientHandlerType,
        *,
        may_resend: bool,
    ) -> None:
        self.engine = engine
        self.manager = engine.manager
        self.request = request
        self.handler = handler
        self.may_resend = may_resend
        self.refreshes = 0
        #: Puts the body back for another send (returns ``False`` when it cannot); ``None``
        #: for a body that can never be sent twice (a stream).
        self.rewind = rewinder(request.body)
        self.async_api = request.url.raw_path.startswith(ASYNC_API)

    @property
    def method(self) -> str:
        """The request's method."""
        return self.request.method

    def where(self) -> str:
        """The request's URL as an error or a log event shows it (no query string)."""
        return where(self.request)

    async def renewed(self, rejected: Token) -> Token:
        """A token newer than ``rejected``: one refresh for all (``TokenManager.replace``).

        Raises:
            SessionClosedError: The request's session was closed.
            TokenEndpointError, CircuitOpenError: The refresh failed.
        """
        return await self.manager.replace(rejected, open_session(self.request))

    def move(self, instance_url: str) -> None:
        """Point the request at ``instance_url``, keeping its path and query (``rebind``)."""
        rebind(self.request, instance_url)

    async def run(self, token: Token, started: float) -> ClientResponse:
        """Send the request from the start (a first attempt, then retries as the policy allows).

        Args:
            token: The token for the first attempt.
            started: ``retry.clock()`` when the request arrived (the budget counts it all).
        """
        return await self._retried(self.attempt(token), started)

    async def resume(
        self, response: ClientResponse, token: Token, started: float
    ) -> ClientResponse:
        """Finish a first attempt the fast path sent, whose send slot is still held.

        Args:
            response: Its answer (one the fast path does not handle itself).
            token: The token it carried.
            started: ``retry.clock()`` before it was sent.
        """
        return await self._retried(self._finish_in_slot(response, token), started)

    async def recover(self, error: SFAuthError, started: float) -> ClientResponse:
        """Retry after the fast path's first attempt failed with ``error`` (slot released)."""
        return await self._retried(_raise(error), started)

    async def _retried(self, first: Awaitable[ClientResponse], started: float) -> ClientResponse:
        """Await the first attempt; retry it per the policy when it failed transiently."""
        policy = self.engine.retry
        try:
            return await first
        except SFAuthError as exc:
            if policy.attempts <= 1 or not getattr(exc, "retryable", False):
                raise
            if self.rewind is None:
                raise  # a streamed body cannot be sent again: the error stands
            return await call_with_retries(
                policy,
                self.attempt,
                first_error=exc,
                started=started,
                log_fields={"method": self.request.method, "url": where(self.request)},
                on_retry=self._on_retry,
            )

    def _on_retry(self, error: BaseException | None, attempt: int, wait: float) -> None:
        self.manager.telemetry.retry("api", retry_reason(error), attempt, wait)

    async def attempt(self, token: Token | None = None) -> ClientResponse:
        """Send once (plus the 401 replay); raise typed errors for failures worth retrying.

        With a gate, one send slot is held for the whole attempt, the 401 replay included (a
        replay never queues behind requests that have not been sent yet), and never during a
        backoff between attempts.

        Args:
            token: The token to send; ``None`` on a retry: whichever token is current then.
        """
        gate = self.engine.gate
        if gate is not None:
            await gate.enter()
        try:
            if token is None:  # a retry
                self.rewind_or_raise(None)
                manager = self.manager
                request = self.request
                token = manager.valid_token() or await manager.get(open_session(request))
                if manager.origin is not None and request_origin(request) != manager.origin:
                    rebind(request, token.instance_url)
            response, token = await self.send(token)
            return await self._finish(response, token)
        finally:
            if gate is not None:
                gate.leave()

    async def _finish_in_slot(self, response: ClientResponse, token: Token) -> ClientResponse:
        gate = self.engine.gate
        try:
            return await self._finish(response, token)
        finally:
            if gate is not None:
                gate.leave()

    async def _finish(self, response: ClientResponse, token: Token) -> ClientResponse:
        """Everything after a send: the replay, proof, usage, classification, the JSON body."""
        manager = self.manager
        status = response.status
        if is_rejection(status, self.async_api):
            response, token = await after_rejection(self, response, token)
            status = response.status
        elif not manager.proven and status < 500 and status != 429:
            manager.mark_proven(token)  # Salesforce answered past authentication
        usage = response.headers.get("Sforce-Limit-Info")
        if usage is not None:
            self.engine.usage.observe(usage)
        if status in CLASSIFIED:
            response = await classify(response, self.request, may_resend=self.may_resend)
        if is_json(response) and not response.closed:  # closed: an error body over the cap
            await self.read(response)
        return response

    async def read(self, response: ClientResponse) -> None:
        """Read a JSON body inside the retry loop (see ``read_json``).

        Raises:
            TransportError: The body could not be read (retryable when the request may be
                resent).
        """
        failure = await read_json(response, self.request, may_resend=self.may_resend)
        if failure is not None:
            raise failure

    async def send(self, token: Token) -> tuple[ClientResponse, Token]:
        """Stamp the bearer and send.

        Returns:
            The response and the token it actually carried: a newer valid token than
            ``token`` is used when one was installed while the request waited for its slot,
            and while a refresh is in flight the request waits for it (so at most
            ``max_in_flight`` requests ever leave with a session that just expired).

        Raises:
            SessionClosedError: The session was closed meanwhile.
            TokenEndpointError, CircuitOpenError: The refresh it waited for failed.
            TransportError: The connection failed (``sent`` says whether it may have
                reached Salesforce; TLS failures are never retryable).
        """
        request = self.request
        if request.session.closed:
            open_session(request)  # raises SessionClosedError
        newest = await self.manager.newest(token, request.session)
        if newest.instance_url != token.instance_url:
            rebind(request, newest.instance_url)
        token = newest
        request.headers[hdrs.AUTHORIZATION] = "Bearer " + token.access_token
        if self.async_api:
            request.headers[SFDC_SESSION] = token.access_token
        failure: SFAuthError
        try:
            return await self.handler(request), token
        except aiohttp.ClientError as exc:
            failure = self.failure(exc)
        except asyncio.CancelledError:
            closed = closed_not_cancelled(request.session, request.method, where(request))
            if closed is None:
                raise
            failure = closed
        # Raised outside the except block, so that no aiohttp error (whose request_info holds
        # the Authorization header) stays reachable through __context__.
        raise failure

    def rewind_or_raise(self, status: int | None) -> None:
        """Put the body back for another send, or raise: a stream is never sent twice.

        Args:
            status: The rejected session's HTTP status before a replay; ``None`` before a
                retry after a transient failure.

        Raises:
            InvalidSessionError: Before a replay (the session was renewed, the request not).
            TransportError: Before a retry (not retryable).
        """
        rewind = self.rewind
        if rewind is not None and rewind():
            return
        request = self.request
        why = (
            "the request body is a stream (or a file that was closed) that was already sent, "
            "so it is not sent again; send the request again with a new body, or pass bytes, "
            "str, JSON or a seekable file, which sfauth resends itself"
        )
        if status is None:
            error = TransportError(
                why, method=request.method, url=where(request), reason="NotResent", sent=True
            )
            error.retryable = False
            raise error
        raise InvalidSessionError(
            f"the session expired and {why}",
            status=status,
            error_code="INVALID_SESSION_ID",
            message="(not resent)",
            method=request.method,
            url=where(request),
        )

    def failure(self, exc: aiohttp.ClientError) -> TransportError:
        """The typed, secret-free error for a send that raised ``exc``.

        A TLS failure is never retried; a connection that was never made is always
        retryable; any other failure (dropped mid-way, a malformed answer) may have reached
        Salesforce, so it is retried only when the request may be resent.
        """
        request = self.request
        if isinstance(exc, _TLS_ERRORS):
            return transport_error(exc, request, sent=False, retryable=False)
        if isinstance(exc, _NOT_SENT_ERRORS):
            return transport_error(exc, request, sent=False, retryable=True)
        return transport_error(exc, request, sent=True, retryable=self.may_resend)


async def read_json(
    response: ClientResponse, request: ClientRequest, *, may_resend: bool
) -> TransportError | None:
    """Read a JSON body whole, inside the retry loop.

    A body cut short by a dropped connection is then retried like any transport failure, and
    the caller gets a complete body (aiohttp keeps it for ``.json()``/``.read()``).

    Returns:
        ``None``, or the error to raise (the response is closed then). It is returned, not
        raised, so that the caller raises it outside any ``except`` block: no aiohttp error
        (its ``request_info`` holds the bearer) rides along in ``__context__``.
    """
    try:
        await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        response.close()
        return transport_error(exc, request, sent=True, retryable=may_resend)
    return None


async def _raise(error: SFAuthError) -> ClientResponse:
    raise error
