"""Loading and validating the connected app's RSA private key.

The key is parsed once, when a session is configured; signing later reuses the parsed
object (parsing a PEM costs milliseconds, signing with a loaded key a fraction of that).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ._logging import logger
from .exceptions import PrivateKeyError
from .signers._base import KEY_OBJECTS, Signer, is_signer

__all__ = ["MIN_RSA_BITS", "PrivateKeyInput", "load_private_key", "load_signing_key"]

#: Salesforce and NIST both refuse RSA keys shorter than this for new signatures.
MIN_RSA_BITS = 2048

PrivateKeyInput: TypeAlias = "str | bytes | os.PathLike[str] | rsa.RSAPrivateKey | Signer"

_PEM_BEGIN = b"-----BEGIN"
_MAX_KEY_FILE_BYTES = 1 << 20


def load_signing_key(
    private_key: PrivateKeyInput, passphrase: str | bytes | None = None
) -> rsa.RSAPrivateKey | Signer:
    """A ``Signer`` as it is, anything else through ``load_private_key``.

    Raises:
        PrivateKeyError: As ``load_private_key``; or a ``passphrase`` given with a signer
            (it is for an encrypted PEM: the signer unlocks its key itself).
    """
    if is_signer(private_key):
        if passphrase is not None:
            raise PrivateKeyError(
                "passphrase is for an encrypted PEM key; private_key is a Signer, which "
                "unlocks its own key (a PIN, credentials): remove passphrase"
            )
        return private_key  # type: ignore[return-value]
    return load_private_key(private_key, passphrase)


def load_private_key(
    private_key: PrivateKeyInput, passphrase: str | bytes | None = None
) -> rsa.RSAPrivateKey:
    r"""Load an RSA private key for RS256 signing.

    Args:
        private_key: One of: a loaded ``RSAPrivateKey``; PEM text (``str`` or ``bytes``,
            PKCS#1 ``BEGIN RSA PRIVATE KEY`` or PKCS#8 ``BEGIN [ENCRYPTED] PRIVATE KEY``),
            including text whose newlines arrived as literal ``\n`` from an environment
            variable or as Windows ``\r\n``; or the path of a PEM file (``str`` or
            ``os.PathLike``).
        passphrase: Passphrase of an encrypted PEM (``str`` is UTF-8 encoded), else ``None``.

    Returns:
        The parsed key, at least 2048 bits.

    Raises:
        PrivateKeyError: The file is missing or unreadable, the data is not a PEM private key,
            the key is encrypted and no (or a wrong) passphrase was given, or the key is not
            RSA (Salesforce only accepts RS256 signatures) or shorter than 2048 bits. The
            message never contains key material.
    """
    if isinstance(private_key, rsa.RSAPrivateKey):
        return _check_rsa(private_key)
    if isinstance(private_key, KEY_OBJECTS):
        raise _not_rsa(private_key)
    if not isinstance(private_key, str | bytes | os.PathLike) or not private_key:
        raise PrivateKeyError(
            "private_key must be PEM text (str or bytes), the path of a PEM file, an "
            f"RSAPrivateKey, or a Signer (sfauth.signers); got {type(private_key).__name__}"
            + (" (empty)" if isinstance(private_key, str | bytes) else "")
        )
    if passphrase is not None and not isinstance(passphrase, str | bytes):
        raise PrivateKeyError(f"passphrase must be str or bytes; got {type(passphrase).__name__}")
    pem = _read_pem(private_key)
    password = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        key = load_pem_private_key(pem, password=password)
    except TypeError as exc:
        # cryptography raises TypeError for "encrypted but no password" and for
        # "password given but key not encrypted".
        if password is None:
            raise PrivateKeyError(
                "private_key is an encrypted PEM but no passphrase was given; "
                "pass passphrase=... (or decrypt the key with `openssl pkey`)"
            ) from None
        raise PrivateKeyError(
            "a passphrase was given but private_key is not encrypted; drop passphrase"
        ) from exc
    except ValueError:
        if password is not None and b"ENCRYPTED" in pem:
            raise PrivateKeyError(
                "could not decrypt private_key: the passphrase is wrong"
            ) from None
        raise PrivateKeyError(
            "private_key is not a readable PEM private key (the PEM body is malformed); "
            "export it again with `openssl pkey -in key.pem -out key-pkcs8.pem`"
        ) from None
    except UnsupportedAlgorithm:
        raise PrivateKeyError(
            "private_key uses an algorithm this build of cryptography cannot load; "
            "Salesforce needs an RSA key (RS256)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _not_rsa(key)
    return _check_rsa(key)


def _not_rsa(key: object) -> PrivateKeyError:
    return PrivateKeyError(
        f"private_key is {_kind(key)}; Salesforce's JWT bearer flow only "
        "accepts RS256, so generate an RSA key: "
        "`openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem`"
    )


def _kind(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC ({key.curve.name}) key"
    if isinstance(key, dsa.DSAPrivateKey):
        return "a DSA key"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return "an EdDSA key"
    return "not an RSA key"


def _check_rsa(key: rsa.RSAPrivateKey) -> rsa.RSAPrivateKey:
    if key.key_size < MIN_RSA_BITS:
        raise PrivateKeyError(
            f"private_key is RSA-{key.key_size}; at least {MIN_RSA_BITS} bits are required. "
            "Generate a new key and upload its certificate to the connected app."
        )
    return key


def _read_pem(private_key: str | bytes | os.PathLike[str]) -> bytes:
    if isinstance(private_key, bytes):
        data = private_key
        source = "private_key bytes"
    elif isinstance(private_key, str) and "-----BEGIN" in private_key:
        data = private_key.encode()
        source = "private_key text"
    else:
        data = _read_file(private_key)
        source = "the private_key file"
    data = data.strip()
    if not data:
        raise PrivateKeyError(f"{source} is empty; expected a PEM private key")
    if b"\n" not in data and b"\\n" in data:
        # Newlines flattened to a literal backslash-n, e.g. by an environment variable.
        data = data.replace(b"\\n", b"\n")
    data = data.replace(b"\r\n", b"\n")
    if not data.startswith(_PEM_BEGIN):
        if _PEM_BEGIN in data:
            data = data[data.index(_PEM_BEGIN) :]
        else:
            raise PrivateKeyError(
                f"{source} is not PEM (no '-----BEGIN ... PRIVATE KEY-----' line); "
                "convert a DER key with `openssl pkey -inform DER -in key.der -out key.pem`"
            )
    first_line = data.split(b"\n", 1)[0]
    if b"PRIVATE KEY" not in first_line:
        label = first_line.decode("ascii", "replace").strip("- ").removeprefix("BEGIN ")
        raise PrivateKeyError(
            f"{source} holds a {label}, not a private key; pass the private key whose "
            "certificate is uploaded to the connected app"
        )
    return data


def _read_file(path: str | os.PathLike[str]) -> bytes:
    shown = _display_path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_KEY_FILE_BYTES + 1)
            mode = os.fstat(f.fileno()).st_mode
    except FileNotFoundError:
        raise PrivateKeyError(
            "private_key is not PEM text (no '-----BEGIN ... PRIVATE KEY-----' line) and no "
            f"file exists at {shown}; pass the PEM text or the path of the key file"
        ) from None
    except IsADirectoryError:
        raise PrivateKeyError(f"private_key path {shown} is a directory, not a key file") from None
    except ValueError:  # open() refuses a NUL character in a path
        raise PrivateKeyError(
            "private_key contains a NUL character, so it is neither PEM text nor a file path; "
            "pass the PEM text itself (with its '-----BEGIN ... PRIVATE KEY-----' line) or the "
            "path of the key file"
        ) from None
    except OSError as exc:
        raise PrivateKeyError(
            f"cannot read the private_key file {shown}: {exc.strerror or type(exc).__name__}"
        ) from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise PrivateKeyError(f"the private_key file {shown} is over 1 MiB; it is not a key file")
    if mode & 0o077:
        logger.warning(
            "sfauth.key.permissions",
            path=shown,
            mode=oct(stat.S_IMODE(mode)),
            hint="the private key file is readable by group or others; chmod 600 it",
        )
    return data


def _display_path(path: str | os.PathLike[str]) -> str:
    """Show a path in an error only when it looks like one: it may be mangled key material."""
    text = os.fspath(path)
    looks_like_path = (
        len(text) <= 256
        and "\n" not in text
        and "-----" not in text
        and (os.sep in text or text.lower().endswith((".pem", ".key", ".p8", ".der", ".crt")))
    )
    if looks_like_path:
        return repr(str(Path(text)))
    return f"the given value ({len(text)} characters, not shown: it does not look like a path)"
