"""Bulk API 2.0 for the emulator: ingest and query jobs as an asynchronous state machine.

Ingest ("Bulk API 2.0 and Bulk API Developer Guide"): ``POST /jobs/ingest`` opens a job
(``Open``); one ``PUT /jobs/ingest/{id}/batches`` takes its CSV (``Content-Encoding: gzip``
accepted); ``PATCH {"state": "UploadComplete"}`` closes it, and the job then runs on its own
(``InProgress`` → ``JobComplete``, or ``Failed`` with an ``errorMessage`` for a CSV Salesforce
cannot read), each row validated against the schema like any write. Results come back as CSV
from ``successfulResults/`` (``sf__Id``, ``sf__Created``), ``failedResults/`` (``sf__Id``,
``sf__Error``) and ``unprocessedrecords/``. ``PATCH {"state": "Aborted"}`` aborts, ``DELETE``
removes a finished job.

Query: ``POST /jobs/query`` (``query``/``queryAll``) starts at ``UploadComplete`` and runs
the SOQL; ``GET /jobs/query/{id}/results?maxRecords=&locator=`` pages the CSV with
``Sforce-Locator`` (the string ``null`` on the last page) and ``Sforce-NumberOfRecords``, only
with the job's API version (409 otherwise). Answers are gzipped for ``Accept-Encoding: gzip``.

Error codes and messages not confirmed against a real org are marked "(emulator's wording)".
"""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import gzip
import io
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sfauth.testing._ids import IdFactory, canonical_id
from sfauth.testing._schema import FieldSchema, Schema, SObjectSchema
from sfauth.testing._soql import SoqlError, compile_query
from sfauth.testing._state import NOT_FOUND, Session, json_response, rest_error
from sfauth.testing._store import DmlError, RecordStore, format_datetime, record_id_of

__all__ = ["BulkApi", "IngestJob", "QueryJob"]

_DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
_TERMINAL = ("JobComplete", "Failed", "Aborted")
#: Rows processed between yields to the event loop (Salesforce's own batches are 10,000).
_STEP = 1000
#: Records per results page when the client sends no ``maxRecords`` (emulator's choice).
DEFAULT_MAX_RECORDS = 50_000
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


@dataclasses.dataclass(eq=False)
class IngestJob:
    """One ingest job's state (see :attr:`Emulator.bulk_jobs`)."""

    id: str
    sobject: SObjectSchema
    operation: str
    external_id: FieldSchema | None
    column_delimiter: str
    line_ending: str
    api_version: str
    created_by: str
    created_date: str
    state: str = "Open"
    uploads: list[bytes] = dataclasses.field(default_factory=list, repr=False)
    header: list[str] = dataclasses.field(default_factory=list)
    processed: int = 0
    failed: int = 0
    error_message: str | None = None
    successful: list[list[str]] = dataclasses.field(default_factory=list, repr=False)
    failures: list[list[str]] = dataclasses.field(default_factory=list, repr=False)
    unprocessed: list[list[str]] = dataclasses.field(default_factory=list, repr=False)
    started: float = 0.0
    finished: float = 0.0

    def info(self, counts: bool = True) -> dict[str, Any]:
        """The job as "Get Job Info" describes it."""
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject.name,
            "createdById": self.created_by,
            "createdDate": self.created_date,
            "systemModstamp": self.created_date,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "jobType": "V2Ingest",
            "contentUrl": f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches",
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }
        if self.external_id is not None:
            body["externalIdFieldName"] = self.external_id.name
        if counts:
            elapsed = int((self.finished - self.started) * 1000) if self.finished else 0
            body.update(
                numberRecordsProcessed=self.processed,
                numberRecordsFailed=self.failed,
                retries=0,
                totalProcessingTime=elapsed,
                apiActiveProcessingTime=elapsed,
                apexProcessingTime=0,
            )
        if self.error_message is not None:
            body["errorMessage"] = self.error_message
        return body


