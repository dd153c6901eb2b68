"""The shipped Postman collection (postman/) works against the emulator.

Each request is taken from the collection file as written (method, URL parts, headers, body,
auth), its ``{{variables}}`` are filled in like Postman does, and it is sent with aiohttp over
real sockets; the token request's test script is applied by reading its JSON answer, as the
script does. The assertion is signed by ``sfauth assertion`` itself, as postman/README.md says.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sfauth import cli
from sfauth.testing import Emulator, EmulatorCredentials

POSTMAN = Path(__file__).parent.parent / "postman"
COLLECTION = json.loads((POSTMAN / "sfauth-jwt-bearer.postman_collection.json").read_text())
ENVIRONMENT = json.loads((POSTMAN / "sfauth.postman_environment.json").read_text())
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# The original "JWT Bearer Token Flow" item's test script (the seed), statement by statement.
SEED_SCRIPT = [
    "const jsonData = pm.response.json();",
    "const id = jsonData.id.split('/');",
    "const context = pm.environment.name ? pm.environment : pm.collectionVariables;",
    'context.set("_accessToken", jsonData.access_token);',
    'context.set("_endpoint", jsonData.instance_url);',
    'context.set("_userId", id.pop());',
    'context.set("_orgId", id.pop());',
]
VARIABLE = re.compile(r"\{\{([^{}]+)\}\}")


def items() -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in COLLECTION["item"]}


def script_lines(item: dict[str, Any]) -> list[str]:
    (event,) = [e for e in item["event"] if e["listen"] == "test"]
    assert event["script"]["type"] == "text/javascript"
    return [line.strip() for line in event["script"]["exec"]]


def substitute(text: str, variables: dict[str, str]) -> str:
    """Fill in ``{{name}}``; an unknown variable is an error (Postman would leave it as is)."""
    return VARIABLE.sub(lambda match: variables[match.group(1)], text)


def environment() -> dict[str, str]:
    values = {v["key"]: v["value"] for v in COLLECTION["variable"]}
    values.update({v["key"]: v["value"] for v in ENVIRONMENT["values"] if v["enabled"]})
    return values


def sign_assertion(
    creds: EmulatorCredentials,
    url: str,
    site: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """Run ``sfauth assertion`` the way postman/README.md does and return what it prints."""
    key_file = creds.write_private_key(tmp_path / "emulator.pem")
    argv = ["assertion", "--client-id", creds.client_id, "--username", creds.username]
    argv += ["--jwt-key-file", str(key_file), "--instance-url", url, "--allow-http-loopback"]
    if site:
        argv += ["--site", site]
    capsys.readouterr()
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return out.strip()


async def send(
    http: aiohttp.ClientSession, item: dict[str, Any], variables: dict[str, str]
) -> tuple[int, Any]:
    """Send one collection request as Postman builds it; return the status and the JSON."""
    request = item["request"]
    url = request["url"]
    query = [q for q in url.get("query", []) if not q.get("disabled")]
    composed = "".join(url["host"]) + "/" + "/".join(url["path"])
    if query:
        composed += "?" + "&".join(f"{q['key']}={q['value']}" for q in query)
    assert composed == url["raw"]  # the parts Postman sends agree with the URL it shows
    headers = {
        h["key"]: substitute(h["value"], variables)
        for h in request["header"]
        if not h.get("disabled")
    }
    auth = request.get("auth", COLLECTION["auth"])
    if auth["type"] == "bearer":
        (token,) = [a["value"] for a in auth["bearer"] if a["key"] == "token"]
        headers["Authorization"] = "Bearer " + substitute(token, variables)
    else:
        assert auth["type"] == "noauth"
    form = None
    if "body" in request:
        assert request["body"]["mode"] == "urlencoded"
        form = {
            field["key"]: substitute(field["value"], variables)
            for field in request["body"]["urlencoded"]
        }
    async with http.request(
        request["method"],
        substitute("".join(url["host"]) + "/" + "/".join(url["path"]), variables),
        params={q["key"]: substitute(q["value"], variables) for q in query},
        headers=headers,
        data=form,
    ) as resp:
        return resp.status, await resp.json(content_type=None)


def apply_token_script(
    item: dict[str, Any], body: dict[str, Any], variables: dict[str, str]
) -> None:
    """What the token request's test script does with a 200 answer."""
    script = script_lines(item)
    position = [script.index(line) for line in SEED_SCRIPT]
    assert position == sorted(position)
    identity = body["id"].split("/")
    variables["_accessToken"] = body["access_token"]
    variables["_endpoint"] = body["instance_url"]
    variables["_userId"] = identity.pop()
    variables["_orgId"] = identity.pop()


