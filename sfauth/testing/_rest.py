"""REST API endpoints of the emulator (a mixin of :class:`~sfauth.testing.Emulator`)."""

from __future__ import annotations

import collections
import json

from aiohttp import web

from sfauth.testing._ids import IdFactory, is_valid_id
from sfauth.testing._schema import FieldSchema, Schema, SObjectSchema
from sfauth.testing._soql import SoqlError, compile_query
from sfauth.testing._state import NOT_FOUND, Cursor, Session, json_response, rest_error
from sfauth.testing._store import DmlError, RecordStore

__all__ = ["RestApi", "release_label"]

_MAX_CURSORS = 1000


def release_label(version: str) -> str:
    """Return the release name of an API version, e.g. ``"Spring '24"`` for ``"60.0"``.

    Args:
        version: API version such as ``"62.0"``.

    Returns:
        The release label, ``"Custom"`` for non-numeric versions.
    """
    try:
        major = int(float(version))
    except ValueError:
        return "Custom"
    step = major - 60  # 60.0 is Spring '24
    season = ("Spring", "Summer", "Winter")[step % 3]
    year = 24 + step // 3 + (1 if season == "Winter" else 0)
    return f"{season} '{year:02d}"


def _attributes(name: str, record: dict[str, object], version: str) -> dict[str, object]:
    return {"type": name, "url": f"/services/data/v{version}/sobjects/{name}/{record['Id']}"}


