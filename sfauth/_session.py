"""AuthSession: one pooled aiohttp client bound to the org's instance, always authenticated."""

from __future__ import annotations

import asyncio
import ssl as _ssl
import time
from collections.abc import Coroutine, Generator, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from ._assertion import MAX_ASSERTION_LIFETIME
from ._config import DEFAULT_LOGIN_URL
from ._env import settings_from_env
from ._keys import PrivateKeyInput
from ._limits import ApiUsage
from ._logging import scrub
from ._middleware import _REQUEST_FLAGS, SalesforceAuthMiddleware, request_flags
from ._query import LATEST, QueryMixin, normalize_api_version
from ._retry import RetryPolicy
from ._token import Token
from .exceptions import (
    ConfigurationError,
    CrossOriginError,
    RequestTimeoutError,
    SFAuthError,
    TransportError,
)
from .stores._base import TokenStore

__all__ = ["AuthSession"]

#: Default per-request timeouts (seconds). ``total`` covers waiting for a pooled connection,
#: sending and reading; Salesforce REST calls themselves time out after 10 minutes.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=300.0, sock_connect=30.0)


class AuthSession(QueryMixin):
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
        client_id: The connected app's consumer key (``iss``).
        username: The Salesforce username to act as (``sub``).
        private_key: RSA private key: PEM text (``str``/``bytes``, PKCS#1 or PKCS#8, literal
            ``\n`` accepted), a file path, or a loaded ``RSAPrivateKey``. Parsed once.
        passphrase: Passphrase of an encrypted PEM.
        login_url: Scheme and host of the token endpoint (default
            ``https://login.salesforce.com``; ``https://test.salesforce.com`` for sandboxes,
            or a My Domain URL).
        audience: The ``aud`` claim; derived from ``login_url``/``site`` when ``None``.
        site: Experience Cloud path prefix such as ``"/customers"``; default ``""``.
        assertion_lifetime: Seconds until each assertion's ``exp``; ``0 < x <= 180``.
        allow_http_loopback: Allow plain ``http`` to loopback hosts (the emulator).
        limit: Maximum simultaneous connections in the pool (``0`` = unlimited).
        limit_per_host: Maximum simultaneous connections per host (``0`` = unlimited).
        timeout: Per-request ``aiohttp.ClientTimeout``; default ``total=300 s``,
            ``sock_connect=30 s``.
        retry: How transient failures are retried (``RetryPolicy()`` by default: up to 8
            attempts within 60 s, exponential backoff with full jitter, ``Retry-After``
            honoured); ``RetryPolicy.none()`` disables retries.
        refresh_timeout: Seconds one token refresh may take, retries included (default 30).
        refresh_cooldown: Seconds the circuit stays open after ``failure_threshold``
            consecutive failed or rejected refreshes (default 60).
        failure_threshold: Consecutive failed refreshes, or fresh tokens rejected before they
            ever worked, that open the circuit (default 3).
        max_token_age: Seconds after which the token is replaced before the next request;
            ``None`` (default) refreshes on a 401 only.
        usage_warning: Fraction of the daily API allocation at which ``sfauth.limits.high``
            is logged (default 0.8).
        ssl: ``ssl`` argument of the connector: ``True`` (verify with the system store), an
            ``ssl.SSLContext`` (for example one trusting a test CA), or ``False``.
        keepalive_timeout: Seconds an idle pooled connection is kept (default 30).
        token_store: Share the token with other sessions or processes: ``MemoryTokenStore``
            (one process) or ``RedisTokenStore`` (many hosts). The store stays yours to close.
        api_version: REST API version of ``query``, ``query_all`` and ``limits``:
            ``"latest"`` (the default: the highest version the org serves, looked up once) or a
            version such as ``"62.0"`` (``"v62.0"`` is accepted).
        max_relogins: Logins allowed within ``relogin_window`` seconds to replace sessions the
            API rejected (expiries, revocations, ``replace_token`` reports, an endpoint that
            refuses the session), one per rejected token; past that such a rejection raises
            ``InvalidSessionError`` instead of logging in (default 5).
        relogin_window: Seconds of the rolling window of ``max_relogins`` (default 300).

    Raises:
        ConfigurationError: A setting is missing or malformed.
        PrivateKeyError: The key cannot be loaded or is not RSA >= 2048 bits.
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
        limit: int = 100,
        limit_per_host: int = 0,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        refresh_timeout: float = 30.0,
        refresh_cooldown: float = 60.0,
        failure_threshold: int = 3,
        max_token_age: float | None = None,
        usage_warning: float = 0.8,
        ssl: _ssl.SSLContext | bool = True,
        keepalive_timeout: float = 30.0,
        token_store: TokenStore | None = None,
        api_version: str = LATEST,
        max_relogins: int = 5,
        relogin_window: float = 300.0,
    ) -> None:
        _check_int("limit", limit)
        _check_int("limit_per_host", limit_per_host)
        if not isinstance(timeout, aiohttp.ClientTimeout):
            raise ConfigurationError(
                "timeout must be an aiohttp.ClientTimeout, e.g. aiohttp.ClientTimeout(total=60); "
                f"got {timeout!r}"
            )
        if not isinstance(keepalive_timeout, int | float) or keepalive_timeout < 0:
            raise ConfigurationError(
                f"keepalive_timeout must be a number of seconds >= 0; got {keepalive_timeout!r}"
            )
        if not isinstance(ssl, _ssl.SSLContext | bool):
            raise ConfigurationError(
                f"ssl must be True, False or an ssl.SSLContext; got {type(ssl).__name__}"
            )
        self.auth = SalesforceAuthMiddleware(
            client_id=client_id,
            username=username,
            private_key=private_key,
            passphrase=passphrase,
            login_url=login_url,
            audience=audience,
            site=site,
            assertion_lifetime=assertion_lifetime,
            allow_http_loopback=allow_http_loopback,
            retry=retry,
            refresh_timeout=refresh_timeout,
            refresh_cooldown=refresh_cooldown,
            failure_threshold=failure_threshold,
            max_token_age=max_token_age,
            usage_warning=usage_warning,
            max_in_flight=limit or None,
            token_store=token_store,
            max_relogins=max_relogins,
            relogin_window=relogin_window,
        )
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._timeout = timeout
        self._ssl = ssl
        self._keepalive_timeout = keepalive_timeout
        self._http: aiohttp.ClientSession | None = None
        self._api_version = normalize_api_version(api_version)

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
        self.auth.open()
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=self._limit_per_host,
            ssl=self._ssl,
            keepalive_timeout=self._keepalive_timeout,
        )
        self._http = aiohttp.ClientSession(
            connector=connector,
            middlewares=(self.auth,),
            timeout=self._timeout,
        )

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
            raise SFAuthError("AuthSession is not open; use `async with AuthSession(...)`")
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
        self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any
    ) -> _ResponseContext:
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
        """
        return _ResponseContext(self._send(method, path, idempotent, kwargs))

    def get(self, path: str, **kwargs: Any) -> _ResponseContext:
        """``GET`` ``path`` on the instance; see ``request``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> _ResponseContext:
        """``POST`` to ``path`` on the instance (not retried unless ``idempotent=True``)."""
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> _ResponseContext:
        """``PUT`` ``path`` on the instance; see ``request``."""
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> _ResponseContext:
        """``PATCH`` ``path`` on the instance (not retried unless ``idempotent=True``)."""
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> _ResponseContext:
        """``DELETE`` ``path`` on the instance; see ``request``."""
        return self.request("DELETE", path, **kwargs)

    async def _send(
        self, method: str, path: str, idempotent: bool, kwargs: dict[str, Any]
    ) -> aiohttp.ClientResponse:
        http = self._http
        if http is None or http.closed:
            http = self.http  # raises SFAuthError: not open
        auth = self.auth
        token = auth.ready_token()
        if token is None:
            # The first login (or a proactive refresh) counts against the request's total
            # timeout: the request itself gets what is left of it.
            timeout = kwargs.get("timeout", self._timeout)
            total = _total(timeout)
            started = time.monotonic()
            try:
                async with asyncio.timeout(total):
                    token = await auth.token(http)
            except TimeoutError:
                pass
            if token is not None and total is not None:
                left = max(total - (time.monotonic() - started), 0.001)
                kwargs = {**kwargs, "timeout": _with_total(timeout, left)}
            if token is None:
                raise RequestTimeoutError(
                    f"the request's total timeout ({total} s) ran out while it waited for "
                    f"a token from {auth.config.token_url}",
                    method=method,
                    url=_shown(path),
                    reason="TimeoutError",
                    sent=False,
                )
        url, relative = _resolve(token.instance_url, path)
        flags = request_flags(relative=relative, idempotent=idempotent)
        failure: TransportError
        try:
            return await http.request(method, url, **kwargs)
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
        finally:
            _REQUEST_FLAGS.reset(flags)
        # Raised outside the except block: the aiohttp error (its request_info holds the
        # Authorization header) must not stay reachable through __context__.
        raise failure