def test_the_token_request_is_the_seed_item() -> None:
    assert COLLECTION["info"]["schema"] == (
        "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
    )
    assert list(items()) == [
        "JWT Bearer Token Flow",
        "API versions",
        "Limits",
        "SOQL query",
        "User info",
    ]
    request = items()["JWT Bearer Token Flow"]["request"]
    assert request["auth"] == {"type": "noauth"}
    assert request["method"] == "POST"
    assert request["header"] == [
        {"key": "Content-Type", "value": "application/x-www-form-urlencoded"}
    ]
    assert request["body"] == {
        "mode": "urlencoded",
        "urlencoded": [
            {"key": "grant_type", "value": GRANT_TYPE, "type": "text"},
            {"key": "assertion", "value": "{{assertion}}", "type": "text"},
        ],
    }
    assert request["url"] == {
        "raw": "{{url}}{{site}}/services/oauth2/token",
        "host": ["{{url}}{{site}}"],
        "path": ["services", "oauth2", "token"],
    }
    script = script_lines(items()["JWT Bearer Token Flow"])
    assert all(line in script for line in SEED_SCRIPT)
    assert "pm.execution.setNextRequest(null);" in script  # an error stops the run
    assert COLLECTION["auth"] == {
        "type": "bearer",
        "bearer": [{"key": "token", "value": "{{_accessToken}}", "type": "string"}],
    }


def test_the_environment_defines_every_variable_and_holds_no_secret() -> None:
    used = set(VARIABLE.findall(json.dumps(COLLECTION["item"]) + json.dumps(COLLECTION["auth"])))
    assert used == {"url", "site", "assertion", "version", "_accessToken", "_endpoint"}
    assert {v["key"] for v in ENVIRONMENT["values"]} == used | {"_orgId", "_userId"}
    assert environment() == {
        "url": "https://login.salesforce.com",
        "site": "",
        "version": "62.0",
        "assertion": "",
        "_accessToken": "",
        "_endpoint": "",
        "_orgId": "",
        "_userId": "",
    }
    secret = {v["key"] for v in ENVIRONMENT["values"] if v["type"] == "secret"}
    assert secret == {"assertion", "_accessToken"}


@pytest.mark.parametrize("site", ["", "/customers"])
async def test_the_collection_runs_against_the_emulator(
    emulator: Emulator,
    creds: EmulatorCredentials,
    site: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    variables = environment()
    assertion = sign_assertion(creds, emulator.url, site, tmp_path, capsys)
    variables.update(url=emulator.url, site=site, assertion=assertion)
    steps = items()
    async with aiohttp.ClientSession() as http:
        status, token = await send(http, steps["JWT Bearer Token Flow"], variables)
        assert status == 200
        apply_token_script(steps["JWT Bearer Token Flow"], token, variables)
        assert token["token_type"] == "Bearer"
        assert token["scope"] == "web openid api full"
        assert variables["_endpoint"] == emulator.url
        assert variables["_orgId"] == creds.org_id
        assert variables["_userId"] == creds.user_id
        assert variables["_accessToken"].startswith(creds.org_id + "!")
        (login,) = emulator.token_requests
        assert login.path == f"{site}/services/oauth2/token"
        assert login.content_type == "application/x-www-form-urlencoded"
        assert login.form == {"grant_type": GRANT_TYPE, "assertion": assertion}
        assert login.claims["aud"] == (
            f"{emulator.url}{site}" if site else "https://login.salesforce.com"
        )

        status, versions = await send(http, steps["API versions"], variables)
        assert status == 200
        assert versions == [
            {"label": "Spring '24", "url": "/services/data/v60.0", "version": "60.0"},
            {"label": "Summer '24", "url": "/services/data/v61.0", "version": "61.0"},
            {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"},
        ]

        status, limits = await send(http, steps["Limits"], variables)
        assert status == 200
        assert limits["DailyApiRequests"] == {
            "Max": emulator.daily_api_limit,
            "Remaining": emulator.daily_api_limit - 1,
        }

        status, page = await send(http, steps["SOQL query"], variables)
        assert status == 200
        assert page["totalSize"] == 5
        assert page["done"] is True
        assert [r["Name"] for r in page["records"]] == [f"Account 000{i}" for i in range(1, 6)]
        assert list(page["records"][0]) == ["attributes", "Id", "Name"]

        status, info = await send(http, steps["User info"], variables)
        assert status == 200
        assert info["user_id"] == variables["_userId"] == creds.user_id
        assert info["organization_id"] == variables["_orgId"] == creds.org_id
        assert info["preferred_username"] == "etl@example.com"

    bearer = f"Bearer {variables['_accessToken']}"
    assert [(r.endpoint, r.method, r.status, r.authorization) for r in emulator.requests] == [
        ("versions", "GET", 200, None),
        ("limits", "GET", 200, bearer),
        ("query", "GET", 200, bearer),
        ("userinfo", "GET", 200, bearer),
    ]
    assert emulator.requests[2].query_string == "q=SELECT+Id,+Name+FROM+Account+LIMIT+5"
    assert emulator.token_request_count == 1


async def test_a_refused_assertion_gets_salesforces_error(emulator: Emulator) -> None:
    variables = environment()
    variables.update(url=emulator.url, assertion="not-a-jwt")
    async with aiohttp.ClientSession() as http:
        status, body = await send(http, items()["JWT Bearer Token Flow"], variables)
    assert status == 400
    assert body == {"error": "invalid_grant", "error_description": "invalid assertion"}
    assert emulator.requests == []
