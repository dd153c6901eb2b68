from __future__ import annotations

import json

import pytest

from sfauth import (
    InvalidClientError,
    InvalidGrantError,
    TokenEndpointError,
    TokenResponseError,
    TransientTokenError,
    UnsupportedGrantTypeError,
)
from sfauth._token import Token, classify_token_error, parse_token_response

from .conftest import fake_session_id

URL = "https://acme.my.salesforce.com/services/oauth2/token"
AUD = "https://login.salesforce.com"
ACCESS = fake_session_id("00D5e000000AbCdE")

SEED_RESPONSE = {
    "access_token": ACCESS,
    "scope": "web openid api full",
    "instance_url": "https://acme.my.salesforce.com",
    "id": "https://login.salesforce.com/id/00D5e000000AbCdEAA/0055e000001XyZaAAB",
    "token_type": "Bearer",
}


def parse(body: object, status: int = 200) -> Token:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_token_response(status, raw, token_url=URL, audience=AUD, obtained_at=1234.5)


def test_parses_the_seed_response() -> None:
    token = parse(SEED_RESPONSE)
    assert token == Token(
        access_token=ACCESS,
        instance_url="https://acme.my.salesforce.com",
        id="https://login.salesforce.com/id/00D5e000000AbCdEAA/0055e000001XyZaAAB",
        org_id="00D5e000000AbCdEAA",
        user_id="0055e000001XyZaAAB",
        scope="web openid api full",
        token_type="Bearer",
        issued_at=None,
        obtained_at=1234.5,
    )


def test_optional_fields_and_extras() -> None:
    body = dict(
        SEED_RESPONSE,
        issued_at="1696508222000",
        signature="c2lnbmF0dXJl",
        sfdc_community_url="https://acme.my.site.com/customers",
        sfdc_community_id="0DB5e000000XXXXGAA",
        something_new={"nested": True},
        instance_url="https://acme.my.salesforce.com/",
    )
    token = parse(body)
    assert token.issued_at == 1696508222000
    assert token.sfdc_community_url == "https://acme.my.site.com/customers"
    assert token.sfdc_community_id == "0DB5e000000XXXXGAA"
    assert token.instance_url == "https://acme.my.salesforce.com"


def test_repr_and_str_never_show_the_token() -> None:
    token = parse(SEED_RESPONSE)
    for text in (repr(token), str(token), f"{token}"):
        assert ACCESS not in text
        assert ACCESS.split("!", 1)[1] not in text
        assert "access_token=<redacted>" in text


def test_as_dict_masks_unless_asked() -> None:
    token = parse(dict(SEED_RESPONSE, issued_at="1696508222000"))
    assert token.as_dict() == {
        "access_token": "00D5e000000AbCdE!****",
        "scope": "web openid api full",
        "instance_url": "https://acme.my.salesforce.com",
        "id": "https://login.salesforce.com/id/00D5e000000AbCdEAA/0055e000001XyZaAAB",
        "token_type": "Bearer",
        "issued_at": "1696508222000",
        "org_id": "00D5e000000AbCdEAA",
        "user_id": "0055e000001XyZaAAB",
    }
    assert token.as_dict(show_token=True)["access_token"] == ACCESS


def test_token_is_frozen() -> None:
    token = parse(SEED_RESPONSE)
    with pytest.raises(AttributeError):
        token.access_token = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        (b"", "is not a JSON object"),
        (b"<html>maintenance</html>", "is not a JSON object"),
        (b'{"access_token": "00D', "is not a JSON object"),
        (b"[]", "is not a JSON object"),
        (
            {k: v for k, v in SEED_RESPONSE.items() if k != "access_token"},
            "access_token is missing",
        ),
        (
            {k: v for k, v in SEED_RESPONSE.items() if k != "instance_url"},
            "instance_url is missing",
        ),
        (
            dict(SEED_RESPONSE, access_token=12),
            "access_token is missing or not a non-empty string",
        ),
        (
            dict(SEED_RESPONSE, instance_url="acme.my.salesforce.com"),
            "is not an absolute http(s) URL",
        ),
        (dict(SEED_RESPONSE, token_type="MAC"), "token_type is 'MAC', expected 'Bearer'"),
        (dict(SEED_RESPONSE, id="https://login.salesforce.com/whoami"), "is not an identity URL"),
        (dict(SEED_RESPONSE, id=None), "id (the identity URL) is missing"),
        (dict(SEED_RESPONSE, scope=["api"]), "scope is not a string"),
        (dict(SEED_RESPONSE, issued_at="yesterday"), "issued_at is not epoch milliseconds"),
    ],
)
def test_unusable_success_bodies(body: object, phrase: str) -> None:
    with pytest.raises(TokenResponseError) as info:
        parse(body)
    assert phrase in str(info.value)
    assert info.value.status == 200
    assert "00D5e000000AbCdE!" not in str(info.value)


