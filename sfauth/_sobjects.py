"""sObject records on the session: create, read, update, upsert, delete, describe; typed errors.

``SObjectsMixin`` is inherited by ``AuthSession``. Every call builds its path on the session's
resolved ``api_version`` and goes through the session, so it shares the single-flight refresh,
the 401 replay, the retry policy and origin scoping. Reads, updates, upserts and deletes are
idempotent and retried; a create is not resent once it may have reached Salesforce ("sObject
Rows", "sObject Rows by External ID", "sObject Describe", REST API Developer Guide)::

    async with AuthSession(...) as sf:
        account = sf.sobject("Account")
        record_id = await account.create({"Name": "Acme"})
        await account.update(record_id, {"Industry": "Banking"})
        result = await account.upsert("External_Id__c", "A-1", {"Name": "Acme"})
        print(result.id, result.created)
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from ._bodies import first_error, salesforce_errors
from ._collections import RecordResult, send_collection
from ._composite import CompositeResult, Subrequest, send_composite
from .exceptions import (
    APIError,
    APIVersionError,
    ConfigurationError,
    ForbiddenError,
    MalformedRequestError,
    MultipleRecordsError,
    NotFoundError,
    TransientAPIError,
    TransportError,
)

__all__ = ["SObject", "SObjectsMixin", "UpsertResult", "api_error"]

_DATA = "/services/data/"
#: Statuses that may succeed later (``TransientAPIError``): what the retry policy retries.
_TRANSIENT = frozenset({429, 500, 502, 503, 504})
_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What an upsert did.

    Attributes:
        id: The 18-character id of the record created or updated.
        created: ``True`` when the upsert created the record, ``False`` when it updated one.
    """

    id: str
    created: bool


class _Session(Protocol):
    """What ``SObjectsMixin`` needs from the class it is mixed into."""

    _describes: dict[str, asyncio.Task[dict[str, Any]]]

    async def api_version_resolved(self) -> str: ...

    def request(self, method: str, path: str, *, idempotent: bool = ..., **kwargs: Any) -> Any: ...

    def get(self, path: str, **kwargs: Any) -> Any: ...


def _segment(value: object, what: str) -> str:
    """Check one path segment: a non-empty string, not ``.`` or ``..`` (``data_path`` encodes it).

    ``.`` and ``..`` survive percent-encoding and would move the request to another resource.
    """
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty string; got {_shown(value)}")
    if value in (".", ".."):
        raise ConfigurationError(f"{what} cannot be {value!r}: it would name another resource")
    return value


def _record_id(value: object) -> str:
    """Check a record id: 15 or 18 letters and digits (anything else is not a record's path)."""
    if not isinstance(value, str) or len(value) not in (15, 18) or not value.isalnum():
        raise ConfigurationError(
            f"record_id must be a Salesforce record id (15 or 18 letters and digits); got "
            f"{_shown(value)}; nothing was sent"
        )
    return value


