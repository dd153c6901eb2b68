"""Bulk API 2.0 on the session: ingest and query jobs, streamed both ways.

``sf.bulk`` (a :class:`Bulk`) runs every request through the session, so a job that outlives a
session's lifetime keeps going: polls and result downloads that meet an expired session share the
one refresh, and 5xx answers and the concurrent-request limit are retried by the session's
policy ("Bulk API 2.0 and Bulk API Developer Guide")::

    async with AuthSession(...) as sf:
        result = await sf.bulk.upsert("Account", "External_Id__c", records)
        print(result.records_processed, result.records_failed)
        async for row in result.failed_records():
            print(row["sf__Error"], row["External_Id__c"])

        async for record in sf.bulk.query("SELECT Id, Name FROM Account"):
            ...

Ingest encodes records to CSV as they come (constant memory: one job's data, gzipped, in a
spooled temporary file), splits them into jobs at ``max_job_bytes`` (100 MB by default, under
Salesforce's 150 MB per job), uploads each job, closes it and polls with backoff until it ends.
Query results are read through ``Sforce-Locator`` paging and parsed as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ._bulkcsv import RowSplitter, parse_rows
from ._bulkinput import (
    MAX_JOB_BYTES,
    OPERATIONS,
    PIECE,
    IngestSpec,
    JobData,
    csv_runs,
    finite_seconds,
    is_csv,
    pack,
    record_runs,
)
from .exceptions import (
    APIError,
    ConfigurationError,
    MalformedRequestError,
    SFAuthError,
    TransientAPIError,
    TransportError,
)

__all__ = [
    "MAX_JOB_BYTES",
    "OPERATIONS",
    "Bulk",
    "BulkIngestResult",
    "BulkInputError",
    "BulkJob",
    "BulkJobError",
    "BulkProgress",
]

#: Job states after which nothing changes.
TERMINAL = frozenset({"JobComplete", "Failed", "Aborted"})
_JOB_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


@dataclass(frozen=True, slots=True)
class BulkJob:
    """A Bulk API 2.0 job as Salesforce last described it ("Get Job Info").

    Attributes:
        id: The job id.
        kind: ``"ingest"`` or ``"query"``.
        object: The sObject, e.g. ``"Account"``.
        operation: ``insert``, ``update``, ``upsert``, ``delete``, ``hardDelete``, ``query`` or
            ``queryAll``.
        state: ``Open``, ``UploadComplete``, ``InProgress``, ``JobComplete``, ``Failed`` or
            ``Aborted``.
        api_version: The version the job was created with (its results are read with it).
        records_processed: ``numberRecordsProcessed``.
        records_failed: ``numberRecordsFailed`` (ingest; ``0`` for queries).
        error_message: Salesforce's ``errorMessage`` for a failed job, else ``None``.
        info: The whole job info body, as Salesforce sent it (times there are in ms).
    """

    id: str
    kind: str
    object: str
    operation: str
    state: str
    api_version: str
    records_processed: int = 0
    records_failed: int = 0
    error_message: str | None = None
    info: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def _from(cls, kind: str, body: Any, version: str) -> BulkJob:
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise APIError(
                f"a Bulk {kind} job answer had no job id",
                status=200,
                error_code=None,
                message="(unexpected JSON shape)",
                method="GET",
                url=f"/services/data/v{version}/jobs/{kind}",
            )
        api_version = body.get("apiVersion")
        return cls(
            id=body["id"],
            kind=kind,
            object=str(body.get("object") or ""),
            operation=str(body.get("operation") or ""),
            state=str(body.get("state") or ""),
            api_version=f"{float(api_version):.1f}" if api_version else version,
            records_processed=_count(body.get("numberRecordsProcessed")),
            records_failed=_count(body.get("numberRecordsFailed")),
            error_message=body.get("errorMessage") or None,
            info=body,
        )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class BulkProgress:
    """Where a Bulk call is, for a progress display (``progress=`` callbacks).

    Attributes:
        jobs: Jobs created so far.
        records_uploaded: Records uploaded (ingest) or downloaded (query) so far.
        records_processed: Records Salesforce reported processed, summed over the jobs.
        records_failed: Records Salesforce reported failed, summed over the jobs.
        state: The state of the job that changed last.
        job_id: That job's id.
    """

    jobs: int
    records_uploaded: int
    records_processed: int
    records_failed: int
    state: str
    job_id: str


class BulkInputError(ConfigurationError):
    """Bad input found while encoding; says what was already sent, if anything.

    Attributes:
        jobs: Jobs uploaded and closed before the bad input was read (Salesforce processes
            them; ``[]`` when nothing was sent).
        records_sent: How many records (or CSV rows) those jobs hold: the first
            ``records_sent`` of the input; none from there on was sent.
    """

    def __init__(self, description: str, jobs: list[BulkJob], records_sent: int) -> None:
        self.jobs = jobs
        self.records_sent = records_sent
        if jobs:
            ids = ", ".join(job.id for job in jobs)
            description += (
                f"; the first {records_sent} records were sent in {len(jobs)} job(s), which "
                f"Salesforce processes: {ids} (see .jobs); none from record {records_sent} on "
                "was sent"
            )
        else:
            description += "; nothing was sent"
        super().__init__(description)


class BulkJobError(SFAuthError):
    """A Bulk job ended ``Failed`` or ``Aborted``.

    Attributes:
        job: The job, with Salesforce's ``error_message``.
        result: For ingest, the whole call's :class:`BulkIngestResult` (the other jobs' results
            stay readable); ``None`` for a query.
    """

    def __init__(self, job: BulkJob, result: BulkIngestResult | None = None) -> None:
        self.job = job
        self.result = result
        reason = job.error_message or "no errorMessage"
        super().__init__(
            f"Bulk {job.kind} job {job.id} ({job.operation} {job.object}) ended {job.state}: "
            f"{reason}"
        )


class BulkIngestResult:
    """What an ingest did: its jobs, counts and duration; streams of its record results.

    Attributes:
        jobs: The jobs, in upload order, as last polled.
        records_uploaded: Records sfauth uploaded.
        records_processed: Records Salesforce processed (``numberRecordsProcessed``), summed.
        records_failed: Records that failed (``numberRecordsFailed``), summed.
        records_unprocessed: Uploaded records Salesforce never processed (aborted or failed
            jobs): ``records_uploaded - records_processed``, never negative.
        elapsed: Seconds from the call to the last job's end.
    """

    def __init__(
        self, session: Any, jobs: list[BulkJob], records_uploaded: int, elapsed: float
    ) -> None:
        # Weakly: a result is also reachable from a BulkJobError, which must not lead to the
        # session (and its token).
        self._session = weakref.ref(session)
        self.jobs = jobs
        self.records_uploaded = records_uploaded
        self.records_processed = sum(job.records_processed for job in jobs)
        self.records_failed = sum(job.records_failed for job in jobs)
        self.records_unprocessed = max(0, records_uploaded - self.records_processed)
        self.elapsed = elapsed

    def __repr__(self) -> str:
        return (
            f"BulkIngestResult(jobs={len(self.jobs)}, records_uploaded={self.records_uploaded}, "
            f"records_processed={self.records_processed}, records_failed={self.records_failed}, "
            f"elapsed={self.elapsed:.2f})"
        )

    def successful_records(self) -> AsyncIterator[dict[str, str]]:
        """Stream every job's successful results: ``sf__Id``, ``sf__Created`` and the columns.

        ``GET /jobs/ingest/{id}/successfulResults/`` per job, parsed as it downloads (values
        are the CSV's strings; ``sf__Created`` is ``"true"`` or ``"false"``).

        Raises:
            APIError: A download failed (typed as in ``sf.raise_for_status``).
        """
        return self._rows("successfulResults/")

    def failed_records(self) -> AsyncIterator[dict[str, str]]:
        """Stream every job's failed results: ``sf__Id``, ``sf__Error`` and the columns.

        ``GET /jobs/ingest/{id}/failedResults/`` per job; ``sf__Error`` holds Salesforce's
        ``STATUS_CODE:message`` (e.g. ``REQUIRED_FIELD_MISSING:Required fields are missing:
        [Name]:Name --``).

        Raises:
            APIError: A download failed.
        """
        return self._rows("failedResults/")

    def unprocessed_records(self) -> AsyncIterator[dict[str, str]]:
        """Stream the records of aborted or failed jobs that were never processed.

        ``GET /jobs/ingest/{id}/unprocessedrecords/`` per job: the uploaded columns only.

        Raises:
            APIError: A download failed.
        """
        return self._rows("unprocessedrecords/")

    async def _rows(self, resource: str) -> AsyncIterator[dict[str, str]]:
        for job in self.jobs:
            session = self._session()
            if session is None:
                raise ConfigurationError(
                    "the session this ingest ran on is gone; keep it open while reading the "
                    "results, or read them later with sf.bulk.ingest_result(job_id)"
                )
            async for row in Bulk(session)._result_rows(job, resource):
                yield row


class Bulk:
    """Bulk API 2.0 ingest and query on one session (``sf.bulk``).

    Every method builds its paths on the session's ``api_version`` and sends through the
    session (one refresh, retries, origin scoping, fleet leases for downloads). Jobs are polled
    with backoff from ``poll_interval`` up to ``max_poll_interval`` seconds and never given
    up on: a deadline is the caller's (``asyncio.timeout``). Cancelling a call leaves no task
    behind; with ``abort_on_cancel=True`` it also aborts the jobs it started.
    """

    __slots__ = ("_session",)

    def __init__(self, session: Any) -> None:
        self._session = session

    def __repr__(self) -> str:
        return "Bulk()"

    # ------------------------------------------------------------------ ingest

    async def ingest(
        self,
        object: str,
        operation: str,
        data: Any,
        *,
        external_id_field: str | None = None,
        columns: Sequence[str] | None = None,
        column_delimiter: str = "COMMA",
        line_ending: str = "LF",
        assignment_rule_id: str | None = None,
        max_job_bytes: int = MAX_JOB_BYTES,
        compress: bool = True,
        poll_interval: float = 0.5,
        max_poll_interval: float = 10.0,
        abort_on_cancel: bool = False,
        progress: Callable[[BulkProgress], None] | None = None,
    ) -> BulkIngestResult:
        """Load records with Bulk API 2.0 ingest jobs and wait for Salesforce to process them.

        Each job: ``POST /jobs/ingest`` → ``PUT /jobs/ingest/{id}/batches`` (CSV, gzipped with
        ``Content-Encoding: gzip`` unless ``compress=False``; Salesforce's REST framework
        decompresses requests, "Compression Headers", REST API Developer Guide) → ``PATCH
        {"state": "UploadComplete"}`` → poll ``GET /jobs/ingest/{id}`` until ``JobComplete``,
        ``Failed`` or ``Aborted``. Records are encoded while earlier jobs are processed.
        A job's upload is retried like any PUT; the create is never resent once it may have
        reached Salesforce (it would open a second job).

        Args:
            object: The sObject, e.g. ``"Account"``.
            operation: ``"insert"``, ``"update"``, ``"upsert"``, ``"delete"`` or
                ``"hardDelete"`` (any case).
            data: Records: a sync or async iterable of dicts (field → value; ``None`` sets
                null, written ``#N/A``; a relationship by external id as ``{"Account":
                {"External_Id__c": "A-1"}}``); or CSV with a header row: ``bytes``, a path
                (``str`` or ``os.PathLike``) or a binary file object, passed through as is.
            external_id_field: The external id field matched by ``upsert`` (required for it,
                refused for the others); the records must have it.
            columns: The CSV header for records (default: the first record's fields; later
                records may omit fields, which leaves them unchanged, but not add any).
            column_delimiter: ``COMMA``, ``TAB``, ``PIPE``, ``SEMICOLON``, ``CARET`` or
                ``BACKQUOTE``; CSV input must use it.
            line_ending: ``LF`` or ``CRLF``; CSV input must use it.
            assignment_rule_id: An assignment rule for Case or Lead records.
            max_job_bytes: Bytes of CSV per job before another starts (default 100 MB).
            compress: Gzip uploads.
            poll_interval: Seconds before the first poll of a job; each wait is 1.5 times the
                last, up to ``max_poll_interval`` seconds.
            max_poll_interval: The longest wait between polls, in seconds.
            abort_on_cancel: When the call is cancelled, abort its unfinished jobs (``PATCH
                {"state": "Aborted"}``, within 10 seconds) before the cancellation goes on.
            progress: Called with a :class:`BulkProgress` after each upload and poll.

        Returns:
            A :class:`BulkIngestResult`; its ``failed_records()`` streams what Salesforce
            refused.

        Raises:
            ConfigurationError: A bad argument, an unknown operation, no records, CSV without
                the ``Id`` or external-id column it needs (nothing was sent).
            BulkInputError: A record or CSV row that cannot be sent, found while encoding; it
                names the jobs already sent, if any.
            BulkJobError: A job ended ``Failed`` (with Salesforce's ``errorMessage``) or
                ``Aborted``; its ``result`` holds every job's results.
            APIError: Salesforce refused a request (typed as in ``sf.raise_for_status``).
        """
        spec = IngestSpec.check(
            object,
            operation,
            external_id_field,
            column_delimiter,
            line_ending,
            assignment_rule_id,
            max_job_bytes,
            compress,
        )
        waits = _waits(poll_interval, max_poll_interval)
        _check_options(progress, abort_on_cancel)
        runs = csv_runs(data, spec) if is_csv(data) else record_runs(data, spec, columns)
        run = _IngestRun(self, spec, waits, progress)
        return await run.go(pack(runs, spec), abort_on_cancel)

    async def insert(self, object: str, records: Any, **options: Any) -> BulkIngestResult:
        """``ingest(object, "insert", records, **options)``: create records."""
        return await self.ingest(object, "insert", records, **options)

    async def update(self, object: str, records: Any, **options: Any) -> BulkIngestResult:
        """``ingest(object, "update", records, **options)``: records need ``Id``."""
        return await self.ingest(object, "update", records, **options)

    async def upsert(
        self, object: str, external_id_field: str, records: Any, **options: Any
    ) -> BulkIngestResult:
        """``ingest(object, "upsert", records, external_id_field=...)``: create or update."""
        return await self.ingest(
            object, "upsert", records, external_id_field=external_id_field, **options
        )

    async def delete(self, object: str, records: Any, **options: Any) -> BulkIngestResult:
        """``ingest(object, "delete", records, **options)``: only each record's ``Id`` is sent."""
        return await self.ingest(object, "delete", records, **options)

    async def hard_delete(self, object: str, records: Any, **options: Any) -> BulkIngestResult:
        """``ingest(object, "hardDelete", records)``: delete past the recycle bin.

        Needs the "Bulk API Hard Delete" permission.
        """
        return await self.ingest(object, "hardDelete", records, **options)

    # ------------------------------------------------------------------ query

    def query(
        self,
        soql: str,
        *,
        query_all: bool = False,
        max_records: int | None = None,
        poll_interval: float = 0.5,
        max_poll_interval: float = 10.0,
        abort_on_cancel: bool = False,
        progress: Callable[[BulkProgress], None] | None = None,
    ) -> AsyncIterator[dict[str, str | None]]:
        """Run a Bulk API 2.0 query job and stream its records as dicts.

        ``POST /jobs/query`` → poll → ``GET /jobs/query/{id}/results?maxRecords=&locator=``
        until ``Sforce-Locator`` is ``"null"`` ("Get Results for a Query Job"), read with the
        job's API version, gzipped on the wire, parsed as each page downloads. Values are the
        CSV's strings; an empty cell (null) is ``None``; relationship fields are keyed
        ``"Account.Name"``.

        Args:
            soql: The query (Bulk queries take no subqueries, aggregates or OFFSET).
            query_all: Include deleted and archived records (``queryAll``).
            max_records: Records per results page (``maxRecords``); default: Salesforce's.
            poll_interval: Seconds before the first poll (growing 1.5x per poll).
            max_poll_interval: The longest wait between polls, in seconds.
            abort_on_cancel: Abort the job if iteration is cancelled before it completes.
            progress: Called with a :class:`BulkProgress` after each poll and page.

        Returns:
            An async iterator of records (the job starts when iteration does).

        Raises:
            ConfigurationError: ``soql`` is empty, ``max_records`` is not positive.
            BulkJobError: The job ended ``Failed`` or ``Aborted``.
            APIError: Salesforce refused the query (e.g. ``MalformedRequestError``).
        """
        query = _QuerySpec.check(
            soql, query_all, max_records, poll_interval, max_poll_interval, abort_on_cancel
        )
        _check_options(progress, abort_on_cancel)
        return self._query_records(query, progress)

    def query_csv(
        self,
        soql: str,
        *,
        query_all: bool = False,
        max_records: int | None = None,
        poll_interval: float = 0.5,
        max_poll_interval: float = 10.0,
        abort_on_cancel: bool = False,
        progress: Callable[[BulkProgress], None] | None = None,
    ) -> AsyncIterator[bytes]:
        """Like :meth:`query`, but stream the results as raw CSV bytes (one header row).

        For pass-through to a file or a warehouse loader: pages are written as Salesforce
        sends them (comma-delimited, LF), without the repeated header of pages after the
        first. Arguments and errors are those of :meth:`query`.
        """
        query = _QuerySpec.check(
            soql, query_all, max_records, poll_interval, max_poll_interval, abort_on_cancel
        )
        _check_options(progress, abort_on_cancel)
        return self._query_csv(query, progress)

    # ------------------------------------------------------------------ jobs

    async def job(self, job_id: str, *, kind: str = "ingest") -> BulkJob:
        """Return a job's current info (``GET /jobs/{kind}/{id}``).

        Args:
            job_id: The job id (15 or 18 characters).
            kind: ``"ingest"`` or ``"query"``.

        Raises:
            ConfigurationError: A malformed id or kind.
            NotFoundError: No such job in the org (deleted, or of the other kind).
        """
        job_id, kind = _job_ref(job_id, kind)
        version = await self._session.api_version_resolved()
        return await self._info(kind, job_id, version)

    async def ingest_result(self, job_id: str) -> BulkIngestResult:
        """Wrap an existing ingest job (e.g. started elsewhere) to read its results.

        Raises:
            ConfigurationError: A malformed id.
            NotFoundError: No such ingest job.
        """
        job = await self.job(job_id)
        total = job.info.get("numberRecordsProcessed")
        return BulkIngestResult(self._session, [job], _count(total), 0.0)

    async def abort(self, job_id: str, *, kind: str = "ingest") -> BulkJob:
        """Abort a job (``PATCH {"state": "Aborted"}``); return its info.

        Raises:
            ConfigurationError: A malformed id or kind.
            NotFoundError: No such job.
            MalformedRequestError: The job can no longer be aborted (``InvalidJobState``).
        """
        job_id, kind = _job_ref(job_id, kind)
        version = await self._session.api_version_resolved()
        return await self._set_state(kind, job_id, version, "Aborted")

    async def delete_job(self, job_id: str, *, kind: str = "ingest") -> None:
        """Delete a finished or aborted job and its data (``DELETE /jobs/{kind}/{id}``).

        Raises:
            ConfigurationError: A malformed id or kind.
            NotFoundError: No such job.
            MalformedRequestError: The job is still running (abort it first).
        """
        job_id, kind = _job_ref(job_id, kind)
        version = await self._session.api_version_resolved()
        await self._call("DELETE", version, kind, job_id, idempotent=True, what="delete job")

    # ------------------------------------------------------------------ plumbing

    async def _call(
        self,
        method: str,
        version: str,
        *segments: str,
        what: str,
        body: Mapping[str, Any] | None = None,
        idempotent: bool = False,
    ) -> Any:
        from ._sobjects import _json

        path = f"/services/data/v{version}/jobs/" + "/".join(segments)
        data = None if body is None else json.dumps(body).encode()
        return await _json(
            self._session, method, path, data=data, idempotent=idempotent, what=f"Bulk {what}"
        )

    async def _create(
        self, kind: str, version: str, body: Mapping[str, Any], what: str
    ) -> BulkJob:
        """Create a job (never resent); a cancellation meanwhile aborts the job it created.

        The create runs to its answer even when the caller is cancelled (for at most 10
        seconds more), so that a job Salesforce opened is known, and aborted, not left open.
        """
        created = asyncio.ensure_future(self._call("POST", version, kind, body=body, what=what))
        try:
            answer = await asyncio.shield(created)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    answer = await created
                await self._abort_quietly([BulkJob._from(kind, answer, version)])
            created.cancel()
            raise
        return BulkJob._from(kind, answer, version)

    async def _info(self, kind: str, job_id: str, version: str) -> BulkJob:
        body = await self._call("GET", version, kind, job_id, what=f"{kind} job info")
        return BulkJob._from(kind, body, version)

    async def _set_state(self, kind: str, job_id: str, version: str, state: str) -> BulkJob:
        body = await self._call(
            "PATCH",
            version,
            kind,
            job_id,
            body={"state": state},
            idempotent=True,
            what=f"set {kind} job state {state}",
        )
        return BulkJob._from(kind, body, version)

    async def _wait(
        self,
        job: BulkJob,
        waits: Callable[[], Iterable[float]],
        seen: Callable[[BulkJob], None] | None = None,
    ) -> BulkJob:
        """Poll a job until it ends; return its last info.

        A poll that still fails after the session's retries (a transient answer, a lost
        connection) does not end the wait: the job goes on at Salesforce, so the next poll
        asks again. Only the caller's deadline or another error ends it.
        """
        for wait in waits():
            if job.state in TERMINAL:
                return job
            await asyncio.sleep(wait)
            try:
                job = await self._info(job.kind, job.id, job.api_version)
            except (TransientAPIError, TransportError):
                continue
            if seen is not None:
                seen(job)
        raise AssertionError("unreachable: waits() is endless")  # pragma: no cover

    async def _abort_quietly(self, jobs: Iterable[BulkJob]) -> None:
        """Abort unfinished jobs, best effort, within 10 seconds (on cancellation)."""
        live = [job for job in jobs if job.state not in TERMINAL]
        if not live:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await asyncio.gather(
                    *(self._set_state(j.kind, j.id, j.api_version, "Aborted") for j in live),
                    return_exceptions=True,
                )

    @contextlib.asynccontextmanager
    async def _download(
        self, job: BulkJob, resource: str, **params: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A results download as it streams (a long-running request); typed errors."""
        from ._sobjects import api_error

        path = f"/services/data/v{job.api_version}/jobs/{job.kind}/{job.id}/{resource}"
        async with self._session.get(path, params=params or None, long_running=True) as response:
            if response.status != 200:
                raise await api_error(response, what=f"Bulk {job.kind} job {job.id} results")
            yield response

    async def _result_rows(self, job: BulkJob, resource: str) -> AsyncIterator[dict[str, str]]:
        delimiter = str(job.info.get("columnDelimiter") or "COMMA")
        async with self._download(job, resource) as response:
            header: list[str] | None = None
            async for rows in _complete_rows(response):
                for row in parse_rows(rows, delimiter):
                    if header is None:
                        header = row
                    else:
                        yield dict(zip(header, row, strict=False))

    async def _run_query(
        self, query: _QuerySpec, progress: Callable[[BulkProgress], None] | None
    ) -> AsyncIterator[tuple[int, Any, BulkJob]]:
        """Create the job, wait for it, then yield ``(page number, response, job)`` per page."""
        version = await self._session.api_version_resolved()
        job = await self._create("query", version, query.body(), "create query job")
        report = _reporter(progress)
        report(1, 0, 0, 0, job)
        try:
            job = await self._wait(
                job, query.waits, lambda j: report(1, 0, j.records_processed, 0, j)
            )
            if job.state != "JobComplete":
                raise BulkJobError(job)
            locator: str | None = None
            page = 0
            while True:
                params: dict[str, str] = {}
                if query.max_records is not None:
                    params["maxRecords"] = str(query.max_records)
                if locator is not None:
                    params["locator"] = locator
                async with self._download(job, "results", **params) as response:
                    locator = response.headers.get("Sforce-Locator")  # any case (HTTP/2)
                    if locator is None:
                        raise APIError(
                            f"Bulk query job {job.id}: a results page came without its "
                            "Sforce-Locator header, so whether more pages follow is unknown",
                            status=response.status,
                            error_code=None,
                            message="(no Sforce-Locator header)",
                            method="GET",
                            url=str(response.url.with_query(None)),
                        )
                    yield page, response, job
                page += 1
                if locator == "null":
                    return
        except asyncio.CancelledError:
            if query.abort_on_cancel:
                await self._abort_quietly([job])
            raise

    async def _query_records(
        self, query: _QuerySpec, progress: Callable[[BulkProgress], None] | None
    ) -> AsyncIterator[dict[str, str | None]]:
        report = _reporter(progress)
        downloaded = 0
        async for _page, response, job in self._run_query(query, progress):
            header: list[str] | None = None
            async for rows in _complete_rows(response):
                for row in parse_rows(rows):
                    if header is None:
                        header = row
                        continue
                    downloaded += 1
                    yield {k: (v if v else None) for k, v in zip(header, row, strict=False)}
            report(1, downloaded, job.records_processed, 0, job)

    async def _query_csv(
        self, query: _QuerySpec, progress: Callable[[BulkProgress], None] | None
    ) -> AsyncIterator[bytes]:
        report = _reporter(progress)
        downloaded = 0
        async for page, response, job in self._run_query(query, progress):
            splitter = RowSplitter()
            header_done = page == 0
            async for chunk in response.content.iter_any():
                if not header_done:  # drop this page's header row
                    rows = splitter.feed(chunk)
                    if not rows:
                        continue
                    header_done = True
                    chunk = rows[rows.index(b"\n") + 1 :] + splitter.rest()
                    if not chunk:
                        continue
                yield chunk
            count = response.headers.get("Sforce-NumberOfRecords", "")
            downloaded += int(count) if count.isdigit() else 0
            report(1, downloaded, job.records_processed, 0, job)


async def _complete_rows(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body as runs of complete CSV rows, as it downloads (decompressed by aiohttp)."""
    splitter = RowSplitter()
    async for chunk in response.content.iter_chunked(PIECE):
        rows = splitter.feed(chunk)
        if rows:
            yield rows
    rest = splitter.rest()
    if rest:
        yield rest


def _reporter(
    progress: Callable[[BulkProgress], None] | None,
) -> Callable[[int, int, int, int, BulkJob | None], None]:
    last = ["", ""]  # the job that changed last: its id and state

    def report(jobs: int, uploaded: int, processed: int, failed: int, job: BulkJob | None) -> None:
        if progress is None:
            return
        if job is not None:
            last[:] = [job.id, job.state]
        progress(BulkProgress(jobs, uploaded, processed, failed, last[1], last[0]))

    return report


def _waits(first: object, longest: object) -> Callable[[], Iterable[float]]:
    """The waits between polls: ``first``, then 1.5x each time, up to ``longest`` seconds."""
    start = finite_seconds("poll_interval", first)
    cap = max(start, finite_seconds("max_poll_interval", longest))

    def waits() -> Iterable[float]:
        wait = start
        while True:
            yield wait
            wait = min(cap, wait * 1.5)

    return waits


def _check_options(progress: object, abort_on_cancel: object) -> None:
    if progress is not None and not callable(progress):
        raise ConfigurationError(
            f"progress must be a function taking a BulkProgress, or None; got {progress!r:.60}"
        )
    if not isinstance(abort_on_cancel, bool):
        raise ConfigurationError(f"abort_on_cancel must be True or False; got {abort_on_cancel!r}")


def _job_ref(job_id: object, kind: object) -> tuple[str, str]:
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise ConfigurationError(
            f"job_id must be a Salesforce job id (15 or 18 letters and digits, e.g. "
            f"'7505e00000AbCdEAAV'); got {job_id!r}"
        )
    if kind not in ("ingest", "query"):
        raise ConfigurationError(f"kind must be 'ingest' or 'query'; got {kind!r}")
    return job_id, str(kind)


@dataclass(frozen=True, slots=True)
class _QuerySpec:
    soql: str
    query_all: bool
    max_records: int | None
    waits: Callable[[], Iterable[float]]
    abort_on_cancel: bool

    @classmethod
    def check(
        cls,
        soql: object,
        query_all: object,
        max_records: object,
        poll_interval: object,
        max_poll_interval: object,
        abort_on_cancel: bool,
    ) -> _QuerySpec:
        if not isinstance(soql, str) or not soql.strip():
            raise ConfigurationError(f"soql must be a non-empty SOQL string; got {soql!r}")
        if not isinstance(query_all, bool):
            raise ConfigurationError(f"query_all must be True or False; got {query_all!r}")
        if max_records is not None and (
            isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1
        ):
            raise ConfigurationError(
                f"max_records must be a positive number of records per page; got {max_records!r}"
            )
        waits = _waits(poll_interval, max_poll_interval)
        return cls(soql, query_all, max_records, waits, abort_on_cancel)

    def body(self) -> dict[str, str]:
        return {
            "operation": "queryAll" if self.query_all else "query",
            "query": self.soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }


class _IngestRun:
    """One ``ingest`` call: creates, uploads and closes jobs; waits for them."""

    def __init__(
        self,
        bulk: Bulk,
        spec: IngestSpec,
        waits: Callable[[], Iterable[float]],
        progress: Callable[[BulkProgress], None] | None,
    ) -> None:
        self.bulk = bulk
        self.spec = spec
        self.waits = waits
        self.report = _reporter(progress)
        #: Jobs uploaded and closed, as last polled.
        self.sent: list[BulkJob] = []
        #: The job being uploaded: created, not yet closed (aborted if the call fails).
        self.open: BulkJob | None = None
        #: Records in the jobs sent.
        self.uploaded = 0

    def _seen(self, job: BulkJob) -> None:
        self.sent = [job if j.id == job.id else j for j in self.sent]
        processed = sum(j.records_processed for j in self.sent)
        failed = sum(j.records_failed for j in self.sent)
        self.report(len(self.sent), self.uploaded, processed, failed, job)

    async def go(self, jobs: AsyncIterator[JobData], abort_on_cancel: bool) -> BulkIngestResult:
        started = time.monotonic()
        session = self.bulk._session
        polls: list[asyncio.Task[BulkJob]] = []
        try:
            version = await session.api_version_resolved()
            async for data in _input(jobs):
                try:
                    job = await self._send(version, data)
                finally:
                    data.close()
                polls.append(asyncio.create_task(self.bulk._wait(job, self.waits, self._seen)))
            done = await asyncio.gather(*polls)
        except _BadInput as exc:
            await self._stop(polls, abort=False)
            raise BulkInputError(str(exc), self.sent, self.uploaded) from None
        except asyncio.CancelledError:
            await self._stop(polls, abort=abort_on_cancel)
            raise
        except Exception as exc:
            await self._stop(polls, abort=False)
            if self.sent:
                ids = ", ".join(job.id for job in self.sent)
                exc.add_note(
                    f"sfauth bulk: the first {self.uploaded} record(s) were sent in "
                    f"{len(self.sent)} job(s) before this error, which Salesforce processes: "
                    f"{ids}"
                )
            raise
        result = BulkIngestResult(session, list(done), self.uploaded, time.monotonic() - started)
        for job in done:
            if job.state != "JobComplete":
                raise BulkJobError(job, result)
        return result

    async def _stop(self, polls: list[asyncio.Task[BulkJob]], *, abort: bool) -> None:
        """Cancel the polls; abort the job left open, and with ``abort`` the ones sent."""
        await _cancel(polls)
        doomed = [self.open] if self.open is not None else []
        await self.bulk._abort_quietly(doomed + (self.sent if abort else []))

    async def _send(self, version: str, data: JobData) -> BulkJob:
        """Create one job, upload its data and close it."""
        from ._sobjects import api_error

        spec = self.spec
        job = await self.bulk._create(
            "ingest", version, spec.body(), f"create {spec.operation} job"
        )
        self.open = job
        headers = {"Content-Type": "text/csv"}
        if spec.compress:
            headers["Content-Encoding"] = "gzip"
        path = f"/services/data/v{version}/jobs/ingest/{job.id}/batches"
        async with self.bulk._session.put(path, data=data.finish(), headers=headers) as response:
            if response.status >= 300:
                raise await api_error(response, what=f"Bulk upload to job {job.id}")
        try:
            job = await self.bulk._set_state("ingest", job.id, version, "UploadComplete")
        except MalformedRequestError as exc:
            # A close resent after a lost answer finds the job closed already.
            if exc.error_code != "INVALIDJOBSTATE":
                raise
            job = await self.bulk._info("ingest", job.id, version)
            if job.state == "Open":
                raise
        self.open = None
        self.sent.append(job)
        self.uploaded += data.records
        self._seen(job)
        return job


class _BadInput(Exception):
    """A ``ConfigurationError`` of the input (records or CSV), as opposed to any other."""


async def _input(jobs: AsyncIterator[JobData]) -> AsyncIterator[JobData]:
    """The jobs of the input; its ``ConfigurationError`` becomes ``_BadInput``."""
    while True:
        try:
            data = await anext(jobs)
        except StopAsyncIteration:
            return
        except ConfigurationError as exc:
            raise _BadInput(str(exc)) from None
        yield data


async def _cancel(tasks: list[asyncio.Task[BulkJob]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class BulkMixin:
    """``sf.bulk`` for ``AuthSession``."""

    @property
    def bulk(self) -> Bulk:
        """Bulk API 2.0 ingest and query on this session (see :class:`Bulk`)."""
        return Bulk(self)
