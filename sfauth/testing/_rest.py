"""REST API endpoints of the emulator (a mixin of :class:`~sfauth.testing.Emulator`)."""

from __future__ import annotations

import collections
import json

from aiohttp import web

from sfauth.testing._ids import IdFactory
from sfauth.testing._soql import SoqlError, filter_records, parse, sort_records
from sfauth.testing._state import NOT_FOUND, Cursor, Session, json_response, rest_error
from sfauth.testing._store import SObjectStore, SObjectType

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


class RestApi:
    """Handlers of the REST endpoints; the state they use lives on the emulator."""

    api_versions: tuple[str, ...]
    page_size: int
    daily_api_limit: int
    _versions: frozenset[str]
    _ids: IdFactory
    _store: SObjectStore
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
        version = self._version(request)
        if version is None:
            return json_response(404, NOT_FOUND)
        soql = request.query.get("q", "").strip()
        if not soql:
            return rest_error(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            query = parse(soql)
        except SoqlError as exc:
            return rest_error(400, "MALFORMED_QUERY", str(exc))
        sobject = self._store.get(query.sobject)
        if sobject is None:
            return rest_error(
                400, "INVALID_TYPE", f"sObject type '{query.sobject}' is not supported."
            )
        canonical = sobject.canonical
        matched = filter_records(sobject.records.values(), query.where, canonical)
        if query.order_by:
            matched = sort_records(matched, query.order_by, canonical)
        if query.offset:
            matched = matched[query.offset :]
        if query.limit is not None:
            matched = matched[: query.limit]
        fields = list(dict.fromkeys(canonical(f) for f in query.fields))
        url_prefix = f"/services/data/v{version}/sobjects/{sobject.name}/"
        records: list[dict[str, object]] = []
        for record in matched:
            projected: dict[str, object] = {
                "attributes": {"type": sobject.name, "url": url_prefix + str(record["Id"])}
            }
            for name in fields:
                projected[name] = record.get(name)
            records.append(projected)
        batch = self._batch_size(request)
        if len(records) <= batch:
            return json_response(
                200, {"totalSize": len(records), "done": True, "records": records}
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

    def _sobject_type(self, request: web.Request, *, create: bool = False) -> SObjectType | None:
        name = request.match_info["sobject"]
        sobject = self._store.get(name)
        if sobject is None and create and name.lower().endswith("__c"):
            try:
                sobject = self._store.ensure(name)
            except ValueError:
                return None
        return sobject

    @staticmethod
    def _json_object(body: bytes) -> dict[str, object] | web.Response:
        try:
            value = json.loads(body)
        except UnicodeDecodeError:
            return rest_error(400, "JSON_PARSER_ERROR", "Invalid UTF-8 in the request body")
        except json.JSONDecodeError as exc:
            return rest_error(
                400,
                "JSON_PARSER_ERROR",
                f"{exc.msg} at [line:{exc.lineno}, column:{exc.colno}]",
            )
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
        return value

    async def _sobject_create(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        sobject = self._sobject_type(request, create=True)
        if self._version(request) is None or sobject is None:
            return json_response(404, NOT_FOUND)
        values = self._json_object(body)
        if isinstance(values, web.Response):
            return values
        record_id = self._store.insert(sobject, values)
        return json_response(201, {"id": record_id, "success": True, "errors": []})

    def _record(
        self, request: web.Request
    ) -> tuple[SObjectType, dict[str, object]] | web.Response:
        sobject = self._sobject_type(request)
        if self._version(request) is None or sobject is None:
            return json_response(404, NOT_FOUND)
        record = self._store.find(sobject, request.match_info["id"])
        if record is None:
            return json_response(404, NOT_FOUND)
        return sobject, record

    async def _sobject_get(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        found = self._record(request)
        if isinstance(found, web.Response):
            return found
        sobject, record = found
        version = request.match_info["ver"]
        result: dict[str, object] = {
            "attributes": {
                "type": sobject.name,
                "url": f"/services/data/{version}/sobjects/{sobject.name}/{record['Id']}",
            }
        }
        wanted = request.query.get("fields")
        if wanted:
            for name in (sobject.canonical(f.strip()) for f in wanted.split(",") if f.strip()):
                result[name] = record.get(name)
        else:
            result.update(record)
        return json_response(200, result)

    async def _sobject_update(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        found = self._record(request)
        if isinstance(found, web.Response):
            return found
        sobject, record = found
        values = self._json_object(body)
        if isinstance(values, web.Response):
            return values
        sobject.apply(record, values)
        return web.Response(status=204)

    async def _sobject_delete(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        found = self._record(request)
        if isinstance(found, web.Response):
            return found
        sobject, record = found
        del sobject.records[str(record["Id"])]
        return web.Response(status=204)

    async def _sobject_upsert(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        sobject = self._sobject_type(request, create=True)
        version = request.match_info["ver"]
        if self._version(request) is None or sobject is None:
            return json_response(404, NOT_FOUND)
        field_name = sobject.canonical(request.match_info["field"])
        key = request.match_info["value"]
        values = self._json_object(body)
        if isinstance(values, web.Response):
            return values
        if field_name == "Id":
            record = self._store.find(sobject, key)
            matches = [record] if record is not None else []
            if not matches:
                return json_response(404, NOT_FOUND)
        else:
            matches = [
                r
                for r in sobject.records.values()
                if r.get(field_name) is not None and str(r[field_name]) == key
            ]
        if len(matches) > 1:
            return json_response(
                300,
                [f"/services/data/{version}/sobjects/{sobject.name}/{r['Id']}" for r in matches],
            )
        if matches:
            sobject.apply(matches[0], values)
            return json_response(
                200, {"id": matches[0]["Id"], "success": True, "errors": [], "created": False}
            )
        record_id = self._store.insert(
            sobject, {**values, sobject.register_field(field_name): key}
        )
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
