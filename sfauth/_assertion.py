"""JWT bearer assertions: claims and RS256 signing, no I/O.

Claims follow RFC 7523 section 3 as profiled by Salesforce ("OAuth 2.0 JWT Bearer Flow for
Server-to-Server Integration"): ``iss`` is the connected app's consumer key, ``sub`` the
username, ``aud`` the login host (or site URL) and ``exp`` an integer number of seconds since
the epoch, at most three minutes ahead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .exceptions import ConfigurationError

__all__ = ["MAX_ASSERTION_LIFETIME", "AssertionSigner"]

#: Salesforce refuses assertions whose ``exp`` is more than three minutes ahead.
MAX_ASSERTION_LIFETIME = 180.0

_HEADERS = {"typ": "JWT"}


def check_lifetime(lifetime: object) -> None:
    """Check an ``assertion_lifetime``: seconds, ``0 < x <= 180``.

    Salesforce ("OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration") refuses an
    ``exp`` more than 3 minutes ahead.

    Raises:
        ConfigurationError: It is not such a number.
    """
    if (
        not isinstance(lifetime, int | float)
        or isinstance(lifetime, bool)
        or not 0 < lifetime <= MAX_ASSERTION_LIFETIME
    ):
        raise ConfigurationError(
            f"assertion_lifetime must be > 0 and <= {MAX_ASSERTION_LIFETIME:g} seconds "
            f"(Salesforce refuses an exp more than 3 minutes ahead); got {lifetime!r}"
        )


class AssertionSigner:
    """Mints RS256 assertions with a key parsed once.

    Args:
        client_id: The connected app's consumer key (``iss``).
        username: The Salesforce username (``sub``).
        audience: The ``aud`` claim.
        private_key: An already loaded RSA private key (see ``load_private_key``).
        lifetime: Seconds until ``exp``, ``0 < lifetime <= 180`` (Salesforce's maximum).
        clock: Returns seconds since the epoch; ``time.time`` unless testing.

    Raises:
        ConfigurationError: ``lifetime`` is out of range.
    """

    __slots__ = ("_audience", "_claims", "_clock", "_key", "_lifetime")

    def __init__(
        self,
        *,
        client_id: str,
        username: str,
        audience: str,
        private_key: rsa.RSAPrivateKey,
        lifetime: float = MAX_ASSERTION_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_lifetime(lifetime)
        self._key = private_key
        self._lifetime = int(lifetime) or 1
        self._audience = audience
        self._clock = clock
        self._claims: dict[str, str | int] = {"iss": client_id, "sub": username, "aud": audience}

    @property
    def audience(self) -> str:
        """The ``aud`` claim this signer puts in every assertion."""
        return self._audience

    def mint(self) -> str:
        """Sign a fresh assertion whose ``exp`` is now + lifetime.

        Returns:
            The compact JWS (``header.claims.signature``). It is a credential: do not log it.
        """
        claims = dict(self._claims)
        claims["exp"] = int(self._clock()) + self._lifetime
        return jwt.encode(claims, self._key, algorithm="RS256", headers=_HEADERS)

    def __repr__(self) -> str:
        return (
            f"AssertionSigner(iss={self._claims['iss']!r}, aud={self._audience!r}, key=<redacted>)"
        )
