"""The sfauth command line, run the way a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import jwt
import pytest
import structlog

from sfauth.cli import main

SFAUTH = [sys.executable, "-m", "sfauth"]


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # main() configures logging for the CLI process


def test_demo_prints_a_clean_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--requests", "400", "--limit", "20"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "requests ok:     400" in lines
    assert "requests failed: 0" in lines
    assert any(line.startswith("token requests:  2 ") for line in lines)
    assert "!****" in out  # the token is shown masked only


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    """`sfauth emulator` in its own process, and the JSON line it printed."""
    with subprocess.Popen(
        [*SFAUTH, "emulator"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        try:
            yield info
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            Path(info["private_key_file"]).unlink(missing_ok=True)


def _flags(info: dict[str, str]) -> list[str]:
    return [
        "--client-id", info["client_id"],
        "--username", info["username"],
        "--jwt-key-file", info["private_key_file"],
        "--instance-url", info["url"],
        "--allow-http-loopback",
    ]  # fmt: skip


def test_emulator_prints_one_json_line(served: dict[str, str]) -> None:
    assert sorted(served) == ["audience", "client_id", "private_key_file", "url", "username"]
    assert served["url"].startswith("http://127.0.0.1:")
    assert served["audience"] == "https://login.salesforce.com"
    assert Path(served["private_key_file"]).stat().st_mode & 0o077 == 0


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SFAUTH, *args], capture_output=True, text=True, timeout=60)


async def test_seed_curl_flow_with_an_assertion_from_the_cli(served: dict[str, str]) -> None:
    done = _run("assertion", *_flags(served))
    assert done.returncode == 0, done.stderr
    assertion = done.stdout.strip()
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims["iss"] == served["client_id"]
    assert claims["sub"] == served["username"]
    assert claims["aud"] == "https://login.salesforce.com"
    # What the seed's curl command sends: a form-encoded POST, no other auth.
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{served['url']}/services/oauth2/token", data=form) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert {"access_token", "scope", "instance_url", "id", "token_type"} <= set(body)
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        url = f"{body['instance_url']}/services/data/v62.0/query"
        q = {"q": "SELECT Id FROM Account LIMIT 3"}
        async with http.get(url, params=q, headers=headers) as resp:
            assert resp.status == 200
            assert len((await resp.json())["records"]) == 3


def test_token_masks_the_access_token_unless_asked(served: dict[str, str]) -> None:
    done = _run("token", *_flags(served))
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    org_id, user_id = body["id"].rsplit("/", 2)[-2:]
    assert body["org_id"] == org_id
    assert body["user_id"] == user_id
    assert body["access_token"] == f"{org_id}!****"
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == served["url"]

    shown = json.loads(_run("token", *_flags(served), "--show-token").stdout)
    assert shown["access_token"].startswith(f"{org_id}!")
    assert len(shown["access_token"]) > 40


def test_token_error_is_one_clear_line(served: dict[str, str]) -> None:
    flags = _flags(served)
    flags[flags.index("--username") + 1] = "nobody@example.com"
    done = _run("token", *flags)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(
        "sfauth: error: InvalidGrantError: invalid_grant: user hasn't approved this consumer"
    )
    assert "Traceback" not in done.stderr


def test_configuration_error_exits_2(served: dict[str, str], tmp_path: Path) -> None:
    flags = _flags(served)
    flags[flags.index("--jwt-key-file") + 1] = str(tmp_path / "missing.pem")
    done = _run("token", *flags)
    assert done.returncode == 2
    assert "no file exists at" in done.stderr
    assert "Traceback" not in done.stderr


def test_request_prints_json_and_exits_0(served: dict[str, str]) -> None:
    done = _run("request", "GET", "/services/data/v62.0/limits", *_flags(served))
    assert done.returncode == 0, done.stderr
    limits = json.loads(done.stdout)
    assert limits["DailyApiRequests"]["Max"] == 15000
    assert done.stdout.startswith("{\n  ")  # pretty-printed


def test_request_with_data_creates_a_record(served: dict[str, str]) -> None:
    data = json.dumps({"Name": "From the CLI"})
    done = _run(
        "request",
        "post",
        "/services/data/v62.0/sobjects/Account/",
        "--data",
        data,
        *_flags(served),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["success"] is True


def test_request_non_2xx_exits_1_with_the_salesforce_error(served: dict[str, str]) -> None:
    done = _run("request", "GET", "/services/data/v62.0/query?q=SELEC", *_flags(served))
    assert done.returncode == 1
    assert done.stderr.startswith("sfauth: error: HTTP 400 MALFORMED_QUERY: ")
    assert json.loads(done.stdout)[0]["errorCode"] == "MALFORMED_QUERY"


def test_request_bad_json_data_exits_2(served: dict[str, str]) -> None:
    done = _run("request", "POST", "/x", "--data", "{nope", *_flags(served))
    assert done.returncode == 2
    assert "--data is not valid JSON" in done.stderr


def test_flags_default_to_sf_environment_variables(served: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
    env.update(
        SF_CLIENT_ID=served["client_id"],
        SF_USERNAME=served["username"],
        SF_JWT_KEY_FILE=served["private_key_file"],
        SF_INSTANCE_URL=served["url"],
    )
    done = subprocess.run(
        [*SFAUTH, "token", "--allow-http-loopback"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["instance_url"] == served["url"]
    # A flag wins over its variable.
    done = subprocess.run(
        [*SFAUTH, "token", "--allow-http-loopback", "--username", "nobody@example.com"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1
    assert "user hasn't approved this consumer" in done.stderr


def test_missing_settings_name_the_variables_and_flags() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
    done = subprocess.run([*SFAUTH, "token"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert done.stderr == (
        "sfauth: error: missing environment variables: SF_CLIENT_ID, SF_USERNAME, "
        "SF_JWT_KEY_FILE or SF_JWT_KEY (set, and not empty); or pass the matching flags "
        "(see --help)\n"
    )
