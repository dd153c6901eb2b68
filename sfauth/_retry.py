"""Retry policy, ``Retry-After`` parsing and the retry loop; the only module importing tenacity.

Exponential backoff with full jitter (tenacity's ``wait_random_exponential``), capped attempts
and a total time budget, ``Retry-After`` honoured (RFC 9110 section 10.2.3: delay-seconds or an
HTTP-date). ``asyncio.CancelledError`` is never retried: it propagates at once, also from the
middle of a backoff sleep. When retries are exhausted the last typed sfauth error is raised,
never ``tenacity.RetryError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import tenacity as _t

from ._logging import logger
from .exceptions import (
    ConfigurationError,
    SFAuthError,
    TokenEndpointError,
    TransientAPIError,
    TransportError,
)

__all__ = ["RetryPolicy", "backoff_disabled", "call_with_retries", "parse_retry_after"]

T = TypeVar("T")

_state = {"backoff_disabled": False}

#: Longest ``Retry-After`` sfauth accepts from a server, in seconds (one day).
_MAX_RETRY_AFTER = 86400.0
_DELTA_SECONDS = re.compile(r"[0-9]{1,15}")


@contextlib.contextmanager
def backoff_disabled() -> Iterator[None]:
    """Make every retry happen at once (no backoff, ``Retry-After`` ignored) inside the block.

    For tests of code that uses sfauth: retries still happen, with the same attempt limits,
    but nothing sleeps. Exposed as ``sfauth.testing.no_backoff``.
    """
    previous = _state["backoff_disabled"]
    _state["backoff_disabled"] = True
    try:
        yield
    finally:
        _state["backoff_disabled"] = previous


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How transient failures are retried, for token requests and API requests alike.

    The wait before retry *n* (n = 1, 2, ...) is uniform in ``[0, min(backoff_cap,
    backoff_base * 2**(n-1))]`` ("full jitter"), or the server's ``Retry-After`` when that is
    longer. A retry whose wait would end after ``budget`` seconds since the first attempt is not
    made: the last error is raised instead.

    Args:
        attempts: Maximum sends of one request (or one token exchange), first included;
            ``1`` disables retries.
        budget: Seconds from the first attempt after which no retry starts.
        backoff_base: Seconds; the jitter window of the first retry.
        backoff_cap: Seconds; the largest jitter window.
        sleep: Awaitable sleep, ``asyncio.sleep`` unless testing.
        clock: Monotonic seconds for the budget, ``time.monotonic`` unless testing.

    Raises:
        ConfigurationError: A value is out of range.
    """

    attempts: int = 8
    budget: float = 60.0
    backoff_base: float = 0.2
    backoff_cap: float = 10.0
    sleep: Callable[[float], Awaitable[None]] = field(
        default=asyncio.sleep, repr=False, compare=False
    )
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigurationError(
                f"RetryPolicy.attempts must be an int >= 1; got {self.attempts!r}"
            )
        for name in ("budget", "backoff_base", "backoff_cap"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value >= 0 or math.isinf(value):
                raise ConfigurationError(
                    f"RetryPolicy.{name} must be a finite number of seconds >= 0; got {value!r}"
                )
        if self.backoff_cap < self.backoff_base:
            raise ConfigurationError("RetryPolicy.backoff_cap must be >= backoff_base")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries (one attempt)."""
        return cls(attempts=1)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (RFC 9110 section 10.2.3) into seconds to wait.

    Args:
        value: The header value: delay-seconds (``"120"``) or an HTTP-date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``); ``None`` when absent.
        now: Epoch seconds to measure an HTTP-date from; ``time.time()`` by default.

    Returns:
        Seconds (``>= 0``, at most one day), ``0`` for a date in the past, or ``None`` when the
        header is absent or malformed.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return min(float(text), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), _MAX_RETRY_AFTER)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, SFAuthError) and bool(getattr(exc, "retryable", False))


def describe(exc: BaseException) -> str:
    """A short, secret-free reason for a retry, for logs."""
    if isinstance(exc, TransientAPIError):
        return f"HTTP {exc.status} {exc.error_code or ''}".strip()
    if isinstance(exc, TransportError):
        return exc.reason
    if isinstance(exc, TokenEndpointError):
        return f"{exc.error} (HTTP {exc.status})" if exc.status else exc.error
    return type(exc).__name__


async def call_with_retries(
    policy: RetryPolicy,
    fn: Callable[[], Awaitable[T]],
    *,
    first_error: BaseException | None = None,
    started: float | None = None,
    log_fields: dict[str, Any],
    on_retry: Callable[[BaseException | None, int, float], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, raises a non-retryable error, or the policy gives up.

    Args:
        policy: Attempts, budget and backoff.
        fn: One attempt. It raises an ``SFAuthError`` with ``retryable=True`` (and optionally
            ``retry_after`` seconds) for transient failures.
        first_error: The failure of an attempt the caller already made (its fast path); the
            loop then starts with the wait before attempt 2.
        started: ``policy.clock()`` value at the first attempt, when the caller made it.
        log_fields: Secret-free fields added to the ``sfauth.retry.scheduled`` event.
        on_retry: Called with (the failure, its attempt number, seconds to wait) before each
            wait (telemetry).

    Returns:
        ``fn``'s result.

    Raises:
        SFAuthError: The last error, when it is not retryable or retries are exhausted.
        asyncio.CancelledError: Propagated at once, never retried.
    """
    start = policy.clock() if started is None else started
    pending = [first_error] if first_error is not None else []
    jitter = _t.wait_random_exponential(multiplier=policy.backoff_base, max=policy.backoff_cap)

    async def attempt() -> T:
        if pending:
            raise pending.pop()
        return await fn()

    # The wait after attempt n, drawn once: stop() and before_sleep() need it as well, and
    # tenacity < 8.3 calls stop() before wait() and has no RetryCallState.upcoming_sleep.
    waits: dict[int, float] = {}

    def wait(state: _t.RetryCallState) -> float:
        if state.attempt_number not in waits:
            waits[state.attempt_number] = next_wait(state)
        return waits[state.attempt_number]

    def next_wait(state: _t.RetryCallState) -> float:
        if _state["backoff_disabled"]:
            return 0.0
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        backoff = float(jitter(state)) if policy.backoff_base > 0 else 0.0
        return max(backoff, retry_after or 0.0)

    def stop(state: _t.RetryCallState) -> bool:
        if state.attempt_number >= policy.attempts:
            return True
        return policy.clock() - start + wait(state) > policy.budget

    def before_sleep(state: _t.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.info(
            "sfauth.retry.scheduled",
            attempt=state.attempt_number,
            wait=round(wait(state), 3),
            reason=describe(exc) if exc is not None else "",
            **log_fields,
        )
        if on_retry is not None:
            on_retry(exc, state.attempt_number, wait(state))

    retrying = _t.AsyncRetrying(
        sleep=policy.sleep,
        stop=stop,
        wait=wait,
        retry=_t.retry_if_exception(_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        result: T = await retrying(attempt)
    except SFAuthError as exc:
        attempts = retrying.statistics.get("attempt_number", 1)
        if hasattr(exc, "attempts"):
            exc.attempts = attempts
        raise
    return result
