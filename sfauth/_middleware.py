"""The aiohttp client middleware: bearer scoping, the 401 replay, retries, API usage.

Shape from aiohttp's ``DigestAuthMiddleware`` (client middlewares, aiohttp 3.12+): an async
callable ``(request, handler) -> response``. ``AuthSession`` installs it on its own
``ClientSession``; your ``ClientSession`` can use the same object.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, hdrs
from aiohttp.multipart import MultipartWriter
from aiohttp.payload import BytesPayload, IOBasePayload
from yarl import URL

from ._assertion import MAX_ASSERTION_LIFETIME
from ._config import DEFAULT_LOGIN_URL, FlowConfig
from ._keys import PrivateKeyInput, load_private_key
from ._limits import ApiUsage, UsageTracker
from ._logging import logger, scrub
from ._oauth import TokenClient
from ._refresh import TokenManager
from ._retry import RetryPolicy, call_with_retries, parse_retry_after
from ._token import Token
from .exceptions import (
    APIError,
    ConfigurationError,
    InvalidSessionError,
    RequestLimitError,
    RestApiNotAllowedError,
    SessionClosedError,
    SessionError,
    SFAuthError,
    TransientAPIError,
    TransportError,
)
from .stores._base import TokenStore

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_UNSAFE_HEADER",
    "SalesforceAuthMiddleware",
    "request_flags",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

#: Request header by which a caller allows retrying a non-idempotent request (value ``"1"``).
#: The middleware removes it before sending. ``AuthSession`` sets it for ``idempotent=True``.
RETRY_UNSAFE_HEADER = "X-Sfauth-Retry-Unsafe"


_NOT_FOR_REST = "not valid for use with the rest api"
#: A 401 body is Salesforce's short JSON error; anything longer is not read past this.
_MAX_ERROR_BODY = 64 * 1024
_NOT_JSON = "(the body is not JSON)"
_OVER_CAP = f"(a body over {_MAX_ERROR_BODY // 1024} KiB)"
#: Replays of one send attempt after 401s; the second only for a token that had worked (or was
#: taken unverified from a shared store).
_MAX_REPLAYS = 2
#: Refreshes one request may cause, over all its attempts.
_MAX_REFRESHES = 2
_ALWAYS_TRANSIENT = frozenset({429, 502, 503, 504})
_CLASSIFIED = _ALWAYS_TRANSIENT | {403, 500}

#: ``(instance-relative, may resend)`` for the request ``AuthSession`` is sending in this task;
#: ``None`` for requests sent through another ``ClientSession``.
_REQUEST_FLAGS: contextvars.ContextVar[tuple[bool, bool] | None] = contextvars.ContextVar(
    "sfauth_request_flags", default=None
)
#: Bulk API 1.0 and the other ``/services/async/`` endpoints answer an expired session with HTTP
#: 400 ``InvalidSessionId`` (Bulk API Developer Guide, "Errors"), as XML or JSON, and read the
#: session from ``X-SFDC-Session``.
_ASYNC_API = "/services/async/"
_SFDC_SESSION = "X-SFDC-Session"
_ASYNC_INVALID_SESSION = re.compile(rb"<exceptionCode>\s*InvalidSessionId\s*</exceptionCode>")
_NOT_SENT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_TLS_ERRORS = (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)
_SENT_ERRORS = (aiohttp.ClientOSError, aiohttp.ServerConnectionError, aiohttp.ClientPayloadError)


class SalesforceAuthMiddleware:
    """aiohttp client middleware that authenticates requests with the JWT bearer flow.

    It adds ``Authorization: Bearer <access_token>`` to requests whose origin is the current
    ``instance_url`` origin (never to another host, also on every redirect hop), fetches the
    first token on demand, and on a 401 ``INVALID_SESSION_ID`` refreshes once for all
    concurrent callers (single-flight) and replays the request once. A request addressed to an
    instance origin the org has since left (``instance_url`` changed at a refresh) is sent to
    the new origin. Transient answers (502/503/504, 429, a transient 500, the concurrent
    request limit) and connection failures are retried per ``retry``: idempotent methods
    always, POST/PATCH only when the request provably was not sent or the caller set
    ``X-Sfauth-Retry-Unsafe: 1``.

    Use it directly with your own session::

        auth = SalesforceAuthMiddleware(client_id=..., username=..., private_key="key.pem")
        async with aiohttp.ClientSession(middlewares=(auth,)) as http:
            token = await auth.token(http)
            async with http.get(f"{token.instance_url}/services/data/v62.0/limits") as r:
                ...

    Args:
        client_id: The connected app's consumer key (the assertion's ``iss``).
        username: The Salesforce username to act as (``sub``).
        private_key: RSA private key: PEM text (``str``/``bytes``), a file path, or a loaded
            ``RSAPrivateKey``. Parsed once, here.
        passphrase: Passphrase of an encrypted PEM.
        login_url: Scheme and host of the token endpoint; default
            ``https://login.salesforce.com``. Use ``https://test.salesforce.com`` for sandboxes
            or your My Domain URL.
        audience: The ``aud`` claim; derived from ``login_url`` and ``site`` when ``None``.
        site: Experience Cloud site path prefix (``"/customers"``), default ``""``.
        assertion_lifetime: Seconds until each assertion's ``exp``; ``0 < x <= 180``.
        allow_http_loopback: Allow plain ``http`` to loopback hosts (emulators, tests).
        retry: Retry policy for token requests and API requests; ``RetryPolicy()`` by default,
            ``RetryPolicy.none()`` to disable retries.
        refresh_timeout: Seconds one refresh may take in total, retries included (default 30).
        refresh_cooldown: Seconds the circuit stays open after ``failure_threshold``
            consecutive failed or rejected refreshes (default 60).
        failure_threshold: Consecutive failed refreshes, or fresh tokens the API rejected
            before they ever worked, that open the circuit (default 3).
        max_token_age: Seconds after which the token is replaced before the next request
            (proactive refresh); ``None`` (default) refreshes only on a 401. Salesforce
            sessions live as long as the org's session timeout (2 hours by default).
        usage_warning: Fraction of the org's daily API requests (``Sforce-Limit-Info``) at
            which ``sfauth.limits.high`` is logged once (default 0.8).
        max_in_flight: At most this many sends at once, the bearer being stamped only when a
            send slot is free (so requests queued behind a busy pool never go out with a token
            that expired while they waited); ``None`` (default) for no cap. ``AuthSession``
            sets it to its connection ``limit``. The slot is held for the send only, never
            during a backoff.
        token_store: Share tokens with other sessions (``MemoryTokenStore``) or processes
            (``RedisTokenStore``): a refresh first adopts a token another session published
            (only one of the same org and user as this session's), and only one of them logs
            in at a time. ``None`` (default) keeps the token here.
        max_relogins: Logins allowed within ``relogin_window`` seconds to replace tokens the
            API rejected (expiries, revocations, ``replace_token`` reports, an endpoint that
            refuses the session), one per rejected token; past that, such a rejection raises
            ``InvalidSessionError`` instead of logging in, so an endpoint that rejects working
            sessions cannot cause a login per request (Salesforce caps logins per user per
            hour). Default 5.
        relogin_window: Seconds of the rolling window of ``max_relogins`` (default 300).

    Raises:
        ConfigurationError: A setting is missing or malformed.
        PrivateKeyError: The key cannot be loaded, is not RSA, or is shorter than 2048 bits.
    """

    def __init__(
        self,
        *,
        client_id: str,
        username: str,
        private_key: PrivateKeyInput,
        passphrase: str | bytes | None = None,
        login_url: str = DEFAULT_LOGIN_URL,
        audience: str | None = None,
        site: str = "",
        assertion_lifetime: float = MAX_ASSERTION_LIFETIME,
        allow_http_loopback: bool = False,
        retry: RetryPolicy | None = None,
        refresh_timeout: float = 30.0,
        refresh_cooldown: float = 60.0,
        failure_threshold: int = 3,
        max_token_age: float | None = None,
        usage_warning: float = 0.8,
        max_in_flight: int | None = None,
        token_store: TokenStore | None = None,
        max_relogins: int = 5,
        relogin_window: float = 300.0,
    ) -> None:
        config = FlowConfig.create(
            client_id=client_id,
            username=username,
            login_url=login_url,
            audience=audience,
            site=site,
            allow_http_loopback=allow_http_loopback,
        )
        _check_seconds("refresh_timeout", refresh_timeout, allow_zero=False)
        _check_seconds("refresh_cooldown", refresh_cooldown, allow_zero=True)
        if max_token_age is not None:
            _check_seconds("max_token_age", max_token_age, allow_zero=False)
        for name, count in (
            ("failure_threshold", failure_threshold),
            ("max_relogins", max_relogins),
        ):
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ConfigurationError(f"{name} must be an int >= 1; got {count!r}")
        _check_seconds("relogin_window", relogin_window, allow_zero=False)
        if token_store is not None and not isinstance(token_store, TokenStore):
            raise ConfigurationError(
                "token_store must implement sfauth.stores.TokenStore (e.g. RedisTokenStore); "
                f"got {type(token_store).__name__}"
            )
        key = load_private_key(private_key, passphrase)
        client = TokenClient(
            config,
            key,
            assertion_lifetime=assertion_lifetime,
            attempt_timeout=refresh_timeout,
        )
        self.retry = retry if retry is not None else RetryPolicy()
        self._manager = TokenManager(
            client,
            retry=self.retry,
            refresh_timeout=refresh_timeout,
            refresh_cooldown=refresh_cooldown,
            failure_threshold=failure_threshold,
            max_token_age=max_token_age,
            store=token_store,
            max_relogins=max_relogins,
            relogin_window=relogin_window,
        )
        if not isinstance(usage_warning, int | float) or not 0 < usage_warning <= 1:
            raise ConfigurationError(f"usage_warning must be in (0, 1]; got {usage_warning!r}")
        if max_in_flight is not None and (
            not isinstance(max_in_flight, int)
            or isinstance(max_in_flight, bool)
            or max_in_flight < 1
        ):
            raise ConfigurationError(f"max_in_flight must be an int >= 1; got {max_in_flight!r}")
        self._usage = UsageTracker(warn_fraction=usage_warning)
        self._max_in_flight = max_in_flight
        # The send gate belongs to one event loop; a new loop (a second asyncio.run()) gets
        # a gate of its own.
        self._gate: asyncio.Semaphore | None = None
        self._gate_loop: asyncio.AbstractEventLoop | None = None
        self.config = config

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SalesforceAuthMiddleware(client_id={c.client_id!r}, username={c.username!r}, "
            f"token_url={c.token_url!r}, audience={c.audience!r})"
        )

    @property
    def token_requests(self) -> int:
        """How many token requests this object has sent (each a POST to the token URL)."""
        return self._manager.token_requests

    @property
    def current_token(self) -> Token | None:
        """The token in use, or ``None`` before the first exchange or while it is replaced."""
        return self._manager.current

    @property
    def api_usage(self) -> ApiUsage | None:
        """The org's API usage from the latest ``Sforce-Limit-Info`` header, if any was seen."""
        return self._usage.latest

    def ready_token(self) -> Token | None:
        """The token to send now without any I/O, or ``None`` when a login or refresh is due."""
        return self._manager.valid_token()

    def open(self) -> None:
        """Allow logins again after ``close`` (``AuthSession.open`` calls this).

        The current token, if any, is kept: it may still be valid.
        """
        self._manager.open()

    def close(self) -> None:
        """Stop the token refresh in flight; its waiters get ``SessionClosedError``.

        Until ``open`` is called again, a request that needs a new token fails with
        ``SessionClosedError`` (``AuthSession.close`` calls this).
        """
        self._manager.close()

    async def token(self, http: aiohttp.ClientSession) -> Token:
        """Return the current token, fetching one if there is none yet.

        Args:
            http: A session to send the token request through (this middleware is bypassed
                for that request).

        Returns:
            The current ``Token``.

        Raises:
            TokenEndpointError: The exchange failed; the subclass says why.
            CircuitOpenError: Refreshes keep failing; sfauth is not logging in for a while.
        """
        return self._manager.valid_token() or await self._manager.get(http)

    async def replace_token(self, rejected: Token, http: aiohttp.ClientSession) -> Token:
        """Report that ``rejected`` no longer works elsewhere, and get the token that replaces it.

        For code that sends the token itself (another client library): call this when that
        code sees the session expire. It behaves like a 401 seen by the middleware for a token
        that had worked: one refresh shared with every concurrent caller, none if ``rejected``
        was already replaced. It counts against ``max_relogins``, not against the circuit
        breaker (an expiry is not a failed login).

        Args:
            rejected: The token the other client was using.
            http: A session to send the token request through, if one is needed.

        Returns:
            A token other than ``rejected``.

        Raises:
            TokenEndpointError: The refresh failed.
            CircuitOpenError: Refreshes keep failing; no login is attempted for a while.
            InvalidSessionError: ``max_relogins`` logins already replaced rejected tokens
                within ``relogin_window`` seconds.
        """
        manager = self._manager
        current = manager.current
        if current is not None and current.access_token == rejected.access_token:
            rejected = current  # an equal copy of the token in use is the token in use
        error = InvalidSessionError(
            "another client reported the session as no longer valid",
            status=401,
            error_code="INVALID_SESSION_ID",
            message="reported through replace_token()",
            method="-",
            url=rejected.instance_url,
        )
        refusal = manager.reject(rejected, error, worked=True)
        if refusal is not None:
            raise refusal
        return await manager.replace(rejected, http)

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """Authenticate one request hop (aiohttp client middleware protocol).

        Args:
            request: The request aiohttp is about to send (called again on each redirect).
            handler: The next handler in the chain.

        Returns:
            The response. A 401 is never returned for a request that carried the bearer.

        Raises:
            InvalidSessionError: 401 ``INVALID_SESSION_ID`` even after one refresh and replay.
            RestApiNotAllowedError: 401 "This session is not valid for use with the REST API".
            RequestLimitError: 403 ``TotalRequests Limit exceeded`` (daily quota spent).
            TransientAPIError: A transient answer persisted through every allowed retry.
            TransportError: The connection failed or timed out (after allowed retries).
            TokenEndpointError: The token could not be obtained.
            CircuitOpenError: Refreshes keep failing; no login is attempted for a while.
        """
        manager = self._manager
        flags = _REQUEST_FLAGS.get()
        relative, opt_in = (False, False) if flags is None else flags
        headers = request.headers
        if RETRY_UNSAFE_HEADER in headers:  # the caller's opt-in; never sent to Salesforce
            opt_in = "1" in headers.popall(RETRY_UNSAFE_HEADER) or opt_in
        url = request.url
        key = (url.scheme, url.raw_host or "", url.port)
        if manager.origin is not None and key != manager.origin and not relative:
            return await handler(request)  # not the org's instance: no bearer, no login
        token = manager.valid_token() or await manager.get(_open_session(request))
        if key != manager.origin:
            if not (relative and key in manager.old_origins):
                return await handler(request)
            _rebind(request, token.instance_url)  # built for an instance the org has left
        send = _Send(self, request, handler, opt_in or request.method in IDEMPOTENT_METHODS)
        policy = self.retry
        started = policy.clock()  # the retry budget counts the first attempt too
        try:
            return await send.attempt(token)
        except SFAuthError as exc:
            if policy.attempts <= 1 or not getattr(exc, "retryable", False):
                raise
            if send.rewind is None:
                raise  # a streamed body cannot be sent again: the error stands
            return await call_with_retries(
                policy,
                send.attempt,
                first_error=exc,
                started=started,
                log_fields={"method": request.method, "url": _where(request)},
            )

    def _send_gate(self) -> asyncio.Semaphore | None:
        """The send gate of the running event loop (``None`` without ``max_in_flight``)."""
        if self._max_in_flight is None:
            return None
        loop = asyncio.get_running_loop()
        if self._gate_loop is not loop:
            self._gate = asyncio.Semaphore(self._max_in_flight)
            self._gate_loop = loop
        return self._gate


class _Send:
    """One request's sends: bearer stamping, the 401 replay, failure classification.

    Each send attempt replays at most once after a 401: a 401 on the replay is final. A
    request that is also retried for a transient failure may meet a later, separate session
    expiry on a later attempt and is then replayed once on that attempt too.

    Whether the request may be sent again is decided here, once, from the body it was given
    (``rewinder``), never from aiohttp's view of a payload after sending it.
    """

    __slots__ = ("async_api", "auth", "handler", "may_resend", "refreshes", "request", "rewind")

    def __init__(
        self,
        auth: SalesforceAuthMiddleware,
        request: ClientRequest,
        handler: ClientHandlerType,
        may_resend: bool,
    ) -> None:
        self.auth = auth
        self.request = request
        self.handler = handler
        self.may_resend = may_resend
        self.refreshes = 0
        #: Puts the body back for another send (returns ``False`` when it cannot); ``None``
        #: for a body that can never be sent twice (a stream).
        self.rewind = rewinder(request.body)
        self.async_api = request.url.raw_path.startswith(_ASYNC_API)

    async def attempt(self, token: Token | None = None) -> ClientResponse:
        """Send once (plus the 401 replay); raise typed errors for failures worth retrying.

        With a gate, one send slot is held for the whole attempt, the 401 replay included (a
        replay never queues behind requests that have not been sent yet), and never during a
        backoff between attempts.
        """
        auth = self.auth
        manager = auth._manager
        request = self.request
        gate = auth._send_gate()
        if gate is not None:
            await gate.acquire()
        try:
            if token is None:  # a retry: use whatever token is current now
                self._rewind_or_raise(None)
                token = manager.valid_token() or await manager.get(_open_session(request))
                if manager.origin is not None and _origin(request) != manager.origin:
                    _rebind(request, token.instance_url)
            response, token = await self._send(token)
            status = response.status
            if status == 401 or (status == 400 and self.async_api):
                response, token = await self._after_rejection(response, token)
                status = response.status
            elif not manager.proven and status < 500 and status != 429:
                manager.mark_proven(token)  # Salesforce answered past authentication
            usage = response.headers.get("Sforce-Limit-Info")
            if usage is not None:
                auth._usage.observe(usage)
            if status in _CLASSIFIED:
                response = await self._classify(response)
            json_body = response.headers.get(hdrs.CONTENT_TYPE, "").startswith("application/json")
            if json_body and not response.closed:  # closed: an error body over the cap
                # Read JSON bodies here, inside the retry loop: a body cut short by a dropped
                # connection is then retried like any transport failure, and the caller gets
                # a complete body (aiohttp keeps it for .json()/.read()).
                failure: TransportError | None = None
                try:
                    await response.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    response.close()
                    failure = self._transport(exc, sent=True, retryable=self.may_resend)
                if failure is not None:
                    raise failure  # outside the except block: no aiohttp error rides along
            return response
        finally:
            if gate is not None:
                gate.release()

    async def _send(self, token: Token) -> tuple[ClientResponse, Token]:
        """Stamp the bearer and send.

        Returns the response and the token it actually carried: a newer valid token than
        ``token`` is used when one was installed while the request waited for its slot.
        """
        request = self.request
        if request.session.closed:
            _open_session(request)  # raises SessionClosedError
        manager = self.auth._manager
        current = manager.current
        if (
            current is not token
            and current is not None
            and current.instance_url == token.instance_url
            and manager.valid_token() is current
        ):
            token = current  # installed while this request waited for its send slot
        request.headers[hdrs.AUTHORIZATION] = "Bearer " + token.access_token
        if self.async_api:
            request.headers[_SFDC_SESSION] = token.access_token
        try:
            return await self.handler(request), token
        except _TLS_ERRORS as exc:
            failure = self._transport(exc, sent=False, retryable=False)
        except _NOT_SENT_ERRORS as exc:
            failure = self._transport(exc, sent=False, retryable=True)
        except aiohttp.ClientError as exc:  # dropped mid-way, a malformed response, ...
            failure = self._transport(exc, sent=True, retryable=self.may_resend)
        # Raised outside the except block, so that no aiohttp error (whose request_info holds
        # the Authorization header) stays reachable through __context__.
        raise failure

    def _transport(self, exc: BaseException, *, sent: bool, retryable: bool) -> TransportError:
        error = TransportError(
            scrub(str(exc))[:300] or "no details",
            method=self.request.method,
            url=_where(self.request),
            reason=type(exc).__name__,
            sent=sent,
        )
        error.retryable = retryable
        return error

    def _rewind_or_raise(self, status: int | None) -> None:
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
                why, method=request.method, url=_where(request), reason="NotResent", sent=True
            )
            error.retryable = False
            raise error
        raise InvalidSessionError(
            f"the session expired and {why}",
            status=status,
            error_code="INVALID_SESSION_ID",
            message="(not resent)",
            method=request.method,
            url=_where(request),
        )

    async def _after_rejection(
        self, response: ClientResponse, token: Token
    ) -> tuple[ClientResponse, Token]:
        """Handle a rejected session: refresh at most once for everyone, replay this request.

        A rejection is a 401 ``INVALID_SESSION_ID``, or on ``/services/async/`` a 400
        ``InvalidSessionId``. A rejection of a token that was already replaced (or is being
        replaced) replays with the newer token without another refresh; a rejection of the
        token in use starts (or joins) the single-flight refresh. A rejection of the replay is
        final, unless the token the replay carried had already worked for other requests: then
        the session was invalidated again in between (a second expiry or a revocation) and the
        request is replayed once more. Tokens that never worked are never replayed twice, and
        the circuit counts them; every login after a rejection is bounded by ``max_relogins``.
        """
        manager = self.auth._manager
        request = self.request
        rejection = await self._rejection(response)
        if rejection is None:  # a 400 of the async API that is not about the session
            if not manager.proven:
                manager.mark_proven(token)  # Salesforce answered past authentication
            return response, token
        error_code, message = rejection
        for _ in range(_MAX_REPLAYS):
            if token is manager.current:
                if self.refreshes >= _MAX_REFRESHES:
                    break  # this request already caused enough logins
                refusal = manager.reject(
                    token,
                    _session_error(
                        InvalidSessionError,
                        request,
                        error_code,
                        message,
                        "Salesforce rejected a token before it ever worked",
                    ),
                )
                if refusal is not None:
                    raise refusal
                self.refreshes += 1
            fresh = await manager.replace(token, _open_session(request))
            self._rewind_or_raise(response.status)
            if fresh.instance_url != token.instance_url:
                _rebind(request, fresh.instance_url)
            logger.debug(
                "sfauth.request.replayed",
                method=request.method,
                url=_where(request),
                status=response.status,
                error_code=error_code,
            )
            response, token = await self._send(fresh)
            rejection = None
            if response.status == 401 or (response.status == 400 and self.async_api):
                rejection = await self._rejection(response)
            if rejection is None:
                if not manager.proven and response.status < 500 and response.status != 429:
                    manager.mark_proven(token)
                return response, token
            error_code, message = rejection
            if token is not manager.last_proven and token is not manager.adopted:
                break  # a token that never worked: final
        error = _session_error(
            InvalidSessionError,
            request,
            error_code,
            message,
            "Salesforce rejected the session even after a refresh and a replay",
        )
        manager.reject(token, error)
        raise error

    async def _rejection(self, response: ClientResponse) -> tuple[str | None, str] | None:
        """Read a 401 (or an async-API 400): ``(error_code, message)`` of a rejected session.

        Returns ``None`` for a 400 that is not about the session (its body stays readable).

        Raises:
            RestApiNotAllowedError: 401 "This session is not valid for use with the REST API".
            SessionError: A 401 without Salesforce's ``INVALID_SESSION_ID``.
        """
        request = self.request
        if response.status == 400:
            body = await _read_body(response)
            if body is None or not _async_invalid_session(body):
                return None
            response.release()
            return "INVALID_SESSION_ID", "InvalidSessionId (HTTP 400 from the async API)"
        if request.method == "HEAD":  # no body to read: a 401 to a bearer request is the session
            response.release()
            return "INVALID_SESSION_ID", "(HTTP 401 to HEAD, which has no body)"
        error_code, message = await _read_error(response)
        if _NOT_FOR_REST in message.lower():
            raise _session_error(RestApiNotAllowedError, request, error_code, message)
        if error_code != "INVALID_SESSION_ID":
            raise _session_error(
                SessionError,
                request,
                error_code,
                message,
                "HTTP 401 without Salesforce's INVALID_SESSION_ID error; not treated as an "
                "expired session (is a proxy or another service answering?)",
            )
        return error_code, message

    async def _classify(self, response: ClientResponse) -> ClientResponse:
        """Raise for transient answers worth retrying and for the spent daily quota."""
        request = self.request
        status = response.status
        if status in _ALWAYS_TRANSIENT:
            if not self.may_resend:
                return response
            error_code, message = await _read_error(response)
        else:
            error_code, message = await _read_error(response, keep=True)
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
                        url=_where(request),
                    )
                transient = "ConcurrentRequests" in message or "ConcurrentPerOrgLongTxn" in message
            else:  # 500 is transient only when marked so: Retry-After, or an edge page
                transient = (
                    "Retry-After" in response.headers
                    or error_code == "SERVER_UNAVAILABLE"
                    or message == _NOT_JSON
                )
            if not transient or not self.may_resend:
                return response
            response.release()
        error = TransientAPIError(
            "Salesforce answered with a transient error",
            status=status,
            error_code=error_code,
            message=message,
            method=request.method,
            url=_where(request),
        )
        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    ok = isinstance(value, int | float) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be a number of seconds {bound}; got {value!r}")


