"""The README's code blocks run as written."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import sys
import textwrap
import tomllib
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pytest
import structlog

from sfauth import AuthSession
from sfauth.testing import Emulator

from .conftest import fake_session_id, pem_header

pytest_plugins = ["pytester"]

README = (Path(__file__).parent.parent / "README.md").read_text()
FENCED = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.DOTALL | re.MULTILINE)


def block(marker: str, language: str = "python") -> str:
    """The one fenced block of ``language`` that contains ``marker`` (list indentation removed)."""
    (found,) = [
        textwrap.dedent(m[3])
        for m in FENCED.finditer(README)
        if m[2] == language and marker in m[3]
    ]
    return found


async def test_the_data_plane_examples_run_as_written(
    emulator: Emulator, make_session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records, Collections, Composite and Bulk, in order, against the emulator."""
    emulator.schema.add_field("Account", "External_Id__c", "string", external_id=True, unique=True)
    (tmp_path / "contacts.csv").write_text("LastName,Email\nLovelace,ada@example.com\n")
    monkeypatch.chdir(tmp_path)
    markers = (
        'accounts = sf.sobject("Account")',
        "results = await accounts.create_many(rows)",
        "results = await sf.composite(",
        'result = await sf.bulk.upsert("Account"',
    )
    code = "\n".join(block(marker) for marker in markers)
    namespace: dict[str, object] = {}
    exec("async def run(sf):\n" + textwrap.indent(code, "    "), namespace)
    sf = make_session()
    await namespace["run"](sf)  # type: ignore[operator]
    live = {r["Name"] for r in emulator.records("Account") if r.get("External_Id__c")}
    assert live == set()  # the Bulk delete removed the upserted copies
    assert [r["LastName"] for r in emulator.records("Contact")][-1] == "Lovelace"
    assert [j.operation for j in emulator.bulk_jobs.values()] == [
        "upsert",
        "insert",
        "delete",
        "query",
        "queryAll",
    ]


async def test_the_testing_example_passes() -> None:
    namespace: dict[str, object] = {}
    exec(block("def test_my_etl_survives_an_expired_session"), namespace)
    await namespace["test_my_etl_survives_an_expired_session"]()  # type: ignore[operator]


def test_the_logging_configuration_scrubs_and_hides_locals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = io.StringIO()
    namespace: dict[str, object] = {}
    try:
        exec(block("sfauth.redact_secrets,"), namespace)
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer))
        session_id = fake_session_id()

        def fail(token: str) -> None:
            raise RuntimeError(f"failed with {token}")

        try:
            fail(session_id)
        except RuntimeError:
            structlog.get_logger().exception("boom", authorization=f"Bearer {session_id}")
    finally:
        structlog.reset_defaults()
    output = buffer.getvalue()
    event = json.loads(output)
    assert event["authorization"] == "<redacted>"
    assert session_id.split("!", 1)[1] not in output
    frames = event["exception"][0]["frames"]
    assert frames
    assert not any(frame.get("locals") for frame in frames)  # structlog < 24.3: "locals": null


async def test_the_https_example_passes() -> None:
    namespace: dict[str, object] = {}
    exec(block("async def test_over_https"), namespace)
    await namespace["test_over_https"]()  # type: ignore[operator]


async def test_https_without_trustme_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)  # what a missing package looks like
    emulator = Emulator(tls=True)
    with pytest.raises(ModuleNotFoundError) as caught:
        await emulator.start()
    assert str(caught.value) == (
        "Emulator(tls=True) needs trustme: pip install trustme, or install sfauth with its "
        "testing extra (pip install '/path/to/sfauth[testing]')"
    )
    assert caught.value.name == "trustme"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True
    await emulator.stop()


