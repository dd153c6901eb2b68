"""In-memory sObject storage: case-insensitive object and field names, Salesforce-shaped ids."""

from __future__ import annotations

from collections.abc import Mapping

from sfauth.testing._ids import BASE62, IdFactory

__all__ = ["STANDARD_PREFIXES", "SObjectStore", "SObjectType"]

#: Key prefixes of the standard objects the emulator knows from the start.
STANDARD_PREFIXES: Mapping[str, str] = {
    "Account": "001",
    "Contact": "003",
    "Opportunity": "006",
    "Lead": "00Q",
    "Case": "500",
    "Campaign": "701",
    "Task": "00T",
    "Event": "00U",
}


class SObjectType:
    """Records of one sObject type plus its field-name registry."""

    __slots__ = ("_fields", "name", "prefix", "records")

    def __init__(self, name: str, prefix: str) -> None:
        self.name = name
        self.prefix = prefix
        self.records: dict[str, dict[str, object]] = {}
        self._fields: dict[str, str] = {"id": "Id"}

    def canonical(self, field: str) -> str:
        """Return the stored spelling of ``field`` (case-insensitive), or ``field`` if unknown.

        Args:
            field: A field name as written by a client.

        Returns:
            The field's canonical name.
        """
        return self._fields.get(field.lower(), field)

    def register_field(self, field: str) -> str:
        """Register ``field`` (first spelling wins) and return its canonical name.

        Args:
            field: A field name as written by a client.

        Returns:
            The field's canonical name.
        """
        return self._fields.setdefault(field.lower(), field)

    def apply(self, record: dict[str, object], values: Mapping[str, object]) -> None:
        """Copy ``values`` into ``record`` under canonical field names.

        Args:
            record: The stored record to update in place.
            values: Field values; ``attributes`` and ``Id`` keys are ignored.
        """
        for key, value in values.items():
            lowered = key.lower()
            if lowered in ("attributes", "id"):
                continue
            record[self.register_field(key)] = value


class SObjectStore:
    """All sObject types of one emulator."""

    def __init__(self, ids: IdFactory) -> None:
        self._ids = ids
        self._types: dict[str, SObjectType] = {}
        self._custom = 0
        for name, prefix in STANDARD_PREFIXES.items():
            self._types[name.lower()] = SObjectType(name, prefix)

    def get(self, name: str) -> SObjectType | None:
        """Return the type named ``name`` (case-insensitive), or ``None`` if unknown.

        Args:
            name: sObject API name.

        Returns:
            The type, or ``None``.
        """
        return self._types.get(name.lower())

    def ensure(self, name: str) -> SObjectType:
        """Return the type named ``name``, registering it (prefix ``a00``, ``a01``, …) if new.

        Args:
            name: sObject API name.

        Returns:
            The existing or new type.

        Raises:
            ValueError: If ``name`` is not a valid API name.
        """
        existing = self._types.get(name.lower())
        if existing is not None:
            return existing
        if not name or not (name[0].isalpha() and name.replace("_", "a").isalnum()):
            raise ValueError(f"invalid sObject name: {name!r}")
        prefix = "a0" + BASE62[self._custom % 62]
        self._custom += 1
        created = SObjectType(name, prefix)
        self._types[name.lower()] = created
        return created

    def insert(self, sobject: SObjectType, values: Mapping[str, object]) -> str:
        """Insert a record and return its new 18-character id.

        Args:
            sobject: Target type.
            values: Field values (``Id`` and ``attributes`` are ignored).

        Returns:
            The new record id.
        """
        record_id = self._ids.new(sobject.prefix)
        record: dict[str, object] = {"Id": record_id}
        sobject.apply(record, values)
        sobject.records[record_id] = record
        return record_id

    @staticmethod
    def find(sobject: SObjectType, record_id: str) -> dict[str, object] | None:
        """Look a record up by its 18- or 15-character id.

        Args:
            sobject: The type to search.
            record_id: Record id.

        Returns:
            The stored record (not a copy), or ``None``.
        """
        record = sobject.records.get(record_id)
        if record is None and len(record_id) == 15:
            for key, candidate in sobject.records.items():
                if key.startswith(record_id):
                    return candidate
        return record
