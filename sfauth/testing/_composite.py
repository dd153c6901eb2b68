"""Composite for the emulator: up to 25 subrequests in one call, chained by ``referenceId``.

``POST /services/data/vXX.X/composite`` with ``{"allOrNone", "compositeRequest": [{"method",
"url", "referenceId", "body"}]}`` as the REST API Developer Guide's "Composite" documents it:
subrequests run in order; ``@{ref.path}`` in a later subrequest's URL or body is replaced by a
value of an earlier one's result (``@{newAccount.id}``, ``@{query.records[0].Id}``); the answer
is ``{"compositeResponse": [{"body", "httpHeaders", "httpStatusCode", "referenceId"}]}``. With
``allOrNone`` one failure rolls every subrequest back; without it, only the subrequests that
reference a failed one fail (``PROCESSING_HALTED``). Each subrequest is answered by the same
handler as the equivalent request, without counting as an API call of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from sfauth.testing._state import NOT_FOUND, Handler, Session, json_response, rest_error
from sfauth.testing._store import RecordStore

__all__ = ["MAX_SUBREQUESTS", "CompositeApi"]

#: Subrequests per Composite request ("Composite", REST API Developer Guide).
MAX_SUBREQUESTS = 25
#: Of them, at most this many queries or sObject Collections requests.
MAX_QUERIES = 5
_REFERENCE = re.compile(r"@\{([A-Za-z][A-Za-z0-9_]*)\.([^}]+)\}")
_REFERENCE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_FORBIDDEN_HEADERS = frozenset({"accept", "authorization", "content-type"})
_PATH_STEP = re.compile(r"([A-Za-z0-9_]+)(?:\[(\d+)\])?")
_ROLLED_BACK = [
    {
        "errorCode": "PROCESSING_HALTED",
        "message": "The transaction was rolled back since another operation in the same "
        "transaction failed.",
    }
]


class _Halted(Exception):
    """A reference that cannot be resolved: the subrequest is not run."""


def _resolve(value: Any, path: str, reference: str) -> Any:
    """``records[0].Id`` in a subrequest's result body."""
    current = value
    for step in path.split("."):
        match = _PATH_STEP.fullmatch(step)
        if match is None:
            raise _Halted(reference)
        name, index = match.groups()
        if not isinstance(current, dict) or name not in current:
            raise _Halted(reference)
        current = current[name]
        if index is not None:
            if not isinstance(current, list) or int(index) >= len(current):
                raise _Halted(reference)
            current = current[int(index)]
    return current


