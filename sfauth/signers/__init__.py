"""Signers: assertions signed where the private key lives (an HSM, a cloud KMS), not in memory.

``AuthSession(private_key=signer)`` takes any object with ``sign(message) -> bytes`` (plain or
``async``); see ``Signer``. ``KeySigner`` is the in-process reference implementation,
``Pkcs11Signer`` signs inside a PKCS#11 token (the ``pkcs11`` extra: python-pkcs11).
"""

from ._base import KeySigner, Signer
from ._pkcs11 import Pkcs11Signer

__all__ = ["KeySigner", "Pkcs11Signer", "Signer"]
