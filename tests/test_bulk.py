"""Bulk API 2.0 ingest and query against the emulator over real sockets."""

from __future__ import annotations

import asyncio
import csv
import enum
import gzip
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfauth import (
    BulkInputError,
    BulkJobError,
    BulkProgress,
    ConfigurationError,
    MalformedRequestError,
    NotFoundError,
    RetryPolicy,
    TransientAPIError,
)
from sfauth._bulkcsv import RecordEncoder, RowSplitter, parse_rows
from sfauth.testing import Emulator

from .conftest import SessionFactory

#: Polls without the default half-second wait (the emulator finishes jobs at once).
FAST: dict[str, Any] = {"poll_interval": 0.001, "max_poll_interval": 0.01}
V = "/services/data/v62.0"


def bulk_requests(emulator: Emulator) -> list[str]:
    return [r.endpoint for r in emulator.requests if r.endpoint.startswith("bulk_")]


async def test_insert_reports_failed_records_exactly(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    records: list[dict[str, Any]] = [
        {"LastName": f"L{n:05d}", "Email": f"p{n}@example.com"} for n in range(1000)
    ]
    records[10] = {"LastName": None}
    result = await sf.bulk.insert("Contact", records, **FAST)
    assert (result.records_uploaded, result.records_processed, result.records_failed) == (
        1000,
        1000,
        1,
    )
    assert result.records_unprocessed == 0
    assert [row async for row in result.failed_records()] == [
        {
            "sf__Id": "",
            "sf__Error": "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:"
            "LastName --",
            "LastName": "#N/A",
            "Email": "",
        }
    ]
    ok = [row async for row in result.successful_records()]
    stored = {r["Id"]: r for r in emulator.records("Contact")}
    assert len(ok) == 999
    for row in ok:
        assert row["sf__Created"] == "true"
        assert stored[row["sf__Id"]]["LastName"] == row["LastName"]
    # One job: create, upload, close, polls, then the two result downloads.
    endpoints = bulk_requests(emulator)
    assert endpoints[:3] == ["bulk_ingest_create", "bulk_ingest_upload", "bulk_ingest_state"]
    upload = next(r for r in emulator.requests if r.endpoint == "bulk_ingest_upload")
    assert upload.headers["Content-Encoding"] == "gzip"
    assert upload.headers["Content-Type"] == "text/csv"
    # The emulator (aiohttp) decompressed it: RequestRecord.body is the CSV.
    assert upload.body.startswith(b"LastName,Email\nL00000,p0@example.com\n")


async def test_250k_records_two_expiries_three_token_requests(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    """Every session expires after the upload and again when the job completes."""
    emulator.record_requests = False
    invalid = {7, 31_337, 100_000, 249_999}
    records = (
        {"FirstName": f"F{n}"} if n in invalid else {"LastName": f"L{n}", "FirstName": f"F{n}"}
        for n in range(250_000)
    )
    expired: list[str] = []

    def progress(p: BulkProgress) -> None:
        if p.state in ("UploadComplete", "JobComplete") and p.state not in expired:
            expired.append(p.state)
            emulator.expire_all_sessions()

    sf = make_session(api_version="62.0")
    result = await sf.bulk.insert(
        "Contact", records, columns=["LastName", "FirstName"], progress=progress, **FAST
    )
    assert expired == ["UploadComplete", "JobComplete"]
    assert result.records_processed == 250_000
    assert result.records_failed == 4
    failed = [row async for row in result.failed_records()]
    assert [row["FirstName"] for row in failed] == [f"F{n}" for n in sorted(invalid)]
    assert {row["sf__Error"] for row in failed} == {
        "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
    }
    assert emulator.token_request_count == 3
    assert len(emulator.records("Contact")) == 250_000 - 4


async def test_query_120k_three_locator_pages_gzip_and_an_expiry(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.seed("Contact", ({"LastName": f"C{n:06d}"} for n in range(120_000)))
    sf = make_session(api_version="62.0")
    seen: list[str] = []
    async for record in sf.bulk.query(
        "SELECT Id, LastName, Email FROM Contact", max_records=50_000, **FAST
    ):
        seen.append(str(record["LastName"]))
        assert record["Email"] is None
        if len(seen) == 50_000:  # page 1 is read; page 2 is asked for on the next record
            emulator.expire_all_sessions()
    assert len(seen) == len(set(seen)) == 120_000
    assert sorted(seen) == [f"C{n:06d}" for n in range(120_000)]
    pages = [r for r in emulator.requests if r.endpoint == "bulk_query_results"]
    assert [(p.status, p.query_string.split("&")[0]) for p in pages] == [
        (200, "maxRecords=50000"),
        (401, "maxRecords=50000"),  # page 2 met the expired session: refreshed and replayed
        (200, "maxRecords=50000"),
        (200, "maxRecords=50000"),
    ]
    assert [p.query_string.partition("locator=")[2] for p in pages] == [
        "",
        "NTAwMDA%3D",
        "NTAwMDA%3D",
        "MTAwMDAw",
    ]
    assert all("gzip" in p.headers["Accept-Encoding"] for p in pages)
    assert emulator.token_request_count == 2


async def test_query_results_are_gzipped_on_the_wire(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    rows = [r async for r in sf.bulk.query("SELECT Name FROM Account", **FAST)]
    assert len(rows) == 250
    job_id = next(iter(emulator.bulk_jobs))
    token = (await sf.token()).access_token
    url = f"{emulator.instance_url}{V}/jobs/query/{job_id}/results"
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as raw,
        raw.get(url, headers=headers) as resp,
    ):
        body = await resp.read()
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["Sforce-Locator"] == "null"
        assert resp.headers["Sforce-NumberOfRecords"] == "250"
    assert body[:2] == b"\x1f\x8b"
    assert gzip.decompress(body).startswith(b'"Name"\n"Account 0001"\n')


async def test_query_csv_has_one_header(make_session: SessionFactory, emulator: Emulator) -> None:
    sf = make_session(api_version="62.0")
    data = b"".join(
        [
            chunk
            async for chunk in sf.bulk.query_csv(
                "SELECT Name, Industry FROM Account ORDER BY Name LIMIT 5", max_records=2, **FAST
            )
        ]
    )
    lines = data.decode().splitlines()
    assert lines[0] == '"Name","Industry"'
    assert len(lines) == 6
    assert lines[1].startswith('"Account 0001",')
    assert emulator.counters[("bulk_query_results", 200)] == 3


async def test_query_relationship_columns_and_nulls(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    [account] = emulator.seed("Account", [{"Name": "Parent"}])
    emulator.seed("Contact", [{"LastName": "Child", "AccountId": account}, {"LastName": "Solo"}])
    sf = make_session(api_version="62.0")
    rows = [
        r
        async for r in sf.bulk.query(
            "SELECT LastName, Account.Name FROM Contact ORDER BY LastName", **FAST
        )
    ]
    assert rows == [
        {"LastName": "Child", "Account.Name": "Parent"},
        {"LastName": "Solo", "Account.Name": None},
    ]


async def test_upsert_by_external_id_with_parent_reference(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.schema.add_field("Account", "External_Id__c", "string", external_id=True, unique=True)
    emulator.schema.add_field("Contact", "External_Id__c", "string", external_id=True, unique=True)
    emulator.seed("Account", [{"Name": "Acme", "External_Id__c": "A-1"}])
    [existing] = emulator.seed("Contact", [{"LastName": "Old", "External_Id__c": "C-1"}])
    sf = make_session(api_version="62.0")
    records = [
        {"External_Id__c": "C-1", "LastName": "Updated", "Account": {"External_Id__c": "A-1"}},
        {"External_Id__c": "C-2", "LastName": "New", "Account": {"External_Id__c": "A-1"}},
        {"External_Id__c": "C-3", "LastName": "Orphan", "Account": {"External_Id__c": "nope"}},
    ]
    result = await sf.bulk.upsert("Contact", "External_Id__c", records, **FAST)
    ok = [r async for r in result.successful_records()]
    assert [(r["External_Id__c"], r["sf__Created"]) for r in ok] == [
        ("C-1", "false"),
        ("C-2", "true"),
    ]
    assert ok[0]["sf__Id"] == existing
    [failed] = [r async for r in result.failed_records()]
    assert failed["sf__Error"] == (
        "INVALID_CROSS_REFERENCE_KEY:Foreign key external ID: nope not found for field "
        "External_Id__c in entity Account:AccountId --"
    )
    assert failed["Account.External_Id__c"] == "nope"
    job = next(iter(emulator.bulk_jobs.values()))
    assert job.info()["externalIdFieldName"] == "External_Id__c"


async def test_update_none_sets_null_and_absent_leaves_unchanged(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    ids = emulator.seed(
        "Contact", [{"LastName": "A", "Email": "a@x.io", "Title": "T"} for _ in range(2)]
    )
    sf = make_session(api_version="62.0")
    result = await sf.bulk.update(
        "Contact", [{"Id": ids[0], "Email": None}, {"Id": ids[1], "Title": "New"}], **FAST
    )
    assert result.records_failed == 0
    first, second = emulator.records("Contact")
    assert (first["Email"], first["Title"]) == (None, "T")
    assert (second["Email"], second["Title"]) == ("a@x.io", "New")


async def test_delete_sends_only_ids_and_hard_delete_purges(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    ids = emulator.seed("Contact", [{"LastName": f"D{n}"} for n in range(4)])
    sf = make_session(api_version="62.0")
    await sf.bulk.delete("Contact", [{"Id": i, "LastName": "ignored"} for i in ids[:2]], **FAST)
    await sf.bulk.hard_delete("Contact", [{"id": ids[2]}], **FAST)
    uploads = [r.body for r in emulator.requests if r.method == "PUT"]
    assert uploads == [f"Id\n{ids[0]}\n{ids[1]}\n".encode(), f"Id\n{ids[2]}\n".encode()]
    assert [r["Id"] for r in emulator.records("Contact")] == [ids[3]]
    assert [r["Id"] for r in emulator.records("Contact", include_deleted=True)] == [
        ids[0],
        ids[1],
        ids[3],
    ]


async def test_a_new_field_after_the_lookahead_starts_a_job_with_it(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    records: list[dict[str, Any]] = [{"LastName": f"L{n}"} for n in range(1001)]
    records.append({"LastName": "last", "Email": "e@x.io"})
    result = await sf.bulk.insert("Contact", records, **FAST)
    uploads = [r.body for r in emulator.requests if r.method == "PUT"]
    assert [u.split(b"\n", 1)[0] for u in uploads] == [b"LastName", b"LastName,Email"]
    assert uploads[1] == b"LastName,Email\nlast,e@x.io\n"
    assert result.records_processed == 1002
    assert [j.records_processed for j in result.jobs] == [1001, 1]
    # Fields of the first 1,000 records make one header; absent ones are empty cells.
    await sf.bulk.insert("Contact", [{"LastName": "a"}, {"Email": "b@x.io", "LastName": "b"}])
    assert [r.body for r in emulator.requests if r.method == "PUT"][-1] == (
        b"LastName,Email\na,\nb,b@x.io\n"
    )


async def test_many_jobs_at_max_job_bytes_keep_every_record(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    records = [{"LastName": f"Name {n:04d}", "Description": "x" * 40} for n in range(300)]
    result = await sf.bulk.insert("Contact", records, max_job_bytes=4096, **FAST)
    uploads = [r.body for r in emulator.requests if r.method == "PUT"]
    assert len(result.jobs) == len(uploads) > 3
    assert all(u.startswith(b"LastName,Description\n") for u in uploads)
    assert all(len(u) <= 4096 + 1024 for u in uploads)
    assert [j.records_processed for j in result.jobs] == [u.count(b"\n") - 1 for u in uploads]
    assert result.records_processed == 300
    ok = [r["LastName"] async for r in result.successful_records()]
    assert ok == [f"Name {n:04d}" for n in range(300)]


async def test_csv_from_bytes_path_and_file(
    make_session: SessionFactory, emulator: Emulator, tmp_path: Path
) -> None:
    sf = make_session(api_version="62.0")
    data = b'LastName;Description\n"Semi; colon";"two\nlines"\nPlain;x\n'
    path = tmp_path / "contacts.csv"
    path.write_bytes(data)
    for source in (data, path, str(path), io.BytesIO(data)):
        result = await sf.bulk.insert(
            "Contact", source, column_delimiter="SEMICOLON", compress=False, **FAST
        )
        assert (result.records_uploaded, result.records_failed) == (2, 0)
    uploads = [r.body for r in emulator.requests if r.method == "PUT"]
    assert uploads == [data] * 4
    stored = [(r["LastName"], r["Description"]) for r in emulator.records("Contact")]
    assert stored == [("Semi; colon", "two\nlines"), ("Plain", "x")] * 4


async def test_csv_split_across_jobs_repeats_the_header(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    rows = b"".join(b'"Name %04d","multi\nline"\n' % n for n in range(200))
    result = await sf.bulk.insert(
        "Contact", b"LastName,Description\n" + rows, max_job_bytes=1024, compress=False, **FAST
    )
    uploads = [r.body for r in emulator.requests if r.method == "PUT"]
    assert len(uploads) > 3
    assert all(u.startswith(b"LastName,Description\n") for u in uploads)
    assert b"".join(u.removeprefix(b"LastName,Description\n") for u in uploads) == rows
    assert result.records_uploaded == result.records_processed == 200
    assert len(emulator.records("Contact")) == 200


async def test_failed_job_raises_with_salesforce_message(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    with pytest.raises(BulkJobError) as caught:
        await sf.bulk.insert("Contact", [{"LastName": "x", "Nope__c": "y"}], **FAST)
    assert caught.value.job.state == "Failed"
    assert caught.value.job.error_message == "InvalidBatch : Field name not found : Nope__c"
    assert str(caught.value) == (
        f"Bulk ingest job {caught.value.job.id} (insert Contact) ended Failed: "
        "InvalidBatch : Field name not found : Nope__c"
    )
    assert caught.value.result is not None
    assert caught.value.result.records_processed == 0
    assert caught.value.result.records_unprocessed == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda sf: sf.bulk.ingest("Contact", "merge", [{"LastName": "x"}]),
            "unknown Bulk ingest operation 'merge'; use one of insert, update, upsert, "
            "delete, hardDelete",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", []),
            "no records to insert; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", [{"LastName": "a"}, "not a dict"]),
            "record 1 must be a mapping of field names to values; got str; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert(
                "Contact", [{"LastName": "a"}, {"LastName": "b", "X": 1}], columns=["LastName"]
            ),
            "record 1 has the field 'X', which is not among the columns ['LastName'] given; add "
            "it to columns=; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.upsert("Contact", "External_Id__c", b"LastName\nx\n"),
            "the CSV's header has no 'External_Id__c' column, which upsert needs to match "
            "records (columns: LastName); nothing was sent",
        ),
        (
            lambda sf: sf.bulk.upsert("Contact", "External_Id__c", [{"LastName": "x"}]),
            "the header of the records has no 'External_Id__c' column, which upsert needs to "
            "match records (columns: LastName); nothing was sent",
        ),
        (
            lambda sf: sf.bulk.update("Contact", [{"Id": None, "LastName": "x"}]),
            "record 0 has no 'Id' value, which update needs; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", b"LastName\r\nx\r\n"),
            "the CSV's lines end with CRLF but line_ending='LF'; pass line_ending='CRLF'; "
            "nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", b"LastName\n"),
            "the CSV has a header but no rows; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", [{"LastName": float("nan")}]),
            "record 0['LastName'] is nan; Salesforce numbers are finite; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", {"LastName": "x"}),
            "data must be an iterable of records (dicts), not one record; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", 42),
            "data must be records (an iterable or async iterable of dicts) or CSV (bytes, a "
            "path or a binary file); got int; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", [{"LastName": "x"}], external_id_field="X"),
            "external_id_field is for upsert only; insert creates records",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", [{"LastName": "x"}], max_job_bytes=200_000_000),
            "max_job_bytes must be an int from 1024 to 100000000 (Salesforce takes 150 MB of "
            "base64 per job); got 200000000",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", "/no/such/file.csv"),
            "cannot read the CSV file '/no/such/file.csv': No such file or directory; nothing "
            "was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", [{"LastName": "x"}], columns=5),
            "columns must be a list of field names (non-empty strings); got 5; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", [{"LastName": "x"}], column_delimiter=["COMMA"]),
            "column_delimiter must be one of COMMA, TAB, PIPE, SEMICOLON, CARET, BACKQUOTE; "
            "got ['COMMA']",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", [{"LastName": "x"}], progress=5),
            "progress must be a function taking a BulkProgress, or None; got 5",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", [{"LastName": "x"}], poll_interval=float("inf")),
            "poll_interval must be a positive, finite number of seconds; got inf",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", [{"LastName": "x"}], abort_on_cancel="no"),
            "abort_on_cancel must be True or False; got 'no'",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", io.StringIO("LastName\nx\n")),
            "the CSV file object is in text mode; open it in binary mode ('rb'), so that its "
            "bytes and line endings go to Salesforce as they are; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", b"LastName\r\nx\ny\n", line_ending="CRLF"),
            "the CSV's rows end with LF but line_ending='CRLF'; pass line_ending='LF'; "
            "nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", b"LastName\rx\r"),
            "the CSV's lines end with CR alone; Bulk API 2.0 takes LF or CRLF line endings; "
            "nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", b"LastName;Description\nx;y\n"),
            "the CSV's header 'LastName;Description' looks delimited by SEMICOLON, but "
            "column_delimiter='COMMA'; pass column_delimiter='SEMICOLON'; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert(
                "Contact", b"LastName\tDescription\nA\tx\ry\n", column_delimiter="TAB"
            ),
            "the CSV has a carriage return outside quotes inside a row; quote that field "
            "(Salesforce would split the row there); nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", b'LastName,Description\nA,"x"\r\nB,y\r\n'),
            "the CSV's rows end with CRLF but line_ending='LF'; pass line_ending='CRLF'; "
            "nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", [{"LastName": "ok"}, {"LastName": "\ud800"}]),
            "a value holds '\\ud800', which is not text UTF-8 can carry (a lone surrogate); "
            "clean it before loading; nothing was sent",
        ),
        (
            lambda sf: sf.bulk.insert("Contact", b'LastName\n"open\n'),
            'the CSV ends inside a quoted field: a " is never closed; nothing was sent',
        ),
        (
            lambda sf: sf.bulk.job("not-an-id"),
            "job_id must be a Salesforce job id (15 or 18 letters and digits, e.g. "
            "'7505e00000AbCdEAAV'); got 'not-an-id'",
        ),
    ],
)
async def test_bad_input_is_refused_before_anything_is_sent(
    make_session: SessionFactory, emulator: Emulator, call: Any, message: str
) -> None:
    sf = make_session(api_version="62.0")
    with pytest.raises(ConfigurationError) as caught:
        await call(sf)
    assert str(caught.value) == message
    assert bulk_requests(emulator) == []


