"""The send gate: at most ``limit`` sends at once, the bearer stamped only inside a slot."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ["SendGate"]


class SendGate:
    """A counting gate with a synchronous fast path, for one event loop at a time.

    ``try_enter`` takes a free slot without suspending (the hot path: no coroutine, no
    future); ``enter`` waits in FIFO order when none is free. ``leave`` hands the slot to the
    oldest waiter directly, so a request that has waited is never overtaken by one that
    arrives later. A gate first used in another event loop (a second ``asyncio.run()``)
    starts over with every slot free: the previous loop's sends are gone with it.

    Args:
        limit: Slots (``>= 1``).
    """

    __slots__ = ("_free", "_limit", "_loop", "_waiters")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def in_use(self) -> int:
        """Slots taken now (in the current loop)."""
        return self._limit - self._free

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody is waiting; never suspends."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._free = self._limit
            self._waiters = deque()
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def enter(self) -> None:
        """Take a slot, waiting (first come, first served) until one is free.

        Raises:
            asyncio.CancelledError: Cancelled while waiting; no slot is held then (a slot
                handed over at that moment is passed on to the next waiter).
        """
        if self.try_enter():
            return
        assert self._loop is not None  # set by try_enter
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # the slot was handed over just before the cancellation
            else:
                with contextlib.suppress(ValueError):  # already handed over and skipped
                    self._waiters.remove(waiter)
            raise

    def leave(self) -> None:
        """Give a slot back: to the oldest waiter still waiting, else to the pool."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        if self._free < self._limit:  # never more slots than the limit (a stray leave)
            self._free += 1
