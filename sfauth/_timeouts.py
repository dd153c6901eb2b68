"""A request's total timeout, read from what aiohttp accepts and carried across waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

import aiohttp

from .exceptions import RequestTimeoutError

__all__ = ["total_seconds", "with_total", "within_total"]

_T = TypeVar("_T")


def total_seconds(timeout: object) -> float | None:
    """Seconds of a request's total timeout; ``None`` for none (as aiohttp reads ``<= 0``).

    Args:
        timeout: What aiohttp takes as ``timeout``: an ``aiohttp.ClientTimeout``, or a
            number of seconds (the total); anything else has no total.
    """
    if isinstance(timeout, aiohttp.ClientTimeout):
        total = timeout.total
    elif isinstance(timeout, int | float) and not isinstance(timeout, bool):
        total = timeout  # aiohttp takes a number as the total
    else:
        return None
    return float(total) if total is not None and total > 0 else None


def with_total(timeout: object, total: float) -> aiohttp.ClientTimeout:
    """``timeout`` with its total replaced by ``total`` seconds (its other limits kept)."""
    if not isinstance(timeout, aiohttp.ClientTimeout):
        return aiohttp.ClientTimeout(total=total)
    return aiohttp.ClientTimeout(
        total=total,
        connect=timeout.connect,
        sock_read=timeout.sock_read,
        sock_connect=timeout.sock_connect,
        ceil_threshold=timeout.ceil_threshold,
    )


async def within_total(
    wait: Awaitable[_T],
    request_timeout: object,
    *,
    what: str,
    method: str,
    url: str,
    sent_at: float | None = None,
) -> tuple[_T, float | None]:
    """Await ``wait`` (a login, a send slot, a lease, a new session) within a total timeout.

    Args:
        wait: What the request waits for.
        request_timeout: The request's ``timeout`` argument (see ``total_seconds``).
        what: What it waits for, for the error message ("a send slot").
        method: The request's method, for the error.
        url: The request's URL as an error may show it (no query string).
        sent_at: ``time.monotonic()`` when the request was sent, if it was (it waits to be
            sent again): its total counts from then. ``None``: it counts from now.

    Returns:
        ``wait``'s result, and the seconds left of the total (``None`` when it has none; at
        least 1 ms): ``with_total(request_timeout, left)`` is the timeout to send with.

    Raises:
        RequestTimeoutError: The total timeout ran out first: ``sent=False``, or for a
            request already sent (``sent_at``) ``sent=True`` and not ``retryable`` (no time
            is left for another attempt).
    """
    total = total_seconds(request_timeout)
    started = time.monotonic() if sent_at is None else sent_at
    try:
        async with asyncio.timeout(None if total is None else started + total - time.monotonic()):
            result = await wait
    except TimeoutError:
        # No number: after an earlier wait (a login, a send slot), ``request_timeout`` holds
        # only what that wait left, not the total the caller set.
        error = RequestTimeoutError(
            f"the request's total timeout ran out while it waited for {what}",
            method=method,
            url=url,
            reason="TimeoutError",
            sent=sent_at is not None,
        )
        error.retryable = sent_at is None
        raise error from None
    if total is None:
        return result, None
    return result, max(total - (time.monotonic() - started), 0.001)
