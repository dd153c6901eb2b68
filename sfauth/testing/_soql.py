"""A deliberately small SOQL subset: parse once, then filter, sort and slice in memory.

Grammar (keywords are case-insensitive)::

    SELECT field [, field ...] FROM Object
        [WHERE cond [AND cond ...]]
        [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST] [, ...]]
        [LIMIT n] [OFFSET n]

    cond := field (= | != | <> | < | <= | > | >=) literal
          | field LIKE 'pattern'
          | field [NOT] IN (literal [, literal ...])
    literal := 'string' | number | TRUE | FALSE | NULL

String comparisons are case-insensitive, as in Salesforce.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Condition",
    "OrderItem",
    "Query",
    "SoqlError",
    "filter_records",
    "parse",
    "sort_records",
]

Literal = str | int | float | bool | None

_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*')
    | (?P<num>-?\d+(?:\.\d+)?)(?![A-Za-z_])
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_KEYWORDS = frozenset(
    {"select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc", "desc"}
    | {"nulls", "first", "last", "limit", "offset", "true", "false", "null"}
)


class SoqlError(ValueError):
    """The query is outside the supported subset or malformed (``MALFORMED_QUERY``)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``field op value`` term of a WHERE clause (all terms are ANDed)."""

    field: str
    op: str
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True, slots=True)
class OrderItem:
    """One ORDER BY key."""

    field: str
    descending: bool
    nulls_first: bool


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query."""

    fields: tuple[str, ...]
    sobject: str
    where: tuple[Condition, ...]
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    value: Literal


def _unescape(body: str) -> str:
    out: list[str] = []
    chars = iter(body)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append(_ESCAPES.get(nxt, nxt))
        else:
            out.append(char)
    return "".join(out)


def _tokenize(soql: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    end = len(soql.rstrip())
    while pos < end:
        match = _TOKEN_RE.match(soql, pos)
        if match is None or match.end() == pos:
            raise SoqlError(f"unexpected token: '{soql[pos:].strip()[:20]}'")
        pos = match.end()
        kind = match.lastgroup
        assert kind is not None
        text = match.group(kind)
        value: Literal = None
        if kind == "str":
            value = _unescape(text[1:-1])
        elif kind == "num":
            value = float(text) if "." in text else int(text)
        elif kind == "ident" and text.lower() in _KEYWORDS:
            kind = "kw"
            text = text.lower()
        tokens.append(_Token(kind, text, value))
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._pos = 0

    def peek(self) -> _Token | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def next(self) -> _Token:
        token = self.peek()
        if token is None:
            raise SoqlError("unexpected end of query")
        self._pos += 1
        return token

    def at_kw(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "kw" and token.text in words

    def expect_kw(self, word: str) -> None:
        token = self.next()
        if token.kind != "kw" or token.text != word:
            raise SoqlError(f"unexpected token: '{token.text}', expecting '{word.upper()}'")

    def expect_punct(self, char: str) -> None:
        token = self.next()
        if token.kind != "punct" or token.text != char:
            raise SoqlError(f"unexpected token: '{token.text}', expecting '{char}'")

    def ident(self) -> str:
        token = self.next()
        if token.kind != "ident":
            raise SoqlError(f"unexpected token: '{token.text}'")
        return token.text

    def integer(self) -> int:
        token = self.next()
        if token.kind != "num" or not isinstance(token.value, int) or token.value < 0:
            raise SoqlError(f"unexpected token: '{token.text}', expecting a non-negative integer")
        return token.value

    def literal(self) -> Literal:
        token = self.next()
        if token.kind in ("str", "num"):
            return token.value
        if token.kind == "kw" and token.text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token.text]
        raise SoqlError(f"unexpected token: '{token.text}'")

    def condition(self) -> Condition:
        field = self.ident()
        token = self.next()
        if token.kind == "op":
            return Condition(field, "!=" if token.text == "<>" else token.text, self.literal())
        if token.kind == "kw" and token.text == "like":
            value = self.literal()
            if not isinstance(value, str):
                raise SoqlError("LIKE requires a string pattern")
            return Condition(field, "like", value)
        negate = token.kind == "kw" and token.text == "not"
        if negate:
            token = self.next()
        if token.kind == "kw" and token.text == "in":
            self.expect_punct("(")
            values = [self.literal()]
            while self.comma():
                values.append(self.literal())
            self.expect_punct(")")
            return Condition(field, "not in" if negate else "in", tuple(values))
        raise SoqlError(f"unexpected token: '{token.text}'")

    def order_item(self) -> OrderItem:
        field = self.ident()
        descending = False
        if self.at_kw("asc", "desc"):
            descending = self.next().text == "desc"
        nulls_first = not descending
        if self.at_kw("nulls"):
            self.next()
            token = self.next()
            if token.kind != "kw" or token.text not in ("first", "last"):
                raise SoqlError(f"unexpected token: '{token.text}', expecting FIRST or LAST")
            nulls_first = token.text == "first"
        return OrderItem(field, descending, nulls_first)

    def comma(self) -> bool:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == ",":
            self._pos += 1
            return True
        return False

    def query(self) -> Query:
        self.expect_kw("select")
        fields = [self.ident()]
        while self.comma():
            fields.append(self.ident())
        self.expect_kw("from")
        sobject = self.ident()
        if "." in sobject:
            raise SoqlError(f"unexpected token: '{sobject}'")
        where: list[Condition] = []
        if self.at_kw("where"):
            self.next()
            where.append(self.condition())
            while self.at_kw("and"):
                self.next()
                where.append(self.condition())
            if self.at_kw("or"):
                raise SoqlError("OR is not supported by the emulator")
        order: list[OrderItem] = []
        if self.at_kw("order"):
            self.next()
            self.expect_kw("by")
            order.append(self.order_item())
            while self.comma():
                order.append(self.order_item())
        limit = offset = None
        if self.at_kw("limit"):
            self.next()
            limit = self.integer()
        if self.at_kw("offset"):
            self.next()
            offset = self.integer()
        token = self.peek()
        if token is not None:
            raise SoqlError(f"unexpected token: '{token.text}'")
        return Query(tuple(fields), sobject, tuple(where), tuple(order), limit, offset)


def parse(soql: str) -> Query:
    """Parse a query of the supported subset.

    Args:
        soql: The query text.

    Returns:
        The parsed query.

    Raises:
        SoqlError: If the text is not a query of the supported subset.
    """
    return _Parser(_tokenize(soql)).query()


def _equal(actual: object, expected: Literal) -> bool:
    if expected is None or actual is None:
        return actual is expected
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, str):
        return str(actual).casefold() == expected.casefold()
    if isinstance(actual, int | float):
        return actual == expected
    return str(actual) == str(expected)


