from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sfauth import (
    ConfigurationError,
    PrivateKeyError,
    SalesforceAuthMiddleware,
    load_private_key,
)

from .conftest import pem_block, pem_header


def _pem(
    key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat, password: bytes | None = None
) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, enc)


def _same(a: rsa.RSAPrivateKey, b: rsa.RSAPrivateKey) -> bool:
    return a.private_numbers() == b.private_numbers()


def test_pkcs8_bytes_and_str(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = _pem(rsa_key, serialization.PrivateFormat.PKCS8)
    assert _same(load_private_key(pem), rsa_key)
    assert _same(load_private_key(pem.decode()), rsa_key)


def test_pkcs1_traditional(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = _pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    assert pem.startswith(pem_header("RSA PRIVATE KEY").encode())
    assert _same(load_private_key(pem), rsa_key)


def test_literal_backslash_n_from_environment(rsa_key: rsa.RSAPrivateKey) -> None:
    flattened = _pem(rsa_key, serialization.PrivateFormat.PKCS8).decode().replace("\n", "\\n")
    assert "\n" not in flattened
    assert _same(load_private_key(flattened), rsa_key)


def test_windows_line_endings(rsa_key: rsa.RSAPrivateKey) -> None:
    crlf = _pem(rsa_key, serialization.PrivateFormat.PKCS8).replace(b"\n", b"\r\n")
    assert _same(load_private_key(crlf), rsa_key)


def test_path_str_and_pathlike(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(_pem(rsa_key, serialization.PrivateFormat.PKCS8))
    assert _same(load_private_key(path), rsa_key)
    assert _same(load_private_key(str(path)), rsa_key)


def test_encrypted_with_passphrase(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = _pem(rsa_key, serialization.PrivateFormat.PKCS8, b"s3cret-pass")
    assert b"ENCRYPTED" in pem
    assert _same(load_private_key(pem, "s3cret-pass"), rsa_key)
    assert _same(load_private_key(pem, b"s3cret-pass"), rsa_key)


def test_encrypted_without_passphrase(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = _pem(rsa_key, serialization.PrivateFormat.PKCS8, b"s3cret-pass")
    with pytest.raises(PrivateKeyError, match="encrypted PEM but no passphrase"):
        load_private_key(pem)


def test_wrong_passphrase_message_has_no_secret(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = _pem(rsa_key, serialization.PrivateFormat.PKCS8, b"s3cret-pass")
    with pytest.raises(PrivateKeyError, match="passphrase is wrong") as info:
        load_private_key(pem, "not-the-pass")
    assert "not-the-pass" not in str(info.value)
    assert info.value.__cause__ is None


def test_loaded_key_object_is_accepted_as_is(rsa_key: rsa.RSAPrivateKey) -> None:
    assert load_private_key(rsa_key) is rsa_key


def test_rsa_1024_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(PrivateKeyError, match="RSA-1024; at least 2048 bits"):
        load_private_key(_pem(small, serialization.PrivateFormat.PKCS8))


def test_ec_key_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(
        PrivateKeyError, match=r"is an EC \(secp256r1\) key; .* only accepts RS256"
    ):
        load_private_key(pem)


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (ec.generate_private_key(ec.SECP256R1()), "an EC (secp256r1) key"),
        (ed25519.Ed25519PrivateKey.generate(), "an EdDSA key"),
    ],
)
def test_a_loaded_key_that_is_not_rsa_is_refused_when_the_session_is_built(
    key: object, kind: str
) -> None:
    # It has a sign() method of its own, but it is not a Signer: refused here, not at the
    # first login with a TypeError from cryptography.
    with pytest.raises(PrivateKeyError) as info:
        SalesforceAuthMiddleware(client_id="c", username="u", private_key=key)
    assert str(info.value) == (
        f"private_key is {kind}; Salesforce's JWT bearer flow only accepts RS256, so generate "
        "an RSA key: `openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem`"
    )


def test_public_key_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    pub = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(PrivateKeyError, match="holds a PUBLIC KEY, not a private key"):
        load_private_key(pub)


def test_garbage_text_is_not_echoed() -> None:
    with pytest.raises(PrivateKeyError) as info:
        load_private_key("hunter2-My-Passphrase!")
    assert "hunter2" not in str(info.value)
    assert "no '-----BEGIN ... PRIVATE KEY-----' line" in str(info.value)
    assert "the given value (22 characters, not shown" in str(info.value)


def test_missing_key_file_path_is_shown(tmp_path: Path) -> None:
    missing = tmp_path / "sfauth.key"
    with pytest.raises(PrivateKeyError, match=r"no file exists at '.*/sfauth\.key'"):
        load_private_key(str(missing))
    with pytest.raises(PrivateKeyError, match=r"no file exists at '.*/sfauth\.key'"):
        load_private_key(missing)


def test_pem_text_passed_as_a_path_is_not_echoed(pkcs8_pem: bytes) -> None:
    # The CLI passes --jwt-key-file as a Path; a user may put the key itself there.
    headerless = b"".join(pkcs8_pem.splitlines()[1:-1]).decode()
    for value in (Path(pkcs8_pem.decode()), Path(headerless), headerless):
        with pytest.raises(PrivateKeyError) as info:
            load_private_key(value)
        assert headerless[:40] not in str(info.value)
        assert "PRIVATE KEY-----\n" not in str(info.value)


@pytest.mark.parametrize("value", [None, 1234, b"", ""])
def test_wrong_types_and_empty_values(value: object) -> None:
    with pytest.raises(PrivateKeyError, match="private_key must be PEM text"):
        load_private_key(value)  # type: ignore[arg-type]


def test_garbage_bytes() -> None:
    with pytest.raises(PrivateKeyError, match="is not PEM"):
        load_private_key(b"\x30\x82\x04\xa4 binary DER-ish")


def test_malformed_pem_body() -> None:
    with pytest.raises(PrivateKeyError, match="PEM body is malformed"):
        load_private_key(pem_block("AAAA"))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pem"
    path.write_bytes(b"")
    with pytest.raises(PrivateKeyError, match="the private_key file is empty"):
        load_private_key(path)


def test_private_key_error_is_a_configuration_error() -> None:
    assert issubclass(PrivateKeyError, ConfigurationError)
    assert issubclass(PrivateKeyError, ValueError)


def test_certificate_instead_of_private_key(rsa_key: rsa.RSAPrivateKey) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfauth-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(rsa_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(rsa_key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PrivateKeyError, match="holds a CERTIFICATE, not a private key"):
        load_private_key(pem)
