"""Login protection shared by a fleet: refusal memory, the login-rate back-off, login counting.

design.md section 7. Each JWT bearer exchange is a login, and Salesforce allows 3,600 per user
per hour (Knowledge 000381578). With a shared store (``RedisTokenStore``, or a
``MemoryTokenStore`` shared by the sessions of one process):

- a permanent refusal (``invalid_grant``, ``invalid_client_id``, ``app_not_found``…) is
  remembered for ``refusal_cooldown`` seconds: every other session gets the same typed error
  (``sent=False``) without calling the token endpoint, until the cooldown ends, any session
  logs in, or an operator clears it (``AuthSession.clear_refusal``, ``sfauth store clear``);
- "login rate exceeded" is remembered for ``login_backoff`` seconds the same way;
- every login is counted per user over a rolling hour; ``sfauth.login_rate.high`` is logged
  past ``login_rate_warning`` of 3,600, and ``login_rate_cap`` refuses before sending.

Without a shared store, the login-rate back-off and the login count are this session's own,
and other refusals are left to its circuit breaker. When the store cannot be reached (logged
as ``sfauth.fleet.unavailable``), this session's own bookkeeping stands in, and the store is
left alone for a few seconds (a refusal is still offered to it: it is rare and it matters).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Protocol, TypeVar, runtime_checkable

from ._logging import logger
from ._token import token_error
from .exceptions import (
    InvalidClientError,
    InvalidGrantError,
    LoginRateExceededError,
    TokenEndpointError,
    TokenStoreError,
)

__all__ = [
    "LOGINS_PER_HOUR",
    "LOGIN_WINDOW",
    "FleetStore",
    "LoginGuard",
    "Refusal",
    "user_key",
]

#: Salesforce's login rate limit: logins per user per hour (Knowledge 000381578).
LOGINS_PER_HOUR = 3600
#: Seconds of the rolling window logins are counted over.
LOGIN_WINDOW = 3600.0

_T = TypeVar("_T")

#: Seconds a refusal found in the store is raised again without asking the store.
_RECHECK = 1.0
#: Seconds the shared store is left alone after it failed.
_STORE_PAUSE = 5.0

_KINDS: dict[str, type[TokenEndpointError]] = {
    cls.__name__: cls for cls in (InvalidGrantError, InvalidClientError, LoginRateExceededError)
}

#: ``invalid_grant`` descriptions that are one host's problem, not the fleet's: an assertion
#: whose ``exp`` Salesforce reads as past comes from this host's clock.
_PER_HOST = frozenset({"expired authorization code"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """A token-endpoint refusal as the fleet remembers it (no secret in it).

    Attributes:
        kind: The exception class name (``"InvalidGrantError"``...).
        error: Salesforce's ``error``.
        error_description: Salesforce's ``error_description``.
        status: The HTTP status it came with.
        at: When it was received (epoch seconds).
    """

    kind: str
    error: str
    error_description: str
    status: int | None
    at: float

    def to_json(self) -> bytes:
        """The refusal as JSON bytes."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Refusal:
        """Inverse of ``to_json``.

        Raises:
            ValueError: ``data`` is not a refusal this version wrote.
        """
        try:
            fields = json.loads(data)
        except (ValueError, TypeError, RecursionError):
            raise ValueError("not a refusal") from None
        if not isinstance(fields, dict) or set(fields) != set(cls.__dataclass_fields__):
            raise ValueError("not a refusal")
        kind, error, description = fields["kind"], fields["error"], fields["error_description"]
        status, at = fields["status"], fields["at"]
        if kind not in _KINDS or not isinstance(error, str) or not isinstance(description, str):
            raise ValueError("not a refusal")
        if not (status is None or (type(status) is int and 100 <= status <= 599)):
            raise ValueError("not a refusal")
        # Epoch seconds up to the year 5138; also keeps float() of a huge int from raising.
        if type(at) not in (int, float) or not 0 <= at <= 1e11:
            raise ValueError("not a refusal")
        return cls(kind, error[:100], description[:300], status, float(at))

    @classmethod
    def of(cls, exc: TokenEndpointError) -> Refusal | None:
        """The refusal to remember for ``exc``, or ``None`` (transient, or this host's own)."""
        if not exc.sent or exc.retryable or type(exc).__name__ not in _KINDS:
            return None
        if exc.error_description.lower() in _PER_HOST:
            return None
        return cls(type(exc).__name__, exc.error, exc.error_description, exc.status, time.time())


