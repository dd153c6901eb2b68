"""Parsing of ``Sforce-Limit-Info`` and tracking of the org's API usage (pure, no I/O).

Salesforce REST API Developer Guide, "Limit Info Header": every REST response except the
versions list carries ``Sforce-Limit-Info: api-usage=N/M``, sometimes followed by further
``name=N/M`` entries (``per-app-api-usage=17/250(appName=...)``, ``api-bursts=...``).
"""

from __future__ import annotations

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

    Per response it stores the raw header and looks at the clock; the ``api-usage=N/M``
    numbers are read at most once every ``check_interval`` seconds (and on the first
    response), so a high-throughput session does not parse every response, and the full parse
    happens only when ``latest`` is read. The header itself is a snapshot Salesforce updates
    asynchronously, so reading it once a second loses nothing.

    Args:
        warn_fraction: Usage fraction (``0 < x <= 1``) at which the warning is logged.
        check_interval: Seconds between two threshold checks (default 1).
        clock: Monotonic seconds, ``time.monotonic`` unless testing.
    """

    __slots__ = (
        "_clock",
        "_header",
        "_interval",
        "_next_check",
        "_usable",
        "_warned",
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
        self._usable = ""  # the latest checked header with a well-formed api-usage entry
        self._warned = False

    @property
    def latest(self) -> ApiUsage | None:
        """The org's API usage as the latest ``Sforce-Limit-Info`` header shows it.

        If that header has no well-formed ``api-usage`` entry, the latest checked header that
        had one; ``None`` if none had.
        """
        usage = parse_limit_info(self._header) if self._header else None
        if usage is None and self._usable:
            usage = parse_limit_info(self._usable)
        return usage

    def observe(self, header: str) -> None:
        """Record a response's ``Sforce-Limit-Info`` value (``api-usage=N/M[; …]``)."""
        self._header = header
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self._interval
            self._check(header)

    def _check(self, header: str) -> None:
        """Log ``sfauth.limits.high`` when usage first reaches ``warn_fraction``."""
        match = _API_USAGE.match(header)
        if match is None:
            usage = parse_limit_info(header)
            if usage is None:
                return
            used, limit = usage.used, usage.limit
        else:
            used, limit = int(match[1]), int(match[2])
        self._usable = header
        high = limit > 0 and used >= self.warn_fraction * limit
        if high and not self._warned:
            logger.warning(
                "sfauth.limits.high",
                used=used,
                limit=limit,
                fraction=round(used / limit, 3),
            )
        self._warned = high
