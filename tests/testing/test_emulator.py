"""Tests of sfauth.testing.Emulator over real sockets."""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import math
import re
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sfauth.testing import (
    FAULT_KINDS,
    Emulator,
    EmulatorCredentials,
    RequestRecord,
    ScriptedResponse,
    TokenRequestRecord,
)
from tests.conftest import pem_header

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JSON_CT = "application/json;charset=UTF-8"
TOKEN_PATH = "/services/oauth2/token"
V = "/services/data/v62.0"
SESSION_INVALID = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
ID_RE = re.compile(r"^[0-9A-Za-z]{18}$")
_DROP = object()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def emu(clock: FakeClock) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock) as emulator:
        yield emulator


@pytest.fixture
def creds(emu: Emulator) -> EmulatorCredentials:
    return emu.create_credentials(username="etl@example.com")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def default_claims(creds: EmulatorCredentials) -> dict[str, object]:
    """The claims of a valid assertion for ``creds``, expiring in two minutes."""
    return {
        "iss": creds.client_id,
        "sub": creds.username,
        "aud": creds.audience,
        "exp": int(time.time()) + 120,
    }


def make_assertion(
    creds: EmulatorCredentials, *, key: bytes | None = None, **overrides: object
) -> str:
    claims = {**default_claims(creds), **overrides}
    claims = {k: v for k, v in claims.items() if v is not _DROP}
    return jwt.encode(claims, key or creds.private_key_pem, algorithm="RS256")