async def test_bad_record_after_a_sent_job_names_that_job(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    records: list[Any] = [{"LastName": f"L{n:03d}", "Description": "y" * 60} for n in range(100)]
    records.append({"LastName": object()})
    with pytest.raises(BulkInputError) as caught:
        await sf.bulk.insert("Contact", records, max_job_bytes=2048, **FAST)
    error = caught.value
    stored = [r["LastName"] for r in emulator.records("Contact")]
    # Exactly the first records_sent records were sent (the job being filled was not).
    assert 0 < error.records_sent < 100
    assert stored == [f"L{n:03d}" for n in range(error.records_sent)]
    assert [j.id for j in error.jobs] == list(emulator.bulk_jobs)
    assert str(error) == (
        "record 100['LastName'] is a object; Bulk CSV cells are str, int, float, Decimal, "
        "bool, date, aware datetime or None (null); a relationship is a dict such as "
        "{'Account': {'External_Id__c': 'A-1'}}; the first "
        f"{error.records_sent} records were sent in {len(error.jobs)} job(s), which "
        f"Salesforce processes: {', '.join(j.id for j in error.jobs)} (see .jobs); none from "
        f"record {error.records_sent} on was sent"
    )


async def test_a_csv_row_too_long_after_sent_jobs_names_them(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    data = b"LastName\n" + b"".join(b"L%05d\n" % i for i in range(2000)) + b"B" * 5000 + b"\n"
    with pytest.raises(BulkInputError) as caught:
        await sf.bulk.insert("Contact", data, max_job_bytes=4096, **FAST)
    assert caught.value.records_sent == 2000
    assert len(caught.value.jobs) == len(emulator.bulk_jobs) > 1
    assert str(caught.value).startswith(
        "a row of about 5001 bytes does not fit in a job of max_job_bytes=4096 with its "
        "header; raise max_job_bytes; the first 2000 records were sent in "
    )
    assert len(emulator.records("Contact")) == 2000


async def test_a_failed_upload_aborts_its_job_and_names_the_sent_ones(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0", retry=RetryPolicy(attempts=1))
    records = [{"LastName": f"L{n:04d}", "Description": "z" * 50} for n in range(200)]
    uploads = 0

    def second_upload_fails(p: BulkProgress) -> None:
        nonlocal uploads
        if p.state == "UploadComplete":
            uploads += 1
            emulator.inject_faults(1.0, seed=1, endpoints=["bulk_ingest_upload"], kinds=["503"])

    with pytest.raises(TransientAPIError) as caught:
        await sf.bulk.insert(
            "Contact", records, max_job_bytes=8192, progress=second_upload_fails, **FAST
        )
    first, second = emulator.bulk_jobs.values()
    assert second.state == "Aborted"  # created, never uploaded: not left Open
    assert caught.value.__notes__ == [
        f"sfauth bulk: the first {first.processed} record(s) were sent in 1 job(s) before this "
        f"error, which Salesforce processes: {first.id}"
    ]
    assert uploads == 1


async def test_a_lone_carriage_return_is_quoted(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    result = await sf.bulk.insert(
        "Contact", [{"LastName": "Smith", "Description": "line1\rline2"}], **FAST
    )
    assert (result.records_uploaded, result.records_processed) == (1, 1)
    [upload] = [r.body for r in emulator.requests if r.method == "PUT"]
    assert upload == b'LastName,Description\n"Smith","line1\rline2"\n'
    [stored] = emulator.records("Contact")
    assert stored["Description"] == "line1\rline2"


async def test_results_of_a_pipe_delimited_job(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    result = await sf.bulk.insert(
        "Contact", [{"LastName": "A|B"}, {"Email": "x@y.z"}], column_delimiter="PIPE", **FAST
    )
    assert [r["LastName"] async for r in result.successful_records()] == ["A|B"]
    assert [r["Email"] async for r in result.failed_records()] == ["x@y.z"]


class Status(enum.Enum):
    ACTIVE = "Active"


class Tier(str, enum.Enum):  # noqa: UP042 (the mixin whose str() is "Tier.GOLD")
    GOLD = "Gold"


class Ratio(float):
    pass


def test_cells_of_enums_and_number_subclasses() -> None:
    encoder = RecordEncoder(["A", "B", "C", "D", "E"])
    row = encoder.row(
        {"A": Status.ACTIVE, "B": Tier.GOLD, "C": Ratio(1.5), "D": 1e20, "E": True}, 0
    )
    assert row == ["Active", "Gold", "1.5", "100000000000000000000", "true"]
    assert encoder.row({"A": "x"}, 1) == ["x", None, None, None, None]
    assert encoder.row({"E": False, "D": 2.5, "C": None}, 2) == [
        None,
        None,
        "#N/A",
        "2.5",
        "false",
    ]
    with pytest.raises(ConfigurationError, match="record 3 names the field 'A' twice"):
        encoder.row({"A": "x", "a": "y"}, 3)
    with pytest.raises(ConfigurationError, match=r"record 4\['D'\] is nan"):
        encoder.row({"D": float("nan")}, 4)


async def test_max_job_bytes_is_respected_for_records(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    records = [{"LastName": f"L{n}", "Description": "d" * 500} for n in range(40)]
    result = await sf.bulk.insert("Contact", records, max_job_bytes=2048, **FAST)
    uploads = [r.body for r in emulator.requests if r.method == "PUT"]
    assert max(len(u) for u in uploads) <= 2048
    assert sum(j.records_processed for j in result.jobs) == 40
    with pytest.raises(BulkInputError, match="a row of about 3"):
        await sf.bulk.insert("Contact", [{"LastName": "x" * 3000}], max_job_bytes=2048)


class AsyncFile:
    """A file with ``async def read`` (as aiofiles gives)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    async def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


async def test_csv_from_an_async_file_and_blank_lines(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    result = await sf.bulk.insert("Contact", AsyncFile(b"LastName\n\nA\n\n\nB\n\n"), **FAST)
    assert (result.records_uploaded, result.records_processed, result.records_unprocessed) == (
        2,
        2,
        0,
    )
    assert [r.body for r in emulator.requests if r.method == "PUT"] == [b"LastName\nA\nB\n"]


async def test_unknown_job_id_is_not_found(make_session: SessionFactory) -> None:
    sf = make_session(api_version="62.0")
    with pytest.raises(NotFoundError) as caught:
        await sf.bulk.job("750000000000000AAA")
    assert caught.value.error_code == "NOT_FOUND"
    assert caught.value.url.endswith("/jobs/ingest/750000000000000AAA")


async def test_query_errors_are_typed(make_session: SessionFactory, emulator: Emulator) -> None:
    sf = make_session(api_version="62.0")
    with pytest.raises(MalformedRequestError) as caught:
        [r async for r in sf.bulk.query("SELECT Nope FROM Account", **FAST)]
    assert caught.value.error_code == "INVALID_FIELD"
    with pytest.raises(MalformedRequestError) as caught:
        [r async for r in sf.bulk.query("SELECT COUNT() FROM Account", **FAST)]
    assert caught.value.error_code == "API_ERROR"
    with pytest.raises(ConfigurationError, match="max_records must be a positive number"):
        sf.bulk.query("SELECT Id FROM Account", max_records=0)
    assert bulk_requests(emulator) == ["bulk_query_create", "bulk_query_create"]


async def test_polls_and_downloads_ride_through_transient_faults(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.inject_faults(
        0.5,
        seed=7,
        endpoints=[
            "bulk_ingest_info",
            "bulk_ingest_results",
            "bulk_query_info",
            "bulk_query_results",
        ],
        kinds=["503", "concurrent_limit"],
    )
    policy = RetryPolicy(attempts=30, backoff_base=0.001, backoff_cap=0.001)
    sf = make_session(api_version="62.0", retry=policy)
    result = await sf.bulk.insert("Contact", [{"LastName": f"T{n}"} for n in range(50)], **FAST)
    assert len([r async for r in result.successful_records()]) == 50
    rows = [r async for r in sf.bulk.query("SELECT LastName FROM Contact", **FAST)]
    assert len(rows) == 50
    assert emulator.faults_injected["503"] + emulator.faults_injected["concurrent_limit"] > 0


async def test_cancel_aborts_the_job_and_leaves_no_task(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    polled = asyncio.Event()

    def progress(p: BulkProgress) -> None:
        if p.state == "UploadComplete":
            polled.set()

    emulator.bulk_processing_delay = 60  # the job is still running when the caller gives up
    before = asyncio.all_tasks()
    task = asyncio.create_task(
        sf.bulk.insert(
            "Contact",
            [{"LastName": "x"}],
            abort_on_cancel=True,
            progress=progress,
            poll_interval=30,
        )
    )
    await polled.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    server = ("RequestHandler.start", "BulkApi._run_job")  # the emulator's side
    left = {t for t in asyncio.all_tasks() - before if t.get_coro().__qualname__ not in server}
    assert left == set()
    [job] = emulator.bulk_jobs.values()
    assert job.state == "Aborted"
    states = [
        json.loads(r.body)["state"] for r in emulator.requests if r.endpoint == "bulk_ingest_state"
    ]
    assert states == ["UploadComplete", "Aborted"]


async def test_results_with_another_api_version_are_refused(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    [r async for r in sf.bulk.query("SELECT Id FROM Account LIMIT 1", **FAST)]
    job_id = next(iter(emulator.bulk_jobs))
    async with sf.get(f"/services/data/v61.0/jobs/query/{job_id}/results") as resp:
        assert resp.status == 409
        assert (await resp.json())[0]["errorCode"] == "INVALIDJOB"


async def test_second_upload_fails_the_close(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    async with sf.post(
        f"{V}/jobs/ingest", json={"object": "Contact", "operation": "insert"}
    ) as resp:
        job_id = (await resp.json())["id"]
    for _ in range(2):
        async with sf.put(
            f"{V}/jobs/ingest/{job_id}/batches",
            data=b"LastName\nx\n",
            headers={"Content-Type": "text/csv"},
        ) as resp:
            assert resp.status == 201
    async with sf.patch(f"{V}/jobs/ingest/{job_id}", json={"state": "UploadComplete"}) as resp:
        assert resp.status == 400
        assert (await resp.json())[0]["errorCode"] == "INVALIDJOB"
    aborted = await sf.bulk.abort(job_id)
    assert aborted.state == "Aborted"
    await sf.bulk.delete_job(job_id)
    assert emulator.bulk_jobs == {}


_FIELD = st.text(alphabet='ab,"\n\r é', max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(_FIELD, min_size=1, max_size=4), min_size=1, max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_the_row_splitter_cuts_only_between_rows(rows: list[list[str]], cuts: list[int]) -> None:
    """Fed any chunking of CSV, it hands out complete rows, in order, and loses nothing."""
    text = io.StringIO(newline="")
    minimal = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    quoted = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for row in rows:  # as sfauth writes them: a row with a CR fully quoted
        (quoted if any("\r" in field for field in row) else minimal).writerow(row)
    data = text.getvalue().encode()
    splitter = RowSplitter()
    runs = []
    previous = 0
    for cut in [*sorted({c for c in cuts if c < len(data)}), len(data)]:
        run = splitter.feed(data[previous:cut])
        previous = cut
        if run:
            runs.append(run)
    assert not splitter.inside_quotes
    assert b"".join(runs) + splitter.rest() == data
    assert [row for run in runs for row in parse_rows(run)] == rows


async def test_a_reused_dict_and_quoted_fields_in_the_last_row(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    def reused() -> Any:
        record: dict[str, str] = {}
        for n in range(3):
            record["LastName"] = f"L{n}"
            yield record  # one dict, changed after each yield

    sf = make_session(api_version="62.0")
    await sf.bulk.insert("Contact", reused(), **FAST)
    assert [r["LastName"] for r in emulator.records("Contact")] == ["L0", "L1", "L2"]
    # A quoted CR in a last row without a newline; a blank line after a quoted field.
    result = await sf.bulk.insert(
        "Contact", b'LastName,Description\nQ1,"hello, world"\n\nZ,"p\rq"', **FAST
    )
    assert (result.records_uploaded, result.records_processed) == (2, 2)
    assert [r.body for r in emulator.requests if r.method == "PUT"][-1] == (
        b'LastName,Description\nQ1,"hello, world"\nZ,"p\rq"\n'
    )


async def test_cancelling_during_the_create_aborts_the_job_it_made(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    await sf.token()
    emulator.response_delay = 0.2  # the create is in flight when the caller gives up
    task = asyncio.create_task(sf.bulk.insert("Contact", [{"LastName": "x"}], **FAST))
    await emulator.wait_for_in_flight(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [job] = emulator.bulk_jobs.values()
    assert job.state == "Aborted"


async def test_polls_outlast_transient_failures_past_the_retry_policy(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0", retry=RetryPolicy(attempts=1))
    emulator.inject_faults(0.7, seed=3, endpoints=["bulk_ingest_info"], kinds=["503", "reset"])
    result = await sf.bulk.insert("Contact", [{"LastName": "x"}], **FAST)
    assert result.records_processed == 1
    assert emulator.faults_injected["503"] + emulator.faults_injected["reset"] > 0