#: An object's API name: a letter, then letters, digits and underscores (``Invoice__c``).
_OBJECT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _shown(value: object) -> str:
    """A value for a message: its repr, at most 60 characters (no newlines, bounded)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _record(values: object, what: str) -> bytes:
    """A record as the JSON body Salesforce reads, checked before anything is sent."""
    if not isinstance(values, Mapping):
        raise ConfigurationError(
            f"{what} must be a mapping of field names to values; got {type(values).__name__}"
        )
    try:
        return json.dumps(dict(values), allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        reason = str(exc)  # e.g. "Object of type datetime is not JSON serializable"
    raise ConfigurationError(
        f"{what} must hold JSON values (str, int, float, bool, None, lists and dicts; dates "
        f"as ISO strings, no NaN or infinity): {reason}"
    )


async def api_error(
    response: aiohttp.ClientResponse, body: bytes | None = None, *, what: str | None = None
) -> APIError:
    """Build the typed error for a non-2xx response, from Salesforce's error body.

    The error carries the status, Salesforce's ``errorCode``, ``message`` and ``fields`` of
    its first error and every error in ``errors``, the method and the URL without its query
    string: never a request header (aiohttp's own ``raise_for_status()`` error holds the
    request's headers, bearer included).

    Args:
        response: The response (its body is read unless given).
        body: The response body, if already read.
        what: What was attempted, for the message (default ``"METHOD path"``).

    Returns:
        :class:`MalformedRequestError` (400), :class:`MultipleRecordsError` (300, with the
        matching records' ``urls``), :class:`ForbiddenError` (403), :class:`NotFoundError`
        (404), or :class:`APIError` for other statuses.
    """
    if body is None:
        body = await response.read()
    url = str(response.url.with_query(None).with_fragment(None))
    method = response.method
    parsed = salesforce_errors(body)
    errors = parsed or []
    code, message = first_error(errors)
    if parsed is None:
        message = "(a body that is not JSON)" if body else "(an empty body)"
    kw: dict[str, Any] = {
        "status": response.status,
        "error_code": code,
        "message": message,
        "method": method,
        "url": url,
        "fields": list(errors[0]["fields"]) if errors else [],
        "errors": errors,
    }
    description = f"{what or method + ' ' + response.url.path} failed"
    status = response.status
    if status == 300:
        urls = _urls(body)
        written = "; nothing was written" if method in ("PATCH", "POST") else ""
        kw["message"] = f"{len(urls)} records match (Salesforce lists their URLs)"
        return MultipleRecordsError(
            f"{what or method + ' ' + response.url.path} matched {len(urls)} records{written}",
            urls=urls,
            **kw,
        )
    if status in _TRANSIENT:
        return TransientAPIError(description, **kw)
    if status == 400:
        return MalformedRequestError(description, **kw)
    if status == 403:
        return ForbiddenError(description, **kw)
    if status == 404:
        return NotFoundError(description, **kw)
    return APIError(description, **kw)


def _urls(body: bytes) -> list[str]:
    """The record URLs of a 300 answer (Salesforce lists them as a JSON array of strings)."""
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return []
    return [u for u in data if isinstance(u, str)] if isinstance(data, list) else []


class SObjectsMixin:
    """sObject helpers, typed errors and versioned paths for ``AuthSession``."""

    #: Describe fetches per session, by lower-case object name (``""``: describe global).
    _describes: dict[str, asyncio.Task[dict[str, Any]]]
    #: The versions the org serves, once a 404 of a pinned version made sfauth ask.
    _served_versions: list[str] | None = None

    async def data_path(self: _Session, *segments: str) -> str:
        """Return ``/services/data/vXX.X/`` plus ``segments``, each percent-encoded.

        Built on the session's resolved ``api_version`` (``"latest"`` is looked up once), for
        raw requests: ``await sf.get(await sf.data_path("sobjects", "Account", record_id))``.

        Args:
            segments: Path segments, e.g. ``"sobjects", "Account"``; each is encoded as one
                segment (a ``/`` inside one becomes ``%2F``).

        Returns:
            The path, e.g. ``"/services/data/v62.0/sobjects/Account"``.

        Raises:
            ConfigurationError: A segment is not a non-empty string.
            APIError: ``"latest"`` could not be resolved (see ``api_version_resolved``).
        """
        version = await self.api_version_resolved()
        # One segment each: an external id may hold "/", "?" or "#".
        encoded = [quote(_segment(s, "a path segment"), safe="") for s in segments]
        return "/".join([f"{_DATA}v{version}", *encoded])

    async def raise_for_status(self: _Session, response: aiohttp.ClientResponse) -> None:
        """Raise the typed error of a non-2xx response from ``sf.get``/``sf.post``/…; else nothing.

        Unlike aiohttp's ``raise_for_status()``, whose error holds the request headers (the
        bearer token among them), the error carries only the status, Salesforce's
        ``errorCode``, ``message``, ``fields`` and ``errors``, the method and the URL without
        its query string. A 404 from a pinned ``api_version`` the org does not serve is an
        :class:`APIVersionError` that names the versions it does (one ``GET /services/data/``
        to find out).

        Args:
            response: A response of this session (its body is read when it is an error).

        Raises:
            MalformedRequestError: 400.
            MultipleRecordsError: 300 (an upsert matched several records).
            ForbiddenError: 403.
            NotFoundError: 404 (``APIVersionError`` for an unserved pinned version).
            APIError: Any other status of 300 or more.
        """
        if response.status < 300 or response.status == 304:  # 304: not modified, not a failure
            return
        error = await api_error(response, await _read(response))
        if isinstance(error, NotFoundError):
            error = await _version_error(self, response, error)
        raise error

    def sobject(self, name: str) -> SObject:
        """Return the helpers for one sObject type (no request is made).

        Args:
            name: The object's API name, e.g. ``"Account"`` or ``"Invoice__c"``.

        Returns:
            An :class:`SObject` bound to this session.

        Raises:
            ConfigurationError: ``name`` is not an API name.
        """
        if not isinstance(name, str) or not _OBJECT_NAME.fullmatch(name):
            raise ConfigurationError(
                f"the sObject name must be an API name such as 'Account' or 'Invoice__c' "
                f"(a letter, then letters, digits and underscores); got {_shown(name)}"
            )
        return SObject(self, name)

    async def describe_global(self: _Session, *, refresh: bool = False) -> dict[str, Any]:
        """Return ``GET /sobjects`` (describe global), cached for the session.

        Args:
            refresh: Fetch it again instead of using the cached body.

        Returns:
            The body: ``encoding``, ``maxBatchSize`` and ``sobjects`` (one entry per object).

        Raises:
            APIError: The request failed (typed as in ``raise_for_status``).
        """

        async def fetch() -> dict[str, Any]:
            path = await SObjectsMixin.data_path(self, "sobjects")
            body: dict[str, Any] = await _json(self, "GET", path, what="describe global")
            return body

        return copy.deepcopy(await _described(self, "", fetch, refresh))

    async def composite(
        self, subrequests: Sequence[Subrequest], *, all_or_none: bool = False
    ) -> list[CompositeResult]:
        """Send up to 25 subrequests as one Composite request (one API call).

        ``POST /composite``. Subrequests run in order; ``@{referenceId.path}`` in a later one's
        ``url`` or ``body`` uses an earlier one's result (``@{account.id}``). Limits are
        checked before anything is sent: at most 25 subrequests, at most 5 of them queries or
        sObject Collections requests, and every reference must name an earlier subrequest.
        Retried only when every subrequest is a read.

        Args:
            subrequests: :class:`Subrequest` values.
            all_or_none: Roll every subrequest back when one fails.

        Returns:
            One :class:`CompositeResult` per subrequest, in order; a subrequest's failure is
            in its ``status`` and ``body``, not raised.

        Raises:
            ConfigurationError: Over the limits, an unknown reference, a non-JSON body.
            APIError: Salesforce refused the Composite request itself.
        """
        return await send_composite(self, subrequests, all_or_none=all_or_none)

    def forget_describes(self) -> None:
        """Drop every cached describe body (after a deployment changed the org's schema)."""
        _cache(self).clear()


class SObject:
    """The record operations of one sObject type, on one session (``sf.sobject(name)``)."""

    __slots__ = ("_session", "name")

    def __init__(self, session: Any, name: str) -> None:
        self._session = session
        #: The object's API name, as given.
        self.name = name

    def __repr__(self) -> str:
        return f"SObject({self.name!r})"

    async def _path(self, *segments: str) -> str:
        return await SObjectsMixin.data_path(self._session, "sobjects", self.name, *segments)

    async def create(self, record: Mapping[str, Any]) -> str:
        """Insert one record (``POST /sobjects/{name}``) and return its id.

        Not retried once it may have reached Salesforce: a resent create could insert the
        record twice (use :meth:`upsert` with an external id for exactly-once writes).

        Args:
            record: Field values, e.g. ``{"Name": "Acme"}``.

        Returns:
            The new record's 18-character id.

        Raises:
            ConfigurationError: ``record`` is not a mapping.
            MalformedRequestError: Salesforce refused it (``REQUIRED_FIELD_MISSING``,
                ``INVALID_FIELD``…; see ``error_code`` and ``fields``).
            NotFoundError: No such object.
            APIError: Another refusal.
        """
        data = _record(record, "record")
        what = f"create {self.name}"
        body = await _json(self._session, "POST", await self._path(), data=data, what=what)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise _shape(what, "the new record's id (the record may have been created)")
        return str(body["id"])

    async def get(self, record_id: str, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """Read one record (``GET /sobjects/{name}/{id}``), all fields or ``fields``.

        Args:
            record_id: The 15- or 18-character id.
            fields: Field names to return (default: every field).

        Returns:
            The record, with ``attributes``.

        Raises:
            NotFoundError: No such record (``NOT_FOUND``), or it is deleted
                (``ENTITY_IS_DELETED``).
            MalformedRequestError: An unknown field in ``fields``.
        """
        params = _params(fields)
        path = await self._path(_record_id(record_id))
        what = f"get {self.name} {_shown(record_id)}"
        return _object(await _json(self._session, "GET", path, params=params, what=what), what)

    async def get_by(
        self, field: str, value: str, fields: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Read one record by an external id (``GET /sobjects/{name}/{field}/{value}``).

        Args:
            field: An external id field (or another ``idLookup`` field).
            value: Its value.
            fields: Field names to return (default: every field).

        Returns:
            The record, with ``attributes``.

        Raises:
            NotFoundError: No match, or ``field`` is not an external id.
            MultipleRecordsError: Several records match.
        """
        params = _params(fields)
        path = await self._path(_segment(field, "field"), _segment(value, "value"))
        what = f"get {self.name} by {_shown(field)}"
        return _object(await _json(self._session, "GET", path, params=params, what=what), what)

    async def update(self, record_id: str, record: Mapping[str, Any]) -> None:
        """Update one record (``PATCH /sobjects/{name}/{id}``); retried (idempotent).

        Args:
            record_id: The record's id.
            record: The fields to change.

        Raises:
            NotFoundError: No such record, or it is deleted.
            MalformedRequestError: Salesforce refused a value.
        """
        data = _record(record, "record")
        path = await self._path(_record_id(record_id))
        what = f"update {self.name} {_shown(record_id)}"
        await _json(self._session, "PATCH", path, data=data, idempotent=True, what=what)

    async def upsert(self, field: str, value: str, record: Mapping[str, Any]) -> UpsertResult:
        """Create or update the record whose external id ``field`` is ``value``; retried.

        ``PATCH /sobjects/{name}/{field}/{value}``: Salesforce updates the one matching record
        or creates one, so resending it is safe.

        Args:
            field: An external id field of the object.
            value: The external id.
            record: The other field values (not ``field`` itself).

        Returns:
            The record's id and whether it was created.

        Raises:
            MultipleRecordsError: Several records have that external id (nothing written).
            NotFoundError: ``field`` is not an external id field of the object.
            MalformedRequestError: Salesforce refused a value.
        """
        data = _record(record, "record")
        for key, given in record.items():
            if isinstance(key, str) and key.lower() == str(field).lower() and given != value:
                raise ConfigurationError(
                    f"record has {key}={_shown(given)}, but the upsert is by {field}="
                    f"{_shown(value)}; leave the field out of the record (the URL sets it)"
                )
        version = await self._session.api_version_resolved()
        if _version_tuple(version) < (46, 0):
            raise ConfigurationError(
                f"upsert needs API version 46.0 or later (this session uses {version}): "
                "older versions answer an update without the record's id"
            )
        path = await self._path(_segment(field, "field"), _segment(value, "value"))
        what = f"upsert {self.name} by {_shown(field)}"
        status, body = await _send(
            self._session, "PATCH", path, data=data, idempotent=True, what=what
        )
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise _shape(what, "the record's id (the write may have happened)")
        # 201 is a create (the body's "created" says so too from 46.0 on).
        return UpsertResult(body["id"], status == 201)

    async def delete(self, record_id: str) -> None:
        """Delete one record (``DELETE /sobjects/{name}/{id}``; to the recycle bin); retried.

        Args:
            record_id: The record's id.

        A record already in the recycle bin counts as deleted (so a retry after a lost answer
        does not fail); a record that does not exist at all raises.

        Raises:
            NotFoundError: No such record (``NOT_FOUND``).
        """
        path = await self._path(_record_id(record_id))
        what = f"delete {self.name} {_shown(record_id)}"
        try:
            await _json(self._session, "DELETE", path, idempotent=True, what=what)
        except NotFoundError as exc:
            # Already in the recycle bin: what a delete wants, also when a retry of a delete
            # whose answer was lost finds its own work done.
            if exc.error_code != "ENTITY_IS_DELETED":
                raise

    async def create_many(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        all_or_none: bool = False,
        concurrency: int = 4,
    ) -> list[RecordResult]:
        """Insert any number of records with sObject Collections, 200 a request.

        ``POST /composite/sobjects``. A chunk that may have reached Salesforce is never resent
        (it could insert its records twice): its records get no result and the call raises
        :class:`CollectionError` once every other chunk is done.

        Args:
            records: Field values of each record.
            all_or_none: Salesforce's ``allOrNone``, applied to each request of 200: one
                invalid record fails the other 199 of its request, not the whole call.
            concurrency: Requests in flight at once (1 to 25).

        Returns:
            One :class:`RecordResult` per record, in input order (``success`` False with
            Salesforce's ``errors`` for a record it refused).

        Raises:
            ConfigurationError: A record is not a mapping or holds a non-JSON value (checked
                for every record before anything is sent).
            CollectionError: Some requests got no answer; ``results`` holds the rest.
        """
        return await send_collection(
            self._session,
            self.name,
            "create",
            records,
            all_or_none=all_or_none,
            concurrency=concurrency,
        )

    async def update_many(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        all_or_none: bool = False,
        concurrency: int = 4,
    ) -> list[RecordResult]:
        """Update any number of records (each with its ``Id``), 200 a request; retried.

        ``PATCH /composite/sobjects``.

        Args:
            records: The fields to change, each with the record's ``Id``.
            all_or_none: Salesforce's ``allOrNone``, per request of 200.
            concurrency: Requests in flight at once (1 to 25).

        Returns:
            One :class:`RecordResult` per record, in input order.

        Raises:
            ConfigurationError: A record is not a mapping or has no ``Id``.
            CollectionError: Some requests got no answer after their retries.
        """
        return await send_collection(
            self._session,
            self.name,
            "update",
            records,
            all_or_none=all_or_none,
            concurrency=concurrency,
        )

    async def upsert_many(
        self,
        field: str,
        records: Iterable[Mapping[str, Any]],
        *,
        all_or_none: bool = False,
        concurrency: int = 4,
    ) -> list[RecordResult]:
        """Create or update any number of records by an external id, 200 a request; retried.

        ``PATCH /composite/sobjects/{name}/{field}``; each record carries ``field``. Two
        records of one request with the same external id both fail with
        ``DUPLICATE_EXTERNAL_ID`` (Salesforce's rule).

        Args:
            field: The external id field.
            records: Field values of each record, ``field`` included.
            all_or_none: Salesforce's ``allOrNone``, per request of 200.
            concurrency: Requests in flight at once (1 to 25).

        Returns:
            One :class:`RecordResult` per record, in input order, with ``created``.

        Raises:
            ConfigurationError: A record is not a mapping or lacks ``field``.
            CollectionError: Some requests got no answer after their retries.
        """
        _segment(field, "field")
        return await send_collection(
            self._session,
            self.name,
            "upsert",
            records,
            external_id=field,
            all_or_none=all_or_none,
            concurrency=concurrency,
        )

    async def delete_many(
        self, ids: Iterable[str], *, all_or_none: bool = False, concurrency: int = 4
    ) -> list[RecordResult]:
        """Delete any number of records by id, 200 a request; retried.

        ``DELETE /composite/sobjects?ids=…&allOrNone=…``.

        Args:
            ids: Record ids.
            all_or_none: Salesforce's ``allOrNone``, per request of 200.
            concurrency: Requests in flight at once (1 to 25).

        Returns:
            One :class:`RecordResult` per id, in input order.

        Raises:
            ConfigurationError: An id is not a non-empty string.
            CollectionError: Some requests got no answer after their retries.
        """
        return await send_collection(
            self._session,
            self.name,
            "delete",
            ids,
            all_or_none=all_or_none,
            concurrency=concurrency,
        )

    async def describe(self, *, refresh: bool = False) -> dict[str, Any]:
        """Return ``GET /sobjects/{name}/describe``, cached for the session.

        Args:
            refresh: Fetch it again instead of using the cached body.

        Returns:
            The describe body (``fields``, ``childRelationships``, ``keyPrefix``…).

        Raises:
            NotFoundError: No such object.
        """

        async def fetch() -> dict[str, Any]:
            path = await self._path("describe")
            body: dict[str, Any] = await _json(
                self._session, "GET", path, what=f"describe {self.name}"
            )
            return body

        return copy.deepcopy(await _described(self._session, self.name.lower(), fetch, refresh))


def _params(fields: Sequence[str] | None) -> dict[str, str] | None:
    """``?fields=`` for a field list (``None``: every field)."""
    if fields is None:
        return None
    names = list(fields) if not isinstance(fields, (str, Mapping)) else None
    if not names or not all(isinstance(f, str) and f for f in names):
        raise ConfigurationError(
            "fields must be a non-empty sequence of field names, e.g. ['Id', 'Name'] "
            "(or None for every field)"
        )
    return {"fields": ",".join(names)}


def _version_tuple(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _shape(what, "a JSON object")
    return body


def _shape(what: str, expected: str) -> APIError:
    return APIError(
        f"{what} answered without {expected}",
        status=200,
        error_code=None,
        message="(unexpected body)",
        method="-",
        url="-",
    )


def _cache(session: Any) -> dict[str, asyncio.Task[dict[str, Any]]]:
    cache: dict[str, asyncio.Task[dict[str, Any]]] | None = getattr(session, "_describes", None)
    if cache is None:
        cache = {}
        session._describes = cache
    return cache


async def _described(
    session: Any,
    key: str,
    fetch: Callable[[], Awaitable[dict[str, Any]]],
    refresh: bool,
) -> dict[str, Any]:
    """A describe body, fetched once per session and key however many ask at once.

    Concurrent callers share one request (a cancelled caller does not cancel it for the
    others); a failed fetch is not kept, so the next call tries again.
    """
    cache = _cache(session)
    task = cache.get(key)
    stale = task is not None and (
        task.get_loop() is not asyncio.get_running_loop()
        or (task.done() and (task.cancelled() or task.exception() is not None))
    )
    if task is None or stale or (refresh and task.done()):
        task = asyncio.ensure_future(fetch())
        task.add_done_callback(_retrieve_exception)
        cache[key] = task
    return await asyncio.shield(task)


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    # Every waiter may have been cancelled: keep asyncio from logging the failure as unseen.
    if not task.cancelled():
        task.exception()


async def _json(session: Any, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
    """Send one request; return its JSON body (``None`` for an empty one); raise typed errors."""
    return (await _send(session, method, path, what=what, **kwargs))[1]


async def _send(
    session: Any,
    method: str,
    path: str,
    *,
    what: str,
    idempotent: bool = False,
    data: bytes | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """Send one request; return its status and JSON body; raise the typed error of a refusal."""
    if data is not None:
        kwargs["data"] = data
        kwargs["headers"] = _JSON
    async with session.request(method, path, idempotent=idempotent, **kwargs) as response:
        body = await _read(response)
        status = response.status
        url = str(response.url.with_query(None))
        if status >= 300:
            error = await api_error(response, body, what=what)
            if isinstance(error, NotFoundError):
                error = await _version_error(session, response, error)
            raise error
    if not body:
        return status, None
    try:
        return status, json.loads(body)
    except (ValueError, RecursionError):
        pass  # raised below, outside the except: the body stays out of __context__
    raise APIError(
        f"{what} answered {status} without a JSON body",
        status=status,
        error_code=None,
        message="(a body that is not JSON)",
        method=method,
        url=url,
    )


async def _read(response: aiohttp.ClientResponse) -> bytes:
    """The response body; a connection lost while reading it is a ``TransportError``."""
    try:
        return await response.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        reason = type(exc).__name__
    raise TransportError(
        "the connection was lost while reading the answer",
        method=response.method,
        url=str(response.url.with_query(None)),
        reason=reason,
        sent=True,
    )


async def _version_error(
    session: Any, response: aiohttp.ClientResponse, error: NotFoundError
) -> NotFoundError:
    """An ``APIVersionError`` when a 404 came from a pinned version the org does not serve.

    The org's versions are listed once per session (``GET /services/data/``), on the first 404
    of a pinned version; a session on ``"latest"`` never asks (its version is served).
    """
    path = response.url.path
    if not path.startswith(_DATA + "v") or getattr(session, "_api_version", "") == "latest":
        return error
    version = path[len(_DATA) + 1 :].partition("/")[0]
    served: list[str] | None = getattr(session, "_served_versions", None)
    if served is None:
        try:
            async with session.get(_DATA, idempotent=True) as listing:
                listed = await listing.read() if listing.status == 200 else b""
            data = json.loads(listed) if listed else []
        except Exception:
            return error
        if not isinstance(data, list):
            return error
        served = sorted(
            (str(v["version"]) for v in data if isinstance(v, dict) and "version" in v),
            key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()),
        )
        session._served_versions = served
    if not served or version in served:
        return error
    return APIVersionError(
        f"API version {version} is not served by this org; it serves up to {served[-1]} "
        f"(set api_version='{served[-1]}' or 'latest')",
        version=version,
        served=list(served),
        status=error.status,
        error_code=error.error_code,
        message=error.message,
        method=error.method,
        url=error.url,
        fields=error.fields,
        errors=error.errors,
    )
