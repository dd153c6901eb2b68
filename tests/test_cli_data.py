"""`sfauth query` and `sfauth bulk ingest|query` against `sfauth emulator` in its own process."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import serve_emulator

SFAUTH = [sys.executable, "-m", "sfauth"]


@pytest.fixture(scope="module")
def org() -> Iterator[dict[str, str]]:
    with serve_emulator() as info:
        yield info


def flags(info: dict[str, str]) -> list[str]:
    return [
        "--client-id", info["client_id"],
        "--username", info["username"],
        "--jwt-key-file", info["private_key_file"],
        "--instance-url", info["url"],
        "--allow-http-loopback",
    ]  # fmt: skip


def run(org: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SFAUTH, *args, *flags(org)], capture_output=True, text=True, timeout=60
    )


def test_query_streams_csv_and_jsonl(org: dict[str, str], tmp_path: Path) -> None:
    done = run(
        org, "query", "SELECT Name, Industry, Owner.Name FROM Account ORDER BY Name LIMIT 2"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "Name,Industry,Owner.Name\n"
        "Account 0001,Technology,Emulator Admin\n"
        "Account 0002,Finance,Emulator Admin\n"
    )
    assert done.stderr.startswith("sfauth: 2 records written to standard output in ")
    out = tmp_path / "accounts.jsonl"
    done = run(
        org, "query", "SELECT Name FROM Account LIMIT 3", "--format", "jsonl",
        "--output-file", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert out.read_text().splitlines() == [
        json.dumps({"Name": f"Account {n:04d}"}) for n in (1, 2, 3)
    ]
    assert done.stderr.startswith(f"sfauth: 3 records written to {out} in ")


def test_query_error_is_salesforces(org: dict[str, str]) -> None:
    done = run(org, "query", "SELECT Nope FROM Account")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("sfauth: error: MalformedRequestError: SOQL query failed (GET ")
    assert "INVALID_FIELD" in done.stderr


def test_bulk_ingest_writes_the_failed_records(org: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "contacts.csv"
    source.write_text("LastName,Email\nIngestA,a@x.io\n,b@x.io\nIngestC,not-an-email\n")
    failed = tmp_path / "failed.csv"
    done = run(
        org, "bulk", "ingest", "--sobject", "Contact", "--file", str(source),
        "--failed-records", str(failed),
    )  # fmt: skip
    assert done.returncode == 1  # some records failed
    assert done.stdout == ""
    summary = done.stderr.strip()
    assert re.fullmatch(
        r"sfauth: bulk insert Contact: 3 records in 1 job \(750\w{15}\), 3 processed, 2 "
        rf"failed \(written to {re.escape(str(failed))}\), 0 unprocessed, \d+\.\d s",
        summary,
    ), summary
    rows = list(csv.DictReader(io.StringIO(failed.read_text())))
    assert rows == [
        {
            "sf__Id": "",
            "sf__Error": "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:"
            "LastName --",
            "LastName": "",
            "Email": "b@x.io",
        },
        {
            "sf__Id": "",
            "sf__Error": "INVALID_EMAIL_ADDRESS:Email: invalid email address: not-an-email:"
            "Email --",
            "LastName": "IngestC",
            "Email": "not-an-email",
        },
    ]
    export = run(
        org,
        "bulk",
        "query",
        "--query",
        "SELECT LastName FROM Contact WHERE LastName LIKE 'Ingest%'",
    )
    assert export.returncode == 0, export.stderr
    assert export.stdout == '"LastName"\n"IngestA"\n'
    assert export.stderr.startswith("sfauth: 1 record written to standard output in ")


def test_bulk_ingest_refuses_bad_input_in_cli_terms(org: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "contacts.csv"
    source.write_text("LastName\nx\n")
    done = run(
        org,
        "bulk",
        "ingest",
        "--sobject",
        "Contact",
        "--file",
        str(source),
        "--operation",
        "upsert",
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "sfauth: error: upsert needs --external-id: the external id field the records are "
        "matched on, e.g. --external-id External_Id__c\n"
    )
    done = run(org, "bulk", "ingest", "--sobject", "Contact", "--file", str(tmp_path / "no.csv"))
    assert (done.returncode, done.stderr) == (
        2,
        f"sfauth: error: --file '{tmp_path}/no.csv': no such file\n",
    )
    source.write_text("LastName\r\nx\r\n")
    done = run(org, "bulk", "ingest", "--sobject", "Contact", "--file", str(source))
    assert done.returncode == 2
    assert done.stderr == (
        "sfauth: error: the CSV's lines end with CRLF but --line-ending 'LF'; pass "
        "--line-ending 'CRLF'; nothing was sent\n"
    )


def test_bulk_query_jsonl_to_a_file(org: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    done = run(
        org, "bulk", "query", "--query",
        "SELECT Name, Industry FROM Account ORDER BY Name LIMIT 3",
        "--result-format", "jsonl", "--output-file", str(out), "--max-records", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"Name": "Account 0001", "Industry": "Technology"},
        {"Name": "Account 0002", "Industry": "Finance"},
        {"Name": "Account 0003", "Industry": "Healthcare"},
    ]


def _on_a_terminal(command: list[str]) -> tuple[int, str]:
    """Run ``command`` with a terminal as stdin, stdout and stderr; its status and output."""
    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.execvp(command[0], command)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode()


def test_progress_is_shown_only_on_a_terminal(org: dict[str, str], tmp_path: Path) -> None:
    """rich draws the job's progress on a terminal, but never between records on screen."""
    out = tmp_path / "accounts.csv"
    query = ["bulk", "query", "--query", "SELECT Name FROM Account", *flags(org)]
    status, output = _on_a_terminal([*SFAUTH, *query, "--output-file", str(out)])
    assert status == 0
    assert "bulk query 750" in output  # the progress line
    assert f"sfauth: 250 records written to {out} in " in output
    assert out.read_text().count("\n") == 251
    status, output = _on_a_terminal([*SFAUTH, *query])  # records to the terminal
    assert status == 0
    assert "bulk query 750" not in output
    assert output.startswith('"Name"\r\n"Account 0001"\r\n')
    # Piped (not a terminal): no progress at all.
    done = run(
        org, "bulk", "query", "--query", "SELECT Name FROM Account", "--output-file", str(out)
    )
    assert "bulk query 750" not in done.stderr
    assert done.stderr.startswith(f"sfauth: 250 records written to {out} in ")


