"""settings_from_env: every variable, missing names, key conflicts, no secret in messages."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from sfauth import AuthSession, ConfigurationError
from sfauth._env import settings_from_env
from sfauth.testing import Emulator, EmulatorCredentials

from .conftest import pem_block

KEY_CANARY = pem_block("CANARYKEYMATERIAL" + secrets.token_hex(8)).strip().replace("\n", "\\n")
PASS_CANARY = "canary-passphrase-4711"

BASE = {"SF_CLIENT_ID": "3MVG9client", "SF_USERNAME": "etl@acme.com"}


def messages(exc: BaseException) -> str:
    """Everything an error shows: str, repr, args, and its chained causes."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), *map(repr, seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def test_every_variable(tmp_path: Path) -> None:
    key_file = tmp_path / "sfauth.key"
    env = {
        **BASE,
        "SF_JWT_KEY_FILE": f" {key_file} ",
        "SF_JWT_KEY_PASSPHRASE": " pass phrase ",
        "SF_LOGIN_URL": "https://acme.my.salesforce.com",
        "SF_AUDIENCE": "https://login.salesforce.com",
        "SF_SITE": "/customers",
        "SF_API_VERSION": "v62.0",
        "SF_ALLOW_HTTP_LOOPBACK": "false",
        "UNRELATED": "x",
    }
    assert settings_from_env(env) == {
        "client_id": "3MVG9client",
        "username": "etl@acme.com",
        "private_key": key_file,
        "passphrase": " pass phrase ",  # passphrases are taken verbatim
        "login_url": "https://acme.my.salesforce.com",
        "audience": "https://login.salesforce.com",
        "site": "/customers",
        "api_version": "62.0",
        "allow_http_loopback": False,
    }


def test_only_the_required_variables() -> None:
    settings = settings_from_env({**BASE, "SF_JWT_KEY_FILE": "/secrets/sfauth.key"})
    assert settings == {
        "client_id": "3MVG9client",
        "username": "etl@acme.com",
        "private_key": Path("/secrets/sfauth.key"),
    }


def test_empty_variables_count_as_unset() -> None:
    env = {
        **BASE,
        "SF_JWT_KEY_FILE": "/k.pem",
        "SF_JWT_KEY": "",
        "SF_LOGIN_URL": "  ",
        "SF_API_VERSION": "",
        "SF_JWT_KEY_PASSPHRASE": "",
    }
    assert set(settings_from_env(env)) == {"client_id", "username", "private_key"}


def test_instance_url_is_the_cli_name_of_the_login_host() -> None:
    env = {**BASE, "SF_JWT_KEY_FILE": "/k.pem", "SF_INSTANCE_URL": "https://test.salesforce.com"}
    assert settings_from_env(env)["login_url"] == "https://test.salesforce.com"
    env["SF_LOGIN_URL"] = "https://test.salesforce.com/"  # the same host: fine
    assert settings_from_env(env)["login_url"] == "https://test.salesforce.com/"


def test_login_url_and_instance_url_that_differ_are_refused() -> None:
    env = {
        **BASE,
        "SF_JWT_KEY_FILE": "/k.pem",
        "SF_LOGIN_URL": "https://login.salesforce.com",
        "SF_INSTANCE_URL": "https://test.salesforce.com",
    }
    with pytest.raises(ConfigurationError) as caught:
        settings_from_env(env)
    assert str(caught.value) == (
        "SF_LOGIN_URL and SF_INSTANCE_URL are both set and differ; both name the login host "
        "(SF_INSTANCE_URL as in the Salesforce CLI): set one of them"
    )


def test_every_missing_variable_is_named() -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_from_env({})
    assert str(caught.value) == (
        "missing environment variables: SF_CLIENT_ID, SF_USERNAME, "
        "SF_JWT_KEY_FILE or SF_JWT_KEY (set, and not empty)"
    )


def test_one_missing_variable() -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_from_env({"SF_CLIENT_ID": "c", "SF_USERNAME": "u"})
    assert str(caught.value) == (
        "missing environment variable: SF_JWT_KEY_FILE or SF_JWT_KEY (set, and not empty)"
    )


def test_blank_required_variables_are_missing() -> None:
    with pytest.raises(ConfigurationError, match="missing environment variables: SF_CLIENT_ID, "):
        settings_from_env({"SF_CLIENT_ID": " ", "SF_USERNAME": "", "SF_JWT_KEY": KEY_CANARY})


def test_provided_arguments_are_not_required() -> None:
    settings = settings_from_env(
        {"SF_USERNAME": "etl@acme.com"}, provided=("client_id", "private_key")
    )
    assert settings == {"username": "etl@acme.com"}


