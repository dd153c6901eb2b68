"""sObject Collections for the emulator: up to 200 records per request, results in order.

``POST /composite/sobjects`` (create), ``PATCH /composite/sobjects`` (update), ``PATCH
/composite/sobjects/{object}/{externalIdField}`` (upsert), ``DELETE
/composite/sobjects?ids=…&allOrNone=…`` (delete), as the REST API Developer Guide's "sObject
Collections" documents them: one result per record in request order (``id``, ``success``,
``errors`` of ``{statusCode, message, fields}``; upserts add ``created``); with ``allOrNone``
one failure rolls back every record of the request, the others reporting
``ALL_OR_NONE_OPERATION_ROLLED_BACK``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sfauth.testing._ids import canonical_id
from sfauth.testing._schema import FieldSchema, Schema, SObjectSchema
from sfauth.testing._state import NOT_FOUND, Session, json_response, rest_error
from sfauth.testing._store import DmlError, RecordStore, record_id_of

__all__ = ["MAX_RECORDS", "CollectionsApi"]

#: Records per sObject Collections request ("sObject Collections", REST API Developer Guide).
MAX_RECORDS = 200
_ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header",
    "fields": [],
}

Result = dict[str, Any]


def _failure(error: DmlError) -> Result:
    return {
        "success": False,
        "errors": [
            {
                "statusCode": error.error_code,
                "message": error.message,
                "fields": error.fields or [],
            }
        ],
    }


class CollectionsApi:
    """Handlers of ``/composite/sobjects``; the state they use lives on the emulator."""

    schema: Schema
    _store: RecordStore

    def _version(self, request: web.Request) -> str | None:  # provided by RestApi
        raise NotImplementedError

    def _external_id_field(  # provided by RestApi
        self, sobject: SObjectSchema, name: str
    ) -> FieldSchema | web.Response:
        raise NotImplementedError

    def _collection_body(self, body: bytes) -> tuple[bool, list[Any]] | web.Response:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return rest_error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            return rest_error(400, "JSON_PARSER_ERROR", "The request body needs a 'records' list")
        records: list[Any] = data["records"]
        if len(records) > MAX_RECORDS:
            return rest_error(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_RECORDS} records into "
                "this call",
            )
        flag = data.get("allOrNone", False)
        if not isinstance(flag, bool):
            return rest_error(400, "JSON_PARSER_ERROR", "allOrNone must be true or false")
        return flag, records

    def _type_of(self, record: Any) -> SObjectSchema | DmlError:
        attributes = record.get("attributes") if isinstance(record, dict) else None
        name = attributes.get("type") if isinstance(attributes, dict) else None
        if not isinstance(name, str):
            return DmlError(
                "INVALID_TYPE", "sObject type is required in the attributes of every record"
            )
        sobject = self.schema.get(name)
        if sobject is None:
            return DmlError("INVALID_TYPE", f"sObject type '{name}' is not supported.")
        return sobject

    def _run_all(self, all_or_none: bool, steps: list[Any], apply: Any) -> web.Response:
        """Apply every step in order; with ``all_or_none``, undo all once one fails."""
        results: list[Result] = []
        with self._store.transaction() as transaction:
            for step in steps:
                try:
                    results.append(apply(step))
                except DmlError as error:
                    results.append(_failure(error))
            if all_or_none and any(not r["success"] for r in results):
                transaction.rollback()
                results = [
                    r if not r["success"] else {"success": False, "errors": [_ROLLED_BACK]}
                    for r in results
                ]
        return json_response(200, results)

    async def _collection_create(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        if self._version(request) is None:
            return json_response(404, NOT_FOUND)
        parsed = self._collection_body(body)
        if isinstance(parsed, web.Response):
            return parsed
        all_or_none, records = parsed
        assert session is not None
        user = session.user.user_id

        def create(record: Any) -> Result:
            sobject = self._type_of(record)
            if isinstance(sobject, DmlError):
                raise sobject
            if any(k.lower() == "id" for k in record):
                raise DmlError("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            record_id = self._store.insert(sobject, record, user, per_record=True)
            return {"id": record_id, "success": True, "errors": []}

        return self._run_all(all_or_none, records, create)

    async def _collection_update(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        if self._version(request) is None:
            return json_response(404, NOT_FOUND)
        parsed = self._collection_body(body)
        if isinstance(parsed, web.Response):
            return parsed
        all_or_none, records = parsed
        assert session is not None
        user = session.user.user_id

        def update(record: Any) -> Result:
            sobject = self._type_of(record)
            if isinstance(sobject, DmlError):
                raise sobject
            values = {k: v for k, v in record.items() if k.lower() != "id"}
            record_id = record_id_of(sobject, record)
            stored = self._store.find(sobject, record_id)
            if stored is None:
                raise DmlError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
            self._store.update(sobject, stored, values, user, per_record=True)
            return {"id": record_id, "success": True, "errors": []}

        return self._run_all(all_or_none, records, update)

    async def _collection_upsert(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        if self._version(request) is None:
            return json_response(404, NOT_FOUND)
        sobject = self.schema.get(request.match_info["sobject"])
        if sobject is None:
            return json_response(404, NOT_FOUND)
        key_field = self._external_id_field(sobject, request.match_info["field"])
        if isinstance(key_field, web.Response):
            return key_field
        parsed = self._collection_body(body)
        if isinstance(parsed, web.Response):
            return parsed
        all_or_none, records = parsed
        assert session is not None
        user = session.user.user_id

        def key_of(record: Any) -> Any:
            if not isinstance(record, dict):
                return None
            wanted = key_field.name.lower()
            return next((v for k, v in record.items() if k.lower() == wanted), None)

        keys = [key_of(r) for r in records]
        counts: dict[str, int] = {}
        for key in keys:
            if key is not None:
                counts[str(key).lower()] = counts.get(str(key).lower(), 0) + 1

        def upsert(record: Any) -> Result:
            kind = self._type_of(record)
            if isinstance(kind, DmlError):
                raise kind
            if kind is not sobject:
                raise DmlError(
                    "INVALID_TYPE",
                    f"the list can contain objects only of the type indicated in the request "
                    f"URI ({sobject.name}); this one is a {kind.name}",
                )
            key = key_of(record)
            if key is None or key == "":
                raise DmlError(
                    "MISSING_ARGUMENT", f"{key_field.name} not specified", [key_field.name]
                )
            if counts[str(key).lower()] > 1:
                raise DmlError(
                    "DUPLICATE_EXTERNAL_ID",
                    f"Duplicate external id specified: {key}",
                    [key_field.name],
                )
            matches = self._store.matching(sobject, key_field, key)
            if len(matches) > 1:
                raise DmlError(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{key_field.name}: more than one record found for external id field: "
                    f"{[str(m['Id']) for m in matches]}",
                    [key_field.name],
                )
            if matches:
                values = {k: v for k, v in record.items() if k.lower() != key_field.name.lower()}
                self._store.update(sobject, matches[0], values, user, per_record=True)
                return {"id": matches[0]["Id"], "success": True, "errors": [], "created": False}
            record_id = self._store.insert(sobject, record, user, per_record=True)
            return {"id": record_id, "success": True, "errors": [], "created": True}

        return self._run_all(all_or_none, records, upsert)

    async def _collection_delete(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        if self._version(request) is None:
            return json_response(404, NOT_FOUND)
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if not ids:
            return rest_error(400, "MISSING_ARGUMENT", "The ids parameter is required")
        if len(ids) > MAX_RECORDS:
            return rest_error(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_RECORDS} records into "
                "this call",
            )
        flag = request.query.get("allOrNone", "false").lower()
        if flag not in ("true", "false"):
            return rest_error(
                400, "INVALID_QUERY_FILTER_OPERATOR", "allOrNone must be true or false"
            )
        all_or_none = flag == "true"
        assert session is not None
        user = session.user.user_id

        def delete(raw_id: str) -> Result:
            found = self._store.by_id(raw_id)
            if found is None:
                if canonical_id(raw_id) is None:
                    raise DmlError("MALFORMED_ID", f"malformed id {raw_id}", [])
                raise DmlError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
            sobject, record = found
            self._store.delete(sobject, record, user)
            return {"id": record["Id"], "success": True, "errors": []}

        return self._run_all(all_or_none, ids, delete)
