"""Bulk ingest input: records or CSV turned into job-sized, gzipped CSV uploads.

Three stages, each a generator, so that memory holds one job's data at most:

1. ``record_runs`` (dicts) or ``csv_runs`` (CSV bytes, a path or a binary file) yield runs of
   complete CSV rows with the header they belong to, checking the input as they go;
2. ``pack`` fills ``JobData`` files up to ``max_job_bytes``, cutting between rows, starting a
   new job when the header changes;
3. the caller uploads each ``JobData`` while the next one is being filled.

Salesforce's CSV rules ("Prepare CSV Files", Bulk API 2.0 Developer Guide) are in
``_bulkcsv``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import itertools
import math
import os
import re
import tempfile
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from ._bulkcsv import (
    COLUMN_DELIMITERS,
    LINE_ENDINGS,
    NULL,
    RecordEncoder,
    RowSplitter,
    UnknownColumnError,
    complete_rows,
    parse_rows,
    quoted_newlines,
    writer,
)
from .exceptions import ConfigurationError

__all__ = [
    "MAX_JOB_BYTES",
    "OPERATIONS",
    "IngestSpec",
    "JobData",
    "csv_runs",
    "pack",
    "record_runs",
]

#: Bytes of CSV per job before sfauth starts another: Salesforce takes 150 MB of base64 per job
#: and advises 100 MB of data ("Upload Job Data", Bulk API 2.0 Developer Guide).
MAX_JOB_BYTES = 100_000_000
#: Operations of an ingest job, by their lower-case spelling.
OPERATIONS = {op.lower(): op for op in ("insert", "update", "upsert", "delete", "hardDelete")}
#: CSV is read and written in pieces of this many bytes.
PIECE = 1 << 20
#: zlib level 1: 3-4x smaller CSV for a fraction of level 6's CPU (this runs on the loop).
_GZIP_LEVEL = 1
#: Records read at once; the first batch also gives the columns of a call without ``columns=``,
#: and the event loop runs other tasks between batches (the refresh, other requests).
_BATCH = 1000
#: Other delimiters, to name the one a single-column header probably uses.
_OTHER_DELIMITERS = {c: name for name, c in COLUMN_DELIMITERS.items() if name != "COMMA"}


@dataclass(frozen=True, slots=True)
class IngestSpec:
    """What one ingest call creates its jobs with, checked."""

    sobject: str
    operation: str
    external_id_field: str | None
    column_delimiter: str
    line_ending: str
    assignment_rule_id: str | None
    max_job_bytes: int
    compress: bool

    @classmethod
    def check(
        cls,
        sobject: Any,
        operation: Any,
        external_id_field: Any,
        column_delimiter: Any,
        line_ending: Any,
        assignment_rule_id: Any,
        max_job_bytes: Any,
        compress: Any,
    ) -> IngestSpec:
        """Check every argument; raise ``ConfigurationError`` naming the first bad one."""
        from ._sobjects import _OBJECT_NAME

        if not isinstance(sobject, str) or not _OBJECT_NAME.fullmatch(sobject):
            raise ConfigurationError(
                f"object must be an API name such as 'Account' or 'Invoice__c'; got {sobject!r}"
            )
        op = OPERATIONS.get(operation.lower()) if isinstance(operation, str) else None
        if op is None:
            raise ConfigurationError(
                f"unknown Bulk ingest operation {operation!r}; use one of "
                f"{', '.join(OPERATIONS.values())}"
            )
        if op == "upsert":
            if not isinstance(external_id_field, str) or not external_id_field:
                raise ConfigurationError(
                    "upsert needs external_id_field: the external id field the records are "
                    "matched on, e.g. external_id_field='External_Id__c'"
                )
        elif external_id_field is not None:
            matches = "creates records" if op == "insert" else "matches records by Id"
            raise ConfigurationError(f"external_id_field is for upsert only; {op} {matches}")
        if not isinstance(column_delimiter, str) or column_delimiter not in COLUMN_DELIMITERS:
            raise ConfigurationError(
                f"column_delimiter must be one of {', '.join(COLUMN_DELIMITERS)}; "
                f"got {column_delimiter!r}"
            )
        if not isinstance(line_ending, str) or line_ending not in LINE_ENDINGS:
            raise ConfigurationError(f"line_ending must be 'LF' or 'CRLF'; got {line_ending!r}")
        if assignment_rule_id is not None and not isinstance(assignment_rule_id, str):
            raise ConfigurationError("assignment_rule_id must be a string id")
        if (
            isinstance(max_job_bytes, bool)
            or not isinstance(max_job_bytes, int)
            or not 1024 <= max_job_bytes <= MAX_JOB_BYTES
        ):
            raise ConfigurationError(
                f"max_job_bytes must be an int from 1024 to {MAX_JOB_BYTES} (Salesforce takes "
                f"150 MB of base64 per job); got {max_job_bytes!r}"
            )
        if not isinstance(compress, bool):
            raise ConfigurationError(f"compress must be True or False; got {compress!r}")
        return cls(
            sobject,
            op,
            external_id_field,
            column_delimiter,
            line_ending,
            assignment_rule_id,
            max_job_bytes,
            compress,
        )

    @property
    def key(self) -> str:
        """The column every row needs: the external id for upsert, ``Id`` but for insert."""
        if self.operation == "insert":
            return ""
        return self.external_id_field or "Id"

    @property
    def ids_only(self) -> bool:
        """Whether rows carry only ``Id`` (delete, hardDelete)."""
        return self.operation in ("delete", "hardDelete")

    def body(self) -> dict[str, str]:
        """The "Create a Job" request body."""
        body = {
            "object": self.sobject,
            "operation": self.operation,
            "contentType": "CSV",
            "columnDelimiter": self.column_delimiter,
            "lineEnding": self.line_ending,
        }
        if self.external_id_field is not None:
            body["externalIdFieldName"] = self.external_id_field
        if self.assignment_rule_id is not None:
            body["assignmentRuleId"] = self.assignment_rule_id
        return body

    def check_header(self, header: Sequence[str], where: str) -> None:
        """Refuse a header without the column the operation matches on."""
        names = {name.lower() for name in header}
        if self.key and self.key.lower() not in names:
            raise ConfigurationError(
                f"{where} has no {self.key!r} column, which {self.operation} needs to match "
                f"records (columns: {', '.join(header)})"
            )
        if self.ids_only and len(header) != 1:
            raise ConfigurationError(
                f"{where} for {self.operation} must have only the Id column; it has "
                f"{', '.join(header)}"
            )


class JobData:
    """One job's CSV (its header first), gzipped or not, in a spooled temporary file."""

    def __init__(self, compress: bool, header: bytes) -> None:
        # Past 4 MiB the file moves to disk: memory stays flat however big the job.
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 << 20)  # noqa: SIM115
        self._zip = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31) if compress else None
        self.compress = compress
        self.header = header
        self.size = 0
        self.records = 0
        self._write(header)

    def _write(self, data: bytes) -> None:
        self.size += len(data)
        self.file.write(self._zip.compress(data) if self._zip is not None else data)

    def add(self, rows: bytes, count: int) -> None:
        """Append complete rows (``count`` records)."""
        self._write(rows)
        self.records += count

    def finish(self) -> IO[bytes]:
        """The file to upload, rewound."""
        if self._zip is not None:
            self.file.write(self._zip.flush())
            self._zip = None
        self.file.seek(0)
        return self.file

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # already closed
            self.file.close()


