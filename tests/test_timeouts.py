"""A request's total timeout carried across the waits before (and between) its sends."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from sfauth import RequestTimeoutError
from sfauth._timeouts import total_seconds, with_total, within_total


async def ready(value: str) -> str:
    return value


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (aiohttp.ClientTimeout(total=30), 30.0),
        (12, 12.0),
        (2.5, 2.5),
        (aiohttp.ClientTimeout(total=None, connect=5), None),
        (aiohttp.ClientTimeout(total=0), None),  # aiohttp reads <= 0 as none
        (0, None),
        (True, None),  # a bool is not a number of seconds
        (None, None),
    ],
)
def test_total_seconds_reads_what_aiohttp_reads(timeout: object, expected: float | None) -> None:
    assert total_seconds(timeout) == expected


def test_with_total_keeps_the_other_limits() -> None:
    timeout = aiohttp.ClientTimeout(total=30, connect=4, sock_read=5, sock_connect=6)
    assert with_total(timeout, 7) == aiohttp.ClientTimeout(
        total=7, connect=4, sock_read=5, sock_connect=6
    )
    assert with_total(30, 7) == aiohttp.ClientTimeout(total=7)


async def test_within_total_returns_what_is_left_of_the_total() -> None:
    timeout = aiohttp.ClientTimeout(total=30, connect=4)
    result, left = await within_total(ready("ok"), timeout, what="x", method="GET", url="/a")
    assert result == "ok"
    assert left is not None
    assert 29 < left <= 30


async def test_within_total_without_a_total_leaves_none() -> None:
    result, left = await within_total(ready("ok"), None, what="x", method="GET", url="/a")
    assert (result, left) == ("ok", None)


async def test_a_wait_before_the_send_that_runs_out_is_not_sent_and_retryable() -> None:
    never = asyncio.Event()
    with pytest.raises(RequestTimeoutError) as info:
        await within_total(never.wait(), 0.01, what="a send slot", method="GET", url="/a")
    error = info.value
    assert str(error) == (
        "GET /a failed: TimeoutError: the request's total timeout ran out while it waited for a "
        "send slot"
    )
    assert (error.sent, error.retryable) == (False, True)


async def test_a_wait_after_the_send_counts_the_total_from_the_send() -> None:
    never = asyncio.Event()
    sent_at = time.monotonic() - 29.99  # 30 s total, 10 ms of it left
    with pytest.raises(RequestTimeoutError) as info:
        await asyncio.wait_for(
            within_total(
                never.wait(), 30, what="a new session", method="GET", url="/a", sent_at=sent_at
            ),
            timeout=5,  # the total counted from now would outlast this
        )
    error = info.value
    assert str(error) == (
        "GET /a failed: TimeoutError: the request's total timeout ran out while it waited for "
        "a new session"
    )
    assert (error.sent, error.retryable) == (True, False)  # no time left for another attempt


async def test_a_wait_after_the_send_returns_what_is_left_since_the_send() -> None:
    sent_at = time.monotonic() - 20
    _, left = await within_total(
        ready("ok"), 30, what="x", method="GET", url="/a", sent_at=sent_at
    )
    assert left is not None
    assert 9 < left <= 10