def _total(timeout: object) -> float | None:
    """Seconds of a request's total timeout; ``None`` for none (aiohttp reads 0 so too)."""
    if isinstance(timeout, aiohttp.ClientTimeout):
        return timeout.total or None
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        return float(timeout) or None  # aiohttp takes a number as the total
    return None


def _with_total(timeout: object, total: float) -> aiohttp.ClientTimeout:
    """``timeout`` with its total replaced (its other limits kept)."""
    if not isinstance(timeout, aiohttp.ClientTimeout):
        return aiohttp.ClientTimeout(total=total)
    return aiohttp.ClientTimeout(
        total=total,
        connect=timeout.connect,
        sock_read=timeout.sock_read,
        sock_connect=timeout.sock_connect,
        ceil_threshold=timeout.ceil_threshold,
    )


def _shown(path: object) -> str:
    """``path`` for an error message: without its query string, at most 200 characters."""
    return str(path).split("?", 1)[0][:200]


def _check_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{name} must be an int >= 0 (0 = unlimited); got {value!r}")


def _resolve(instance_url: str, path: str) -> tuple[str, bool]:
    """Turn a path (or a same-origin URL) into an absolute URL on the instance.

    Returns:
        ``(url, relative)``: ``relative`` is true when ``path`` was a path on the instance.

    Raises:
        CrossOriginError: ``path`` is an absolute or ``//host`` URL of another origin.
        ConfigurationError: ``path`` is not a string or not a valid URL.
    """
    if not isinstance(path, str):
        raise ConfigurationError(f"path must be a str such as '/services/data/'; got {path!r}")
    if path.startswith("/") and not path.startswith("//"):
        return instance_url + path, True
    try:
        target = URL(path)
    except (ValueError, TypeError):
        raise ConfigurationError(f"path {path[:200]!r} is not a valid URL or path") from None
    if target.scheme and not target.raw_host:
        raise ConfigurationError(f"path {path[:200]!r} has a scheme but no host")
    if not target.is_absolute() and not path.startswith("//"):
        return f"{instance_url}/{path}", True  # "services/data/..." without the leading "/"
    base = URL(instance_url)
    if path.startswith("//"):
        target = URL(f"{base.scheme}:{path}")
    origin = (target.scheme, target.raw_host, target.port)
    if not target.raw_host or origin != (base.scheme, base.raw_host, base.port):
        shown = f"{target.scheme}://{target.raw_host or ''}" if target.raw_host else path[:100]
        raise CrossOriginError(
            f"refusing to send to {shown!r}: requests go only to the org's "
            f"instance_url {instance_url!r}; pass a path such as '/services/data/...'"
        )
    return path, False


class _ResponseContext:
    """Awaitable and async context manager around a response coroutine."""

    __slots__ = ("_coro", "_resp")

    def __init__(self, coro: Coroutine[Any, Any, aiohttp.ClientResponse]) -> None:
        self._coro = coro
        self._resp: aiohttp.ClientResponse | None = None

    def __await__(self) -> Generator[Any, None, aiohttp.ClientResponse]:
        return self._coro.__await__()

    async def __aenter__(self) -> aiohttp.ClientResponse:
        self._resp = await self._coro
        return self._resp

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