def test_a_failing_query_leaves_the_output_file_alone(org: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "kept.csv"
    out.write_text("yesterday's export\n")
    for command in (
        ["query", "SELECT Nope FROM Account"],
        ["bulk", "query", "--query", "SELECT Nope FROM Account"],
    ):
        done = run(org, *command, "--output-file", str(out))
        assert done.returncode == 1
        assert out.read_text() == "yesterday's export\n"
    empty = tmp_path / "empty.csv"
    done = run(
        org, "query", "SELECT Name FROM Account WHERE Name = 'none'", "--output-file", str(empty)
    )
    assert (done.returncode, empty.read_bytes()) == (0, b"")
    assert done.stderr.startswith(f"sfauth: 0 records written to {empty} in ")


def test_bad_output_places_are_refused_before_loading(org: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "contacts.csv"
    source.write_text("LastName\nNoDirCheck\n")
    missing = tmp_path / "nodir" / "failed.csv"
    done = run(
        org,
        "bulk",
        "ingest",
        "--sobject",
        "Contact",
        "--file",
        str(source),
        "--failed-records",
        str(missing),
    )
    assert (done.returncode, done.stderr) == (
        2,
        f"sfauth: error: --failed-records '{missing}': no such directory\n",
    )
    done = run(
        org, "bulk", "query", "--query", "SELECT Id FROM Contact WHERE LastName = 'NoDirCheck'"
    )
    assert done.stdout == '"Id"\n'  # nothing was loaded
    done = run(org, "bulk", "query", "--query", "SELECT Id FROM Account", "--max-records", "0")
    assert (
        done.stderr
        == "sfauth: error: --max-records must be a positive number of records per page; got 0\n"
    )
