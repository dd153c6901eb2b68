"""The sfauth command line, run the way a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import jwt
import pytest
import structlog

from sfauth.cli import main
from sfauth.testing import Emulator, ScriptedResponse, no_backoff

from .conftest import pem_block, serve_emulator

SFAUTH = [sys.executable, "-m", "sfauth"]


def test_demo_prints_a_clean_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--requests", "400", "--limit", "20"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "requests ok:     400" in lines
    assert "requests failed: 0" in lines
    assert "               every session expires after 200 have finished" in lines
    assert (
        "token requests:  2 (first login + one refresh shared by every request that saw the "
        "expiry)"
    ) in lines
    assert "!****" in out  # the token is shown masked only


def test_demo_summary_says_when_no_request_saw_the_expiry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--requests", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "requests ok:     1" in lines
    assert "               every session expires after 1 have finished" in lines
    assert "replayed on 401: 0 (no request was sent with the expired session)" in lines
    assert (
        "token requests:  1 (the first login; no request saw the expiry, so nothing was refreshed)"
    ) in lines


def test_demo_serves_its_metrics_for_prometheus(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("opentelemetry.exporter.prometheus", reason="needs sfauth[prometheus]")
    assert main(["demo", "--requests", "400", "--limit", "20", "--metrics", "127.0.0.1:0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    served = lines[0]
    assert re.fullmatch(
        r"sfauth demo: metrics for Prometheus at http://127\.0\.0\.1:\d+/metrics", served
    )
    shown = lines[lines.index(f"metrics ({served.rsplit(' ', 1)[1]}, sfauth's series):") + 1 :]
    duration = [line for line in shown if "refresh_duration_seconds_sum" in line]
    assert len(duration) == 1
    shown.remove(duration[0])
    assert shown == [
        '  sfauth_token_requests_total{sfauth_outcome="success"} 2.0',
        '  sfauth_token_refresh_duration_seconds_count{sfauth_outcome="success",'
        'sfauth_token_shared="false"} 2.0',
        '  sfauth_request_replays_total{sfauth_error_code="INVALID_SESSION_ID"} 20.0',
        '  sfauth_circuit_open{sfauth_username="etl@example.com"} 0.0',
        '  sfauth_api_requests_used{sfauth_username="etl@example.com"} 400.0',
        '  sfauth_api_requests_limit{sfauth_username="etl@example.com"} 15000.0',
        '  sfauth_requests_in_flight{sfauth_username="etl@example.com"} 0.0',
    ]


def test_demo_metrics_without_the_extra_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> None:
        raise ImportError(
            "metrics for Prometheus need the prometheus extra: pip install "
            "'/path/to/sfauth[prometheus]' (or make test, whose .venv has it)"
        )

    monkeypatch.setattr("sfauth.cli.prometheus", missing)
    assert main(["demo", "--metrics", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "sfauth demo: metrics for Prometheus need the prometheus extra: "
        "pip install '/path/to/sfauth[prometheus]' (or make test, whose .venv has it)\n"
    )
    assert captured.out == ""


@pytest.mark.parametrize("value", ["", "host:", "1.2.3.4:70000", "port", "[::1", "::1:0"])
def test_metrics_address_must_end_in_a_port(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    _, last = _usage_error(capsys, ["demo", "--metrics", value])
    assert last == (
        "sfauth demo: error: argument --metrics: must be [HOST:]PORT with PORT 0-65535 (an "
        f"IPv6 HOST in brackets), got {value!r}"
    )


@pytest.mark.parametrize(
    ("value", "address"),
    [("9464", ("127.0.0.1", 9464)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:80", ("::1", 80))],
)
def test_metrics_address_forms(value: str, address: tuple[str, int]) -> None:
    from sfauth.cli import _listen_address

    assert _listen_address(value) == address


async def _interrupted_demo(*flags: str, after: str) -> tuple[int, str]:
    """Run ``sfauth demo`` with ``flags``, send Ctrl-C once a line starts with ``after``."""
    pytest.importorskip("opentelemetry.exporter.prometheus", reason="needs sfauth[prometheus]")
    proc = await asyncio.create_subprocess_exec(
        *SFAUTH, "demo", *flags, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    seen = []
    async for line in proc.stdout:
        seen.append(line.decode())
        if line.decode().startswith(after):
            proc.send_signal(signal.SIGINT)
            break
    await proc.communicate()
    return await proc.wait(), "".join(seen)


async def test_ctrl_c_ends_a_held_metrics_endpoint_cleanly() -> None:
    code, out = await _interrupted_demo(
        "--requests", "20", "--metrics", "127.0.0.1:0", "--hold", after="serving http://"
    )
    assert code == 0, out


async def test_ctrl_c_during_the_run_is_an_interruption_with_metrics_too() -> None:
    code, out = await _interrupted_demo(
        "--requests", "50000", "--metrics", "127.0.0.1:0", after="  workload"
    )
    assert code == 130, out


def test_hold_needs_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--hold"]) == 2
    assert capsys.readouterr().err == "sfauth demo: --hold needs --metrics\n"


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
    assert done.stderr.count("\n") == 1  # the failed attempt's warning is not repeated
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


# --- bad arguments: exit 2 with the subcommand's usage ------------------------------------


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[str, str]:
    """Run ``main(argv)``, expect argparse's exit 2; return the usage's first and last lines."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    return lines[0], lines[-1]


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "http"])
def test_emulator_port_out_of_range_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    first, last = _usage_error(capsys, ["emulator", "--port", port])
    assert first.startswith("usage: sfauth emulator [-h] [-v] ")
    assert last == (
        "sfauth emulator: error: argument --port: must be a port number from 0 to 65535 "
        f"(0 picks a free port), got {port!r}"
    )