class CompositeApi:
    """The handler of ``/composite``; the state it uses lives on the emulator."""

    _store: RecordStore

    def _version(self, request: web.Request) -> str | None:  # provided by RestApi
        raise NotImplementedError

    def _internal_router(self) -> web.UrlDispatcher:  # provided by the emulator
        raise NotImplementedError

    async def _composite(
        self, request: web.Request, session: Session | None, body: bytes
    ) -> web.Response:
        version = self._version(request)
        if version is None:
            return json_response(404, NOT_FOUND)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return rest_error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        subrequests = data.get("compositeRequest") if isinstance(data, dict) else None
        all_or_none = data.get("allOrNone", False) if isinstance(data, dict) else False
        if not isinstance(subrequests, list) or not isinstance(all_or_none, bool):
            return rest_error(
                400,
                "JSON_PARSER_ERROR",
                "The request body needs a 'compositeRequest' list (and a boolean allOrNone)",
            )
        if not subrequests:
            return rest_error(
                400, "JSON_PARSER_ERROR", "A composite request needs at least one subrequest"
            )
        if len(subrequests) > MAX_SUBREQUESTS:
            return rest_error(
                400,
                "LIMIT_EXCEEDED",
                f"A composite request can hold at most {MAX_SUBREQUESTS} subrequests",
            )
        references: set[str] = set()
        queries = 0
        for item in subrequests:
            if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("method", "url", "referenceId")
            ):
                return rest_error(
                    400,
                    "JSON_PARSER_ERROR",
                    "Every subrequest needs a method, a url and a referenceId",
                )
            if item["referenceId"] in references or not _REFERENCE_ID.fullmatch(
                item["referenceId"]
            ):
                return rest_error(
                    400,
                    "INVALID_REFERENCE_ID",
                    f"referenceId {item['referenceId']!r:.40} must be unique, and letters, "
                    "digits and _ starting with a letter",
                )
            if item["method"] not in _METHODS:
                return rest_error(
                    400,
                    "METHOD_NOT_ALLOWED",
                    f"Subrequest method {item['method']!r:.20} is not one of "
                    "GET, POST, PUT, PATCH, DELETE (case-sensitive)",
                )
            headers = item.get("httpHeaders")
            if isinstance(headers, dict) and any(
                str(k).lower() in _FORBIDDEN_HEADERS for k in headers
            ):
                return rest_error(
                    400,
                    "INVALID_HEADER",
                    "A subrequest cannot set Accept, Authorization or Content-Type",
                )
            if re.search(r"/composite/?(\?|$)", item["url"]):
                return rest_error(
                    400, "INVALID_URL", "A composite request cannot hold a composite request"
                )
            references.add(item["referenceId"])
            path = item["url"].partition("?")[0]
            if re.search(r"/(query|queryAll)/?$|/composite/sobjects", path):
                queries += 1
        if queries > MAX_QUERIES:
            return rest_error(
                400,
                "LIMIT_EXCEEDED",
                f"A composite request can hold at most {MAX_QUERIES} queries and sObject "
                "Collections requests",
            )
        assert session is not None
        answers: list[dict[str, Any]] = []
        bodies: dict[str, Any] = {}
        failed: set[str] = set()
        with self._store.transaction() as transaction:
            for item in subrequests:
                reference = item["referenceId"]
                try:
                    url = _substitute(item["url"], bodies, failed)
                    sub_body = _substitute(item.get("body"), bodies, failed)
                except RecursionError:
                    failed.add(reference)
                    answers.append(
                        _answer(
                            reference,
                            400,
                            [{"errorCode": "JSON_PARSER_ERROR", "message": "nested too deeply"}],
                        )
                    )
                    continue
                except _Halted as halted:
                    failed.add(reference)
                    answers.append(
                        _answer(
                            reference,
                            400,
                            [
                                {
                                    "errorCode": "PROCESSING_HALTED",
                                    "message": f"Invalid reference specified. No value for "
                                    f"{halted} found in the results of an earlier subrequest.",
                                }
                            ],
                        )
                    )
                    continue
                if not isinstance(url, str):
                    url = json.dumps(url)
                collection = "/composite/sobjects" in url.partition("?")[0]
                if all_or_none and collection and isinstance(sub_body, dict):
                    # The Composite's allOrNone overrides its Collections requests' own
                    # ("allOrNone Parameters in Composite and Collections Requests").
                    sub_body = {**sub_body, "allOrNone": True}
                status, result, headers = await self._subrequest(
                    request, session, item["method"], url, sub_body, item
                )
                partial = (
                    collection
                    and isinstance(result, list)
                    and any(isinstance(r, dict) and r.get("success") is False for r in result)
                )
                if status >= 400 or (all_or_none and partial):
                    failed.add(reference)
                else:
                    bodies[reference] = result
                answers.append(_answer(reference, status, result, headers))
            if all_or_none and failed:
                transaction.rollback()
                answers = [  # the failures keep their own answers
                    a
                    if a["referenceId"] in failed
                    else _answer(a["referenceId"], 400, _ROLLED_BACK)
                    for a in answers
                ]
        return json_response(200, {"compositeResponse": answers})

    async def _subrequest(
        self,
        request: web.Request,
        session: Session,
        method: str,
        url: str,
        body: Any,
        item: dict[str, Any],
    ) -> tuple[int, Any, dict[str, str]]:
        if not url.startswith("/services/data/"):
            return (
                400,
                [{"errorCode": "NOT_FOUND", "message": "URL must start with /services/data/"}],
                {},
            )
        headers = CIMultiDict(request.headers)
        extra = item.get("httpHeaders")
        if isinstance(extra, dict):
            headers.update({str(k): str(v) for k, v in extra.items()})
        raw = b"" if body is None else json.dumps(body).encode()
        probe = make_mocked_request(method, url, headers=headers)
        match = await self._internal_router().resolve(probe)
        handler = getattr(match.handler, "emulator_handler", None)
        if handler is None:  # no route: 404, or 405 for another method
            status = getattr(match.http_exception, "status", 404)
            return status, NOT_FOUND, {}
        inner = make_mocked_request(method, url, headers=headers, match_info=dict(match))
        response = await handler(inner, session, raw)
        text = response.body if isinstance(response.body, bytes) else b""
        result = json.loads(text) if text else None
        shown = {k: v for k, v in response.headers.items() if k.lower() == "location"}
        if (
            method == "POST"
            and response.status == 201
            and isinstance(result, dict)
            and "id" in result
        ):
            shown.setdefault("Location", f"{url.partition('?')[0].rstrip('/')}/{result['id']}")
        return response.status, result, shown


def _answer(
    reference: str, status: int, body: Any, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "body": body,
        "httpHeaders": headers or {},
        "httpStatusCode": status,
        "referenceId": reference,
    }


def _substitute(value: Any, bodies: dict[str, Any], failed: set[str]) -> Any:
    """Replace every ``@{ref.path}`` in ``value`` (a URL, or a JSON body at any depth)."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> Any:
            reference, path = match.group(1), match.group(2)
            shown = f"{reference}.{path}"
            if reference in failed or reference not in bodies:
                raise _Halted(shown)
            resolved = _resolve(bodies[reference], path, shown)
            if resolved is None or isinstance(resolved, (dict, list)):
                raise _Halted(shown)  # no value to put there
            return resolved

        whole = _REFERENCE.fullmatch(value)
        if whole is not None:
            return lookup(whole)  # the value itself: keeps its JSON type

        def one(match: re.Match[str]) -> str:
            resolved = lookup(match)
            return resolved if isinstance(resolved, str) else json.dumps(resolved)

        return _REFERENCE.sub(one, value)
    if isinstance(value, dict):
        return {k: _substitute(v, bodies, failed) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, bodies, failed) for v in value]
    return value


def internal_route(name: str, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
    """A route target of the internal router that carries the real handler (never called)."""

    async def target(request: web.Request) -> Any:  # pragma: no cover - resolved, not called
        raise web.HTTPNotFound

    target.emulator_handler = handler  # type: ignore[attr-defined]
    target.emulator_name = name  # type: ignore[attr-defined]
    return target
