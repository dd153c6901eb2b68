"""``Pkcs11Signer``: RS256 signatures from a PKCS#11 token (an HSM, SoftHSM2, a smart card).

Built on python-pkcs11 (the ``pkcs11`` extra), imported when the first signer is made. The
key never leaves the token: sfauth hands it the JWS signing input and gets the signature
back (mechanism ``CKM_SHA256_RSA_PKCS``: RSASSA-PKCS1-v1_5 with SHA-256, PKCS#11 v2.40
section 2.1.8, which is RS256 of RFC 7518 section 3.3).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from ..exceptions import ConfigurationError, SignerError

__all__ = ["Pkcs11Signer"]

#: python-pkcs11 errors that a new session may cure (the device was busy, reset or
#: re-plugged); every other PKCS#11 error is permanent (a wrong PIN, a missing key).
_TRANSIENT = (
    "DeviceError",
    "DeviceMemory",
    "DeviceRemoved",
    "FunctionFailed",
    "GeneralError",
    "HostMemory",
    "SessionClosed",
    "SessionHandleInvalid",
    "TokenNotPresent",
    "TokenNotRecognised",
)
#: What a permanent failure tells the operator to check.
_HINTS = {
    "PinIncorrect": "the PIN is wrong",
    "PinLocked": "the PIN is locked: an officer must unlock the token",
    "PinExpired": "the PIN has expired",
    "NoSuchToken": "no token has this label in the library's slots",
    "NoSuchKey": "the token has no private key with this label",
    "MultipleObjectsReturned": "several private keys have this label",
    "KeyTypeInconsistent": "the key is not an RSA key",
    "MechanismInvalid": "the token does not offer CKM_SHA256_RSA_PKCS",
}


class Pkcs11Signer:
    """Signs assertions with an RSA private key that stays inside a PKCS#11 token.

    Pass it as ``private_key``: ``AuthSession(private_key=Pkcs11Signer(...), ...)``. It logs
    in to the token on first use and keeps that one session; signing runs in sfauth's worker
    thread, one signature at a time (PKCS#11 sessions are not meant for concurrent use).
    PKCS#11 logs in per process, not per session: signers of one process that share a token
    share its login while any of them holds a session.

    Args:
        library: Path of the token's PKCS#11 module (``libsofthsm2.so``, a vendor's
            ``.so``), or ``None`` to read ``$PKCS11_MODULE``.
        token_label: The token's label (``CKA_LABEL`` of the token, as set at init time).
        key_label: The private key's ``CKA_LABEL``.
        pin: The user PIN. It is used to log in and kept only inside this object (never in
            its repr or in any error).

    Raises:
        ConfigurationError: A missing library path or an empty label or PIN.
        ImportError: python-pkcs11 is not installed (the ``pkcs11`` extra).
    """

    def __init__(
        self,
        library: str | os.PathLike[str] | None = None,
        *,
        token_label: str,
        key_label: str,
        pin: str,
    ) -> None:
        try:
            import pkcs11
        except ImportError:
            raise ImportError(
                "Pkcs11Signer needs python-pkcs11: pip install '/path/to/sfauth[pkcs11]'"
            ) from None
        path = os.fspath(library) if library is not None else os.environ.get("PKCS11_MODULE")
        if not path:
            raise ConfigurationError(
                "Pkcs11Signer needs the PKCS#11 module's path: pass library=... or set "
                "PKCS11_MODULE (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"
            )
        for name, value in (("token_label", token_label), ("key_label", key_label), ("pin", pin)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"Pkcs11Signer: {name} must be a non-empty str")
        self._pkcs11: Any = pkcs11
        self._library = path
        self._token_label = token_label
        self._key_label = key_label
        self._pin = pin
        self._lock = threading.Lock()
        self._session: Any = None
        self._key: Any = None

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (the JWS signing input) with ``CKM_SHA256_RSA_PKCS``.

        Blocking: sfauth calls it from a worker thread.

        Raises:
            SignerError: ``retryable`` for a device or session failure (the next attempt
                opens a new session), permanent for a wrong PIN, a missing token or key.
        """
        with self._lock:
            try:
                key = self._private_key()
                signature: bytes = key.sign(
                    message, mechanism=self._pkcs11.Mechanism.SHA256_RSA_PKCS
                )
                return signature
            except self._pkcs11.PKCS11Error as exc:
                raise self._error(exc) from None

    def public_key(self) -> rsa.RSAPublicKey:
        """The RSA public key of the token's key pair (for the connected app's certificate).

        Read from the public-key object with the same label.

        Raises:
            SignerError: The token or the public key cannot be read.
        """
        pkcs11 = self._pkcs11
        with self._lock:
            try:
                self._private_key()
                public = self._session.get_key(
                    object_class=pkcs11.ObjectClass.PUBLIC_KEY, label=self._key_label
                )
                modulus = int.from_bytes(public[pkcs11.Attribute.MODULUS], "big")
                exponent = int.from_bytes(public[pkcs11.Attribute.PUBLIC_EXPONENT], "big")
            except pkcs11.PKCS11Error as exc:
                raise self._error(exc) from None
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()

    def close(self) -> None:
        """Log out and close the token session (a later ``sign`` opens a new one)."""
        with self._lock:
            self._drop()

    def _private_key(self) -> Any:
        """The private key object, logging in to the token first if needed."""
        if self._key is None:
            pkcs11 = self._pkcs11
            token = pkcs11.lib(self._library).get_token(token_label=self._token_label)
            try:
                self._session = token.open(user_pin=self._pin)
            except pkcs11.exceptions.UserAlreadyLoggedIn:
                # PKCS#11 logs in per process: another open session of this process (another
                # signer for this token) already did, and this session shares that login.
                self._session = token.open()
            self._key = self._session.get_key(
                object_class=pkcs11.ObjectClass.PRIVATE_KEY,
                key_type=pkcs11.KeyType.RSA,
                label=self._key_label,
            )
        return self._key

    def _drop(self) -> None:
        session, self._session, self._key = self._session, None, None
        if session is not None:
            with contextlib.suppress(self._pkcs11.PKCS11Error):  # the device may be gone
                session.close()

    def _error(self, exc: Exception) -> SignerError:
        name = type(exc).__name__
        transient = name in _TRANSIENT
        if transient:
            self._drop()  # the next attempt logs in again
        hint = _HINTS.get(name, "see the token's documentation for this PKCS#11 error")
        where = f"token {self._token_label!r}, key {self._key_label!r}"
        return SignerError(
            f"PKCS#11 signing failed ({where}): {name}: {hint}", retryable=transient
        )

    def __repr__(self) -> str:
        return (
            f"Pkcs11Signer(library={self._library!r}, token_label={self._token_label!r}, "
            f"key_label={self._key_label!r}, pin=<redacted>)"
        )