def is_csv(data: object) -> bool:
    """Whether ``data`` is CSV (bytes, a path, a file) rather than records."""
    return isinstance(data, (bytes, bytearray, memoryview, str, os.PathLike)) or hasattr(
        data, "read"
    )


def count_rows(rows: bytes) -> int:
    """Records in complete CSV rows: their newlines, less those inside quoted fields."""
    return rows.count(b"\n") - quoted_newlines(rows)


async def pack(
    runs: AsyncIterator[tuple[bytes, bytes]], spec: IngestSpec
) -> AsyncIterator[JobData]:
    """Fill jobs of at most ``max_job_bytes`` from ``(header, rows)`` runs, cutting between rows.

    A run with another header than the job's ends that job (the next one has the new header).

    Raises:
        ConfigurationError: One row (with the header) is longer than ``max_job_bytes``.
    """
    job: JobData | None = None
    try:
        async for header, rows in runs:
            if job is not None and header != job.header:
                yield job
                job = None
            start = 0
            while start < len(rows):
                if job is None:
                    job = JobData(spec.compress, header)
                room = spec.max_job_bytes - job.size
                end = (
                    len(rows)
                    if len(rows) - start <= room
                    else start + complete_rows(rows[start : start + max(0, room)])
                )
                if end <= start:  # not one more row fits
                    if job.records == 0:
                        size = len(rows) - start
                        raise ConfigurationError(
                            f"a row of about {size} bytes does not fit in a job of "
                            f"max_job_bytes={spec.max_job_bytes} with its header; raise "
                            "max_job_bytes"
                        )
                    yield job
                    job = None
                    continue
                part = rows[start:end]
                job.add(part, count_rows(part))
                start = end
        if job is not None:
            yield job
            job = None
    finally:
        if job is not None:
            job.close()


