"""The retry loop and Retry-After parsing, without sockets (pure tenacity behaviour)."""

from __future__ import annotations

import asyncio
import email.utils

import pytest

from sfauth import ConfigurationError, InvalidGrantError, RetryPolicy, TransientTokenError
from sfauth._retry import backoff_disabled, call_with_retries, parse_retry_after
from sfauth.testing import no_backoff

from .fakes import FakeTime

NOW = 1_700_000_000.0


def transient(retry_after: float | None = None) -> TransientTokenError:
    exc = TransientTokenError(
        "http_503", "down", token_url="https://x/t", audience="https://a", status=503, hint="h"
    )
    exc.retry_after = retry_after
    return exc


def permanent() -> InvalidGrantError:
    return InvalidGrantError(
        "invalid_grant",
        "inactive user",
        token_url="https://x/t",
        audience="https://a",
        status=400,
        hint="h",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("2", 2.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("99999999", 86400.0),
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (email.utils.formatdate(NOW + 10, usegmt=True), 10.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP-date
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("kw", "phrase"),
    [
        ({"attempts": 0}, "attempts must be an int >= 1"),
        ({"attempts": 2.5}, "attempts must be an int >= 1"),
        ({"budget": -1}, "budget must be a finite number of seconds >= 0"),
        ({"backoff_base": float("nan")}, "backoff_base must be a finite number"),
        ({"backoff_cap": float("inf")}, "backoff_cap must be a finite number"),
        ({"backoff_base": 5, "backoff_cap": 1}, "backoff_cap must be >= backoff_base"),
    ],
)
def test_policy_validation(kw: dict[str, float], phrase: str) -> None:
    with pytest.raises(ConfigurationError, match=phrase):
        RetryPolicy(**kw)  # type: ignore[arg-type]


async def test_retries_transient_errors_until_success() -> None:
    fake = FakeTime()
    outcomes: list[BaseException | str] = [transient(), transient(), "ok"]

    async def fn() -> str:
        item = outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    policy = RetryPolicy(attempts=5, sleep=fake.sleep, clock=fake.clock)
    assert await call_with_retries(policy, fn, log_fields={}) == "ok"
    assert len(fake.sleeps) == 2
    assert outcomes == []


async def test_permanent_error_is_raised_at_once() -> None:
    fake = FakeTime()
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        raise permanent()

    policy = RetryPolicy(attempts=5, sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(InvalidGrantError):
        await call_with_retries(policy, fn, log_fields={})
    assert calls == 1
    assert fake.sleeps == []


async def test_exhausted_retries_raise_the_last_typed_error_not_retry_error() -> None:
    fake = FakeTime()
    raised: list[TransientTokenError] = []

    async def fn() -> str:
        raised.append(transient())
        raise raised[-1]

    policy = RetryPolicy(attempts=4, sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(TransientTokenError) as info:
        await call_with_retries(policy, fn, log_fields={})
    assert info.value is raised[-1]
    assert len(raised) == 4
    assert len(fake.sleeps) == 3


async def test_full_jitter_windows_grow_and_are_capped() -> None:
    fake = FakeTime()

    async def fn() -> str:
        raise transient()

    policy = RetryPolicy(
        attempts=9,
        budget=1e6,
        backoff_base=1.0,
        backoff_cap=8.0,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    for _ in range(50):
        with pytest.raises(TransientTokenError):
            await call_with_retries(policy, fn, log_fields={})
    windows = [1, 2, 4, 8, 8, 8, 8, 8] * 50
    assert len(fake.sleeps) == len(windows)
    assert all(0 <= s <= w for s, w in zip(fake.sleeps, windows, strict=True))
    assert max(fake.sleeps[3::8]) > 4  # the 4th wait really uses its window of 8 s


async def test_retry_after_is_honoured_as_a_minimum_wait() -> None:
    fake = FakeTime()
    outcomes: list[BaseException | str] = [transient(retry_after=2.0), "ok"]

    async def fn() -> str:
        item = outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    policy = RetryPolicy(backoff_base=0.1, backoff_cap=0.1, sleep=fake.sleep, clock=fake.clock)
    assert await call_with_retries(policy, fn, log_fields={}) == "ok"
    assert fake.sleeps == [2.0]


async def test_no_retry_when_retry_after_exceeds_the_budget() -> None:
    fake = FakeTime()
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        raise transient(retry_after=30.0)

    policy = RetryPolicy(budget=10.0, sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(TransientTokenError):
        await call_with_retries(policy, fn, log_fields={})
    assert calls == 1
    assert fake.sleeps == []


async def test_budget_counts_time_spent_in_attempts() -> None:
    fake = FakeTime()
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        fake.now += 4.0  # each attempt takes 4 s
        raise transient(retry_after=1.0)

    policy = RetryPolicy(
        attempts=100,
        budget=12.0,
        backoff_base=0,
        backoff_cap=0,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    with pytest.raises(TransientTokenError):
        await call_with_retries(policy, fn, log_fields={})
    # Attempts end at 4, 9 and 14 s; the wait after the third would end at 15 > 12.
    assert calls == 3
    assert fake.sleeps == [1.0, 1.0]


async def test_cancellation_during_backoff_propagates_at_once() -> None:
    calls = 0
    sleeping = asyncio.Event()

    async def slow_sleep(_: float) -> None:
        sleeping.set()
        await asyncio.Event().wait()  # a backoff that would never end

    async def fn() -> str:
        nonlocal calls
        calls += 1
        raise transient()

    policy = RetryPolicy(sleep=slow_sleep)
    task = asyncio.create_task(call_with_retries(policy, fn, log_fields={}))
    await sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1


async def test_cancelled_error_from_an_attempt_is_not_retried() -> None:
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await call_with_retries(RetryPolicy(), fn, log_fields={})
    assert calls == 1


async def test_first_error_from_a_fast_path_counts_as_attempt_one() -> None:
    fake = FakeTime()
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        raise transient()

    policy = RetryPolicy(attempts=3, sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(TransientTokenError):
        await call_with_retries(policy, fn, first_error=transient(), log_fields={})
    assert calls == 2
    assert len(fake.sleeps) == 2


@pytest.mark.parametrize("switch", [backoff_disabled, no_backoff])
async def test_backoff_can_be_switched_off_for_tests(switch: object) -> None:
    fake = FakeTime()

    async def fn() -> str:
        raise transient(retry_after=60.0)

    policy = RetryPolicy(
        attempts=4, backoff_base=5, backoff_cap=5, sleep=fake.sleep, clock=fake.clock
    )
    with switch(), pytest.raises(TransientTokenError):  # type: ignore[operator]
        await call_with_retries(policy, fn, log_fields={})
    assert fake.sleeps == [0.0, 0.0, 0.0]
