"""``MemoryTokenStore``: share one token among the sessions of one process."""

from __future__ import annotations

import itertools
import time
from collections import deque

from .._fleet import LOGIN_WINDOW, Refusal
from .._token import Token

__all__ = ["MemoryTokenStore"]


class MemoryTokenStore:
    """A ``TokenStore`` in this process's memory.

    Pass one instance to several ``AuthSession``/``SalesforceAuthMiddleware`` objects of the
    same integration so they log in once between them. Without a store, each session keeps its
    own token (the default, and the same behaviour). The sessions sharing it also share the
    refusal memory and the login count (``sfauth.stores.FleetStore``; see "Running a fleet"
    in the README).

    Attributes:
        fallback_to_local: Always ``True`` (memory is never unreachable).
    """

    fallback_to_local = True

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._owners = itertools.count(1)
        self._refusals: dict[str, tuple[Refusal, float]] = {}
        self._logins: dict[str, deque[tuple[float, str]]] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._usage: dict[str, tuple[int, int, float]] = {}

    def __repr__(self) -> str:
        return f"MemoryTokenStore(keys={len(self._tokens)})"

    async def get(self, key: str) -> Token | None:
        """Return the token last published under ``key``, or ``None``."""
        return self._tokens.get(key)

    async def publish(self, key: str, token: Token) -> None:
        """Store ``token`` as the current one for ``key``; a login worked, so forget refusals."""
        self._tokens[key] = token
        self._refusals.pop(key, None)

    async def invalidate(self, key: str, token: Token) -> bool:
        """Drop the stored token only if it is still ``token``."""
        stored = self._tokens.get(key)
        if stored is not None and stored.access_token == token.access_token:
            del self._tokens[key]
            return True
        return False

    async def acquire(self, key: str, ttl: float) -> str | None:
        """Take the right to refresh ``key`` for ``ttl`` seconds, unless someone holds it."""
        now = time.monotonic()
        held = self._locks.get(key)
        if held is not None and held[1] > now:
            return None
        owner = str(next(self._owners))
        self._locks[key] = (owner, now + ttl)
        return owner

    async def release(self, key: str, owner: str) -> None:
        """Give the right back if ``owner`` still holds it."""
        held = self._locks.get(key)
        if held is not None and held[0] == owner:
            del self._locks[key]

    async def locked(self, key: str) -> bool:
        """Whether someone holds the right to refresh ``key``."""
        held = self._locks.get(key)
        return held is not None and held[1] > time.monotonic()

    async def holder(self, key: str) -> str | None:
        """The owner handle of the right to refresh ``key``, or ``None`` when nobody holds it."""
        held = self._locks.get(key)
        return held[0] if held is not None and held[1] > time.monotonic() else None

    async def refusal(self, key: str) -> tuple[Refusal, float] | None:
        """The refusal remembered for ``key`` and the seconds it has left, or ``None``."""
        held = self._refusals.get(key)
        if held is None:
            return None
        left = held[1] - time.monotonic()
        if left <= 0:
            del self._refusals[key]
            return None
        return held[0], left

    async def refuse(self, key: str, refusal: Refusal, ttl: float) -> None:
        """Remember ``refusal`` for ``key`` for ``ttl`` seconds."""
        self._refusals[key] = (refusal, time.monotonic() + ttl)

    async def clear_refusal(self, key: str) -> bool:
        """Forget the refusal remembered for ``key``; whether one was in force."""
        return await self.refusal(key) is not None and self._refusals.pop(key, None) is not None

    async def count_login(self, user: str, cap: int | None, login: str) -> tuple[int, bool]:
        """Count the login ``login`` of ``user`` unless ``cap`` were counted in the last hour.

        Returns:
            ``(logins in the last hour, counted)``.
        """
        now = time.monotonic()
        window = self._logins.setdefault(user, deque())
        while window and window[0][0] <= now - LOGIN_WINDOW:
            window.popleft()
        if cap is not None and len(window) >= cap:
            return len(window), False
        window.append((now, login))
        return len(window), True

    async def uncount_login(self, user: str, login: str) -> None:
        """Take back the login ``login`` of ``user``."""
        window = self._logins.get(user)
        if window is not None:
            for entry in [entry for entry in window if entry[1] == login]:
                window.remove(entry)

    async def logins(self, user: str) -> int:
        """Logins of ``user`` counted in the last hour."""
        now = time.monotonic()
        return sum(1 for at, _ in self._logins.get(user, ()) if at > now - LOGIN_WINDOW)

    async def lease_acquire(self, org: str, ids: list[str], limit: int, ttl: float) -> int:
        """Grant the first of ``ids`` that fit under ``limit`` live leases of ``org``."""
        live = self._live(org)
        granted = max(min(limit - len(live), len(ids)), 0)
        expiry = time.monotonic() + ttl
        for lease in ids[:granted]:
            live[lease] = expiry
        return granted

    async def lease_renew(self, org: str, ids: list[str], ttl: float) -> list[str]:
        """Extend the live ones of ``ids`` to ``ttl`` seconds from now; return those."""
        live = self._live(org)
        expiry = time.monotonic() + ttl
        kept = [lease for lease in ids if lease in live]
        for lease in kept:
            live[lease] = expiry
        return kept

    async def lease_release(self, org: str, ids: list[str]) -> None:
        """End the leases ``ids`` of ``org``."""
        live = self._leases.get(org, {})
        for lease in ids:
            live.pop(lease, None)

    async def leases(self, org: str) -> int:
        """Live leases of ``org`` now."""
        return len(self._live(org))

    def _live(self, org: str) -> dict[str, float]:
        now = time.monotonic()
        live = self._leases.setdefault(org, {})
        for lease in [lease for lease, expiry in live.items() if expiry <= now]:
            del live[lease]
        return live

    async def share_usage(self, org: str, used: int, limit: int) -> None:
        """Record the org's latest ``Sforce-Limit-Info`` reading."""
        self._usage[org] = (used, limit, time.monotonic())

    async def shared_usage(self, org: str) -> tuple[int, int, float] | None:
        """The org's latest shared reading: ``(used, limit, seconds since)``, or ``None``."""
        found = self._usage.get(org)
        return None if found is None else (found[0], found[1], time.monotonic() - found[2])

    async def close(self) -> None:
        """Forget everything (nothing to release)."""
        self._tokens.clear()
        self._locks.clear()
        self._refusals.clear()
        self._logins.clear()
        self._leases.clear()
        self._usage.clear()
