"""The aiohttp client middleware: the bearer for the org's instance, refreshes, replays, retries.

Shape from aiohttp's ``DigestAuthMiddleware`` (client middlewares, aiohttp 3.12+): an async
callable ``(request, handler) -> response``. ``AuthSession`` installs it on its own
``ClientSession``; your ``ClientSession`` can use the same object. ``AuthSession`` sends its
requests through ``send``, whose common case skips aiohttp's middleware chain (the direct
path, its pieces in ``_direct.py``) and hands the rest to the chain. There, the common case
runs in ``__call__`` itself (the fast path); everything else is an ``Exchange``
(``_exchange.py``): the 401 replay (``_replay.py``), classification (``_classify.py``),
bodies (``_bodies.py``), origin scoping (``_scoping.py``), send slots (``_gate.py``).
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any, Unpack

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, hdrs

from ._admission import Admission, Budget, Leases
from ._bodies import resendable_as_is
from ._classify import ASYNC_API, CLASSIFIED, transport_error
from ._config import FlowConfig
from ._direct import RETRY_UNSAFE_HEADER, DirectResend, left_of, sendable_twice, stamped
from ._exchange import Engine, Exchange, is_json, read_json
from ._gate import SendGate
from ._keys import load_signing_key
from ._limits import ApiUsage, UsageTracker
from ._oauth import TokenClient
from ._refresh import TokenManager
from ._replay import after_rejection
from ._retry import RetryPolicy
from ._scoping import (
    closed_error,
    closed_not_cancelled,
    open_session,
    rebind,
    request_origin,
    where,
)
from ._settings import Options, Settings, settings_from
from ._telemetry import Telemetry
from ._timeouts import with_total, within_total
from ._token import Token
from .exceptions import InvalidSessionError, SFAuthError

__all__ = ["IDEMPOTENT_METHODS", "RETRY_UNSAFE_HEADER", "SalesforceAuthMiddleware"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class SalesforceAuthMiddleware:
    """aiohttp client middleware that authenticates requests with the JWT bearer flow.

    It adds ``Authorization: Bearer <access_token>`` to requests whose origin is the current
    ``instance_url`` origin (never to another host, also on every redirect hop), fetches the
    first token on demand, and on a 401 ``INVALID_SESSION_ID`` refreshes once for all
    concurrent callers (single-flight) and replays the request. Transient answers
    (502/503/504, 429, a transient 500, the concurrent request limit) and connection failures
    are retried per ``retry``: idempotent methods always, POST/PATCH only when the request
    provably was not sent or the caller set ``X-Sfauth-Retry-Unsafe: 1``.

    Use it directly with your own session::

        auth = SalesforceAuthMiddleware(client_id=..., username=..., private_key="key.pem")
        async with aiohttp.ClientSession(middlewares=(auth,)) as http:
            token = await auth.token(http)
            async with http.get(f"{token.instance_url}/services/data/v62.0/limits") as r:
                ...

    Args:
        settings: A ``Settings`` to start from (optional).
        **options: Any ``Settings`` field by name (``client_id``, ``username``,
            ``private_key``, ``login_url``, ``retry``, ``max_in_flight``…), each documented
            once, on ``Settings``; they override ``settings``. The pool settings (``limit``,
            ``timeout``…) are ``AuthSession``'s and are ignored here.

    Raises:
        ConfigurationError: A setting is missing or malformed.
        PrivateKeyError: The key cannot be loaded, is not RSA, or is shorter than 2048 bits.
    """

    def __init__(self, settings: Settings | None = None, **options: Unpack[Options]) -> None:
        settings = settings_from(settings, options, owner="SalesforceAuthMiddleware")
        key = load_signing_key(settings.private_key, settings.passphrase)
        client = TokenClient(
            settings.flow,
            key,
            assertion_lifetime=settings.assertion_lifetime,
            attempt_timeout=settings.refresh_timeout,
        )
        manager = TokenManager(
            client,
            retry=settings.retry,
            refresh_timeout=settings.refresh_timeout,
            refresh_cooldown=settings.refresh_cooldown,
            failure_threshold=settings.failure_threshold,
            max_token_age=settings.max_token_age,
            store=settings.token_store,
            max_relogins=settings.max_relogins,
            relogin_window=settings.relogin_window,
            refusal_cooldown=settings.refusal_cooldown,
            login_backoff=settings.login_backoff,
            login_rate_warning=settings.login_rate_warning,
            login_rate_cap=settings.login_rate_cap,
            telemetry=Telemetry(
                tracer_provider=settings.tracer_provider, meter_provider=settings.meter_provider
            ),
        )
        gate = SendGate(settings.max_in_flight) if settings.max_in_flight else None
        usage = UsageTracker(warn_fraction=settings.usage_warning)
        budget = None
        if settings.api_budget is not None:
            budget = Budget(
                settings.token_store,
                settings.api_budget,
                usage,
                org=lambda: manager.identity[0] if manager.identity else None,
            )
            usage.on_check = budget.publish
        leases = None
        if settings.fleet_limit is not None:
            leases = Leases(settings.token_store, settings.fleet_limit, settings.lease_ttl)
        self._admission = Admission(leases, budget, settings.fleet_limit_scope == "all")
        manager.telemetry.watch(
            attributes={"sfauth.username": settings.username},
            in_flight=(lambda: gate.in_use) if gate is not None else (lambda: None),
            circuit_open=manager.circuit_is_open,
            usage=lambda: (u.used, u.limit) if (u := usage.snapshot()) is not None else None,
        )
        self._engine = Engine(manager, settings.retry, usage, gate)
        self._manager = manager  # = self._engine.manager, one lookup less on the fast path
        self._settings = settings
        self._relative = False
        self._idempotent = False
        self._variants: dict[tuple[bool, bool], SalesforceAuthMiddleware] = {}

    @property
    def settings(self) -> Settings:
        """The settings this middleware was built with."""
        return self._settings

    @property
    def config(self) -> FlowConfig:
        """The validated login settings (``token_url``, ``audience``, ``client_id``…)."""
        return self._settings.flow

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of token requests and API requests."""
        return self._settings.retry

    def for_request(self, *, relative: bool, idempotent: bool) -> SalesforceAuthMiddleware:
        """This middleware, told how the request it is passed with was built.

        ``AuthSession`` passes the result as the request's ``middlewares``: it shares every
        token, slot and counter with this object (no per-request object is made; there are
        four such views, made once).

        Args:
            relative: The URL was built from a path on the instance, so the request may be
                moved to a new ``instance_url`` if the org moved meanwhile.
            idempotent: The caller allows resending a POST or PATCH.

        Returns:
            The middleware for such requests.
        """
        key = (relative, idempotent)
        view = self._variants.get(key)
        if view is None:
            view = copy.copy(self)
            view._relative, view._idempotent = key
            self._variants[key] = view
        return view

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SalesforceAuthMiddleware(client_id={c.client_id!r}, username={c.username!r}, "
            f"token_url={c.token_url!r}, audience={c.audience!r})"
        )

    @property
    def admission(self) -> Admission:
        """The fleet's checks before a marked request is sent.

        ``fleet_limit`` leases and the ``api_budget`` guard; ``AuthSession`` applies them to
        requests sent with ``long_running=True`` or ``low_priority=True``.
        """
        return self._admission

    @property
    def telemetry(self) -> Telemetry:
        """Where this middleware's spans and metrics go (OpenTelemetry; optional)."""
        return self._manager.telemetry

    @property
    def token_requests(self) -> int:
        """How many token requests this object has sent (each a POST to the token URL)."""
        return self._engine.manager.token_requests

    @property
    def current_token(self) -> Token | None:
        """The token in use, or ``None`` before the first exchange or while it is replaced."""
        return self._engine.manager.current

    @property
    def api_usage(self) -> ApiUsage | None:
        """The org's API usage from the latest ``Sforce-Limit-Info`` header, if any was seen."""
        return self._engine.usage.latest

    def ready_token(self) -> Token | None:
        """The token to send now without any I/O, or ``None`` when a login or refresh is due."""
        return self._engine.manager.valid_token()

    def open(self) -> None:
        """Allow logins again after ``close`` (``AuthSession.open`` calls this).

        The current token, if any, is kept: it may still be valid.
        """
        self._engine.manager.open()
        self._engine.manager.telemetry.resume()
        self._admission.open()

    def close(self) -> None:
        """Stop the token refresh in flight; its waiters get ``SessionClosedError``.

        Until ``open`` is called again, a request that needs a new token fails with
        ``SessionClosedError`` (``AuthSession.close`` calls this).
        """
        self._engine.manager.close()
        self._engine.usage.flush()  # a crossing seen in the last second is not lost
        self._admission.close()
        self._engine.manager.telemetry.pause()

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
        return self._engine.manager.valid_token() or await self._engine.manager.get(http)

    async def clear_refusal(self) -> bool:
        """Lift the refusal memory and the login-rate back-off, fleet-wide (an operator's act).

        After fixing what the token endpoint refused (a user approved, an app installed), or
        once the login rate is known to be back under Salesforce's limit, call this so that
        the next request logs in at once instead of at the end of ``refusal_cooldown`` or
        ``login_backoff``. ``sfauth store clear`` does the same from a shell.

        Returns:
            Whether a refusal was in force (in the shared store or in this session).

        Raises:
            TokenStoreError: The shared store cannot be reached.
        """
        return await self._engine.manager.clear_refusal()

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
        manager = self._engine.manager
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

    async def send(
        self,
        http: aiohttp.ClientSession,
        loop: asyncio.AbstractEventLoop,
        token: Token,
        method: str,
        url: str,
        kwargs: dict[str, Any],
    ) -> ClientResponse:
        """Send one ``AuthSession`` request: straight to aiohttp when it can, else through it.

        aiohttp builds a request's middleware chain anew for every request (a closure and a
        coroutine per middleware, more objects for the garbage collector to traverse while
        requests are in flight), which costs most at high concurrency (benchmarks/RESULTS.md
        §1). So the common case (a token that has worked, a URL built from a path on the
        instance, no body or a bytes, str or JSON body, arguments aiohttp can be given twice)
        waits here for a send slot when none is free, before aiohttp builds anything, and is
        sent here, outside the chain: the bearer in the request's headers, redirects not
        followed. A 401 is replayed here too (``after_rejection``), in the same send slot, so
        that a request waiting for the refresh holds no second aiohttp request. Anything
        else, and whatever that send's answer needs (a redirect to follow, a classified
        answer, a failed send or a body cut short), goes through this
        middleware: the same request is passed to aiohttp again, with a
        ``_Continued`` middleware whose first hop is the answer already in hand, so every
        replay, retry and later redirect hop is the middleware's, within what is left of the
        request's total timeout.

        Args:
            http: The ``aiohttp.ClientSession`` to send through (``AuthSession.http``).
            loop: The event loop of ``http``'s pool (``AuthSession.open()`` ran in it): the send
                slots are bound to it here, without ``asyncio.get_running_loop()`` (a
                ``getpid()`` system call on CPython 3.11).
            token: The current token (``url`` was built from its ``instance_url``).
            method: The HTTP method.
            url: The absolute URL (on the instance when this view is ``relative``).
            kwargs: aiohttp ``request()`` arguments, ``middlewares`` excepted (not changed).

        Returns:
            The response, as the middleware returns it (see ``__call__``).

        Raises:
            RequestTimeoutError: The total timeout ran out while it waited for a send slot
                (``sent=False``).
            The middleware's errors (see ``__call__``), and aiohttp's from outside its
            middleware chain (e.g. ``TooManyRedirects``, ``InvalidUrlClientError``).
        """
        engine = self._engine
        manager = self._manager
        gate = engine.gate
        if (
            not self._relative  # an absolute URL: the middleware checks its origin
            or not manager.proven  # a token that has not worked yet
            or not sendable_twice(kwargs)
            or ASYNC_API in url  # Bulk API 1.0 also reads X-SFDC-Session
        ):
            return await http.request(method, url, middlewares=(self,), **kwargs)
        started = engine.retry.clock()  # the retry budget counts the wait and every attempt
        if gate is not None:
            gate.bind(loop)  # another loop may have used this middleware meanwhile
        if gate is not None and not gate.try_enter():
            # No free slot: wait here, before aiohttp builds anything (less to keep alive).
            timeout = kwargs.get("timeout", http.timeout)
            _, left = await within_total(
                gate.enter(), timeout, what="a send slot", method=method, url=url.split("?")[0]
            )
            if left is not None:
                kwargs = {**kwargs, "timeout": with_total(timeout, left)}
            if http.closed:  # closed while this waited
                gate.leave()
                raise closed_error(method, url, sent=False)
            current = manager.valid_token()
            if current is None or not manager.proven or current.instance_url != token.instance_url:
                gate.leave()  # a refresh or a move meanwhile: the middleware handles it
                return await http.request(method, url, middlewares=(self,), **kwargs)
            token = current  # the newest token, stamped now that a slot is held
        # The direct path: a token that works, its instance, bytes to send, a slot.
        sent_at = time.monotonic()  # kwargs' total timeout (what the wait left) starts here
        in_slot = False  # the slot goes with a response the middleware finishes
        resend: DirectResend | None = None
        try:
            try:
                # Nothing made for the send is kept here: every object alive while requests
                # are in flight is traversed by every garbage collection meanwhile.
                response = await http.request(method, url, **stamped(kwargs, token))
                if response.status == 401:
                    # A rejected session: one refresh for all, then sent again from here, in
                    # this slot (a waiting request holds no second request or chain).
                    resend = DirectResend(manager, http, method, url, token, kwargs, sent_at)
                    replay = after_rejection(resend, response, token)
                    del response  # the replay lets go of the 401 once it has read it
                    response, token = await replay
            except aiohttp.ClientError as exc:
                rest = _Continued(self, started, error=exc)
            except SFAuthError as exc:  # the replay's refresh or its send failed
                if resend is None or not getattr(exc, "retryable", False):
                    raise
                rest = _Continued(self, started, failure=exc)
            else:
                status = response.status
                if status in CLASSIFIED:
                    in_slot = True  # a failure: finished in this slot
                    rest = _Continued(self, started, response=response, token=token)
                else:
                    usage = response.headers.get("Sforce-Limit-Info")
                    if usage is not None:
                        engine.usage.observe(usage)
                    if status in _REDIRECTS and kwargs.get("allow_redirects", True):
                        rest = _Continued(self, started, response=response)  # hop 1, answered
                    elif not is_json(response):
                        return response
                    else:
                        try:  # read inside the retry loop: a body cut short is retried
                            await response.read()
                        except (aiohttp.ClientError, TimeoutError) as exc:
                            response.close()
                            rest = _Continued(self, started, error=exc, cut=True)
                        except BaseException:
                            response.close()
                            raise
                        else:
                            return response
        finally:
            if gate is not None and not in_slot:
                gate.leave()
        if resend is not None:  # the request was replayed: maybe moved, a login spent
            url, kwargs, rest.refreshes = resend.url, resend.kwargs, resend.refreshes
        return await rest.send(http, method, url, kwargs, sent_at)

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """Authenticate one request hop (aiohttp client middleware protocol).

        Args:
            request: The request aiohttp is about to send (called again on each redirect).
            handler: The next handler in the chain.

        Returns:
            The response. A 401 is never returned for a request that carried the bearer.

        Raises:
            InvalidSessionError: 401 ``INVALID_SESSION_ID`` even after a refresh and replay.
            RestApiNotAllowedError: 401 "This session is not valid for use with the REST API".
            RequestLimitError: 403 ``TotalRequests Limit exceeded`` (daily quota spent).
            TransientAPIError: A transient answer persisted through every allowed retry.
            TransportError: The connection failed or timed out (after allowed retries).
            TokenEndpointError: The token could not be obtained.
            CircuitOpenError: Refreshes keep failing; no login is attempted for a while.
        """
        engine = self._engine
        manager = self._manager
        gate = engine.gate
        if gate is not None:
            gate.bind(asyncio.get_running_loop())  # this ClientSession's loop
        token = manager.valid_token()
        url = request.url
        if (
            token is None  # a first login or a proactive refresh is due
            or not manager.proven  # a token that has not worked yet
            or (url.scheme, url.raw_host or "", url.port) != manager.origin  # not the instance
            or RETRY_UNSAFE_HEADER in request.headers  # the caller's opt-in, to be removed
            or url.raw_path.startswith(ASYNC_API)  # Bulk API 1.0 also reads X-SFDC-Session
            or not resendable_as_is(request.body)  # a file or a stream
            or (gate is not None and not gate.try_enter())  # no free send slot: queue
        ):
            return await self._exchange(request, handler, token)
        # The fast path: a token that works, its instance, bytes to send, a free slot.
        started = engine.retry.clock()  # the retry budget counts this first attempt
        request.headers[hdrs.AUTHORIZATION] = "Bearer " + token.access_token
        handed_over = False
        try:
            try:
                response = await handler(request)
            except aiohttp.ClientError as exc:
                failure = self._new_exchange(request, handler).failure(exc)
            except asyncio.CancelledError:
                closed = closed_not_cancelled(request.session, request.method, where(request))
                if closed is None:
                    raise
                raise closed from None  # the slot is given back below
            else:
                if response.status == 401 or response.status in CLASSIFIED:
                    # A rejected session or a failure: the exchange finishes it, in this slot.
                    handed_over = True
                    exchange = self._new_exchange(request, handler)
                    return await exchange.resume(response, token, started)
                usage = response.headers.get("Sforce-Limit-Info")
                if usage is not None:
                    engine.usage.observe(usage)
                if not is_json(response):
                    return response
                # Read inside the retry loop: a body cut short is retried.
                cut = await read_json(response, request, may_resend=self._may_resend(request))
                if cut is None:
                    return response
                failure = cut
        finally:
            if gate is not None and not handed_over:
                gate.leave()
        # Past the except blocks: no aiohttp error (its request_info holds the bearer) rides along.
        return await self._new_exchange(request, handler).recover(failure, started)

    def _may_resend(self, request: ClientRequest) -> bool:
        return self._idempotent or request.method in IDEMPOTENT_METHODS

    def _new_exchange(
        self, request: ClientRequest, handler: ClientHandlerType, *, opt_in: bool = False
    ) -> Exchange:
        may_resend = opt_in or self._may_resend(request)
        return Exchange(self._engine, request, handler, may_resend=may_resend)

    async def _exchange(
        self, request: ClientRequest, handler: ClientHandlerType, token: Token | None
    ) -> ClientResponse:
        """The general path: scoping, the first login, a queue for a slot, rewinding."""
        manager = self._manager
        opt_in = False
        headers = request.headers
        if RETRY_UNSAFE_HEADER in headers:  # the caller's opt-in; never sent to Salesforce
            opt_in = "1" in headers.popall(RETRY_UNSAFE_HEADER)
        origin = request_origin(request)
        if manager.origin is not None and origin != manager.origin and not self._relative:
            return await handler(request)  # not the org's instance: no bearer, no login
        if token is None:
            token = await manager.get(open_session(request))
        started = self._engine.retry.clock()  # the retry budget counts the first attempt
        if origin != manager.origin:
            if not (self._relative and origin in manager.old_origins):
                return await handler(request)
            rebind(request, token.instance_url)  # built for an instance the org has left
        exchange = self._new_exchange(request, handler, opt_in=opt_in)
        return await exchange.run(token, started)


