"""``MemoryTokenStore``: share one token among the sessions of one process."""

from __future__ import annotations

import itertools
import time

from .._token import Token

__all__ = ["MemoryTokenStore"]


class MemoryTokenStore:
    """A ``TokenStore`` in this process's memory.

    Pass one instance to several ``AuthSession``/``SalesforceAuthMiddleware`` objects of the
    same integration so they log in once between them. Without a store, each session keeps its
    own token (the default, and the same behaviour).

    Attributes:
        fallback_to_local: Always ``True`` (memory is never unreachable).
    """

    fallback_to_local = True

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._owners = itertools.count(1)

    def __repr__(self) -> str:
        return f"MemoryTokenStore(keys={len(self._tokens)})"

    async def get(self, key: str) -> Token | None:
        """Return the token last published under ``key``, or ``None``."""
        return self._tokens.get(key)

    async def publish(self, key: str, token: Token) -> None:
        """Store ``token`` as the current one for ``key``."""
        self._tokens[key] = token

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

    async def close(self) -> None:
        """Forget everything (nothing to release)."""
        self._tokens.clear()
        self._locks.clear()
