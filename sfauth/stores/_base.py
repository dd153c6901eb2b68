"""The ``TokenStore`` protocol: where sessions share tokens, and who may refresh."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, runtime_checkable

from .._token import _TOKEN_CHARS, Token, _instance_url_problem

__all__ = ["TokenStore", "fingerprint", "store_key", "token_from_json", "token_to_json"]


@runtime_checkable
class TokenStore(Protocol):
    """Shared storage for tokens plus a lock that decides who refreshes.

    sfauth calls a store only on the refresh path (never per request): to find a token another
    session already published, to take the right to refresh, to publish the new token, and to
    drop a token the API rejected. ``key`` identifies one integration (token URL, client_id,
    username, audience); it is computed by sfauth.

    Implementations: ``MemoryTokenStore`` (sessions in one process) and ``RedisTokenStore``
    (processes on many hosts). Methods raise ``TokenStoreError`` when the backend is
    unreachable.

    Attributes:
        fallback_to_local: When the backend is unreachable, mint locally (logging a warning)
            instead of failing the refresh with ``TokenStoreError``.
    """

    fallback_to_local: bool

    async def get(self, key: str) -> Token | None:
        """Return the token last published under ``key``, or ``None``."""
        ...

    async def publish(self, key: str, token: Token) -> None:
        """Store ``token`` as the current one for ``key``."""
        ...

    async def invalidate(self, key: str, token: Token) -> bool:
        """Drop the stored token only if it is still ``token`` (atomic compare-and-delete).

        Returns:
            Whether it was dropped; ``False`` when another token has replaced it meanwhile.
        """
        ...

    async def acquire(self, key: str, ttl: float) -> str | None:
        """Try once to take the right to refresh ``key``, for at most ``ttl`` seconds.

        Returns:
            An owner handle to pass to ``release``, or ``None`` when someone else holds it.
        """
        ...

    async def release(self, key: str, owner: str) -> None:
        """Give the right back, only if ``owner`` still holds it."""
        ...

    async def locked(self, key: str) -> bool:
        """Whether someone holds the right to refresh ``key`` now."""
        ...

    # Optional: the ``FleetStore`` methods (refusal memory, login count); a store without them
    # gets each session's own bookkeeping. ``publish`` should clear the refusal of ``key``.
    # Optional (both stores here have it): ``async def holder(self, key) -> str | None``, who
    # holds the right to refresh ``key`` now (an opaque handle) or ``None``. Waiters use it to
    # tell a new holder (the previous one died) from a stuck one: each new holder gets a full
    # ``2 * refresh_timeout`` to publish. Without it a waiter counts from when it started.


def store_key(token_url: str, client_id: str, username: str, audience: str) -> str:
    """A stable, non-secret key for one integration (hex SHA-256 of its identity)."""
    identity = json.dumps([token_url, client_id, username, audience]).encode()
    return hashlib.sha256(identity).hexdigest()[:40]


def fingerprint(token: Token) -> str:
    """A non-secret identifier of a token (hex SHA-256 of the access token, shortened)."""
    return hashlib.sha256(token.access_token.encode()).hexdigest()[:32]


def token_to_json(token: Token) -> bytes:
    """Serialise every field of ``token`` (including the access token) as JSON bytes."""
    fields: dict[str, Any] = {name: getattr(token, name) for name in token.__dataclass_fields__}
    return json.dumps(fields, separators=(",", ":")).encode()


_TEXT_FIELDS = ("access_token", "instance_url", "id", "org_id", "user_id", "scope", "token_type")
_OPTIONAL_TEXT = ("sfdc_community_url", "sfdc_community_id")


def token_from_json(data: bytes) -> Token:
    """Inverse of ``token_to_json``, checking every field's type.

    Raises:
        ValueError: ``data`` is not a serialised token (another writer, corruption).
    """
    fields = json.loads(data)
    if not isinstance(fields, dict) or set(fields) != set(Token.__dataclass_fields__):
        raise ValueError("not a serialised token")
    if not all(isinstance(fields[name], str) and fields[name] for name in _TEXT_FIELDS):
        raise ValueError("a token field is not a non-empty string")
    if not all(fields[name] is None or isinstance(fields[name], str) for name in _OPTIONAL_TEXT):
        raise ValueError("a community field is not a string")
    issued_at, obtained_at = fields["issued_at"], fields["obtained_at"]
    if issued_at is not None and (type(issued_at) is not int or issued_at < 0):
        raise ValueError("issued_at is not epoch milliseconds")
    if type(obtained_at) not in (int, float) or not obtained_at >= 0:
        raise ValueError("obtained_at is not epoch seconds")
    if not _TOKEN_CHARS.fullmatch(fields["access_token"]) or fields["token_type"] != "Bearer":
        raise ValueError("not a bearer session id")
    if _instance_url_problem(fields["instance_url"]):
        raise ValueError("instance_url is not a base URL")
    return Token(**fields)
