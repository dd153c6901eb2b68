"""Verification of JWT Bearer assertions, with Salesforce's token-endpoint errors.

Everything a client can post ends in a 200 or in one of Salesforce's documented 400 bodies
(design brief section 2, "Token endpoint errors"): a malformed form or assertion is
``unsupported_grant_type`` or ``invalid_grant``/``invalid assertion``, never a server error.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Collection, Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from cryptography.hazmat.primitives.asymmetric import rsa

from sfauth.testing._keys import ParsedJwt, verify_rs256
from sfauth.testing._state import User

__all__ = [
    "JWT_BEARER",
    "LOGIN_AUDIENCE",
    "TEST_AUDIENCE",
    "TokenRejected",
    "check_assertion",
    "exp_seconds",
    "parse_form",
    "read_token_form",
]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LOGIN_AUDIENCE = "https://login.salesforce.com"
TEST_AUDIENCE = "https://test.salesforce.com"
#: Largest ``exp`` accepted: the emulator reads it as a Java ``long`` (Salesforce runs on Java).
_EXP_MAX = 2**63 - 1
_EXP_DIGITS = re.compile(r"[0-9]{1,19}")
_FORM_TYPES = frozenset({"", "application/x-www-form-urlencoded"})


def exp_seconds(value: object) -> float | None:
    """Read an ``exp`` claim the way Salesforce does.

    Salesforce documents ``exp`` as an integer at most 3 minutes ahead, yet logs in clients that
    send it as a string of digits (simple-salesforce's ``f"{ts:.0f}"``) or in milliseconds (the
    Salesforce CLI), so the emulator accepts those too (design brief section 5): an integer or
    finite float within the range of a Java ``long``, or a JSON string of 1-19 ASCII digits.

    Args:
        value: The decoded ``exp`` claim (``None`` when absent).

    Returns:
        Seconds since the epoch, or ``None`` when ``value`` is missing, a boolean, ``null``, a
        string that is not 1-19 ASCII digits, a non-finite number or outside the ``long`` range
        (Salesforce answers those ``invalid assertion``).
    """
    if isinstance(value, str) and _EXP_DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if -_EXP_MAX - 1 <= value <= _EXP_MAX else None
    if isinstance(value, float) and math.isfinite(value) and abs(value) < 2.0**63:
        return value
    return None


def parse_form(body: bytes) -> dict[str, str]:
    """Decode an ``application/x-www-form-urlencoded`` token request body; never raises.

    The body is read as UTF-8 whatever ``charset`` the request names: a valid request is ASCII,
    and undecodable bytes become U+FFFD, which no grant type or assertion contains, so the
    checks refuse them with Salesforce's bodies. The first value of a repeated field wins (as
    with a servlet's ``getParameter``).

    Args:
        body: The raw request body.

    Returns:
        Field name → first value.
    """
    text = body.decode("utf-8", errors="replace").rstrip()
    form: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(text, keep_blank_values=True, errors="replace"):
        form.setdefault(key, value)
    return form


async def read_token_form(request: web.Request) -> dict[str, str]:
    """Read the fields of a token request; a body that cannot be read as a form has none.

    URL-encoded bodies (or an empty ``Content-Type``) go through :func:`parse_form`;
    ``multipart/form-data`` is read by aiohttp. Any other content type (e.g. JSON), a multipart
    body that does not parse and a body whose ``Content-Encoding`` does not decode have no
    fields: the checks then answer ``unsupported_grant_type``, Salesforce's answer to a
    malformed body.

    Args:
        request: The token request.

    Returns:
        Field name → first text value.

    Raises:
        aiohttp.web.HTTPRequestEntityTooLarge: If the body exceeds the server's limit.
    """
    if request.content_type in _FORM_TYPES:
        try:
            return parse_form(await request.read())
        except web.RequestPayloadError:  # e.g. "Content-Encoding: gzip" on a body that is not
            return {}
    if request.content_type != "multipart/form-data":
        return {}
    try:
        posted = await request.post()
    except _UNREADABLE_MULTIPART:
        return {}
    form: dict[str, str] = {}
    for key, value in posted.items():
        if isinstance(value, str):
            form.setdefault(key, value)
        elif isinstance(value, web.FileField):
            value.file.close()
    return form


#: What aiohttp raises for a malformed multipart body: no boundary or part name, an unknown
#: charset (LookupError) or Content-Transfer-Encoding (RuntimeError), an undecodable text part,
#: a broken part header (HttpProcessingError), a Content-Encoding that does not decode, and a body
#: cut short (AssertionError before aiohttp 3.13.3).
_UNREADABLE_MULTIPART = (
    AssertionError,
    ValueError,
    LookupError,
    RuntimeError,
    HttpProcessingError,
    web.RequestPayloadError,
)


class TokenRejected(Exception):
    """The token endpoint refuses the request (HTTP 400 ``{error, error_description}``).

    Args:
        error: OAuth ``error`` code, e.g. ``invalid_grant``.
        description: Salesforce's ``error_description``.
    """

    def __init__(self, error: str, description: str) -> None:
        super().__init__(error)
        self.error = error
        self.description = description


def check_assertion(
    grant_type: str | None,
    parsed: ParsedJwt | None,
    *,
    apps: Mapping[str, rsa.RSAPublicKey],
    users: Mapping[str, User],
    audiences: Collection[str],
    now: float,
) -> tuple[User, str]:
    """Apply Salesforce's checks to a JWT Bearer token request, in Salesforce's order.

    Like Salesforce, ``exp`` may be an integer, a float or a string of digits (simple-salesforce
    sends ``"1700000180"``) and may lie far ahead (the Salesforce CLI sends milliseconds); only
    an ``exp`` in the past is refused as expired (see :func:`exp_seconds`). A ``typ`` header
    and claims beyond ``iss``/``sub``/``aud``/``exp`` are ignored.

    Args:
        grant_type: The posted ``grant_type`` (``None`` when absent).
        parsed: The posted assertion, split and decoded (``None`` when absent).
        apps: Consumer key → certificate public key of the registered connected apps.
        users: Username → registered user.
        audiences: Accepted ``aud`` values.
        now: Current wall-clock time, seconds since the epoch.

    Returns:
        ``(user, client_id)`` of a valid assertion.

    Raises:
        TokenRejected: With Salesforce's ``error``/``error_description`` for the first failing
            check.
    """
    if grant_type != JWT_BEARER:
        raise TokenRejected("unsupported_grant_type", "grant type not supported")
    if parsed is None or not parsed.valid or parsed.header.get("alg") != "RS256":
        raise TokenRejected("invalid_grant", "invalid assertion")
    claims = parsed.claims
    issuer = claims.get("iss")
    public_key = apps.get(issuer) if isinstance(issuer, str) else None
    if public_key is None or not isinstance(issuer, str):
        raise TokenRejected("invalid_client_id", "client identifier invalid")
    if not verify_rs256(parsed, public_key):
        raise TokenRejected("invalid_grant", "invalid assertion")
    audience = claims.get("aud")
    if not isinstance(audience, str) or audience not in audiences:
        raise TokenRejected("invalid_grant", "audience is invalid")
    expires = exp_seconds(claims.get("exp"))
    if expires is None:
        raise TokenRejected("invalid_grant", "invalid assertion")
    if expires < now:
        raise TokenRejected("invalid_grant", "expired authorization code")
    subject = claims.get("sub")
    user = users.get(subject) if isinstance(subject, str) else None
    if user is None or issuer not in user.approved:
        raise TokenRejected("invalid_grant", "user hasn't approved this consumer")
    if not user.active:
        raise TokenRejected("invalid_grant", "inactive user")
    return user, issuer
