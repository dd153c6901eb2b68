"""In-memory records checked against the schema, with Salesforce's write errors and system fields.

Writes are validated as the REST API validates them ("sObject Basic Information" and "Status
Codes and Error Responses", REST API Developer Guide): unknown fields ``INVALID_FIELD``, values
the JSON deserialiser cannot convert ``JSON_PARSER_ERROR``, values of the wrong kind for the field
``INVALID_TYPE_ON_FIELD_IN_RECORD``, read-only fields ``INVALID_FIELD_FOR_INSERT_UPDATE``, missing
required fields ``REQUIRED_FIELD_MISSING``, bad ids ``MALFORMED_ID``, deleted records
``ENTITY_IS_DELETED``. Deletes go to a recycle bin (``IsDeleted = true``) that ``queryAll`` sees.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import decimal
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from sfauth.testing._ids import IdFactory, canonical_id, is_valid_id
from sfauth.testing._schema import NUMBER_TYPES, TEXT_TYPES, FieldSchema, Schema, SObjectSchema

__all__ = [
    "DmlError",
    "RecordStore",
    "format_datetime",
    "parse_date",
    "parse_datetime",
]

Record = dict[str, object]
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?)?$"
)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TIME_RE = re.compile(r"^\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?Z?$")
_SYSTEM_FIELDS = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById")
_RECYCLE_MESSAGE = "entity is deleted"


class DmlError(Exception):
    """A write Salesforce would refuse; :attr:`body` is the REST API's error list.

    Attributes:
        status: HTTP status of the refusal.
        error_code: Salesforce ``errorCode``.
        message: Salesforce's message.
        fields: Field names the error is about (``None``: the body has no ``fields`` key).
    """

    def __init__(
        self, error_code: str, message: str, fields: list[str] | None = None, status: int = 400
    ) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields

    @property
    def body(self) -> list[dict[str, object]]:
        """The REST error body: ``[{"message", "errorCode"[, "fields"]}]``."""
        error: dict[str, object] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            error["fields"] = self.fields
        return [error]


def record_id_of(sobject: SObjectSchema, values: Mapping[str, object]) -> str:
    """The 18-character id a record's ``Id`` (any case) names, as an update needs it.

    Raises:
        DmlError: ``MISSING_ARGUMENT`` without an ``Id``, ``MALFORMED_ID`` for a bad one.
    """
    raw_id = next((v for k, v in values.items() if k.lower() == "id"), None)
    record_id = canonical_id(raw_id) if isinstance(raw_id, str) else None
    if record_id is None:
        raise DmlError(
            "MISSING_ARGUMENT" if raw_id is None else "MALFORMED_ID",
            "Id not specified in an update call"
            if raw_id is None
            else f"{sobject.label} ID: id value of incorrect type: {raw_id}",
            ["Id"],
        )
    return record_id


def format_datetime(value: dt.datetime) -> str:
    """Return ``value`` as the REST API writes datetimes: ``2024-01-15T10:00:00.000+0000`` (UTC).

    Args:
        value: An aware datetime (naive ones are taken as UTC).
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    # Not strftime("%Y"): it does not pad years before 1000, which would break text order.
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
        f"{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}+0000"
    )


def parse_datetime(text: str) -> dt.datetime | None:
    """Parse an ISO 8601 datetime as Salesforce accepts it, or return ``None``.

    Accepts ``2024-01-15T10:00:00Z``, ``…T10:00:00.000+0000``, ``…T10:00:00+01:00`` and a bare
    date (midnight UTC).

    Args:
        text: The value as sent.

    Returns:
        An aware UTC datetime, or ``None`` when ``text`` is not one.
    """
    match = _DATETIME_RE.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        value = dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=dt.UTC,
        )
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            value -= sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    except (ValueError, OverflowError):  # no such day, or the offset leaves the calendar
        return None
    return value


