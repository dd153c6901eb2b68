"""``RedisTokenStore``: many processes on many hosts share one token through Redis.

Layout, under a configurable prefix (default ``"sfauth:"``):

- ``{prefix}{key}`` — a hash with ``fp`` (a fingerprint of the access token, not secret) and
  ``data`` (the serialised token; Fernet-encrypted when an encryption key is given).
- ``{prefix}{key}:refusal`` — a permanent token-endpoint refusal (or the login-rate back-off)
  the fleet remembers: JSON (no secret), ``SET PX`` with the cooldown; a publish deletes it.
- ``{prefix}logins:{user}`` — a sorted set of the user's logins in the last hour (score: Redis
  server time in ms), trimmed and counted by a Lua script so the cap is exact fleet-wide.
- ``{prefix}leases:{org_id}`` — the org's concurrency leases: a sorted set of lease ids scored
  by their expiry (Redis server time, ms), granted, renewed and trimmed by Lua scripts; the key
  itself expires with its last lease.
- ``{prefix}usage:{org_id}`` — the latest ``Sforce-Limit-Info`` reading any process shared:
  ``used/limit/server-time-ms``, kept 24 hours.
- ``{prefix}{key}:lock`` — the right to refresh: ``SET NX PX`` with a random owner token,
  released by compare-and-delete (redis-py's ``Lock``), expiring after ``lock_ttl`` seconds (or
  the holder's ``ttl``, when shorter) so a process that dies while holding it blocks the others
  at most that long. A live holder renews it, but never past its ``ttl``. A value there without
  a TTL, or of another type, cannot be a lock sfauth took: it is deleted (and logged).

A value under the token key that cannot be read (garbage, another version's format, a token
encrypted with a key this process does not have) is treated as absent: the next refresh logs in
under the lock and overwrites it. It is logged once per store object, not on every refresh.

Invalidation is a Lua compare-and-delete on ``fp``: a 401 for a token another process already
replaced does not throw away the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self

from .._fleet import LOGIN_WINDOW, Refusal
from .._logging import logger
from .._token import Token
from ..exceptions import ConfigurationError, TokenStoreError
from ._base import fingerprint, token_from_json, token_to_json

if TYPE_CHECKING:
    from types import TracebackType

    import redis.asyncio as redis_asyncio

__all__ = ["ENCRYPTION_KEY_ENV", "RedisTokenStore"]

_WRONG_TYPE = object()

#: Environment variable read for the Fernet key(s) when ``encryption_key`` is not given: one key,
#: or several separated by commas (the first encrypts; all decrypt).
ENCRYPTION_KEY_ENV = "SFAUTH_REDIS_ENCRYPTION_KEY"

_PUBLISH = """
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'data', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# Server time, so that hosts with skewed clocks count the same window.
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_COUNT_LOGIN = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local n = redis.call('ZCARD', KEYS[1])
local cap = tonumber(ARGV[3])
if cap >= 0 and n >= cap then
    return {n, 0}
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {n + 1, 1}
"""
)

_LOGINS = (
    _NOW_MS
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[1])), '+inf')
"""
)

# The set lives as long as its longest lease (sessions may use different lease_ttl values).
_EXPIRE_WITH_LAST = """
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
    redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(last[2])) + 1)
end
"""

_LEASE_ACQUIRE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
-- A lease ending past the longest lease_ttl (an hour) from now is not one sfauth granted.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. (now + 3600000), '+inf')
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local n = math.min(free, #ARGV - 2)
if n <= 0 then
    return 0
end
local ttl = tonumber(ARGV[2])
for i = 1, n do
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[i + 2])
end
"""
    + _EXPIRE_WITH_LAST
    + """
return n
"""
)

_LEASE_RENEW = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl = tonumber(ARGV[1])
local kept = {}
for i = 2, #ARGV do
    if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
        redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
        kept[#kept + 1] = ARGV[i]
    end
end
"""
    + _EXPIRE_WITH_LAST
    + """
return kept
"""
)

_LEASES = (
    _NOW_MS
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""
)