def user_key(username: str) -> str:
    """A stable, non-secret key for one Salesforce user's logins (hex SHA-256).

    Salesforce usernames are not case-sensitive: ``Etl@Example.com`` is ``etl@example.com``.
    """
    return hashlib.sha256(b"logins\0" + username.lower().encode()).hexdigest()[:40]


@runtime_checkable
class FleetStore(Protocol):
    """The optional part of a ``TokenStore`` that a fleet shares besides the token.

    The refusal memory and login count (``LoginGuard``), the concurrency leases and the
    shared API usage (``_admission``). ``MemoryTokenStore`` and ``RedisTokenStore`` have it; a
    store without it gets each session's own bookkeeping. Methods raise ``TokenStoreError``
    when the backend is unreachable.
    """

    async def refusal(self, key: str) -> tuple[Refusal, float] | None:
        """The refusal remembered for ``key`` and the seconds it has left, or ``None``."""
        ...

    async def refuse(self, key: str, refusal: Refusal, ttl: float) -> None:
        """Remember ``refusal`` for ``key`` for ``ttl`` seconds (replacing any other)."""
        ...

    async def clear_refusal(self, key: str) -> bool:
        """Forget the refusal remembered for ``key``; whether there was one."""
        ...

    async def count_login(self, user: str, cap: int | None, login: str) -> tuple[int, bool]:
        """Count the login ``login`` (an id) of ``user`` unless ``cap`` were in the last hour.

        Returns:
            ``(logins in the last hour, counted)``: ``counted`` is ``False`` when the cap
            refused it (the count is then the logins already counted).
        """
        ...

    async def uncount_login(self, user: str, login: str) -> None:
        """Take back the login ``login`` of ``user`` (it never reached Salesforce)."""
        ...

    async def logins(self, user: str) -> int:
        """Logins of ``user`` counted in the last hour."""
        ...

    async def lease_acquire(self, org: str, ids: list[str], limit: int, ttl: float) -> int:
        """Grant the first of ``ids`` that fit under ``limit`` live leases of ``org``.

        Expired leases are dropped first; each granted lease lives ``ttl`` seconds unless
        renewed.

        Returns:
            How many of ``ids``, from the first, were granted.
        """
        ...

    async def lease_renew(self, org: str, ids: list[str], ttl: float) -> list[str]:
        """Extend the live ones of ``ids`` to ``ttl`` seconds from now; return those."""
        ...

    async def lease_release(self, org: str, ids: list[str]) -> None:
        """End the leases ``ids`` of ``org``."""
        ...

    async def leases(self, org: str) -> int:
        """Live leases of ``org`` now."""
        ...

    async def share_usage(self, org: str, used: int, limit: int) -> None:
        """Record the org's latest ``Sforce-Limit-Info`` reading (``api-usage=used/limit``)."""
        ...

    async def shared_usage(self, org: str) -> tuple[int, int, float] | None:
        """The org's latest shared reading: ``(used, limit, seconds since)``, or ``None``."""
        ...