def request_flags(
    *, relative: bool, idempotent: bool
) -> contextvars.Token[tuple[bool, bool] | None]:
    """Tell the middleware about the request ``AuthSession`` is about to send in this task.

    Args:
        relative: The URL was resolved from a path on the instance, so the request may be moved
            to a new ``instance_url`` if the org moved meanwhile.
        idempotent: The caller allows resending a POST/PATCH.

    Returns:
        The token to pass to ``_REQUEST_FLAGS.reset`` once the request is sent.
    """
    return _REQUEST_FLAGS.set((relative, idempotent))


def _open_session(request: ClientRequest) -> aiohttp.ClientSession:
    """The request's session, or ``SessionClosedError`` when it was closed meanwhile."""
    session = request.session
    if session.closed:
        raise SessionClosedError(
            f"the HTTP session was closed while {request.method} {_where(request)} was still "
            "being sent, retried or waiting for a token"
        )
    return session


def _origin(request: ClientRequest) -> tuple[str, str, int | None]:
    url = request.url
    return (url.scheme, url.raw_host or "", url.port)


def _where(request: ClientRequest) -> str:
    return str(request.url.with_query(None).with_fragment(None))


def _always() -> bool:
    return True


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
    if body is None or isinstance(body, bytes | bytearray | BytesPayload):
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