def test_both_key_variables_set_is_refused() -> None:
    env = {
        **BASE,
        "SF_JWT_KEY_FILE": "/k.pem",
        "SF_JWT_KEY": KEY_CANARY,
        "SF_JWT_KEY_PASSPHRASE": PASS_CANARY,
    }
    with pytest.raises(ConfigurationError) as caught:
        settings_from_env(env)
    assert str(caught.value) == (
        "both SF_JWT_KEY_FILE and SF_JWT_KEY are set; set only one: the path of the private "
        "key file, or the PEM text itself"
    )
    assert "CANARY" not in messages(caught.value)
    assert PASS_CANARY not in messages(caught.value)


def test_inline_key_with_literal_newlines(pkcs8_pem: bytes) -> None:
    flattened = pkcs8_pem.decode().strip().replace("\n", "\\n")
    assert "\n" not in flattened
    settings = settings_from_env({**BASE, "SF_JWT_KEY": flattened})
    assert settings["private_key"] == pkcs8_pem.strip()
    AuthSession(**settings)  # the key loads


def test_inline_key_with_real_newlines_is_kept(pkcs8_pem: bytes) -> None:
    settings = settings_from_env({**BASE, "SF_JWT_KEY": pkcs8_pem.decode() + "\n\n"})
    assert settings["private_key"] == pkcs8_pem.strip()


def test_inline_key_that_is_not_pem_is_refused_without_showing_it() -> None:
    for value in ("/secrets/sfauth.key", base64.b64encode(os.urandom(36)).decode()):
        with pytest.raises(ConfigurationError) as caught:
            settings_from_env({**BASE, "SF_JWT_KEY": value})
        assert str(caught.value) == (
            "SF_JWT_KEY does not hold PEM text (no '-----BEGIN ... PRIVATE KEY-----' line); "
            "put a key file's path in SF_JWT_KEY_FILE instead"
        )
        assert value not in messages(caught.value)


@pytest.mark.parametrize("version", ["62", "v62", "latest-ish", "62.0.0"])
def test_malformed_api_version_names_the_variable(version: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_from_env({**BASE, "SF_JWT_KEY_FILE": "/k.pem", "SF_API_VERSION": version})
    assert str(caught.value).startswith("SF_API_VERSION must be 'latest' or a REST API version")


def test_latest_api_version() -> None:
    env = {**BASE, "SF_JWT_KEY_FILE": "/k.pem", "SF_API_VERSION": "LATEST"}
    assert settings_from_env(env)["api_version"] == "latest"


def test_prefix() -> None:
    env = {"PROD_SF_CLIENT_ID": "c", "PROD_SF_USERNAME": "u", "PROD_SF_JWT_KEY_FILE": "/k.pem"}
    env.update(BASE)  # the unprefixed ones are ignored
    assert settings_from_env(env, prefix="PROD_SF_") == {
        "client_id": "c",
        "username": "u",
        "private_key": Path("/k.pem"),
    }
    with pytest.raises(ConfigurationError) as caught:
        settings_from_env({}, prefix="PROD_SF_")
    assert "PROD_SF_CLIENT_ID, PROD_SF_USERNAME, PROD_SF_JWT_KEY_FILE or PROD_SF_JWT_KEY" in str(
        caught.value
    )


def test_prefix_must_be_a_string() -> None:
    with pytest.raises(ConfigurationError, match="prefix must be a string"):
        settings_from_env({}, prefix=None)  # type: ignore[arg-type]


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SF_JWT_KEY", "SF_LOGIN_URL", "SF_INSTANCE_URL", "SF_AUDIENCE", "SF_SITE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SF_JWT_KEY_PASSPHRASE", raising=False)
    monkeypatch.delenv("SF_API_VERSION", raising=False)
    monkeypatch.delenv("SF_ALLOW_HTTP_LOOPBACK", raising=False)
    monkeypatch.setenv("SF_CLIENT_ID", "from-os")
    monkeypatch.setenv("SF_USERNAME", "os@acme.com")
    monkeypatch.setenv("SF_JWT_KEY_FILE", "/os/key.pem")
    assert settings_from_env() == {
        "client_id": "from-os",
        "username": "os@acme.com",
        "private_key": Path("/os/key.pem"),
    }


def test_no_secret_in_any_message(pkcs8_pem: bytes) -> None:
    secret_key = pkcs8_pem.decode().replace("\n", "\\n")
    body = pkcs8_pem.decode().splitlines()[1]  # a line of base64 key material
    cases: list[dict[str, str]] = [
        {"SF_JWT_KEY": secret_key, "SF_JWT_KEY_PASSPHRASE": PASS_CANARY},  # ids missing
        {**BASE, "SF_JWT_KEY": secret_key, "SF_JWT_KEY_FILE": "/k", "SF_JWT_KEY_PASSPHRASE": "x"},
        {**BASE, "SF_JWT_KEY": body, "SF_JWT_KEY_PASSPHRASE": PASS_CANARY},
        {
            **BASE,
            "SF_JWT_KEY": secret_key,
            "SF_JWT_KEY_PASSPHRASE": PASS_CANARY,
            "SF_API_VERSION": "bad",
        },
        {
            **BASE,
            "SF_JWT_KEY": secret_key,
            "SF_JWT_KEY_PASSPHRASE": PASS_CANARY,
            "SF_LOGIN_URL": "https://a.example",
            "SF_INSTANCE_URL": "https://b.example",
        },
    ]
    for env in cases:
        with pytest.raises(ConfigurationError) as caught:
            settings_from_env(env)
        shown = messages(caught.value)
        assert body not in shown
        assert PASS_CANARY not in shown
        assert "\\n" not in shown


@pytest.fixture
def emulator_env(emulator: Emulator, creds: EmulatorCredentials, tmp_path: Path) -> dict[str, str]:
    """``SF_*`` variables for ``creds`` on ``emulator``, the key in a file."""
    key_file = creds.write_private_key(tmp_path / "sfauth.key")
    return {
        "SF_CLIENT_ID": creds.client_id,
        "SF_USERNAME": creds.username,
        "SF_JWT_KEY_FILE": str(key_file),
        "SF_INSTANCE_URL": emulator.url,
    }


async def test_settings_build_a_working_session(
    emulator: Emulator, creds: EmulatorCredentials, emulator_env: dict[str, str]
) -> None:
    settings: dict[str, Any] = settings_from_env(emulator_env)
    async with AuthSession(**settings, allow_http_loopback=True) as sf:
        token = await sf.token()
    assert token.user_id == creds.user_id
    assert emulator.token_request_count == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" Yes ", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("0", False),
    ],
)
def test_allow_http_loopback(value: str, expected: bool) -> None:
    env = {**BASE, "SF_JWT_KEY_FILE": "/k.pem", "SF_ALLOW_HTTP_LOOPBACK": value}
    assert settings_from_env(env)["allow_http_loopback"] is expected


