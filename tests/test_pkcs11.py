"""Pkcs11Signer against a real PKCS#11 token: SoftHSM2, initialised for this test run.

The key pair is generated inside the token (never extractable); a test CA certifies its public
key for the emulator's connected app. Where SoftHSM2 or python-pkcs11 is missing these tests
are skipped with the reason, except under ``SFAUTH_REQUIRE_HSM=1`` (``.ci/run`` sets it, and
``make test`` installs Debian's softhsm2 when it can), where that is an error.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sfauth import AuthSession, SignerError
from sfauth.testing import Emulator, no_backoff

REQUIRED = os.environ.get("SFAUTH_REQUIRE_HSM") == "1"
MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
MODULE = next((m for m in MODULES if Path(m).exists()), None)
SOFTHSM_UTIL = shutil.which("softhsm2-util")

if REQUIRED:
    import pkcs11  # CI: a missing python-pkcs11 is an error, never a skip

    assert MODULE, "SoftHSM2 is not installed (Debian: apt-get install softhsm2)"
    assert SOFTHSM_UTIL, "softhsm2-util is not on PATH"
pkcs11 = pytest.importorskip("pkcs11", reason="python-pkcs11 is not installed (the pkcs11 extra)")
if MODULE is None or SOFTHSM_UTIL is None:
    pytest.skip(
        "SoftHSM2 is not installed (Debian: apt-get install softhsm2)", allow_module_level=True
    )

from sfauth.signers import Pkcs11Signer  # noqa: E402

TOKEN = "sfauth-test"
KEY = "salesforce-jwt"
PIN = "4711-test-pin"


@dataclass(frozen=True)
class Hsm:
    module: str
    certificate: x509.Certificate


def _certify(public_key: rsa.RSAPublicKey) -> x509.Certificate:
    """A certificate for the token's public key, issued by a throwaway CA (software key)."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfauth HSM key")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfauth test CA")]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hsm]:
    """A SoftHSM2 token with an RSA-2048 key pair generated inside it."""
    assert MODULE is not None
    assert SOFTHSM_UTIL is not None
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read when the module initialises
    try:
        init = ["--init-token", "--free", "--label", TOKEN, "--so-pin", "so-" + PIN]
        subprocess.run(
            [SOFTHSM_UTIL, *init, "--pin", PIN],
            check=True,
            capture_output=True,
        )
        token = pkcs11.lib(MODULE).get_token(token_label=TOKEN)
        with token.open(user_pin=PIN, rw=True) as session:
            session.generate_keypair(
                pkcs11.KeyType.RSA,
                2048,
                label=KEY,
                store=True,
                private_template={
                    pkcs11.Attribute.EXTRACTABLE: False,
                    pkcs11.Attribute.SENSITIVE: True,
                },
            )
        signer = Pkcs11Signer(MODULE, token_label=TOKEN, key_label=KEY, pin=PIN)
        certificate = _certify(signer.public_key())
        signer.close()  # the token's login is per process: each test logs in on its own
        yield Hsm(MODULE, certificate)
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


def _session(emulator: Emulator, signer: object, username: str) -> AuthSession:
    return AuthSession(
        client_id=f"3MVG9hsm{username.split('@')[0]}",
        username=username,
        private_key=signer,  # type: ignore[arg-type]
        login_url=emulator.url,
        allow_http_loopback=True,
    )


def _register(emulator: Emulator, hsm: Hsm, username: str) -> None:
    client_id = f"3MVG9hsm{username.split('@')[0]}"
    emulator.register_app(client_id, hsm.certificate)
    emulator.register_user(username, client_id=client_id)


async def _limits(sf: AuthSession) -> int:
    async with sf.get("/services/data/v62.0/limits") as resp:
        return resp.status


async def test_login_expiry_and_one_refresh_with_the_key_in_softhsm(
    emulator: Emulator, hsm: Hsm
) -> None:
    _register(emulator, hsm, "hsm@example.com")
    signer = Pkcs11Signer(hsm.module, token_label=TOKEN, key_label=KEY, pin=PIN)
    try:
        async with _session(emulator, signer, "hsm@example.com") as sf:
            assert await _limits(sf) == 200
            emulator.expire_all_sessions()
            assert await _limits(sf) == 200
            assert sf.token_requests == 2
    finally:
        signer.close()
    assert emulator.token_request_count == 2


def test_the_private_key_cannot_leave_the_token(hsm: Hsm) -> None:
    token = pkcs11.lib(hsm.module).get_token(token_label=TOKEN)
    with token.open(user_pin=PIN) as session:
        key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=KEY)
        assert key[pkcs11.Attribute.EXTRACTABLE] is False
        assert key[pkcs11.Attribute.SENSITIVE] is True
        assert key[pkcs11.Attribute.NEVER_EXTRACTABLE] is True
        for secret in (pkcs11.Attribute.PRIVATE_EXPONENT, pkcs11.Attribute.PRIME_1):
            with pytest.raises(pkcs11.exceptions.AttributeSensitive):
                key[secret]


async def test_a_wrong_pin_is_a_permanent_typed_error(emulator: Emulator, hsm: Hsm) -> None:
    _register(emulator, hsm, "wrongpin@example.com")
    signer = Pkcs11Signer(hsm.module, token_label=TOKEN, key_label=KEY, pin="0000-wrong")
    async with _session(emulator, signer, "wrongpin@example.com") as sf:
        with pytest.raises(SignerError) as caught:
            await sf.token()
    assert str(caught.value) == (
        f"PKCS#11 signing failed (token {TOKEN!r}, key {KEY!r}): PinIncorrect: the PIN is wrong"
    )
    assert caught.value.retryable is False
    assert "0000-wrong" not in repr(signer)
    assert emulator.token_request_count == 0


def test_a_missing_key_names_what_to_check(hsm: Hsm) -> None:
    signer = Pkcs11Signer(hsm.module, token_label=TOKEN, key_label="no-such-key", pin=PIN)
    try:
        with pytest.raises(SignerError, match=r"NoSuchKey: the token has no private key with"):
            signer.sign(b"header.claims")
    finally:
        signer.close()


async def test_two_transient_failures_then_one_login(emulator: Emulator, hsm: Hsm) -> None:
    _register(emulator, hsm, "busy@example.com")
    inner = Pkcs11Signer(hsm.module, token_label=TOKEN, key_label=KEY, pin=PIN)
    calls = []

    class Busy:  # the token is busy twice, as a shared HSM may be
        def sign(self, message: bytes) -> bytes:
            calls.append(len(message))
            if len(calls) <= 2:
                raise SignerError("HSM busy", retryable=True)
            return inner.sign(message)

    try:
        with no_backoff():
            async with _session(emulator, Busy(), "busy@example.com") as sf:
                assert await _limits(sf) == 200
    finally:
        inner.close()
    assert len(calls) == 3
    assert emulator.token_request_count == 1