def _compare(actual: object, op: str, expected: Literal) -> bool:
    cmp: int
    if isinstance(actual, str) and isinstance(expected, str):
        left, right = actual.casefold(), expected.casefold()
        cmp = (left > right) - (left < right)
    elif (
        isinstance(actual, int | float)
        and isinstance(expected, int | float)
        and not isinstance(actual, bool)
        and not isinstance(expected, bool)
    ):
        cmp = (actual > expected) - (actual < expected)
    else:
        return False
    if op == "<":
        return cmp < 0
    if op == "<=":
        return cmp <= 0
    if op == ">":
        return cmp > 0
    return cmp >= 0


def _like(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _predicate(condition: Condition, field: str) -> Callable[[Mapping[str, object]], bool]:
    op, expected = condition.op, condition.value
    if op == "like":
        assert isinstance(expected, str)
        regex = _like(expected)
        return lambda r: (
            isinstance(r.get(field), str) and regex.fullmatch(str(r[field])) is not None
        )
    if op in ("in", "not in"):
        assert isinstance(expected, tuple)
        options = expected
        wanted = op == "in"
        return lambda r: any(_equal(r.get(field), v) for v in options) is wanted
    assert not isinstance(expected, tuple)
    value: Literal = expected
    if op == "=":
        return lambda r: _equal(r.get(field), value)
    if op == "!=":
        return lambda r: not _equal(r.get(field), value)
    return lambda r: _compare(r.get(field), op, value)


def filter_records(
    records: Iterable[Mapping[str, object]],
    where: Sequence[Condition],
    canonical: Callable[[str], str],
) -> list[Mapping[str, object]]:
    """Return the records matching every condition.

    Args:
        records: Candidate records.
        where: Conditions, ANDed.
        canonical: Maps a field name as written in the query to the stored key.

    Returns:
        The matching records, in input order.
    """
    predicates = [_predicate(c, canonical(c.field)) for c in where]
    if not predicates:
        return list(records)
    return [r for r in records if all(p(r) for p in predicates)]


def _sort_key(value: object) -> tuple[int, float | str]:
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value.casefold())
    return (2, str(value))


def sort_records(
    records: list[Mapping[str, object]],
    order_by: Sequence[OrderItem],
    canonical: Callable[[str], str],
) -> list[Mapping[str, object]]:
    """Sort records by the ORDER BY keys (stable, Salesforce null placement).

    Args:
        records: Records to sort.
        order_by: Keys, most significant first.
        canonical: Maps a field name as written in the query to the stored key.

    Returns:
        A new sorted list.
    """
    result = list(records)
    for item in reversed(order_by):
        result = _sort_by(result, canonical(item.field), item)
    return result


def _sort_by(
    records: list[Mapping[str, object]], field: str, item: OrderItem
) -> list[Mapping[str, object]]:
    nulls = [r for r in records if r.get(field) is None]
    values = [r for r in records if r.get(field) is not None]
    values.sort(key=lambda r: _sort_key(r.get(field)), reverse=item.descending)
    return nulls + values if item.nulls_first else values + nulls
