"""The send gate: at most ``limit`` sends at once, the bearer stamped only inside a slot."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ["SendGate"]


class SendGate:
    """A counting gate with a synchronous fast path, for one event loop at a time.

    ``try_enter`` takes a free slot without suspending (the hot path: no coroutine, no
    future, no system call); ``enter`` waits in FIFO order when none is free. ``leave`` hands
    the slot to the oldest waiter directly, so a request that has waited is never overtaken
    by one that arrives later. The gate serves the event loop it was last bound to
    (``bind``): bound to another loop (a second ``asyncio.run()``), it starts over with every
    slot free, the previous loop's sends being gone with it.

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

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve ``loop`` from now on: bound before to another loop, the gate starts over.

        Call it before ``try_enter``, with the loop that sends: ``AuthSession`` passes the
        loop its pool was opened in, the middleware the running loop of each request it
        sends itself, and ``enter`` binds to the running loop. ``try_enter`` does not look
        the loop up: ``asyncio.get_running_loop()`` is a ``getpid()`` system call on
        CPython 3.11, once per request on the hot path.
        """
        if loop is not self._loop:
            if self._loop is not None:  # the previous loop's sends are gone with it
                self._free = self._limit
                self._waiters = deque()
            self._loop = loop

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody is waiting; never suspends.

        The gate must be bound (``bind``) to the running loop.
        """
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
        loop = asyncio.get_running_loop()
        self.bind(loop)
        if self.try_enter():
            return
        waiter: asyncio.Future[None] = loop.create_future()
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
