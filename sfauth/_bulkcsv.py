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
import enum
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
    "quoted_newlines",
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
    if isinstance(value, enum.Enum):  # its value, not "Status.ACTIVE"
        return _cell(value.value, where)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):  # bool cannot be subclassed: only int subclasses get here
        return int.__repr__(value)
    if isinstance(value, float):  # numpy.float64 too
        number = float(value)
        if not math.isfinite(number):
            raise ConfigurationError(f"{where} is {value!r}; Salesforce numbers are finite")
        text = repr(number)
        # 1e+20 is not a Salesforce number; write it out in full.
        return format(decimal.Decimal(text), "f") if "e" in text else text
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


#: Value types that are one cell (not a relationship dict), for a fast check per value.
_SCALARS = frozenset({str, int, float, bool, type(None)})


class RecordEncoder:
    """Turns records (dicts) into CSV rows of a fixed set of columns.

    Args:
        columns: The header, e.g. ``["Name", "Account.External_Id__c"]``; matched to a
            record's field names case-insensitively, as Salesforce matches them.
    """

    __slots__ = ("_index", "_positions", "_shape", "_width", "carriage_return", "columns")

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self._index = {name.lower(): i for i, name in enumerate(columns)}
        self._width = len(columns)
        #: Whether the last row has a value with a carriage return (to be quoted).
        self.carriage_return = False
        #: The last record shape seen (its keys) and their columns, for the fast path.
        self._shape: tuple[object, ...] = ()
        self._positions: list[int] = []
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

    def row(self, record: object, index: int) -> list[str | None]:
        """Record number ``index`` as cells in column order; ``None`` for an absent field.

        Raises:
            UnknownColumnError: A field not among the columns.
            ConfigurationError: Not a mapping, a field named twice (in any case), or a value
                that has no CSV form (the message names the record by ``index``).
        """
        # Fast path: records of one shape (the same keys, in the same order), plain values.
        if type(record) is dict:
            keys = tuple(record)
            positions = self._positions if keys == self._shape else self._learn(keys)
            if positions is not None:
                cells: list[str | None] = [None] * self._width
                carriage_return = False
                for position, value in zip(positions, record.values(), strict=True):
                    kind = type(value)
                    if kind is str:
                        if "\r" in value:
                            carriage_return = True
                        cells[position] = value
                    elif value is None:
                        cells[position] = NULL
                    elif kind is int:
                        cells[position] = str(value)
                    elif kind is bool:
                        cells[position] = "true" if value else "false"
                    elif kind is float and math.isfinite(value):
                        text = repr(value)
                        cells[position] = text if "e" not in text else _cell(value, "")
                    else:  # relationships, other types, errors: the general path
                        return self._row(record, f"record {index}")
                self.carriage_return = carriage_return
                return cells
        return self._row(record, f"record {index}")

    def _learn(self, keys: tuple[object, ...]) -> list[int] | None:
        """The columns of a record shape; ``None`` when the general path must look at it."""
        index = self._index
        positions = [index.get(key.lower(), -1) if isinstance(key, str) else -1 for key in keys]
        if -1 in positions or len(set(positions)) != len(positions):
            return None  # unknown, relationship or repeated keys
        self._shape, self._positions = keys, positions
        return positions

    def _row(self, record: object, where: str) -> list[str | None]:
        """The general path: any mapping, relationship dicts, and every error."""
        record = _mapping(record, where)
        cells: list[str | None] = [None] * self._width
        index = self._index
        carriage_return = False
        for key, value in record.items():
            if type(value) in _SCALARS or not isinstance(value, Mapping):
                items: Any = ((key, value),)
            else:
                flat: dict[str, Any] = {}
                _flatten({key: value}, "", flat, where)
                items = flat.items()
            for name, value_ in items:
                position = index.get(name.lower()) if isinstance(name, str) else None
                if position is None:
                    raise UnknownColumnError(
                        f"{where} has the field {name!r}, which is not among the columns "
                        f"{self.columns!r} given; add it to columns="
                    )
                if cells[position] is not None:
                    raise ConfigurationError(
                        f"{where} names the field {self.columns[position]!r} twice (field "
                        "names ignore case); keep one"
                    )
                text = _cell(value_, f"{where}[{name!r}]")
                carriage_return = carriage_return or "\r" in text
                cells[position] = text
        self.carriage_return = carriage_return
        return cells


def _mapping(record: object, where: str) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        raise ConfigurationError(
            f"{where} must be a mapping of field names to values; got {type(record).__name__}"
        )
    return record


def writer(
    stream: io.StringIO, delimiter: str, line_ending: str, *, quote_all: bool = False
) -> Any:
    """A ``csv.writer`` of Salesforce's CSV: quotes where needed, or around every field."""
    return csv.writer(
        stream,
        delimiter=COLUMN_DELIMITERS[delimiter],
        lineterminator=LINE_ENDINGS[line_ending],
        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
        doublequote=True,
        strict=True,
    )


def complete_rows(buffer: bytes | bytearray, start: int = 0, parity: int = 0) -> int:
    """Where the complete CSV rows of ``buffer`` end: just after the last row's newline.

    A newline ends a row only outside quotes, where the count of ``"`` before it is even (an
    escaped quote, ``""``, counts twice). Scans backward from the end, counting each byte
    once: linear, however many newlines a quoted field holds.

    Args:
        buffer: CSV bytes.
        start: Where to look from; no row ends before it.
        parity: The count of ``"`` before ``start``, modulo 2.

    Returns:
        The index after the last complete row's newline, or ``0`` when there is none.
    """
    end = len(buffer)
    after = 0  # quotes from the candidate newline to the end
    total = (parity + buffer.count(b'"', start)) & 1
    while True:
        newline = buffer.rfind(b"\n", start, end)
        if newline < 0:
            return 0
        after += buffer.count(b'"', newline, end)
        if (total - after) & 1 == 0:
            return newline + 1
        end = newline


def quoted_newlines(rows: bytes) -> int:
    """Newlines inside quoted fields of complete rows (they do not end a record)."""
    if b'"' not in rows:
        return 0
    return sum(part.count(b"\n") for part in rows.split(b'"')[1::2])


class RowSplitter:
    """Cuts a byte stream of CSV into runs of complete rows, in linear time."""

    __slots__ = ("_parity", "_pending", "_scanned")

    def __init__(self) -> None:
        self._pending = bytearray()
        self._scanned = 0  # bytes of _pending already known to hold no row end
        self._parity = 0  # quotes in _pending[:_scanned], modulo 2

    @property
    def inside_quotes(self) -> bool:
        """Whether what is pending ends inside a quoted field."""
        return bool((self._parity + self._pending.count(b'"', self._scanned)) & 1)

    def feed(self, chunk: bytes) -> bytes:
        """Add ``chunk``; return the complete rows now available (maybe ``b""``)."""
        pending = self._pending
        scanned = self._scanned
        pending += chunk
        cut = complete_rows(pending, scanned, self._parity)
        if not cut:
            self._parity = (self._parity + pending.count(b'"', scanned)) & 1
            self._scanned = len(pending)
            return b""
        rows = bytes(pending[:cut])
        del pending[:cut]
        self._scanned = 0  # a row ended at the cut: the rest starts outside quotes
        self._parity = 0
        return rows

    def rest(self) -> bytes:
        """What is left at the end of the stream (a last row without a newline)."""
        rest = bytes(self._pending)
        self._pending.clear()
        self._scanned = self._parity = 0
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