def test_emulator_key_file_in_a_missing_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "no" / "such" / "k.pem"
    first, last = _usage_error(capsys, ["emulator", "--key-file", str(key_file)])
    assert first.startswith("usage: sfauth emulator ")
    assert last == (
        f"sfauth emulator: error: argument --key-file: cannot write the key file {key_file}: "
        f"directory {key_file.parent} does not exist; create it or pass a path in an existing "
        "directory"
    )


def test_emulator_never_overwrites_an_existing_key_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "server.key"
    key_file.write_text("my own key")
    first, last = _usage_error(capsys, ["emulator", "--key-file", str(key_file)])
    assert first.startswith("usage: sfauth emulator ")
    assert last == (
        f"sfauth emulator: error: argument --key-file: the key file {key_file} exists: the "
        "emulator writes the private key it generates there and never overwrites a file (it "
        "might be your own key); pass a new path"
    )
    assert key_file.read_text() == "my own key"


def test_emulator_key_file_that_cannot_be_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / ("k" * 300)  # longer than any file name may be
    assert main(["emulator", "--key-file", str(key_file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"sfauth: error: cannot write the key file {key_file}: File name too long; pass "
        "--key-file a path you can write\n"
    )


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_requests_must_be_a_positive_integer(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    first, last = _usage_error(capsys, ["demo", "--requests", value])
    assert first == "usage: sfauth demo [-h] [-v] [--requests REQUESTS] [--limit LIMIT]"
    assert (
        last
        == f"sfauth demo: error: argument --requests: must be a positive integer, got {value!r}"
    )


def test_unknown_flag_shows_the_subcommand_usage(capsys: pytest.CaptureFixture[str]) -> None:
    first, last = _usage_error(capsys, ["token", "--bogus", "x"])
    assert first.startswith("usage: sfauth token [-h] [-v] [--client-id CLIENT_ID] ")
    assert last == "sfauth token: error: unrecognized arguments: --bogus x"
    # Before the command, it is the top-level parser's flag that is wrong.
    first, last = _usage_error(capsys, ["--bogus", "token"])
    assert first == "usage: sfauth [-h] [-v] [--version] COMMAND ..."
    assert last == "sfauth: error: unrecognized arguments: --bogus"


def test_request_to_another_host_is_a_usage_error(
    served: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["request", "GET", "https://evil.example/x", *_flags(served)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "sfauth: error: refusing to send to 'https://evil.example': requests go only to the "
        f"org's instance_url '{served['url']}'; pass a path such as '/services/data/...'\n"
    )


# --- -v anywhere; warnings and retries at the default verbosity ----------------------------


def test_verbose_before_or_after_the_command(
    served: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    def levels(argv: list[str]) -> set[str]:
        assert main(argv) == 0
        structlog.reset_defaults()
        err = capsys.readouterr().err
        return {line.split("]")[0].split("[")[1].strip() for line in err.splitlines()}

    assert levels(["token", *_flags(served)]) == set()
    assert levels(["token", *_flags(served), "-v"]) == {"info"}
    assert levels(["-v", "token", *_flags(served)]) == {"info"}
    assert levels(["token", "-vv", *_flags(served)]) == {"info", "debug"}
    assert levels(["-v", "token", "-v", *_flags(served)]) == {"info", "debug"}


def test_key_permission_warning_is_shown(
    served: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "sfauth.key"
    shutil.copyfile(served["private_key_file"], key_file)
    key_file.chmod(0o644)
    flags = _flags(served)
    flags[flags.index("--jwt-key-file") + 1] = str(key_file)
    assert main(["token", *flags]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        f"sfauth: warning: sfauth.key.permissions path='{key_file}' mode=0o644 "
        "hint='the private key file is readable by group or others; chmod 600 it'\n"
    )
    assert json.loads(captured.out)["access_token"].endswith("!****")


def test_unreachable_login_host_says_what_it_waits_for(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pkcs8_pem: bytes
) -> None:
    key_file = tmp_path / "sfauth.key"
    key_file.write_bytes(pkcs8_pem)
    key_file.chmod(0o600)
    with socket.socket() as closed:  # bound, never listening: every connect is refused
        closed.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{closed.getsockname()[1]}"
        flags = ["--client-id", "c", "--username", "u", "--jwt-key-file", str(key_file)]
        with no_backoff():
            assert main(["token", *flags, "--instance-url", url]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[:-1] == [
        f"sfauth: waiting for POST {url}/services/oauth2/token (retrying in 0.0 s after "
        f"attempt {attempt}: connection_error)"
        for attempt in range(1, 8)
    ]
    assert lines[-1].startswith("sfauth: error: TransientTokenError: connection_error: ")
    assert captured.out == ""


async def test_api_retry_is_announced(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    async with Emulator() as emu:
        creds = emu.create_credentials()
        key_file = creds.write_private_key(tmp_path / "sfauth.key")
        flags = [
            "--client-id", creds.client_id,
            "--username", creds.username,
            "--jwt-key-file", str(key_file),
            "--instance-url", emu.url,
            "--allow-http-loopback",
        ]  # fmt: skip
        unavailable = [{"errorCode": "SERVER_UNAVAILABLE", "message": "try again"}]
        emu.script_rest_responses([ScriptedResponse(status=503, json=unavailable)])
        path = "/services/data/v62.0/limits"
        with no_backoff():
            status = await asyncio.to_thread(main, ["request", "GET", path, *flags])
    assert status == 0
    captured = capsys.readouterr()
    assert captured.err == (
        f"sfauth: waiting for GET {emu.url}{path} (retrying in 0.0 s after attempt 1: "
        "HTTP 503 SERVER_UNAVAILABLE)\n"
    )
    assert json.loads(captured.out)["DailyApiRequests"]["Max"] == 15000


# --- messages name where a value came from ---------------------------------------------------


@pytest.fixture
def sf_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``SF_*`` variable but those a test sets."""
    for name in list(os.environ):
        if name.startswith("SF_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SF_CLIENT_ID", "3MVG9client")
    monkeypatch.setenv("SF_USERNAME", "etl@acme.com")
    return monkeypatch


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_key_errors_name_the_variable_the_key_came_from(
    sf_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    malformed = pem_block("AAAA").strip().replace("\n", "\\n")
    sf_env.setenv("SF_JWT_KEY", malformed)
    assert _error(capsys, ["assertion"]) == (
        "sfauth: error: $SF_JWT_KEY is not a readable PEM private key (the PEM body is "
        "malformed); export it again with `openssl pkey -in key.pem -out key-pkcs8.pem`\n"
    )
    missing = tmp_path / "missing.pem"
    # A flag wins over the variable, and is the one named.
    assert _error(capsys, ["assertion", "--jwt-key-file", str(missing)]) == (
        f"sfauth: error: --jwt-key-file: no file exists at '{missing}'; pass the path of a "
        "private key PEM file\n"
    )
    sf_env.delenv("SF_JWT_KEY")
    sf_env.setenv("SF_JWT_KEY_FILE", str(missing))
    assert _error(capsys, ["assertion"]) == (
        f"sfauth: error: $SF_JWT_KEY_FILE: no file exists at '{missing}'; pass the path of a "
        "private key PEM file\n"
    )
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    empty.chmod(0o600)
    sf_env.setenv("SF_JWT_KEY_FILE", str(empty))
    assert _error(capsys, ["assertion"]) == (
        "sfauth: error: the $SF_JWT_KEY_FILE key file is empty; expected a PEM private key\n"
    )


def test_url_errors_name_the_variable_or_flag(
    sf_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], pkcs8_pem: bytes
) -> None:
    sf_env.setenv("SF_JWT_KEY", pkcs8_pem.decode())
    sf_env.setenv("SF_LOGIN_URL", "http://127.0.0.1:5")
    fix = (
        "uses plain http; pass --allow-http-loopback (or set SF_ALLOW_HTTP_LOOPBACK=true) to "
        "talk to a local emulator over http\n"
    )
    assert (
        _error(capsys, ["assertion"]) == f"sfauth: error: $SF_LOGIN_URL 'http://127.0.0.1:5' {fix}"
    )
    sf_env.delenv("SF_LOGIN_URL")
    sf_env.setenv("SF_INSTANCE_URL", "http://127.0.0.1:6")
    assert _error(capsys, ["assertion"]) == (
        f"sfauth: error: $SF_INSTANCE_URL 'http://127.0.0.1:6' {fix}"
    )
    argv = ["assertion", "--instance-url", "http://127.0.0.1:7"]
    assert _error(capsys, argv) == f"sfauth: error: --instance-url 'http://127.0.0.1:7' {fix}"
    sf_env.setenv("SF_SITE", "portal")
    assert _error(capsys, ["assertion", "--instance-url", "https://acme.my.salesforce.com"]) == (
        "sfauth: error: $SF_SITE must be a path prefix starting with '/' (e.g. '/customers'); "
        "got 'portal'\n"
    )
    argv = ["assertion", "--instance-url", "https://site.example/portal"]
    assert _error(capsys, argv) == (
        "sfauth: error: --instance-url 'https://site.example/portal' must be only scheme and "
        "host (no path, query or fragment); an Experience Cloud prefix goes in --site\n"
    )
    # Only the setting's own name is rewritten, not the same word later in the sentence.
    assert _error(capsys, ["assertion", "--username", " "]) == (
        "sfauth: error: --username is empty; pass the Salesforce username the integration "
        "acts as\n"
    )


def test_allow_http_loopback_from_the_environment(
    served: dict[str, str], sf_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sf_env.setenv("SF_CLIENT_ID", served["client_id"])
    sf_env.setenv("SF_USERNAME", served["username"])
    sf_env.setenv("SF_JWT_KEY_FILE", served["private_key_file"])
    sf_env.setenv("SF_INSTANCE_URL", served["url"])
    sf_env.setenv("SF_ALLOW_HTTP_LOOPBACK", "true")
    assert main(["token"]) == 0
    assert json.loads(capsys.readouterr().out)["instance_url"] == served["url"]
    sf_env.setenv("SF_ALLOW_HTTP_LOOPBACK", "no")
    assert main(["token", "--allow-http-loopback"]) == 0  # the flag wins
    capsys.readouterr()
    assert _error(capsys, ["token"]) == (
        f"sfauth: error: $SF_INSTANCE_URL '{served['url']}' uses plain http; pass "
        "--allow-http-loopback (or set SF_ALLOW_HTTP_LOOPBACK=true) to talk to a local "
        "emulator over http\n"
    )
    sf_env.setenv("SF_ALLOW_HTTP_LOOPBACK", "maybe")
    assert _error(capsys, ["token"]) == (
        "sfauth: error: SF_ALLOW_HTTP_LOOPBACK must be one of true, false, 1, 0, yes, no "
        "(any case); got 'maybe'\n"
    )
    assert main(["token", "--allow-http-loopback"]) == 0  # not read when the flag is given


@pytest.mark.parametrize("command", ["token", "emulator"])
def test_a_reader_that_goes_away_ends_the_output_quietly(
    served: dict[str, str], command: str
) -> None:
    # `sfauth token ... | head -c 0`: the reader is gone before anything is written.
    read, write = os.pipe()
    os.close(read)
    flags = _flags(served) if command == "token" else []
    try:
        result = subprocess.run(
            [*SFAUTH, command, *flags], stdout=write, stderr=subprocess.PIPE, timeout=60
        )
    finally:
        os.close(write)
    assert result.stderr == b""
    assert result.returncode == 141


def test_emulator_serves_a_loaded_describe(tmp_path: Path) -> None:
    describe = {
        "name": "Invoice__c",
        "keyPrefix": "a0X",
        "custom": True,
        "fields": [
            {"name": "Id", "type": "id", "nillable": False, "createable": False},
            {"name": "Name", "type": "string", "length": 80, "defaultedOnCreate": True},
            {"name": "Amount__c", "type": "currency", "nillable": False, "precision": 18},
        ],
    }
    path = tmp_path / "Invoice__c.json"
    path.write_text(json.dumps({"status": 0, "result": describe}))

    async def create(url: str, token: str) -> list[tuple[int, object]]:
        answers: list[tuple[int, object]] = []
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            for body in ({"Name": "INV-1"}, {"Name": "INV-1", "Amount__c": 5}):
                async with http.post(url, json=body) as resp:
                    answers.append((resp.status, await resp.json()))
        return answers

    with serve_emulator("--describe", str(path)) as info:
        done = _run("token", *_flags(info), "--show-token")
        assert done.returncode == 0, done.stderr
        token = json.loads(done.stdout)["access_token"]
        url = f"{info['url']}/services/data/v62.0/sobjects/Invoice__c"
        missing, created = asyncio.run(create(url, token))
    assert missing == (
        400,
        [
            {
                "message": "Required fields are missing: [Amount__c]",
                "errorCode": "REQUIRED_FIELD_MISSING",
                "fields": ["Amount__c"],
            }
        ],
    )
    assert created[0] == 201
    assert isinstance(created[1], dict)
    assert created[1]["id"].startswith("a0X")


def test_emulator_describe_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    done = _run("emulator", "--describe", str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"sfauth: error: describe file {path} is not JSON: ")