def test_the_pytest_setup_and_the_conftest_override_work_as_shown(
    pytester: pytest.Pytester,
) -> None:
    config = block("asyncio_default_fixture_loop_scope", language="toml")
    assert tomllib.loads(config)["tool"]["pytest"]["ini_options"] == {
        "asyncio_mode": "auto",
        "asyncio_default_fixture_loop_scope": "function",
    }
    pytester.makepyprojecttoml(config)
    pytester.makeconftest(block("async def sf_emulator():"))
    pytester.makepyfile(
        test_readme_example=block("async def test_etl_survives_expiry_and_faults"),
        test_override="""
            async def test_the_override_configures_every_fixture(sf_session, sf_emulator):
                query = {"q": "SELECT Id FROM Account"}
                async with sf_session.get("/services/data/v62.0/query", params=query) as resp:
                    page = await resp.json()
                assert page["totalSize"] == 1000
                assert (len(page["records"]), page["done"]) == (200, False)
                names = [r["LastName"] for r in sf_emulator.records("Contact")]
                assert names == ["Lovelace", "Hopper"]


            def test_each_test_gets_its_own_emulator(sf_emulator, sf_credentials):
                assert sf_emulator.token_request_count == 0
                assert sf_credentials.login_url == sf_emulator.url
            """,
    )
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=3)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_the_openssl_commands_make_a_pair_salesforce_would_accept(
    tmp_path: Path, emulator: Emulator
) -> None:
    commands = block("openssl req -x509", language="sh")
    shell = await asyncio.create_subprocess_exec(
        "bash", "-euc", commands, cwd=tmp_path, stdout=PIPE, stderr=PIPE
    )
    _, stderr = await shell.communicate()
    assert shell.returncode == 0, stderr.decode()
    key, certificate = tmp_path / "server.key", tmp_path / "server.crt"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_text().startswith(pem_header() + "\n")  # PKCS#8, unencrypted
    emulator.register_app("3MVG9-readme-app", certificate.read_bytes())
    emulator.register_user("integration@acme.com", client_id="3MVG9-readme-app")
    async with AuthSession(
        client_id="3MVG9-readme-app",
        username="integration@acme.com",
        private_key=key,
        login_url=emulator.url,
        allow_http_loopback=True,
    ) as sf:
        token = await sf.token()
    assert token.instance_url == emulator.url
    (login,) = emulator.token_requests
    assert (login.status, login.claims["aud"]) == (200, "https://login.salesforce.com")


def test_the_observability_setups_compile_and_name_every_metric_and_span() -> None:
    from sfauth._telemetry import METRICS, SPANS

    for marker in ("OTLPSpanExporter()", "PrometheusMetricReader()"):
        compile(block(marker), "README.md", "exec")
    section = README.split("### Observability", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(sfauth\.[a-z_.]+)`(?:, `(sfauth\.[a-z_.]+)`)? \|", section, re.M)
    named = {name for row in rows for name in row if name}
    assert named == set(METRICS) | set(SPANS)


async def test_the_signer_example_logs_in_and_retries_a_kms_timeout() -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from sfauth.signers import KeySigner
    from sfauth.testing import no_backoff

    async with Emulator() as emu:
        creds = emu.create_credentials(username="kms@example.com")
        key = load_pem_private_key(creds.private_key_pem, password=None)
        signatures: list[int] = []

        class Kms:  # what the example calls my_kms_client: one timeout, then signatures
            async def sign_rs256(self, message: bytes) -> bytes:
                signatures.append(len(message))
                if len(signatures) == 1:
                    raise TimeoutError
                return KeySigner(key).sign(message)  # type: ignore[arg-type]

        namespace: dict[str, object] = {"my_kms_client": Kms()}
        exec(block("class MyKmsSigner:"), namespace)
        signer = namespace["MyKmsSigner"]()  # type: ignore[operator]
        with no_backoff():
            async with (
                AuthSession(
                    client_id=creds.client_id,
                    username=creds.username,
                    private_key=signer,
                    login_url=emu.url,
                    allow_http_loopback=True,
                ) as sf,
                sf.get("/services/data/v62.0/limits") as resp,
            ):
                assert resp.status == 200
        assert len(signatures) == 2
        assert emu.token_request_count == 1


def test_the_kms_recipes_produce_rs256_signatures() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    namespace: dict[str, object] = {}
    exec(block("class AwsKmsSigner:"), namespace)
    message = b"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0"
    calls: list[dict[str, object]] = []

    class Kms:  # boto3's kms client, as far as the recipe uses it
        def sign(self, **request: object) -> dict[str, bytes]:
            calls.append(request)
            return {"Signature": key.sign(message, padding.PKCS1v15(), hashes.SHA256())}

    class Gcp:  # google-cloud-kms's client: signs the SHA-256 digest it is given
        def asymmetric_sign(self, request: dict[str, object]) -> object:
            calls.append(request)
            digest = request["digest"]["sha256"]  # type: ignore[index]
            signature = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
            return type("Answer", (), {"signature": signature})()

    aws = namespace["AwsKmsSigner"](Kms(), "alias/salesforce-jwt")  # type: ignore[operator]
    gcp = namespace["GcpKmsSigner"](Gcp(), "projects/p/.../cryptoKeyVersions/1")  # type: ignore[operator]
    for signer in (aws, gcp):
        key.public_key().verify(signer.sign(message), message, padding.PKCS1v15(), hashes.SHA256())
    assert calls[0] == {
        "KeyId": "alias/salesforce-jwt",
        "Message": message,
        "MessageType": "RAW",
        "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
    }
    compile(block("import os\n\nfrom sfauth.signers import Pkcs11Signer"), "README.md", "exec")
