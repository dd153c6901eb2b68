"""The CLI's data commands: ``sfauth query`` and ``sfauth bulk ingest|query``.

Flag names follow the Salesforce CLI where it has them (``sf data import bulk --sobject --file
--line-ending --column-delimiter``, ``sf data upsert bulk --external-id``, ``sf data export
bulk --query --output-file --result-format --all-rows``). Data goes to standard output or
``--output-file``; a progress display (rich) goes to standard error, only when both are
terminals; a one-line summary ends every run on standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ._bulk import OPERATIONS, BulkIngestResult, BulkJobError, BulkProgress
from ._bulkcsv import COLUMN_DELIMITERS
from ._session import AuthSession
from .exceptions import ConfigurationError

__all__ = ["add_data_commands"]

#: Records read before the CSV header of ``sfauth query --format csv`` is fixed.
_CSV_LOOKAHEAD = 1000


def add_data_commands(
    sub: Any,
    verbose_after: argparse.ArgumentParser,
    identity_flags: Callable[..., None],
    flow_kwargs: Callable[[argparse.Namespace], dict[str, Any]],
) -> None:
    """Register ``query`` and ``bulk`` on the CLI's subparsers.

    Args:
        sub: The ``add_subparsers()`` object.
        verbose_after: The ``-v`` parent parser.
        identity_flags: Adds the login flags (``--client-id``… and ``key=True``).
        flow_kwargs: Turns parsed flags into ``AuthSession`` arguments.
    """
    query = sub.add_parser(
        "query",
        parents=[verbose_after],
        help="run a SOQL query (REST) and stream the records as CSV or JSON lines",
        description="Log in, run SOQL through the REST query resource (every page), and "
        "stream the records to standard output or --output-file. CSV columns are the fields "
        "of the first 1,000 records (relationships as Account.Name; child subqueries as JSON "
        "text). For millions of records use `sfauth bulk query`.",
    )
    query.add_argument("soql", metavar="SOQL", help='e.g. "SELECT Id, Name FROM Account"')
    query.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="default csv")
    _output_flags(query)
    query.set_defaults(func=lambda args: _run(args, flow_kwargs, _query))

    bulk = sub.add_parser(
        "bulk",
        parents=[verbose_after],
        help="Bulk API 2.0: load a CSV file (ingest) or export a query (query)",
    )
    jobs = bulk.add_subparsers(required=True, metavar="ACTION", dest="action")
    ingest = jobs.add_parser(
        "ingest",
        parents=[verbose_after],
        help="insert, update, upsert or delete the records of a CSV file",
        description="Create Bulk API 2.0 ingest jobs for a CSV file (a header row of field "
        "names; #N/A sets a field to null), wait for Salesforce to process them, and print a "
        "summary. Exits 1 when any record failed; --failed-records keeps them.",
    )
    ingest.add_argument("--sobject", required=True, help="the object, e.g. Account")
    ingest.add_argument(
        "--file", required=True, type=Path, help="CSV file to load (UTF-8, header row)"
    )
    ingest.add_argument(
        "--operation",
        default="insert",
        choices=list(OPERATIONS.values()),
        help="default insert",
    )
    ingest.add_argument("--external-id", help="the external id field (upsert)")
    ingest.add_argument(
        "--column-delimiter",
        default="COMMA",
        choices=list(COLUMN_DELIMITERS),
        help="the file's delimiter (default COMMA)",
    )
    ingest.add_argument(
        "--line-ending", default="LF", choices=("LF", "CRLF"), help="the file's (default LF)"
    )
    ingest.add_argument(
        "--failed-records",
        type=Path,
        metavar="FILE",
        help="write the records Salesforce refused (sf__Id, sf__Error and your columns) here",
    )
    ingest.set_defaults(func=lambda args: _run(args, flow_kwargs, _ingest))

    export = jobs.add_parser(
        "query",
        parents=[verbose_after],
        help="export a SOQL query's records through a Bulk API 2.0 query job",
        description="Create a Bulk API 2.0 query job, wait for it, and stream its records to "
        "standard output or --output-file as CSV (Salesforce's, one header row) or JSON lines.",
    )
    export.add_argument("--query", required=True, metavar="SOQL", help="the SOQL query")
    export.add_argument(
        "--result-format", choices=("csv", "jsonl"), default="csv", help="default csv"
    )
    export.add_argument("--max-records", type=int, default=None, help="records per results page")
    _output_flags(export)
    export.set_defaults(func=lambda args: _run(args, flow_kwargs, _export))

    for cmd in (query, ingest, export):
        identity_flags(cmd, key=True)


def _output_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--output-file", type=Path, metavar="FILE", help="write here (default: standard output)"
    )
    cmd.add_argument(
        "--all-rows", action="store_true", help="include deleted and archived records (queryAll)"
    )


def _run(
    args: argparse.Namespace,
    flow_kwargs: Callable[[argparse.Namespace], dict[str, Any]],
    command: Callable[[AuthSession, argparse.Namespace, _Progress], Any],
) -> int:
    # No live line while records stream to a terminal: it would be drawn between them.
    data_to_screen = getattr(args, "output_file", "no output") is None

    summary: list[str] = []

    async def run() -> int:
        with _Progress.for_terminal(summary, allowed=not data_to_screen) as progress:
            async with AuthSession(**flow_kwargs(args)) as sf:
                result: int = await command(sf, args, progress)
                return result

    try:
        return asyncio.run(run())
    except ConfigurationError as exc:  # in the CLI's words: flags, not Python arguments
        raise ConfigurationError(_in_cli_words(str(exc))) from None
    finally:  # once the live line is gone (it would erase a line printed under it)
        for line in summary:
            print(f"sfauth: {line}", file=sys.stderr)


class _Progress:
    """A one-line rich progress display on standard error, or nothing."""

    def __init__(self, progress: Any, summary: list[str]) -> None:
        self._progress = progress
        self._task: Any = None
        self._summary = summary

    def summary(self, text: str) -> None:
        """The run's one-line summary, printed once the live line is gone."""
        self._summary.append(text)

    @classmethod
    @contextlib.contextmanager
    def for_terminal(cls, summary: list[str], *, allowed: bool = True) -> Iterator[_Progress]:
        """A live display when standard output and standard error are terminals."""
        if not (allowed and sys.stdout.isatty() and sys.stderr.isatty()):
            yield cls(None, summary)
            return
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        display = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        with display:
            shown = cls(display, summary)
            shown.show("logging in")  # drawn at once, the timer running from the start
            yield shown

    def show(self, text: str) -> None:
        """Replace the line's text."""
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task(text, total=None)
        else:
            self._progress.update(self._task, description=text)


