"""The examples as subprocesses: etl_worker.py (demo, --from-env) and dask_etl.py (4 workers)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from sfauth.testing import Emulator, EmulatorCredentials, ScriptedResponse

from .conftest import REDIS_URL

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "etl_worker.py"


def command(*args: str) -> list[str]:
    return [sys.executable, str(EXAMPLE), *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
    env.update(extra)
    return env


def numbers(stdout: str) -> dict[str, int]:
    """The summary's numbers: ``{"records read": 1000, "created": 1000, ...}``."""
    found: dict[str, int] = {}
    for label in ("records read", "upserted", "failed", "token requests", "faults injected"):
        match = re.search(rf"^{label}:\s+(\d+)", stdout, re.MULTILINE)
        if match:
            found[label] = int(match[1])
    match = re.search(r"^upserted:\s+\d+ \(created (\d+), updated (\d+)\)", stdout, re.MULTILINE)
    if match:
        found["created"], found["updated"] = int(match[1]), int(match[2])
    match = re.search(r"^401 replays:\s+(\d+)", stdout, re.MULTILINE)
    if match:
        found["401 replays"] = int(match[1])
    return found


def test_demo_mode_survives_faults_and_expiries(tmp_path: Path) -> None:
    failed = tmp_path / "failed.csv"
    result = subprocess.run(
        command("--failed-records", str(failed)),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = numbers(result.stdout)
    assert found["records read"] == 10_000
    assert (found["upserted"], found["created"], found["updated"]) == (9997, 9997, 0)
    assert found["failed"] == 3
    assert found["token requests"] == 3  # the login and one refresh after each job's expiry
    assert found["faults injected"] > 0
    assert (
        "verified:        9997 Account_Copy__c records, one per valid Account; failed: the "
        "planted ones" in result.stdout
    )
    assert f"failed records:  written to {failed}" in result.stdout
    rows = failed.read_text().splitlines()
    assert rows[0] == "sf__Id,sf__Error,Source_Id__c,Name,Industry__c"
    assert len(rows) == 4
    assert all(
        ",STRING_TOO_LONG:Name: data value too large: " + "N" * 81 + " (max length=80):Name --,"
        in row
        for row in rows[1:]
    )
    assert result.stderr == ""


def test_demo_mode_options() -> None:
    result = subprocess.run(
        command("--accounts", "300", "--invalid", "0", "--fault-rate", "0"),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = numbers(result.stdout)
    assert (found["records read"], found["created"], found["failed"]) == (300, 300, 0)
    assert found["token requests"] == 3
    assert found["faults injected"] == 0


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        command("--invalid", "-1"),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "argument --invalid: must be >= 0, got -1" in result.stderr
    taken = tmp_path / "taken.csv"
    taken.write_text("")
    result = subprocess.run(
        command("--failed-records", str(taken)),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"argument --failed-records: {taken} exists; name a new file" in result.stderr


def test_from_env_without_settings_exits_2_naming_the_variables() -> None:
    result = subprocess.run(
        command("--from-env"),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "etl_worker: error: missing environment variables: SF_CLIENT_ID, SF_USERNAME, "
        "SF_JWT_KEY_FILE or SF_JWT_KEY (set, and not empty)\n"
    )


async def run_example(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    # Async: the emulator serves from this test's event loop while the worker runs.
    proc = await asyncio.create_subprocess_exec(
        *command(*args),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_from_env_against_an_https_org(tmp_path: Path) -> None:
    async with Emulator(tls=True) as emu:
        # The org has the target object, as an admin would have created it.
        emu.schema.add_object("Account_Copy__c", {"Industry__c": "string"})
        emu.schema.add_field("Account_Copy__c", "Source_Id__c", "string", external_id=True)
        creds = emu.create_credentials()
        ca_file = tmp_path / "ca.pem"
        ca_file.write_bytes(emu.ca_pem)
        env = clean_env(
            SF_CLIENT_ID=creds.client_id,
            SF_USERNAME=creds.username,
            SF_JWT_KEY=creds.private_key_pem.decode().strip().replace("\n", "\\n"),
            SF_INSTANCE_URL=emu.url,  # the Salesforce CLI's name for the login host
            SF_API_VERSION="v61.0",
            SSL_CERT_FILE=str(ca_file),  # trust the emulator's test CA (aiohttp's ssl=True)
        )
        assert emu.url.startswith("https://127.0.0.1:")

        status, out, err = await run_example(env, "--from-env")
        assert status == 0, out + err
        found = numbers(out)
        assert found == {
            "records read": 250,
            "upserted": 250,
            "created": 250,
            "updated": 0,
            "failed": 0,
            "token requests": 1,
        }
        ids = [str(r["Id"]) for r in emu.records("Account")]
        copies = emu.records("Account_Copy__c")
        assert sorted(str(c["Source_Id__c"]) for c in copies) == sorted(ids)
        assert {r.path.split("/")[3] for r in emu.requests} == {"v61.0"}

        # A second Account_Copy__c with the first Account's external id: Salesforce refuses
        # that record (DUPLICATE_EXTERNAL_ID); the worker reports it and exits 1.
        emu.seed("Account_Copy__c", [{"Name": "duplicate", "Source_Id__c": ids[0]}])
        status, out, err = await run_example(env, "--from-env")
        assert status == 1, out + err
        found = numbers(out)
        assert (found["records read"], found["created"], found["updated"]) == (250, 0, 249)
        assert found["failed"] == 1
        assert f"  {ids[0]}: DUPLICATE_EXTERNAL_ID:Source_Id__c: more than one record" in out
        assert len(emu.records("Account_Copy__c")) == 251


# --- examples/dask_etl.py: an ETL over 4 Dask worker processes -------------------------------

DASK_EXAMPLE = EXAMPLE.parent / "dask_etl.py"


def test_dask_demo_shares_one_login_and_one_limit_across_4_workers(prefix: str) -> None:
    # (prefix: Redis must be up; the demo uses a prefix of its own and deletes its keys.)
    result = subprocess.run(
        [sys.executable, str(DASK_EXAMPLE), "--records", "400", "--chunk-size", "50",
         "--fleet-limit", "6"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {
        "records": 400,
        "chunks": 8,
        "workers": 4,  # 4 processes, each opening sessions of its own
        "upserted": 400,
        "created": 400,
        "failed": {},
        "token_requests": 1,  # one login for the whole fleet
        "emulator": {
            "token_requests": 1,
            "accounts": 400,
            "distinct_external_ids": 400,
            "peak_in_flight": 6,  # fleet_limit, counted by the org
        },
    }


async def test_dask_fleet_asks_once_when_the_login_is_refused(
    emulator: Emulator, creds: EmulatorCredentials, key_file: Path, prefix: str
) -> None:
    emulator.script_token_responses(
        [
            ScriptedResponse(
                status=400,
                json={"error": "invalid_grant", "error_description": "inactive user"},
            )
        ]
    )
    env = clean_env(
        SF_CLIENT_ID=creds.client_id,
        SF_USERNAME=creds.username,
        SF_JWT_KEY_FILE=str(key_file),
        SF_LOGIN_URL=emulator.url,
        SF_ALLOW_HTTP_LOOPBACK="true",
        SF_REDIS_URL=REDIS_URL,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(DASK_EXAMPLE), "--from-env", "--prefix", prefix,
        "--records", "200", "--chunk-size", "25",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 1, stdout.decode() + stderr.decode()
    summary = json.loads(stdout)
    assert summary["failed"] == {"InvalidGrantError": 200}  # every record, every worker
    assert summary["upserted"] == 0
    assert summary["token_requests"] == 1  # the fleet asked once
    assert emulator.token_request_count == 1
