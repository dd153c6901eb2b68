"""sfauth's logger and the redaction processor it offers to applications.

sfauth never calls ``structlog.configure``: the application decides where events go. When the
application has configured structlog, events go through it; when it has not, they go to the
standard library logger ``"sfauth"`` instead of structlog's print-everything default, so an
application that only uses ``logging`` sees sfauth's warnings and errors and nothing else
unless it asks. Events are named ``sfauth.<area>.<what>`` with flat fields; durations are
seconds rounded to the millisecond. No event carries a token, an assertion, a key or request
headers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import structlog

__all__ = ["REDACTED", "logger", "redact_secrets", "scrub"]

_structlog_logger = structlog.get_logger("sfauth")
_stdlib_logger = logging.getLogger("sfauth")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _Logger:
    """Emit through structlog when the application configured it, else through ``logging``."""

    __slots__ = ("_context",)

    def __init__(self, context: dict[str, Any] | None = None) -> None:
        self._context = context or {}

    def bind(self, **fields: Any) -> _Logger:
        """Return a logger that adds ``fields`` to every event."""
        return _Logger({**self._context, **fields})

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if self._context:
            fields = {**self._context, **fields}
        if structlog.is_configured():
            getattr(_structlog_logger, level)(event, **fields)
            return
        number = _LEVELS[level]
        if _stdlib_logger.isEnabledFor(number):
            redacted = _redact(fields)
            text = " ".join(f"{key}={value!r}" for key, value in redacted.items())
            _stdlib_logger.log(number, "%s %s", event, text)

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at debug level."""
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at info level."""
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` at warning level."""
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` at error level."""
        self._emit("error", event, fields)


logger = _Logger()

REDACTED = "<redacted>"

#: Field names whose values are always secret (compared case-insensitively, ``-`` as ``_``).
_SECRET_KEYS = frozenset(
    {
        "access_token",
        "assertion",
        "authorization",
        "cookie",
        "passphrase",
        "password",
        "private_key",
        "proxy_authorization",
        "refresh_token",
        "session_id",
        "set_cookie",
        "sid",
        "token",
    }
)

#: Values shaped like a Salesforce session id (``00D…!…``, also URL-encoded), a JWT, a bearer
#: credential or a PEM private key. A bearer credential (RFC 6750 section 2.1 ``b64token``) is
#: told from prose by its shape: 16 or more token characters with a digit, or 32 or more; so
#: "Bearer 6f1c…" is masked and "live bearer tokens in clear" is not.
#: Scrubbing is linear in the text's length, whatever the text: no unbounded run backtracks
#: (possessive quantifiers; a PEM body stops at the next armour line), and a JWT starts only at
#: the start of a run of its characters (else ``eyJeyJeyJ…`` is quadratic) — after a
#: non-base64url character, an escape such as ``\n`` or a percent-encoding such as ``%3D``.
SECRET_PATTERN = re.compile(
    r"00D[0-9A-Za-z]{12,15}(?:!|%21)[0-9A-Za-z._%-]++"
    r"|(?:(?<![0-9A-Za-z_-])|(?<=\\[nrtbf])|(?<=%[0-9A-Fa-f]{2}))"
    r"eyJ[0-9A-Za-z_-]*+\.[0-9A-Za-z_-]*+\.[0-9A-Za-z_-]*+"
    r"|(?i:bearer)\s++"
    r"(?:(?=[A-Za-z._~+/!%=-]*+[0-9])[0-9A-Za-z._~+/!%=-]{16,}+|[0-9A-Za-z._~+/!%=-]{32,}+)"
    r"|-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----(?:(?!-----(?:END|BEGIN)).)*+"
    r"(?:-----END[A-Z ]{0,40}PRIVATE KEY-----)?",
    re.DOTALL,
)

_MAX_DEPTH = 10


def scrub(text: str) -> str:
    """Replace every secret-shaped substring of ``text`` with ``<redacted>``.

    Args:
        text: Any string (a log message, an exception text, a response excerpt).

    Returns:
        ``text`` with session ids, JWTs, ``Bearer …`` values and PEM private keys masked.
    """
    return SECRET_PATTERN.sub(REDACTED, text)


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in _SECRET_KEYS


def _redact(value: Any, depth: int = 0) -> Any:
    """Return ``value`` with secrets masked; containers are copied, never mutated."""
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= _MAX_DEPTH:
        return REDACTED  # too deep to inspect: do not pass it through unread
    if isinstance(value, bytes | bytearray | memoryview):
        return scrub(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {
            k: REDACTED if _is_secret_key(k) else _redact(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    if isinstance(value, list | tuple | set | frozenset):
        # NamedTuples and other tuple subclasses become plain lists (their constructors differ).
        return [_redact(v, depth + 1) for v in value]
    if isinstance(value, Iterable) and not hasattr(value, "read"):
        try:
            return [_redact(v, depth + 1) for v in list(value)[:1000]]
        except Exception:
            return REDACTED
    return scrub(repr(value)) if _looks_secret(value) else value


def _looks_secret(value: object) -> bool:
    try:
        return SECRET_PATTERN.search(repr(value)) is not None
    except Exception:
        return True


def redact_secrets(
    _logger: Any, _method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor that masks secrets anywhere in an event.

    Put it in your ``structlog.configure(processors=[...])`` chain before the renderer (and
    after ``format_exc_info`` so rendered tracebacks are scrubbed too). It replaces the values
    of keys named ``authorization``, ``proxy-authorization``, ``cookie``, ``access_token``,
    ``assertion``, ``private_key``, ``passphrase`` (and similar), at any nesting depth, and
    masks session-id-, JWT-, bearer- and PEM-shaped substrings in every string, bytes value
    and exception text. Objects nested deeper than ten levels are replaced whole.

    Args:
        _logger: The wrapped logger (unused).
        _method_name: The log method name (unused).
        event_dict: The event being processed; modified in place.

    Returns:
        The same ``event_dict``, redacted.
    """
    for key, value in event_dict.items():
        event_dict[key] = REDACTED if _is_secret_key(key) else _redact(value)
    return event_dict
