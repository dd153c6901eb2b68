"""Settings: every option of ``AuthSession`` and ``SalesforceAuthMiddleware``, in one place."""

from __future__ import annotations

import dataclasses
import difflib
import math
import ssl as _ssl
from dataclasses import dataclass, field
from typing import TypedDict

import aiohttp

from ._assertion import MAX_ASSERTION_LIFETIME, check_lifetime
from ._config import DEFAULT_LOGIN_URL, FlowConfig
from ._keys import PrivateKeyInput
from ._query import LATEST, normalize_api_version
from ._retry import RetryPolicy
from .exceptions import ConfigurationError
from .stores._base import TokenStore

__all__ = ["DEFAULT_TIMEOUT", "Options", "Settings", "settings_from"]

#: Seconds in a week: the longest refusal memory or login back-off sfauth keeps.
_WEEK = 7 * 24 * 3600.0

#: Default per-request timeouts (seconds). ``total`` covers waiting for a pooled connection,
#: sending and reading; Salesforce REST calls themselves time out after 10 minutes.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=300.0, sock_connect=30.0)


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    r"""Every setting of a session, validated once; ``AuthSession`` and the middleware share it.

    ``AuthSession(**options)`` and ``SalesforceAuthMiddleware(**options)`` build one from
    their keyword arguments; pass one instead to share or derive settings::

        base = Settings(client_id=..., username=..., private_key="key.pem")
        async with AuthSession(base, limit=20) as sf:
            ...

    The repr never shows ``private_key`` or ``passphrase``.

    Attributes:
        client_id: The connected app's consumer key (the assertion's ``iss``; RFC 7523 §3).
        username: The Salesforce username to act as (``sub``).
        private_key: RSA private key: PEM text (``str``/``bytes``, PKCS#1 or PKCS#8, literal
            ``\n`` accepted), a file path, or a loaded ``RSAPrivateKey``. Parsed once, by the
            middleware.
        passphrase: Passphrase of an encrypted PEM.
        login_url: Scheme and host of the token endpoint (default
            ``https://login.salesforce.com``; ``https://test.salesforce.com`` for sandboxes,
            or a My Domain URL).
        audience: The ``aud`` claim; derived from ``login_url`` and ``site`` when ``None``.
        site: Experience Cloud site path prefix such as ``"/customers"``; default ``""``.
        assertion_lifetime: Seconds until each assertion's ``exp``; ``0 < x <= 180``
            (Salesforce, "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration").
        allow_http_loopback: Allow plain ``http`` to loopback hosts (emulators, tests).
        retry: How transient failures are retried, for token requests and API requests
            (``RetryPolicy()``: up to 8 attempts within 60 s, exponential backoff with full
            jitter, ``Retry-After`` honoured); ``RetryPolicy.none()`` disables retries.
        refresh_timeout: Seconds one token refresh may take in total, retries included
            (default 30).
        refresh_cooldown: Seconds the circuit stays open after ``failure_threshold``
            consecutive failed or rejected refreshes (default 60).
        failure_threshold: Consecutive failed refreshes, or fresh tokens the API rejected
            before they ever worked, that open the circuit (default 3).
        max_token_age: Seconds after which the token is replaced before the next request
            (proactive refresh); ``None`` (default) refreshes only on a 401. Salesforce
            sessions live as long as the org's session timeout (2 hours by default).
        usage_warning: Fraction of the org's daily API requests (``Sforce-Limit-Info``) at
            which ``sfauth.limits.high`` is logged once per crossing (default 0.8).
        max_in_flight: At most this many sends at once, the bearer being stamped only when a
            send slot is free (so requests queued behind a busy pool never go out with a token
            that expired while they waited). The slot is held for the send and its 401
            replay, never during a backoff. ``None`` (default): no cap for the middleware on
            its own; ``AuthSession`` then uses its connection ``limit``.
        token_store: Share tokens with other sessions (``MemoryTokenStore``) or processes
            (``RedisTokenStore``): a refresh first adopts a token another session published
            (only one of the same org and user), and only one of them logs in at a time.
            ``None`` (default) keeps the token here. The store stays yours to close.
        max_relogins: Logins allowed within ``relogin_window`` seconds to replace tokens the
            API rejected (expiries, revocations, ``replace_token`` reports, an endpoint that
            refuses the session), one per rejected token; past that, such a rejection raises
            ``InvalidSessionError`` instead of logging in, so an endpoint that rejects working
            sessions cannot cause a login per request (Salesforce caps logins per user per
            hour). Default 5.
        relogin_window: Seconds of the rolling window of ``max_relogins`` (default 300).
        refusal_cooldown: With a shared ``token_store``: seconds a permanent token-endpoint
            refusal (``invalid_grant``, ``invalid_client_id``, ``app_not_found``…) is
            remembered for every session sharing the store, which then raise the same typed
            error (``sent=False``) without calling the token endpoint; a successful login
            anywhere or ``clear_refusal()`` ends it sooner. ``0`` turns it off; at most a
            week. Default 300.
        login_backoff: Seconds no session logs in after Salesforce answered "login rate
            exceeded" (``LoginRateExceededError``), fleet-wide with a shared store (at most a
            week). Default 3600: Salesforce's advice is to wait an hour (Knowledge 000381578).
        login_rate_warning: Fraction of Salesforce's 3,600 logins per user per hour past which
            ``sfauth.login_rate.high`` is logged (logins counted over a rolling hour, fleet-wide
            with a shared store). Default 0.8.
        login_rate_cap: Logins per user per rolling hour past which sfauth raises
            ``LoginRateExceededError`` (``sent=False``) instead of logging in; ``None``
            (default): no cap.
        fleet_limit: ``AuthSession``: at most this many requests of the org in flight at once
            across every session sharing ``token_store`` (concurrency leases in Redis, each
            released when its response is, expiring ``lease_ttl`` seconds after a process
            dies); for requests sent with ``long_running=True``, or every request with
            ``fleet_limit_scope="all"``. Salesforce allows 25 concurrent requests running
            longer than 20 s per org (5 in Developer Edition). Without a shared store the
            limit is this session's own. ``None`` (default): no limit.
        fleet_limit_scope: ``"long_running"`` (default: only requests marked
            ``long_running=True`` take a lease) or ``"all"``.
        lease_ttl: Seconds a lease outlives a process that stopped renewing it (5 to 3600,
            default 30; live sessions renew theirs every ``lease_ttl / 3`` seconds).
        api_budget: ``AuthSession``: fraction of the org's daily API allowance requests sent
            with ``low_priority=True`` may use: past it they raise ``ApiBudgetError`` before
            sending. The latest ``Sforce-Limit-Info`` any session sharing ``token_store``
            saw counts (each such session shares its readings, at most once a second).
            ``None`` (default): no guard.
        limit: ``AuthSession``: simultaneous connections in the pool (``0`` = unlimited;
            default 100).
        limit_per_host: ``AuthSession``: simultaneous connections per host (``0`` =
            unlimited, the default).
        timeout: ``AuthSession``: per-request ``aiohttp.ClientTimeout`` (default
            ``total=300 s``, ``sock_connect=30 s``); the wait for a first token counts
            against ``total``.
        ssl: ``AuthSession``: the connector's ``ssl``: ``True`` (verify with the system
            store), an ``ssl.SSLContext`` (for example one trusting a test CA), or ``False``.
        keepalive_timeout: ``AuthSession``: seconds an idle pooled connection is kept
            (default 30).
        api_version: ``AuthSession``: REST API version of ``query``, ``query_all`` and
            ``limits``: ``"latest"`` (the default: the highest version the org serves, looked
            up once) or a version such as ``"62.0"`` (``"v62.0"`` is accepted).
        tracer_provider: An OpenTelemetry ``TracerProvider`` for sfauth's spans; ``None``
            (default): the global one. Needs ``pip install '/path/to/sfauth[otel]'``. Request spans
            are made only by sessions opened while a recording provider is configured.
        meter_provider: An OpenTelemetry ``MeterProvider`` for sfauth's metrics; ``None``
            (default): the global one.
        flow: Derived, not an argument: the validated login settings (``token_url``,
            ``audience``).

    Raises:
        ConfigurationError: A setting is missing or malformed; the message names it.
    """

    client_id: str
    username: str
    private_key: PrivateKeyInput = field(repr=False)
    passphrase: str | bytes | None = field(default=None, repr=False)
    login_url: str = DEFAULT_LOGIN_URL
    audience: str | None = None
    site: str = ""
    assertion_lifetime: float = MAX_ASSERTION_LIFETIME
    allow_http_loopback: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    refresh_timeout: float = 30.0
    refresh_cooldown: float = 60.0
    failure_threshold: int = 3
    max_token_age: float | None = None
    usage_warning: float = 0.8
    max_in_flight: int | None = None
    token_store: TokenStore | None = None
    max_relogins: int = 5
    relogin_window: float = 300.0
    refusal_cooldown: float = 300.0
    login_backoff: float = 3600.0
    login_rate_warning: float = 0.8
    login_rate_cap: int | None = None
    fleet_limit: int | None = None
    fleet_limit_scope: str = "long_running"
    lease_ttl: float = 30.0
    api_budget: float | None = None
    limit: int = 100
    limit_per_host: int = 0
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT
    ssl: _ssl.SSLContext | bool = True
    keepalive_timeout: float = 30.0
    api_version: str = LATEST
    tracer_provider: object | None = field(default=None, repr=False, compare=False)
    meter_provider: object | None = field(default=None, repr=False, compare=False)
    flow: FlowConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flow = FlowConfig.create(
            client_id=self.client_id,
            username=self.username,
            login_url=self.login_url,
            audience=self.audience,
            site=self.site,
            allow_http_loopback=self.allow_http_loopback,
        )
        object.__setattr__(self, "flow", flow)
        retry: object = self.retry
        if retry is None:  # accepted for "the default", as before Settings existed
            object.__setattr__(self, "retry", RetryPolicy())
        elif not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry must be a sfauth.RetryPolicy; got {type(retry).__name__}"
            )
        check_lifetime(self.assertion_lifetime)
        if self.passphrase is not None and not isinstance(self.passphrase, str | bytes):
            raise ConfigurationError(
                f"passphrase must be str or bytes; got {type(self.passphrase).__name__}"
            )
        _seconds("refresh_timeout", self.refresh_timeout, allow_zero=False)
        _seconds("refresh_cooldown", self.refresh_cooldown, allow_zero=True)
        if self.max_token_age is not None:
            _seconds("max_token_age", self.max_token_age, allow_zero=False)
        _seconds("relogin_window", self.relogin_window, allow_zero=False)
        _seconds("keepalive_timeout", self.keepalive_timeout, allow_zero=True)
        _seconds("refusal_cooldown", self.refusal_cooldown, allow_zero=True, maximum=_WEEK)
        _seconds("login_backoff", self.login_backoff, allow_zero=True, maximum=_WEEK)
        if self.login_rate_cap is not None:
            _count("login_rate_cap", self.login_rate_cap, minimum=1, maximum=1_000_000)
        if self.fleet_limit is not None:
            _count("fleet_limit", self.fleet_limit, minimum=1, maximum=100_000)
        if self.fleet_limit_scope not in ("long_running", "all"):
            raise ConfigurationError(
                "fleet_limit_scope must be 'long_running' (requests sent with "
                f"long_running=True) or 'all'; got {self.fleet_limit_scope!r}"
            )
        # A lease renewed every ttl/3 must outlive a slow store call and a busy event loop's
        # pauses; an hour is
        # already longer than a killed process should hold the fleet up.
        _seconds("lease_ttl", self.lease_ttl, allow_zero=False, minimum=5, maximum=3600)
        if self.api_budget is not None:
            _fraction("api_budget", self.api_budget)
        _count("failure_threshold", self.failure_threshold, minimum=1)
        _count("max_relogins", self.max_relogins, minimum=1)
        _count("limit", self.limit, minimum=0, unlimited=True)
        _count("limit_per_host", self.limit_per_host, minimum=0, unlimited=True)
        if self.max_in_flight is not None:
            _count("max_in_flight", self.max_in_flight, minimum=1)
        _fraction("usage_warning", self.usage_warning)
        _fraction("login_rate_warning", self.login_rate_warning)
        if self.token_store is not None and not isinstance(self.token_store, TokenStore):
            raise ConfigurationError(
                "token_store must implement sfauth.stores.TokenStore (e.g. RedisTokenStore); "
                f"got {type(self.token_store).__name__}"
            )
        if not isinstance(self.timeout, aiohttp.ClientTimeout):
            raise ConfigurationError(
                "timeout must be an aiohttp.ClientTimeout, e.g. aiohttp.ClientTimeout(total=60); "
                f"got {self.timeout!r}"
            )
        if not isinstance(self.ssl, _ssl.SSLContext | bool):
            raise ConfigurationError(
                f"ssl must be True, False or an ssl.SSLContext; got {type(self.ssl).__name__}"
            )
        object.__setattr__(self, "api_version", normalize_api_version(self.api_version))

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied (validated like a new ``Settings``).

        Raises:
            ConfigurationError: A changed setting is malformed.
            TypeError: A name that is not a setting.
        """
        if "flow" in changes:
            raise TypeError("flow is derived from the other settings; it cannot be set")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_NAMES = tuple(f.name for f in dataclasses.fields(Settings) if f.init)


class Options(TypedDict, total=False):
    """``Settings`` fields as keyword arguments (for type checkers; see ``Settings``)."""

    client_id: str
    username: str
    private_key: PrivateKeyInput
    passphrase: str | bytes | None
    login_url: str
    audience: str | None
    site: str
    assertion_lifetime: float
    allow_http_loopback: bool
    retry: RetryPolicy | None
    refresh_timeout: float
    refresh_cooldown: float
    failure_threshold: int
    max_token_age: float | None
    usage_warning: float
    max_in_flight: int | None
    token_store: TokenStore | None
    max_relogins: int
    relogin_window: float
    refusal_cooldown: float
    login_backoff: float
    login_rate_warning: float
    login_rate_cap: int | None
    fleet_limit: int | None
    fleet_limit_scope: str
    lease_ttl: float
    api_budget: float | None
    limit: int
    limit_per_host: int
    timeout: aiohttp.ClientTimeout
    ssl: _ssl.SSLContext | bool
    keepalive_timeout: float
    api_version: str
    tracer_provider: object | None
    meter_provider: object | None


#: Names people pass for a setting that has another name here.
_OTHER_NAMES = {
    "instance_url": "the org's instance_url comes from the token response; the login host is "
    "login_url",
    "private_key_file": "private_key takes a path too",
    "consumer_key": "the connected app's consumer key is client_id",
    "max_connections": "the pool size is limit",
}


def settings_from(settings: Settings | None, options: Options, *, owner: str) -> Settings:
    """``settings`` with ``options`` applied, or new ``Settings`` from ``options`` alone.

    Args:
        settings: Settings to start from, or ``None``.
        options: ``Settings`` fields by name.
        owner: The class being built, for messages (``"AuthSession"``).

    Raises:
        ConfigurationError: A setting is malformed, or ``settings`` is not a ``Settings``.
        TypeError: A required setting is missing, or a name is not a setting (the message
            suggests the closest one).
    """
    for name in options:
        if name not in _NAMES:
            hint = _OTHER_NAMES.get(name)
            if hint is None:
                close = difflib.get_close_matches(name, _NAMES, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "see sfauth.Settings"
            raise TypeError(f"{owner} got {name!r}, which is not a setting: {hint}")
    if settings is None:
        return Settings(**options)  # type: ignore[arg-type]
    if not isinstance(settings, Settings):
        raise ConfigurationError(
            f"settings must be a sfauth.Settings; got {type(settings).__name__} "
            "(pass the options as keyword arguments instead)"
        )
    return settings.replace(**options) if options else settings


def _seconds(
    name: str,
    value: object,
    *,
    allow_zero: bool,
    minimum: float | None = None,
    maximum: float | None = None,
) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    )
    if not ok:
        low = f">= {minimum:g}" if minimum is not None else (">= 0" if allow_zero else "> 0")
        bound = f"{low} and <= {maximum:g}" if maximum is not None else low
        raise ConfigurationError(
            f"{name} must be a finite number of seconds {bound}; got {value!r}"
        )


def _fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigurationError(f"{name} must be in (0, 1]; got {value!r}")


def _count(
    name: str, value: object, *, minimum: int, unlimited: bool = False, maximum: int | None = None
) -> None:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        hint = " (0 = unlimited)" if unlimited else ""
        top = f" and <= {maximum:,}" if maximum is not None else ""
        raise ConfigurationError(f"{name} must be an int >= {minimum}{top}{hint}; got {value!r}")
