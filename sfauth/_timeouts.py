"""A request's total timeout, read from what aiohttp accepts and carried across waits."""

from __future__ import annotations

import aiohttp

__all__ = ["total_seconds", "with_total"]


def total_seconds(timeout: object) -> float | None:
    """Seconds of a request's total timeout; ``None`` for none (aiohttp reads 0 so too).

    Args:
        timeout: What aiohttp takes as ``timeout``: an ``aiohttp.ClientTimeout``, or a
            number of seconds (the total); anything else has no total.
    """
    if isinstance(timeout, aiohttp.ClientTimeout):
        return timeout.total or None
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        return float(timeout) or None  # aiohttp takes a number as the total
    return None


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
