"""AuthSession: one pooled aiohttp client bound to the org's instance, always authenticated."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator, Mapping
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar, Unpack

import aiohttp
from yarl import URL

from ._bulk import BulkMixin
from ._env import settings_from_env
from ._limits import ApiUsage
from ._logging import scrub
from ._middleware import SalesforceAuthMiddleware
from ._query import QueryMixin
from ._scoping import closed_error, closed_not_cancelled, resolve
from ._settings import Options, Settings, settings_from
from ._sobjects import SObjectsMixin
from ._timeouts import with_total, within_total
from ._token import Token
from .exceptions import ConfigurationError, RequestTimeoutError, SFAuthError, TransportError

__all__ = ["AuthSession"]


_T = TypeVar("_T")

_NOT_OPEN = "AuthSession is not open; use `async with AuthSession(...)`"


class AuthSession(QueryMixin, SObjectsMixin, BulkMixin):
    r"""An authenticated, pooled HTTP session to one Salesforce org (JWT bearer flow).

    ::

        async with AuthSession(client_id=..., username=..., private_key="key.pem") as sf:
            async with sf.get("/services/data/v62.0/limits") as resp:
                limits = await resp.json()

    Every request goes through one ``aiohttp.ClientSession`` whose ``TCPConnector`` holds the
    connection pool. ``SalesforceAuthMiddleware`` adds the bearer token for the
    ``instance_url`` origin only, fetches the first token on demand (one exchange shared by all
    concurrent callers), and on a 401 ``INVALID_SESSION_ID`` refreshes once and replays once.

    Args:
        settings: A ``Settings`` to start from (optional): one object holds every setting,
            each documented there once.
        **options: Any ``Settings`` field by name, overriding ``settings``: ``client_id``,
            ``username``, ``private_key`` (required unless ``settings`` has them),
            ``passphrase``, ``login_url``, ``audience``, ``site``, ``assertion_lifetime``,
            ``allow_http_loopback``, ``limit`` (pool connections, default 100; also the
            number of sends in flight), ``limit_per_host``, ``timeout``, ``retry``,
            ``refresh_timeout``, ``refresh_cooldown``, ``failure_threshold``,
            ``max_token_age``, ``usage_warning``, ``ssl``, ``keepalive_timeout``,
            ``token_store``, ``api_version``, ``max_relogins``, ``relogin_window``,
            ``max_in_flight``, ``refusal_cooldown``, ``login_backoff``,
            ``login_rate_warning``, ``login_rate_cap``, ``fleet_limit``,
            ``fleet_limit_scope``, ``lease_ttl``, ``api_budget``, ``tracer_provider``,
            ``meter_provider``.

    Raises:
        ConfigurationError: A setting is missing or malformed.
        PrivateKeyError: The key cannot be loaded or is not RSA >= 2048 bits.
        TypeError: A required setting is missing or a name is not a setting.
    """

    def __init__(self, settings: Settings | None = None, **options: Unpack[Options]) -> None:
        settings = settings_from(settings, options, owner="AuthSession")
        if settings.max_in_flight is None and settings.limit:
            # Sends in flight follow the pool: a bearer is stamped only once a connection
            # can take the request.
            self.auth = SalesforceAuthMiddleware(settings.replace(max_in_flight=settings.limit))
        else:
            self.auth = SalesforceAuthMiddleware(settings)
        self._settings = settings
        self._http: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the pool's, set by open()
        #: What a request is: traced only while a recording tracer was configured at open().
        self._context: type[_ResponseContext] = _ResponseContext
        self._api_version = settings.api_version
        admission = self.auth.admission
        #: Every request takes a fleet lease (``fleet_limit_scope="all"``).
        self._admit_all = admission.leases is not None and admission.every_request
        #: ``_views[relative][idempotent]``: the middleware that sends each request.
        self._views = tuple(
            tuple(self.auth.for_request(relative=r, idempotent=i) for i in (False, True))
            for r in (False, True)
        )

    @property
    def settings(self) -> Settings:
        """The settings this session was built with."""
        return self._settings

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = "SF_", **overrides: Any
    ) -> Self:
        """Build a session from ``SF_*`` environment variables (see ``settings_from_env``).

        Args:
            environ: Where to read the variables; ``os.environ`` when ``None``.
            prefix: Prefix of the variable names.
            **overrides: ``AuthSession`` arguments that take precedence over the environment,
                e.g. ``limit=50``; the variables of those given are not required.

        Returns:
            A new, not yet opened session.

        Raises:
            ConfigurationError: Variables are missing or malformed; all missing ones are named.
        """
        settings = settings_from_env(environ, prefix=prefix, provided=overrides)
        settings.update(overrides)
        try:
            return cls(**settings)
        except ConfigurationError as exc:
            if "allow_http_loopback=True" not in str(exc) or "allow_http_loopback" in overrides:
                raise
            hint = f"{exc} (or set {prefix}ALLOW_HTTP_LOOPBACK=true)"
        raise ConfigurationError(hint)

    def __repr__(self) -> str:
        c = self.auth.config
        state = "open" if self._http is not None and not self._http.closed else "closed"
        return (
            f"AuthSession(client_id={c.client_id!r}, username={c.username!r}, "
            f"login_url={c.login_url!r}, audience={c.audience!r}, {state})"
        )

    async def __aenter__(self) -> Self:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def open(self) -> None:
        """Create the connection pool. ``async with`` calls this; call it yourself otherwise.

        Must run inside an event loop. Calling it on an open session does nothing. A closed
        session may be opened again, also in another event loop (a second ``asyncio.run()``):
        it gets a new pool and keeps its token.
        """
        if self._http is not None and not self._http.closed:
            return
        self._loop = asyncio.get_running_loop()
        self.auth.open()
        traced = self.auth.telemetry.records_requests()
        self._context = _TracedResponseContext if traced else _ResponseContext
        settings = self._settings
        connector = aiohttp.TCPConnector(
            limit=settings.limit,
            limit_per_host=settings.limit_per_host,
            ssl=settings.ssl,
            keepalive_timeout=settings.keepalive_timeout,
        )
        self._http = http = aiohttp.ClientSession(
            connector=connector,
            middlewares=(self.auth,),
            timeout=settings.timeout,
        )
        # aiohttp resends an idempotent request once, unasked, when its connection drops; the
        # retry policy alone decides (no public switch; the attribute is in 3.12.2 to 3.14).
        if hasattr(http, "_retry_connection"):
            http._retry_connection = False

    async def close(self) -> None:
        """Close the pool and its connections, and stop a token refresh in flight.

        Requests still waiting get ``SessionClosedError``. Safe to call twice.
        """
        http, self._http = self._http, None
        self.auth.close()
        if http is not None:
            await http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        """The underlying ``aiohttp.ClientSession`` (the auth middleware is installed on it).

        Raises:
            SFAuthError: The session is not open (use ``async with`` or ``open()``).
        """
        http = self._http
        if http is None or http.closed:
            raise SFAuthError(_NOT_OPEN)
        return http

    @property
    def token_requests(self) -> int:
        """How many token requests this session has sent."""
        return self.auth.token_requests

    @property
    def api_usage(self) -> ApiUsage | None:
        """The org's API usage from the latest ``Sforce-Limit-Info`` header, if any was seen."""
        return self.auth.api_usage

    async def token(self) -> Token:
        """Return the current token, logging in first if needed.

        Returns:
            The ``Token`` in use (its ``instance_url``, ``org_id``, ``user_id``…).

        Raises:
            TokenEndpointError: The exchange failed; the subclass says why.
            SFAuthError: The session is not open.
        """
        return await self.auth.token(self.http)

    async def clear_refusal(self) -> bool:
        """Lift the refusal memory and the login-rate back-off, fleet-wide.

        See ``SalesforceAuthMiddleware.clear_refusal``; ``sfauth store clear`` does the same
        from a shell. Needs no open session.

        Returns:
            Whether a refusal was in force.

        Raises:
            TokenStoreError: The shared store cannot be reached.
        """
        return await self.auth.clear_refusal()

    async def replace_token(self, rejected: Token) -> Token:
        """Report that ``rejected`` stopped working in another client; get its replacement.

        For code that hands the token to another library (``simple_salesforce.Salesforce(
        instance_url=token.instance_url, session_id=token.access_token)``): when that library
        reports an expired session, call this and hand it the new token. It is a 401 as far as
        sfauth is concerned: one refresh for every concurrent caller, none if ``rejected`` was
        already replaced.

        Args:
            rejected: The token the other client was using.

        Returns:
            A token other than ``rejected``.

        Raises:
            TokenEndpointError: The refresh failed.
            CircuitOpenError: Refreshes keep failing; no login is attempted for a while.
            SFAuthError: The session is not open.
        """
        return await self.auth.replace_token(rejected, self.http)

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = False,
        long_running: bool = False,
        low_priority: bool = False,
        **kwargs: Any,
    ) -> _ResponseContext | _Admitted:
        """Send a request to the org's instance.

        Use as ``async with sf.request("GET", path) as resp:`` or ``resp = await ...``
        (then release the response yourself).

        Args:
            method: HTTP method.
            path: Path on the instance, such as ``/services/data/v62.0/query`` (a missing
                leading ``/`` is added), or an absolute URL on the current ``instance_url``
                origin (for example a ``nextRecordsUrl`` made absolute).
            idempotent: Allow retrying a POST or PATCH after a transient answer or a dropped
                connection (only do this when sending it twice is harmless, e.g. an upsert by
                external id). GET, HEAD, OPTIONS, PUT and DELETE are always retried; any
                request that provably never reached the server is retried.
            long_running: The request may run long (a Bulk result download, a big query):
                with ``fleet_limit`` it holds one of the org's fleet-wide leases from before
                it is sent until its response is released (awaited without ``async with``:
                until its body is read), waiting in line for one within its total timeout.
            low_priority: With ``api_budget``, raise ``ApiBudgetError`` instead of sending
                once the org's API usage is past the budget.
            **kwargs: Passed to ``aiohttp.ClientSession.request`` (``params``, ``json``,
                ``data``, ``headers``, ``timeout``…).

        Returns:
            An awaitable async context manager yielding the ``aiohttp.ClientResponse``.

        Raises:
            CrossOriginError: ``path`` is an absolute or ``//host`` URL of another origin.
            InvalidSessionError: The API kept answering 401 after one refresh and replay.
            RestApiNotAllowedError: The session is not valid for the REST API.
            RequestLimitError: The org's daily API request limit is spent.
            TransientAPIError: A transient answer persisted through every allowed retry.
            TransportError: The connection failed or timed out (after allowed retries).
            TokenEndpointError: No token could be obtained.
            CircuitOpenError: Refreshes keep failing; no login is attempted for a while.
            ApiBudgetError: ``low_priority`` and the org's usage is past ``api_budget``.
            RequestTimeoutError: Also when no fleet lease was free within the total timeout.
        """
        return self._request(method, path, idempotent, long_running, low_priority, kwargs)

    def get(
        self,
        path: str,
        *,
        idempotent: bool = False,
        long_running: bool = False,
        low_priority: bool = False,
        **kwargs: Any,
    ) -> _ResponseContext | _Admitted:
        """``GET`` ``path`` on the instance; see ``request``."""
        return self._request("GET", path, idempotent, long_running, low_priority, kwargs)

    def post(
        self,
        path: str,
        *,
        idempotent: bool = False,
        long_running: bool = False,
        low_priority: bool = False,
        **kwargs: Any,
    ) -> _ResponseContext | _Admitted:
        """``POST`` to ``path`` on the instance (not retried unless ``idempotent=True``)."""
        return self._request("POST", path, idempotent, long_running, low_priority, kwargs)

    def put(
        self,
        path: str,
        *,
        idempotent: bool = False,
        long_running: bool = False,
        low_priority: bool = False,
        **kwargs: Any,
    ) -> _ResponseContext | _Admitted:
        """``PUT`` ``path`` on the instance; see ``request``."""
        return self._request("PUT", path, idempotent, long_running, low_priority, kwargs)

    def patch(
        self,
        path: str,
        *,
        idempotent: bool = False,
        long_running: bool = False,
        low_priority: bool = False,
        **kwargs: Any,
    ) -> _ResponseContext | _Admitted:
        """``PATCH`` ``path`` on the instance (not retried unless ``idempotent=True``)."""
        return self._request("PATCH", path, idempotent, long_running, low_priority, kwargs)

    def delete(
        self,
        path: str,
        *,
        idempotent: bool = False,
        long_running: bool = False,
        low_priority: bool = False,
        **kwargs: Any,
    ) -> _ResponseContext | _Admitted:
        """``DELETE`` ``path`` on the instance; see ``request``."""
        return self._request("DELETE", path, idempotent, long_running, low_priority, kwargs)

    def _request(
        self,
        method: str,
        path: str,
        idempotent: bool,
        long_running: bool,
        low_priority: bool,
        kwargs: dict[str, Any],
    ) -> _ResponseContext | _Admitted:
        """The request object: plain, or first through the fleet's admission when marked."""
        context = self._context(self, method, path, idempotent, kwargs)
        if long_running is not False or low_priority is not False or self._admit_all:
            return _Admitted(context, long_running, low_priority)  # it checks the marks' types
        return context

    async def _first_token(self, method: str, path: str, kwargs: dict[str, Any]) -> Token:
        """Log in (or refresh) before a request, within the request's total timeout.

        The time it takes comes out of ``kwargs``' total timeout (updated in place).

        Raises:
            RequestTimeoutError: The total timeout ran out first.
        """
        what = f"a token from {self.auth.config.token_url}"
        return await self._before_send(self.auth.token(self.http), what, method, path, kwargs)

    async def _before_send(
        self, wait: Awaitable[_T], what: str, method: str, path: str, kwargs: dict[str, Any]
    ) -> _T:
        """Await ``wait`` within the request's total timeout, and take its time out of it.

        Raises:
            RequestTimeoutError: The total timeout ran out first (nothing was sent).
        """
        timeout = kwargs.get("timeout", self._settings.timeout)
        result, left = await within_total(
            wait, timeout, what=what, method=method, url=_shown(path)
        )
        if left is not None:
            kwargs["timeout"] = with_total(timeout, left)
        return result


