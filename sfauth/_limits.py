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

    Cheap per response: it stores the raw header and reads only the ``api-usage=N/M`` numbers
    to check the threshold; the full parse happens when ``latest`` is read.

    Args:
        warn_fraction: Usage fraction (``0 < x <= 1``) at which the warning is logged.
    """

    __slots__ = ("_header", "_warned", "warn_fraction")

    def __init__(self, *, warn_fraction: float) -> None:
        self.warn_fraction = warn_fraction
        self._header = ""
        self._warned = False

    @property
    def latest(self) -> ApiUsage | None:
        """The usage from the latest header that had a well-formed ``api-usage`` entry."""
        return parse_limit_info(self._header) if self._header else None

    def observe(self, header: str) -> None:
        """Record a response's ``Sforce-Limit-Info`` value."""
        match = _API_USAGE.match(header)
        if match is None:
            usage = parse_limit_info(header)
            if usage is None:
                return  # keep the last usable value
            used, limit = usage.used, usage.limit
        else:
            used, limit = int(match[1]), int(match[2])
        self._header = header
        high = limit > 0 and used >= self.warn_fraction * limit
        if high and not self._warned:
            logger.warning(
                "sfauth.limits.high",
                used=used,
                limit=limit,
                fraction=round(used / limit, 3),
            )
        self._warned = high
