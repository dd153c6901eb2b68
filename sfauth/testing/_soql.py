"""SOQL for the emulator: a lark grammar, checked against the schema, evaluated in memory.

A query text is parsed once (:func:`parse`, cached per distinct text), compiled once per schema
generation against the :class:`~sfauth.testing._schema.Schema` (unknown objects, fields and
relationships and mistyped filter values are refused with Salesforce's error codes and messages,
with the row and column of the offending token), then run against the record store.

Supported, with Salesforce's semantics ("SOQL and SOSL Reference"): field lists with parent
relationship paths (nested results with ``attributes``, ``null`` parents), child relationship
subqueries, ``WHERE`` with ``AND``/``OR``/``NOT`` and parentheses, ``= != <> < <= > >=``,
``LIKE``, ``IN``/``NOT IN`` (values or a semi-join subquery), ``INCLUDES``/``EXCLUDES``,
``null``, date and datetime literals and the relative date literals (``TODAY``,
``LAST_N_DAYS:n``, ``THIS_QUARTER``, …; weeks start on Sunday, the emulator's users are in
UTC), ``ORDER BY`` with ``ASC``/``DESC`` and ``NULLS FIRST|LAST``, ``LIMIT``, ``OFFSET``,
``COUNT()``, ``COUNT``/``COUNT_DISTINCT``/``SUM``/``AVG``/``MIN``/``MAX`` with aliases,
``GROUP BY`` and ``HAVING`` (``AggregateResult`` records), and ``FOR UPDATE|VIEW|REFERENCE``,
``WITH SECURITY_ENFORCED|USER_MODE|SYSTEM_MODE`` (accepted, no effect).

Valid SOQL this emulator does not implement (``TYPEOF``, ``ROLLUP``/``CUBE``, ``FIELDS()``,
``toLabel()``/``FORMAT()``/``convertCurrency()``, date functions, location functions, fiscal date
literals, ``WITH DATA CATEGORY``, ``USING SCOPE``) is answered with the emulator's own error code
``EMULATOR_UNSUPPORTED`` naming the construct: never a made-up Salesforce error, never a silently
wrong result.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import lark
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from sfauth.testing._ids import canonical_id
from sfauth.testing._schema import NUMBER_TYPES, TEXT_TYPES, FieldSchema, Schema, SObjectSchema
from sfauth.testing._store import RecordStore, format_datetime, parse_date, parse_datetime

__all__ = ["CompiledQuery", "QueryResult", "SoqlError", "compile_query", "parse"]

Record = dict[str, object]
Row = dict[str, object]

_GRAMMAR = r"""
start: query

query: "SELECT"i select_list "FROM"i from_object where? with_clause? group_by? having? \
       order_by? limit? offset? for_clause?

select_list: select_item ("," select_item)*
?select_item: path alias?                 -> select_field
            | call alias?                 -> select_call
            | "(" query ")"               -> select_subquery
alias: NAME

from_object: NAME NAME?

where: "WHERE"i condition
having: "HAVING"i condition

?condition: term
          | term (AND term)+              -> and_
          | term (OR term)+               -> or_
?term: "(" condition ")"
     | NOT term                           -> not_
     | comparison
comparison: operand OPERATOR value                      -> compare
          | operand LIKE value                          -> like
          | operand IN "(" values ")"                   -> in_
          | operand NOT IN "(" values ")"               -> not_in
          | operand IN "(" query ")"                    -> in_query
          | operand NOT IN "(" query ")"                -> not_in_query
          | operand INCLUDES "(" values ")"             -> includes
          | operand EXCLUDES "(" values ")"             -> excludes
?operand: path | call
values: value ("," value)*
value: STRING                                          -> string
     | NUMBER                                          -> number
     | DATETIME                                        -> datetime
     | DATE                                            -> date
     | NAME                                            -> word
     | NAME ":" NUMBER                                 -> word_n

with_clause: "WITH"i NAME
group_by: "GROUP"i "BY"i operand ("," operand)*
order_by: "ORDER"i "BY"i order_item ("," order_item)*
order_item: operand (ASC | DESC)? (NULLS (FIRST | LAST))?
limit: "LIMIT"i NUMBER
offset: "OFFSET"i NUMBER
for_clause: "FOR"i NAME (NAME)?

call: NAME "(" [arg ("," arg)*] ")"
?arg: path | call | value_arg
value_arg: STRING | NUMBER
path: NAME ("." NAME)*

AND: "AND"i
OR: "OR"i
NOT: "NOT"i
LIKE: "LIKE"i
IN: "IN"i
INCLUDES: "INCLUDES"i
EXCLUDES: "EXCLUDES"i
NULLS: "NULLS"i
ASC: "ASC"i
DESC: "DESC"i
FIRST: "FIRST"i
LAST: "LAST"i
OPERATOR: "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
STRING: /'(?:[^'\\]|\\.)*'/
DATETIME.3: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})/
DATE.2: /\d{4}-\d{2}-\d{2}(?![\dT])/
NUMBER: /[+-]?(\d+(\.\d*)?|\.\d+)/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
%ignore /\s+/
"""


def _cache_file() -> str | bool:
    """Where lark may keep the built parse tables: a directory only this user can write.

    Building the LALR tables takes about 0.3 s; lark's cache (a pickle, checked against a hash
    of the grammar, its options and the lark version) loads in a few milliseconds. Lark's own
    default location is shared ``/tmp``, where another user could plant a pickle, so the cache
    lives under ``$XDG_CACHE_HOME/sfauth`` (``~/.cache/sfauth``) when that directory is this
    user's alone, and is not used otherwise.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(base, "sfauth")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory)
    except OSError:
        return False
    getuid = getattr(os, "getuid", None)
    if getuid is not None and (info.st_uid != getuid() or info.st_mode & 0o022):
        return False
    # One file per lark and Python version: venvs with different ones do not overwrite each
    # other's (lark also checks a hash of the grammar, options and versions before using it).
    python = "{}{}".format(*sys.version_info[:2])
    return os.path.join(directory, f"soql-grammar-lark{lark.__version__}-py{python}.cache")


@functools.cache
def _parser() -> Lark:
    """The SOQL parser, built on the first query (importing the emulator does not build it)."""
    return Lark(
        _GRAMMAR,
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
        cache=_cache_file(),
    )


