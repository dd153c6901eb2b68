"""Parsing of ``Sforce-Limit-Info`` and tracking of the org's API usage (pure, no I/O).

Salesforce REST API Developer Guide, "Limit Info Header": every REST response except the
versions list carries ``Sforce-Limit-Info: api-usage=N/M``, sometimes followed by further
``name=N/M`` entries (``per-app-api-usage=17/250(appName=...)``, ``api-bursts=...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._logging import logger

__all__ = ["ApiUsage", "UsageTracker", "parse_limit_info"]

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
    """Keeps the latest ``ApiUsage`` and logs ``sfauth.limits.high`` once per crossing.

    Args:
        warn_fraction: Usage fraction (``0 < x <= 1``) at which the warning is logged.
    """

    __slots__ = ("_header", "_warned", "latest", "warn_fraction")

    def __init__(self, *, warn_fraction: float) -> None:
        self.warn_fraction = warn_fraction
        self.latest: ApiUsage | None = None
        self._header = ""
        self._warned = False

    def observe(self, header: str) -> None:
        """Record a response's ``Sforce-Limit-Info`` value (cheap when unchanged)."""
        if header == self._header:
            return
        self._header = header
        usage = parse_limit_info(header)
        if usage is None:
            return
        self.latest = usage
        high = usage.fraction >= self.warn_fraction
        if high and not self._warned:
            logger.warning(
                "sfauth.limits.high",
                used=usage.used,
                limit=usage.limit,
                fraction=round(usage.fraction, 3),
            )
        self._warned = high