def parse_date(text: str) -> dt.date | None:
    """Parse ``YYYY-MM-DD``, or return ``None``.

    Args:
        text: The value as sent.
    """
    if not _DATE_RE.match(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _token(value: object) -> tuple[str, str]:
    """The Jackson token name and text Salesforce's JSON_PARSER_ERROR messages quote."""
    if isinstance(value, bool):
        return ("VALUE_TRUE" if value else "VALUE_FALSE"), str(value).lower()
    if isinstance(value, int):
        return "VALUE_NUMBER_INT", str(value)
    if isinstance(value, float):
        return "VALUE_NUMBER_FLOAT", repr(value)
    if isinstance(value, dict):
        return "START_OBJECT", "{"
    if isinstance(value, list):
        return "START_ARRAY", "["
    return "VALUE_STRING", str(value)


@dataclass(slots=True)
class _Context:
    """What one write needs besides the values: who, when, and the raw body for positions."""

    user_id: str
    now: str
    raw: str | None
    system: bool
    #: sObject Collections: a value of the wrong type fails its record with
    #: ``INVALID_TYPE_ON_FIELD_IN_RECORD``, not the request with ``JSON_PARSER_ERROR``.
    per_record: bool = False


class Transaction:
    """The undo log of one :meth:`RecordStore.transaction` block."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self.entries: list[tuple[SObjectSchema, str, Record | None]] = []

    def rollback(self) -> None:
        """Undo every write of the block, newest first (ids handed out stay used)."""
        store = self._store
        for sobject, record_id, before in reversed(self.entries):
            table = store.table(sobject)
            current = table.get(record_id)
            if before is None:
                table.pop(record_id, None)
            else:
                table[record_id] = before
            store._reindex(sobject, before or {"Id": record_id, "IsDeleted": True}, current)
        self.entries.clear()


class RecordStore:
    """Every record of one emulator, by object, validated against a :class:`Schema`.

    Args:
        schema: The objects and fields records are checked against.
        ids: Generator of record ids.
        now: Wall clock giving an aware UTC datetime (``CreatedDate``, date literals).
    """

    def __init__(self, schema: Schema, ids: IdFactory, now: Callable[[], dt.datetime]) -> None:
        self.schema = schema
        self._ids = ids
        self.now = now
        self._records: dict[str, dict[str, Record]] = {}
        self._case_numbers = 1000
        #: (object, field) → comparable value → ids of the live records holding it, built on
        #: first use for the fields upserts and uniqueness look up (constant-time matching).
        self._indexes: dict[tuple[str, str], dict[object, list[str]]] = {}
        self._index_generation = schema.generation
        #: Open transactions, outermost first (a Collections request inside a Composite one).
        self._journals: list[Transaction] = []

    # ------------------------------------------------------------------ reads

    def table(self, sobject: SObjectSchema) -> dict[str, Record]:
        """Return the live mapping of id to record of an object (deleted records included).

        Args:
            sobject: The object.
        """
        key = sobject.name.lower()  # a describe may spell the name in another case
        table = self._records.get(key)
        if table is None:
            table = self._records[key] = {}
        return table

    def rows(self, sobject: SObjectSchema, *, deleted: bool = False) -> Iterator[Record]:
        """Iterate over an object's records in insertion order.

        Args:
            sobject: The object.
            deleted: Include records in the recycle bin (``queryAll``).
        """
        table = self.table(sobject)
        # Queries run to completion between awaits, so nothing changes a table under them.
        if deleted:
            return iter(table.values())
        return (r for r in table.values() if not r["IsDeleted"])

    def by_id(self, record_id: str) -> tuple[SObjectSchema, Record] | None:
        """Find a record of any object by its 15- or 18-character id (deleted ones included).

        Args:
            record_id: Record id.

        Returns:
            ``(object, record)``, or ``None``.
        """
        full = canonical_id(record_id)
        if full is None:
            return None
        sobject = self.schema.by_prefix(full[:3])
        record = None if sobject is None else self.table(sobject).get(full)
        return None if sobject is None or record is None else (sobject, record)

    def find(self, sobject: SObjectSchema, record_id: str) -> Record | None:
        """Return the record of ``sobject`` with this id (deleted ones included), or ``None``.

        Args:
            sobject: The object the id must belong to.
            record_id: Record id.
        """
        found = self.by_id(record_id)
        if found is None or found[0] is not sobject:
            return None
        return found[1]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Journal the writes inside the block, so :meth:`Transaction.rollback` can undo them.

        Only the records written are copied (an undo log), not the store. Transactions nest:
        an outer rollback also undoes what inner blocks wrote.
        """
        journal = Transaction(self)
        self._journals.append(journal)
        try:
            yield journal
        finally:
            self._journals.remove(journal)

    def _remember(self, sobject: SObjectSchema, record_id: str) -> None:
        """Before a write: keep what the record was (``None``: it did not exist)."""
        if self._journals:
            before = self.table(sobject).get(record_id)
            entry = (sobject, record_id, None if before is None else copy.deepcopy(before))
            for journal in self._journals:  # an outer rollback undoes inner writes too
                journal.entries.append(entry)

    # ------------------------------------------------------------------ writes

    def insert(
        self,
        sobject: SObjectSchema,
        values: Mapping[str, object],
        user_id: str,
        *,
        raw: str | None = None,
        system: bool = False,
        per_record: bool = False,
    ) -> str:
        """Validate and insert a record; return its new 18-character id.

        Args:
            sobject: Target object.
            values: Field values as sent (an ``attributes`` key is ignored).
            user_id: The acting user (``OwnerId``, ``CreatedById`` defaults).
            raw: The raw JSON body, for the positions in ``JSON_PARSER_ERROR`` messages.
            system: Seeding: read-only fields (``CreatedDate``, ``IsDeleted``…) may be set.
            per_record: One record of an sObject Collections request: a value of the wrong
                type is ``INVALID_TYPE_ON_FIELD_IN_RECORD`` (the record's error).

        Returns:
            The new record id.

        Raises:
            DmlError: If Salesforce would refuse the insert.
        """
        context = _Context(user_id, format_datetime(self.now()), raw, system, per_record)
        fields = self._convert(sobject, values, context, creating=True)
        record: Record = {"Id": "", "IsDeleted": False}
        for definition in sobject.fields.values():
            if definition.name in fields:
                continue
            if definition.default_value is not None and definition.createable:
                record[definition.name] = definition.default_value
            elif definition.type == "boolean" and definition.name != "IsDeleted":
                record[definition.name] = False
        missing = [
            f.name
            for f in sobject.fields.values()
            if f.required and fields.get(f.name) is None and f.name not in record
        ]
        if missing:
            raise DmlError(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        record.update(fields)
        record_id = self._ids.new(sobject.key_prefix)
        record["Id"] = record_id
        for name, value in (
            ("OwnerId", user_id),
            ("CreatedDate", context.now),
            ("CreatedById", user_id),
            ("LastModifiedDate", context.now),
            ("LastModifiedById", user_id),
            ("SystemModstamp", context.now),
        ):
            if sobject.field(name) is not None:
                record.setdefault(name, value)
        self._derive(sobject, record, creating=True)
        self._check_unique(sobject, record, None)
        self._remember(sobject, record_id)
        self.table(sobject)[record_id] = record
        self._reindex(sobject, record, None)
        return record_id

    def update(
        self,
        sobject: SObjectSchema,
        record: Record,
        values: Mapping[str, object],
        user_id: str,
        *,
        raw: str | None = None,
        per_record: bool = False,
    ) -> None:
        """Validate and apply an update to a stored record.

        Args:
            sobject: The record's object.
            record: The stored record (changed in place).
            values: Field values as sent.
            user_id: The acting user (``LastModifiedById``).
            raw: The raw JSON body, for positions in error messages.
            per_record: One record of an sObject Collections request (see :meth:`insert`).

        Raises:
            DmlError: If Salesforce would refuse the update (``ENTITY_IS_DELETED`` for a record
                in the recycle bin).
        """
        if record["IsDeleted"]:
            raise DmlError("ENTITY_IS_DELETED", _RECYCLE_MESSAGE, [])
        context = _Context(user_id, format_datetime(self.now()), raw, False, per_record)
        fields = self._convert(sobject, values, context, creating=False)
        cleared = [
            name
            for name, value in fields.items()
            if value is None and (definition := sobject.field(name)) and definition.required
        ]
        if cleared:
            raise DmlError(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(cleared)}]",
                cleared,
            )
        changed = {**record, **fields}
        self._check_unique(sobject, changed, str(record["Id"]))
        self._remember(sobject, str(record["Id"]))
        before = dict(record)
        record.update(fields)
        record["LastModifiedDate"] = record["SystemModstamp"] = context.now
        record["LastModifiedById"] = user_id
        self._derive(sobject, record, creating=False)
        self._reindex(sobject, record, before)

    def delete(self, sobject: SObjectSchema, record: Record, user_id: str) -> None:
        """Move a record to the recycle bin (``IsDeleted = true``; ``queryAll`` still sees it).

        Args:
            sobject: The record's object.
            record: The stored record.
            user_id: The acting user.

        Raises:
            DmlError: ``ENTITY_IS_DELETED`` if it already is.
        """
        if record["IsDeleted"]:
            raise DmlError("ENTITY_IS_DELETED", _RECYCLE_MESSAGE, [])
        now = format_datetime(self.now())
        self._remember(sobject, str(record["Id"]))
        before = dict(record)
        record["IsDeleted"] = True
        record["LastModifiedDate"] = record["SystemModstamp"] = now
        record["LastModifiedById"] = user_id
        self._reindex(sobject, record, before)

    def purge(self, sobject: SObjectSchema, record_id: str) -> None:
        """Remove a deleted record for good (a hard delete: not even ``queryAll`` sees it).

        Args:
            sobject: The record's object.
            record_id: Its 18-character id (already deleted: out of every index).
        """
        self._remember(sobject, record_id)
        self.table(sobject).pop(record_id, None)

    # ------------------------------------------------------------------ validation

    def _convert(
        self,
        sobject: SObjectSchema,
        values: Mapping[str, object],
        context: _Context,
        *,
        creating: bool,
    ) -> Record:
        """Map sent values to canonical names and stored values; raise Salesforce's first error."""
        converted: Record = {}
        read_only: list[str] = []
        for key, value in values.items():
            if key == "attributes":
                continue
            definition = sobject.field(key)
            if definition is None:
                relationship = sobject.relationship(key)
                if relationship is not None and isinstance(value, Mapping):
                    converted[relationship.name] = self._by_external_id(relationship, value)
                    continue
                raise DmlError(
                    "INVALID_FIELD",
                    f"No such column '{key}' on sobject of type {sobject.name}",
                )
            writable = definition.createable if creating else definition.updateable
            if not writable and not (context.system and definition.name != "Id"):
                read_only.append(definition.name)
                continue
            converted[definition.name] = self._value(definition, value, context, key)
        if read_only:
            raise DmlError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(read_only)}. Please check the "
                "security settings of this field and verify that it is read/write for your "
                "profile or permission set.",
                read_only,
            )
        return converted

    def _parser_error(
        self, definition: FieldSchema, value: object, context: _Context, key: str
    ) -> DmlError:
        token, text = _token(value)
        if context.per_record:
            return DmlError(
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                f"{definition.label}: value not of required type: {text}",
                [definition.name],
            )
        type_name = "string" if definition.type in TEXT_TYPES else definition.type
        line, column = _position(context.raw, key)
        return DmlError(
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {type_name} from {token} value {text} or request "
            f"may be missing a required field at [line:{line}, column:{column}]",
        )

    def _value(
        self, definition: FieldSchema, value: object, context: _Context, key: str
    ) -> object:
        """Return the stored form of one value, or raise the error Salesforce gives for it."""
        kind = definition.type
        if value is None or value == "":
            return None  # Salesforce saves a blank value as null
        if isinstance(value, (dict, list)):
            raise self._parser_error(definition, value, context, key)
        label, name = definition.label, definition.name
        if kind in NUMBER_TYPES:
            number = _number(value)
            if number is None:
                raise self._parser_error(definition, value, context, key)
            if kind in ("int", "long"):
                if number != int(number):
                    raise DmlError(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{label}: value not of required type: {value}",
                        [name],
                    )
                number = int(number)
            else:
                try:
                    number = float(number)
                except OverflowError:
                    number = math.inf
            digits = definition.precision - definition.scale
            if (definition.precision and abs(number) >= 10**digits) or number in (
                math.inf,
                -math.inf,
            ):
                raise DmlError(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"{label}: value outside of valid range on numeric field: {value}",
                    [name],
                )
            if definition.precision and kind not in ("int", "long"):
                # Salesforce keeps ``scale`` decimals, rounding half up.
                quantum = decimal.Decimal(1).scaleb(-definition.scale)
                exact = decimal.Decimal(repr(number))
                number = float(exact.quantize(quantum, rounding=decimal.ROUND_HALF_UP))
            return number
        if kind == "boolean":
            if not isinstance(value, bool):
                raise self._parser_error(definition, value, context, key)
            return value
        if kind == "date":
            if not isinstance(value, str) or parse_date(value[:10]) is None:
                raise self._parser_error(definition, value, context, key)
            if len(value) > 10 and parse_datetime(value) is None:
                raise self._parser_error(definition, value, context, key)
            return value[:10]
        if kind == "datetime":
            parsed = parse_datetime(value) if isinstance(value, str) else None
            if parsed is None:
                raise self._parser_error(definition, value, context, key)
            return format_datetime(parsed)
        if kind == "time":
            if not isinstance(value, str) or not _TIME_RE.match(value):
                raise self._parser_error(definition, value, context, key)
            return value
        # Text: Salesforce's deserialiser turns numbers and booleans into their text.
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if kind in ("reference", "id"):
            return self._reference(definition, text)
        if definition.length and len(text) > definition.length:
            raise DmlError(
                "STRING_TOO_LONG",
                f"{label}: data value too large: {text} (max length={definition.length})",
                [name],
            )
        if kind == "email" and text and not _EMAIL_RE.match(text):
            raise DmlError(
                "INVALID_EMAIL_ADDRESS", f"{label}: invalid email address: {text}", [name]
            )
        return text

    def _reference(self, definition: FieldSchema, text: str) -> str:
        """Check a lookup value: a well-formed id of a target object, of a record that exists."""
        label, name = definition.label, definition.name
        if not is_valid_id(text):
            raise DmlError("MALFORMED_ID", f"{label}: id value of incorrect type: {text}", [name])
        text = canonical_id(text) or text
        targets = {t.lower() for t in definition.reference_to}
        target = self.schema.by_prefix(text[:3])
        if target is None or target.name.lower() not in targets:
            if not any(self.schema.get(t) is None for t in targets):
                raise DmlError(
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"{label}: id value of incorrect type: {text}",
                    [name],
                )
            return text  # a target the schema lacks (Profile…): kept as sent, canonical
        found = self.by_id(text)
        if found is None:
            raise DmlError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        if found[1]["IsDeleted"]:
            raise DmlError("ENTITY_IS_DELETED", _RECYCLE_MESSAGE, [name])
        return str(found[1]["Id"])

    def _by_external_id(self, relationship: FieldSchema, value: Mapping[str, object]) -> str:
        """Resolve ``{"Account": {"Ext__c": "A-1"}}``: a lookup set by the parent's external id."""
        parent = (
            self.schema.get(relationship.reference_to[0]) if relationship.reference_to else None
        )
        keys = [k for k in value if k != "attributes"]
        if parent is None or len(keys) != 1:
            raise DmlError(
                "INVALID_FIELD",
                f"No such column '{relationship.relationship_name}' on sobject of type "
                f"{relationship.reference_to[0] if relationship.reference_to else '?'}",
            )
        key_field = parent.field(keys[0])
        if key_field is None or not key_field.id_lookup:
            raise DmlError(
                "INVALID_FIELD",
                f"{parent.name}.{keys[0]} is not an external id or an indexed field",
                [relationship.name],
            )
        matches = self.matching(parent, key_field, value[keys[0]])
        if len(matches) != 1:
            raise DmlError(
                "INVALID_FIELD" if matches else "INVALID_CROSS_REFERENCE_KEY",
                f"Foreign key external ID: {value[keys[0]]} "
                + ("matches more than one record" if matches else "not found")
                + f" for field {key_field.name} in entity {parent.name}",
                [relationship.name],
            )
        return str(matches[0]["Id"])

    def matching(self, sobject: SObjectSchema, field: FieldSchema, key: object) -> list[Record]:
        """Live records whose ``field`` equals ``key`` as Salesforce compares them.

        Text compares case-insensitively, numbers by value (``"5"`` finds ``5.0``), ids in
        any casing of their 18-character form. Looked up in an index, not scanned.

        Args:
            sobject: The object to search.
            field: The field to compare (an external id, ``idLookup`` field or ``Id``).
            key: The value as sent (a URL segment or a JSON value).

        Returns:
            The matching records, in insertion order.
        """
        wanted = _index_key(field, key)
        if wanted is None:
            return []
        table = self.table(sobject)
        # Ids of one object are base-62 counters of one width: their order is insertion order.
        return [table[i] for i in sorted(self._index(sobject, field).get(wanted, ()))]

    def _index(self, sobject: SObjectSchema, field: FieldSchema) -> dict[object, list[str]]:
        if self.schema.generation != self._index_generation:
            self._indexes.clear()  # a field's type may have changed how values compare
            self._index_generation = self.schema.generation
        key = (sobject.name.lower(), field.name)
        index = self._indexes.get(key)
        if index is None:
            index = {}
            for record in self.rows(sobject):
                value = _index_key(field, record.get(field.name))
                if value is not None:
                    index.setdefault(value, []).append(str(record["Id"]))
            self._indexes[key] = index
        return index

    def _reindex(self, sobject: SObjectSchema, record: Record, before: Record | None) -> None:
        """Move one record's entries in the built indexes of its object after a write."""
        name = sobject.name.lower()
        record_id = str(record["Id"])
        for (owner, field_name), index in self._indexes.items():
            definition = sobject.field(field_name)
            if owner != name or definition is None:
                continue
            old = None if before is None or before["IsDeleted"] else before.get(field_name)
            new = None if record["IsDeleted"] else record.get(field_name)
            old_key, new_key = _index_key(definition, old), _index_key(definition, new)
            if old_key == new_key:
                continue
            if old_key is not None and record_id in index.get(old_key, ()):
                index[old_key].remove(record_id)
                if not index[old_key]:
                    del index[old_key]
            if new_key is not None:
                index.setdefault(new_key, []).append(record_id)

    def _check_unique(self, sobject: SObjectSchema, record: Record, own_id: str | None) -> None:
        for definition in sobject.fields.values():
            if not definition.unique or record.get(definition.name) is None:
                continue
            wanted = _index_key(definition, record[definition.name])
            for other in self._index(sobject, definition).get(wanted, ()):
                if other != own_id:
                    raise DmlError(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {definition.name} duplicates value on record "
                        f"with id: {other[:15]}",
                        [],
                    )

    def _derive(self, sobject: SObjectSchema, record: Record, *, creating: bool) -> None:
        """Fill the fields Salesforce computes: full names, closed flags, case numbers."""
        if sobject.custom and record.get("Name") is None and creating:
            record["Name"] = record["Id"]
        if sobject.name in ("Contact", "Lead", "User"):
            parts = [record.get("FirstName"), record.get("LastName")]
            record["Name"] = " ".join(str(p) for p in parts if p) or None
        elif sobject.name == "Opportunity":
            stage = record.get("StageName")
            record["IsClosed"] = stage in ("Closed Won", "Closed Lost")
            record["IsWon"] = stage == "Closed Won"
        elif sobject.name == "Case":
            record["IsClosed"] = record.get("Status") == "Closed"
            if creating and record.get("CaseNumber") is None:
                self._case_numbers += 1
                record["CaseNumber"] = f"{self._case_numbers:08d}"


