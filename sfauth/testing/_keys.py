"""Key material for the emulator: connected-app certificates, RS256 verification, test TLS."""

from __future__ import annotations

import base64
import datetime
import json
import re
import ssl
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn

import jwt
import jwt.warnings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    import trustme

__all__ = [
    "ParsedJwt",
    "TlsMaterial",
    "generate_key_and_certificate",
    "load_rsa_public_key",
    "parse_jwt",
    "verify_rs256",
]


def generate_key_and_certificate(common_name: str) -> tuple[bytes, bytes]:
    """Generate an RSA-2048 key and a self-signed X.509 certificate for it.

    Args:
        common_name: Subject and issuer common name of the certificate.

    Returns:
        ``(private_key_pem, certificate_pem)``: unencrypted PKCS#8 PEM and certificate PEM.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def load_rsa_public_key(certificate: bytes | str | x509.Certificate) -> rsa.RSAPublicKey:
    """Return the RSA public key of a connected app's certificate.

    Args:
        certificate: PEM (bytes or str) or a loaded certificate.

    Returns:
        The certificate's RSA public key.

    Raises:
        ValueError: If the PEM does not parse or the key is not RSA.
    """
    if isinstance(certificate, str):
        certificate = certificate.encode("ascii")
    if isinstance(certificate, bytes):
        try:
            certificate = x509.load_pem_x509_certificate(certificate)
        except ValueError as exc:
            raise ValueError("not a PEM-encoded X.509 certificate") from exc
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError(
            "Salesforce connected apps verify RS256 only: an RSA certificate is required"
        )
    return public_key


#: JOSE header parameters that must be strings when present (RFC 7515 section 4.1).
_STRING_HEADERS = ("kid", "typ", "cty")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def _base64url(segment: str) -> bytes | None:
    """Decode one base64url segment, unpadded or correctly padded; ``None`` if it is not one."""
    stripped = segment.rstrip("=")
    padding = len(segment) - len(stripped)
    if padding and (padding > 2 or len(segment) % 4):
        return None
    if len(stripped) % 4 == 1 or not _BASE64URL.fullmatch(stripped):
        return None
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _json_segment(segment: str) -> object:
    """Decode a base64url segment holding UTF-8 JSON; ``None`` if it does not."""
    data = _base64url(segment)
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None


class ParsedJwt:
    """A compact JWS split into its parts and decoded without verification.

    Decoding never raises: anything that is not three base64url segments whose first two are
    UTF-8 JSON objects, with a string ``alg`` (and ``kid``, ``typ``, ``cty`` strings when
    present) and no ``crit`` (no extension is understood), is kept with ``valid=False``; the
    token endpoint answers it ``invalid assertion``.

    Attributes:
        header: The JOSE header (``{}`` unless it decoded to a JSON object).
        claims: The claims (``{}`` unless they decoded to a JSON object).
        token: The compact serialisation as received.
        valid: Whether the token is well formed (see above); the signature is not checked.
    """

    __slots__ = ("claims", "header", "token", "valid")

    def __init__(self, token: str) -> None:
        self.token = token
        self.header: dict[str, object] = {}
        self.claims: dict[str, object] = {}
        self.valid = False
        segments = token.split(".")
        if len(segments) != 3:
            return
        header = _json_segment(segments[0])
        claims = _json_segment(segments[1])
        if isinstance(header, dict):
            self.header = header
        if isinstance(claims, dict):
            self.claims = claims
        self.valid = (
            isinstance(header, dict)
            and isinstance(claims, dict)
            and _base64url(segments[2]) is not None
            and isinstance(header.get("alg"), str)
            and all(isinstance(header.get(name, ""), str) for name in _STRING_HEADERS)
            # RFC 7515 section 4.1.11: a recipient that understands none of the listed
            # extensions must refuse the JWS, whatever PyJWT version checks it.
            and "crit" not in header
        )


def parse_jwt(token: str) -> ParsedJwt:
    """Split and decode a compact JWS without verifying it; never raises.

    Args:
        token: The compact serialisation.

    Returns:
        The parsed parts.
    """
    return ParsedJwt(token)


def verify_rs256(parsed: ParsedJwt, public_key: rsa.RSAPublicKey) -> bool:
    """Check an RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature with PyJWT.

    Args:
        parsed: The parsed token.
        public_key: The app certificate's key.

    Returns:
        Whether the signature is valid.
    """
    with warnings.catch_warnings():
        # A user may register a short test key; the emulator verifies it anyway.
        if _SHORT_KEY_WARNING is not None:
            warnings.simplefilter("ignore", _SHORT_KEY_WARNING)
        try:
            _JWS.decode_complete(parsed.token, key=public_key, algorithms=["RS256"])
        except jwt.exceptions.PyJWTError:
            return False
    return True


_JWS = jwt.api_jws.PyJWS(algorithms=["RS256"])
#: PyJWT >= 2.11 warns when a key is shorter than 2048 bits; older versions have no such warning.
_SHORT_KEY_WARNING: type[Warning] | None = getattr(jwt.warnings, "InsecureKeyLengthWarning", None)


class TlsMaterial:
    """A throw-away CA (trustme) and the server context for the emulator's HTTPS mode."""

    def __init__(self, hosts: Iterable[str]) -> None:
        import trustme  # optional dependency (the ``testing`` extra), only needed for HTTPS

        identities: list[str] = []
        for host in [*hosts, "127.0.0.1", "::1", "localhost"]:
            if host and host not in identities:
                identities.append(host)
        self.ca: trustme.CA = trustme.CA()
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*identities).configure_cert(self.server_context)

    def client_context(self) -> ssl.SSLContext:
        """Return a new client context that trusts the CA.

        Returns:
            A default client context with the CA added to its trust store.
        """
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    @property
    def ca_pem(self) -> bytes:
        """PEM of the CA certificate, for clients configured through files."""
        return self.ca.cert_pem.bytes()