_AGGREGATES = frozenset({"count", "count_distinct", "sum", "avg", "min", "max"})
_UNSUPPORTED_FUNCTIONS = {
    "fields": "FIELDS()",
    "tolabel": "toLabel()",
    "format": "FORMAT()",
    "convertcurrency": "convertCurrency()",
    "converttimezone": "convertTimezone()",
    "distance": "DISTANCE()",
    "geolocation": "GEOLOCATION()",
    "grouping": "GROUPING()",
    "rollup": "GROUP BY ROLLUP",
    "cube": "GROUP BY CUBE",
}
_DATE_FUNCTIONS = frozenset(
    {
        "calendar_month",
        "calendar_quarter",
        "calendar_year",
        "day_in_month",
        "day_in_week",
        "day_in_year",
        "day_only",
        "fiscal_month",
        "fiscal_quarter",
        "fiscal_year",
        "hour_in_day",
        "week_in_month",
        "week_in_year",
    }
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
#: The largest LIMIT (a 32-bit int) and OFFSET ("OFFSET", SOQL and SOSL Reference) allowed.
_MAX_LIMIT = 2**31 - 1
_MAX_OFFSET = 2000
_STRIPPED = re.compile(r"'(?:[^'\\]|\\.)*'")
_PRECHECKS = (
    (re.compile(r"\bTYPEOF\b", re.I), "TYPEOF"),
    (re.compile(r"\bWITH\s+DATA\s+CATEGORY\b", re.I), "WITH DATA CATEGORY"),
    (re.compile(r"\bUSING\s+SCOPE\b", re.I), "USING SCOPE"),
    (re.compile(r"\bWITH\s+RECORDVISIBILITYCONTEXT\b", re.I), "WITH RecordVisibilityContext"),
    (re.compile(r"\bUPDATE\s+(TRACKING|VIEWSTAT)\b", re.I), "UPDATE TRACKING/VIEWSTAT"),
)
_WITH = frozenset({"security_enforced", "user_mode", "system_mode"})
_FOR = frozenset({"update", "view", "reference"})


class SoqlError(ValueError):
    """A query Salesforce (or the emulator) refuses: ``error_code`` and Salesforce's message.

    Attributes:
        error_code: ``MALFORMED_QUERY``, ``INVALID_FIELD``, ``INVALID_TYPE``,
            ``INVALID_QUERY_FILTER_OPERATOR`` or the emulator's own ``EMULATOR_UNSUPPORTED``.
        message: The message, with the query line, a caret and ``ERROR at Row:r:Column:c``
            where Salesforce gives them.
    """

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def _at(text: str, line: int, column: int, message: str) -> str:
    """Salesforce's positioned message: the query line, a caret, the row and column, the text."""
    lines = text.split("\n")
    source = lines[line - 1] if 0 < line <= len(lines) else text
    caret = " " * max(column - 1, 0) + "^"
    return f"\n{source}\n{caret}\nERROR at Row:{line}:Column:{column}\n{message}"


# ---------------------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Pos:
    """Row and column (1-based) of a token in the query text."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class PathNode:
    """A field or a relationship path, as written: ``Account.Owner.Name``."""

    parts: tuple[str, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class CallNode:
    """A function call as written: ``COUNT(Id)``, ``toLabel(Status)``."""

    name: str
    args: tuple[object, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ValueNode:
    """A literal: ``kind`` is string, number, date, datetime, word (true/TODAY/…) or word_n."""

    kind: str
    value: object
    pos: Pos
    n: int = 0


@dataclass(frozen=True, slots=True)
class CondNode:
    """A WHERE/HAVING node: ``and``/``or``/``not`` of children, or an operator on an operand."""

    op: str
    children: tuple[CondNode, ...] = ()
    operand: PathNode | CallNode | None = None
    values: tuple[ValueNode, ...] = ()
    subquery: QueryNode | None = None
    pos: Pos = Pos(1, 1)


@dataclass(frozen=True, slots=True)
class SelectNode:
    """One SELECT item: a path, a call, or a child subquery; with its alias."""

    item: PathNode | CallNode | QueryNode
    alias: str | None


@dataclass(frozen=True, slots=True)
class OrderNode:
    """One ORDER BY key."""

    operand: PathNode | CallNode
    descending: bool
    nulls_first: bool


@dataclass(frozen=True, slots=True)
class QueryNode:
    """A parsed (not yet checked) query or subquery."""

    select: tuple[SelectNode, ...]
    sobject: str
    sobject_pos: Pos
    alias: str | None
    where: CondNode | None
    group_by: tuple[PathNode | CallNode, ...]
    having: CondNode | None
    order_by: tuple[OrderNode, ...]
    limit: int | None
    offset: int | None
    pos: Pos


def _pos(item: Token | Tree[Token]) -> Pos:
    if isinstance(item, Token):
        return Pos(item.line or 1, item.column or 1)
    return Pos(getattr(item.meta, "line", 1), getattr(item.meta, "column", 1))


def _unescape(token: Token) -> str:
    r"""A string literal's value: SOQL's escapes (any case), ``\%``/``\_`` kept for LIKE."""

    def escape(match: re.Match[str]) -> str:
        char = match.group(1)
        if char in "%_":
            return "\\" + char
        value = _ESCAPES.get(char.lower())
        if value is None:
            raise _Malformed(f"Invalid string literal: unknown escape \\{char}", _pos(token))
        return value

    return re.sub(r"\\(.)", escape, str(token)[1:-1], flags=re.DOTALL)


class _Build(Transformer[Token, object]):
    """Turn lark's tree into the frozen AST above."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def start(self, items: list[object]) -> object:
        return items[0]

    @v_args(meta=True)
    def query(self, meta: object, items: list[object]) -> QueryNode:
        parts: dict[str, object] = {}
        select: tuple[SelectNode, ...] = ()
        sobject, alias, sobject_pos = "", None, Pos(1, 1)
        for item in items:
            if isinstance(item, tuple) and item and item[0] == "select":
                select = item[1]
            elif isinstance(item, tuple) and item and item[0] == "from":
                _, sobject, alias, sobject_pos = item
            elif isinstance(item, tuple):
                parts[item[0]] = item[1]
        return QueryNode(
            select=select,
            sobject=sobject,
            sobject_pos=sobject_pos,
            alias=alias,
            where=parts.get("where"),  # type: ignore[arg-type]
            group_by=parts.get("group_by", ()),  # type: ignore[arg-type]
            having=parts.get("having"),  # type: ignore[arg-type]
            order_by=parts.get("order_by", ()),  # type: ignore[arg-type]
            limit=parts.get("limit"),  # type: ignore[arg-type]
            offset=parts.get("offset"),  # type: ignore[arg-type]
            pos=Pos(getattr(meta, "line", 1), getattr(meta, "column", 1)),
        )

    def select_list(self, items: list[SelectNode]) -> tuple[str, tuple[SelectNode, ...]]:
        return "select", tuple(items)

    def select_field(self, items: list[object]) -> SelectNode:
        return SelectNode(items[0], items[1] if len(items) > 1 else None)  # type: ignore[arg-type]

    select_call = select_field

    def select_subquery(self, items: list[QueryNode]) -> SelectNode:
        return SelectNode(items[0], None)

    def alias(self, items: list[Token]) -> str:
        return str(items[0])

    def from_object(self, items: list[Token]) -> tuple[str, str, str | None, Pos]:
        return "from", str(items[0]), str(items[1]) if len(items) > 1 else None, _pos(items[0])

    def where(self, items: list[CondNode]) -> tuple[str, CondNode]:
        return "where", items[0]

    def having(self, items: list[CondNode]) -> tuple[str, CondNode]:
        return "having", items[0]

    def and_(self, items: list[object]) -> CondNode:
        children = tuple(i for i in items if isinstance(i, CondNode))
        return CondNode("and", children)

    def or_(self, items: list[object]) -> CondNode:
        children = tuple(i for i in items if isinstance(i, CondNode))
        return CondNode("or", children)

    def not_(self, items: list[object]) -> CondNode:
        return CondNode("not", (items[1],))  # type: ignore[arg-type]

    def _comparison(self, op: str, items: list[object], pos: Pos | None = None) -> CondNode:
        operand = items[0]
        assert isinstance(operand, (PathNode, CallNode))
        rest = [i for i in items[1:] if not isinstance(i, Token)]
        values: tuple[ValueNode, ...] = ()
        subquery = None
        if rest and isinstance(rest[0], QueryNode):
            subquery = rest[0]
        elif rest and isinstance(rest[0], tuple):
            values = rest[0]
        elif rest:
            values = (rest[0],)  # type: ignore[assignment]
        return CondNode(op, operand=operand, values=values, subquery=subquery, pos=operand.pos)

    def compare(self, items: list[object]) -> CondNode:
        operator = str(items[1])
        return self._comparison("!=" if operator == "<>" else operator, items)

    def like(self, items: list[object]) -> CondNode:
        return self._comparison("like", items)

    def in_(self, items: list[object]) -> CondNode:
        return self._comparison("in", items)

    def not_in(self, items: list[object]) -> CondNode:
        return self._comparison("not in", items)

    def in_query(self, items: list[object]) -> CondNode:
        return self._comparison("in", items)

    def not_in_query(self, items: list[object]) -> CondNode:
        return self._comparison("not in", items)

    def includes(self, items: list[object]) -> CondNode:
        return self._comparison("includes", items)

    def excludes(self, items: list[object]) -> CondNode:
        return self._comparison("excludes", items)

    def values(self, items: list[ValueNode]) -> tuple[ValueNode, ...]:
        return tuple(items)

    def string(self, items: list[Token]) -> ValueNode:
        return ValueNode("string", _unescape(items[0]), _pos(items[0]))

    def number(self, items: list[Token]) -> ValueNode:
        text = str(items[0])
        try:
            value: float | int = float(text) if "." in text else int(text)
        except (ValueError, OverflowError):  # past int's digit limit, or float's range
            raise _Malformed(f"number out of range: {text[:40]}", _pos(items[0])) from None
        return ValueNode("number", value, _pos(items[0]))

    def datetime(self, items: list[Token]) -> ValueNode:
        return ValueNode("datetime", str(items[0]), _pos(items[0]))

    def date(self, items: list[Token]) -> ValueNode:
        return ValueNode("date", str(items[0]), _pos(items[0]))

    def word(self, items: list[Token]) -> ValueNode:
        return ValueNode("word", str(items[0]), _pos(items[0]))

    def word_n(self, items: list[Token]) -> ValueNode:
        number = str(items[1])
        if not number.isdigit():
            raise _Malformed(f"unexpected token: '{number}'", _pos(items[1]))
        return ValueNode("word_n", str(items[0]), _pos(items[0]), int(number))

    def with_clause(self, items: list[Token]) -> tuple[str, None]:
        if str(items[0]).lower() not in _WITH:
            raise _Malformed(f"unexpected token: '{items[0]}'", _pos(items[0]))
        return "with", None

    def group_by(self, items: list[object]) -> tuple[str, tuple[object, ...]]:
        return "group_by", tuple(items)

    def order_by(self, items: list[OrderNode]) -> tuple[str, tuple[OrderNode, ...]]:
        return "order_by", tuple(items)

    def order_item(self, items: list[object]) -> OrderNode:
        operand = items[0]
        assert isinstance(operand, (PathNode, CallNode))
        words = [str(i).lower() for i in items[1:]]
        descending = "desc" in words
        if "first" in words:
            nulls_first = True
        elif "last" in words:
            nulls_first = False
        else:
            nulls_first = not descending  # nulls sort as the lowest value
        return OrderNode(operand, descending, nulls_first)

    def limit(self, items: list[Token]) -> tuple[str, int]:
        return "limit", self._count(items[0], _MAX_LIMIT)

    def offset(self, items: list[Token]) -> tuple[str, int]:
        count = self._count(items[0], _MAX_LIMIT)
        if count > _MAX_OFFSET:
            raise _OutOfRange(f"Maximum SOQL offset allowed is {_MAX_OFFSET}", _pos(items[0]))
        return "offset", count

    @staticmethod
    def _count(token: Token, most: int) -> int:
        text = str(token)
        if not text.isdigit() or len(text) > 10 or int(text) > most:
            raise _Malformed(f"unexpected token: '{text[:40]}'", _pos(token))
        return int(text)

    def for_clause(self, items: list[Token]) -> tuple[str, None]:
        if str(items[0]).lower() not in _FOR or len(items) > 1:
            raise _Malformed(f"unexpected token: '{items[-1]}'", _pos(items[-1]))
        return "for", None

    @v_args(meta=True)
    def call(self, meta: object, items: list[object]) -> CallNode:
        name = items[0]
        assert isinstance(name, Token)
        return CallNode(str(name), tuple(i for i in items[1:] if i is not None), _pos(name))

    def value_arg(self, items: list[Token]) -> ValueNode:
        token = items[0]
        if token.type == "STRING":
            return ValueNode("string", _unescape(token), _pos(token))
        return ValueNode("number", float(str(token)), _pos(token))

    def path(self, items: list[Token]) -> PathNode:
        return PathNode(tuple(str(i) for i in items), _pos(items[0]))


class _Malformed(Exception):
    def __init__(self, message: str, pos: Pos) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


class _OutOfRange(_Malformed):
    """A number past Salesforce's limit (``NUMBER_OUTSIDE_VALID_RANGE``)."""


class _Unsupported(Exception):
    def __init__(self, construct: str, pos: Pos) -> None:
        super().__init__(construct)
        self.construct = construct
        self.pos = pos


def _unsupported(text: str, construct: str, pos: Pos | None = None) -> SoqlError:
    message = (
        f"the sfauth emulator does not implement {construct} (valid SOQL that a real org "
        "answers); see the emulator section of sfauth's README for what is supported"
    )
    if pos is not None:
        message = _at(text, pos.line, pos.column, message)
    return SoqlError("EMULATOR_UNSUPPORTED", message)


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> QueryNode:
    """Parse a SOQL statement into its syntax tree (cached per distinct text).

    Args:
        text: The SOQL statement.

    Returns:
        The parsed query, not yet checked against a schema.

    Raises:
        SoqlError: ``MALFORMED_QUERY`` with Salesforce's positioned message, or
            ``EMULATOR_UNSUPPORTED`` for valid SOQL the emulator does not implement.
    """
    stripped = _STRIPPED.sub("''", text)
    for pattern, construct in _PRECHECKS:
        found = pattern.search(stripped)
        if found:
            # The stripped text keeps every line break, so positions carry over.
            line = stripped.count("\n", 0, found.start()) + 1
            column = found.start() - (stripped.rfind("\n", 0, found.start()) + 1) + 1
            return _raise(_unsupported(text, construct, Pos(line, column)))
    try:
        tree = _parser().parse(text)
        built = _Build(text).transform(tree)
    except UnexpectedEOF:
        lines = text.split("\n")
        raise SoqlError(
            "MALFORMED_QUERY",
            _at(text, len(lines), len(lines[-1]) + 1, "unexpected token: '<EOF>'"),
        ) from None
    except UnexpectedToken as exc:
        token = exc.token
        shown = "<EOF>" if token.type == "$END" else str(token)
        end = token.type == "$END" or not isinstance(exc.line, int) or exc.line < 1
        line = len(text.split("\n")) if end else int(exc.line)
        column = len(text.split("\n")[-1]) + 1 if end else int(exc.column)
        raise SoqlError(
            "MALFORMED_QUERY", _at(text, line, column, f"unexpected token: '{shown}'")
        ) from None
    except UnexpectedCharacters as exc:
        position = exc.pos_in_stream or 0
        char = text[position] if position < len(text) else "<EOF>"
        raise SoqlError(
            "MALFORMED_QUERY", _at(text, exc.line, exc.column, f"unexpected token: '{char}'")
        ) from None
    except UnexpectedInput as exc:  # pragma: no cover - the subclasses above are exhaustive
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: {exc}") from None
    except RecursionError:
        raise SoqlError("MALFORMED_QUERY", "the query is nested too deeply") from None
    except Exception as exc:  # a transformer callback raised (lark wraps it in VisitError)
        cause = exc.__context__ if exc.__context__ is not None else exc
        cause = getattr(exc, "orig_exc", cause)
        if isinstance(cause, _Unsupported):
            raise _unsupported(text, cause.construct, cause.pos) from None
        if isinstance(cause, _OutOfRange):
            raise SoqlError(
                "NUMBER_OUTSIDE_VALID_RANGE",
                _at(text, cause.pos.line, cause.pos.column, cause.message),
            ) from None
        if isinstance(cause, RecursionError):
            raise SoqlError("MALFORMED_QUERY", "the query is nested too deeply") from None
        if isinstance(cause, _Malformed):
            raise SoqlError(
                "MALFORMED_QUERY", _at(text, cause.pos.line, cause.pos.column, cause.message)
            ) from None
        raise
    assert isinstance(built, QueryNode)
    return built


def _raise(error: SoqlError) -> QueryNode:
    raise error


# ------------------------------------------------------------------------------- date literals


def _add_months(day: dt.date, months: int) -> dt.date:
    """The first of the month ``months`` after ``day``'s, clamped to the calendar's ends."""
    index = day.year * 12 + day.month - 1 + months
    if index < 12:  # before year 1
        return dt.date.min
    if index >= 12 * 10000:  # after year 9999: an open end
        return dt.date.max
    return dt.date(index // 12, index % 12 + 1, 1)


def _add_days(day: dt.date, days: int) -> dt.date:
    """``day`` plus ``days``, clamped to the calendar's ends.

    A literal reaching past them covers everything on that side.
    """
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        return dt.date.min if days < 0 else dt.date.max


def _date_range(word: str, n: int, today: dt.date) -> tuple[dt.date, dt.date]:
    """The [start, end) dates of a relative date literal ("Date Formats and Date Literals").

    Args:
        word: The literal, lower-case (``"last_n_days"``).
        n: Its number (``LAST_N_DAYS:n``); 0 for the literals without one.
        today: Today in the org's time zone (UTC here); weeks start on Sunday.
    """
    if word in ("yesterday", "today", "tomorrow"):
        start = _add_days(today, {"yesterday": -1, "today": 0, "tomorrow": 1}[word])
        return start, _add_days(start, 1)
    if word == "last_90_days":
        return _add_days(today, -90), _add_days(today, 1)
    if word == "next_90_days":
        return _add_days(today, 1), _add_days(today, 91)
    if word in ("last_n_days", "next_n_days", "n_days_ago"):
        if word == "last_n_days":  # includes today
            return _add_days(today, -n), _add_days(today, 1)
        if word == "next_n_days":  # starts tomorrow
            return _add_days(today, 1), _add_days(today, n + 1)
        return _add_days(today, -n), _add_days(today, 1 - n)
    # Weeks, months, quarters and years: whole periods around the current one.
    months = 1 if "month" in word else 3 if "quarter" in word else 12
    if "week" in word:
        current = _add_days(today, -((today.weekday() + 1) % 7))

        def shift(day: dt.date, periods: int) -> dt.date:
            return _add_days(day, 7 * periods)

    else:
        current = dt.date(today.year, (today.month - 1) // months * months + 1, 1)

        def shift(day: dt.date, periods: int) -> dt.date:
            return _add_months(day, months * periods)

    if word.startswith("last_n_"):
        return shift(current, -n), current
    if word.startswith("next_n_"):
        return shift(current, 1), shift(current, n + 1)
    if word.endswith("_ago"):
        return shift(current, -n), shift(current, 1 - n)
    offset = {"last": -1, "this": 0, "next": 1}[word.partition("_")[0]]
    return shift(current, offset), shift(current, offset + 1)


_FIXED_LITERALS = frozenset(
    [
        "yesterday",
        "today",
        "tomorrow",
        "last_week",
        "this_week",
        "next_week",
        "last_month",
        "this_month",
        "next_month",
        "last_90_days",
        "next_90_days",
        "last_quarter",
        "this_quarter",
        "next_quarter",
        "last_year",
        "this_year",
        "next_year",
    ]
)
_N_LITERALS = frozenset(
    [
        "last_n_days",
        "next_n_days",
        "n_days_ago",
        "last_n_weeks",
        "next_n_weeks",
        "n_weeks_ago",
        "last_n_months",
        "next_n_months",
        "n_months_ago",
        "last_n_quarters",
        "next_n_quarters",
        "n_quarters_ago",
        "last_n_years",
        "next_n_years",
        "n_years_ago",
    ]
)


# ------------------------------------------------------------------------------- compilation


@dataclass(slots=True)
class Context:
    """What one execution needs: the store, whether deleted rows count, and today's date."""

    store: RecordStore
    deleted: bool
    _today: dt.date | None = None
    #: Work done once per execution (date ranges, semi-join members, children by parent),
    #: keyed by the id of the compiled piece that needs it (alive for the whole execution).
    memo: dict[int, Any] = field(default_factory=dict)

    @property
    def today(self) -> dt.date:
        """Today in UTC by the store's clock, read once per execution and only if needed."""
        if self._today is None:
            self._today = self.store.now().astimezone(dt.UTC).date()
        return self._today


Getter = Callable[[Record, Context], object]
Predicate = Callable[[Record, Context], bool]


@dataclass(slots=True)
class _Path:
    """A checked path: the relationship fields to follow, then the field to read."""

    steps: tuple[FieldSchema, ...]  # the lookup fields, in order
    names: tuple[str, ...]  # canonical relationship names, in order
    field: FieldSchema
    key: str  # the output key of an aggregate query (the field's own name)
    #: ``What.Type``: the object type of a polymorphic relationship's record, not a field.
    type_of: bool = False
    #: Lower-case names of the objects an id or reference value of this path points at.
    points_at: frozenset[str] = frozenset()

    def get(self, record: Record, context: Context) -> object:
        current: Record | None = record
        sobject = ""
        for step in self.steps:
            parent_id = current.get(step.name) if current is not None else None
            if parent_id is None:
                return None
            found = context.store.by_id(str(parent_id))
            if found is None:
                return None
            sobject, current = found[0].name, found[1]
        if current is None:
            return None
        return sobject if self.type_of else current.get(self.field.name)


@dataclass(slots=True)
class _Aggregate:
    function: str
    path: _Path | None  # None for COUNT() and COUNT(Id)-less forms
    key: str

    def compute(self, rows: Sequence[Record], context: Context) -> object:
        if self.path is None:
            return len(rows)
        values = [self.path.get(r, context) for r in rows]
        present = [v for v in values if v is not None]
        kind = self.path.field.type
        if self.function == "count":
            return len(present)
        if self.function == "count_distinct":
            return len({str(v).lower() if kind in _CASELESS else v for v in present})
        if not present:
            return None
        if self.function == "sum":
            total = sum(present)  # type: ignore[arg-type]
            return int(total) if kind in ("int", "long") else float(total)
        if self.function == "avg":
            return float(sum(present)) / len(present)  # type: ignore[arg-type]
        key = cast(Callable[[object], Any], _sort_key(kind))
        return (min if self.function == "min" else max)(present, key=key)


#: Text types compared without regard to case (ids are case-sensitive: ``…a`` is not ``…A``).
_CASELESS = TEXT_TYPES - {"id", "reference"}


def _sort_key(kind: str) -> Callable[[object], object]:
    if kind in _CASELESS:
        return lambda v: str(v).lower()
    if kind == "boolean":
        return lambda v: bool(v)
    return lambda v: v


def _order_key(definition: FieldSchema) -> Callable[[object], object]:
    """How ORDER BY ranks values: picklists in their defined order, text ignoring case."""
    if definition.type == "picklist" and definition.picklist_values:
        ranks = {v.lower(): i for i, v in enumerate(definition.picklist_values)}
        after = len(ranks)
        # Values the picklist does not define sort after the defined ones, alphabetically.
        return lambda v: (ranks.get(str(v).lower(), after), str(v).lower())
    return _sort_key(definition.type)


@dataclass(slots=True)
class CompiledQuery:
    """A query checked against one schema generation, ready to run any number of times."""

    sobject: SObjectSchema
    select: list[tuple[str, object]]  # ("path", _Path) | ("child", _Child) | ("agg", _Aggregate)
    where: Predicate | None
    order: list[tuple[Getter, bool, bool, Callable[[object], object]]]
    limit: int | None
    offset: int | None
    aggregate: bool
    count_only: bool
    group_by: list[_Path]
    having: Callable[[dict[str, object]], bool] | None
    group_order: list[tuple[str, bool, bool, Callable[[object], object]]]

    def run(self, store: RecordStore, version: str, *, deleted: bool = False) -> QueryResult:
        """Run the query.

        Args:
            store: The records.
            version: API version for record URLs (``"62.0"``).
            deleted: Include records in the recycle bin (``queryAll``).

        Returns:
            The records and ``totalSize``.
        """
        context = Context(store, deleted)
        rows = self._rows(context)
        if self.count_only:
            total = len(rows)
            if self.offset:
                total = max(total - self.offset, 0)
            if self.limit is not None:
                total = min(total, self.limit)
            return QueryResult(total, [])
        if self.aggregate:
            records = self._groups(rows, context)
        else:
            if self.order:
                rows = _sorted(rows, [(_bind(g, context), d, n, k) for g, d, n, k in self.order])
            rows = self._slice(rows)
            records = [self.project(r, context, version) for r in rows]
        return QueryResult(len(records), records)

    def _rows(self, context: Context) -> list[Record]:
        rows = context.store.rows(self.sobject, deleted=context.deleted)
        where = self.where
        if where is not None:
            rows = (r for r in rows if where(r, context))
        if self.limit is not None and not self.order and not self.aggregate:
            # Unordered with a LIMIT: read only as far as the page needs.
            return list(itertools.islice(rows, (self.offset or 0) + self.limit))
        return list(rows)

    def _slice(self, rows: list[Any]) -> list[Any]:
        if self.offset:
            rows = rows[self.offset :]
        if self.limit is not None:
            rows = rows[: self.limit]
        return rows

    def project(self, record: Record, context: Context, version: str) -> Record:
        """Return one result record: ``attributes``, then the selected fields in order."""
        out: Record = {"attributes": _attributes(self.sobject.name, record, version)}
        for kind, item in self.select:
            if kind == "path":
                assert isinstance(item, _Path)
                _put_path(out, item, record, context, version)
            else:
                assert isinstance(item, _Child)
                out[item.relationship] = item.run(record, context, version)
        return out

    def _groups(self, rows: list[Record], context: Context) -> list[Record]:
        groups: dict[tuple[object, ...], list[Record]] = {}
        for row in rows:
            group = tuple(_group_value(p, row, context) for p in self.group_by)
            groups.setdefault(group, []).append(row)
        if not self.group_by and not groups:
            groups[()] = []
        views: list[tuple[dict[str, object], Record]] = []
        for members in groups.values():
            # The view holds every aggregate by signature and every grouped field by key, for
            # HAVING and ORDER BY; the record holds what was selected, in select order.
            view: dict[str, object] = {
                signature: aggregate.compute(members, context)
                for signature, aggregate in self.aggregates.items()
            }
            for path in self.group_by:
                view[_signature(path)] = path.get(members[0], context) if members else None
            if self.having is not None and not self.having(view):
                continue
            result: Record = {"attributes": {"type": "AggregateResult"}}
            for signature, key in self.outputs:
                result[key] = view[signature]
            views.append((view, result))
        if self.group_order:
            views = _sorted(
                views,
                [
                    (_view_key(signature), descending, nulls_first, kind)
                    for signature, descending, nulls_first, kind in self.group_order
                ],
            )
        return [result for _, result in self._slice(views)]

    #: Aggregate queries: every aggregate computed per group, by signature.
    aggregates: dict[str, _Aggregate] = field(default_factory=dict)
    #: Aggregate queries: (signature, output key) of each selected item, in select order.
    outputs: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Child:
    relationship: str
    field: FieldSchema
    query: CompiledQuery

    def run(self, parent: Record, context: Context, version: str) -> object:
        query = self.query
        key = id(self)
        by_parent: dict[object, list[Record]] | None = context.memo.get(key)
        if by_parent is None:
            # Children grouped by parent once per execution, not scanned once per parent.
            by_parent = context.memo[key] = {}
            for row in context.store.rows(query.sobject, deleted=context.deleted):
                if query.where is None or query.where(row, context):
                    by_parent.setdefault(row.get(self.field.name), []).append(row)
        rows = by_parent.get(parent["Id"], [])
        if query.order:
            rows = _sorted(rows, [(_bind(g, context), d, n, k) for g, d, n, k in query.order])
        rows = query._slice(rows)
        if not rows:
            return None
        records = [query.project(r, context, version) for r in rows]
        return {"totalSize": len(records), "done": True, "records": records}


@dataclass(frozen=True, slots=True)
class QueryResult:
    """What a query returns: ``totalSize`` and the records (empty for ``COUNT()``)."""

    total_size: int
    records: list[Record]


def _attributes(name: str, record: Record, version: str) -> dict[str, object]:
    return {"type": name, "url": f"/services/data/v{version}/sobjects/{name}/{record['Id']}"}


def _put_path(out: Record, path: _Path, record: Record, context: Context, version: str) -> None:
    """Write a path's value into a result record, nesting parents as Salesforce does."""
    target: Record = out
    current: Record = record
    current_type = ""
    for step, name in zip(path.steps, path.names, strict=True):
        existing = target.get(name, ...)
        if existing is None:
            return  # an earlier path found this parent null
        parent_id = current.get(step.name)
        found = context.store.by_id(str(parent_id)) if parent_id is not None else None
        if found is None:
            target[name] = None
            return
        sobject, parent = found
        if existing is ...:
            existing = target[name] = {"attributes": _attributes(sobject.name, parent, version)}
        assert isinstance(existing, dict)
        target, current = existing, parent
        current_type = sobject.name
    target[path.field.name] = current_type if path.type_of else current.get(path.field.name)


def _bind(getter: Getter, context: Context) -> Callable[[Record], object]:
    return lambda record: getter(record, context)


def _view_key(signature: str) -> Callable[[tuple[dict[str, object], Record]], object]:
    return lambda view: view[0][signature]


def _group_value(path: _Path, row: Record, context: Context) -> object:
    value = path.get(row, context)
    return str(value).lower() if isinstance(value, str) and path.field.type in _CASELESS else value


def _sorted(
    rows: list[Any],
    keys: list[tuple[Callable[[Any], object], bool, bool, Callable[[object], object]]],
) -> list[Any]:
    """Sort by several keys (stable), each with its direction and null placement."""
    result = list(rows)
    for getter, descending, nulls_first, normal in reversed(keys):
        present = [r for r in result if getter(r) is not None]
        nulls = [r for r in result if getter(r) is None]
        present.sort(key=lambda r: normal(getter(r)), reverse=descending)
        result = nulls + present if nulls_first else present + nulls
    return result


def _signature(item: object) -> str:
    """A canonical, case-insensitive key of a path or aggregate within one query."""
    if isinstance(item, _Path):
        return ".".join((*item.names, item.field.name)).lower()
    if isinstance(item, _Aggregate):
        inner = "" if item.path is None else _signature(item.path)
        return f"{item.function}({inner})"
    raise TypeError(item)


_TYPE_NAMES = {
    "int": "integer",
    "long": "long",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "boolean": "boolean",
    "date": "date",
    "datetime": "dateTime",
    "time": "time",
}


@dataclass(slots=True)
class _Literal:
    """A filter value checked against its field: a constant, a date range, or null."""

    value: object = None
    word: str | None = None  # a relative date literal, resolved per execution
    n: int = 0
    kind: str = ""

    def resolve(self, context: Context) -> tuple[object, object] | None:
        """``(start, end)`` of a relative date literal in the field's stored form."""
        if self.word is None:
            return None
        key = id(self)
        if key not in context.memo:
            span = _date_range(self.word, self.n, context.today)
            if self.kind == "date":
                context.memo[key] = (span[0].isoformat(), span[1].isoformat())
            else:
                start, end = (dt.datetime.combine(d, dt.time(), dt.UTC) for d in span)
                context.memo[key] = (format_datetime(start), format_datetime(end))
        return context.memo[key]  # type: ignore[no-any-return]


def _normal(kind: str) -> Callable[[object], object]:
    """How a stored value of a field type is compared (text case-insensitively)."""
    if kind == "multipicklist":
        return lambda v: frozenset(p.strip().lower() for p in str(v).split(";"))
    if kind in TEXT_TYPES and kind not in ("id", "reference"):
        return lambda v: str(v).lower()
    return lambda v: v


class _Compiler:
    """Check a parsed query against the schema and build its evaluators."""

    def __init__(self, schema: Schema, text: str) -> None:
        self.schema = schema
        self.text = text
        self._semi_joins = 0

    # ------------------------------------------------------------------ errors

    def _error(self, code: str, pos: Pos, message: str) -> SoqlError:
        return SoqlError(code, _at(self.text, pos.line, pos.column, message))

    def _no_column(self, name: str, sobject: SObjectSchema, pos: Pos) -> SoqlError:
        return self._error(
            "INVALID_FIELD",
            pos,
            f"No such column '{name}' on entity '{sobject.name}'. If you are attempting to use "
            "a custom field, be sure to append the '__c' after the custom field name. Please "
            "reference your WSDL or the describe call for the appropriate names.",
        )

    # ------------------------------------------------------------------ pieces

    def path(self, node: PathNode, sobject: SObjectSchema, alias: str | None) -> _Path:
        parts = list(node.parts)
        if len(parts) > 1 and (
            (alias and parts[0].lower() == alias.lower())
            or (
                parts[0].lower() == sobject.name.lower() and sobject.relationship(parts[0]) is None
            )
        ):
            parts = parts[1:]
        current = sobject
        steps: list[FieldSchema] = []
        names: list[str] = []
        for part in parts[:-1]:
            lookup = current.relationship(part)
            target = None
            if lookup is not None:
                target = next(
                    (self.schema.get(t) for t in lookup.reference_to if self.schema.get(t)), None
                )
            if lookup is None or target is None:
                raise self._error(
                    "INVALID_FIELD",
                    node.pos,
                    f"Didn't understand relationship '{part}' in field path. If you are "
                    "attempting to use a custom relationship, be sure to append the '__r' after "
                    "the custom relationship name. Please reference your WSDL or the describe "
                    "call for the appropriate names.",
                )
            if len(lookup.reference_to) > 1:
                # A polymorphic relationship (What, Who, Owner of a queue…) leads to Salesforce's
                # "Name" entity: Id, Name and Type (the record's object) only; TYPEOF reaches
                # the rest ("Understanding Relationship Fields and Polymorphic Fields").
                steps.append(lookup)
                names.append(str(lookup.relationship_name))
                return self._polymorphic(parts, len(steps), tuple(steps), tuple(names), node)
            steps.append(lookup)
            names.append(str(lookup.relationship_name))
            current = target
        definition = current.field(parts[-1])
        if definition is None:
            raise self._no_column(parts[-1], current, node.pos)
        if definition.type == "id":
            points_at = frozenset({current.name.lower()})
        else:
            points_at = frozenset(t.lower() for t in definition.reference_to)
        return _Path(tuple(steps), tuple(names), definition, definition.name, False, points_at)

    def _polymorphic(
        self,
        parts: list[str],
        depth: int,
        steps: tuple[FieldSchema, ...],
        names: tuple[str, ...],
        node: PathNode,
    ) -> _Path:
        rest = parts[depth:]
        if len(rest) != 1:
            raise self._error(
                "INVALID_FIELD",
                node.pos,
                f"Didn't understand relationship '{rest[0]}' in field path. If you are "
                "attempting to use a custom relationship, be sure to append the '__r' after "
                "the custom relationship name. Please reference your WSDL or the describe "
                "call for the appropriate names.",
            )
        wanted = rest[0].lower()
        if wanted not in ("id", "name", "type"):
            raise self._error(
                "INVALID_FIELD",
                node.pos,
                f"No such column '{rest[0]}' on entity 'Name'. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
        kinds = {"id": "id", "name": "string", "type": "string"}
        definition = FieldSchema(wanted.capitalize() if wanted != "id" else "Id", kinds[wanted])
        return _Path(steps, names, definition, definition.name, type_of=wanted == "type")

    def call(self, node: CallNode, sobject: SObjectSchema, alias: str | None) -> _Aggregate:
        name = node.name.lower()
        if name in _UNSUPPORTED_FUNCTIONS:
            raise _unsupported(self.text, _UNSUPPORTED_FUNCTIONS[name], node.pos)
        if name in _DATE_FUNCTIONS:
            raise _unsupported(self.text, f"the date function {node.name.upper()}()", node.pos)
        if name not in _AGGREGATES:
            raise self._error("MALFORMED_QUERY", node.pos, f"unexpected token: '{node.name}'")
        if not node.args:
            if name != "count":
                raise self._error("MALFORMED_QUERY", node.pos, "unexpected token: ')'")
            return _Aggregate("count", None, "")
        if len(node.args) != 1 or not isinstance(node.args[0], PathNode):
            raise self._error(
                "MALFORMED_QUERY", node.pos, f"{node.name} takes exactly one field name"
            )
        path = self.path(node.args[0], sobject, alias)
        kind = path.field.type
        if name in ("sum", "avg") and kind not in NUMBER_TYPES:
            raise self._error(
                "MALFORMED_QUERY",
                node.args[0].pos,
                f"field {path.field.name} does not support aggregate operator {node.name.upper()}",
            )
        return _Aggregate(name, path, "")

    def literal(self, value: ValueNode, target: FieldSchema, pos: Pos) -> _Literal:
        kind = target.type
        wanted = _TYPE_NAMES.get(kind, "string")

        def mismatch() -> SoqlError:
            quoted = (
                "should be enclosed in quotes"
                if wanted == "string"
                else ("should not be enclosed in quotes")
            )
            return self._error(
                "INVALID_FIELD",
                pos,
                f"value of filter criterion for field '{target.name}' must be of type {wanted} "
                f"and {quoted}",
            )

        if value.kind in ("word", "word_n"):
            word = str(value.value).lower()
            if value.kind == "word" and word == "null":
                return _Literal(None)
            if value.kind == "word" and word in ("true", "false"):
                if kind != "boolean":
                    raise mismatch()
                return _Literal(word == "true")
            if "fiscal" in word:
                raise _unsupported(self.text, f"the fiscal date literal {value.value}", value.pos)
            known = word in (_N_LITERALS if value.kind == "word_n" else _FIXED_LITERALS)
            if not known:
                raise self._error(
                    "MALFORMED_QUERY", value.pos, f"unexpected token: '{value.value}'"
                )
            if kind not in ("date", "datetime"):
                raise mismatch()
            return _Literal(word=word, n=value.n, kind=kind)
        if kind in ("id", "reference"):
            if value.kind != "string":
                raise mismatch()
            text = str(value.value)
            canonical = canonical_id(text)
            if canonical is None:
                raise self._error(
                    "INVALID_QUERY_FILTER_OPERATOR", pos, f"invalid ID field: {text}"
                )
            return _Literal(canonical)
        if kind in NUMBER_TYPES:
            if value.kind != "number":
                raise mismatch()
            return _Literal(value.value)
        if kind == "boolean":
            raise mismatch()
        if kind == "date":
            if value.kind != "date":
                raise mismatch()
            if parse_date(str(value.value)) is None:
                raise self._error("MALFORMED_QUERY", value.pos, f"invalid date: {value.value}")
            return _Literal(value.value)
        if kind == "datetime":
            if value.kind != "datetime":
                raise mismatch()
            parsed = parse_datetime(str(value.value))
            if parsed is None:
                raise self._error(
                    "MALFORMED_QUERY", value.pos, f"unexpected token: '{value.value}'"
                )
            return _Literal(format_datetime(parsed))
        if value.kind != "string":
            raise mismatch()
        return _Literal(_normal(kind)(value.value))

    # ------------------------------------------------------------------ conditions

    def condition(
        self,
        node: CondNode,
        operand_of: Callable[[PathNode | CallNode], tuple[Getter, FieldSchema]],
        points_at: Callable[[PathNode | CallNode], frozenset[str]] = lambda _: frozenset(),
    ) -> Predicate:
        if node.op in ("and", "or", "not"):
            children = [self.condition(c, operand_of, points_at) for c in node.children]
            if node.op == "and":
                return lambda r, c: all(p(r, c) for p in children)
            if node.op == "or":
                return lambda r, c: any(p(r, c) for p in children)
            only = children[0]
            return lambda r, c: not only(r, c)
        assert node.operand is not None
        getter, target = operand_of(node.operand)
        normal = _normal(target.type)
        op = node.op
        if node.subquery is not None:
            return self._semi_join(node, getter, points_at(node.operand), op == "not in")
        if op in ("includes", "excludes"):
            if target.type != "multipicklist":
                raise self._error(
                    "INVALID_FIELD",
                    node.pos,
                    "includes or excludes operator only valid on multipicklist field",
                )
            wanted = [
                frozenset(p.strip().lower() for p in str(v.value).split(";"))
                for v in node.values
                if v.kind == "string"
            ]

            def includes(r: Record, c: Context) -> bool:
                value = getter(r, c)
                if value is None:
                    return False
                have = normal(value)
                return any(w <= have for w in wanted)  # type: ignore[operator]

            if op == "includes":
                return includes
            return lambda r, c: not includes(r, c)
        if op == "like":
            if target.type not in TEXT_TYPES or target.type in (
                "id",
                "reference",
                "multipicklist",
            ):
                raise self._error(
                    "INVALID_FIELD",
                    node.pos,
                    f"invalid operator on {_TYPE_NAMES.get(target.type, target.type)} field: "
                    f"{target.name}",
                )
            if node.values[0].kind != "string":
                raise self._error(
                    "MALFORMED_QUERY", node.values[0].pos, "LIKE needs a quoted pattern"
                )
            pattern = _Like(str(node.values[0].value))

            def like(r: Record, c: Context) -> bool:
                value = getter(r, c)
                return value is not None and pattern.match(str(value))

            return like
        literals = [self.literal(v, target, node.pos) for v in node.values]
        if op in ("in", "not in"):
            constants = {lit.value for lit in literals if lit.word is None}
            spans = [lit for lit in literals if lit.word is not None]
            has_null = None in constants

            def member(r: Record, c: Context) -> bool:
                value: Any = getter(r, c)
                if value is None:
                    return has_null
                if normal(value) in constants:
                    return True
                for span in spans:
                    start, end = span.resolve(c)  # type: ignore[misc]
                    if start <= value < end:
                        return True
                return False

            if op == "in":
                return member
            return lambda r, c: not member(r, c)
        literal = literals[0]
        if literal.word is not None:
            return _range_predicate(op, getter, literal)
        expected = literal.value
        if expected is None:
            if op == "=":
                return lambda r, c: getter(r, c) is None
            if op == "!=":
                return lambda r, c: getter(r, c) is not None
            return lambda r, c: False
        if op == "!=":
            return lambda r, c: (v := getter(r, c)) is None or normal(v) != expected
        compare = _OPERATORS[op]
        return lambda r, c: (v := getter(r, c)) is not None and compare(normal(v), expected)

    def _semi_join(
        self, node: CondNode, getter: Getter, left: frozenset[str], negate: bool
    ) -> Predicate:
        assert node.subquery is not None
        if self._semi_joins:
            raise self._error(
                "MALFORMED_QUERY",
                node.subquery.pos,
                "Nesting of semi join sub-selects is not supported",
            )
        self._semi_joins += 1
        try:
            inner = self.query(node.subquery, child_of=None, semi_join=True)
        finally:
            self._semi_joins -= 1
        ((_, item),) = inner.select
        assert isinstance(item, _Path)
        if not left & item.points_at:
            raise self._error(
                "INVALID_FIELD",
                node.pos,
                "The selected field in the subquery and the left operand field in the where "
                "expression in the outer query must point to the same object type.",
            )

        def members(c: Context) -> frozenset[object]:
            key = id(inner)
            if key not in c.memo:
                values = {item.get(r, c) for r in inner._rows(Context(c.store, False, c._today))}
                c.memo[key] = frozenset(values - {None})
            return c.memo[key]  # type: ignore[no-any-return]

        def predicate(r: Record, c: Context) -> bool:
            value = getter(r, c)
            found = value is not None and value in members(c)
            return not found if negate else found

        return predicate

    # ------------------------------------------------------------------ queries

    def query(
        self,
        node: QueryNode,
        *,
        child_of: SObjectSchema | None,
        semi_join: bool = False,
    ) -> CompiledQuery:
        if child_of is not None:
            relation = child_of.child(node.sobject)
            sobject = self.schema.get(relation.child_sobject) if relation else None
            if relation is None or sobject is None:
                raise self._error(
                    "INVALID_TYPE",
                    node.sobject_pos,
                    f"Didn't understand relationship '{node.sobject}' in FROM part of query call. "
                    "If you are attempting to use a custom relationship, be sure to append the "
                    "'__r' after the custom relationship name. Please reference your WSDL or the "
                    "describe call for the appropriate names.",
                )
        else:
            found = self.schema.get(node.sobject)
            if found is None:
                raise self._error(
                    "INVALID_TYPE",
                    node.sobject_pos,
                    f"sObject type '{node.sobject}' is not supported. If you are attempting to "
                    "use a custom object, be sure to append the '__c' after the entity name. "
                    "Please reference your WSDL or the describe call for the appropriate names.",
                )
            sobject = found
        alias = node.alias
        calls = [s for s in node.select if isinstance(s.item, CallNode)]
        for operand in [
            *(s.item for s in calls),
            *(o.operand for o in node.order_by),
            *node.group_by,
        ]:
            if isinstance(operand, CallNode) and operand.name.lower() not in _AGGREGATES:
                self.call(operand, sobject, alias)  # unsupported or unknown: raises
        aggregate = bool(calls) or bool(node.group_by)
        count_only = (
            len(node.select) == 1
            and isinstance(node.select[0].item, CallNode)
            and (node.select[0].item.name.lower() == "count" and not node.select[0].item.args)
        )
        if (
            any(
                isinstance(s.item, CallNode) and s.item.name.lower() == "count" and not s.item.args
                for s in node.select
            )
            and not count_only
        ):
            raise self._error(
                "MALFORMED_QUERY",
                node.pos,
                "COUNT() must be the only element in the SELECT list",
            )
        if count_only and (node.group_by or node.order_by or node.having):
            # "COUNT() and COUNT(fieldName)", SOQL reference: none of these go with COUNT().
            clause = "GROUP BY" if node.group_by else "ORDER BY" if node.order_by else "HAVING"
            raise self._error("MALFORMED_QUERY", node.pos, f"COUNT() cannot be used with {clause}")
        plain = lambda o: (  # noqa: E731 - a local accessor
            self._plain_operand(o, sobject, alias)
        )
        where = (
            self.condition(node.where, plain, lambda o: self._points_at(o, sobject, alias))
            if node.where is not None
            else None
        )
        compiled = CompiledQuery(
            sobject=sobject,
            select=[],
            where=where,
            order=[],
            limit=node.limit,
            offset=node.offset,
            aggregate=aggregate and not count_only,
            count_only=count_only,
            group_by=[],
            having=None,
            group_order=[],
        )
        if count_only:
            return compiled
        if aggregate:
            self._aggregate(node, compiled, sobject, alias)
            return compiled
        if node.having is not None:
            raise self._error("MALFORMED_QUERY", node.pos, "HAVING needs GROUP BY")
        seen: set[str] = set()
        for item in node.select:
            if isinstance(item.item, QueryNode):
                if child_of is not None or semi_join:
                    raise _unsupported(self.text, "nested child subqueries", item.item.pos)
                if item.item.offset is not None:
                    # "OFFSET": not allowed in most subqueries (MALFORMED_QUERY).
                    raise self._error(
                        "MALFORMED_QUERY", item.item.pos, "OFFSET is not allowed in a subquery"
                    )
                inner = self.query(item.item, child_of=sobject)
                relation = sobject.child(item.item.sobject)
                assert relation is not None
                lookup = inner.sobject.field(relation.field)
                assert lookup is not None
                compiled.select.append(
                    ("child", _Child(relation.relationship_name, lookup, inner))
                )
                continue
            assert isinstance(item.item, PathNode)
            if item.alias is not None:
                raise self._error(
                    "MALFORMED_QUERY", item.item.pos, f"unexpected token: '{item.alias}'"
                )
            path = self.path(item.item, sobject, alias)
            signature = _signature(path)
            if signature in seen:
                raise self._error(
                    "MALFORMED_QUERY",
                    item.item.pos,
                    f"duplicate field selected: {'.'.join((*path.names, path.field.name))}",
                )
            seen.add(signature)
            compiled.select.append(("path", path))
        if semi_join:
            if len(compiled.select) != 1 or compiled.select[0][0] != "path":
                raise self._error(
                    "MALFORMED_QUERY", node.pos, "a semi-join subquery selects exactly one field"
                )
            only = compiled.select[0][1]
            assert isinstance(only, _Path)
            if only.field.type not in ("id", "reference") or only.steps:
                raise self._error(
                    "INVALID_FIELD",
                    node.pos,
                    "The selected field in the subquery and the left operand field in the where "
                    "expression in the outer query must point to the same object type.",
                )
        for order in node.order_by:
            if isinstance(order.operand, CallNode):
                raise self._error(
                    "MALFORMED_QUERY", order.operand.pos, "ORDER BY an aggregate needs GROUP BY"
                )
            path = self.path(order.operand, sobject, alias)
            if path.field.type == "multipicklist":
                raise self._error(
                    "INVALID_FIELD",
                    order.operand.pos,
                    f"field '{path.field.name}' can not be sorted in a query call",
                )
            compiled.order.append(
                (path.get, order.descending, order.nulls_first, _order_key(path.field))
            )
        return compiled

    def _points_at(
        self, operand: PathNode | CallNode, sobject: SObjectSchema, alias: str | None
    ) -> frozenset[str]:
        if isinstance(operand, CallNode):
            return frozenset()
        return self.path(operand, sobject, alias).points_at

    def _plain_operand(
        self, operand: PathNode | CallNode, sobject: SObjectSchema, alias: str | None
    ) -> tuple[Getter, FieldSchema]:
        if isinstance(operand, CallNode):
            name = operand.name.lower()
            if name in _DATE_FUNCTIONS or name in _UNSUPPORTED_FUNCTIONS:
                self.call(operand, sobject, alias)  # raises EMULATOR_UNSUPPORTED
            raise self._error(
                "MALFORMED_QUERY",
                operand.pos,
                "Aggregate functions are not allowed in a WHERE clause; use HAVING",
            )
        path = self.path(operand, sobject, alias)
        return path.get, path.field

    def _aggregate(
        self, node: QueryNode, compiled: CompiledQuery, sobject: SObjectSchema, alias: str | None
    ) -> None:
        for operand in node.group_by:
            if isinstance(operand, CallNode):
                self.call(operand, sobject, alias)  # ROLLUP/CUBE/date functions: unsupported
                raise self._error("MALFORMED_QUERY", operand.pos, "cannot group by an aggregate")
            path = self.path(operand, sobject, alias)
            compiled.group_by.append(path)
        grouped = {_signature(p) for p in compiled.group_by}
        numbered = 0
        for item in node.select:
            if isinstance(item.item, QueryNode):
                raise self._error(
                    "MALFORMED_QUERY", item.item.pos, "child subqueries cannot be aggregated"
                )
            if isinstance(item.item, CallNode):
                aggregate = self.call(item.item, sobject, alias)
                signature = _signature(aggregate)
                compiled.aggregates[signature] = aggregate
                if item.alias is None:
                    key = f"expr{numbered}"
                    numbered += 1
                else:
                    key = item.alias
                compiled.outputs.append((signature, key))
                continue
            path = self.path(item.item, sobject, alias)
            signature = _signature(path)
            if signature not in grouped:
                raise self._error(
                    "MALFORMED_QUERY",
                    item.item.pos,
                    f"Field must be grouped or aggregated: {path.field.name}",
                )
            compiled.outputs.append((signature, item.alias or path.field.name))
        keys = [key.lower() for _, key in compiled.outputs]
        for index, key in enumerate(keys):
            if key in keys[:index]:
                raise self._error(
                    "MALFORMED_QUERY", node.pos, f"duplicate alias: {compiled.outputs[index][1]}"
                )
        aliases = {key.lower(): signature for signature, key in compiled.outputs}

        def operand_of(operand: PathNode | CallNode) -> tuple[str, FieldSchema]:
            if isinstance(operand, CallNode):
                aggregate = self.call(operand, sobject, alias)
                signature = _signature(aggregate)
                compiled.aggregates.setdefault(signature, aggregate)
                if aggregate.function in ("count", "count_distinct") or aggregate.path is None:
                    return signature, FieldSchema("expr", "int")
                return signature, aggregate.path.field
            if len(operand.parts) == 1 and operand.parts[0].lower() in aliases:
                signature = aliases[operand.parts[0].lower()]
                aggregate_found = compiled.aggregates.get(signature)
                if aggregate_found is not None:
                    if aggregate_found.function in ("count", "count_distinct"):
                        return signature, FieldSchema("expr", "int")
                    assert aggregate_found.path is not None
                    return signature, aggregate_found.path.field
            path = self.path(operand, sobject, alias)
            signature = _signature(path)
            if signature not in grouped:
                raise self._error(
                    "MALFORMED_QUERY",
                    operand.pos,
                    f"Field must be grouped or aggregated: {path.field.name}",
                )
            return signature, path.field

        if node.having is not None:

            def view_operand(operand: PathNode | CallNode) -> tuple[Getter, FieldSchema]:
                signature, definition = operand_of(operand)
                # In HAVING, the "record" is the group's view: values by signature.
                return (lambda view, _context: view.get(signature)), definition

            having = self.condition(node.having, view_operand)
            compiled.having = lambda view: having(view, None)  # type: ignore[arg-type]
        for order in node.order_by:
            signature, definition = operand_of(order.operand)
            compiled.group_order.append(
                (signature, order.descending, order.nulls_first, _order_key(definition))
            )


def _range_predicate(op: str, getter: Getter, literal: _Literal) -> Predicate:
    def predicate(r: Record, c: Context) -> bool:
        value: Any = getter(r, c)
        span = literal.resolve(c)
        assert span is not None
        start: Any = span[0]
        end: Any = span[1]
        if value is None:
            return op == "!="
        inside = bool(start <= value < end)
        if op == "=":
            return inside
        if op == "!=":
            return not inside
        if op == "<":
            return bool(value < start)
        if op == "<=":
            return bool(value < end)
        if op == ">":
            return bool(value >= end)
        return bool(value >= start)

    return predicate


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class _Like:
    r"""A LIKE pattern: ``%`` any run, ``_`` one character, ``\%``/``\_`` literal; any case.

    Matched segment by segment (the runs between ``%``s have fixed lengths, so the leftmost
    place for each is always right): linear in the value, whatever the pattern, where one
    regular expression of ``.*``s backtracks exponentially on ``'%a%a%a%a%a%a%a%b'``.
    """

    __slots__ = ("segments",)

    def __init__(self, pattern: str) -> None:
        parts: list[list[str]] = [[]]
        escaped = False
        for char in pattern:
            if escaped:
                parts[-1].append(re.escape(char))
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "%":
                parts.append([])
            elif char == "_":
                parts[-1].append(".")
            else:
                parts[-1].append(re.escape(char))
        if escaped:
            parts[-1].append(re.escape("\\"))
        flags = re.IGNORECASE | re.DOTALL
        self.segments = [re.compile("".join(p), flags) if p else None for p in parts]

    def match(self, value: str) -> bool:
        """Whether ``value`` matches the whole pattern."""
        first, *middle = self.segments
        if not middle:
            return (first is None and value == "") or (
                first is not None and first.fullmatch(value) is not None
            )
        *middle, last = middle
        position = 0
        if first is not None:
            found = first.match(value)
            if found is None:
                return False
            position = found.end()
        for segment in middle:
            if segment is not None:
                found = segment.search(value, position)
                if found is None:
                    return False
                position = found.end()
        if last is None:
            return True
        width = _width(last)
        start = len(value) - width
        return start >= position and last.fullmatch(value, start) is not None


def _width(segment: re.Pattern[str]) -> int:
    """Characters a segment of escaped literals and ``.`` matches."""
    return len(re.sub(r"\\.", "x", segment.pattern))


_COMPILED: dict[tuple[str, int, int], CompiledQuery] = {}


def compile_query(text: str, schema: Schema) -> CompiledQuery:
    """Parse (cached) and check a query against a schema (cached per schema generation).

    Args:
        text: The SOQL statement.
        schema: The schema to check it against.

    Returns:
        The compiled query.

    Raises:
        SoqlError: With Salesforce's error code and message (``MALFORMED_QUERY``,
            ``INVALID_FIELD``, ``INVALID_TYPE``, ``INVALID_QUERY_FILTER_OPERATOR``) or the
            emulator's ``EMULATOR_UNSUPPORTED``.
    """
    key = (text, schema.serial, schema.generation)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _Compiler(schema, text).query(parse(text), child_of=None)
        if len(_COMPILED) >= 1024:
            _COMPILED.clear()
        _COMPILED[key] = compiled
    return compiled