@dataclasses.dataclass(eq=False)
class QueryJob:
    """One query job's state (see :attr:`Emulator.bulk_jobs`)."""

    id: str
    operation: str
    query: str
    sobject: str
    api_version: str
    created_by: str
    created_date: str
    state: str = "UploadComplete"
    header: list[str] = dataclasses.field(default_factory=list)
    rows: list[list[str]] = dataclasses.field(default_factory=list, repr=False)
    error_message: str | None = None
    started: float = 0.0
    finished: float = 0.0

    def info(self) -> dict[str, Any]:
        """The job as "Get Information About a Query Job" describes it."""
        elapsed = int((self.finished - self.started) * 1000) if self.finished else 0
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject,
            "createdById": self.created_by,
            "createdDate": self.created_date,
            "systemModstamp": self.created_date,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "jobType": "V2Query",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
            "numberRecordsProcessed": len(self.rows),
            "retries": 0,
            "totalProcessingTime": elapsed,
            "isPkChunkingSupported": True,
        }
        if self.error_message is not None:
            body["errorMessage"] = self.error_message
        return body


def _job_error(status: int, code: str, message: str) -> web.Response:
    return json_response(status, [{"errorCode": code, "message": message}])


def _csv_bytes(
    header: list[str], rows: list[list[str]], delimiter: str = "COMMA", line_ending: str = "LF"
) -> bytes:
    """CSV with every field quoted, in a job's delimiter and line ending."""
    out = io.StringIO(newline="")
    writer = csv.writer(
        out,
        delimiter=_DELIMITERS[delimiter],
        lineterminator="\r\n" if line_ending == "CRLF" else "\n",
        quoting=csv.QUOTE_ALL,
    )
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _csv_answer(request: web.Request, data: bytes, **headers: str) -> web.Response:
    """A CSV answer, gzipped when the request accepts it (as Bulk API 2.0 does).

    Compressed here, not by aiohttp's ``enable_compression``: aiohttp 3.12 warns about
    compressing a large body on the event loop, and the emulator runs its tests with warnings
    as errors.
    """
    if "gzip" in request.headers.get("Accept-Encoding", "").lower():
        data = gzip.compress(data, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return web.Response(status=200, body=data, headers={"Content-Type": "text/csv", **headers})


def _cell(value: object) -> str:
    """A stored value as Bulk API 2.0 query CSV writes it (null: empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.endswith("+0000") and "T" in value:
        return value[:-5] + "Z"  # datetimes: 2024-01-15T10:00:00.000Z
    return str(value)


class BulkApi:
    """Handlers of ``/jobs/ingest`` and ``/jobs/query``; the state lives on the emulator."""

    schema: Schema
    _store: RecordStore
    _ids: IdFactory
    clock: Callable[[], float]
    #: Bulk jobs by id, ingest and query alike.
    bulk_jobs: dict[str, IngestJob | QueryJob]
    _bulk_tasks: set[asyncio.Task[None]]
    bulk_processing_delay: float

    def _version(self, request: web.Request) -> str | None:  # provided by RestApi
        raise NotImplementedError

    def _external_id_field(  # provided by RestApi
        self, sobject: SObjectSchema, name: str
    ) -> FieldSchema | web.Response:
        raise NotImplementedError

    def _spawn(self, job: IngestJob | QueryJob) -> None:
        task = asyncio.get_running_loop().create_task(self._run_job(job))
        self._bulk_tasks.add(task)
        task.add_done_callback(self._bulk_tasks.discard)

    async def _run_job(self, job: IngestJob | QueryJob) -> None:
        await asyncio.sleep(0)  # the close's answer goes out first
        if job.state != "UploadComplete":
            return  # aborted in between
        job.state = "InProgress"
        job.started = self.clock()
        if self.bulk_processing_delay:
            await asyncio.sleep(self.bulk_processing_delay)
        if isinstance(job, IngestJob):
            await self._ingest(job)
        else:
            self._query_job(job)
        job.finished = self.clock()

    def _job(
        self, request: web.Request, kind: type[IngestJob] | type[QueryJob]
    ) -> IngestJob | QueryJob | web.Response:
        if self._version(request) is None:
            return json_response(404, NOT_FOUND)
        job = self.bulk_jobs.get(canonical_id(request.match_info["job"]) or "")
        if not isinstance(job, kind):
            return json_response(404, NOT_FOUND)
        return job

    # ------------------------------------------------------------------ ingest

    async def _bulk_ingest_create(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        version = self._version(request)
        if version is None:
            return json_response(404, NOT_FOUND)
        spec = _job_spec(body, _OPERATIONS, tuple(_DELIMITERS))
        if isinstance(spec, web.Response):
            return spec
        operation = spec["operation"]
        name = spec.get("object")
        sobject = self.schema.get(name) if isinstance(name, str) else None
        if sobject is None:
            return _job_error(400, "INVALIDJOB", f"Unable to find object: {name}")
        external_id: FieldSchema | None = None
        if operation == "upsert":
            field_name = spec.get("externalIdFieldName")
            if not isinstance(field_name, str) or not field_name:
                return _job_error(
                    400,
                    "INVALIDJOB",
                    f"External ID was blank for {sobject.name}. An External ID must be "
                    "specified for upsert.",
                )
            found = self._external_id_field(sobject, field_name)
            if isinstance(found, web.Response):
                return _job_error(
                    400,
                    "INVALIDJOB",
                    f"The field {field_name} on {sobject.name} is not an external id field "
                    "(emulator's wording)",
                )
            external_id = found
        assert session is not None
        job = IngestJob(
            id=self._ids.new("750"),
            sobject=sobject,
            operation=operation,
            external_id=external_id,
            column_delimiter=spec.get("columnDelimiter", "COMMA"),
            line_ending=spec.get("lineEnding", "LF"),
            api_version=version,
            created_by=session.user.user_id,
            created_date=format_datetime(self._store.now()),
        )
        self.bulk_jobs[job.id] = job
        return json_response(200, job.info(counts=False))

    async def _bulk_ingest_upload(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        job = self._job(request, IngestJob)
        if isinstance(job, web.Response):
            return job
        assert isinstance(job, IngestJob)
        if job.state != "Open":
            return _job_error(
                409,
                "INVALIDJOBSTATE",
                f"Job {job.id} is in state {job.state}; data can be uploaded only to an Open "
                "job (emulator's wording)",
            )
        job.uploads.append(body)
        return web.Response(status=201)

    async def _bulk_ingest_state(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        job = self._job(request, IngestJob)
        if isinstance(job, web.Response):
            return job
        assert isinstance(job, IngestJob)
        state = _wanted_state(body)
        if isinstance(state, web.Response):
            return state
        if state == "UploadComplete":
            if job.state != "Open":
                return _invalid_transition(job.id, job.state, state)
            if len(job.uploads) > 1:
                return _job_error(
                    400,
                    "INVALIDJOB",
                    f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / "
                    "'Delete' the current Job then create a new Job and make sure you only do "
                    "'PUT' once on a given Job.",
                )
            job.state = "UploadComplete"
            self._spawn(job)
        elif state == "Aborted":
            if job.state in _TERMINAL:
                return _invalid_transition(job.id, job.state, state)
            job.state = "Aborted"
        else:
            return _invalid_transition(job.id, job.state, state)
        return json_response(200, job.info(counts=False))

    async def _bulk_info(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        job = self._job(request, _kind(request))
        if isinstance(job, web.Response):
            return job
        return json_response(200, job.info())

    async def _bulk_list(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        if self._version(request) is None:
            return json_response(404, NOT_FOUND)
        kind = _kind(request)
        jobs = [job.info() for job in self.bulk_jobs.values() if isinstance(job, kind)]
        return json_response(200, {"done": True, "records": jobs, "nextRecordsUrl": None})

    async def _bulk_delete(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        job = self._job(request, _kind(request))
        if isinstance(job, web.Response):
            return job
        if job.state not in (*_TERMINAL, "UploadComplete") or (
            isinstance(job, QueryJob) and job.state == "UploadComplete"
        ):
            return _job_error(
                400,
                "API_ERROR",
                "Error encountered when deleting the job because the job is not terminated",
            )
        del self.bulk_jobs[job.id]
        return web.Response(status=204)

    async def _bulk_ingest_results(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        job = self._job(request, IngestJob)
        if isinstance(job, web.Response):
            return job
        assert isinstance(job, IngestJob)
        if request.match_info["ver"][1:] != job.api_version:
            return _version_conflict(job.id, job.api_version)
        kind = request.match_info["results"]
        # In the job's own delimiter and line ending, like the data it was given.
        form = (job.column_delimiter, job.line_ending)
        if kind == "successfulResults":
            data = _csv_bytes(["sf__Id", "sf__Created", *job.header], job.successful, *form)
        elif kind == "failedResults":
            data = _csv_bytes(["sf__Id", "sf__Error", *job.header], job.failures, *form)
        else:
            data = _csv_bytes(job.header, job.unprocessed, *form) if job.header else b""
        return _csv_answer(request, data)

    async def _ingest(self, job: IngestJob) -> None:
        """Process a closed job's CSV, row by row, as Salesforce's batches do."""
        rows = self._parse_upload(job)
        if rows is None:
            return
        processed = 0
        for start in range(0, len(rows), _STEP):  # an abort stops it between steps
            if job.state == "Aborted":
                job.unprocessed = rows[processed:]
                return
            for row in rows[start : start + _STEP]:
                self._ingest_row(job, row)
                processed += 1
                job.processed = processed
            await asyncio.sleep(0)
        job.unprocessed = []
        job.state = "JobComplete"

    def _parse_upload(self, job: IngestJob) -> list[list[str]] | None:
        data = job.uploads[0] if job.uploads else b""
        job.uploads = []
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return _fail(job, "InvalidBatch : The CSV data is not UTF-8 (emulator's wording)")
        first_line = text.partition("\n")[0]
        if not text.strip():
            return _fail(job, "InvalidBatch : No content in the uploaded data")
        if (job.line_ending == "LF") == first_line.endswith("\r"):
            return _fail(
                job,
                "ClientInputError : LineEnding is invalid on user data. Current LineEnding "
                f"setting is {job.line_ending}",
            )
        reader = csv.reader(
            io.StringIO(text, newline=""), delimiter=_DELIMITERS[job.column_delimiter], strict=True
        )
        try:
            table = list(reader)
        except csv.Error as exc:
            return _fail(job, f"InvalidBatch : Failed to parse CSV: {exc} (emulator's wording)")
        header, rows = table[0], [row for row in table[1:] if row]
        job.header = header
        job.unprocessed = rows  # until they are processed: all of them, if the job fails
        for column in header:
            if not self._column_known(job.sobject, column):
                return _fail(job, f"InvalidBatch : Field name not found : {column}")
        if job.external_id is not None and job.external_id.name.lower() not in (
            c.lower() for c in header
        ):
            return _fail(
                job,
                f"InvalidBatch : External ID field {job.external_id.name} is missing from the "
                "header (emulator's wording)",
            )
        if job.operation in ("update", "delete", "hardDelete") and "id" not in (
            c.lower() for c in header
        ):
            return _fail(job, "InvalidBatch : Field name not found : Id (emulator's wording)")
        return rows

    def _column_known(self, sobject: SObjectSchema, column: str) -> bool:
        name, dot, rest = column.partition(".")
        if not dot:
            return sobject.field(name) is not None
        relationship = sobject.relationship(name)
        if relationship is None or not relationship.reference_to:
            return False
        parent = self.schema.get(relationship.reference_to[0])
        target = parent.field(rest) if parent is not None else None
        return target is not None and target.id_lookup

    def _values(self, job: IngestJob, row: list[str]) -> dict[str, object]:
        """A CSV row as the store's values: empty cells left out, ``#N/A`` null."""
        values: dict[str, object] = {}
        sobject = job.sobject
        for column, cell in zip(job.header, row, strict=False):
            if cell == "":
                continue
            value: object = None if cell == "#N/A" else cell
            name, dot, rest = column.partition(".")
            if dot:
                values[name] = {rest: value}
                continue
            definition = sobject.field(name)
            if definition is not None and definition.type == "boolean" and value is not None:
                lowered = cell.lower()
                value = True if lowered in _TRUE else False if lowered in _FALSE else cell
            values[name] = value
        return values

    def _ingest_row(self, job: IngestJob, row: list[str]) -> None:
        """Apply one row; record its success (``sf__Id``, ``sf__Created``) or failure."""
        values = self._values(job, row)
        store, user = self._store, job.created_by
        try:
            if job.operation == "insert":
                record_id = store.insert(job.sobject, values, user, per_record=True)
                created = True
            elif job.operation == "upsert":
                record_id, created = self._upsert_row(job, values)
            else:
                record_id, created = self._row_by_id(job, values), False
        except DmlError as error:
            job.failed += 1
            fields = ",".join(error.fields or [])
            job.failures.append(["", f"{error.error_code}:{error.message}:{fields} --", *row])
            return
        job.successful.append([record_id, "true" if created else "false", *row])

    def _upsert_row(self, job: IngestJob, values: dict[str, object]) -> tuple[str, bool]:
        key_field = job.external_id
        assert key_field is not None
        wanted = key_field.name.lower()
        key = next((v for k, v in values.items() if k.lower() == wanted), None)
        if key is None:
            raise DmlError("MISSING_ARGUMENT", f"{key_field.name} not specified", [key_field.name])
        matches = self._store.matching(job.sobject, key_field, key)
        if len(matches) > 1:
            raise DmlError(
                "DUPLICATE_EXTERNAL_ID",
                f"{key_field.name}: more than one record found for external id field: "
                f"{[str(m['Id']) for m in matches]}",
                [key_field.name],
            )
        if not matches:
            record_id = self._store.insert(job.sobject, values, job.created_by, per_record=True)
            return record_id, True
        rest = {k: v for k, v in values.items() if k.lower() != wanted}
        self._store.update(job.sobject, matches[0], rest, job.created_by, per_record=True)
        return str(matches[0]["Id"]), False

    def _row_by_id(self, job: IngestJob, values: dict[str, object]) -> str:
        """Update, delete or hard-delete the record the row's ``Id`` names."""
        sobject = job.sobject
        record_id = record_id_of(sobject, values)
        record = self._store.find(sobject, record_id)
        if record is None:
            raise DmlError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        if job.operation == "update":
            rest = {k: v for k, v in values.items() if k.lower() != "id"}
            self._store.update(sobject, record, rest, job.created_by, per_record=True)
        else:
            self._store.delete(sobject, record, job.created_by)
            if job.operation == "hardDelete":
                self._store.purge(sobject, record_id)
        return record_id

    # ------------------------------------------------------------------ query

    async def _bulk_query_create(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        version = self._version(request)
        if version is None:
            return json_response(404, NOT_FOUND)
        # (the emulator's query jobs write COMMA-delimited CSV)
        spec = _job_spec(body, ("query", "queryAll"), ("COMMA",))
        if isinstance(spec, web.Response):
            return spec
        operation = spec["operation"]
        soql = spec.get("query")
        if not isinstance(soql, str) or not soql.strip():
            return _job_error(400, "INVALIDJOB", "The query is required (emulator's wording)")
        try:
            compiled = compile_query(soql, self.schema)
        except SoqlError as exc:
            return rest_error(400, exc.error_code, exc.message)
        if compiled.aggregate or compiled.count_only:
            return _job_error(
                400,
                "API_ERROR",
                "Aggregate Relationships and aggregate functions are not supported in Bulk "
                "API 2.0 query (emulator's wording)",
            )
        if any(kind == "child" for kind, _ in compiled.select):
            return _job_error(
                400,
                "API_ERROR",
                "Nested queries (subqueries) are not supported in Bulk API 2.0 query "
                "(emulator's wording)",
            )
        assert session is not None
        job = QueryJob(
            id=self._ids.new("750"),
            operation=operation,
            query=soql,
            sobject=compiled.sobject.name,
            api_version=version,
            created_by=session.user.user_id,
            created_date=format_datetime(self._store.now()),
        )
        self.bulk_jobs[job.id] = job
        self._spawn(job)
        return json_response(200, job.info())

    def _query_job(self, job: QueryJob) -> None:
        if job.state == "Aborted":
            return
        compiled = compile_query(job.query, self.schema)
        result = compiled.run(self._store, job.api_version, deleted=job.operation == "queryAll")
        paths = [item for kind, item in compiled.select if kind == "path"]
        header: list[str] = []
        walks: list[tuple[str, ...]] = []
        for path in paths:
            names = (*path.names, path.field.name)  # type: ignore[attr-defined]
            header.append(".".join(names))
            walks.append(names)
        rows = []
        for record in result.records:
            row = []
            for names in walks:
                value: Any = record
                for name in names:
                    value = value.get(name) if isinstance(value, dict) else None
                row.append(_cell(value))
            rows.append(row)
        job.header, job.rows = header, rows
        job.state = "JobComplete"

    async def _bulk_query_state(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        job = self._job(request, QueryJob)
        if isinstance(job, web.Response):
            return job
        state = _wanted_state(body)
        if isinstance(state, web.Response):
            return state
        if state != "Aborted" or job.state not in ("UploadComplete", "InProgress"):
            return _invalid_transition(job.id, job.state, state)
        job.state = "Aborted"
        assert isinstance(job, QueryJob)
        return json_response(200, job.info())

    async def _bulk_query_results(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        job = self._job(request, QueryJob)
        if isinstance(job, web.Response):
            return job
        assert isinstance(job, QueryJob)
        if request.match_info["ver"][1:] != job.api_version:
            return _version_conflict(job.id, job.api_version)
        if job.state != "JobComplete":
            return _job_error(
                400,
                "INVALIDJOBSTATE",
                f"Job {job.id} is in state {job.state}; results are available once it is "
                "JobComplete (emulator's wording)",
            )
        size_text = request.query.get("maxRecords", str(DEFAULT_MAX_RECORDS))
        offset = _locator_offset(request.query.get("locator"))
        if not size_text.isdigit() or int(size_text) < 1 or offset is None:
            return _job_error(
                400,
                "INVALIDJOB" if offset is not None else "INVALID_LOCATOR",
                "maxRecords must be a positive integer"
                if offset is not None
                else "The locator is not valid for this job (emulator's wording)",
            )
        end = min(offset + int(size_text), len(job.rows))
        page = job.rows[offset:end]
        locator = base64.b64encode(str(end).encode()).decode() if end < len(job.rows) else "null"
        data = _csv_bytes(job.header, page)
        return _csv_answer(
            request, data, **{"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(len(page))}
        )


def _kind(request: web.Request) -> type[IngestJob] | type[QueryJob]:
    """The job type a ``/jobs/ingest…`` or ``/jobs/query…`` path is about."""
    return IngestJob if "/jobs/ingest" in request.path else QueryJob


def _job_spec(
    body: bytes, operations: tuple[str, ...], delimiters: tuple[str, ...]
) -> dict[str, Any] | web.Response:
    """A "Create a Job" body: a JSON object with a known operation and CSV options."""
    try:
        spec = json.loads(body)
    except (ValueError, RecursionError):
        return _job_error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
    if not isinstance(spec, dict):
        return _job_error(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    operation = spec.get("operation")
    if operation not in operations:
        return _job_error(
            400, "INVALIDJOB", f"Invalid operation: {operation} (emulator's wording)"
        )
    for key, allowed in (
        ("contentType", ("CSV",)),
        ("columnDelimiter", delimiters),
        ("lineEnding", ("LF", "CRLF")),
    ):
        if key in spec and spec[key] not in allowed:
            return _job_error(400, "INVALIDJOB", f"Invalid {key}: {spec[key]}")
    return spec


def _locator_offset(locator: str | None) -> int | None:
    if locator is None or locator == "":
        return 0
    try:
        text = base64.b64decode(locator, validate=True).decode()
    except ValueError:
        return None
    return int(text) if text.isdigit() else None


def _fail(job: IngestJob, message: str) -> list[list[str]] | None:
    """End a job ``Failed`` with ``message`` (no rows to process), unless it was aborted."""
    if job.state == "Aborted":
        return None
    job.state = "Failed"
    job.error_message = message
    return None


def _wanted_state(body: bytes) -> str | web.Response:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return _job_error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
    state = data.get("state") if isinstance(data, dict) else None
    if not isinstance(state, str):
        return _job_error(400, "INVALIDJOBSTATE", "A state is required (emulator's wording)")
    return state


def _invalid_transition(job_id: str, current: str, wanted: str) -> web.Response:
    return _job_error(
        400,
        "INVALIDJOBSTATE",
        f"Job {job_id} is in state {current} and cannot be changed to {wanted} "
        "(emulator's wording)",
    )


def _version_conflict(job_id: str, version: str) -> web.Response:
    return _job_error(
        409,
        "INVALIDJOB",
        f"Job {job_id} was created with API version {version}; read its results with that "
        "version (emulator's wording)",
    )
