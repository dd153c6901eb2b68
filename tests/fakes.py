"""Test doubles for time: a clock that only moves when the code under test sleeps."""

from __future__ import annotations

import asyncio


class FakeTime:
    """Monotonic and wall clocks plus an ``asyncio.sleep`` stand-in that advances both."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still a suspension point, like a real sleep