def _rebind(request: ClientRequest, instance_url: str) -> None:
    """Point ``request`` at ``instance_url``'s origin, keeping its path and query."""
    base = URL(instance_url)
    old = request.url
    request.url = URL.build(
        scheme=base.scheme,
        host=base.raw_host or "",
        port=base.explicit_port,
        path=old.raw_path,
        query_string=old.raw_query_string,
        encoded=True,
    )
    host = request.url.host_port_subcomponent
    if host is not None:
        request.headers[hdrs.HOST] = host


async def _read_prefix(response: ClientResponse) -> bytes:
    """At most ``_MAX_ERROR_BODY + 1`` bytes of the body (more means: over the cap)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > _MAX_ERROR_BODY:
            break
    return b"".join(chunks)


async def _read_body(response: ClientResponse) -> bytes | None:
    """Read a short error answer whole and keep it readable for the caller.

    Returns ``None`` (and closes the response) when the body is over 64 KiB, whether or not
    it declared a length: an error answer is never buffered past that; ``b""`` when reading
    failed.
    """
    declared = response.content_length
    if declared is not None and declared > _MAX_ERROR_BODY:
        return None
    try:
        if declared is not None:
            return await response.read()
        body = await _read_prefix(response)
    except (aiohttp.ClientError, TimeoutError):
        return b""
    if len(body) > _MAX_ERROR_BODY:
        response.close()
        return None
    # The body of unknown length was read off the stream: keep it where aiohttp keeps a read
    # body, so the caller's .read()/.json()/.text() return it.
    response._body = body
    return body


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


async def _read_error(response: ClientResponse, *, keep: bool = False) -> tuple[str | None, str]:
    """Read a REST error body (``[{"message", "errorCode"}]``) → (errorCode, message).

    At most 64 KiB are read. With ``keep`` the body stays readable by the caller (a larger
    one is not kept: the response is closed); otherwise the response is released (or closed,
    when more was left).
    """
    if keep:
        kept = await _read_body(response)
        if kept is None:
            return None, _OVER_CAP
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
    if len(body) > _MAX_ERROR_BODY:
        return None, _OVER_CAP
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None, _NOT_JSON
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list) and data and isinstance(data[0], dict):
        first = data[0]
        code = first.get("errorCode")
        message = first.get("message")
        return (
            code[:100] if isinstance(code, str) else None,
            scrub(message[:4096])[:300] if isinstance(message, str) else "(no message)",
        )
    return None, "(a JSON body without Salesforce's [{errorCode, message}] shape)"


def _session_error(
    cls: type[SessionError],
    request: ClientRequest,
    error_code: str | None,
    message: str,
    description: str | None = None,
) -> APIError:
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
        method=request.method,
        url=_where(request),
    )