# Every row of design.md section 2, "Token endpoint errors".
ROWS = [
    (
        "invalid_grant",
        "user hasn't approved this consumer",
        InvalidGrantError,
        "Pre-authorize the user's profile or permission set",
    ),
    (
        "invalid_grant",
        "audience is invalid",
        InvalidGrantError,
        "Set audience to https://login.salesforce.com",
    ),
    (
        "invalid_grant",
        "invalid assertion",
        InvalidGrantError,
        "The signature does not match the certificate",
    ),
    (
        "invalid_grant",
        "expired authorization code",
        InvalidGrantError,
        "check this machine's clock",
    ),
    ("invalid_grant", "inactive user", InvalidGrantError, "The user is deactivated or frozen"),
    (
        "invalid_grant",
        "authentication failure",
        InvalidGrantError,
        "check the user's login IP ranges",
    ),
    (
        "invalid_client_id",
        "client identifier invalid",
        InvalidClientError,
        "client_id is not the consumer key",
    ),
    (
        "app_not_found",
        "External client app is not installed in this org",
        InvalidClientError,
        "is not installed in this org",
    ),
    (
        "invalid_app_access",
        "user is not admin approved to access this app",
        InvalidClientError,
        "The user is not approved for this app",
    ),
    (
        "unsupported_grant_type",
        "grant type not supported",
        UnsupportedGrantTypeError,
        "must be form-encoded with grant_type=",
    ),
    (
        "unknown_error",
        "retry your request",
        TransientTokenError,
        "A transient error on Salesforce's side",
    ),
]


@pytest.mark.parametrize(("error", "description", "cls", "hint"), ROWS)
def test_error_rows_map_to_typed_errors(
    error: str, description: str, cls: type[TokenEndpointError], hint: str
) -> None:
    body = json.dumps({"error": error, "error_description": description}).encode()
    exc = classify_token_error(400, body, token_url=URL, audience=AUD)
    assert type(exc) is cls
    assert exc.error == error
    assert exc.error_description == description
    assert exc.token_url == URL
    assert exc.audience == AUD
    assert exc.status == 400
    assert hint in exc.hint
    assert exc.retryable is (cls is TransientTokenError)
    assert str(exc) == (
        f"{error}: {description} (HTTP 400 from POST {URL}, aud={AUD}). {exc.hint}"
    )


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_html_is_transient_with_snippet(status: int) -> None:
    body = b"<html><body>\n  Salesforce is down for maintenance. \n</body></html>"
    exc = classify_token_error(status, body, token_url=URL, audience=AUD)
    assert type(exc) is TransientTokenError
    assert exc.error == f"http_{status}"
    assert exc.error_description == (
        f"the token endpoint answered HTTP {status} with an HTML page: "
        "'<html><body> Salesforce is down for maintenance. </body></html>'"
    )


def test_non_json_4xx_is_permanent_and_snippet_is_short_and_scrubbed() -> None:
    body = (b"oops " + ACCESS.encode() + b" ") * 100
    exc = classify_token_error(404, body, token_url=URL, audience=AUD)
    assert type(exc) is TokenEndpointError  # a wrong login_url or site: retrying won't help
    assert exc.retryable is False
    assert ACCESS not in str(exc)
    assert "<redacted>" in exc.error_description
    assert len(exc.error_description) < 250
    assert "Check that login_url and site point at a Salesforce token endpoint" in exc.hint


@pytest.mark.parametrize("status", [408, 429])
def test_408_and_429_are_transient_whatever_the_body(status: int) -> None:
    for body in (b"busy", b'{"error": "rate_limited", "error_description": "slow down"}'):
        exc = classify_token_error(status, body, token_url=URL, audience=AUD)
        assert isinstance(exc, TransientTokenError)


def test_error_description_is_scrubbed_and_capped() -> None:
    body = json.dumps(
        {"error": "invalid_grant", "error_description": f"bad {ACCESS} " + "x" * 5000}
    ).encode()
    exc = classify_token_error(400, body, token_url=URL, audience=AUD)
    assert ACCESS not in str(exc)
    assert len(exc.error_description) == 2000
    assert exc.error_description.startswith("bad <redacted> xxx")
    assert exc.error_description.endswith("x…")


def test_unknown_json_error_code_is_permanent() -> None:
    body = b'{"error": "brand_new_error", "error_description": "whatever"}'
    exc = classify_token_error(400, body, token_url=URL, audience=AUD)
    assert type(exc) is TokenEndpointError
    assert exc.retryable is False
    assert exc.hint == "See Salesforce's OAuth error codes for this error."


def test_json_error_on_5xx_is_transient() -> None:
    body = b'{"error": "server_error", "error_description": "try later"}'
    exc = classify_token_error(503, body, token_url=URL, audience=AUD)
    assert type(exc) is TransientTokenError


def test_parse_raises_the_classified_error() -> None:
    body = {"error": "invalid_grant", "error_description": "audience is invalid"}
    with pytest.raises(InvalidGrantError, match="audience is invalid"):
        parse(body, status=400)
