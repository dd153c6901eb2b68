"""sfauth's structlog logger and the redaction processor it offers to applications.

sfauth never calls ``structlog.configure``: the application decides where events go. Events
are named ``sfauth.<area>.<what>`` with flat fields; durations are seconds rounded to the
millisecond. No event carries a token, an assertion, a key or request headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

__all__ = ["REDACTED", "logger", "redact_secrets", "scrub"]

logger = structlog.get_logger("sfauth")

REDACTED = "<redacted>"

#: Field names whose values are always secret (compared case-insensitively).
_SECRET_KEYS = frozenset(
    {
        "access_token",
        "assertion",
        "authorization",
        "passphrase",
        "password",
        "private_key",
        "refresh_token",
        "session_id",
        "token",
    }
)

#: Values shaped like a Salesforce session id (``00D…!…``), a JWT, a bearer header or a PEM key.
SECRET_PATTERN = re.compile(
    r"00D[0-9A-Za-z]{12,15}![0-9A-Za-z._-]+"
    r"|eyJ[0-9A-Za-z_-]*\.[0-9A-Za-z_-]*\.[0-9A-Za-z_-]*"
    r"|(?i:bearer)\s+[0-9A-Za-z._~+/!=-]+"
    r"|-----BEGIN[A-Z ]*PRIVATE KEY-----.*?(?:-----END[A-Z ]*PRIVATE KEY-----|$)",
    re.DOTALL,
)


def scrub(text: str) -> str:
    """Replace every secret-shaped substring of ``text`` with ``<redacted>``.

    Args:
        text: Any string (a log message, an exception text, a response excerpt).

    Returns:
        ``text`` with session ids, JWTs, ``Bearer …`` values and PEM private keys masked.
    """
    return SECRET_PATTERN.sub(REDACTED, text)


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED
            if isinstance(k, str) and k.lower() in _SECRET_KEYS
            else _redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact(v, depth + 1) for v in value)
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return value


def redact_secrets(
    _logger: Any, _method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor that masks secrets anywhere in an event.

    Put it in your ``structlog.configure(processors=[...])`` chain before the renderer (and
    after ``format_exc_info`` so rendered tracebacks are scrubbed too). It replaces the values
    of keys named ``authorization``, ``access_token``, ``assertion``, ``private_key``,
    ``passphrase`` (and similar), at any nesting depth, and masks session-id-, JWT-, bearer-
    and PEM-shaped substrings in every string value and exception text.

    Args:
        _logger: The wrapped logger (unused).
        _method_name: The log method name (unused).
        event_dict: The event being processed; modified in place.

    Returns:
        The same ``event_dict``, redacted.
    """
    for key, value in event_dict.items():
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(value)
    return event_dict