class RestApi:
    """Handlers of the REST endpoints; the state they use lives on the emulator."""

    api_versions: tuple[str, ...]
    page_size: int
    daily_api_limit: int
    _versions: frozenset[str]
    _ids: IdFactory
    schema: Schema
    _store: RecordStore
    _sessions: dict[str, Session]
    _cursors: collections.OrderedDict[str, Cursor]
    _api_usage: int

    def _version(self, request: web.Request) -> str | None:
        ver = request.match_info["ver"]
        if ver[:1] == "v" and ver[1:] in self._versions:
            return ver[1:]
        return None

    async def _versions_handler(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        return json_response(
            200,
            [
                {"label": release_label(v), "url": f"/services/data/v{v}", "version": v}
                for v in self.api_versions
            ],
        )

    async def _resources(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        version = self._version(request)
        if version is None:
            return json_response(404, NOT_FOUND)
        assert session is not None
        prefix = f"/services/data/v{version}"
        return json_response(
            200,
            {
                "identity": session.id_url,
                "limits": f"{prefix}/limits",
                "query": f"{prefix}/query",
                "sobjects": f"{prefix}/sobjects",
            },
        )

    async def _not_found(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        return json_response(404, NOT_FOUND)

    def _batch_size(self, request: web.Request) -> int:
        options = request.headers.get("Sforce-Query-Options")
        if options:
            for option in options.split(","):
                key, _, value = option.partition("=")
                if key.strip().lower() == "batchsize":
                    try:
                        return min(max(int(value.strip()), 200), 2000)
                    except ValueError:
                        break
        return self.page_size

    async def _query(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        return self._run_query(request, session, deleted=False)

    async def _query_all(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        return self._run_query(request, session, deleted=True)

    def _run_query(
        self, request: web.Request, session: Session | None, *, deleted: bool
    ) -> web.Response:
        version = self._version(request)
        if version is None:
            return json_response(404, NOT_FOUND)
        soql = request.query.get("q", "").strip()
        if not soql:
            return rest_error(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            result = compile_query(soql, self.schema).run(self._store, version, deleted=deleted)
        except SoqlError as exc:
            return rest_error(400, exc.error_code, exc.message)
        records = result.records
        batch = self._batch_size(request)
        if len(records) <= batch:
            return json_response(
                200, {"totalSize": result.total_size, "done": True, "records": records}
            )
        locator = self._ids.new("01g")
        self._cursors[locator] = Cursor(records, batch)
        if len(self._cursors) > _MAX_CURSORS:
            self._cursors.popitem(last=False)
        return json_response(
            200,
            {
                "totalSize": len(records),
                "done": False,
                "nextRecordsUrl": f"/services/data/v{version}/query/{locator}-{batch}",
                "records": records[:batch],
            },
        )

    async def _query_more(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        version = self._version(request)
        if version is None:
            return json_response(404, NOT_FOUND)
        locator, _, offset_text = request.match_info["locator"].partition("-")
        cursor = self._cursors.get(locator)
        try:
            offset = int(offset_text)
        except ValueError:
            cursor = None
            offset = 0
        if cursor is None or not 0 <= offset < len(cursor.records):
            return rest_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        end = offset + cursor.batch
        page: dict[str, object] = {
            "totalSize": len(cursor.records),
            "done": end >= len(cursor.records),
        }
        if end < len(cursor.records):
            page["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        else:
            del self._cursors[locator]
        page["records"] = cursor.records[offset:end]
        return json_response(200, page)

    async def _limits(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        if self._version(request) is None:
            return json_response(404, NOT_FOUND)
        limit = self.daily_api_limit
        return json_response(
            200,
            {
                "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
                "ConcurrentSyncReportRuns": {"Max": 20, "Remaining": 20},
                "DailyApiRequests": {"Max": limit, "Remaining": max(limit - self._api_usage, 0)},
                "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
                "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                "DataStorageMB": {"Max": 5, "Remaining": 5},
            },
        )

    def _sobject_type(self, request: web.Request) -> SObjectSchema | None:
        if self._version(request) is None:
            return None
        return self.schema.get(request.match_info["sobject"])

    async def _describe_global(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        version = self._version(request)
        if version is None:
            return json_response(404, NOT_FOUND)
        return json_response(
            200,
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [
                    self.schema.get(name).describe_global(version)  # type: ignore[union-attr]
                    for name in self.schema.names()
                ],
            },
        )

    async def _describe(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        sobject = self._sobject_type(request)
        if sobject is None:
            return json_response(404, NOT_FOUND)
        return json_response(200, sobject.describe(request.match_info["ver"][1:]))

    async def _sobject_info(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        sobject = self._sobject_type(request)
        if sobject is None:
            return json_response(404, NOT_FOUND)
        version = request.match_info["ver"][1:]
        recent = [
            {"attributes": _attributes(sobject.name, r, version), "Id": r["Id"]}
            for r in list(self._store.rows(sobject))[-20:]
        ]
        return json_response(
            200, {"objectDescribe": sobject.describe_global(version), "recentItems": recent}
        )

    @staticmethod
    def _json_object(body: bytes) -> tuple[dict[str, object], str] | web.Response:
        try:
            text = body.decode()
            value = json.loads(text)
        except UnicodeDecodeError:
            return rest_error(400, "JSON_PARSER_ERROR", "Invalid UTF-8 in the request body")
        except RecursionError:
            return rest_error(400, "JSON_PARSER_ERROR", "The request body is nested too deeply")
        except json.JSONDecodeError as exc:
            return rest_error(
                400,
                "JSON_PARSER_ERROR",
                f"{exc.msg} at [line:{exc.lineno}, column:{exc.colno}]",
            )
        except ValueError:  # e.g. an integer past Python's digit limit
            return rest_error(400, "JSON_PARSER_ERROR", "Numeric value out of range")
        if not isinstance(value, dict):
            return rest_error(
                400,
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of sObject from a non-object",
            )
        if any(key.lower() == "id" for key in value):
            return json_response(
                400,
                [
                    {
                        "message": "Unable to create/update fields: Id. Please check the "
                        "security settings of this field and verify that it is read/write for "
                        "your profile or permission set.",
                        "errorCode": "INVALID_FIELD_FOR_INSERT_UPDATE",
                        "fields": ["Id"],
                    }
                ],
            )
        return value, text

    async def _sobject_create(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        sobject = self._sobject_type(request)
        if sobject is None:
            return json_response(404, NOT_FOUND)
        parsed = self._json_object(body)
        if isinstance(parsed, web.Response):
            return parsed
        assert session is not None
        try:
            record_id = self._store.insert(sobject, parsed[0], session.user.user_id, raw=parsed[1])
        except DmlError as exc:
            return json_response(exc.status, exc.body)
        return json_response(201, {"id": record_id, "success": True, "errors": []})

    def _record(
        self, request: web.Request, *, deleted_ok: bool = False
    ) -> tuple[SObjectSchema, dict[str, object]] | web.Response:
        sobject = self._sobject_type(request)
        if sobject is None:
            return json_response(404, NOT_FOUND)
        record_id = request.match_info["id"]
        if not is_valid_id(record_id):
            return json_response(
                404,
                [
                    {
                        "errorCode": "NOT_FOUND",
                        "message": "Provided external ID field does not exist or is not "
                        f"accessible: {record_id}",
                    }
                ],
            )
        record = self._store.find(sobject, record_id)
        if record is None:
            if self._store.by_id(record_id) is not None or self.schema.by_prefix(
                record_id[:3]
            ) not in (None, sobject):
                return rest_error(
                    400,
                    "MALFORMED_ID",
                    f"{sobject.label} ID: id value of incorrect type: {record_id}",
                )
            return json_response(404, NOT_FOUND)
        if record["IsDeleted"] and not deleted_ok:
            return json_response(
                404,
                [{"errorCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}],
            )
        return sobject, record

    async def _sobject_get_by(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        sobject = self._sobject_type(request)
        if sobject is None:
            return json_response(404, NOT_FOUND)
        key_field = self._external_id_field(sobject, request.match_info["field"])
        if isinstance(key_field, web.Response):
            return key_field
        matches = self._store.matching(sobject, key_field, request.match_info["value"])
        if not matches:
            return json_response(404, NOT_FOUND)
        if len(matches) > 1:
            version = request.match_info["ver"]
            return json_response(
                300,
                [f"/services/data/{version}/sobjects/{sobject.name}/{r['Id']}" for r in matches],
            )
        return self._read(request, sobject, matches[0])

    def _external_id_field(self, sobject: SObjectSchema, name: str) -> FieldSchema | web.Response:
        key_field = sobject.field(name)
        if key_field is None or not (key_field.id_lookup or key_field.external_id):
            return json_response(
                404,
                [
                    {
                        "errorCode": "NOT_FOUND",
                        "message": "Provided external ID field does not exist or is not "
                        f"accessible: {name}",
                    }
                ],
            )
        return key_field

    async def _sobject_get(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        found = self._record(request)
        if isinstance(found, web.Response):
            return found
        return self._read(request, *found)

    def _read(
        self, request: web.Request, sobject: SObjectSchema, record: dict[str, object]
    ) -> web.Response:
        version = request.match_info["ver"][1:]
        result: dict[str, object] = {"attributes": _attributes(sobject.name, record, version)}
        wanted = request.query.get("fields")
        if wanted:
            for name in (f.strip() for f in wanted.split(",") if f.strip()):
                definition = sobject.field(name)
                if definition is None:
                    return rest_error(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{name}' on sobject of type {sobject.name}",
                    )
                result[definition.name] = record.get(definition.name)
        else:
            for definition in sobject.fields.values():
                result[definition.name] = record.get(definition.name)
        return json_response(200, result)

    async def _sobject_update(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        found = self._record(request)
        if isinstance(found, web.Response):
            return found
        sobject, record = found
        parsed = self._json_object(body)
        if isinstance(parsed, web.Response):
            return parsed
        assert session is not None
        try:
            self._store.update(sobject, record, parsed[0], session.user.user_id, raw=parsed[1])
        except DmlError as exc:
            return json_response(exc.status, exc.body)
        return web.Response(status=204)

    async def _sobject_delete(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        found = self._record(request)
        if isinstance(found, web.Response):
            return found
        sobject, record = found
        assert session is not None
        self._store.delete(sobject, record, session.user.user_id)
        return web.Response(status=204)

    async def _sobject_upsert(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        sobject = self._sobject_type(request)
        version = request.match_info["ver"]
        if sobject is None:
            return json_response(404, NOT_FOUND)
        key_field = self._external_id_field(sobject, request.match_info["field"])
        if isinstance(key_field, web.Response):
            return key_field
        key = request.match_info["value"]
        parsed = self._json_object(body)
        if isinstance(parsed, web.Response):
            return parsed
        values, raw = parsed
        assert session is not None
        if key_field.name == "Id":
            record = self._store.find(sobject, key) if is_valid_id(key) else None
            if record is None:
                return json_response(404, NOT_FOUND)
            matches = [record]
        else:
            matches = self._store.matching(sobject, key_field, key)
        if len(matches) > 1:
            return json_response(
                300,
                [f"/services/data/{version}/sobjects/{sobject.name}/{r['Id']}" for r in matches],
            )
        try:
            if matches:
                self._store.update(sobject, matches[0], values, session.user.user_id, raw=raw)
                return json_response(
                    200, {"id": matches[0]["Id"], "success": True, "errors": [], "created": False}
                )
            record_id = self._store.insert(
                sobject, {**values, key_field.name: key}, session.user.user_id, raw=raw
            )
        except DmlError as exc:
            return json_response(exc.status, exc.body)
        return json_response(
            201, {"id": record_id, "success": True, "errors": [], "created": True}
        )

    async def _userinfo(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        assert session is not None
        user = session.user
        return json_response(
            200,
            {
                "sub": session.id_url,
                "user_id": user.user_id,
                "organization_id": user.org_id,
                "preferred_username": user.username,
                "nickname": user.name,
                "name": user.name,
                "email": user.username,
                "email_verified": True,
                "active": user.active,
                "user_type": "STANDARD",
                "language": "en_US",
                "locale": "en_US",
                "utcOffset": 0,
            },
        )

    async def _revoke_handler(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        posted = await request.post()
        token = posted.get("token")
        if not isinstance(token, str):
            token = request.query.get("token", "")
        if self._sessions.pop(token, None) is not None:
            return web.Response(status=200)
        return json_response(
            400,
            {
                "error": "unsupported_token_type",
                "error_description": "this token type is not supported",
            },
        )