class LoginGuard:
    """One session's view of the fleet's login protection (see the module docstring).

    Args:
        store: The shared store, or ``None``.
        key: The integration's store key (``store_key``).
        username: The Salesforce user the logins are for.
        token_url: For the errors' ``token_url``.
        audience: For the errors' ``audience``.
        refusal_cooldown: Seconds a permanent refusal is remembered (``0`` = not at all).
        login_backoff: Seconds no login is tried after "login rate exceeded".
        warn_fraction: Fraction of 3,600 logins an hour past which ``sfauth.login_rate.high``
            is logged (at most once a minute).
        cap: Logins per user per hour past which sfauth refuses before sending, or ``None``.
        local: The bookkeeping used without a fleet store (a ``FleetStore`` in memory).
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        store: object | None,
        key: str,
        username: str,
        *,
        token_url: str,
        audience: str,
        refusal_cooldown: float,
        login_backoff: float,
        warn_fraction: float,
        cap: int | None,
        local: FleetStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared = store if isinstance(store, FleetStore) else None
        self._local = local
        self._key = key
        self._user = user_key(username)
        #: Where the user's login-rate back-off is remembered (any app, any integration).
        self._user_key = f"logins:{self._user}"
        self._paused_until = 0.0
        self._token_url = token_url
        self._audience = audience
        self._cooldown = refusal_cooldown
        self._backoff = login_backoff
        self._warn_at = warn_fraction * LOGINS_PER_HOUR
        self._cap = cap
        self._clock = clock
        self._warned_at = -float("inf")
        self._logged: float | None = None  # the ``at`` of the refusal last logged as raised
        #: The refusal last found and until when (monotonic) it is raised without asking
        #: the store again: a fleet that keeps sending requests asks at most once a second.
        self._seen: tuple[Refusal, float, float] | None = None

    def check_seen(self) -> None:
        """Raise the refusal found in the last second, if any (no I/O).

        Raises:
            TokenEndpointError: As ``check``.
        """
        seen = self._seen
        if seen is not None:
            refusal, expires, recheck = seen
            now = self._clock()
            if now < recheck and now < expires:
                raise self._error(refusal, expires - now)
            self._seen = None

    async def check(self) -> None:
        """Raise the refusal the fleet remembers, if any (before a login is tried).

        Raises:
            TokenEndpointError: The remembered refusal's class, with ``sent=False`` and
                ``retry_in``.
        """
        self.check_seen()
        # This session's own memory first (what it recorded while the store failed), then
        # the fleet's: the integration's refusal, then the user's login-rate back-off.
        found = await self._local.refusal(self._key) or await self._local.refusal(self._user_key)
        if found is None:
            found = await self._call("refusal", lambda s: s.refusal(self._key))
        if found is None:
            found = await self._call("refusal", lambda s: s.refusal(self._user_key))
        if found is None:
            return
        refusal, left = found
        now = self._clock()
        self._seen = (refusal, now + left, now + _RECHECK)
        if self._logged != refusal.at:  # once per refusal, not once per request
            self._logged = refusal.at
            logger.warning(
                "sfauth.token.refusal_remembered",
                error=refusal.error,
                error_description=refusal.error_description,
                age=round(max(time.time() - refusal.at, 0.0), 1),
                retry_in=round(left, 1),
            )
        raise self._error(refusal, left)

    def _error(self, refusal: Refusal, left: float) -> TokenEndpointError:
        age = max(time.time() - refusal.at, 0.0)
        what = "login rate back-off" if refusal.kind == "LoginRateExceededError" else "refusal"
        error = token_error(
            _KINDS[refusal.kind],
            refusal.error,
            refusal.error_description,
            token_url=self._token_url,
            audience=self._audience,
            status=refusal.status,
            note=f"Not sent: the token endpoint gave this answer {age:.0f} s ago and the fleet "
            f"remembers it ({what}) for {left:.0f} s more, until a login succeeds elsewhere, "
            "or until an operator runs `sfauth store clear` (AuthSession.clear_refusal()).",
        )
        error.sent = False
        error.retry_in = left
        return error

    async def remember(self, exc: TokenEndpointError) -> None:
        """Record ``exc`` for the fleet when it is a permanent refusal (see ``Refusal.of``)."""
        refusal = Refusal.of(exc)
        if refusal is None:
            return
        rate = isinstance(exc, LoginRateExceededError)
        if not rate and self._shared is None:
            return  # without a fleet, the circuit breaker stops repeated refusals
        ttl = self._backoff if rate else self._cooldown
        key = self._user_key if rate else self._key  # Salesforce counts logins per user
        if ttl > 0:  # asked of the store even in a pause: it is rare and it matters
            await self._call("refuse", lambda s: s.refuse(key, refusal, ttl), always=True)
            logger.warning(
                "sfauth.token.refusal_recorded",
                error=refusal.error,
                error_description=refusal.error_description,
                cooldown=ttl,
            )

    async def count(self) -> str:
        """Count one login about to be sent; warn near the limit; refuse past the cap.

        Returns:
            The login's id, for ``uncount`` if it turns out never to reach Salesforce.

        Raises:
            LoginRateExceededError: ``login_rate_cap`` logins were counted in the last hour
                (``sent=False``).
        """
        login = uuid.uuid4().hex
        count, counted = await self._call(
            "count_login", lambda s: s.count_login(self._user, self._cap, login)
        )
        if not counted:
            error = LoginRateExceededError(
                "login_rate_cap",
                f"{count} logins of this user in the last hour reached login_rate_cap={self._cap}",
                token_url=self._token_url,
                audience=self._audience,
                status=None,
                hint="Not sent. Logins are counted fleet-wide through the token store; find "
                "what logs in so often (every process should share one token through "
                "token_store), or raise login_rate_cap (Salesforce's limit is 3,600/hour).",
            )
            error.sent = False
            raise error
        now = self._clock()
        if count >= self._warn_at and now - self._warned_at >= 60.0:
            self._warned_at = now
            logger.warning(
                "sfauth.login_rate.high",
                logins_last_hour=count,
                limit=LOGINS_PER_HOUR,
                cap=self._cap,
                hint="Salesforce refuses logins past 3,600 per user per hour; share one token "
                "through token_store",
            )
        return login

    async def uncount(self, login: str) -> None:
        """Take back ``login``: its token request never reached Salesforce (no connection)."""
        await self._call("uncount_login", lambda s: s.uncount_login(self._user, login))

    async def clear(self) -> bool:
        """Forget the remembered refusal, fleet-wide and here; whether there was one.

        Raises:
            TokenStoreError: The shared store cannot be reached.
        """
        self._seen = None
        cleared = False
        for store in (self._local, self._shared):
            for key in (self._key, self._user_key):
                if store is not None:
                    cleared = await store.clear_refusal(key) or cleared
        return cleared

    async def succeeded(self) -> None:
        """A login worked: the user's login-rate back-off, if any, is over.

        The integration's refusal is cleared by the store's ``publish``; a refusal kept in
        this session's own bookkeeping goes here.
        """
        self._seen = None
        await self._local.clear_refusal(self._key)
        await self._local.clear_refusal(self._user_key)
        await self._call("clear_refusal", lambda s: s.clear_refusal(self._user_key))

    async def _call(
        self, what: str, op: Callable[[FleetStore], Awaitable[_T]], *, always: bool = False
    ) -> _T:
        """Run ``op`` on the shared store; on this session's bookkeeping without one.

        After the store failed, it is left alone for a few seconds (``_STORE_PAUSE``): a
        Redis that stops answering costs one ``socket_timeout``, not one per call. An
        ``always`` call is tried even then.
        """
        store = self._shared
        if store is not None and (always or self._clock() >= self._paused_until):
            try:
                return await op(store)
            except TokenStoreError as exc:
                logger.warning(
                    "sfauth.fleet.unavailable",
                    operation=what,
                    error=str(exc)[:300],
                    fallback="this session's own bookkeeping",
                )
                self._paused_until = self._clock() + _STORE_PAUSE
        return await op(self._local)
