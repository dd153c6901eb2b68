"""Settings: validated once, shared by AuthSession and the middleware, never showing secrets."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sfauth import AuthSession, ConfigurationError, RetryPolicy, SalesforceAuthMiddleware
from sfauth._settings import DEFAULT_TIMEOUT, Options, Settings, settings_from

API_VERSION_ERROR = (
    "api_version must be 'latest' or a REST API version such as '62.0' (or 'v62.0'); got {}"
)


@pytest.fixture
def options(pkcs8_pem: bytes) -> dict[str, Any]:
    return {
        "client_id": "3MVG9-consumer-key",
        "username": "etl@example.com",
        "private_key": pkcs8_pem,
    }


@pytest.fixture
def base(options: dict[str, Any]) -> Settings:
    return Settings(**options)


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"refresh_timeout": 0}, "refresh_timeout must be a finite number of seconds > 0; got 0"),
        (
            {"refresh_timeout": float("inf")},
            "refresh_timeout must be a finite number of seconds > 0; got inf",
        ),
        (
            {"keepalive_timeout": float("nan")},
            "keepalive_timeout must be a finite number of seconds >= 0; got nan",
        ),
        (
            {"assertion_lifetime": 181},
            "assertion_lifetime must be > 0 and <= 180 seconds (Salesforce refuses an exp more "
            "than 3 minutes ahead); got 181",
        ),
        ({"passphrase": 123}, "passphrase must be str or bytes; got int"),
        (
            {"refresh_timeout": True},
            "refresh_timeout must be a finite number of seconds > 0; got True",
        ),
        (
            {"refresh_cooldown": -1},
            "refresh_cooldown must be a finite number of seconds >= 0; got -1",
        ),
        ({"max_token_age": 0.0}, "max_token_age must be a finite number of seconds > 0; got 0.0"),
        ({"max_relogins": 0}, "max_relogins must be an int >= 1; got 0"),
        ({"failure_threshold": 1.5}, "failure_threshold must be an int >= 1; got 1.5"),
        ({"limit": -1}, "limit must be an int >= 0 (0 = unlimited); got -1"),
        ({"limit_per_host": "5"}, "limit_per_host must be an int >= 0 (0 = unlimited); got '5'"),
        ({"usage_warning": 1.5}, "usage_warning must be in (0, 1]; got 1.5"),
        ({"usage_warning": 0}, "usage_warning must be in (0, 1]; got 0"),
        ({"usage_warning": True}, "usage_warning must be in (0, 1]; got True"),
        (
            {"timeout": 5},
            "timeout must be an aiohttp.ClientTimeout, e.g. aiohttp.ClientTimeout(total=60); "
            "got 5",
        ),
        ({"ssl": "yes"}, "ssl must be True, False or an ssl.SSLContext; got str"),
        (
            {"token_store": object()},
            "token_store must implement sfauth.stores.TokenStore (e.g. RedisTokenStore); "
            "got object",
        ),
        ({"retry": "x"}, "retry must be a sfauth.RetryPolicy; got str"),
        ({"max_in_flight": 0}, "max_in_flight must be an int >= 1; got 0"),
        ({"api_version": "sixty-two"}, API_VERSION_ERROR.format("'sixty-two'")),
        ({"api_version": 62.0}, API_VERSION_ERROR.format("float")),
        (
            {"login_url": "ftp://login.example.com"},
            "login_url 'ftp://login.example.com' must use https",
        ),
    ],
)
def test_a_malformed_setting_is_a_configuration_error_naming_it(
    options: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings(**options, **change)
    assert str(info.value) == message


def test_retry_none_means_the_default_policy(options: dict[str, Any]) -> None:
    settings = Settings(**options, retry=None)  # type: ignore[arg-type]
    assert settings.retry == RetryPolicy()
    assert type(settings.retry) is RetryPolicy
    assert settings == Settings(**options)


def test_defaults(base: Settings) -> None:
    assert (base.limit, base.limit_per_host, base.max_in_flight) == (100, 0, None)
    assert base.timeout is DEFAULT_TIMEOUT
    assert (DEFAULT_TIMEOUT.total, DEFAULT_TIMEOUT.sock_connect) == (300.0, 30.0)
    assert (base.ssl, base.api_version, base.max_relogins) == (True, "latest", 5)


def test_api_version_is_stored_in_canonical_form(options: dict[str, Any]) -> None:
    assert Settings(**options, api_version="v62.0").api_version == "62.0"
    assert Settings(**options, api_version=" LATEST ").api_version == "latest"


# --- secrets never shown -------------------------------------------------------------------


def test_repr_shows_neither_the_private_key_nor_the_passphrase(
    rsa_key: rsa.RSAPrivateKey, options: dict[str, Any]
) -> None:
    passphrase = secrets.token_urlsafe(16)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()
    settings = Settings(**{**options, "private_key": pem, "passphrase": passphrase})
    session = AuthSession(settings)  # loads the key: the passphrase is the right one
    shown = [
        repr(settings),
        str(settings),
        repr(settings.replace(limit=3)),
        repr(session),
        repr(session.settings),
        repr(session.auth),
        repr(session.auth.settings),
    ]
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    assert len(body) > 20
    for text in shown:
        assert passphrase not in text
        assert "PRIVATE KEY" not in text
        assert not [line for line in body if line in text]
    assert shown[0].startswith(
        "Settings(client_id='3MVG9-consumer-key', username='etl@example.com', "
        "login_url='https://login.salesforce.com', audience=None,"
    )


def test_repr_of_a_loaded_key_object_does_not_show_it(
    rsa_key: rsa.RSAPrivateKey, options: dict[str, Any]
) -> None:
    settings = Settings(**{**options, "private_key": rsa_key})
    assert "RSAPrivateKey" not in repr(settings)
    assert "private_key" not in repr(settings)


# --- the derived flow ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login_url", "site", "token_url", "audience"),
    [
        (
            "https://login.salesforce.com",
            "",
            "https://login.salesforce.com/services/oauth2/token",
            "https://login.salesforce.com",
        ),
        (
            "https://test.salesforce.com/",
            "",
            "https://test.salesforce.com/services/oauth2/token",
            "https://test.salesforce.com",
        ),
        (
            "https://acme.my.salesforce.com",
            "",
            "https://acme.my.salesforce.com/services/oauth2/token",
            "https://login.salesforce.com",
        ),
        (
            "https://acme--uat.sandbox.my.salesforce.com",
            "",
            "https://acme--uat.sandbox.my.salesforce.com/services/oauth2/token",
            "https://test.salesforce.com",
        ),
        (
            "https://acme.my.site.com",
            "/customers/",
            "https://acme.my.site.com/customers/services/oauth2/token",
            "https://acme.my.site.com/customers",
        ),
    ],
)
def test_flow_is_derived_from_the_login_settings(
    options: dict[str, Any], login_url: str, site: str, token_url: str, audience: str
) -> None:
    settings = Settings(**options, login_url=login_url, site=site)
    assert settings.flow.token_url == token_url
    assert settings.flow.audience == audience
    assert settings.audience is None  # the field keeps what was given


def test_an_explicit_audience_is_kept(options: dict[str, Any]) -> None:
    settings = Settings(
        **options,
        login_url="https://acme.my.salesforce.com",
        audience="https://test.salesforce.com",
    )
    assert settings.flow.audience == "https://test.salesforce.com"
    assert settings.flow.token_url == "https://acme.my.salesforce.com/services/oauth2/token"


def test_flow_is_not_an_argument(options: dict[str, Any], base: Settings) -> None:
    with pytest.raises(TypeError):
        Settings(**options, flow=base.flow)  # type: ignore[call-arg]


# --- replace -------------------------------------------------------------------------------


def test_replace_validates_and_derives_the_flow_again(base: Settings) -> None:
    with pytest.raises(ConfigurationError) as info:
        base.replace(limit=-1)
    assert str(info.value) == "limit must be an int >= 0 (0 = unlimited); got -1"
    with pytest.raises(ConfigurationError) as info:
        base.replace(retry="x")
    assert str(info.value) == "retry must be a sfauth.RetryPolicy; got str"
    sandbox = base.replace(login_url="https://test.salesforce.com", limit=7)
    assert sandbox.flow.token_url == "https://test.salesforce.com/services/oauth2/token"
    assert sandbox.flow.audience == "https://test.salesforce.com"
    assert sandbox.limit == 7
    assert sandbox.private_key is base.private_key
    assert base.limit == 100  # the original is unchanged
    assert base.flow.token_url == "https://login.salesforce.com/services/oauth2/token"


def test_replace_with_an_unknown_name_is_a_type_error(base: Settings) -> None:
    with pytest.raises(TypeError, match="'bogus'"):
        base.replace(bogus=1)


def test_flow_is_derived_and_cannot_be_set(base: Settings) -> None:
    with pytest.raises(TypeError) as info:
        base.replace(flow=None)
    assert str(info.value) == "flow is derived from the other settings; it cannot be set"


def test_settings_are_frozen(base: Settings) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.limit = 5  # type: ignore[misc]


# --- Options cannot drift from Settings ----------------------------------------------------


def test_options_name_exactly_the_init_fields_of_settings() -> None:
    init_fields = [f.name for f in dataclasses.fields(Settings) if f.init]
    assert "flow" not in init_fields
    assert len(init_fields) == len(dataclasses.fields(Settings)) - 1  # every field but flow
    assert list(Options.__annotations__) == init_fields
    assert Options.__required_keys__ == frozenset()


def test_settings_from(base: Settings, options: dict[str, Any]) -> None:
    assert settings_from(base, {}, owner="X") is base
    assert settings_from(base, {"limit": 9}, owner="X") == base.replace(limit=9)
    assert settings_from(None, options, owner="X") == base  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError) as info:
        settings_from(options, {}, owner="X")  # type: ignore[arg-type]
    assert str(info.value) == (
        "settings must be a sfauth.Settings; got dict (pass the options as keyword arguments "
        "instead)"
    )


# --- AuthSession and the middleware take Settings --------------------------------------------


def test_auth_session_with_settings_and_an_override(base: Settings) -> None:
    session = AuthSession(base, limit=7)
    assert session.settings == base.replace(limit=7)
    assert session.settings.limit == 7
    assert session.settings.client_id == base.client_id
    assert session.settings.timeout is base.timeout
    assert session.auth.settings.max_in_flight == 7  # sends in flight follow the pool
    assert session.auth.config == base.flow


def test_auth_session_from_keywords_as_before(options: dict[str, Any]) -> None:
    session = AuthSession(**options, limit=3, keepalive_timeout=5.0)
    assert session.settings == Settings(**options, limit=3, keepalive_timeout=5.0)
    assert session.auth.settings.max_in_flight == 3
    assert session.auth.config.token_url == "https://login.salesforce.com/services/oauth2/token"


def test_auth_session_with_settings_alone_uses_them_unchanged(base: Settings) -> None:
    session = AuthSession(base)
    assert session.settings is base
    assert session.auth.settings == base.replace(max_in_flight=100)


def test_an_explicit_max_in_flight_is_kept(base: Settings) -> None:
    session = AuthSession(base, limit=10, max_in_flight=3)
    assert session.settings.limit == 10
    assert session.auth.settings.max_in_flight == 3
    assert session.auth.settings is session.settings


def test_an_unlimited_pool_means_no_send_gate(base: Settings) -> None:
    session = AuthSession(base, limit=0)
    assert session.auth.settings.max_in_flight is None
    assert session.auth._engine.gate is None  # nothing else shows it without sending


def test_the_middleware_takes_settings(base: Settings) -> None:
    auth = SalesforceAuthMiddleware(base)
    assert auth.settings is base
    assert auth.config is base.flow
    assert auth.retry is base.retry
    assert auth.settings.max_in_flight is None  # no cap on its own
    capped = SalesforceAuthMiddleware(base, max_in_flight=4, retry=RetryPolicy.none())
    assert capped.settings == base.replace(max_in_flight=4, retry=RetryPolicy.none())


def test_a_settings_argument_that_is_not_settings_is_a_configuration_error(
    options: dict[str, Any],
) -> None:
    message = (
        "settings must be a sfauth.Settings; got dict (pass the options as keyword arguments "
        "instead)"
    )
    with pytest.raises(ConfigurationError) as info:
        AuthSession(options)  # type: ignore[arg-type]
    assert str(info.value) == message
    with pytest.raises(ConfigurationError) as info:
        SalesforceAuthMiddleware(options)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_settings_passed_by_keyword_is_checked_like_a_positional_one(
    options: dict[str, Any],
) -> None:
    with pytest.raises(ConfigurationError):
        AuthSession(settings=options)  # type: ignore[call-arg]


def test_an_unknown_keyword_is_a_type_error(base: Settings, options: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="'pool_size'"):
        AuthSession(**options, pool_size=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'pool_size'"):
        AuthSession(base, pool_size=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'pool_size'"):
        SalesforceAuthMiddleware(base, pool_size=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "loginurl",
            "AuthSession got 'loginurl', which is not a setting: did you mean 'login_url'?",
        ),
        (
            "instance_url",
            "AuthSession got 'instance_url', which is not a setting: the org's instance_url comes "
            "from the token response; the login host is login_url",
        ),
        ("pool_size", "AuthSession got 'pool_size', which is not a setting: see sfauth.Settings"),
    ],
)
def test_an_unknown_keyword_names_the_closest_setting(
    options: dict[str, Any], name: str, message: str
) -> None:
    with pytest.raises(TypeError) as info:
        AuthSession(**options, **{name: "x"})
    assert str(info.value) == message


def test_a_missing_required_setting_is_a_type_error(pkcs8_pem: bytes) -> None:
    with pytest.raises(TypeError, match="'username'"):
        AuthSession(client_id="c", private_key=pkcs8_pem)


def test_a_malformed_override_is_a_configuration_error(base: Settings) -> None:
    with pytest.raises(ConfigurationError) as info:
        AuthSession(base, timeout=30)  # type: ignore[arg-type]
    assert str(info.value).startswith("timeout must be an aiohttp.ClientTimeout")
    session = AuthSession(base, timeout=aiohttp.ClientTimeout(total=30))
    assert session.settings.timeout == aiohttp.ClientTimeout(total=30)
