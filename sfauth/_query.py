"""SOQL queries, API version resolution and org limits on top of ``AuthSession``.

``QueryMixin`` is inherited by ``AuthSession``; it needs only the session's ``get`` and the
``_api_version`` attribute (``"latest"`` or a version such as ``"62.0"``)::

    async with AuthSession(..., api_version="latest") as sf:
        async for account in sf.query("SELECT Id, Name FROM Account", batch_size=500):
            print(account["Id"], account["Name"])
        print((await sf.limits())["DailyApiRequests"])

Pages are fetched one at a time, following ``nextRecordsUrl`` only once the records of the
current page have been consumed, and no connection is held while your loop body runs.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol

import aiohttp

from ._sobjects import _version_error, api_error
from .exceptions import APIError, ConfigurationError, NotFoundError

__all__ = [
    "LATEST",
    "MAX_BATCH_SIZE",
    "MIN_BATCH_SIZE",
    "QueryMixin",
    "normalize_api_version",
]

#: The ``api_version`` value that means "the highest version the org serves".
LATEST = "latest"
#: Bounds of the ``Sforce-Query-Options: batchSize=N`` header Salesforce accepts.
MIN_BATCH_SIZE = 200
MAX_BATCH_SIZE = 2000

_VERSION = re.compile(r"v?([0-9]{1,4})\.([0-9]{1,2})")


def normalize_api_version(value: object, *, name: str = "api_version") -> str:
    """Validate a REST API version setting and return it in canonical form.

    Args:
        value: ``"latest"`` (any case), or a version such as ``"62.0"`` or ``"v62.0"``.
        name: How the setting is named in the error message (e.g. ``"SF_API_VERSION"``).

    Returns:
        ``"latest"``, or the version without its ``v`` prefix (``"62.0"``).

    Raises:
        ConfigurationError: ``value`` is not a string in one of those forms.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == LATEST:
            return LATEST
        match = _VERSION.fullmatch(text)
        if match is not None:
            return f"{int(match[1])}.{match[2]}"
    shown = repr(value[:50]) if isinstance(value, str) else type(value).__name__
    raise ConfigurationError(
        f"{name} must be 'latest' or a REST API version such as '62.0' (or 'v62.0'); got {shown}"
    )


class _Response(Protocol):
    """What ``AuthSession.get`` returns: an async context manager of the response."""

    async def __aenter__(self) -> aiohttp.ClientResponse: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _Session(Protocol):
    """What ``QueryMixin`` needs from the class it is mixed into."""

    _api_version: str
    _api_version_latest: str | None
    _api_version_task: asyncio.Task[str] | None

    def get(self, path: str, **kwargs: Any) -> _Response: ...


