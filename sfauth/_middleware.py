"""The aiohttp client middleware: bearer scoping, the 401 replay, retries, API usage.

Shape from aiohttp's ``DigestAuthMiddleware`` (client middlewares, aiohttp 3.12+): an async
callable ``(request, handler) -> response``. ``AuthSession`` installs it on its own
``ClientSession``; your ``ClientSession`` can use the same object.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, hdrs
from aiohttp.payload import Payload
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
    SFAuthError,
    TransientAPIError,
    TransportError,
)

__all__ = ["IDEMPOTENT_METHODS", "RETRY_UNSAFE_HEADER", "SalesforceAuthMiddleware"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

#: Request header by which a caller allows retrying a non-idempotent request (value ``"1"``).
#: The middleware removes it before sending. ``AuthSession`` sets it for ``idempotent=True``.
RETRY_UNSAFE_HEADER = "X-Sfauth-Retry-Unsafe"

_NOT_FOR_REST = "not valid for use with the rest api"
_NOT_JSON = "(the body is not JSON)"
_ALWAYS_TRANSIENT = frozenset({429, 502, 503, 504})
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
        if not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ConfigurationError(
                f"failure_threshold must be an int >= 1; got {failure_threshold!r}"
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
        )
        self._usage = UsageTracker(warn_fraction=usage_warning)
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
        token = manager.valid_token() or await manager.get(request.session)
        url = request.url
        key = (url.scheme, url.raw_host or "", url.port)
        if key != manager.origin:
            if key not in manager.old_origins:
                return await handler(request)  # not the org's instance: no bearer
            _rebind(request, token.instance_url)
        opt_in = request.headers.popone(RETRY_UNSAFE_HEADER, None) == "1"
        send = _Send(self, request, handler, request.method in IDEMPOTENT_METHODS or opt_in)
        policy = self.retry
        started = policy.clock()
        try:
            return await send.attempt(token)
        except SFAuthError as exc:
            if policy.attempts <= 1 or not getattr(exc, "retryable", False):
                raise
            return await call_with_retries(
                policy,
                send.attempt,
                first_error=exc,
                started=started,
                log_fields={"method": request.method, "url": _where(request)},
            )


class _Send:
    """One request's sends: bearer stamping, the 401 replay, failure classification.

    Each send attempt replays at most once after a 401: a 401 on the replay is final. A
    request that is also retried for a transient failure may meet a later, separate session
    expiry on a later attempt and is then replayed once on that attempt too.
    """

    __slots__ = ("auth", "handler", "may_resend", "request")

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

    async def attempt(self, token: Token | None = None) -> ClientResponse:
        """Send once (plus the 401 replay); raise typed errors for failures worth retrying."""
        manager = self.auth._manager
        request = self.request
        if token is None:  # a retry: use whatever token is current now
            if not _replayable(request):
                raise self._not_replayable()
            token = manager.valid_token() or await manager.get(request.session)
            if manager.origin is not None and _origin(request) != manager.origin:
                _rebind(request, token.instance_url)
        request.headers[hdrs.AUTHORIZATION] = "Bearer " + token.access_token
        response = await self._send()
        if response.status == 401:
            response, token = await self._after_401(response, token)
        elif not manager.proven:
            manager.mark_proven(token)
        usage = response.headers.get("Sforce-Limit-Info")
        if usage is not None:
            self.auth._usage.observe(usage)
        status = response.status
        if status in _ALWAYS_TRANSIENT or status == 403 or status == 500:
            response = await self._classify(response)
        if response.content_type == "application/json":
            # Read JSON bodies here, inside the retry loop: a body cut short by a dropped
            # connection is then retried like any transport failure, and the caller gets a
            # complete body (aiohttp keeps it for .json()/.read()).
            try:
                await response.read()
            except aiohttp.ClientPayloadError as exc:
                response.release()
                raise self._transport(exc, sent=True, retryable=self.may_resend) from None
        return response

    async def _send(self) -> ClientResponse:
        request = self.request
        try:
            return await self.handler(request)
        except _TLS_ERRORS as exc:
            raise self._transport(exc, sent=False, retryable=False) from None
        except _NOT_SENT_ERRORS as exc:
            raise self._transport(exc, sent=False, retryable=True) from None
        except _SENT_ERRORS as exc:
            raise self._transport(exc, sent=True, retryable=self.may_resend) from None

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

    def _not_replayable(self) -> APIError:
        return InvalidSessionError(
            "the request body is a stream that was already sent and cannot be replayed; "
            "pass bytes, str or a seekable file to allow replays",
            status=0,
            error_code=None,
            message="(not resent)",
            method=self.request.method,
            url=_where(self.request),
        )

    async def _after_401(
        self, response: ClientResponse, token: Token
    ) -> tuple[ClientResponse, Token]:
        manager = self.auth._manager
        request = self.request
        error_code, message = await _read_error(response)
        if _NOT_FOR_REST in message.lower():
            raise _session_error(RestApiNotAllowedError, request, error_code, message)
        rejection = _session_error(
            InvalidSessionError,
            request,
            error_code,
            message,
            "Salesforce rejected a token that had not worked yet",
        )
        if not manager.reject(token, rejection):
            raise manager.circuit_error()
        if not _replayable(request):
            raise self._not_replayable()
        fresh = await manager.replace(token, request.session)
        if fresh.instance_url != token.instance_url:
            _rebind(request, fresh.instance_url)
        request.headers[hdrs.AUTHORIZATION] = "Bearer " + fresh.access_token
        logger.debug(
            "sfauth.request.replayed",
            method=request.method,
            url=_where(request),
            status=401,
            error_code=error_code,
        )
        replay = await self._send()
        if replay.status != 401:
            if not manager.proven:
                manager.mark_proven(fresh)
            return replay, fresh
        error_code, message = await _read_error(replay)
        if _NOT_FOR_REST in message.lower():
            raise _session_error(RestApiNotAllowedError, request, error_code, message)
        error = _session_error(
            InvalidSessionError,
            request,
            error_code,
            message,
            "Salesforce rejected the session even after a refresh and one replay",
        )
        manager.reject(fresh, error)
        raise error

    async def _classify(self, response: ClientResponse) -> ClientResponse:
        """Raise for transient answers worth retrying and for the spent daily quota."""
        request = self.request
        status = response.status
        if status in _ALWAYS_TRANSIENT:
            if not self.may_resend:
                return response
            error_code, message = await _read_error(response)
        else:
            error_code, message = await _read_error(response, release=False)
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


def _origin(request: ClientRequest) -> tuple[str, str, int | None]:
    url = request.url
    return (url.scheme, url.raw_host or "", url.port)


def _where(request: ClientRequest) -> str:
    return str(request.url.with_query(None).with_fragment(None))


def _replayable(request: ClientRequest) -> bool:
    body = request.body
    return not isinstance(body, Payload) or not body.consumed


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


async def _read_error(response: ClientResponse, *, release: bool = True) -> tuple[str | None, str]:
    """Read a REST error body (``[{"message", "errorCode"}]``) → (errorCode, message).

    The body stays readable by the caller (aiohttp caches it) unless ``release`` is true.
    """
    try:
        body = await response.read()
    except (aiohttp.ClientError, TimeoutError):
        body = b""
    finally:
        if release:
            response.release()
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
            code if isinstance(code, str) else None,
            scrub(message)[:300] if isinstance(message, str) else "(no message)",
        )
    return None, f"(HTTP {response.status} with an unexpected JSON body)"


def _session_error(
    cls: type[InvalidSessionError] | type[RestApiNotAllowedError],
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
