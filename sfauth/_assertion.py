"""JWT bearer assertions: claims and RS256 signing, no I/O.

Claims follow RFC 7523 section 3 as profiled by Salesforce ("OAuth 2.0 JWT Bearer Flow for
Server-to-Server Integration"): ``iss`` is the connected app's consumer key, ``sub`` the
username, ``aud`` the login host (or site URL) and ``exp`` an integer number of seconds since
the epoch, at most three minutes ahead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import Algorithm

from .exceptions import ConfigurationError
from .signers._base import Signer, is_signer, sign_with

__all__ = ["MAX_ASSERTION_LIFETIME", "AssertionSigner"]

#: Salesforce refuses assertions whose ``exp`` is more than three minutes ahead.
MAX_ASSERTION_LIFETIME = 180.0

_HEADERS = {"typ": "JWT"}


class _SignedElsewhere(Algorithm):
    """RS256 whose signature comes from the "key": a callable given the signing input.

    PyJWT builds the JWS (header, claims, base64url, RFC 7515 §7.1) exactly as for a PEM key;
    only the signature is computed elsewhere (a ``Signer``).
    """

    def prepare_key(self, key: Any) -> Any:
        return key

    def sign(self, msg: bytes, key: Any) -> bytes:
        signature: bytes = key(msg)
        return signature

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        raise NotImplementedError("sfauth only signs assertions")

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        raise NotImplementedError

    @staticmethod
    def from_jwk(jwk: Any) -> Any:
        raise NotImplementedError


_ELSEWHERE = jwt.PyJWS(algorithms=[])
_ELSEWHERE.register_algorithm("RS256", _SignedElsewhere())


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
    """Mints RS256 assertions with a key parsed once, or through a ``Signer``.

    Args:
        client_id: The connected app's consumer key (``iss``).
        username: The Salesforce username (``sub``).
        audience: The ``aud`` claim.
        private_key: An already loaded RSA private key (see ``load_private_key``), or a
            ``Signer`` (``sfauth.signers``) that signs where the key lives.
        lifetime: Seconds until ``exp``, ``0 < lifetime <= 180`` (Salesforce's maximum).
        clock: Returns seconds since the epoch; ``time.time`` unless testing.

    Raises:
        ConfigurationError: ``lifetime`` is out of range.
    """

    __slots__ = ("_audience", "_claims", "_clock", "_key", "_lifetime", "_signer")

    def __init__(
        self,
        *,
        client_id: str,
        username: str,
        audience: str,
        private_key: rsa.RSAPrivateKey | Signer,
        lifetime: float = MAX_ASSERTION_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_lifetime(lifetime)
        self._signer: Signer | None = None
        self._key: rsa.RSAPrivateKey | None = None
        if isinstance(private_key, rsa.RSAPrivateKey):
            self._key = private_key
        elif is_signer(private_key):
            self._signer = private_key
        else:
            raise ConfigurationError(
                "private_key must be an RSAPrivateKey or a Signer; got "
                f"{type(private_key).__name__}"
            )
        self._lifetime = int(lifetime) or 1
        self._audience = audience
        self._clock = clock
        self._claims: dict[str, str | int] = {"iss": client_id, "sub": username, "aud": audience}

    @property
    def audience(self) -> str:
        """The ``aud`` claim this signer puts in every assertion."""
        return self._audience

    def mint(self) -> str:
        """Sign a fresh assertion whose ``exp`` is now + lifetime, with an in-memory key.

        Returns:
            The compact JWS (``header.claims.signature``). It is a credential: do not log it.

        Raises:
            ConfigurationError: The key is a ``Signer``: use ``await assertion()``.
        """
        if self._key is None:
            raise ConfigurationError("this key is a Signer: mint with `await assertion()`")
        claims = dict(self._claims)
        claims["exp"] = int(self._clock()) + self._lifetime
        return jwt.encode(claims, self._key, algorithm="RS256", headers=_HEADERS)

    async def assertion(self) -> str:
        """A fresh assertion, signed by the key or by the ``Signer``.

        With a signer, PyJWT builds the same header and claims as ``mint`` would and the
        signer signs the JWS signing input (a blocking signer in a worker thread).

        Raises:
            SignerError: The signer failed (``retryable`` when it said so).
        """
        signer = self._signer
        if signer is None:
            return self.mint()
        claims = dict(self._claims)
        claims["exp"] = int(self._clock()) + self._lifetime
        payload = json.dumps(claims, separators=(",", ":")).encode()  # as jwt.encode does
        captured: list[bytes] = []

        def capture(message: bytes) -> bytes:
            captured.append(message)
            return b"pending"

        # PyJWT types ``key`` for its own algorithms; ours takes the signing callable.
        _ELSEWHERE.encode(payload, key=cast(Any, capture), algorithm="RS256", headers=_HEADERS)
        signature = await sign_with(signer, captured[0])

        def signed(message: bytes) -> bytes:
            return signature

        return _ELSEWHERE.encode(
            payload, key=cast(Any, signed), algorithm="RS256", headers=_HEADERS
        )

    def __repr__(self) -> str:
        key = f"signer={type(self._signer).__name__}" if self._signer else "key=<redacted>"
        return f"AssertionSigner(iss={self._claims['iss']!r}, aud={self._audience!r}, {key})"