class _Continued:
    """The middleware of a request the direct path began (``SalesforceAuthMiddleware.send``).

    Its first call is the request's first hop, already answered: it finishes that answer (a
    401 or a classified answer, its send slot still held), recovers from the failure, or
    returns the redirect for aiohttp to follow. Later calls (redirect hops) are the
    middleware's.

    Args:
        view: The middleware (view) that began the request.
        started: ``retry.clock()`` before the first attempt (the retry budget counts it).
        response: The first hop's answer, if it was answered.
        token: The token the first hop carried, when ``response`` holds a send slot.
        error: The aiohttp error of the first hop (its send, or its body when ``cut``).
        cut: ``error`` came from reading the body.
        failure: The first hop's typed, retryable failure (its 401 replay's).
    """

    __slots__ = (
        "_cut",
        "_error",
        "_failure",
        "_response",
        "_started",
        "_token",
        "_view",
        "refreshes",
        "taken",
    )

    def __init__(
        self,
        view: SalesforceAuthMiddleware,
        started: float,
        *,
        response: ClientResponse | None = None,
        token: Token | None = None,
        error: aiohttp.ClientError | TimeoutError | None = None,
        cut: bool = False,
        failure: SFAuthError | None = None,
    ) -> None:
        self._view = view
        self._started = started
        self._response = response
        self._token = token
        self._error = error
        self._cut = cut
        self._failure = failure
        #: Logins the request already caused (a replay on the direct path).
        self.refreshes = 0
        self.taken = False

    async def send(
        self,
        http: aiohttp.ClientSession,
        method: str,
        url: str,
        kwargs: dict[str, Any],
        sent_at: float,
    ) -> ClientResponse:
        """Pass the request to aiohttp again with this middleware, within its total timeout."""
        kwargs = {**left_of(kwargs, http, sent_at), "middlewares": (self,)}
        try:
            return await http.request(method, url, **kwargs)
        except RuntimeError:
            if not http.closed:
                raise
            # Closed since the direct send, which was answered (or may have gone out).
            failure = closed_error(method, url, sent=True if self._response is not None else None)
        finally:
            if not self.taken:  # aiohttp failed before the first hop, or was cancelled
                self._abandon()
        raise failure

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """Finish the first hop's answer, or authenticate a later hop (middleware protocol)."""
        view = self._view
        if self.taken:
            return await view(request, handler)  # a redirect hop
        self.taken = True
        response, token, error = self._response, self._token, self._error
        self._response = self._token = self._error = None
        if response is not None and token is None:
            return response  # a redirect: aiohttp follows it, its hops come back here
        exchange = view._new_exchange(request, handler)
        exchange.refreshes = self.refreshes
        if response is not None and token is not None:
            return await exchange.resume(response, token, self._started)
        failure, self._failure = self._failure, None
        if failure is not None:
            return await exchange.recover(failure, self._started)
        if isinstance(error, aiohttp.ClientError) and not self._cut:
            failure = exchange.failure(error)
        else:
            assert error is not None
            failure = transport_error(error, request, sent=True, retryable=exchange.may_resend)
        return await exchange.recover(failure, self._started)

    def _abandon(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.close()
            gate = self._view._engine.gate
            if self._token is not None and gate is not None:
                gate.leave()
        self._error = self._token = None
