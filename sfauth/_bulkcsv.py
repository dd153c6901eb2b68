"""CSV for Bulk API 2.0: records to Salesforce's CSV, and result CSV back to records.

The per-record work of Bulk lives here, on the stdlib ``csv`` module (C). Salesforce's CSV
rules ("Prepare CSV Files", Bulk API 2.0 Developer Guide): a header row of field names,
relationship fields as ``Account.External_Id__c``, ``#N/A`` to set a field to null (an empty
cell leaves it unchanged on update), booleans as ``true``/``false``, dates as ``YYYY-MM-DD``
and date-times as ISO 8601 with a time zone, one of six column delimiters and LF or CRLF line
endings.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import math
from collections.abc import Iterator, Mapping
from typing import Any

from .exceptions import ConfigurationError

__all__ = [
    "COLUMN_DELIMITERS",
    "LINE_ENDINGS",
    "NULL",
    "RecordEncoder",
    "RowSplitter",
    "UnknownColumnError",
    "complete_rows",
    "parse_rows",
]

#: Bulk API 2.0 ``columnDelimiter`` values and the character each stands for.
COLUMN_DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
#: Bulk API 2.0 ``lineEnding`` values and the characters each stands for.
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
#: The cell that sets a field to null.
NULL = "#N/A"


def _cell(value: object, where: str) -> str:
    """One value as Salesforce's CSV cell text."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if value is None:
        return NULL
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ConfigurationError(f"{where} is {value!r}; Salesforce numbers are finite")
        text = repr(value)
        # 1e+20 is not a Salesforce number; write it out in full.
        return format(decimal.Decimal(text), "f") if "e" in text else text
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ConfigurationError(f"{where} is {value!r}; Salesforce numbers are finite")
        return format(value, "f")
    if isinstance(value, dt.datetime):
        if value.utcoffset() is None:
            raise ConfigurationError(
                f"{where} is a naive datetime; give it a time zone (e.g. "
                "datetime.now(timezone.utc)) so Salesforce stores the instant you mean"
            )
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    raise ConfigurationError(
        f"{where} is a {type(value).__name__}; Bulk CSV cells are str, int, float, Decimal, "
        "bool, date, aware datetime or None (null); a relationship is a dict such as "
        "{'Account': {'External_Id__c': 'A-1'}}"
    )


class UnknownColumnError(ConfigurationError):
    """A record has a field that is not among the job's columns."""


def _flatten(record: Mapping[str, Any], prefix: str, out: dict[str, Any], where: str) -> None:
    """``{"Account": {"Ext__c": "A-1"}}`` → ``{"Account.Ext__c": "A-1"}`` (Bulk's column names)."""
    for key, value in record.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"{where} has a field name that is not a non-empty string")
        name = prefix + key
        if isinstance(value, Mapping):
            _flatten(value, name + ".", out, where)
        else:
            out[name] = value


class RecordEncoder:
    """Turns records (dicts) into CSV rows of a fixed set of columns.

    Args:
        columns: The header, e.g. ``["Name", "Account.External_Id__c"]``; matched to a
            record's field names case-insensitively, as Salesforce matches them.
    """

    __slots__ = ("_index", "_width", "columns")

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self._index = {name.lower(): i for i, name in enumerate(columns)}
        self._width = len(columns)
        if len(self._index) != len(columns):
            raise ConfigurationError(
                f"the columns {columns!r} name a field twice (field names ignore case)"
            )

    @staticmethod
    def columns_of(record: object, where: str) -> list[str]:
        """The columns of one record (nested dicts become ``Parent.Field`` columns)."""
        flat: dict[str, Any] = {}
        _flatten(_mapping(record, where), "", flat, where)
        if not flat:
            raise ConfigurationError(f"{where} has no fields; give at least one")
        return list(flat)

    def position(self, name: str) -> int:
        """The index of column ``name`` (any case)."""
        return self._index[name.lower()]

    def row(self, record: object, where: str) -> list[str]:
        """One record as cells in column order; an absent field is an empty cell (not set).

        Raises:
            ConfigurationError: Not a mapping, a field not among the columns, or a value
                that has no CSV form.
        """
        record = _mapping(record, where)
        cells = [""] * self._width
        index = self._index
        for key, value in record.items():
            if isinstance(value, Mapping):
                flat: dict[str, Any] = {}
                _flatten({key: value}, "", flat, where)
                items: Any = flat.items()
            else:
                items = ((key, value),)
            for name, cell in items:
                position = index.get(name.lower()) if isinstance(name, str) else None
                if position is None:
                    raise UnknownColumnError(
                        f"{where} has the field {name!r}, which is not among the columns "
                        f"{self.columns!r} given; add it to columns="
                    )
                cells[position] = _cell(cell, f"{where}[{name!r}]")
        return cells


def _mapping(record: object, where: str) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        raise ConfigurationError(
            f"{where} must be a mapping of field names to values; got {type(record).__name__}"
        )
    return record


def writer(stream: io.StringIO, delimiter: str, line_ending: str) -> Any:
    """A ``csv.writer`` that writes Salesforce's CSV (quotes only where needed)."""
    return csv.writer(
        stream,
        delimiter=COLUMN_DELIMITERS[delimiter],
        lineterminator=LINE_ENDINGS[line_ending],
        quoting=csv.QUOTE_MINIMAL,
        doublequote=True,
        strict=True,
    )


def complete_rows(buffer: bytes | bytearray, quote: int = 0x22) -> int:
    """Where the complete CSV rows of ``buffer`` end: just after the last row's newline.

    A newline ends a row only outside quotes: where the count of ``"`` before it is even
    (an escaped quote, ``""``, counts twice). ``0`` when no row is complete yet.
    """
    end = len(buffer)
    while True:
        newline = buffer.rfind(b"\n", 0, end)
        if newline < 0:
            return 0
        if buffer.count(quote, 0, newline) % 2 == 0:
            return newline + 1
        end = newline


class RowSplitter:
    """Cuts a byte stream of CSV into runs of complete rows (for streaming parse and split)."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        """Add ``chunk``; return the complete rows now available (maybe ``b""``)."""
        pending = self._pending
        pending += chunk
        cut = complete_rows(pending)
        if not cut:
            return b""
        rows = bytes(pending[:cut])
        del pending[:cut]
        return rows

    def rest(self) -> bytes:
        """What is left at the end of the stream (a last row without a newline)."""
        rest = bytes(self._pending)
        self._pending.clear()
        return rest


def parse_rows(data: bytes, delimiter: str = "COMMA") -> Iterator[list[str]]:
    """Parse complete CSV rows (UTF-8; any line ending).

    Raises:
        ConfigurationError: The data is not UTF-8 or not well-formed CSV.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"CSV data is not UTF-8 (byte {exc.start}); Bulk API 2.0 reads UTF-8 only"
        ) from None
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=COLUMN_DELIMITERS[delimiter], strict=True
    )
    try:
        yield from reader
    except csv.Error as exc:
        raise ConfigurationError(f"CSV data is not well-formed: {exc}") from None
