"""Single-flight token refresh, rejection bookkeeping, the circuit breaker and token age.

design.md section 3: the first caller that needs a new token starts one stored task; every
caller awaits it through ``asyncio.shield`` so cancelling any waiter, the starter included,
never cancels the refresh. The refresh's own timeout lives inside the task, so every wait ends
in a token or an error within ``refresh_timeout`` seconds of its own work (waiting for another
process's refresh through a shared store adds at most ``2 * refresh_timeout``). No lock is held
across I/O; the fast path (a cached token) awaits nothing.

Two budgets keep a session from becoming a login storm (Salesforce caps logins per user per
hour): the circuit breaker counts refreshes that failed and fresh tokens rejected before they
ever worked; the relogin window counts the tokens replaced after a rejection (an expiry, a
revocation, a ``replace_token`` report, an endpoint that refuses the session), once each, and
refuses more than ``max_relogins`` within ``relogin_window`` seconds, so one endpoint that rejects
working sessions cannot cause a login per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable

import aiohttp

from ._fleet import LoginGuard
from ._logging import logger
from ._oauth import TokenClient
from ._retry import RetryPolicy, call_with_retries
from ._scoping import Origin, origin_of
from ._telemetry import Telemetry, retry_reason
from ._token import Token
from .exceptions import (
    APIError,
    CircuitOpenError,
    InvalidSessionError,
    SessionClosedError,
    SFAuthError,
    TokenEndpointError,
    TokenStoreError,
)
from .stores._base import TokenStore, fingerprint, store_key

__all__ = ["TokenManager", "origin_of"]

_MAX_OLD_ORIGINS = 8


class TokenManager:
    """Holds the current token and runs at most one refresh at a time.

    Args:
        client: Performs one token exchange.
        retry: Retry policy for transient token-endpoint failures (fresh assertion per try).
        refresh_timeout: Seconds one refresh may take in total, retries included.
        refresh_cooldown: Seconds the circuit stays open after ``failure_threshold``
            consecutive failed or rejected refreshes.
        failure_threshold: Consecutive failed or rejected refreshes that open the circuit.
        max_token_age: Seconds after which a token is replaced before use (proactive
            refresh), or ``None`` to refresh only on a 401.
        store: Where tokens are shared with other sessions or processes, or ``None`` to keep
            the token to this manager.
        max_relogins: Tokens that may be replaced after a rejection within ``relogin_window``
            seconds; past that, such rejections raise ``InvalidSessionError`` instead of
            logging in.
        relogin_window: Seconds of the rolling window ``max_relogins`` applies to.
        refusal_cooldown: Seconds a permanent refusal is remembered in a shared store.
        login_backoff: Seconds no login is tried after "login rate exceeded".
        login_rate_warning: Fraction of 3,600 logins an hour past which a warning is logged.
        login_rate_cap: Logins per user per hour past which no login is sent, or ``None``.
        telemetry: Where spans and metrics go (OpenTelemetry, optional).
        clock: Monotonic seconds; ``time.monotonic`` unless testing.
    """

    def __init__(
        self,
        client: TokenClient,
        *,
        retry: RetryPolicy,
        refresh_timeout: float,
        refresh_cooldown: float,
        failure_threshold: int = 3,
        max_token_age: float | None = None,
        store: TokenStore | None = None,
        max_relogins: int = 5,
        relogin_window: float = 300.0,
        refusal_cooldown: float = 300.0,
        login_backoff: float = 3600.0,
        login_rate_warning: float = 0.8,
        login_rate_cap: int | None = None,
        telemetry: Telemetry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.telemetry = telemetry or Telemetry()
        self._store = store
        config = client.config
        self._store_key = store_key(
            config.token_url, config.client_id, config.username, config.audience
        )
        from .stores._memory import MemoryTokenStore  # the stores import this package's core

        #: Refusal memory and login counting: the store's, else this session's own.
        self.guard = LoginGuard(
            store,
            self._store_key,
            config.username,
            token_url=config.token_url,
            audience=config.audience,
            refusal_cooldown=refusal_cooldown,
            login_backoff=login_backoff,
            warn_fraction=login_rate_warning,
            cap=login_rate_cap,
            local=MemoryTokenStore(),
        )
        self.current: Token | None = None
        self.generation = 0
        self.proven = False
        #: The latest token that got a non-401 answer (it worked for at least one request).
        self.last_proven: Token | None = None
        #: A token taken from the shared store that has not worked here yet: a 401 for it is
        #: not counted by the circuit, and the request meeting it may be replayed once more.
        self.adopted: Token | None = None
        self.closed = False
        self.origin: Origin | None = None
        self.old_origins: list[Origin] = []
        self.token_requests = 0
        self._retry = retry
        self._refresh_timeout = refresh_timeout
        self._cooldown = refresh_cooldown
        self._threshold = failure_threshold
        self._max_age = max_token_age
        self._clock = clock
        self._task: asyncio.Task[Token] | None = None
        self._obtained = 0.0
        self._rejected: Token | None = None
        self._failures = 0
        self._open_until = 0.0
        self._quiet_until = 0.0
        self._last_error: BaseException | None = None
        self._max_relogins = max_relogins
        self._relogin_window = relogin_window
        self._relogins: deque[float] = deque()
        self._relogged: Token | None = None
        #: Refreshes that ``close`` cancelled: their waiters were not cancelled themselves.
        self._closed_tasks: weakref.WeakSet[asyncio.Task[Token]] = weakref.WeakSet()
        #: ``(org_id, user_id)`` of the tokens this session uses; a shared token of another
        #: org or user is never adopted.
        self.identity: tuple[str, str] | None = None
        self._foreign: str | None = None

    def valid_token(self) -> Token | None:
        """The current token if it can be used as is (no I/O), else ``None``."""
        token = self.current
        if token is None or self._max_age is None:
            return token
        now = self._clock()
        if now - self._obtained < self._max_age or now < self._quiet_until:
            return token
        return None

    async def get(self, http: aiohttp.ClientSession) -> Token:
        """Return a usable token, joining (or starting) the refresh when needed.

        Past ``max_token_age`` the caller triggers the single-flight refresh; if that refresh
        fails (or the circuit is open), the old token is still returned, the failure is logged,
        not raised, and no proactive refresh is tried for ``refresh_cooldown`` seconds.

        Args:
            http: Session for the token request, if one must be made.

        Raises:
            TokenEndpointError: The shared refresh failed (every waiter gets the same error).
            CircuitOpenError: Refreshes keep failing; no login is attempted until the cooldown
                ends.
        """
        token = self.valid_token()
        if token is not None:
            return token
        aged = self.current
        if aged is None:
            return await self._join(http, None)
        try:
            return await self._join(http, aged)
        except SFAuthError as exc:
            # Keep using the still-valid token; try again after refresh_cooldown.
            self._quiet_until = self._clock() + self._cooldown
            logger.warning(
                "sfauth.token.proactive_refresh_failed",
                error=type(exc).__name__,
                reason=str(exc)[:300],
                retry_in=self._cooldown,
            )
            return self.current or aged

    def mark_proven(self, token: Token) -> None:
        """Record that ``token`` got a non-401 answer; this closes the circuit."""
        if token is self.current:
            self.proven = True
            self.last_proven = token
            self.adopted = None
            self._failures = 0
            self._open_until = 0.0

    def reject(self, token: Token, error: APIError, *, worked: bool = False) -> SFAuthError | None:
        """Record a 401 ``INVALID_SESSION_ID`` (or equivalent) for ``token``.

        Every token replaced after a rejection counts once against the relogin window
        (``max_relogins`` per ``relogin_window``), whatever caused it: an expiry, a revocation,
        a ``replace_token`` report, an endpoint that refuses the session. A token rejected
        before it ever worked (here: ``worked`` is false, it got no answer past authentication,
        and it was not adopted unverified from a shared store) also counts as a failed refresh
        for the circuit.

        Args:
            token: The token the rejected request carried.
            error: The typed error describing the rejection (request method and URL).
            worked: The token is known to have worked, though not through this session
                (``replace_token``).

        Returns:
            ``None`` when a refresh may replace it (or it was already replaced); otherwise the
            error to raise: ``CircuitOpenError`` while the circuit is open, or
            ``InvalidSessionError`` when ``max_relogins`` tokens were already replaced within
            ``relogin_window`` seconds.
        """
        if token is not self.current:
            return None  # stale: already replaced, or being replaced
        now = self._clock()
        if now < self._open_until:
            return self.circuit_error()
        if self._relogged is not token:  # one count per token, however many rejections
            window = self._relogins
            while window and window[0] <= now - self._relogin_window:
                window.popleft()
            if len(window) >= self._max_relogins:
                return self._relogin_refused(error, now)
            window.append(now)
            self._relogged = token
        if not (worked or self.proven or token is self.adopted) and self._rejected is not token:
            self._rejected = token
            self._count_failure(error)
            if now < self._open_until:
                return self.circuit_error()
        return None

    def _relogin_refused(self, error: APIError, now: float) -> InvalidSessionError:
        retry_in = self._relogins[0] + self._relogin_window - now
        logger.warning(
            "sfauth.relogin.refused",
            relogins=len(self._relogins),
            window=self._relogin_window,
            retry_in=round(retry_in, 3),
            url=error.url,
        )
        count = len(self._relogins)
        logins = "1 login" if count == 1 else f"{count} logins"
        return InvalidSessionError(
            f"Salesforce rejected the session, and {logins} already "
            f"replaced rejected sessions in the last {self._relogin_window:g} s "
            f"(max_relogins): not logging in again for {retry_in:.1f} s. If one endpoint keeps "
            "answering INVALID_SESSION_ID to a session that works elsewhere, the session lacks "
            "access to it (scopes, session security level)",
            status=error.status,
            error_code=error.error_code,
            message=error.message,
            method=error.method,
            url=error.url,
        )

    def circuit_is_open(self) -> bool:
        """Whether logins are suspended now after ``failure_threshold`` failures in a row."""
        return self._clock() < self._open_until

    def circuit_error(self) -> CircuitOpenError:
        """The error to raise while the circuit is open."""
        return CircuitOpenError(
            self._failures, max(self._open_until - self._clock(), 0.0), self._last_error
        )

    async def replace(self, rejected: Token, http: aiohttp.ClientSession) -> Token:
        """Return a token newer than ``rejected``, refreshing once for all callers.

        A 401 for a token that has already been replaced (a stale generation) does not start
        another refresh: the caller gets the newer token, or joins the refresh in flight.
        Call ``reject`` first.

        Raises:
            TokenEndpointError: The shared refresh failed.
            CircuitOpenError: The circuit is open.
        """
        if self.current is rejected:
            self.current = None
        token = self.current
        if token is not None:
            return token
        return await self._join(http, rejected)

    async def newest(self, token: Token, http: aiohttp.ClientSession) -> Token:
        """The token a send about to carry ``token`` should carry: the newest one.

        While the token is being replaced (a 401 elsewhere started a refresh), this waits for
        the new one rather than let a dead one be sent; a newer valid token on the same
        instance (installed while the request waited for a send slot) replaces ``token``.

        Raises:
            TokenEndpointError, CircuitOpenError: The refresh it waited for failed.
            SessionClosedError: The session was closed.
        """
        current = self.current
        if current is None:
            return await self.get(http)
        if (
            current is not token
            and current.instance_url == token.instance_url
            and self.valid_token() is current
        ):
            return current
        return token

    async def _join(self, http: aiohttp.ClientSession, replacing: Token | None) -> Token:
        loop = asyncio.get_running_loop()
        while True:
            task = self._task
            if task is None or task.get_loop() is not loop:  # none, or left by a finished loop
                if self.closed:
                    raise SessionClosedError("the session was closed; open a new one")
                if self._clock() < self._open_until:
                    raise self.circuit_error()
                task = loop.create_task(self._run(http, replacing), name="sfauth-refresh")
                task.add_done_callback(self._finished)
                self._task = task
            try:
                return await asyncio.shield(task)
            except SessionClosedError:
                # The refresh ran on another session's pool (a middleware shared by several
                # ClientSessions) and that session was closed: run it again on ours.
                if self.closed or http.closed or task.get_loop() is not loop:
                    raise
                if self._task is task:
                    self._task = None
            except asyncio.CancelledError:
                current = asyncio.current_task()
                closed = task.cancelled() and task in self._closed_tasks
                if closed and not (current and current.cancelling()):
                    raise SessionClosedError(
                        "the session was closed while waiting for a token"
                    ) from None
                raise

    async def _run(self, http: aiohttp.ClientSession, replacing: Token | None) -> Token:
        mint = functools.partial(self._mint, http)
        config = self.client.config
        sent = self.token_requests
        try:
            with self.telemetry.refresh(config.token_url, config.audience) as refresh:
                try:
                    if self._store is None:
                        token = await mint()
                    else:
                        token = await self._shared(self._store, mint, replacing)
                finally:
                    refresh.token_requests = self.token_requests - sent
                refresh.shared = token is self.adopted
        except (SessionClosedError, TokenStoreError):
            raise  # not a failed login: the circuit is about the token endpoint
        except SFAuthError as exc:
            if getattr(exc, "sent", True):  # a refusal remembered or capped sent nothing
                self._count_failure(exc)
            raise
        self._install(token)
        return token

    async def _mint(self, http: aiohttp.ClientSession) -> Token:
        """Log in: token requests with retries, all within ``refresh_timeout`` seconds.

        Not at all while the fleet remembers a refusal (it is raised); each token request is
        counted as a login of the user first (and refused past ``login_rate_cap``); a
        permanent refusal is remembered for the fleet before the store's lock is released.
        """
        guard = self.guard
        await guard.check()
        try:
            token = await self._login(http)
        except TokenEndpointError as exc:
            await guard.remember(exc)
            raise
        await guard.succeeded()
        return token

    async def _login(self, http: aiohttp.ClientSession) -> Token:
        client = self.client
        telemetry = self.telemetry
        guard = self.guard

        async def attempt() -> Token:
            assertion = await client.assertion()  # a failing signer sends no token request
            login = await guard.count()  # may refuse: login_rate_cap
            self.token_requests += 1
            try:
                token = await client.fetch(http, assertion)
            except asyncio.CancelledError:  # refresh_timeout ran out, or the session closed
                telemetry.token_request("cancelled")
                raise
            except BaseException as exc:
                telemetry.token_request(type(exc).__name__)
                if getattr(exc, "_no_connection", False):  # never reached Salesforce
                    await guard.uncount(login)
                raise
            telemetry.token_request("success")
            return token

        def on_retry(error: BaseException | None, attempt: int, wait: float) -> None:
            telemetry.retry("token", retry_reason(error), attempt, wait)

        try:
            async with asyncio.timeout(self._refresh_timeout):
                return await call_with_retries(
                    self._retry,
                    attempt,
                    log_fields={"token_url": client.config.token_url},
                    on_retry=on_retry,
                )
        except TimeoutError:
            pass
        raise client.error(
            "timeout",
            f"no token within refresh_timeout={self._refresh_timeout:g} s",
            status=None,
            hint="The token endpoint is slow or unreachable; raise refresh_timeout or "
            "check network access to login_url.",
        )

    async def _shared(
        self, store: TokenStore, mint: Callable[[], Awaitable[Token]], replacing: Token | None
    ) -> Token:
        """Adopt a token another session published, or refresh under the store's lock.

        Waiting for another process's refresh is not a login: it is bounded by
        ``2 * refresh_timeout`` (a holder holds the lock at most ``refresh_timeout``, and a
        holder that died stops blocking once its lock expires), then this session logs in
        itself when the store allows it (``fallback_to_local``), else ``TokenStoreError``.
        """
        key = self._store_key

        def usable(token: Token | None) -> Token | None:
            if token is None or (replacing and token.access_token == replacing.access_token):
                return None
            return self._check_shared(token)

        try:
            if replacing is not None:
                await store.invalidate(key, replacing)  # only if nobody replaced it yet
            delay = 0.02
            allowance = 2 * self._refresh_timeout
            give_up = self._clock() + allowance
            holder = getattr(store, "holder", None)  # stores written before holder() lack it
            seen: str | None = None
            while True:
                shared = usable(await store.get(key))
                if shared is not None:
                    return self._adopt(shared)
                self.guard.check_seen()  # a refusal found in the last second: no lock taken
                owner = await store.acquire(key, self._refresh_timeout)
                if owner is not None:
                    break
                if holder is not None:
                    current = await holder(key)
                    if current != seen:  # a new holder (the last one died): a new allowance
                        seen = current
                        give_up = self._clock() + allowance
                if self._clock() >= give_up:
                    raise TokenStoreError(
                        f"another session held the refresh lock for over "
                        f"{2 * self._refresh_timeout:g} s without publishing a token"
                    )
                await asyncio.sleep(delay)  # another session is refreshing: wait for its token
                delay = min(delay * 2, 0.5)
            try:
                shared = usable(await store.get(key))
                if shared is not None:
                    return self._adopt(shared)
                token = await mint()
                try:
                    await store.publish(key, token)
                except TokenStoreError as exc:
                    self._store_unavailable(exc)  # we have a token: use it, share it next time
                return token
            finally:
                with contextlib.suppress(TokenStoreError):
                    await store.release(key, owner)
        except TokenStoreError as exc:
            if not store.fallback_to_local:
                raise
            self._store_unavailable(exc)
        return await mint()

    def _check_shared(self, token: Token) -> Token | None:
        """``token`` if this session may use it: https, and the org and user of this session."""
        try:
            self.client.check_instance_url(token)
        except SFAuthError as exc:
            problem = str(exc)
        else:
            identity = self.identity
            if identity is None or (token.org_id, token.user_id) == identity:
                return token
            problem = (
                f"it is for org {token.org_id} user {token.user_id}, this session's are "
                f"org {identity[0]} user {identity[1]}"
            )
        mark = fingerprint(token)
        if self._foreign != mark:  # once per foreign value, not once per poll
            self._foreign = mark
            logger.warning(
                "sfauth.store.token_ignored",
                reason=problem[:300],
                action="logging in and overwriting it",
            )
        return None

    def _adopt(self, token: Token) -> Token:
        logger.debug("sfauth.token.shared", token_url=self.client.config.token_url)
        self.adopted = token
        return token

    def open(self) -> None:
        """Allow refreshes again after ``close`` (the current token, if any, is kept)."""
        self.closed = False

    async def clear_refusal(self) -> bool:
        """Forget the refusal (or login-rate back-off) remembered for this integration.

        Returns:
            Whether one was in force, here or in the shared store.

        Raises:
            TokenStoreError: The shared store cannot be reached.
        """
        return await self.guard.clear()

    def close(self) -> None:
        """Stop the refresh in flight, if any; its waiters get ``SessionClosedError``."""
        self.closed = True
        task, self._task = self._task, None  # a session opened again starts afresh
        if task is not None and not task.done():
            self._closed_tasks.add(task)
            task.cancel()

    def _store_unavailable(self, exc: TokenStoreError) -> None:
        logger.warning(
            "sfauth.store.unavailable",
            error=str(exc)[:300],
            fallback="minting locally" if self._store and self._store.fallback_to_local else "",
        )

    def _count_failure(self, error: BaseException) -> None:
        self._failures += 1
        self._last_error = error
        if self._failures >= self._threshold:
            self._open_until = self._clock() + self._cooldown
            logger.error(
                "sfauth.circuit.opened",
                failures=self._failures,
                cooldown=self._cooldown,
                reason=f"{type(error).__name__}: {str(error)[:300]}",
            )

    def _install(self, token: Token) -> None:
        origin = origin_of(token.instance_url)
        if self.origin is not None and origin != self.origin:
            if self.origin not in self.old_origins:
                self.old_origins = [self.origin, *self.old_origins][:_MAX_OLD_ORIGINS]
            logger.info(
                "sfauth.instance.changed",
                instance_url=token.instance_url,
                org_id=token.org_id,
            )
        self.origin = origin
        self.identity = (token.org_id, token.user_id)
        self.current = token
        self.generation += 1
        self.proven = False
        # A token adopted from a shared store may be older than this process's view of it.
        self._obtained = self._clock() - max(0.0, time.time() - token.obtained_at)

    def _finished(self, task: asyncio.Task[Token]) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not reported twice