# ---------------------------------------------------------------------------- records


async def record_runs(
    data: Any, spec: IngestSpec, columns: Sequence[str] | None
) -> AsyncIterator[tuple[bytes, bytes]]:
    """Encode records to runs of CSV rows.

    Without ``columns``, the header is every field of the first 1,000 records; a later record
    with a field the header lacks starts a run with a header that has it too (an absent field
    is an empty cell: not set on insert, left unchanged by an update).

    Raises:
        ConfigurationError: Not records, no records, a record that cannot be encoded (its
            index is named), or one without the field the operation matches on.
    """
    fixed = _columns(columns)
    batches = _batches(data)
    ahead: list[Any] = await anext(batches, [])
    if not ahead:
        raise ConfigurationError(f"no records to {spec.operation}")
    if fixed is not None:
        header = fixed
    elif spec.ids_only:
        header = ["Id"]
    else:
        header = _union([], ahead, 0)
    spec.check_header(header, "the header of the records")
    text = _TextBuffer(spec)
    encoder = RecordEncoder(header)
    header_line = text.header(header)
    key = encoder.position(spec.key) if spec.key else -1
    flush_at = min(PIECE, max(256, spec.max_job_bytes // 16))
    index = 0
    batch = ahead
    ids_only = spec.ids_only
    stream, plain, quoted = text.stream, text.writer, text.quoted
    while batch:
        for record in batch:
            if ids_only and isinstance(record, Mapping):
                record = {k: v for k, v in record.items() if str(k).lower() == "id"}
            try:
                row = encoder.row(record, index)
            except UnknownColumnError:
                if fixed is not None:
                    raise
                # A new field: what is buffered goes under the old header, the rest under a
                # header that has the field too.
                if text.size():
                    yield header_line, text.take()
                header = _union(header, [record], index)
                encoder = RecordEncoder(header)
                header_line = text.header(header)
                row = encoder.row(record, index)
            if key >= 0 and row[key] in (None, NULL):
                raise ConfigurationError(
                    f"record {index} has no {spec.key!r} value, which {spec.operation} needs"
                )
            # csv quotes a field with the line terminator's characters only: with LF, a lone
            # CR would go out bare and split the row, so such rows are fully quoted.
            (quoted if encoder.carriage_return else plain).writerow(row)
            index += 1
            if stream.tell() >= flush_at:
                yield header_line, text.take()
        await asyncio.sleep(0)  # between batches: the refresh and other requests go on
        batch = await anext(batches, [])
    if text.size():
        yield header_line, text.take()


def _columns(columns: object) -> list[str] | None:
    if columns is None:
        return None
    if (
        isinstance(columns, (str, bytes))
        or not isinstance(columns, Iterable)
        or not (names := list(columns))
        or not all(isinstance(c, str) and c for c in names)
    ):
        raise ConfigurationError(
            f"columns must be a list of field names (non-empty strings); got {columns!r:.60}"
        )
    return names


async def _batches(data: Any) -> AsyncIterator[list[Any]]:
    """Records in lists of up to 1,000 (one await per list for a sync iterable)."""
    if isinstance(data, Mapping):
        raise ConfigurationError("data must be an iterable of records (dicts), not one record")
    if isinstance(data, AsyncIterable):
        batch: list[Any] = []
        async for record in data:
            batch.append(_snapshot(record))
            if len(batch) == _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    if not isinstance(data, Iterable):
        raise ConfigurationError(
            "data must be records (an iterable or async iterable of dicts) or CSV (bytes, a "
            f"path or a binary file); got {type(data).__name__}"
        )
    records = iter(data)
    while batch := [_snapshot(record) for record in itertools.islice(records, _BATCH)]:
        yield batch


def _snapshot(record: Any) -> Any:
    """A (shallow) copy of a record as it is now: a source may reuse one dict for them all."""
    if type(record) is dict:
        return record.copy()
    return dict(record) if isinstance(record, Mapping) else record


def _union(header: list[str], records: list[Any], first: int) -> list[str]:
    """``header`` plus the fields of ``records`` it lacks (any case), in order of appearance."""
    known = {name.lower() for name in header}
    out = list(header)
    for offset, record in enumerate(records):
        for name in RecordEncoder.columns_of(record, f"record {first + offset}"):
            if name.lower() not in known:
                known.add(name.lower())
                out.append(name)
    return out


class _TextBuffer:
    """The csv writers' ``StringIO``, drained as UTF-8 bytes."""

    __slots__ = ("quoted", "stream", "writer")

    def __init__(self, spec: IngestSpec) -> None:
        self.stream = io.StringIO(newline="")
        self.writer = writer(self.stream, spec.column_delimiter, spec.line_ending)
        self.quoted = writer(self.stream, spec.column_delimiter, spec.line_ending, quote_all=True)

    def size(self) -> int:
        return self.stream.tell()

    def take(self) -> bytes:
        try:
            data = self.stream.getvalue().encode()
        except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from json.loads("\ud800")
            raise ConfigurationError(
                f"a value holds {exc.object[exc.start : exc.end]!r}, which is not text UTF-8 "
                "can carry (a lone surrogate); clean it before loading"
            ) from None
        self.stream.seek(0)
        self.stream.truncate()
        return data

    def header(self, header: list[str]) -> bytes:
        """The header row alone (the buffer must be drained)."""
        self.writer.writerow(header)
        return self.take()


# ---------------------------------------------------------------------------- CSV


async def csv_runs(data: Any, spec: IngestSpec) -> AsyncIterator[tuple[bytes, bytes]]:
    """CSV input as ``(header line, rows)`` runs, passed through as it is.

    Raises:
        ConfigurationError: Unreadable, empty, no rows, a header without the column the
            operation needs, line endings or a delimiter other than declared, or a quoted
            field that is never closed.
    """
    splitter = RowSplitter()
    header: bytes | None = None
    rows_seen = False
    async for piece in _csv_pieces(data):
        rows = splitter.feed(piece)
        if not rows:
            continue
        if header is None:
            header, rows = _split_header(rows, spec)
        rows = _checked_rows(rows, spec)
        if rows:
            rows_seen = True
            yield header, rows
    if splitter.inside_quotes:
        raise ConfigurationError('the CSV ends inside a quoted field: a " is never closed')
    rest = splitter.rest()
    if header is None and b"\n" not in rest and b"\r" in rest:
        raise ConfigurationError(
            "the CSV's lines end with CR alone; Bulk API 2.0 takes LF or CRLF line endings"
        )
    if rest.strip():
        ending = LINE_ENDINGS[spec.line_ending].encode()
        if header is None:
            header, _ = _split_header(rest + ending, spec)
        else:
            rows_seen = True
            yield header, _checked_rows(rest + ending, spec)
    if header is None:
        raise ConfigurationError("the CSV is empty")
    if not rows_seen:
        raise ConfigurationError("the CSV has a header but no rows")


_BLANK_LF = re.compile(rb"\n\n+")
_BLANK_CRLF = re.compile(rb"\r\n(?:\r\n)+")


def _checked_rows(rows: bytes, spec: IngestSpec) -> bytes:
    """Check a run's line endings outside quoted fields and drop its blank lines.

    Quoted fields may hold any line ending and are passed as they are. A run with no blank
    line, no CR where LF is declared and only CRLF where CRLF is, costs a few ``count`` calls.
    """
    if spec.line_ending == "LF":
        clean = b"\r" not in rows and b"\n\n" not in rows and not rows.startswith(b"\n")
    else:
        crs, crlfs = rows.count(b"\r"), rows.count(b"\r\n")
        clean = (
            crs == crlfs == rows.count(b"\n")
            and b"\r\n\r\n" not in rows
            and not rows.startswith(b"\r\n")
        )
    if clean:
        return rows
    # Runs start outside quotes: the even pieces between quote characters are outside them.
    pieces = rows.split(b'"')
    for index in range(0, len(pieces), 2):
        pieces[index] = _outside_quotes(pieces[index], spec, first=index == 0)
    return b'"'.join(pieces)


def _outside_quotes(text: bytes, spec: IngestSpec, *, first: bool) -> bytes:
    """One piece of a run outside quoted fields: line endings checked, blank lines dropped."""
    if spec.line_ending == "LF":
        if b"\r\n" in text:
            raise ConfigurationError(
                "the CSV's rows end with CRLF but line_ending='LF'; pass line_ending='CRLF'"
            )
        if b"\r" in text:
            raise ConfigurationError(
                "the CSV has a carriage return outside quotes inside a row; quote that field "
                "(Salesforce would split the row there)"
            )
        text = _BLANK_LF.sub(b"\n", text)
        return text.lstrip(b"\n") if first else text
    if text.count(b"\n") != text.count(b"\r\n"):
        raise ConfigurationError(
            "the CSV's rows end with LF but line_ending='CRLF'; pass line_ending='LF'"
        )
    if text.count(b"\r") != text.count(b"\r\n"):
        raise ConfigurationError(
            "the CSV has a carriage return outside quotes inside a row; quote that field "
            "(Salesforce would split the row there)"
        )
    text = _BLANK_CRLF.sub(b"\r\n", text)
    while first and text.startswith(b"\r\n"):
        text = text[2:]
    return text


def _split_header(rows: bytes, spec: IngestSpec) -> tuple[bytes, bytes]:
    """The CSV's header line and the rows after it; the header is checked."""
    end = rows.index(b"\n") + 1
    line = rows[:end]
    crlf = line.endswith(b"\r\n")
    if crlf != (spec.line_ending == "CRLF"):
        found, other = ("CRLF", "LF") if crlf else ("LF", "CRLF")
        raise ConfigurationError(
            f"the CSV's lines end with {found} but line_ending={other!r}; pass "
            f"line_ending={found!r}"
        )
    header = next(parse_rows(line, spec.column_delimiter), [])
    if not header or not all(name.strip() for name in header):
        raise ConfigurationError(
            "the CSV's first row must be a header of field names (none may be empty); check "
            f"column_delimiter={spec.column_delimiter!r}"
        )
    if len(header) == 1:
        used = [name for c, name in {",": "COMMA", **_OTHER_DELIMITERS}.items() if c in header[0]]
        if used and used[0] != spec.column_delimiter:
            raise ConfigurationError(
                f"the CSV's header {header[0]!r} looks delimited by {used[0]}, but "
                f"column_delimiter={spec.column_delimiter!r}; pass column_delimiter={used[0]!r}"
            )
    spec.check_header(header, "the CSV's header")
    return line, rows[end:]


async def _csv_pieces(data: Any) -> AsyncIterator[bytes]:
    """CSV input in pieces: bytes as they are, a path or a file read 1 MiB at a time."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        for start in range(0, len(view), PIECE):
            yield bytes(view[start : start + PIECE])
        return
    if isinstance(data, (str, os.PathLike)):
        try:
            file: IO[bytes] = open(data, "rb")  # noqa: SIM115, ASYNC230
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the CSV file {os.fspath(data)!r}: {exc.strerror}"
            ) from None
        with file:
            async for piece in _file_pieces(file):
                yield piece
        return
    async for piece in _file_pieces(data):
        yield piece


async def _file_pieces(file: Any) -> AsyncIterator[bytes]:
    """A binary file's pieces; a file with ``async def read`` (aiofiles) is awaited."""
    read = file.read
    reads_async = inspect.iscoroutinefunction(read)
    while True:
        try:
            piece = await read(PIECE) if reads_async else await asyncio.to_thread(read, PIECE)
        except (OSError, ValueError) as exc:  # closed, write-only (io.UnsupportedOperation)
            raise ConfigurationError(f"cannot read the CSV file object: {exc}") from None
        if isinstance(piece, str):
            raise ConfigurationError(
                "the CSV file object is in text mode; open it in binary mode ('rb'), so that "
                "its bytes and line endings go to Salesforce as they are"
            )
        if not isinstance(piece, (bytes, bytearray)):
            raise ConfigurationError(
                f"the CSV file object's read() returned {type(piece).__name__}, not bytes"
            )
        if not piece:
            return
        yield bytes(piece)


def finite_seconds(name: str, value: object) -> float:
    """A positive, finite number of seconds, or ``ConfigurationError``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or not math.isfinite(value)
    ):
        raise ConfigurationError(
            f"{name} must be a positive, finite number of seconds; got {value!r}"
        )
    return float(value)
