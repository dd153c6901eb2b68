"""Signers: assertions signed outside sfauth (an HSM, a KMS), through the same session."""

from __future__ import annotations

import asyncio
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sfauth import AuthSession, PrivateKeyError, SignerError
from sfauth._assertion import AssertionSigner
from sfauth.signers import KeySigner, Signer
from sfauth.testing import Emulator, EmulatorCredentials, no_backoff

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}


def _key(creds: EmulatorCredentials) -> rsa.RSAPrivateKey:
    pem = creds.private_key_pem
    key = load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _session(emulator: Emulator, creds: EmulatorCredentials, signer: object) -> AuthSession:
    return AuthSession(
        client_id=creds.client_id,
        username=creds.username,
        private_key=signer,  # type: ignore[arg-type]
        login_url=emulator.url,
        allow_http_loopback=True,
    )


async def _query(sf: AuthSession) -> int:
    async with sf.get(QUERY, params=SOQL) as resp:
        await resp.json()
        return resp.status


class Flaky:
    """Fails ``transient`` times with a retryable SignerError, then signs."""

    def __init__(self, key: rsa.RSAPrivateKey, transient: int) -> None:
        self.inner = KeySigner(key)
        self.left = transient
        self.calls = 0
        self.threads: list[bool] = []

    def sign(self, message: bytes) -> bytes:
        self.calls += 1
        self.threads.append(threading.current_thread() is threading.main_thread())
        if self.left:
            self.left -= 1
            raise SignerError("the HSM is busy", retryable=True)
        return self.inner.sign(message)


async def test_a_signer_mints_exactly_the_assertion_the_pem_key_mints(
    creds: EmulatorCredentials,
) -> None:
    key = _key(creds)

    def minter(private_key: rsa.RSAPrivateKey | Signer) -> AssertionSigner:
        return AssertionSigner(
            client_id=creds.client_id,
            username=creds.username,
            audience="https://login.salesforce.com",
            private_key=private_key,
            clock=lambda: 1_900_000_000.0,
        )

    with_key = minter(key).mint()
    assert await minter(KeySigner(key)).assertion() == with_key  # PKCS#1 v1.5 is deterministic
    assert await minter(key).assertion() == with_key


async def test_login_and_refresh_through_a_blocking_signer_off_the_event_loop(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    signer = Flaky(_key(creds), transient=0)
    async with _session(emulator, creds, signer) as sf:
        assert await _query(sf) == 200
        emulator.expire_all_sessions()
        assert await _query(sf) == 200
    assert emulator.token_request_count == 2
    assert signer.calls == 2
    assert signer.threads == [False, False]  # both signed in a worker thread


async def test_an_async_signer_is_awaited(emulator: Emulator, creds: EmulatorCredentials) -> None:
    inner = KeySigner(_key(creds))
    loops: list[asyncio.AbstractEventLoop] = []

    class Remote:
        async def sign(self, message: bytes) -> bytes:
            loops.append(asyncio.get_running_loop())
            await asyncio.sleep(0)  # a KMS round trip
            return inner.sign(message)

    async with _session(emulator, creds, Remote()) as sf:
        assert await _query(sf) == 200
        assert loops == [asyncio.get_running_loop()]
    assert emulator.token_request_count == 1


async def test_transient_signer_failures_are_retried_without_token_requests(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    signer = Flaky(_key(creds), transient=2)
    with no_backoff():
        async with _session(emulator, creds, signer) as sf:
            assert await _query(sf) == 200
            assert sf.token_requests == 1
    assert signer.calls == 3
    assert emulator.token_request_count == 1  # the two failures sent nothing


async def test_a_permanent_signer_failure_is_typed_and_not_retried(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    calls = 0

    class WrongPin:
        def sign(self, message: bytes) -> bytes:
            nonlocal calls
            calls += 1
            raise ValueError("CKR_PIN_INCORRECT")

    async with _session(emulator, creds, WrongPin()) as sf:
        with pytest.raises(SignerError) as caught:
            await _query(sf)
    assert str(caught.value) == "WrongPin.sign failed: ValueError: CKR_PIN_INCORRECT"
    assert caught.value.retryable is False
    assert caught.value.__cause__ is None
    assert calls == 1
    assert emulator.token_request_count == 0


@pytest.mark.parametrize(
    ("returned", "shown"), [("c2lnbmF0dXJl", "str"), (b"", "bytes"), (None, "NoneType")]
)
async def test_a_signer_must_return_bytes(
    emulator: Emulator, creds: EmulatorCredentials, returned: object, shown: str
) -> None:
    class Odd:
        def sign(self, message: bytes) -> object:
            return returned

    async with _session(emulator, creds, Odd()) as sf:
        with pytest.raises(SignerError) as caught:
            await sf.token()
    assert str(caught.value) == (
        f"Odd.sign must return the signature as non-empty bytes; got {shown}"
    )
    assert emulator.token_request_count == 0


def test_a_passphrase_with_a_signer_is_refused(creds: EmulatorCredentials) -> None:
    with pytest.raises(PrivateKeyError, match=r"^passphrase is for an encrypted PEM key"):
        AuthSession(
            client_id=creds.client_id,
            username=creds.username,
            private_key=KeySigner(_key(creds)),
            passphrase="secret",
        )


def test_signers_show_no_key_material(creds: EmulatorCredentials) -> None:
    key = _key(creds)
    assert repr(KeySigner(key)) == "KeySigner(key=<redacted 2048-bit RSA>)"
    signer = AssertionSigner(
        client_id="3MVG9x", username="u@example.com", audience="aud", private_key=KeySigner(key)
    )
    assert repr(signer) == "AssertionSigner(iss='3MVG9x', aud='aud', signer=KeySigner)"
    assert isinstance(KeySigner(key), Signer)
    assert not isinstance(object(), Signer)