async def post_token(
    http: aiohttp.ClientSession,
    base: str,
    form: dict[str, str],
    *,
    path: str = TOKEN_PATH,
    **kwargs: Any,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.post(base + path, data=form, **kwargs) as response:
        body = await response.read()
        payload = await response.json(content_type=None) if body else None
        return response.status, payload, response


async def login(
    http: aiohttp.ClientSession, emu: Emulator, creds: EmulatorCredentials, **kwargs: Any
) -> dict[str, str]:
    form = {"grant_type": JWT_BEARER, "assertion": make_assertion(creds)}
    status, payload, _ = await post_token(http, emu.url, form, **kwargs)
    assert status == 200, payload
    assert isinstance(payload, dict)
    return payload


def bearer(token: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['access_token']}"}


async def get_json(
    http: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.get(url, **kwargs) as response:
        body = await response.read()
        return response.status, (await response.json() if body else None), response


# ---------------------------------------------------------------------------------------------
# token endpoint


async def test_token_success_shape(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    before_ms = int(time.time() * 1000)
    form = {"grant_type": JWT_BEARER, "assertion": make_assertion(creds)}
    status, payload, response = await post_token(http, emu.url, form)
    after_ms = int(time.time() * 1000)

    assert status == 200
    assert response.headers["Content-Type"] == JSON_CT
    assert set(payload) == {
        "access_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    }
    org_id, _, secret = payload["access_token"].partition("!")
    assert org_id == creds.org_id
    assert len(secret) >= 86
    assert re.fullmatch(r"[A-Za-z0-9_-]+", secret)
    assert payload["scope"] == "web openid api full"
    assert payload["instance_url"] == emu.url
    assert payload["token_type"] == "Bearer"
    assert payload["id"] == f"{emu.url}/id/{creds.org_id}/{creds.user_id}"
    assert before_ms <= int(payload["issued_at"]) <= after_ms
    assert len(base64.b64decode(payload["signature"], validate=True)) == 32
    assert creds.org_id.startswith("00D")
    assert ID_RE.match(creds.org_id)
    assert creds.user_id.startswith("005")
    assert ID_RE.match(creds.user_id)

    assert emu.token_request_count == 1
    assert emu.counters[("token", 200)] == 1
    record = emu.token_requests[0]
    assert isinstance(record, TokenRequestRecord)
    assert record.assertion == form["assertion"]
    assert record.header == {"alg": "RS256", "typ": "JWT"}
    assert record.claims["iss"] == creds.client_id
    assert record.claims["sub"] == creds.username
    assert record.path == TOKEN_PATH
    assert record.host == emu.url.removeprefix("http://")
    assert record.status == 200
    assert record.error is None
    assert record.form == form
    assert record.content_type == "application/x-www-form-urlencoded"
    assert record.site == ""
    assert record.scripted is False

    second = await login(http, emu, creds)
    assert second["access_token"] != payload["access_token"]
    assert emu.token_request_count == 2
    assert emu.active_sessions == 2


@pytest.mark.parametrize("audience", ["https://login.salesforce.com", "EMU_URL"])
async def test_token_accepted_audiences(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession, audience: str
) -> None:
    aud = emu.url if audience == "EMU_URL" else audience
    form = {"grant_type": JWT_BEARER, "assertion": make_assertion(creds, aud=aud)}
    status, _, _ = await post_token(http, emu.url, form)
    assert status == 200


async def test_production_refuses_the_sandbox_audience_and_vice_versa(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    form = {
        "grant_type": JWT_BEARER,
        "assertion": make_assertion(creds, aud="https://test.salesforce.com"),
    }
    status, payload, _ = await post_token(http, emu.url, form)
    assert (status, payload["error_description"]) == (400, "audience is invalid")
    async with Emulator(sandbox=True) as sandbox:
        sandbox_creds = sandbox.create_credentials()
        assert sandbox.audiences == {"https://test.salesforce.com", sandbox.url}
        form["assertion"] = make_assertion(sandbox_creds, aud="https://test.salesforce.com")
        status, _, _ = await post_token(http, sandbox.url, form)
        assert status == 200
        form["assertion"] = make_assertion(sandbox_creds, aud="https://login.salesforce.com")
        status, payload, _ = await post_token(http, sandbox.url, form)
        assert (status, payload["error_description"]) == (400, "audience is invalid")


async def test_token_audiences_are_mutable(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    assert emu.audiences == {"https://login.salesforce.com", emu.url}
    emu.audiences.discard("https://login.salesforce.com")
    emu.audiences.add("https://acme.my.salesforce.com")
    form = {"grant_type": JWT_BEARER, "assertion": make_assertion(creds)}
    status, payload, _ = await post_token(http, emu.url, form)
    assert (status, payload["error_description"]) == (400, "audience is invalid")
    form["assertion"] = make_assertion(creds, aud="https://acme.my.salesforce.com")
    status, _, _ = await post_token(http, emu.url, form)
    assert status == 200


async def test_token_exp_at_the_three_minute_limit_is_accepted(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    assertion = make_assertion(creds, exp=int(time.time()) + 180)
    status, _, _ = await post_token(
        http, emu.url, {"grant_type": JWT_BEARER, "assertion": assertion}
    )
    assert status == 200


@pytest.mark.parametrize(
    "exp",
    [
        pytest.param(lambda now: str(int(now) + 180), id="numeric string (simple-salesforce)"),
        pytest.param(lambda now: now + 60.5, id="float"),
        pytest.param(lambda now: int(now * 1000) + 300, id="milliseconds (Salesforce CLI)"),
        pytest.param(lambda now: int(now) + 300, id="beyond three minutes"),
    ],
)
async def test_token_exp_forms_that_salesforce_accepts(
    emu: Emulator,
    creds: EmulatorCredentials,
    http: aiohttp.ClientSession,
    exp: Callable[[float], object],
) -> None:
    value = exp(time.time())
    assertion = make_assertion(creds, exp=value)
    status, payload, _ = await post_token(
        http, emu.url, {"grant_type": JWT_BEARER, "assertion": assertion}
    )
    assert status == 200, payload
    assert emu.token_requests[0].claims["exp"] == value
    assert emu.active_sessions == 1


FormBuilder = Callable[[Emulator, EmulatorCredentials], dict[str, str]]


def _form(assertion: str, grant_type: str | None = JWT_BEARER) -> dict[str, str]:
    form = {"assertion": assertion}
    if grant_type is not None:
        form["grant_type"] = grant_type
    return form


def _other_user(emu: Emulator, creds: EmulatorCredentials, **kwargs: Any) -> dict[str, str]:
    emu.register_user("other@example.com", client_id=creds.client_id, **kwargs)
    return _form(make_assertion(creds, sub="other@example.com"))


def _wrong_key(emu: Emulator, creds: EmulatorCredentials) -> dict[str, str]:
    other = emu.create_credentials(username="someone@example.com")
    return _form(make_assertion(creds, key=other.private_key_pem))


def _approved_elsewhere(emu: Emulator, creds: EmulatorCredentials) -> dict[str, str]:
    other = emu.create_credentials(username="someone@example.com")
    return _form(make_assertion(creds, sub=other.username))


def _unsigned(emu: Emulator, creds: EmulatorCredentials) -> dict[str, str]:
    claims = {"iss": creds.client_id, "sub": creds.username, "aud": creds.audience}
    claims["exp"] = int(time.time()) + 60  # type: ignore[assignment]
    return _form(jwt.encode(claims, None, algorithm="none"))


def _hs256(emu: Emulator, creds: EmulatorCredentials) -> dict[str, str]:
    claims = {"iss": creds.client_id, "sub": creds.username, "aud": creds.audience}
    claims["exp"] = int(time.time()) + 60  # type: ignore[assignment]
    return _form(jwt.encode(claims, "s" * 32, algorithm="HS256"))


def _rs384(emu: Emulator, creds: EmulatorCredentials) -> dict[str, str]:
    claims = {"iss": creds.client_id, "sub": creds.username, "aud": creds.audience}
    claims["exp"] = int(time.time()) + 60  # type: ignore[assignment]
    return _form(jwt.encode(claims, creds.private_key_pem, algorithm="RS384"))


ERROR_CASES: list[tuple[str, FormBuilder, str, str]] = [
    (
        "grant_type missing",
        lambda e, c: _form(make_assertion(c), grant_type=None),
        "unsupported_grant_type",
        "grant type not supported",
    ),
    (
        "grant_type password",
        lambda e, c: _form(make_assertion(c), grant_type="password"),
        "unsupported_grant_type",
        "grant type not supported",
    ),
    (
        "assertion missing",
        lambda e, c: {"grant_type": JWT_BEARER},
        "invalid_grant",
        "invalid assertion",
    ),
    ("not a jwt", lambda e, c: _form("not-a-jwt"), "invalid_grant", "invalid assertion"),
    ("garbage segments", lambda e, c: _form("a.b.c"), "invalid_grant", "invalid assertion"),
    ("alg none", _unsigned, "invalid_grant", "invalid assertion"),
    ("alg HS256", _hs256, "invalid_grant", "invalid assertion"),
    ("alg RS384", _rs384, "invalid_grant", "invalid assertion"),
    ("wrong key", _wrong_key, "invalid_grant", "invalid assertion"),
    (
        "unknown iss",
        lambda e, c: _form(make_assertion(c, iss="3MVG9unknown")),
        "invalid_client_id",
        "client identifier invalid",
    ),
    (
        "iss missing",
        lambda e, c: _form(make_assertion(c, iss=_DROP)),
        "invalid_client_id",
        "client identifier invalid",
    ),
    (
        "aud missing",
        lambda e, c: _form(make_assertion(c, aud=_DROP)),
        "invalid_grant",
        "audience is invalid",
    ),
    (
        "aud list",
        lambda e, c: _form(make_assertion(c, aud=["https://login.salesforce.com"])),
        "invalid_grant",
        "audience is invalid",
    ),
    (
        "aud bare host",
        lambda e, c: _form(make_assertion(c, aud="login.salesforce.com")),
        "invalid_grant",
        "audience is invalid",
    ),
    (
        "aud other host",
        lambda e, c: _form(make_assertion(c, aud="https://example.com")),
        "invalid_grant",
        "audience is invalid",
    ),
    (
        "exp missing",
        lambda e, c: _form(make_assertion(c, exp=_DROP)),
        "invalid_grant",
        "invalid assertion",
    ),
    (
        "exp not numeric",
        lambda e, c: _form(make_assertion(c, exp="in two minutes")),
        "invalid_grant",
        "invalid assertion",
    ),
    (
        "exp decimal string",
        lambda e, c: _form(make_assertion(c, exp=f"{time.time() + 60:.1f}")),
        "invalid_grant",
        "invalid assertion",
    ),
    (
        "exp true",
        lambda e, c: _form(make_assertion(c, exp=True)),
        "invalid_grant",
        "invalid assertion",
    ),
    (
        "exp null",
        lambda e, c: _form(make_assertion(c, exp=None)),
        "invalid_grant",
        "invalid assertion",
    ),
    (
        "exp beyond a Java long",
        lambda e, c: _form(make_assertion(c, exp=2**63)),
        "invalid_grant",
        "invalid assertion",
    ),
    (
        "exp past",
        lambda e, c: _form(make_assertion(c, exp=int(time.time()) - 5)),
        "invalid_grant",
        "expired authorization code",
    ),
    (
        "exp past as a string",
        lambda e, c: _form(make_assertion(c, exp=str(int(time.time()) - 5))),
        "invalid_grant",
        "expired authorization code",
    ),
    (
        "sub unknown",
        lambda e, c: _form(make_assertion(c, sub="nobody@example.com")),
        "invalid_grant",
        "user hasn't approved this consumer",
    ),
    (
        "user not approved",
        lambda e, c: _other_user(e, c, approved=False),
        "invalid_grant",
        "user hasn't approved this consumer",
    ),
    (
        "user approved for another app only",
        _approved_elsewhere,
        "invalid_grant",
        "user hasn't approved this consumer",
    ),
    (
        "inactive user",
        lambda e, c: _other_user(e, c, active=False),
        "invalid_grant",
        "inactive user",
    ),
]


@pytest.mark.parametrize(
    ("build", "error", "description"),
    [pytest.param(b, e, d, id=name) for name, b, e, d in ERROR_CASES],
)
async def test_token_errors(
    emu: Emulator,
    creds: EmulatorCredentials,
    http: aiohttp.ClientSession,
    build: FormBuilder,
    error: str,
    description: str,
) -> None:
    form = build(emu, creds)
    status, payload, response = await post_token(http, emu.url, form)
    assert status == 400
    assert payload == {"error": error, "error_description": description}
    assert response.headers["Content-Type"] == JSON_CT
    assert emu.token_request_count == 1
    assert emu.counters == {("token", 400): 1}
    record = emu.token_requests[-1]
    assert (record.status, record.error) == (400, error)
    assert record.assertion == form.get("assertion", "")
    assert emu.active_sessions == 0


async def test_token_request_with_json_body_is_unsupported_grant(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    body = {"grant_type": JWT_BEARER, "assertion": make_assertion(creds)}
    async with http.post(emu.url + TOKEN_PATH, json=body) as response:
        assert response.status == 400
        assert await response.json() == {
            "error": "unsupported_grant_type",
            "error_description": "grant type not supported",
        }
    record = emu.token_requests[0]
    assert record.form == {}
    assert record.content_type == "application/json"


async def test_token_record_keeps_unverified_claims_of_rejected_assertion(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    assertion = make_assertion(creds, aud="https://example.com")
    await post_token(http, emu.url, _form(assertion))
    record = emu.token_requests[0]
    assert record.claims["aud"] == "https://example.com"
    assert record.header["alg"] == "RS256"
    await post_token(http, emu.url, _form("junk"))
    assert (emu.token_requests[1].header, emu.token_requests[1].claims) == ({}, {})


async def test_site_prefix_route_returns_community_fields(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    site_url = emu.url + "/customers"
    for aud in ("https://login.salesforce.com", site_url):
        form = _form(make_assertion(creds, aud=aud))
        status, payload, _ = await post_token(
            http, emu.url, form, path="/customers/services/oauth2/token"
        )
        assert status == 200, payload
        assert payload["sfdc_community_url"] == site_url
        assert payload["sfdc_community_id"].startswith("0DB")
        assert ID_RE.match(payload["sfdc_community_id"])
        assert payload["id"] == f"{emu.url}/id/{creds.org_id}/{creds.user_id}"
        assert payload["instance_url"] == emu.url
    assert emu.token_requests[0].path == "/customers/services/oauth2/token"
    assert emu.token_requests[0].site == "customers"
    ids = {emu.token_requests[0].status, emu.token_requests[1].status}
    assert ids == {200}

    # the site URL is an audience only on its own route
    form = _form(make_assertion(creds, aud=site_url))
    status, payload, _ = await post_token(http, emu.url, form)
    assert (status, payload["error_description"]) == (400, "audience is invalid")
    form = _form(make_assertion(creds, aud=emu.url + "/partners"))
    status, payload, _ = await post_token(
        http, emu.url, form, path="/customers/services/oauth2/token"
    )
    assert (status, payload["error_description"]) == (400, "audience is invalid")

    # plain route: no community fields
    token = await login(http, emu, creds)
    assert "sfdc_community_url" not in token
    assert emu.counters[("token", 200)] == 3


async def test_nested_site_prefix(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    status, payload, _ = await post_token(
        http, emu.url, _form(make_assertion(creds)), path="/a/b/services/oauth2/token"
    )
    assert status == 200
    assert payload["sfdc_community_url"] == emu.url + "/a/b"


# ---------------------------------------------------------------------------------------------
# sessions


async def test_missing_and_unknown_tokens_get_401(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    url = f"{V}/query?q=SELECT+Id+FROM+Account"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        status, payload, response = await get_json(http, emu.url + url, headers=headers)
        assert status == 401
        assert payload == SESSION_INVALID
        assert response.headers["Content-Type"] == JSON_CT
        assert "Sforce-Limit-Info" not in response.headers
    assert emu.counters == {("query", 401): 3}
    assert emu.api_usage == 0


async def test_session_expires_after_inactivity_and_slides(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    token = await login(http, emu, creds)
    url = emu.url + f"{V}/limits"
    clock.now += 7000
    assert (await get_json(http, url, headers=bearer(token)))[0] == 200
    clock.now += 7000  # 14000 s after login but only 7000 s since the last use
    assert (await get_json(http, url, headers=bearer(token)))[0] == 200
    clock.now += 7200  # exactly the timeout: still valid
    assert (await get_json(http, url, headers=bearer(token)))[0] == 200
    clock.now += 7200.5
    status, payload, _ = await get_json(http, url, headers=bearer(token))
    assert (status, payload) == (401, SESSION_INVALID)
    clock.now -= 10_000  # an expired session stays expired
    assert (await get_json(http, url, headers=bearer(token)))[0] == 401
    assert emu.active_sessions == 0


async def test_custom_session_timeout(clock: FakeClock, http: aiohttp.ClientSession) -> None:
    async with Emulator(clock=clock, session_timeout=60.0) as emu:
        creds = emu.create_credentials()
        token = await login(http, emu, creds)
        clock.now += 60.5
        status, _, _ = await get_json(http, emu.url + f"{V}/limits", headers=bearer(token))
        assert status == 401


async def test_revoke_and_expire_all(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    first, second, third = [await login(http, emu, creds) for _ in range(3)]
    url = emu.url + f"{V}/limits"
    assert emu.revoke(first["access_token"]) is True
    assert emu.revoke(first["access_token"]) is False
    assert (await get_json(http, url, headers=bearer(first)))[:2] == (401, SESSION_INVALID)
    assert (await get_json(http, url, headers=bearer(second)))[0] == 200
    emu.expire_all_sessions()
    for token in (second, third):
        assert (await get_json(http, url, headers=bearer(token)))[:2] == (401, SESSION_INVALID)
    # a new login works again
    fresh = await login(http, emu, creds)
    assert (await get_json(http, url, headers=bearer(fresh)))[0] == 200


async def test_oauth_scheme_is_accepted(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    headers = {"Authorization": f"OAuth {token['access_token']}"}
    assert (await get_json(http, emu.url + f"{V}/limits", headers=headers))[0] == 200


async def test_reject_rest_api(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    emu.reject_rest_api = True
    status, payload, response = await get_json(
        http, emu.url + f"{V}/query", params={"q": "SELECT Id FROM Account"}, headers=bearer(token)
    )
    assert status == 401
    assert payload == [
        {
            "message": "This session is not valid for use with the REST API",
            "errorCode": "INVALID_SESSION_ID",
        }
    ]
    assert response.headers["Content-Type"] == JSON_CT
    # unknown tokens still get the ordinary answer; userinfo is not the REST API
    status, payload, _ = await get_json(
        http, emu.url + f"{V}/limits", headers={"Authorization": "Bearer x"}
    )
    assert (status, payload) == (401, SESSION_INVALID)
    status, _, _ = await get_json(
        http, emu.url + "/services/oauth2/userinfo", headers=bearer(token)
    )
    assert status == 200
    emu.reject_rest_api = False
    assert (await get_json(http, emu.url + f"{V}/limits", headers=bearer(token)))[0] == 200


async def test_always_401(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    emu.always_401 = True
    token = await login(http, emu, creds)
    for path in (f"{V}/limits", "/services/oauth2/userinfo", f"{V}/sobjects/Account/x"):
        status, payload, response = await get_json(http, emu.url + path, headers=bearer(token))
        assert (status, payload) == (401, SESSION_INVALID)
        assert "Sforce-Limit-Info" not in response.headers
    assert emu.api_usage == 0
    emu.always_401 = False
    assert (await get_json(http, emu.url + f"{V}/limits", headers=bearer(token)))[0] == 200


# ---------------------------------------------------------------------------------------------
# query


@pytest.fixture
async def paged(clock: FakeClock) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock, page_size=100) as emulator:
        yield emulator


async def test_query_paging(paged: Emulator, http: aiohttp.ClientSession) -> None:
    emu = paged
    token = await login(http, emu, emu.create_credentials())
    status, page, response = await get_json(
        http,
        emu.url + f"{V}/query",
        params={"q": "SELECT Id, Name FROM Account"},
        headers=bearer(token),
    )
    assert status == 200
    assert response.headers["Content-Type"] == JSON_CT
    assert page["totalSize"] == 250
    assert page["done"] is False
    assert len(page["records"]) == 100
    assert re.fullmatch(rf"{V}/query/01g[0-9A-Za-z]{{15}}-100", page["nextRecordsUrl"])
    first = page["records"][0]
    assert list(first) == ["attributes", "Id", "Name"]
    assert first["attributes"] == {
        "type": "Account",
        "url": f"{V}/sobjects/Account/{first['Id']}",
    }
    assert first["Name"] == "Account 0001"
    assert first["Id"].startswith("001")
    assert ID_RE.match(first["Id"])

    records = list(page["records"])
    pages = [page]
    while not page["done"]:
        status, page, _ = await get_json(
            http, emu.url + page["nextRecordsUrl"], headers=bearer(token)
        )
        assert status == 200
        assert page["totalSize"] == 250
        pages.append(page)
        records.extend(page["records"])
    assert [len(p["records"]) for p in pages] == [100, 100, 50]
    assert pages[1]["nextRecordsUrl"].endswith("-200")
    assert "nextRecordsUrl" not in pages[2]
    assert len(records) == 250
    assert len({r["Id"] for r in records}) == 250
    assert [r["Name"] for r in records] == [f"Account {n:04d}" for n in range(1, 251)]
    assert emu.counters[("query", 200)] == 1
    assert emu.counters[("query_more", 200)] == 2

    # a finished cursor is gone
    status, payload, _ = await get_json(
        http, emu.url + pages[1]["nextRecordsUrl"], headers=bearer(token)
    )
    assert status == 400
    assert payload == [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]


async def test_query_batch_size_header_is_clamped(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    url = emu.url + f"{V}/query"
    params = {"q": "SELECT Id FROM Account"}
    status, page, _ = await get_json(http, url, params=params, headers=bearer(token))
    assert (status, page["done"], len(page["records"])) == (200, True, 250)
    for requested, expected in (("batchSize=200", 200), ("batchSize=50", 200)):
        headers = {**bearer(token), "Sforce-Query-Options": requested}
        status, page, _ = await get_json(http, url, params=params, headers=headers)
        assert (status, page["done"], len(page["records"])) == (200, False, expected)
        assert page["nextRecordsUrl"].endswith(f"-{expected}")


async def query(
    http: aiohttp.ClientSession, emu: Emulator, token: dict[str, str], soql: str
) -> tuple[int, Any]:
    status, payload, _ = await get_json(
        http, emu.url + f"{V}/query", params={"q": soql}, headers=bearer(token)
    )
    return status, payload


async def test_query_limit_order_offset(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    status, page = await query(http, emu, token, "SELECT Id, Name FROM Account LIMIT 5")
    assert status == 200
    assert (page["totalSize"], page["done"]) == (5, True)
    assert [r["Name"] for r in page["records"]] == [f"Account {n:04d}" for n in range(1, 6)]

    _, page = await query(
        http, emu, token, "select name from account order by name desc limit 3 offset 1"
    )
    assert [r["Name"] for r in page["records"]] == ["Account 0249", "Account 0248", "Account 0247"]
    assert list(page["records"][0]) == ["attributes", "Name"]

    _, page = await query(http, emu, token, "SELECT Id FROM Account LIMIT 0")
    assert page == {"totalSize": 0, "done": True, "records": []}


async def test_query_where(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    _, page = await query(
        http, emu, token, "SELECT Id, Name, Industry FROM Account WHERE Industry = 'Finance'"
    )
    assert page["totalSize"] == 50
    assert {r["Industry"] for r in page["records"]} == {"Finance"}
    assert page["records"][0]["Name"] == "Account 0002"

    _, page = await query(
        http,
        emu,
        token,
        "SELECT Name FROM Account WHERE industry = 'finance' AND Name = 'Account 0007'",
    )
    assert [r["Name"] for r in page["records"]] == ["Account 0007"]

    _, page = await query(http, emu, token, "SELECT Name FROM Account WHERE Name LIKE '%000_'")
    assert page["totalSize"] == 9

    _, page = await query(
        http,
        emu,
        token,
        "SELECT Name FROM Account WHERE Name IN ('Account 0001', 'Account 0003') ORDER BY Name",
    )
    assert [r["Name"] for r in page["records"]] == ["Account 0001", "Account 0003"]

    _, page = await query(
        http,
        emu,
        token,
        "SELECT Id FROM Account WHERE Industry != 'Finance' AND Name > 'Account 0245'",
    )
    assert page["totalSize"] == 4

    _, page = await query(http, emu, token, "SELECT Id FROM Account WHERE Name = 'nope'")
    assert page == {"totalSize": 0, "done": True, "records": []}

    record_id = emu.seed("Contact", [{"LastName": "O'Brien", "Department": "Research"}])[0]
    _, page = await query(
        http,
        emu,
        token,
        "SELECT Id, LastName FROM Contact WHERE LastName = 'O\\'Brien' AND Department >= 'R'",
    )
    assert [r["Id"] for r in page["records"]] == [record_id]


@pytest.mark.parametrize(
    "soql",
    [
        "SELECT FROM Account",
        "SELEC Id FROM Account",
        "SELECT Id FROM",
        "SELECT Id, FROM Account",
        "SELECT Id FROM Account WHERE",
        "SELECT Id FROM Account WHERE Name = ",
        "SELECT Id FROM Account LIMIT x",
        "SELECT Id FROM Account LIMIT 5 extra",
        "SELECT Id FROM Account WHERE Name = 'unterminated",
        # AND and OR mixed without parentheses: SOQL refuses it.
        "SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'",
        "DELETE FROM Account",
        "",
    ],
)
async def test_query_malformed(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession, soql: str
) -> None:
    token = await login(http, emu, creds)
    status, payload, response = await get_json(
        http, emu.url + f"{V}/query", params={"q": soql}, headers=bearer(token)
    )
    assert status == 400
    assert response.headers["Content-Type"] == JSON_CT
    assert len(payload) == 1
    assert payload[0]["errorCode"] == "MALFORMED_QUERY"
    assert isinstance(payload[0]["message"], str)
    assert payload[0]["message"]
    assert response.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    assert emu.counters[("query", 400)] == 1


async def test_query_unknown_object_and_version(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    status, payload = await query(http, emu, token, "SELECT Id FROM Widget")
    assert status == 400
    assert payload == [
        {
            "message": "\nSELECT Id FROM Widget\n               ^\nERROR at Row:1:Column:16\n"
            "sObject type 'Widget' is not supported. If you are attempting to use a custom "
            "object, be sure to append the '__c' after the entity name. Please reference your "
            "WSDL or the describe call for the appropriate names.",
            "errorCode": "INVALID_TYPE",
        }
    ]
    for path in ("/services/data/v99.0/query?q=SELECT+Id+FROM+Account", "/services/data/v99.0/"):
        status, payload, response = await get_json(http, emu.url + path, headers=bearer(token))
        assert (status, payload) == (404, NOT_FOUND)
        assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")
    status, payload, _ = await get_json(http, emu.url + f"{V}/nothing/here", headers=bearer(token))
    assert (status, payload) == (404, NOT_FOUND)


# ---------------------------------------------------------------------------------------------
# sObjects


async def test_sobject_crud(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    base = emu.url + f"{V}/sobjects/Contact"
    async with http.post(
        base + "/", json={"LastName": "Smith", "Email": "s@example.com"}, headers=bearer(token)
    ) as response:
        assert response.status == 201
        assert response.headers["Content-Type"] == JSON_CT
        created = await response.json()
    record_id = created["id"]
    assert created == {"id": record_id, "success": True, "errors": []}
    assert record_id.startswith("003")
    assert ID_RE.match(record_id)

    status, record, _ = await get_json(http, f"{base}/{record_id}", headers=bearer(token))
    assert status == 200
    # Every field of the object, in describe order; unset ones are null.
    assert list(record) == [
        "attributes",
        *(f.name for f in emu.schema.get("Contact").fields.values()),
    ]
    assert record["attributes"] == {"type": "Contact", "url": f"{V}/sobjects/Contact/{record_id}"}
    assert (record["Id"], record["LastName"], record["Name"], record["Email"]) == (
        record_id,
        "Smith",
        "Smith",
        "s@example.com",
    )
    assert (record["FirstName"], record["IsDeleted"], record["OwnerId"]) == (
        None,
        False,
        record["CreatedById"],
    )
    status, record, _ = await get_json(
        http, f"{base}/{record_id}", params={"fields": "email"}, headers=bearer(token)
    )
    assert record == {
        "attributes": {"type": "Contact", "url": f"{V}/sobjects/Contact/{record_id}"},
        "Email": "s@example.com",
    }

    async with http.patch(
        f"{base}/{record_id}", json={"email": "new@example.com"}, headers=bearer(token)
    ) as response:
        assert response.status == 204
        assert await response.read() == b""
    [stored] = emu.records("Contact")
    assert (stored["Id"], stored["LastName"], stored["Email"]) == (
        record_id,
        "Smith",
        "new@example.com",
    )
    status, page = await query(http, emu, token, "SELECT Id, Email FROM Contact")
    assert [r["Email"] for r in page["records"]] == ["new@example.com"]

    async with http.delete(f"{base}/{record_id}", headers=bearer(token)) as response:
        assert response.status == 204
    for method in ("GET", "PATCH", "DELETE"):
        async with http.request(
            method, f"{base}/{record_id}", json={}, headers=bearer(token)
        ) as response:
            assert response.status == 404
            assert await response.json() == [
                {"errorCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}
            ]
    assert emu.records("Contact") == []
    assert [r["Id"] for r in emu.records("Contact", include_deleted=True)] == [record_id]
    assert emu.counters[("sobject_create", 201)] == 1
    assert emu.counters[("sobject_get", 200)] == 2
    assert emu.counters[("sobject_update", 204)] == 1
    assert emu.counters[("sobject_delete", 204)] == 1
    assert emu.counters[("sobject_get", 404)] == 1
    assert emu.counters[("sobject_update", 404)] == 1
    assert emu.counters[("sobject_delete", 404)] == 1


async def test_sobject_errors(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    headers = {**bearer(token), "Content-Type": "application/json"}
    base = emu.url + f"{V}/sobjects"
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        async with http.post(f"{base}/Account/", data=body, headers=headers) as response:
            assert response.status == 400
            payload = await response.json()
            assert payload[0]["errorCode"] == "JSON_PARSER_ERROR"
            assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")
    async with http.post(f"{base}/Account/", json={"Id": "x"}, headers=bearer(token)) as response:
        assert response.status == 400
        assert (await response.json())[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    async with http.post(f"{base}/Widget/", json={"Name": "x"}, headers=bearer(token)) as response:
        assert response.status == 404
        assert await response.json() == NOT_FOUND
    account_id = emu.records("Account")[0]["Id"]
    async with http.patch(
        f"{base}/Account/{account_id}", data=b"nope", headers=headers
    ) as response:
        assert response.status == 400
        assert (await response.json())[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert emu.counters[("sobject_create", 400)] == 4


async def test_custom_object_create(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    url = emu.url + f"{V}/sobjects/Invoice__c"
    async with http.post(url, json={"Amount__c": 12.5}, headers=bearer(token)) as response:
        # Salesforce has no such object until an admin creates it.
        assert (response.status, await response.json()) == (404, NOT_FOUND)
    emu.schema.add_object("Invoice__c", {"Amount__c": "currency"})
    async with http.post(url, json={"Amount__c": 12.5}, headers=bearer(token)) as response:
        assert response.status == 201
        record_id = (await response.json())["id"]
    assert record_id.startswith("a00")
    # A custom object's record created without a Name is named after its id.
    assert [r["Name"] for r in emu.records("Invoice__c")] == [record_id]
    status, page = await query(http, emu, token, "SELECT Id, Amount__c FROM invoice__c")
    assert status == 200
    assert page["records"][0]["attributes"]["type"] == "Invoice__c"
    assert page["records"][0]["Amount__c"] == 12.5


async def test_sobject_upsert_by_external_id(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    emu.schema.add_field("Account", "External_Id__c", "string", external_id=True)
    url = emu.url + f"{V}/sobjects/Account/External_Id__c/EXT-1"
    async with http.patch(url, json={"Name": "Acme"}, headers=bearer(token)) as response:
        assert response.status == 201
        created = await response.json()
    record_id = created["id"]
    assert created == {"id": record_id, "success": True, "errors": [], "created": True}
    assert record_id.startswith("001")

    async with http.patch(url, json={"Name": "Acme Corp"}, headers=bearer(token)) as response:
        assert response.status == 200
        assert await response.json() == {
            "id": record_id,
            "success": True,
            "errors": [],
            "created": False,
        }
    records = [r for r in emu.records("Account") if r["Id"] == record_id]
    assert [(r["Name"], r["External_Id__c"]) for r in records] == [("Acme Corp", "EXT-1")]
    assert len(emu.records("Account")) == 251
    _, page = await query(
        http, emu, token, "SELECT Name FROM Account WHERE External_Id__c = 'EXT-1'"
    )
    assert [r["Name"] for r in page["records"]] == ["Acme Corp"]

    emu.seed("Account", [{"Name": "dup", "External_Id__c": "D"}] * 2)
    dup_url = emu.url + f"{V}/sobjects/Account/External_Id__c/D"
    async with http.patch(dup_url, json={}, headers=bearer(token)) as response:
        assert response.status == 300
        assert len(await response.json()) == 2
    assert emu.counters[("sobject_upsert", 201)] == 1
    assert emu.counters[("sobject_upsert", 200)] == 1
    assert emu.counters[("sobject_upsert", 300)] == 1


# ---------------------------------------------------------------------------------------------
# limits, versions, resources, userinfo, revoke


async def test_limits_and_limit_info_header(clock: FakeClock, http: aiohttp.ClientSession) -> None:
    async with Emulator(clock=clock, daily_api_limit=500) as emu:
        token = await login(http, emu, emu.create_credentials())
        status, _, response = await get_json(http, emu.url + "/services/data/")
        assert status == 200
        assert "Sforce-Limit-Info" not in response.headers
        for n in range(1, 4):
            _, _, response = await get_json(
                http, emu.url + f"{V}/query?q=SELECT+Id+FROM+Account", headers=bearer(token)
            )
            assert response.headers["Sforce-Limit-Info"] == f"api-usage={n}/500"
        status, limits, response = await get_json(
            http, emu.url + f"{V}/limits", headers=bearer(token)
        )
        assert status == 200
        assert response.headers["Sforce-Limit-Info"] == "api-usage=4/500"
        assert limits["DailyApiRequests"] == {"Max": 500, "Remaining": 496}
        assert limits["ConcurrentAsyncGetReportInstances"] == {"Max": 200, "Remaining": 200}
        assert emu.api_usage == 4
        assert emu.counters[("limits", 200)] == 1
        assert emu.counters[("versions", 200)] == 1


async def test_versions_and_resources(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    for path in ("/services/data/", "/services/data"):
        status, versions, response = await get_json(http, emu.url + path)
        assert status == 200
        assert response.headers["Content-Type"] == JSON_CT
        assert versions == [
            {"label": "Spring '24", "url": "/services/data/v60.0", "version": "60.0"},
            {"label": "Summer '24", "url": "/services/data/v61.0", "version": "61.0"},
            {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"},
        ]
    token = await login(http, emu, creds)
    status, resources, _ = await get_json(
        http, emu.url + "/services/data/v60.0/", headers=bearer(token)
    )
    assert status == 200
    assert resources == {
        "identity": token["id"],
        "limits": "/services/data/v60.0/limits",
        "query": "/services/data/v60.0/query",
        "sobjects": "/services/data/v60.0/sobjects",
    }
    assert (await get_json(http, emu.url + "/services/data/v60.0/"))[0] == 401


async def test_custom_api_versions(clock: FakeClock, http: aiohttp.ClientSession) -> None:
    async with Emulator(clock=clock, api_versions=["59.0", "63.0"]) as emu:
        _, versions, _ = await get_json(http, emu.url + "/services/data/")
        assert [(v["label"], v["version"]) for v in versions] == [
            ("Winter '24", "59.0"),
            ("Spring '25", "63.0"),
        ]
        token = await login(http, emu, emu.create_credentials())
        assert (await get_json(http, emu.url + f"{V}/limits", headers=bearer(token)))[0] == 404
        status, _, _ = await get_json(
            http, emu.url + "/services/data/v63.0/limits", headers=bearer(token)
        )
        assert status == 200


async def test_userinfo(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    status, info, response = await get_json(
        http, emu.url + "/services/oauth2/userinfo", headers=bearer(token)
    )
    assert status == 200
    assert response.headers["Content-Type"] == JSON_CT
    assert info["sub"] == token["id"]
    assert info["user_id"] == creds.user_id
    assert info["organization_id"] == creds.org_id
    assert info["preferred_username"] == "etl@example.com"
    assert info["email"] == "etl@example.com"
    assert info["name"] == "etl"
    assert response.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    status, payload, _ = await get_json(http, emu.url + "/services/oauth2/userinfo")
    assert (status, payload) == (401, SESSION_INVALID)
    assert emu.counters == {("token", 200): 1, ("userinfo", 200): 1, ("userinfo", 401): 1}


async def test_revoke_endpoint(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    url = emu.url + "/services/oauth2/revoke"
    async with http.post(url, data={"token": token["access_token"]}) as response:
        assert response.status == 200
        assert await response.read() == b""
    status, payload, _ = await get_json(http, emu.url + f"{V}/limits", headers=bearer(token))
    assert (status, payload) == (401, SESSION_INVALID)
    for form in ({"token": token["access_token"]}, {"token": "junk"}, {}):
        async with http.post(url, data=form) as response:
            assert response.status == 400
            assert response.headers["Content-Type"] == JSON_CT
            assert await response.json() == {
                "error": "unsupported_token_type",
                "error_description": "this token type is not supported",
            }
    assert emu.counters[("revoke", 200)] == 1
    assert emu.counters[("revoke", 400)] == 3


# ---------------------------------------------------------------------------------------------
# instances, scripting, recording


async def test_add_instance_and_set_instance_url(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    old = await login(http, emu, creds)
    new_url = await emu.add_instance()
    assert new_url != emu.url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", new_url)
    assert emu.urls == [emu.url, new_url]
    emu.set_instance_url(new_url + "/")
    assert emu.instance_url == new_url
    token = await login(http, emu, creds)
    assert token["instance_url"] == new_url
    assert token["id"].startswith(emu.url + "/id/")

    status, page, _ = await get_json(
        http, new_url + f"{V}/query?q=SELECT+Id+FROM+Account+LIMIT+2", headers=bearer(token)
    )
    assert (status, page["totalSize"]) == (200, 2)
    assert emu.requests[-1].host == new_url.removeprefix("http://")
    # sessions are org-wide: the old token works on the new site too
    assert (await get_json(http, new_url + f"{V}/limits", headers=bearer(old)))[0] == 200
    # token endpoint on the new site: `id` uses the host the request came in on
    status, payload, _ = await post_token(http, new_url, _form(make_assertion(creds)))
    assert status == 200
    assert payload["id"].startswith(new_url + "/id/")
    emu.set_instance_url(None)
    assert (await login(http, emu, creds))["instance_url"] == emu.url


async def test_stop_closes_every_site(clock: FakeClock, http: aiohttp.ClientSession) -> None:
    emu = Emulator(clock=clock)
    await emu.start()
    second = await emu.add_instance()
    assert (await get_json(http, second + "/services/data/"))[0] == 200
    await emu.stop()
    await emu.stop()
    for url in (emu.url, second):
        with pytest.raises(aiohttp.ClientConnectionError):
            await get_json(http, url + "/services/data/")
    with pytest.raises(RuntimeError):
        await emu.start()
    with pytest.raises(RuntimeError):
        await emu.add_instance()


async def test_script_token_responses_in_order(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    html = "<html><body>Down for maintenance</body></html>"
    emu.script_token_responses(
        [
            ScriptedResponse(
                status=400,
                json={"error": "unknown_error", "error_description": "retry your request"},
            ),
            ScriptedResponse(
                status=503, text=html, content_type="text/html", headers={"Retry-After": "2"}
            ),
        ]
    )
    emu.script_token_responses([ScriptedResponse(status=200, json={"access_token": "fake"})])
    form = _form(make_assertion(creds))

    status, payload, response = await post_token(http, emu.url, form)
    assert (status, payload) == (
        400,
        {"error": "unknown_error", "error_description": "retry your request"},
    )
    assert response.headers["Content-Type"] == JSON_CT

    async with http.post(emu.url + TOKEN_PATH, data=form) as response:
        assert response.status == 503
        assert response.headers["Content-Type"] == "text/html"
        assert response.headers["Retry-After"] == "2"
        assert await response.text() == html

    # served as-is, without verification
    status, payload, _ = await post_token(http, emu.url, _form("garbage", grant_type="x"))
    assert (status, payload) == (200, {"access_token": "fake"})
    assert emu.active_sessions == 0

    # the script is used up: normal logic again
    status, payload, _ = await post_token(http, emu.url, form)
    assert status == 200
    assert payload["access_token"] != "fake"

    assert emu.token_request_count == 4
    assert [(r.status, r.error, r.scripted) for r in emu.token_requests] == [
        (400, "unknown_error", True),
        (503, None, True),
        (200, None, True),
        (200, None, False),
    ]
    assert emu.token_requests[2].form == {"assertion": "garbage", "grant_type": "x"}
    assert emu.counters == {("token", 400): 1, ("token", 503): 1, ("token", 200): 2}


async def test_scripted_reset_and_delay(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    emu.script_token_responses([ScriptedResponse(reset=True)])
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_token(http, emu.url, _form(make_assertion(creds)))
    assert emu.token_requests[0].status == 0
    assert emu.counters[("token", 0)] == 1

    emu.script_token_responses([ScriptedResponse(status=204, delay=0.3)])
    with pytest.raises(TimeoutError):
        await post_token(
            http,
            emu.url,
            _form(make_assertion(creds)),
            timeout=aiohttp.ClientTimeout(total=0.05),
        )
    assert (await login(http, emu, creds))["token_type"] == "Bearer"


async def test_script_rest_responses(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    limit_body = [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    emu.script_rest_responses(
        [
            ScriptedResponse(status=503, text="busy", headers={"Retry-After": "1"}),
            ScriptedResponse(status=403, json=limit_body),
        ]
    )
    url = emu.url + f"{V}/limits"
    async with http.get(url, headers=bearer(token)) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert response.headers["Content-Type"] == "text/plain;charset=UTF-8"
        assert "Sforce-Limit-Info" not in response.headers
        assert await response.text() == "busy"
    status, payload, _ = await get_json(http, url, headers=bearer(token))
    assert (status, payload) == (403, limit_body)
    status, _, response = await get_json(http, url, headers=bearer(token))
    assert status == 200
    assert response.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    assert emu.counters[("limits", 503)] == 1
    assert emu.counters[("limits", 403)] == 1
    assert emu.counters[("limits", 200)] == 1


async def test_request_records(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    await get_json(
        http, emu.url + f"{V}/query", params={"q": "SELECT Id FROM Account"}, headers=bearer(token)
    )
    async with http.post(
        emu.url + f"{V}/sobjects/Account/", data=b'{"Name": "x"}', headers=bearer(token)
    ):
        pass
    assert len(emu.requests) == 2
    first, second = emu.requests
    assert isinstance(first, RequestRecord)
    assert first.method == "GET"
    assert first.path == f"{V}/query"
    assert first.query_string == "q=SELECT+Id+FROM+Account"
    assert first.host == emu.url.removeprefix("http://")
    assert first.status == 200
    assert first.authorization == f"Bearer {token['access_token']}"
    assert first.body == b""
    assert first.headers["Authorization"] == first.authorization
    assert first.endpoint == "query"
    assert (second.method, second.status, second.body) == ("POST", 201, b'{"Name": "x"}')
    assert second.endpoint == "sobject_create"


async def test_record_requests_off_still_counts(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with Emulator(clock=clock, record_requests=False) as emu:
        token = await login(http, emu, emu.create_credentials())
        for _ in range(3):
            await get_json(http, emu.url + f"{V}/limits", headers=bearer(token))
        assert emu.requests == []
        assert emu.counters[("limits", 200)] == 3
        assert len(emu.token_requests) == 1


# ---------------------------------------------------------------------------------------------
# random fault injection

REST_503 = b'[{"errorCode":"SERVER_UNAVAILABLE","message":"Server temporarily unavailable"}]'
TOKEN_RETRY = b'{"error":"unknown_error","error_description":"retry your request"}'
HTML_502 = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    b"</center><hr><center>nginx</center></body></html>"
)
#: kind -> (status, Content-Type, Retry-After, body) of a faulted REST GET.
REST_FAULTS: dict[str, tuple[int, str, str | None, bytes]] = {
    "503": (503, JSON_CT, None, REST_503),
    "502_html": (502, "text/html", None, HTML_502),
    "429": (
        429,
        JSON_CT,
        "0",
        b'[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"Too many requests"}]',
    ),
    "concurrent_limit": (
        403,
        JSON_CT,
        None,
        b'[{"errorCode":"REQUEST_LIMIT_EXCEEDED",'
        b'"message":"ConcurrentPerOrgLongTxn Limit exceeded."}]',
    ),
    "truncated_json": (200, JSON_CT, None, b"<cut>"),  # the connection drops mid-body
}
#: kind -> (kind served and counted, status, Content-Type, Retry-After, body, OAuth error).
TOKEN_FAULTS: dict[str, tuple[str, int, str, str | None, bytes, str | None]] = {
    "503": ("503", 503, JSON_CT, None, TOKEN_RETRY, "unknown_error"),
    "concurrent_limit": ("503", 503, JSON_CT, None, TOKEN_RETRY, "unknown_error"),
    "502_html": ("502_html", 502, "text/html", None, HTML_502, None),
    "429": ("429", 429, JSON_CT, "0", TOKEN_RETRY, "unknown_error"),
    "token_unknown_error": (
        "token_unknown_error",
        400,
        JSON_CT,
        None,
        TOKEN_RETRY,
        "unknown_error",
    ),
    "truncated_json": ("truncated_json", 200, JSON_CT, None, b'{"access_token":"00D', None),
}
FAULT_STATUS = {"reset": 0} | {kind: v[0] for kind, v in REST_FAULTS.items()}


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, bytes, Mapping[str, str]]:
    """Send one request; a dropped connection is status 0, a body cut short is b"<cut>"."""
    try:
        async with http.request(method, url, **kwargs) as response:
            try:
                body = await response.read()
            except aiohttp.ClientPayloadError:
                body = b"<cut>"
            return response.status, body, response.headers
    except aiohttp.ClientConnectionError:
        return 0, b"", {}


async def test_fault_kinds_cover_every_documented_kind() -> None:
    assert set(FAULT_KINDS) == set(REST_FAULTS) | set(TOKEN_FAULTS) | {"reset", "slow"}


@pytest.mark.parametrize("kind", sorted(REST_FAULTS))
async def test_rest_fault_answers(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession, kind: str
) -> None:
    token = await login(http, emu, creds)
    accounts = len(emu.records("Account"))
    emu.inject_faults(1, seed=0, kinds={kind})
    status, body, headers = await call(
        http,
        "GET",
        emu.url + f"{V}/query",
        params={"q": "SELECT Id FROM Account"},
        headers={**bearer(token), "Sforce-Query-Options": "batchSize=200"},
    )
    expected_status, content_type, retry_after, expected_body = REST_FAULTS[kind]
    assert (status, body) == (expected_status, expected_body)
    assert headers["Content-Type"] == content_type
    assert headers.get("Retry-After") == retry_after
    assert "Sforce-Limit-Info" not in headers
    assert emu.api_usage == 0
    assert emu.requests[-1].fault == kind
    assert emu.requests[-1].status == expected_status

    # a POST gets the same fault (and creates nothing), except truncated_json: GET only
    status, body, _ = await call(
        http, "POST", emu.url + f"{V}/sobjects/Account/", json={"Name": "x"}, headers=bearer(token)
    )
    faulted = kind != "truncated_json"
    post = emu.requests[-1]
    if faulted:
        assert (status, body, post.fault) == (expected_status, expected_body, kind)
    else:
        assert (status, post.fault) == (201, None)
    assert len(emu.records("Account")) == accounts + (0 if faulted else 1)
    assert emu.api_usage == (0 if faulted else 1)
    assert emu.faults_injected == {kind: 2 if faulted else 1}
    assert emu.counters[("sobject_create", status)] == 1
    assert emu.counters[("query", expected_status)] == 1


@pytest.mark.parametrize("kind", sorted(TOKEN_FAULTS))
async def test_token_fault_answers(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession, kind: str
) -> None:
    emu.inject_faults(1, seed=0, endpoints={"token"}, kinds={kind})
    served, expected_status, content_type, retry_after, expected_body, error = TOKEN_FAULTS[kind]
    async with http.post(emu.url + TOKEN_PATH, data=_form(make_assertion(creds))) as response:
        assert response.status == expected_status
        assert response.headers["Content-Type"] == content_type
        assert response.headers.get("Retry-After") == retry_after
        assert await response.read() == expected_body
    assert emu.active_sessions == 0
    record = emu.token_requests[-1]
    assert (record.status, record.error, record.fault, record.scripted) == (
        expected_status,
        error,
        served,
        False,
    )
    assert emu.faults_injected == {served: 1}
    assert emu.counters == {("token", expected_status): 1}
    # REST endpoints are outside the filter
    assert (await get_json(http, emu.url + "/services/data/"))[0] == 200


async def test_truncated_token_json_holds_no_token(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    emu.inject_faults(1, kinds=["truncated_json"])
    status, body, _ = await call(
        http, "POST", emu.url + TOKEN_PATH, data=_form(make_assertion(creds))
    )
    assert (status, body) == (200, b'{"access_token":"00D')
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    assert emu.active_sessions == 0


async def test_rate_one_503_hits_every_endpoint_and_changes_nothing(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    emu.schema.add_field("Account", "Ext__c", "string", external_id=True)
    account_id = emu.seed("Account", [{"Name": "Keep", "Ext__c": "k1"}])[0]
    before = emu.records("Account")
    sessions = emu.active_sessions
    emu.inject_faults(1.0, seed=3, kinds={"503"})
    sobject = f"{V}/sobjects/Account"
    requests = [
        ("GET", "/services/data/", "versions"),
        ("GET", V, "resources"),
        ("GET", f"{V}/query?q=SELECT+Id+FROM+Account", "query"),
        ("GET", f"{V}/query/01gXXXXXXXXXXXXXXX-200", "query_more"),
        ("GET", f"{V}/limits", "limits"),
        ("POST", f"{sobject}/", "sobject_create"),
        ("GET", f"{sobject}/{account_id}", "sobject_get"),
        ("PATCH", f"{sobject}/{account_id}", "sobject_update"),
        ("DELETE", f"{sobject}/{account_id}", "sobject_delete"),
        ("PATCH", f"{sobject}/Ext__c/new", "sobject_upsert"),
        ("GET", "/services/oauth2/userinfo", "userinfo"),
        ("POST", f"/services/oauth2/revoke?token={token['access_token']}", "revoke"),
        ("PUT", f"{V}/nothing", "not_found"),
    ]
    for method, path, _ in requests:
        status, body, headers = await call(
            http, method, emu.url + path, json={"Name": "Changed"}, headers=bearer(token)
        )
        assert (status, body) == (503, REST_503), path
        assert headers["Content-Type"] == JSON_CT
        assert "Sforce-Limit-Info" not in headers
    status, body, _ = await call(
        http, "POST", emu.url + TOKEN_PATH, data=_form(make_assertion(creds))
    )
    assert (status, body) == (503, TOKEN_RETRY)

    assert [(r.endpoint, r.status, r.fault) for r in emu.requests[-len(requests) :]] == [
        (name, 503, "503") for _, _, name in requests
    ]
    assert emu.records("Account") == before
    assert emu.active_sessions == sessions
    assert emu.api_usage == 0
    assert emu.faults_injected == {"503": len(requests) + 1}
    assert emu.counters == collections.Counter(
        {("token", 200): 1, ("token", 503): 1} | {(name, 503): 1 for _, _, name in requests}
    )


async def test_rate_zero_injects_nothing(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    emu.inject_faults(0, seed=1)
    token = await login(http, emu, creds)
    for _ in range(20):
        assert (await get_json(http, emu.url + f"{V}/limits", headers=bearer(token)))[0] == 200
    assert emu.faults_injected == {}

    emu.inject_faults(1, kinds={"429"})
    assert (await get_json(http, emu.url + f"{V}/limits", headers=bearer(token)))[0] == 429
    emu.inject_faults(0)  # turns it off; the tally stays
    for _ in range(20):
        assert (await get_json(http, emu.url + f"{V}/limits", headers=bearer(token)))[0] == 200
    assert (await login(http, emu, creds))["token_type"] == "Bearer"
    assert emu.faults_injected == {"429": 1}
    assert emu.counters[("limits", 200)] == 40
    assert emu.api_usage == 40


async def test_endpoints_filter(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    emu.inject_faults(1, kinds={"503"}, endpoints={"query", "query_more"})
    query = emu.url + f"{V}/query"
    params = {"q": "SELECT Id FROM Account"}
    assert (await call(http, "GET", query, params=params, headers=bearer(token)))[0] == 503
    assert (await get_json(http, emu.url + f"{V}/limits", headers=bearer(token)))[0] == 200
    assert (await login(http, emu, creds))["token_type"] == "Bearer"
    assert emu.faults_injected == {"503": 1}

    emu.inject_faults(1, kinds=("503",), endpoints=["token"])
    status, page, _ = await get_json(http, query, params=params, headers=bearer(token))
    assert (status, page["totalSize"]) == (200, 250)
    status, body, _ = await call(
        http, "POST", emu.url + TOKEN_PATH, data=_form(make_assertion(creds))
    )
    assert (status, body) == (503, TOKEN_RETRY)
    assert emu.faults_injected == {"503": 2}
    assert emu.counters[("query", 503)] == 1
    assert emu.counters[("query", 200)] == 1


async def test_reset_only_where_a_retry_is_safe(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    account_id = emu.seed("Account", [{"Name": "Doomed"}])[0]
    accounts = len(emu.records("Account"))
    emu.inject_faults(1, seed=5, kinds={"reset"})
    sobject = emu.url + f"{V}/sobjects/Account"

    # GET and DELETE: dropped after the request was read (aiohttp itself retries idempotent
    # requests once, so each may reach the emulator more than once)
    for method, url in (("GET", emu.url + f"{V}/limits"), ("DELETE", f"{sobject}/{account_id}")):
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.request(method, url, headers=bearer(token)):
                pass
    dropped = list(emu.requests)
    assert {(r.method, r.endpoint, r.status, r.fault) for r in dropped} == {
        ("GET", "limits", 0, "reset"),
        ("DELETE", "sobject_delete", 0, "reset"),
    }
    assert len(emu.records("Account")) == accounts

    # POST and PATCH must not be reset: they get their normal answer
    status, body, _ = await call(
        http, "POST", f"{sobject}/", json={"Name": "Kept"}, headers=bearer(token)
    )
    assert status == 201
    new_id = json.loads(body)["id"]
    status, _, _ = await call(
        http, "PATCH", f"{sobject}/{new_id}", json={"Name": "Renamed"}, headers=bearer(token)
    )
    assert status == 204
    assert [(r.method, r.status, r.fault) for r in emu.requests[len(dropped) :]] == [
        ("POST", 201, None),
        ("PATCH", 204, None),
    ]
    assert len(emu.records("Account")) == accounts + 1

    # the token endpoint: a POST, but safe to retry
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_token(http, emu.url, _form(make_assertion(creds)))
    assert (emu.token_requests[-1].status, emu.token_requests[-1].fault) == (0, "reset")
    assert emu.faults_injected == {"reset": len(dropped) + 1}
    assert emu.counters[("token", 0)] == 1
    assert emu.counters[("limits", 0)] + emu.counters[("sobject_delete", 0)] == len(dropped)


async def test_kinds_that_do_not_apply_leave_requests_alone(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    emu.inject_faults(1, kinds={"token_unknown_error"})
    assert (await get_json(http, emu.url + f"{V}/limits", headers=bearer(token)))[0] == 200
    emu.inject_faults(1, kinds={"truncated_json", "reset"})
    status, _, _ = await call(
        http, "POST", emu.url + f"{V}/sobjects/Account/", json={"Name": "x"}, headers=bearer(token)
    )
    assert status == 201
    assert emu.faults_injected == {}
    assert [r.fault for r in emu.requests] == [None, None]


async def test_slow_fault_is_the_normal_answer_late(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    emu.inject_faults(1, kinds={"slow"})
    started = time.monotonic()
    token = await login(http, emu, creds)
    status, _, response = await get_json(http, emu.url + f"{V}/limits", headers=bearer(token))
    elapsed = time.monotonic() - started
    assert status == 200
    assert response.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    assert elapsed >= 2 * 0.05
    assert emu.active_sessions == 1
    assert emu.faults_injected == {"slow": 2}
    assert (emu.token_requests[-1].fault, emu.token_requests[-1].status) == ("slow", 200)
    assert (emu.requests[-1].fault, emu.requests[-1].status) == ("slow", 200)


async def test_scripted_responses_take_precedence(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    emu.inject_faults(1, kinds={"503"})
    emu.script_rest_responses([ScriptedResponse(status=418, text="teapot")])
    emu.script_token_responses([ScriptedResponse(status=200, json={"access_token": "fake"})])
    url = emu.url + f"{V}/limits"
    assert (await call(http, "GET", url, headers=bearer(token)))[:2] == (418, b"teapot")
    assert (await call(http, "GET", url, headers=bearer(token)))[0] == 503
    form = _form(make_assertion(creds))
    assert (await post_token(http, emu.url, form))[:2] == (200, {"access_token": "fake"})
    assert (await post_token(http, emu.url, form))[:2] == (
        503,
        json.loads(TOKEN_RETRY),
    )
    assert [(r.status, r.fault) for r in emu.requests] == [(418, None), (503, "503")]
    assert [(r.status, r.scripted, r.fault) for r in emu.token_requests[1:]] == [
        (200, True, None),
        (503, False, "503"),
    ]
    assert emu.faults_injected == {"503": 2}


async def _soak(
    http: aiohttp.ClientSession,
    emu: Emulator,
    token: dict[str, str],
    form: dict[str, str],
    rounds: int = 30,
) -> tuple[list[tuple[str, str | None, int]], list[tuple[str | None, int]]]:
    """Send ``rounds`` times a fixed mix of 5 requests; return what the emulator served."""
    emu.requests.clear()
    del emu.token_requests[:]
    missing = f"{V}/sobjects/Account/001000000000000AAA"
    for _ in range(rounds):
        await call(
            http,
            "GET",
            emu.url + f"{V}/query",
            params={"q": "SELECT Id FROM Account LIMIT 1"},
            headers=bearer(token),
        )
        await call(
            http,
            "POST",
            emu.url + f"{V}/sobjects/Contact/",
            json={"LastName": "x"},
            headers=bearer(token),
        )
        await call(http, "GET", emu.url + f"{V}/limits", headers=bearer(token))
        await call(http, "DELETE", emu.url + missing, headers=bearer(token))
        await call(http, "POST", emu.url + TOKEN_PATH, data=form)
    rest = [(r.endpoint, r.fault, r.status) for r in emu.requests]
    tokens = [(r.fault, r.status) for r in emu.token_requests]
    return rest, tokens


async def test_faults_are_deterministic_for_a_seed(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    token = await login(http, emu, creds)
    form = _form(make_assertion(creds))

    emu.inject_faults(0.5, seed=3)
    first = await _soak(http, emu, token, form)
    # same seed, kinds given explicitly in another order: the same faults
    emu.inject_faults(0.5, seed=3, kinds=list(reversed(FAULT_KINDS)))
    second = await _soak(http, emu, token, form)
    emu.inject_faults(0.5, seed=4321)
    third = await _soak(http, emu, token, form, rounds=6)

    assert first == second
    assert third != (first[0][: len(third[0])], first[1][: len(third[1])])
    rest, tokens = first
    assert {fault for _, fault, _ in rest} == set(FAULT_KINDS) - {"token_unknown_error"} | {None}
    assert {fault for fault, _ in tokens} == set(FAULT_KINDS) - {"concurrent_limit"} | {None}

    normal = {"query": 200, "sobject_create": 201, "limits": 200, "sobject_delete": 404}
    for endpoint, fault, status in rest:
        if fault in (None, "slow"):
            assert status == normal[endpoint]
        else:
            assert status == FAULT_STATUS[fault]
        if endpoint == "sobject_create":
            assert fault not in ("reset", "truncated_json")
        if endpoint == "sobject_delete":
            assert fault != "truncated_json"
    token_status = {"reset": 0} | {kind: v[1] for kind, v in TOKEN_FAULTS.items()}
    for fault, status in tokens:
        assert status == (200 if fault in (None, "slow") else token_status[fault])

    runs = (first, second, third)
    faults = [f for run_rest, _ in runs for _, f, _ in run_rest]
    faults += [f for _, run_tokens in runs for f, _ in run_tokens]
    injected = collections.Counter(f for f in faults if f is not None)
    assert emu.faults_injected == injected
    assert 0.4 < injected.total() / len(faults) < 0.6


def test_inject_faults_validates_its_arguments() -> None:
    emu = Emulator(default_accounts=0)
    for rate in (-0.01, 1.01, math.nan):
        with pytest.raises(ValueError, match="rate"):
            emu.inject_faults(rate)
    with pytest.raises(ValueError, match="unknown kinds: 500"):
        emu.inject_faults(0.1, kinds={"503", "500"})
    with pytest.raises(ValueError, match="unknown endpoints: sobject"):
        emu.inject_faults(0.1, endpoints={"query", "sobject"})
    with pytest.raises(ValueError, match="kinds must not be empty"):
        emu.inject_faults(0.1, kinds=set())
    with pytest.raises(ValueError, match="endpoints must not be empty"):
        emu.inject_faults(0.1, endpoints=[])
    with pytest.raises(TypeError, match="single string"):
        emu.inject_faults(0.1, kinds="503")
    with pytest.raises(TypeError, match="single string"):
        emu.inject_faults(0.1, endpoints="token")
    emu.inject_faults(
        0.1,
        endpoints={"token", "versions", "resources", "query", "query_more", "limits"}
        | {"sobject_create", "sobject_get", "sobject_update", "sobject_delete"}
        | {"sobject_upsert", "userinfo", "revoke", "not_found"},
        kinds=FAULT_KINDS,
    )


# ---------------------------------------------------------------------------------------------
# TLS, credentials, data, misc


async def test_tls_round_trip(clock: FakeClock) -> None:
    async with Emulator(clock=clock, tls=True) as emu:
        assert emu.url.startswith("https://127.0.0.1:")
        assert b"BEGIN CERTIFICATE" in emu.ca_pem
        creds = emu.create_credentials()
        connector = aiohttp.TCPConnector(ssl=emu.client_ssl_context())
        async with aiohttp.ClientSession(connector=connector) as http:
            token = await login(http, emu, creds)
            assert token["instance_url"] == emu.url
            assert token["id"].startswith(emu.url + "/id/")
            status, page, _ = await get_json(
                http,
                emu.url + f"{V}/query",
                params={"q": "SELECT Id FROM Account LIMIT 1"},
                headers=bearer(token),
            )
            assert (status, page["totalSize"]) == (200, 1)
            second = await emu.add_instance()
            assert second.startswith("https://")
            assert (await get_json(http, second + "/services/data/"))[0] == 200
        async with aiohttp.ClientSession() as untrusting:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await get_json(untrusting, emu.url + "/services/data/")


async def test_client_ssl_context_requires_tls(emu: Emulator) -> None:
    with pytest.raises(RuntimeError):
        emu.client_ssl_context()
    with pytest.raises(RuntimeError):
        _ = emu.ca_pem


async def test_credentials(emu: Emulator, tmp_path: Path) -> None:
    creds = emu.create_credentials(username="svc@example.com", client_id="my-client")
    assert creds.client_id == "my-client"
    assert creds.login_url == emu.url
    assert creds.audience == "https://login.salesforce.com"
    assert creds.private_key_pem.startswith(pem_header().encode())
    assert creds.certificate_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    key = serialization.load_pem_private_key(creds.private_key_pem, None)
    assert key.key_size == 2048  # type: ignore[union-attr]

    text = repr(creds)
    assert "PRIVATE" not in text
    assert "BEGIN" not in text
    key_body = creds.private_key_pem.decode().splitlines()[1]
    assert key_body not in text
    assert "my-client" in text
    assert key_body not in str(creds)

    with pytest.raises(dataclasses.FrozenInstanceError):
        creds.username = "x"  # type: ignore[misc]

    path = creds.write_private_key(tmp_path / "key.pem")
    assert path == tmp_path / "key.pem"
    assert path.read_bytes() == creds.private_key_pem
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    creds.write_private_key(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    generated = emu.create_credentials(username="x@example.com")
    assert generated.client_id.startswith("3MVG9")
    assert generated.client_id != creds.client_id
    assert generated.org_id == creds.org_id
    assert generated.user_id != creds.user_id


async def test_register_app_and_user_explicitly(
    emu: Emulator, creds: EmulatorCredentials, http: aiohttp.ClientSession
) -> None:
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(creds.certificate_pem)
    emu.register_app("second-app", certificate)
    org_id = "00D000000000001AAA"
    user_id = "005000000000001AAA"
    emu.register_user("ops@example.com", client_id="second-app", org_id=org_id, user_id=user_id)
    form = _form(make_assertion(creds, iss="second-app", sub="ops@example.com"))
    status, payload, _ = await post_token(http, emu.url, form)
    assert status == 200
    assert payload["access_token"].startswith(org_id + "!")
    assert payload["id"] == f"{emu.url}/id/{org_id}/{user_id}"

    # deactivate, then revoke the approval
    emu.register_user("ops@example.com", client_id="second-app", active=False)
    status, payload, _ = await post_token(http, emu.url, form)
    assert payload["error_description"] == "inactive user"
    emu.register_user("ops@example.com", client_id="second-app", approved=False)
    status, payload, _ = await post_token(http, emu.url, form)
    assert payload["error_description"] == "user hasn't approved this consumer"

    ec_key = ec.generate_private_key(ec.SECP256R1())
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    now = datetime.datetime.now(datetime.UTC)
    ec_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ec_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ec_key, hashes.SHA256())
    )
    with pytest.raises(ValueError, match="RSA"):
        emu.register_app("ec-app", ec_cert)
    with pytest.raises(ValueError, match="not a PEM-encoded"):
        emu.register_app("bad", b"not a certificate")


async def test_seed_and_records() -> None:
    emu = Emulator(default_accounts=0)
    assert emu.records("Account") == []
    emu.schema.add_object("Thing__c", {"Label__c": "string"})
    emu.schema.add_object("Other__c")
    account_ids = emu.seed("Account", [{"Name": "A"}, {"Name": "B"}])
    contact_ids = emu.seed("Contact", [{"LastName": "C"}])
    custom_ids = emu.seed("Thing__c", [{"Label__c": "t"}])
    other_ids = emu.seed("Other__c", [{}])
    assert [i[:3] for i in account_ids] == ["001", "001"]
    assert contact_ids[0].startswith("003")
    assert custom_ids[0].startswith("a00")
    assert other_ids[0].startswith("a01")
    all_ids = account_ids + contact_ids + custom_ids + other_ids
    assert all(ID_RE.match(i) for i in all_ids)
    assert len(set(all_ids)) == 5
    assert [(r["Id"], r["Name"]) for r in emu.records("account")] == [
        (account_ids[0], "A"),
        (account_ids[1], "B"),
    ]
    emu.records("Account")[0]["Name"] = "mutated"
    assert emu.records("Account")[0]["Name"] == "A"
    assert emu.records("Nothing") == []
    with pytest.raises(ValueError, match=r"no sObject named 'Nope__c'.*add_object"):
        emu.seed("Nope__c", [{}])
    with pytest.raises(ValueError, match="Account record 1: INVALID_FIELD_FOR_INSERT_UPDATE"):
        emu.seed("Account", [{"Name": "ok"}, {"Name": "B", "Id": account_ids[0]}])


def test_default_seed() -> None:
    records = Emulator().records("Account")
    assert len(records) == 250
    assert records[0]["Name"] == "Account 0001"
    assert records[-1]["Name"] == "Account 0250"
    assert len({r["Industry"] for r in records}) == 5


async def test_not_started_errors() -> None:
    emu = Emulator()
    with pytest.raises(RuntimeError):
        _ = emu.url
    with pytest.raises(RuntimeError):
        emu.create_credentials()
    with pytest.raises(ValueError, match="page_size"):
        Emulator(page_size=0)
    with pytest.raises(ValueError, match="api_versions"):
        Emulator(api_versions=())


def test_public_api() -> None:
    import sfauth.testing as testing

    # isort-style (ruff RUF022): constants first, then classes
    assert testing.__all__ == sorted(testing.__all__, key=lambda name: (not name.isupper(), name))
    assert set(testing.__all__) == {
        "FAULT_KINDS",
        "Emulator",
        "EmulatorCredentials",
        "FieldSchema",
        "RequestRecord",
        "SObjectSchema",
        "Schema",
        "SchemaError",
        "ScriptedResponse",
        "TokenRequestRecord",
        "no_backoff",
    }
    for name in set(testing.__all__) - {"FAULT_KINDS"}:
        assert getattr(testing, name).__doc__
    assert testing.FAULT_KINDS == (
        "503",
        "502_html",
        "429",
        "concurrent_limit",
        "token_unknown_error",
        "reset",
        "truncated_json",
        "slow",
    )
