"""Single-flight token refresh, rejection bookkeeping and the login cooldown.

design.md section 3: the first caller that needs a new token starts one stored task; every
caller awaits it through ``asyncio.shield`` so cancelling any waiter, the starter included,
never cancels the refresh. The refresh's own timeout lives inside the task. No lock is held
across I/O; the fast path (a cached token) does not await anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
from yarl import URL

from ._logging import logger
from ._oauth import TokenClient
from ._token import Token

__all__ = ["TokenManager"]

_MAX_OLD_ORIGINS = 8


def origin_of(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of an absolute URL, with the default port made explicit."""
    parsed = URL(url)
    return (parsed.scheme, parsed.raw_host or "", parsed.port)


class TokenManager:
    """Holds the current token and runs at most one refresh at a time.

    Args:
        client: Performs one token exchange.
        refresh_timeout: Seconds a refresh may take in total; waiters get a
            ``TransientTokenError`` when it runs out.
        refresh_cooldown: Seconds during which a token that replaced a rejected token, and was
            itself rejected before it ever worked, is not replaced again (no login storm when
            an org rejects every fresh token).
        clock: Monotonic seconds; ``time.monotonic`` unless testing.

    """

    def __init__(
        self,
        client: TokenClient,
        *,
        refresh_timeout: float,
        refresh_cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.current: Token | None = None
        self.generation = 0
        self.proven = False
        self.origin: tuple[str, str, int | None] | None = None
        self.old_origins: list[tuple[str, str, int | None]] = []
        self._refresh_timeout = refresh_timeout
        self._cooldown = refresh_cooldown
        self._clock = clock
        self._task: asyncio.Task[Token] | None = None
        self._obtained = 0.0
        self._rejected: Token | None = None
        self._unproven_rejections = 0
        self.token_requests = 0

    async def get(self, http: aiohttp.ClientSession) -> Token:
        """Return the current token, or join (or start) the refresh when there is none.

        Args:
            http: Session for the token request, if one must be made.

        Raises:
            TokenEndpointError: The shared refresh failed (every waiter gets the same error).

        """
        token = self.current
        if token is not None:
            return token
        return await self._join(http)

    def mark_proven(self, token: Token) -> None:
        """Record that ``token`` got a non-401 answer, which resets the rejection streak."""
        if token is self.current:
            self.proven = True
            self._unproven_rejections = 0

    def reject(self, token: Token) -> bool:
        """Record a 401 ``INVALID_SESSION_ID`` for ``token``.

        Returns:
            ``True`` when a refresh is allowed (or already happened) for this rejection,
            ``False`` when the cooldown forbids replacing the token now.

        """
        if token is not self.current:
            return True  # stale: already replaced, or being replaced
        if self._rejected is not token:
            self._rejected = token
            if not self.proven:
                self._unproven_rejections += 1
        age = self._clock() - self._obtained
        return self._unproven_rejections < 2 or age >= self._cooldown

    async def replace(self, rejected: Token, http: aiohttp.ClientSession) -> Token:
        """Return a token newer than ``rejected``, refreshing once for all callers.

        A 401 for a token that has already been replaced (a stale generation) does not start
        another refresh: the caller gets the newer token, or joins the refresh in flight.
        Call ``reject`` first; this method does not check the cooldown.

        Raises:
            TokenEndpointError: The shared refresh failed.

        """
        if self.current is rejected:
            self.current = None
        token = self.current
        if token is not None:
            return token
        return await self._join(http)

    async def _join(self, http: aiohttp.ClientSession) -> Token:
        task = self._task
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run(http), name="sfauth-refresh")
            task.add_done_callback(self._finished)
            self._task = task
        return await asyncio.shield(task)

    async def _run(self, http: aiohttp.ClientSession) -> Token:
        self.token_requests += 1
        try:
            async with asyncio.timeout(self._refresh_timeout):
                token = await self.client.fetch(http)
        except TimeoutError:
            raise self.client.error(
                "timeout",
                f"no token within refresh_timeout={self._refresh_timeout:g} s",
                status=None,
                hint="The token endpoint is slow or unreachable; raise refresh_timeout or "
                "check network access to login_url.",
            ) from None
        self._install(token)
        return token

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
        self.current = token
        self.generation += 1
        self.proven = False
        self._obtained = self._clock()

    def _finished(self, task: asyncio.Task[Token]) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not reported twice