def _index_key(field: FieldSchema, value: object) -> object:
    """How a field's values compare for matching and uniqueness (``None``: matches nothing)."""
    if value is None or value == "":
        return None
    if field.type in NUMBER_TYPES:
        number = _number(value)
        return None if number is None else float(number)
    if field.type in ("id", "reference"):
        return canonical_id(str(value))
    return str(value).lower()


def _number(value: object) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if not (isinstance(value, float) and not math.isfinite(value)) else None
    if isinstance(value, str):
        if not _NUMBER_RE.fullmatch(value.strip()):
            return None
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        return int(number) if re.fullmatch(r"\s*[+-]?\d+\s*", value) else number
    return None


def _position(raw: str | None, key: str) -> tuple[int, int]:
    """Line and column (1-based) just past the value of ``key`` in the raw JSON body."""
    if raw is None:
        return 1, 1
    match = re.search(r'"' + re.escape(key) + r'"\s*:\s*', raw)
    if match is None:
        return 1, 1
    end = match.end()
    value = re.match(r'"(?:[^"\\]|\\.)*"|[^\s,}\]]+', raw[end:])
    if value is not None and raw[end] not in "{[":
        end += value.end()
    else:
        end += 1
    line = raw.count("\n", 0, end) + 1
    column = end - (raw.rfind("\n", 0, end) + 1) + 1
    return line, column
