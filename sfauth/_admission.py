"""Admission before a request is sent: fleet-wide concurrency leases and the API budget guard.

design.md section 7. An org allows 25 concurrent requests running longer than 20 s (5 in
Developer Edition), then answers 403 ``REQUEST_LIMIT_EXCEEDED`` ``ConcurrentPerOrgLongTxn``;
and one daily API allowance (``Sforce-Limit-Info: api-usage=used/limit``) for everybody. Both
are the org's, not one process's:

- **Leases** (``fleet_limit``): a request marked ``long_running=True`` (or every request, with
  ``fleet_limit_scope="all"``) holds one of ``fleet_limit`` leases of its org while it is in
  flight, body included. With a shared store the leases live in Redis as a sorted set per org
  (member: lease id, score: expiry on Redis's clock), granted and trimmed by a Lua script, so a
  process killed while holding leases stops renewing them and they expire within
  ``lease_ttl``. Requests of one session queue locally (FIFO) behind one acquirer, so waiting
  costs the store at most about ten calls a second per session and org (a jittered backoff
  from 5 to 100 ms, or at once when one of the session's own leases ends), not one per
  waiting request.
- **Budget** (``api_budget``): every session that sees ``Sforce-Limit-Info`` shares the latest
  reading through the store (at most once a second); a request marked ``low_priority=True``
  raises ``ApiBudgetError`` before sending once the freshest reading, this session's or the
  fleet's, is at or past ``api_budget`` of the allowance. A reading older than 60 s is not
  trusted (the 24-hour window rolls; nothing else would refresh it): the request goes out and
  brings a fresh one.

Without a shared store, or while it cannot be reached (``sfauth.fleet.unavailable``), leases
are this session's own and the budget uses this session's readings only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ._fleet import FleetStore
from ._limits import UsageTracker
from ._logging import logger
from .exceptions import ApiBudgetError, SessionClosedError, TokenStoreError

__all__ = ["Admission", "Budget", "Leases"]

#: Seconds after a failed store call during which the store is not tried again.
_STORE_PAUSE = 5.0
#: Seconds a usage reading stays trustworthy.
STALE_USAGE = 60.0
#: Seconds between two reads of the fleet's shared usage by one session.
_USAGE_RECHECK = 1.0


@dataclass
class _Lane:
    """The leases of one org in this session: who waits, and the one task asking for them."""

    waiters: deque[asyncio.Future[str]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None
    #: One store call at a time per org: what a failed call may take locally depends on
    #: what the others were granted.
    granting: asyncio.Lock = field(default_factory=asyncio.Lock)
    local: set[str] = field(default_factory=set)  # leases of this session's own count


class Leases:
    """At most ``limit`` requests per org in flight across every session sharing ``store``.

    Args:
        store: The shared store (a ``FleetStore``), or ``None`` for this session's own count.
        limit: Leases per org.
        ttl: Seconds a lease lives unless renewed; a live session renews its leases every
            ``ttl / 3`` seconds.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        store: object | None,
        limit: int,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store if isinstance(store, FleetStore) else None
        self.limit = limit
        self._ttl = ttl
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        self._held: dict[str, str] = {}  # lease id -> org, of the store's leases
        self._keeper: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()
        #: Store leases given back while the store could not be reached: lease id -> org.
        self._orphans: dict[str, str] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether the session closed (requests get ``SessionClosedError``)."""
        return self._closed

    @property
    def held(self) -> int:
        """Leases this session holds now."""
        return len(self._held) + sum(len(lane.local) for lane in self._lanes.values())

    async def acquire(self, org: str) -> str:
        """Wait for a lease of ``org`` (FIFO among this session's requests) and return its id.

        Bound it with a timeout (the caller's); a cancelled wait takes no lease.

        Raises:
            SessionClosedError: The session was closed while the request waited.
        """
        lane = self._lane(org)
        if self._closed:
            raise _closed_error()
        if not lane.waiters and not lane.granting.locked():  # nobody queued or asking
            granted = await self._grant(org, lane, 1)
            if granted and self.closed:  # the session closed during the store call
                await self.release(org, granted[0])
                raise _closed_error()
            if granted:
                return granted[0]
        if self.closed:  # closed during the try: no waiting in line for a closed session
            raise _closed_error()
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        lane.waiters.append(waiter)
        if lane.pump is None or lane.pump.done():
            lane.pump = asyncio.get_running_loop().create_task(
                self._pump(org, lane), name="sfauth-leases"
            )
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                await self.release(org, waiter.result())  # granted as the wait ended
            else:
                waiter.cancel()  # the pump skips it
            raise

    async def release(self, org: str, lease: str) -> None:
        """Give ``lease`` back (idempotent); the next waiter here is woken at once.

        A store lease is no longer renewed from here on; while the store cannot be reached
        (paused), or if this call fails, it is given back with the next call that reaches
        the store (or it expires by its TTL), and the request does not wait for Redis.
        """
        lane = self._lanes.get(org)
        if lane is not None and lease in lane.local:
            lane.local.discard(lease)
        elif self._held.pop(lease, None) is not None and self._store is not None:
            # Forgotten first: renewed no more. While the store is paused, or if this call
            # fails, it is given back with the next call that reaches the store.
            self._orphans[lease] = org
            if self._clock() >= self._paused_until:
                await self._give_orphans_back(self._store)
        if lane is not None:
            lane.wake.set()

    def close(self) -> None:
        """Stop renewing and asking (the session closed).

        Requests still waiting for a lease get ``SessionClosedError``; requests in flight
        give theirs back as they end (their connections close with the session), and any
        left expire by their TTL.
        """
        self._closed = True
        for lane in self._lanes.values():
            if lane.pump is not None:
                lane.pump.cancel()
                lane.pump = None
            for waiter in lane.waiters:
                if not waiter.done():
                    waiter.set_exception(_closed_error())
            lane.waiters.clear()
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None

    def open(self) -> None:
        """Serve leases again after ``close`` (the session was opened again)."""
        self._closed = False

    def _lane(self, org: str) -> _Lane:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a session opened again in another loop starts afresh
            # The old loop's tasks and futures went with it (cancelling them would need it).
            self._lanes, self._held, self._keeper = {}, {}, None
            self._loop = loop
        lane = self._lanes.get(org)
        if lane is None:
            lane = self._lanes[org] = _Lane()
        return lane

    async def _pump(self, org: str, lane: _Lane) -> None:
        """Ask for as many leases as there are waiters; wait for a release or a backoff.

        A failure other than the store being unreachable (a bug, a store that breaks its
        protocol) fails the waiting requests with it rather than leaving them waiting.
        """
        try:
            await self._serve(org, lane)
        except Exception as exc:
            logger.error("sfauth.fleet.lease_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            for waiter in lane.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            lane.waiters.clear()

    async def _serve(self, org: str, lane: _Lane) -> None:
        delay = 0.005
        waiters = lane.waiters
        while True:
            while waiters and waiters[0].done():  # cancelled while queued
                del waiters[0]
            if not waiters:
                return
            lane.wake.clear()
            wanted = min(sum(not w.done() for w in waiters), self.limit)
            granted = await self._grant(org, lane, wanted)
            for lease in granted:
                while waiters and waiters[0].done():
                    del waiters[0]
                if waiters:
                    waiters.popleft().set_result(lease)
                else:
                    await self.release(org, lease)
            if granted:
                delay = 0.005
                continue
            # Woken by a release here, or after a jittered backoff for the others' releases.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay * (0.5 + random.random())):  # noqa: S311
                    await lane.wake.wait()
            delay = min(delay * 2, 0.1)

    async def _grant(self, org: str, lane: _Lane, count: int) -> list[str]:
        """Up to ``count`` leases: the store's, or this session's own while it is paused.

        This session never holds more than ``limit`` leases of ``org`` in all, store and
        local ones together (a store that fails or comes back mid-run included).
        """
        async with lane.granting:
            store = self._store
            if store is not None and self._clock() >= self._paused_until:
                count = min(count, self.limit - len(lane.local))
                if count <= 0:
                    return []
                if self._orphans:
                    await self._give_orphans_back(store)
                ids = [uuid.uuid4().hex for _ in range(count)]
                call = asyncio.ensure_future(store.lease_acquire(org, ids, self.limit, self._ttl))
                try:
                    # Shielded: a cancelled wait must not lose a grant the store made.
                    granted = await asyncio.shield(call)
                except asyncio.CancelledError:
                    call.add_done_callback(functools.partial(self._give_back, org, ids))
                    raise
                except TokenStoreError as exc:
                    self._pause("lease", exc, f"this session's own {self.limit} leases")
                else:
                    ids = ids[:granted]
                    for lease in ids:
                        self._held[lease] = org
                    if ids and (self._keeper is None or self._keeper.done()):
                        self._keeper = asyncio.get_running_loop().create_task(
                            self._keep(store), name="sfauth-lease-keeper"
                        )
                    return ids
            in_store = sum(1 for held in self._held.values() if held == org)
            taken = max(min(self.limit - len(lane.local) - in_store, count), 0)
            leases = [f"local:{uuid.uuid4().hex}" for _ in range(taken)]
            lane.local.update(leases)
            return leases

    async def _give_orphans_back(self, store: FleetStore) -> None:
        """End the store leases released while the store could not be reached."""
        by_org: dict[str, list[str]] = {}
        for lease, org in self._orphans.items():
            by_org.setdefault(org, []).append(lease)
        for org, leases in by_org.items():
            try:
                await store.lease_release(org, leases)
            except TokenStoreError as exc:
                self._pause("lease_release", exc, "the lease is given back later, or expires")
                return
            for lease in leases:
                self._orphans.pop(lease, None)

    def _pause(self, operation: str, exc: TokenStoreError, fallback: str) -> None:
        """The store failed: warn once per pause, and leave it alone for a few seconds."""
        if self._clock() >= self._paused_until:
            logger.warning(
                "sfauth.fleet.unavailable",
                operation=operation,
                error=str(exc)[:300],
                fallback=fallback,
            )
        self._paused_until = self._clock() + _STORE_PAUSE

    def _give_back(self, org: str, ids: list[str], call: asyncio.Future[int]) -> None:
        """End what a grant whose waiter was cancelled obtained (a done callback)."""
        if call.cancelled() or call.exception() is not None or not call.result():
            return
        for lease in ids[: call.result()]:
            self._orphans[lease] = org  # given back with the next call that reaches the store
        store = self._store
        if store is not None:
            task = asyncio.get_running_loop().create_task(self._give_orphans_back(store))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _keep(self, store: FleetStore) -> None:
        """Renew the held leases every ``ttl / 3`` seconds while there are any.

        It tries even while requests leave the store alone (a pause): it waits for Redis in
        the background, and a lease not renewed in time would let the fleet exceed the limit.
        """
        while self._held:
            await asyncio.sleep(self._ttl / 3)
            by_org: dict[str, list[str]] = {}
            for lease, org in list(self._held.items()):
                by_org.setdefault(org, []).append(lease)
            for org, leases in by_org.items():
                try:
                    live = set(await store.lease_renew(org, leases, self._ttl))
                except TokenStoreError as exc:
                    self._pause("lease_renew", exc, "the leases expire by their TTL")
                    break
                lost = [lease for lease in leases if lease not in live]
                for lease in lost:
                    self._held.pop(lease, None)  # gone from the store: nothing to renew
                if lost:
                    logger.warning(
                        "sfauth.fleet.lease_lost",
                        lost=len(lost),
                        hint="leases expired before they were renewed (the store was "
                        "unreachable, or the event loop blocked, for longer than lease_ttl): "
                        "the fleet may exceed fleet_limit until these requests end",
                    )


class Budget:
    """Refuses low-priority requests past ``fraction`` of the org's daily API allowance.

    Args:
        store: The shared store (a ``FleetStore``), or ``None`` for this session's readings.
        fraction: Share of the allowance low-priority requests may use (``0 < x <= 1``).
        usage: This session's ``Sforce-Limit-Info`` readings.
        org: Returns the org id of the session's token, or ``None`` before the first login.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        store: object | None,
        fraction: float,
        usage: UsageTracker,
        org: Callable[[], str | None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store if isinstance(store, FleetStore) else None
        self.fraction = fraction
        self._usage = usage
        self._org = org
        self._clock = clock
        #: The fleet's reading: ``(used, limit, monotonic time it was taken)`` and when read.
        self._shared: tuple[int, int, float] | None = None
        self._shared_read = -float("inf")
        self._publishing: asyncio.Task[None] | None = None
        self._dirty = False
        self._paused_until = 0.0

    async def check(self, org: str) -> None:
        """Raise before sending when the freshest reading is past the budget.

        Raises:
            ApiBudgetError: Usage is at or past ``fraction`` of the allowance.
        """
        now = self._clock()
        reading: tuple[int, int, float] | None = None
        local = self._usage.snapshot()
        if local is not None:
            reading = (local.used, local.limit, now - self._usage.age())
        if self._store is not None and now - self._shared_read >= _USAGE_RECHECK:
            await self._read_shared(self._store, org, now)
        shared = self._shared
        if shared is not None and (reading is None or shared[2] > reading[2]):
            reading = shared
        if reading is None or now - reading[2] > STALE_USAGE:
            return  # nothing trustworthy: this request brings a reading
        used, limit, _ = reading
        if limit > 0 and used >= self.fraction * limit:
            raise ApiBudgetError(used, limit, self.fraction)

    async def _read_shared(self, store: FleetStore, org: str, now: float) -> None:
        self._shared_read = now
        if now < self._paused_until:
            return
        try:
            found = await store.shared_usage(org)
        except TokenStoreError as exc:
            self._unavailable(exc, "usage", now)
            return
        if found is not None:
            used, limit, age = found
            self._shared = (used, limit, self._clock() - age)

    def publish(self) -> None:
        """Share this session's latest reading (``UsageTracker``'s hook, at most once a second).

        Runs in the background: a store call per second at most, none per request.
        """
        if self._store is None or self._clock() < self._paused_until:
            return
        if self._publishing is not None and not self._publishing.done():
            self._dirty = True  # published when the call in flight ends
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # the session's close, outside a loop: nothing to share it with
        self._publishing = loop.create_task(self._publish(self._store), name="sfauth-usage")

    async def _publish(self, store: FleetStore) -> None:
        while True:
            self._dirty = False
            usage, org = self._usage.snapshot(), self._org()
            if usage is None or org is None:
                return
            try:
                await store.share_usage(org, usage.used, usage.limit)
            except TokenStoreError as exc:
                self._unavailable(exc, "share_usage", self._clock())
                return
            if not self._dirty:
                return

    def _unavailable(self, exc: TokenStoreError, operation: str, now: float) -> None:
        self._paused_until = now + _STORE_PAUSE
        logger.warning(
            "sfauth.fleet.unavailable",
            operation=operation,
            error=str(exc)[:300],
            fallback="this session's own Sforce-Limit-Info readings",
        )

    def close(self) -> None:
        """Stop a share in flight (the session closed)."""
        if self._publishing is not None:
            self._publishing.cancel()
            self._publishing = None


@dataclass(frozen=True, slots=True)
class Admission:
    """What a session checks before sending a marked request.

    Attributes:
        leases: The concurrency leases, or ``None`` without ``fleet_limit``.
        budget: The API budget guard, or ``None`` without ``api_budget``.
        every_request: Leases apply to every request (``fleet_limit_scope="all"``).
    """

    leases: Leases | None
    budget: Budget | None
    every_request: bool

    def open(self) -> None:
        """Serve again after ``close`` (the session was opened again)."""
        if self.leases is not None:
            self.leases.open()

    def close(self) -> None:
        """Stop the background work of both (the session closed)."""
        if self.leases is not None:
            self.leases.close()
        if self.budget is not None:
            self.budget.close()


def _closed_error() -> SessionClosedError:
    return SessionClosedError("the session was closed while the request waited for a lease")
