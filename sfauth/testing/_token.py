"""Verification of JWT Bearer assertions, with Salesforce's token-endpoint errors."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from cryptography.hazmat.primitives.asymmetric import rsa

from sfauth.testing._keys import ParsedJwt, verify_rs256
from sfauth.testing._state import User

__all__ = [
    "JWT_BEARER",
    "LOGIN_AUDIENCE",
    "MAX_EXP_AHEAD",
    "TEST_AUDIENCE",
    "TokenRejected",
    "check_assertion",
]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LOGIN_AUDIENCE = "https://login.salesforce.com"
TEST_AUDIENCE = "https://test.salesforce.com"
#: ``exp`` may be at most this many seconds ahead: Salesforce's 3 minutes plus 5 s of leeway.
MAX_EXP_AHEAD = 185.0


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
    expires = claims.get("exp")
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise TokenRejected("invalid_grant", "invalid assertion")
    if expires < now:
        raise TokenRejected("invalid_grant", "expired authorization code")
    if expires > now + MAX_EXP_AHEAD:
        raise TokenRejected("invalid_grant", "invalid assertion")
    subject = claims.get("sub")
    user = users.get(subject) if isinstance(subject, str) else None
    if user is None or issuer not in user.approved:
        raise TokenRejected("invalid_grant", "user hasn't approved this consumer")
    if not user.active:
        raise TokenRejected("invalid_grant", "inactive user")
    return user, issuer
