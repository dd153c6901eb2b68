"""Parsing of ``Sforce-Limit-Info`` and tracking of the org's API usage (pure, no I/O).

Salesforce REST API Developer Guide, "Limit Info Header": every REST response except the
versions list carries ``Sforce-Limit-Info: api-usage=N/M``, sometimes followed by further
``name=N/M`` entries (``per-app-api-usage=17/250(appName=...)``, ``api-bursts=...``).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._logging import logger

__all__ = ["ApiUsage", "UsageTracker", "parse_limit_info"]

_API_USAGE = re.compile(r"api-usage=(\d{1,18})/(\d{1,18})")
_ENTRY = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(\d{1,18})\s*/\s*(\d{1,18})")


@dataclass(frozen=True, slots=True)
class ApiUsage:
    """The org's API request usage as of the latest response.

    Attributes:
        used: Requests counted in the current 24-hour window (``api-usage`` N).
        limit: The org's 24-hour allocation (``api-usage`` M).
        other: Further ``name -> (used, limit)`` entries of the header, such as
            ``per-app-api-usage`` or ``api-bursts``.
    """

    used: int
    limit: int
    other: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """``used / limit`` (``0.0`` when the limit is 0)."""
        return self.used / self.limit if self.limit else 0.0


def parse_limit_info(value: str) -> ApiUsage | None:
    """Parse a ``Sforce-Limit-Info`` header value.

    Args:
        value: For example ``"api-usage=25/15000"`` or
            ``"api-usage=25/15000; per-app-api-usage=17/250(appName=etl)"``.

    Returns:
        The usage, or ``None`` when there is no well-formed ``api-usage=N/M`` entry.
    """
    entries: dict[str, tuple[int, int]] = {}
    for part in re.split(r"[;,]", value[:4096]):
        match = _ENTRY.match(part)
        if match is not None:
            entries.setdefault(match[1].lower(), (int(match[2]), int(match[3])))
    usage = entries.pop("api-usage", None)
    if usage is None:
        return None
    return ApiUsage(used=usage[0], limit=usage[1], other=entries)


class UsageTracker:
    """Keeps the latest ``Sforce-Limit-Info`` and logs ``sfauth.limits.high`` once per crossing.

    Per response it stores the raw header (one that starts with ``api-usage=``, as
    Salesforce's do; any other is parsed first and kept only if it has a well-formed
    ``api-usage`` entry) and looks at the clock. The threshold is checked on the first
    response and then at most once every ``check_interval`` seconds: a header skipped in
    between is checked when the interval ends (a timer on the running loop), when ``flush`` is
    called (the session's close) or when ``latest`` is read, so a crossing is never lost. The
    header is a snapshot Salesforce updates asynchronously; reading it once a second loses
    nothing.

    Args:
        warn_fraction: Usage fraction (``0 < x <= 1``) at which the warning is logged.
        check_interval: Seconds between two threshold checks (default 1).
        clock: Monotonic seconds, ``time.monotonic`` unless testing.
    """

    __slots__ = (
        "_checked",
        "_clock",
        "_header",
        "_interval",
        "_next_check",
        "_seen",
        "_timer",
        "_warned",
        "on_check",
        "warn_fraction",
    )

    def __init__(
        self,
        *,
        warn_fraction: float,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.warn_fraction = warn_fraction
        self._interval = check_interval
        self._clock = clock
        self._next_check = -math.inf
        self._header = ""
        self._checked = ""  # the header the threshold was last checked against
        self._timer: asyncio.TimerHandle | None = None
        self._warned = False
        self._seen = -math.inf
        #: Called after each threshold check (at most once per ``check_interval``): the API
        #: budget guard shares the reading with the fleet from there.
        self.on_check: Callable[[], None] | None = None

    @property
    def latest(self) -> ApiUsage | None:
        """The org's API usage from the latest header with a well-formed ``api-usage`` entry.

        Reading it also checks the threshold against that header, if it was not yet.
        """
        self.flush()
        return self.snapshot()

    def snapshot(self) -> ApiUsage | None:
        """``latest`` without checking the threshold.

        It has no side effect (no log, no timer), so any thread may call it: the telemetry
        gauges read it from the metric reader's thread.
        """
        return parse_limit_info(self._header) if self._header else None

    def observe(self, header: str) -> None:
        """Record a response's ``Sforce-Limit-Info`` value (``api-usage=N/M[; …]``)."""
        if not header.startswith("api-usage=") and parse_limit_info(header) is None:
            return  # keep the last usable header
        self._header = header
        self._seen = now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self._interval
            self._check()
        elif self._timer is None:  # check this window's last header when it ends
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a test): flush() or latest checks it
            self._timer = loop.call_later(self._next_check - now, self._on_timer)

    def age(self) -> float:
        """Seconds since the latest usable header was seen (infinite before the first)."""
        return self._clock() - self._seen

    def flush(self) -> None:
        """Check the threshold against the latest header now, if it has not been."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._header != self._checked:
            self._check()

    def _on_timer(self) -> None:
        self._timer = None
        self._next_check = self._clock() + self._interval
        if self._header != self._checked:
            self._check()

    def _check(self) -> None:
        """Log ``sfauth.limits.high`` when usage first reaches ``warn_fraction``."""
        header = self._checked = self._header
        match = _API_USAGE.match(header)
        if match is None:
            usage = parse_limit_info(header)
            if usage is None:
                return
            used, limit = usage.used, usage.limit
        else:
            used, limit = int(match[1]), int(match[2])
        high = limit > 0 and used >= self.warn_fraction * limit
        if high and not self._warned:
            logger.warning(
                "sfauth.limits.high",
                used=used,
                limit=limit,
                fraction=round(used / limit, 3),
            )
        self._warned = high
        if self.on_check is not None:
            self.on_check()