_SHARE_USAGE = (
    _NOW_MS
    + """
redis.call('SET', KEYS[1], ARGV[1] .. '/' .. ARGV[2] .. '/' .. now, 'PX', 86400000)
return 1
"""
)

_SHARED_USAGE = (
    _NOW_MS
    + """
local value = redis.call('GET', KEYS[1])
if not value then
    return false
end
return {value, now}
"""
)

_REFUSAL = """
local value = redis.call('GET', KEYS[1])
if not value then
    return false
end
return {value, redis.call('PTTL', KEYS[1])}
"""

_CLEAR_STUCK_LOCK = """
if redis.call('PTTL', KEYS[1]) == -1 or redis.call('TYPE', KEYS[1])['ok'] ~= 'string' then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_INVALIDATE = """
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisTokenStore:
    """A ``TokenStore`` on Redis (``redis.asyncio``; install the ``redis`` extra).

    ::

        async with RedisTokenStore("redis://127.0.0.1:6379/0", encryption_key=key) as store:
            async with AuthSession(..., token_store=store) as sf:
                ...

    Without an encryption key, Redis holds a live bearer credential in clear: protect it like
    the private key (network access, ACLs, TLS), or give a key (``sfauth.store.unencrypted``
    is logged when the first token is written in clear).

    Args:
        redis: A Redis URL (``redis://``, ``rediss://``, ``unix://``) or a ready
            ``redis.asyncio.Redis`` client. A client created from a URL is closed by ``close``;
            a client you pass stays yours.
        prefix: Prefix of every key sfauth writes.
        encryption_key: A Fernet key (``cryptography.fernet.Fernet.generate_key()``) to encrypt
            tokens at rest, or a sequence of keys for rotation (``MultiFernet``: the first
            encrypts, every one decrypts; put the new key first on every process, then drop the
            old one); when ``None``, ``$SFAUTH_REDIS_ENCRYPTION_KEY`` is used if set (keys
            separated by commas).
        lock_ttl: Seconds the refresh lock lives without renewal: a process holding it renews it
            while it refreshes (at most for the ``ttl`` it asked for), so this bounds how long a
            crashed holder blocks the others (default 15).
        token_ttl: Seconds a published token stays in Redis (default 12 hours); Salesforce
            sessions usually expire sooner and are then replaced after a 401.
        on_unavailable: ``"fallback"`` (default): when Redis cannot be reached, log
            ``sfauth.store.unavailable`` and mint a token locally so a Redis blip does not stop
            the fleet; ``"raise"``: fail the refresh with ``TokenStoreError``.
        max_connections: Connections to Redis at most, for clients created from a URL
            (default 50); a command waits up to ``socket_timeout`` for a free one.
        socket_timeout: Seconds for Redis commands and connects, for clients created from a
            URL (default 2).

    Raises:
        ConfigurationError: redis-py is not installed, the URL is malformed, the encryption
            key is not a Fernet key, or a number is out of range.
    """

    def __init__(
        self,
        redis: str | redis_asyncio.Redis,
        *,
        prefix: str = "sfauth:",
        encryption_key: str | bytes | Sequence[str | bytes] | None = None,
        lock_ttl: float = 15.0,
        token_ttl: float = 12 * 3600.0,
        on_unavailable: Literal["fallback", "raise"] = "fallback",
        socket_timeout: float = 2.0,
        max_connections: int = 50,
    ) -> None:
        try:
            import redis.asyncio as redis_asyncio
            from redis.asyncio.lock import Lock
        except ImportError:
            raise ConfigurationError(
                "RedisTokenStore needs redis-py: install sfauth's redis extra (pip install "
                "'/path/to/sfauth[redis]' from a checkout) or pip install redis"
            ) from None
        if on_unavailable not in ("fallback", "raise"):
            raise ConfigurationError(
                f"on_unavailable must be 'fallback' or 'raise'; got {on_unavailable!r}"
            )
        for name, value, top in (("lock_ttl", lock_ttl, 3600), ("token_ttl", token_ttl, 604800)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < value <= top  # NaN and infinity too
            ):
                raise ConfigurationError(
                    f"{name} must be a number of seconds > 0 and <= {top}; got {value!r}"
                )
        if not isinstance(redis, str | redis_asyncio.Redis):
            raise ConfigurationError(
                "redis must be a Redis URL such as 'redis://127.0.0.1:6379/0' or a "
                f"redis.asyncio.Redis client; got {type(redis).__name__}"
            )
        self._lock_class = Lock
        self._owns_client = isinstance(redis, str)
        self._pool: Any = None
        if isinstance(redis, str):
            if type(max_connections) is not int or max_connections < 1:
                raise ConfigurationError(
                    f"max_connections must be an int >= 1; got {max_connections!r}"
                )
            try:
                # Blocking: a burst of lease calls waits for a connection (up to
                # socket_timeout) instead of failing with "Too many connections".
                self._pool = redis_asyncio.BlockingConnectionPool.from_url(
                    redis,
                    max_connections=max_connections,
                    timeout=socket_timeout,
                    socket_timeout=socket_timeout,
                    socket_connect_timeout=socket_timeout,
                )
            except ValueError as exc:
                raise ConfigurationError(f"invalid Redis URL: {exc}") from None
            self._redis: redis_asyncio.Redis = redis_asyncio.Redis(connection_pool=self._pool)
        else:
            self._redis = redis
        self._prefix = prefix
        self._lock_ttl = lock_ttl
        self._token_ttl_ms = int(token_ttl * 1000)
        self.fallback_to_local = on_unavailable == "fallback"
        key: str | bytes | Sequence[str | bytes] | None = encryption_key
        if key is None and (env := os.environ.get(ENCRYPTION_KEY_ENV)) is not None:
            key = [part.strip() for part in env.split(",")]
        # A key that is given (or a variable that is set) must be a key: an empty value is a
        # missing secret, not a request to store tokens in clear.
        self._fernet = _fernet(key) if key is not None else None
        self._unreadable_logged = False
        self._clear_logged = False
        self._locks: dict[str, tuple[Any, asyncio.Task[None]]] = {}
        self._invalidate = self._redis.register_script(_INVALIDATE)
        self._publish = self._redis.register_script(_PUBLISH)
        self._clear_stuck_lock = self._redis.register_script(_CLEAR_STUCK_LOCK)
        self._count_login = self._redis.register_script(_COUNT_LOGIN)
        self._logins = self._redis.register_script(_LOGINS)
        self._refusal = self._redis.register_script(_REFUSAL)
        self._lease_acquire = self._redis.register_script(_LEASE_ACQUIRE)
        self._lease_renew = self._redis.register_script(_LEASE_RENEW)
        self._leases = self._redis.register_script(_LEASES)
        self._share_usage = self._redis.register_script(_SHARE_USAGE)
        self._shared_usage = self._redis.register_script(_SHARED_USAGE)

    def __repr__(self) -> str:
        encrypted = "encrypted" if self._fernet else "NOT encrypted"
        return f"RedisTokenStore(prefix={self._prefix!r}, {encrypted})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def encrypted(self) -> bool:
        """Whether tokens are encrypted at rest."""
        return self._fernet is not None

    async def get(self, key: str) -> Token | None:
        """Return the token last published under ``key``, or ``None``.

        A value that cannot be read (garbage, another writer's format, a token encrypted with
        a key this store does not hold) is ``None`` too, so the caller logs in and overwrites
        it; ``sfauth.store.unreadable`` is logged the first time for this store.

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        hget = self._redis.hget(self._prefix + key, "data")
        data = await self._call("HGET", hget, wrong_type=_WRONG_TYPE)
        if data is None:
            return None
        problem = "WRONGTYPE"  # another writer put another Redis type under the key
        if data is not _WRONG_TYPE:
            try:
                raw = self._fernet.decrypt(data) if self._fernet else data
                return token_from_json(raw)
            except Exception as exc:  # InvalidToken, ValueError, TypeError: unreadable value
                problem = type(exc).__name__
        if not self._unreadable_logged:
            self._unreadable_logged = True
            logger.warning(
                "sfauth.store.unreadable",
                prefix=self._prefix,
                error=problem,
                action="treated as absent: the next login overwrites it",
                hint="if other processes share this key, do they use the same encryption_key "
                "(or a list that contains it) and the same sfauth version?",
            )
        return None

    async def publish(self, key: str, token: Token) -> None:
        """Store ``token`` as the current one for ``key`` (with ``token_ttl``).

        A login worked: the refusal remembered for ``key``, if any, is deleted with it.
        """
        data = token_to_json(token)
        if self._fernet:
            data = self._fernet.encrypt(data)
        elif not self._clear_logged:  # once, when a token is first written in clear
            self._clear_logged = True
            logger.warning(
                "sfauth.store.unencrypted",
                prefix=self._prefix,
                hint="Redis holds live bearer tokens in clear; pass encryption_key or set "
                f"${ENCRYPTION_KEY_ENV}",
            )
        args: list[bytes | str | int] = [fingerprint(token), data, self._token_ttl_ms]
        keys = [self._prefix + key, f"{self._prefix}{key}:refusal"]
        await self._call("publish", self._publish(keys=keys, args=args))

    async def refusal(self, key: str) -> tuple[Refusal, float] | None:
        """The refusal the fleet remembers for ``key`` and the seconds it has left, or ``None``.

        A value that cannot be read (another version's format) is ``None``.

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        script = self._refusal(keys=[f"{self._prefix}{key}:refusal"])
        found = await self._call("GET refusal", script, wrong_type=False)
        if not found:
            return None
        try:
            refusal = Refusal.from_json(found[0])
        except (ValueError, UnicodeDecodeError):
            return None  # another writer's value: as if none
        ttl_ms = int(found[1])
        return (refusal, ttl_ms / 1000) if ttl_ms > 0 else None

    async def refuse(self, key: str, refusal: Refusal, ttl: float) -> None:
        """Remember ``refusal`` for ``key`` for ``ttl`` seconds (``SET PX``).

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        name = f"{self._prefix}{key}:refusal"
        command = self._redis.set(name, refusal.to_json(), px=max(int(ttl * 1000), 1))
        await self._call("SET refusal", command)

    async def clear_refusal(self, key: str) -> bool:
        """Forget the refusal remembered for ``key`` (``sfauth store clear``); whether one was.

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        deleted = await self._call(
            "DEL refusal", self._redis.delete(f"{self._prefix}{key}:refusal")
        )
        return bool(deleted)

    async def count_login(self, user: str, cap: int | None, login: str) -> tuple[int, bool]:
        """Count the login ``login`` of ``user`` unless ``cap`` were in the last hour (Lua).

        Returns:
            ``(logins in the last hour, counted)``.

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        args: list[str | int] = [
            login,
            int(LOGIN_WINDOW * 1000),
            -1 if cap is None else cap,
        ]
        script = self._count_login(keys=[f"{self._prefix}logins:{user}"], args=args)
        count, counted = await self._call("login count", script)
        return int(count), bool(counted)

    async def uncount_login(self, user: str, login: str) -> None:
        """Take back the login ``login`` of ``user`` (``ZREM``).

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        await self._call("ZREM login", self._redis.zrem(f"{self._prefix}logins:{user}", login))

    async def logins(self, user: str) -> int:
        """Logins of ``user`` counted in the last hour.

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        script = self._logins(
            keys=[f"{self._prefix}logins:{user}"], args=[int(LOGIN_WINDOW * 1000)]
        )
        return int(await self._call("login count", script))

    async def invalidate(self, key: str, token: Token) -> bool:
        """Drop the stored token only if it is still ``token`` (Lua compare-and-delete)."""
        script = self._invalidate(keys=[self._prefix + key], args=[fingerprint(token)])
        return bool(await self._call("invalidate", script, wrong_type=False))

    async def acquire(self, key: str, ttl: float) -> str | None:
        """Try once to take the refresh lock for at most ``ttl`` seconds.

        The lock expires after ``min(lock_ttl, ttl)`` seconds unless renewed; this process
        renews it while it holds it, up to ``ttl`` seconds after taking it.

        Returns:
            An owner handle, or ``None`` when another process holds the lock.

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        lock = self._lock_class(
            self._redis,
            f"{self._prefix}{key}:lock",
            timeout=min(self._lock_ttl, ttl),
            blocking=False,
            thread_local=False,
        )
        # A lock taken after this caller was cancelled is given back, not left to its TTL.
        undo = functools.partial(_unlock_if, lock)
        acquired = await self._call("lock", lock.acquire(blocking=False), undo=undo)
        if not acquired:
            # Every lock sfauth takes expires; a value without a TTL (or of another Redis
            # type) under the lock key is not one, and would block every refresh for good.
            name = f"{self._prefix}{key}:lock"
            if not await self._call("lock", self._clear_stuck_lock(keys=[name])):
                return None
            logger.warning("sfauth.store.stuck_lock_cleared", prefix=self._prefix)
            if not await self._call("lock", lock.acquire(blocking=False), undo=undo):
                return None
        owner = str(id(lock))
        # While this process is alive and refreshing, keep the lock from expiring; a process
        # that dies stops renewing it, and the others take over after lock_ttl at most.
        keeper = asyncio.get_running_loop().create_task(
            self._keep(lock, time.monotonic() + ttl), name="sfauth-lock"
        )
        self._locks[owner] = (lock, keeper)
        return owner

    async def _keep(self, lock: Any, until: float) -> None:
        from redis.exceptions import RedisError

        interval = max(lock.timeout / 3, 0.05)
        while time.monotonic() + interval < until:
            await asyncio.sleep(interval)
            try:
                await lock.reacquire()
            except (RedisError, OSError):
                return  # lost or unreachable: the TTL decides

    async def release(self, key: str, owner: str) -> None:
        """Release the lock if this owner still holds it (an expired lock is left alone)."""
        held = self._locks.pop(owner, None)
        if held is not None:
            lock, keeper = held
            keeper.cancel()
            with contextlib.suppress(TokenStoreError):  # it expires by itself after lock_ttl
                await self._call("unlock", lock.release())

    async def locked(self, key: str) -> bool:
        """Whether some process holds the refresh lock for ``key``."""
        return bool(await self._call("EXISTS", self._redis.exists(f"{self._prefix}{key}:lock")))

    async def holder(self, key: str) -> str | None:
        """The lock's owner token (a random value each holder sets), or ``None`` if unlocked.

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        value = await self._call("GET", self._redis.get(f"{self._prefix}{key}:lock"))
        if value is None:
            return None
        return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

    async def lease_acquire(self, org: str, ids: list[str], limit: int, ttl: float) -> int:
        """Grant the first of ``ids`` that fit under ``limit`` live leases of ``org`` (Lua).

        Returns:
            How many of ``ids``, from the first, were granted.

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        args: list[str | int] = [limit, _ms(ttl), *ids]
        script = self._lease_acquire(keys=[f"{self._prefix}leases:{org}"], args=args)
        return int(await self._call("lease grant", script))

    async def lease_renew(self, org: str, ids: list[str], ttl: float) -> list[str]:
        """Extend the live ones of ``ids`` to ``ttl`` seconds from now; return those.

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        args: list[str | int] = [_ms(ttl), *ids]
        script = self._lease_renew(keys=[f"{self._prefix}leases:{org}"], args=args)
        kept = await self._call("lease renewal", script)
        return [k.decode() if isinstance(k, bytes) else str(k) for k in kept]

    async def lease_release(self, org: str, ids: list[str]) -> None:
        """End the leases ``ids`` of ``org`` (``ZREM``).

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        await self._call("ZREM lease", self._redis.zrem(f"{self._prefix}leases:{org}", *ids))

    async def leases(self, org: str) -> int:
        """Live leases of ``org`` now.

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        script = self._leases(keys=[f"{self._prefix}leases:{org}"])
        return int(await self._call("lease count", script, wrong_type=0))

    async def share_usage(self, org: str, used: int, limit: int) -> None:
        """Record the org's latest ``Sforce-Limit-Info`` reading (kept 24 hours).

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        script = self._share_usage(keys=[f"{self._prefix}usage:{org}"], args=[used, limit])
        await self._call("SET usage", script)

    async def shared_usage(self, org: str) -> tuple[int, int, float] | None:
        """The org's latest shared reading: ``(used, limit, seconds since)``, or ``None``.

        Raises:
            TokenStoreError: Redis is unreachable.
        """
        script = self._shared_usage(keys=[f"{self._prefix}usage:{org}"])
        found = await self._call("GET usage", script, wrong_type=False)
        if not found:
            return None
        value = found[0]
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        parts = text.split("/")
        # used/limit/at written by share_usage; anything else (another writer) is no reading.
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
            return None
        used, limit, at = (int(part) for part in parts)
        if limit == 0:
            return None
        return used, limit, max(int(found[1]) - at, 0) / 1000

    async def close(self) -> None:
        """Stop renewing held locks and close the Redis client if this store created it."""
        for _, keeper in self._locks.values():
            keeper.cancel()
        if self._owns_client:
            await self._redis.aclose()
            await self._pool.disconnect()

    async def _call(
        self,
        what: str,
        awaitable: Any,
        *,
        wrong_type: object = None,
        undo: Callable[[Any], Awaitable[object]] | None = None,
    ) -> Any:
        """Await a Redis command; its failures become ``TokenStoreError``.

        A ``WRONGTYPE`` answer (another writer left another Redis type under the key) is a
        value this store cannot read, not an unreachable Redis: ``wrong_type`` is returned for
        it when given.

        redis-py can swallow a ``CancelledError`` that arrives while it waits for a reply
        (the command then returns as if nothing happened); a caller that was cancelled (a
        timeout, a closed session) must stop. So when the task's pending cancellations grew
        during the command, ``CancelledError`` is raised here after all, once ``undo(result)``
        has given back what the command took (a lock). The command itself is cancelled as
        redis-py does it, so its connection goes back to the pool at once.
        """
        from redis.exceptions import RedisError, ResponseError

        task = asyncio.current_task()
        pending = task.cancelling() if task is not None else 0
        try:
            result = await awaitable
            if task is not None and task.cancelling() > pending:  # swallowed by redis-py
                if undo is not None:
                    await _quietly(undo(result))
                raise asyncio.CancelledError
            return result
        except ResponseError as exc:
            if wrong_type is None or "WRONGTYPE" not in str(exc):
                problem: BaseException = exc
            else:
                return wrong_type
        except (RedisError, OSError) as exc:
            problem = exc
        except RuntimeError as exc:  # its connections belong to an event loop that is gone
            raise TokenStoreError(
                f"Redis {what} failed: RuntimeError: {str(exc)[:200]} (a RedisTokenStore "
                "belongs to the event loop it was first used in: create one per asyncio.run())"
            ) from None
        raise TokenStoreError(
            f"Redis {what} failed: {type(problem).__name__}: {str(problem)[:200]}"
        )


async def _unlock_if(lock: Any, acquired: object) -> None:
    if acquired:
        await lock.release()


async def _quietly(awaitable: Awaitable[object]) -> None:
    """Await ``awaitable``, ignoring Redis's failures (a clean-up that a TTL also does)."""
    from redis.exceptions import RedisError

    with contextlib.suppress(RedisError, OSError):
        await awaitable


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds, at least 1."""
    return max(int(seconds * 1000), 1)


def _fernet(key: str | bytes | Sequence[str | bytes]) -> Any:
    """A ``Fernet`` for one key, a ``MultiFernet`` for a sequence (first key encrypts)."""
    from cryptography.fernet import Fernet, MultiFernet

    keys = [key] if isinstance(key, str | bytes) else list(key)
    problem = ""
    try:
        fernets = [Fernet(k) for k in keys]
    except (ValueError, TypeError):
        problem = "must be a Fernet key (32 url-safe base64-encoded bytes)"
    else:
        if fernets:
            return fernets[0] if len(fernets) == 1 else MultiFernet(fernets)
        problem = "is an empty list"
    raise ConfigurationError(
        f"encryption_key {problem}, e.g. from cryptography.fernet.Fernet.generate_key(), or "
        "a list of such keys (the first encrypts)"
    )
