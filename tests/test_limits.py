"""UsageTracker: the latest Sforce-Limit-Info, and the threshold read at most once a second."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from sfauth._limits import ApiUsage, UsageTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _warnings(logs: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(e["used"], e["limit"]) for e in logs if e["event"] == "sfauth.limits.high"]


def test_latest_is_the_latest_header_even_between_checks() -> None:
    clock = Clock()
    tracker = UsageTracker(warn_fraction=0.5, clock=clock)
    assert tracker.latest is None
    tracker.observe("api-usage=1/100")
    tracker.observe("api-usage=2/100; per-app-api-usage=1/50(appName=etl)")
    assert tracker.latest == ApiUsage(used=2, limit=100, other={"per-app-api-usage": (1, 50)})


def test_a_malformed_header_keeps_the_last_checked_usable_one() -> None:
    tracker = UsageTracker(warn_fraction=0.5, clock=Clock())
    tracker.observe("api-usage=7/100")
    tracker.observe("nonsense")
    assert tracker.latest == ApiUsage(used=7, limit=100)


def test_a_header_without_api_usage_never_hides_a_newer_usable_one() -> None:
    clock = Clock()
    tracker = UsageTracker(warn_fraction=0.5, clock=clock)
    tracker.observe("api-usage=10/100")
    clock.now += 0.5
    tracker.observe("api-usage=50/100")  # not checked: within the second
    tracker.observe("per-app-api-usage=1/50(appName=etl)")
    tracker.observe("garbage")
    assert tracker.latest == ApiUsage(used=50, limit=100)


def test_a_snapshot_has_no_side_effect() -> None:
    tracker = UsageTracker(warn_fraction=0.5, clock=Clock())
    with structlog.testing.capture_logs() as logs:
        tracker.observe("api-usage=49/100")
        tracker.observe("api-usage=99/100")  # skipped within the second
        assert tracker.snapshot() == ApiUsage(used=99, limit=100)
        assert _warnings(logs) == []  # a snapshot checks nothing (another thread may read it)
        assert tracker.latest == ApiUsage(used=99, limit=100)
    assert _warnings(logs) == [(99, 100)]  # latest does


def test_a_crossing_in_the_last_skipped_header_is_logged_on_flush() -> None:
    clock = Clock()
    tracker = UsageTracker(warn_fraction=0.5, clock=clock)
    with structlog.testing.capture_logs() as logs:
        tracker.observe("api-usage=49/100")
        tracker.observe("api-usage=99/100")  # skipped: the job may end right here
        assert _warnings(logs) == []
        tracker.flush()  # AuthSession.close() does this
        tracker.flush()
    assert _warnings(logs) == [(99, 100)]


async def test_a_skipped_header_is_checked_when_its_interval_ends() -> None:
    clock = Clock()
    tracker = UsageTracker(warn_fraction=0.5, check_interval=1.0, clock=clock)
    with structlog.testing.capture_logs() as logs:
        tracker.observe("api-usage=49/100")
        tracker.observe("api-usage=60/100")
        tracker.observe("api-usage=61/100")
        timer = tracker._timer
        assert timer is not None  # one timer for the window, due when it ends
        assert timer.when() - asyncio.get_running_loop().time() == pytest.approx(1.0, abs=0.05)
        timer._run()  # what the loop does at that time
    assert _warnings(logs) == [(61, 100)]
    assert tracker._timer is None


def test_the_threshold_is_read_on_the_first_response_then_once_per_interval() -> None:
    clock = Clock()
    tracker = UsageTracker(warn_fraction=0.5, check_interval=1.0, clock=clock)
    with structlog.testing.capture_logs() as logs:
        tracker.observe("api-usage=49/100")  # checked: below
        tracker.observe("api-usage=50/100")  # within the second: not read
        assert _warnings(logs) == []
        clock.now += 0.999
        tracker.observe("api-usage=51/100")  # still within the second
        assert _warnings(logs) == []
        clock.now += 0.001
        tracker.observe("api-usage=52/100")  # read: crossed
        assert _warnings(logs) == [(52, 100)]
        clock.now += 1.0
        tracker.observe("api-usage=60/100")  # still high: logged once per crossing
        assert _warnings(logs) == [(52, 100)]
        clock.now += 1.0
        tracker.observe("api-usage=3/100")  # the 24-hour window moved on: below again
        clock.now += 1.0
        tracker.observe("api-usage=90/100")  # a new crossing is logged again
    assert _warnings(logs) == [(52, 100), (90, 100)]
    assert [e["fraction"] for e in logs] == [0.52, 0.9]