@pytest.mark.parametrize("value", ["maybe", "2", "on", "t"])
def test_allow_http_loopback_other_values_are_refused(value: str) -> None:
    env = {**BASE, "SF_JWT_KEY_FILE": "/k.pem", "SF_ALLOW_HTTP_LOOPBACK": value}
    with pytest.raises(ConfigurationError) as caught:
        settings_from_env(env)
    assert str(caught.value) == (
        "SF_ALLOW_HTTP_LOOPBACK must be one of true, false, 1, 0, yes, no (any case); "
        f"got {value!r}"
    )
    with pytest.raises(ConfigurationError) as caught:
        settings_from_env({f"PROD_{name}": v for name, v in env.items()}, prefix="PROD_SF_")
    assert str(caught.value).startswith("PROD_SF_ALLOW_HTTP_LOOPBACK must be one of ")


def test_allow_http_loopback_unset_empty_or_provided() -> None:
    env = {**BASE, "SF_JWT_KEY_FILE": "/k.pem"}
    assert "allow_http_loopback" not in settings_from_env(env)
    assert "allow_http_loopback" not in settings_from_env({**env, "SF_ALLOW_HTTP_LOOPBACK": " "})
    provided = settings_from_env(
        {**env, "SF_ALLOW_HTTP_LOOPBACK": "maybe"}, provided=["allow_http_loopback"]
    )
    assert "allow_http_loopback" not in provided  # the caller's value wins, unread


async def test_from_env_reaches_the_emulator_over_http(
    emulator: Emulator, creds: EmulatorCredentials, emulator_env: dict[str, str]
) -> None:
    env = {**emulator_env, "SF_ALLOW_HTTP_LOOPBACK": "true"}
    async with AuthSession.from_env(env) as sf:
        token = await sf.token()
    assert token.user_id == creds.user_id
    assert emulator.token_request_count == 1
    with pytest.raises(ConfigurationError) as caught:
        AuthSession.from_env({**env, "SF_ALLOW_HTTP_LOOPBACK": "no"})
    assert str(caught.value) == (
        f"login_url {emulator.url!r} uses plain http; pass allow_http_loopback=True to talk "
        "to a local emulator over http (or set SF_ALLOW_HTTP_LOOPBACK=true)"
    )


def test_pem_text_in_the_key_file_variable_is_named_as_such(creds: EmulatorCredentials) -> None:
    env = {
        "SF_CLIENT_ID": "c",
        "SF_USERNAME": "u",
        "SF_JWT_KEY_FILE": creds.private_key_pem.decode(),
    }
    with pytest.raises(ConfigurationError) as info:
        settings_from_env(env)
    assert str(info.value) == (
        "SF_JWT_KEY_FILE holds PEM text, not a path; put the key itself in SF_JWT_KEY (or its "
        "file's path in SF_JWT_KEY_FILE)"
    )
    assert "PRIVATE KEY" not in str(info.value)