class QueryMixin:
    """SOQL queries with paging, API version resolution and limits for ``AuthSession``.

    Mixed into ``AuthSession``; the class it is mixed into provides ``get(path, **kwargs)``
    (a request relative to the org's ``instance_url``) and sets ``_api_version`` to
    ``"latest"`` or a version such as ``"62.0"`` (see ``normalize_api_version``).
    """

    #: ``"latest"`` or a version such as ``"62.0"``; set by the session's constructor.
    _api_version: str = LATEST
    #: The version ``"latest"`` resolved to, once known.
    _api_version_latest: str | None = None
    #: The lookup of ``"latest"`` in progress (shared by every concurrent caller).
    _api_version_task: asyncio.Task[str] | None = None

    async def api_version_resolved(self: _Session) -> str:
        """Return the REST API version requests use, such as ``"62.0"``.

        A fixed ``api_version`` is returned as configured (without a ``v`` prefix), with no
        request. ``"latest"`` is resolved once per session from ``GET /services/data/`` (the
        highest ``version`` the org serves) and cached; concurrent first callers share that one
        request, and cancelling one of them does not cancel it for the others. A failed lookup
        is not cached: the next call tries again.

        Returns:
            The version, e.g. ``"62.0"``.

        Raises:
            ConfigurationError: ``api_version`` is malformed.
            APIError: ``GET /services/data/`` failed or listed no versions.
            TokenEndpointError: No token could be obtained (the lookup logs in first).
            TransportError: The connection failed or timed out (after allowed retries).
        """
        return await _resolve_version(self)

    def query(
        self: _Session,
        soql: str,
        *,
        batch_size: int | None = None,
        long_running: bool = False,
        low_priority: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        """Iterate over the records a SOQL query matches, page by page.

        ``GET /services/data/vXX.X/query?q=...``, then each ``nextRecordsUrl`` in turn. A page
        is requested only when the records of the previous one have all been consumed, and no
        connection is held between pages, so breaking out of the loop early costs nothing (the
        server-side cursor simply expires). Deleted and archived records are not returned; see
        ``query_all``.

        Args:
            soql: The SOQL statement, e.g. ``"SELECT Id, Name FROM Account"``.
            batch_size: Records per page to ask for (``Sforce-Query-Options: batchSize=N``),
                200 to 2000; ``None`` leaves Salesforce's default (2000). Salesforce may
                return pages of another size when that serves it better.
            long_running: Send each page as a long-running request (one of the org's
                ``fleet_limit`` leases while it is fetched); see ``AuthSession.request``.
            low_priority: Send each page as a low-priority request (``api_budget``).

        Returns:
            An async iterator of records: dicts as Salesforce sends them, including their
            ``attributes`` (``type``, ``url``) and nested relationship objects.

        Raises:
            ConfigurationError: ``soql`` is empty or ``batch_size`` is out of range (raised
                at once, before iterating).
            APIError: Salesforce answered a page with an error, for example
                ``MALFORMED_QUERY``, ``INVALID_FIELD``, ``INVALID_TYPE`` or
                ``INVALID_QUERY_LOCATOR`` (a cursor that expired); raised while iterating.
        """
        marks = {"long_running": long_running, "low_priority": low_priority}
        return _records(self, "query", _check_soql(soql), _check_batch_size(batch_size), marks)

    def query_all(
        self: _Session,
        soql: str,
        *,
        batch_size: int | None = None,
        long_running: bool = False,
        low_priority: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        """Like ``query``, but including deleted and archived records (``/queryAll``).

        Deleted records carry ``IsDeleted: true`` when that field is selected.

        Args:
            soql: The SOQL statement, e.g. ``"SELECT Id, IsDeleted FROM Account"``.
            batch_size: Records per page to ask for, 200 to 2000; ``None`` for the default.
            long_running: As for ``query``.
            low_priority: As for ``query``.

        Returns:
            An async iterator of records, as for ``query``.

        Raises:
            ConfigurationError: ``soql`` is empty or ``batch_size`` is out of range.
            APIError: Salesforce answered a page with an error; raised while iterating.
        """
        marks = {"long_running": long_running, "low_priority": low_priority}
        return _records(self, "queryAll", _check_soql(soql), _check_batch_size(batch_size), marks)

    async def limits(self: _Session) -> dict[str, Any]:
        """Return the org's limits: ``GET /services/data/vXX.X/limits``.

        Returns:
            Limit name to ``{"Max": int, "Remaining": int}`` (some entries hold more keys),
            e.g. ``limits["DailyApiRequests"]["Remaining"]``. Storage limits are in MB.

        Raises:
            APIError: Salesforce answered with an error.
        """
        version = await _resolve_version(self)
        path = f"/services/data/v{version}/limits"
        data, url = await _get_json(self, path, what="limits request")
        if not isinstance(data, dict):
            raise _shape_error("limits request", "a JSON object", url)
        return data


# ---------------------------------------------------------------------------- internals


def _check_soql(soql: object) -> str:
    if not isinstance(soql, str) or not soql.strip():
        raise ConfigurationError("soql must be a non-empty SOQL statement string")
    return soql


def _check_batch_size(batch_size: object) -> int | None:
    if batch_size is None:
        return None
    if (
        not isinstance(batch_size, int)
        or isinstance(batch_size, bool)
        or not MIN_BATCH_SIZE <= batch_size <= MAX_BATCH_SIZE
    ):
        raise ConfigurationError(
            f"batch_size must be an int from {MIN_BATCH_SIZE} to {MAX_BATCH_SIZE} (or None "
            f"for Salesforce's default); got {batch_size!r}"
        )
    return batch_size


async def _resolve_version(session: _Session) -> str:
    configured = normalize_api_version(session._api_version)
    if configured != LATEST:
        return configured
    latest = session._api_version_latest
    if latest is not None:
        return latest
    task = session._api_version_task
    if task is None or _stale(task):
        task = asyncio.ensure_future(_lookup_latest(session))
        task.add_done_callback(_retrieve_exception)
        session._api_version_task = task
    return await asyncio.shield(task)


def _stale(task: asyncio.Task[str]) -> bool:
    """A finished lookup that did not succeed, or one started in another event loop."""
    if task.get_loop() is not asyncio.get_running_loop():
        return True
    return task.done() and (task.cancelled() or task.exception() is not None)


def _retrieve_exception(task: asyncio.Task[str]) -> None:
    # Every waiter may have been cancelled: keep asyncio from logging the failure as unseen.
    if not task.cancelled():
        task.exception()


async def _lookup_latest(session: _Session) -> str:
    data, url = await _get_json(session, "/services/data/", what="API version lookup")
    versions: list[tuple[int, int, str]] = []
    if isinstance(data, list):
        for entry in data:
            version = entry.get("version") if isinstance(entry, dict) else None
            match = _VERSION.fullmatch(version) if isinstance(version, str) else None
            if match is not None:
                versions.append((int(match[1]), int(match[2]), f"{int(match[1])}.{match[2]}"))
    if not versions:
        raise _shape_error("API version lookup", "a list of {version, url} objects", url)
    latest = max(versions)[2]
    session._api_version_latest = latest
    return latest


async def _records(
    session: _Session, resource: str, soql: str, batch_size: int | None, marks: dict[str, bool]
) -> AsyncIterator[dict[str, Any]]:
    version = await _resolve_version(session)
    what = "SOQL queryAll" if resource == "queryAll" else "SOQL query"
    path: str | None = f"/services/data/v{version}/{resource}"
    kwargs: dict[str, Any] = {"params": {"q": soql}}
    if batch_size is not None:
        kwargs["headers"] = {"Sforce-Query-Options": f"batchSize={batch_size}"}
    while path is not None:
        page, url = await _get_json(session, path, what=what, **marks, **kwargs)
        kwargs = {}
        records = page.get("records") if isinstance(page, dict) else None
        if not isinstance(records, list):
            raise _shape_error(what, "a query result with 'records'", url)
        next_url = page.get("nextRecordsUrl")
        more = page.get("done") is not True and isinstance(next_url, str) and next_url
        path = next_url if more else None
        for record in records:
            yield record


async def _get_json(session: _Session, path: str, *, what: str, **kwargs: Any) -> tuple[Any, str]:
    """GET ``path``; return its JSON body and URL (no query); a typed ``APIError`` unless 200."""
    async with session.get(path, **kwargs) as resp:
        body = await resp.read()
        url = str(resp.url.with_query(None).with_fragment(None))
        if resp.status != 200:
            error = await api_error(resp, body, what=what)
            if isinstance(error, NotFoundError):  # a pinned version the org does not serve?
                error = await _version_error(session, resp, error)
            raise error
    try:
        return json.loads(body), url
    except (ValueError, RecursionError):
        pass
    raise APIError(
        f"{what} answered 200 without a JSON body",
        status=200,
        error_code=None,
        message="(a body that is not JSON)" if body else "(an empty body)",
        method="GET",
        url=url,
    )


def _shape_error(what: str, expected: str, url: str) -> APIError:
    return APIError(
        f"{what} answered 200 but not with {expected}",
        status=200,
        error_code=None,
        message="(unexpected JSON shape)",
        method="GET",
        url=url,
    )
