"""The signer protocol: RS256 signatures from wherever the private key lives."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

from ..exceptions import SignerError

__all__ = ["KeySigner", "Signer", "is_signer", "sign_with"]


@runtime_checkable
class Signer(Protocol):
    """Signs a JWS signing input with RSASSA-PKCS1-v1_5 and SHA-256 (RS256, RFC 7518 §3.3).

    Pass one as ``private_key`` (``AuthSession(private_key=signer)``) to keep the key in an
    HSM or a cloud KMS: sfauth builds each assertion exactly as it would with a PEM key (RFC
    7523 §3, the same header and claims) and hands only the bytes to sign to ``sign``. The
    precedents are google-auth's ``Signer`` and Azure's client-assertion callable.

    ``sign`` may be a plain method, which sfauth calls in a worker thread (it may block on a
    device or the network), or a coroutine function, which it awaits on the event loop.

    Raising ``SignerError(..., retryable=True)`` from ``sign`` marks a transient failure (a
    busy device, a KMS throttle): the token request's retry policy tries again. Any other
    exception is a permanent ``SignerError``.
    """

    def sign(self, message: bytes) -> bytes | Awaitable[bytes]:
        """Return the RS256 signature of ``message`` (the raw signature bytes, not base64).

        Args:
            message: The JWS signing input, ``BASE64URL(header) || '.' || BASE64URL(claims)``
                (RFC 7515 §5.1), ASCII.
        """
        ...


#: cryptography's private keys: each has a ``sign`` method of its own, none is a ``Signer``.
KEY_OBJECTS = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    dsa.DSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


def is_signer(value: object) -> bool:
    """Whether ``value`` is a ``Signer``.

    A loaded private key (``RSAPrivateKey``, or an EC, DSA or EdDSA one) is not one, although
    it has a ``sign`` method of its own.
    """
    return isinstance(value, Signer) and not isinstance(value, KEY_OBJECTS)


async def sign_with(signer: Signer, message: bytes) -> bytes:
    """Sign ``message`` with ``signer``: a coroutine is awaited, a plain method runs in a thread.

    Raises:
        SignerError: The signer failed (``retryable`` as the signer said; any other
            exception is permanent), or returned something other than non-empty bytes. The
            message names the signer's class and the failure's class, never key material.
    """
    name = type(signer).__name__
    try:
        if inspect.iscoroutinefunction(signer.sign):
            signature = await signer.sign(message)
        else:
            signature = await asyncio.to_thread(signer.sign, message)
            if inspect.isawaitable(signature):  # a callable object returning a coroutine
                signature = await signature
    except SignerError:
        raise
    except Exception as exc:
        raise SignerError(
            f"{name}.sign failed: {type(exc).__name__}: {str(exc)[:200]}", retryable=False
        ) from None
    if not isinstance(signature, bytes | bytearray) or not signature:
        raise SignerError(
            f"{name}.sign must return the signature as non-empty bytes; "
            f"got {type(signature).__name__}",
            retryable=False,
        )
    return bytes(signature)


class KeySigner:
    """A ``Signer`` over an ``RSAPrivateKey`` in this process (the reference implementation).

    Useful to test signer code paths, and as the model for your own: the signature is
    ``private_key.sign(message, PKCS1v15(), SHA256())``, identical to what sfauth computes
    from a PEM key (RSASSA-PKCS1-v1_5 is deterministic).

    Args:
        private_key: An RSA private key (``cryptography``).
    """

    __slots__ = ("_key",)

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise TypeError(
                f"private_key must be an RSAPrivateKey; got {type(private_key).__name__}"
            )
        self._key = private_key

    def sign(self, message: bytes) -> bytes:
        """RS256 signature of ``message``."""
        return self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def public_key(self) -> rsa.RSAPublicKey:
        """The public half (what the connected app's certificate must hold)."""
        return self._key.public_key()

    def __repr__(self) -> str:
        return f"KeySigner(key=<redacted {self._key.key_size}-bit RSA>)"