def _shown(path: object) -> str:
    """``path`` for an error message: without its query string, at most 200 characters."""
    return str(path).split("?", 1)[0][:200]


class _AsyncOnly:
    """A request used with a plain ``with``: a ``TypeError`` that says how to use it."""

    __slots__ = ()

    def __enter__(self) -> NoReturn:
        raise TypeError(
            "a request of an AuthSession is asynchronous: use `async with sf.get(...) as "
            "resp:` (or `resp = await sf.get(...)`, then `resp.release()`), not `with`"
        )

    def __exit__(self, *exc_info: object) -> None:
        """Never called: ``__enter__`` raises."""


class _ResponseContext(_AsyncOnly):
    """One request of an ``AuthSession``: awaitable, and an async context manager.

    Its ``__aenter__`` is the send itself (the session's whole part of the hot path: a
    token in hand, the URL on the instance, the request handed to the middleware view for it,
    whose ``send`` skips aiohttp's middleware chain when it can).
    """

    __slots__ = ("_idempotent", "_kwargs", "_method", "_path", "_resp", "_session")

    def __init__(
        self,
        session: AuthSession,
        method: str,
        path: str,
        idempotent: bool,
        kwargs: dict[str, Any],
    ) -> None:
        self._session = session
        self._method = method
        self._path = path
        if idempotent is not True and idempotent is not False:
            raise ConfigurationError(f"idempotent must be True or False; got {idempotent!r}")
        self._idempotent = idempotent
        self._kwargs = kwargs
        self._resp: aiohttp.ClientResponse | None = None

    def __await__(self) -> Generator[Any, None, aiohttp.ClientResponse]:
        return self.__aenter__().__await__()

    async def __aenter__(self) -> aiohttp.ClientResponse:
        session = self._session
        method = self._method
        kwargs = self._kwargs
        http = session._http
        if http is None:
            http = session.http  # raises SFAuthError: not open
        auth = session.auth
        token = auth.ready_token()
        if token is None:  # a login or refresh first, within the request's total timeout
            token = await session._first_token(method, self._path, kwargs)
        url, relative = resolve(token.instance_url, self._path)
        ours = session._views[relative][self._idempotent]
        theirs = kwargs.pop("middlewares", None)
        if theirs is not None and not isinstance(theirs, list | tuple):
            raise ConfigurationError(
                "middlewares must be a tuple or list of aiohttp client middlewares, such as "
                f"(mine,); got {type(theirs).__name__}"
            )
        failure: SFAuthError
        try:
            if theirs:
                response = await http.request(method, url, middlewares=(*theirs, ours), **kwargs)
            else:
                # The loop open() ran in: looking it up per request is a getpid() call.
                loop = session._loop or asyncio.get_running_loop()
                response = await ours.send(http, loop, token, method, url, kwargs)
            self._resp = response
            return response
        except RuntimeError:
            if not http.closed:
                raise
            # aiohttp's "Session is closed" before it built the request: nothing was sent.
            failure = closed_error(method, url, sent=False)
        except asyncio.CancelledError:
            closed = closed_not_cancelled(http, method, url)
            if closed is None:
                raise
            failure = closed
        except RequestTimeoutError:
            raise  # sfauth's own: it says what the request waited for
        except aiohttp.ClientError as exc:  # e.g. too many redirects
            failure = TransportError(
                scrub(str(exc))[:300] or "no details",
                method=method,
                url=url.split("?", 1)[0],
                reason=type(exc).__name__,
                sent=True,
            )
        except TimeoutError:
            failure = RequestTimeoutError(
                "the request's total timeout ran out",
                method=method,
                url=url.split("?", 1)[0],
                reason="TimeoutError",
                sent=True,
            )
        # Raised outside the except block: the aiohttp error (its request_info holds the
        # Authorization header) must not stay reachable through __context__.
        raise failure

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        resp = self._resp
        if resp is not None:
            resp.release()
            await resp.wait_for_close()