class _Output:
    """Where data goes: standard output, or ``path`` opened at the first write.

    A query that fails before its first record leaves an existing file as it was.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.file: IO[bytes] | None = sys.stdout.buffer if path is None else None

    def write(self, data: bytes) -> None:
        if self.file is None:
            assert self.path is not None
            try:
                self.file = self.path.open("wb")
            except OSError as exc:
                raise ConfigurationError(
                    f"--output-file {str(self.path)!r}: {exc.strerror}"
                ) from None
        self.file.write(data)

    def close(self, succeeded: bool) -> None:
        if self.path is None:
            sys.stdout.buffer.flush()
            return
        if self.file is None and succeeded:
            self.write(b"")  # no records: the file is still created, empty
        if self.file is not None:
            self.file.close()


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[_Output]:
    """The stream data is written to; closed (or flushed) once the command succeeded."""
    if path is not None and not path.parent.is_dir():
        raise ConfigurationError(f"--output-file {str(path)!r}: no such directory")
    out = _Output(path)
    try:
        yield out
    except BaseException:
        out.close(succeeded=False)
        raise
    out.close(succeeded=True)


def _written(count: int, path: Path | None, started: float) -> str:
    where = str(path) if path is not None else "standard output"
    return f"{_records(count)} written to {where} in {time.monotonic() - started:.1f} s"


def _records(count: int) -> str:
    return f"{count} record{'' if count == 1 else 's'}"


#: The library's argument names in messages, as the CLI spells them.
_CLI_WORDS = (
    ("external_id_field='External_Id__c'", "--external-id External_Id__c"),
    ("external_id_field", "--external-id"),
    ("column_delimiter=", "--column-delimiter "),
    ("line_ending=", "--line-ending "),
    ("max_records", "--max-records"),
    ("soql must", "the query must"),
)


def _in_cli_words(message: str) -> str:
    for python, cli in _CLI_WORDS:
        message = message.replace(python, cli)
    return message


async def _query(sf: AuthSession, args: argparse.Namespace, progress: _Progress) -> int:
    started = time.monotonic()
    records = sf.query_all(args.soql) if args.all_rows else sf.query(args.soql)
    count = 0
    with _output(args.output_file) as out:
        if args.format == "jsonl":
            async for record in records:
                out.write(json.dumps(_plain(record), ensure_ascii=False).encode() + b"\n")
                count += 1
                if count % 2000 == 0:
                    progress.show(f"query: {count} records")
        else:
            count = await _write_csv(records, out, progress)
    progress.summary(_written(count, args.output_file, started))
    return 0


def _plain(record: Any) -> Any:
    """A REST record without its ``attributes`` (nested ones too)."""
    if isinstance(record, dict):
        return {k: _plain(v) for k, v in record.items() if k != "attributes"}
    if isinstance(record, list):
        return [_plain(v) for v in record]
    return record


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"Account": {"Name": "A"}}`` → ``{"Account.Name": "A"}``; child results as JSON."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, dict) and "records" in value:  # a child subquery's result
            out[prefix + key] = json.dumps(_plain(value["records"]), ensure_ascii=False)
        elif isinstance(value, dict):
            out.update(_flat(value, prefix + key + "."))
        else:
            out[prefix + key] = value
    return out


async def _write_csv(records: AsyncIterator[Any], out: _Output, progress: _Progress) -> int:
    """Write REST records as CSV; the header is the columns of the first 1,000."""
    ahead: list[dict[str, Any]] = []
    async for record in records:
        ahead.append(_flat(record))
        if len(ahead) == _CSV_LOOKAHEAD:
            break
    columns: list[str] = []
    for row in ahead:
        columns.extend(key for key in row if key not in columns)
    # A null parent ("Account": None) is a column only if no record has its fields.
    columns = [c for c in columns if not any(o.startswith(c + ".") for o in columns)]
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")

    def emit(row: dict[str, Any], index: int) -> None:
        extra = [k for k in row if k not in known and row[k] is not None]
        if extra:
            raise ConfigurationError(
                f"record {index} has the column {extra[0]!r}, which the first "
                f"{len(ahead)} records did not have; use --format jsonl (or `sfauth bulk "
                "query`) for records of varying shape"
            )
        writer.writerow(["" if row.get(c) is None else _text(row.get(c)) for c in columns])

    known = set(columns)
    if not columns:  # no records: no header to write either
        return 0
    writer.writerow(columns)
    count = 0
    for row in ahead:
        emit(row, count)
        count += 1
    out.write(text.getvalue().encode())
    async for record in records:
        text.seek(0)
        text.truncate()
        emit(_flat(record), count)
        count += 1
        out.write(text.getvalue().encode())
        if count % 2000 == 0:
            progress.show(f"query: {count} records")
    return count


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def _export(sf: AuthSession, args: argparse.Namespace, progress: _Progress) -> int:
    started = time.monotonic()

    downloaded = [0]

    def shown(p: BulkProgress) -> None:
        downloaded[0] = p.records_uploaded  # Sforce-NumberOfRecords, summed over the pages
        progress.show(
            f"bulk query {p.job_id}: {p.state}, {p.records_processed:,} records, "
            f"{p.records_uploaded:,} downloaded"
        )

    options: dict[str, Any] = {
        "query_all": args.all_rows,
        "max_records": args.max_records,
        "progress": shown,
        "abort_on_cancel": True,
    }
    count = 0
    with _output(args.output_file) as out:
        if args.result_format == "csv":
            async for chunk in sf.bulk.query_csv(args.query, **options):
                out.write(chunk)
            count = downloaded[0]
        else:
            async for record in sf.bulk.query(args.query, **options):
                out.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
                count += 1
    progress.summary(_written(count, args.output_file, started))
    return 0


async def _ingest(sf: AuthSession, args: argparse.Namespace, progress: _Progress) -> int:
    what = f"bulk {args.operation} {args.sobject}"

    def shown(p: BulkProgress) -> None:
        progress.show(
            f"{what}: {p.records_uploaded:,} sent, {p.state}, {p.records_processed:,} done, "
            f"{p.records_failed:,} failed"
        )

    if not args.file.is_file():
        raise ConfigurationError(f"--file {str(args.file)!r}: no such file")
    failed_to = args.failed_records
    if failed_to is not None and failed_to.exists():
        raise ConfigurationError(f"--failed-records {str(failed_to)!r} exists; name a new file")
    if failed_to is not None and not failed_to.parent.is_dir():
        raise ConfigurationError(f"--failed-records {str(failed_to)!r}: no such directory")
    failure: BulkJobError | None = None
    try:
        result = await _ingest_file(sf, args, shown)
    except BulkJobError as exc:
        if exc.result is None:
            raise
        failure, result = exc, exc.result
    kept = ""
    if result.records_failed and args.failed_records is not None:
        written = await _write_failed(result, args.failed_records)
        kept = f" (written to {args.failed_records})" if written else ""
    elif result.records_failed:
        kept = " (pass --failed-records FILE to keep them)"
    jobs = len(result.jobs)
    ids = " ".join(job.id for job in result.jobs[:3]) + (" ..." if jobs > 3 else "")
    progress.summary(
        f"{what}: {_records(result.records_uploaded)} in {jobs} job{'s' if jobs != 1 else ''} "
        f"({ids}), "
        f"{result.records_processed} processed, {result.records_failed} failed{kept}, "
        f"{result.records_unprocessed} unprocessed, {result.elapsed:.1f} s"
    )
    if failure is not None:
        raise failure
    return 1 if result.records_failed or result.records_unprocessed else 0


async def _ingest_file(
    sf: AuthSession, args: argparse.Namespace, shown: Callable[[BulkProgress], None]
) -> BulkIngestResult:
    return await sf.bulk.ingest(
        args.sobject,
        args.operation,
        args.file,
        external_id_field=args.external_id,
        column_delimiter=args.column_delimiter,
        line_ending=args.line_ending,
        progress=shown,
        abort_on_cancel=True,
    )


async def _write_failed(result: BulkIngestResult, path: Path) -> int:
    """Stream the failed results to a new CSV file; return how many were written."""
    count = 0
    try:
        file = path.open("x", newline="", encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"--failed-records {str(path)!r}: {exc.strerror}") from None
    with file:
        writer: csv.DictWriter[str] | None = None
        async for row in result.failed_records():
            if writer is None:
                writer = csv.DictWriter(file, fieldnames=list(row), lineterminator="\n")
                writer.writeheader()
            writer.writerow(row)
            count += 1
    return count
