from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from joserfc import jws
from joserfc.jwk import RSAKey

from sfauth import ConfigurationError
from sfauth._assertion import AssertionSigner


def _signer(key: rsa.RSAPrivateKey, **kw: object) -> AssertionSigner:
    args: dict[str, object] = {
        "client_id": "3MVG9-consumer-key",
        "username": "etl@example.com",
        "audience": "https://login.salesforce.com",
        "private_key": key,
    }
    args.update(kw)
    return AssertionSigner(**args)  # type: ignore[arg-type]


def _certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfauth-test")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_claims_header_and_exp_with_fixed_clock(rsa_key: rsa.RSAPrivateKey) -> None:
    signer = _signer(rsa_key, lifetime=180, clock=lambda: 1_700_000_000.9)
    cert_pem = _certificate(rsa_key).public_bytes(serialization.Encoding.PEM)
    # Verify with joserfc (an implementation independent of PyJWT) against the
    # certificate's public key, as Salesforce does with the uploaded certificate.
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    jwk = RSAKey.import_key(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    obj = jws.deserialize_compact(signer.mint(), jwk, algorithms=["RS256"])
    assert obj.protected == {"alg": "RS256", "typ": "JWT"}
    import json

    claims = json.loads(obj.payload)
    assert claims == {
        "iss": "3MVG9-consumer-key",
        "sub": "etl@example.com",
        "aud": "https://login.salesforce.com",
        "exp": 1_700_000_180,
    }
    assert type(claims["exp"]) is int


def test_wrong_key_does_not_verify(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAKey.import_key(
        other.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    from joserfc.errors import BadSignatureError

    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(_signer(rsa_key).mint(), jwk, algorithms=["RS256"])


@pytest.fixture
def tokyo() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.usefixtures("tokyo")
def test_exp_is_utc_epoch_seconds_in_any_timezone(rsa_key: rsa.RSAPrivateKey) -> None:
    assert time.localtime().tm_gmtoff == 9 * 3600
    import jwt

    before = int(time.time())
    token = _signer(rsa_key, lifetime=120).mint()
    after = int(time.time())
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert type(exp) is int
    assert before + 120 <= exp <= after + 120


def test_each_mint_is_a_fresh_assertion(rsa_key: rsa.RSAPrivateKey) -> None:
    ticks = iter([1000.0, 1001.0])
    signer = _signer(rsa_key, clock=lambda: next(ticks))
    first, second = signer.mint(), signer.mint()
    assert first != second


@pytest.mark.parametrize("lifetime", [0, -1, 180.5, 181, 3600])
def test_lifetime_out_of_range(rsa_key: rsa.RSAPrivateKey, lifetime: float) -> None:
    with pytest.raises(ConfigurationError, match="assertion_lifetime must be > 0 and <= 180"):
        _signer(rsa_key, lifetime=lifetime)


def test_repr_hides_key(rsa_key: rsa.RSAPrivateKey) -> None:
    text = repr(_signer(rsa_key))
    assert text == (
        "AssertionSigner(iss='3MVG9-consumer-key', aud='https://login.salesforce.com', "
        "key=<redacted>)"
    )