class _TracedResponseContext(_ResponseContext):
    """A request inside an ``sfauth.request`` span (sessions opened with tracing on)."""

    __slots__ = ()

    async def __aenter__(self) -> aiohttp.ClientResponse:
        auth = self._session.auth
        with auth.telemetry.request(self._method, self._path) as span:
            token = auth.current_token
            if token is not None:  # so that a request that fails still names its host
                span.set_attribute("server.address", URL(token.instance_url).host or "")
            response = await super().__aenter__()
            span.set_attribute("server.address", response.url.host or "")
            span.set_attribute("http.response.status_code", response.status)
            return response


class _Admitted(_AsyncOnly):
    """A request that passes the fleet's admission first: the API budget, then a lease.

    Awaitable and an async context manager, like the request it wraps. The lease is held
    from before the request is sent until its response is released; awaited without
    ``async with``, the body is read before the lease is given back and the response
    returned.
    """

    __slots__ = ("_inner", "_lease", "_long_running", "_low_priority", "_org")

    def __init__(self, inner: _ResponseContext, long_running: bool, low_priority: bool) -> None:
        for name, value in (("long_running", long_running), ("low_priority", low_priority)):
            if value is not True and value is not False:
                raise ConfigurationError(f"{name} must be True or False; got {value!r}")
        self._inner = inner
        self._long_running = long_running
        self._low_priority = low_priority
        self._lease: str | None = None
        self._org = ""

    def __await__(self) -> Generator[Any, None, aiohttp.ClientResponse]:
        return self._read_and_release().__await__()

    async def _read_and_release(self) -> aiohttp.ClientResponse:
        response = await self.__aenter__()
        if self._lease is None:
            return response
        url = str(response.url).split("?", 1)[0]
        failure: TransportError
        try:
            await response.read()  # the lease covers the body
            return response
        except aiohttp.ClientError as exc:
            failure = TransportError(
                scrub(str(exc))[:300] or "no details",
                method=response.method,
                url=url,
                reason=type(exc).__name__,
                sent=True,
            )
        except TimeoutError:
            failure = RequestTimeoutError(
                "the request's total timeout ran out while the body was read",
                method=response.method,
                url=url,
                reason="TimeoutError",
                sent=True,
            )
        except BaseException:
            response.release()
            raise
        finally:
            await self._release()
        response.release()
        # Raised outside the except blocks: aiohttp's error (its request_info holds the
        # Authorization header) must not stay reachable through __context__.
        raise failure

    async def __aenter__(self) -> aiohttp.ClientResponse:
        inner = self._inner
        session = inner._session
        method, path, kwargs = inner._method, inner._path, inner._kwargs
        admission = session.auth.admission
        token = session.auth.ready_token() or await session._first_token(method, path, kwargs)
        budget = admission.budget
        if self._low_priority and budget is not None:
            await budget.check(token.org_id)
        leases = admission.leases
        if leases is not None and (self._long_running or admission.every_request):
            what = (
                f"one of the org's fleet_limit={leases.limit} leases (that many requests are "
                "in flight across the fleet)"
            )
            self._lease = await session._before_send(
                leases.acquire(token.org_id), what, method, path, kwargs
            )
            self._org = token.org_id
        try:
            return await inner.__aenter__()
        except BaseException:
            await self._release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._inner.__aexit__(exc_type, exc, tb)
        finally:
            await self._release()

    async def _release(self) -> None:
        lease, self._lease = self._lease, None
        leases = self._inner._session.auth.admission.leases
        if lease is not None and leases is not None:
            await leases.release(self._org, lease)
