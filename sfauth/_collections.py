"""sObject Collections: create, update, upsert and delete any number of records, 200 a request.

``/composite/sobjects`` takes at most 200 records a request ("sObject Collections", REST API
Developer Guide); these helpers split any number into chunks of 200, send up to
``concurrency`` chunks at once through the session (one refresh, retries, limits), and return
one :class:`RecordResult` per input record, in input order. ``all_or_none`` is Salesforce's
``allOrNone``: it applies to each request of 200, not to the whole call. A create chunk that may
have reached Salesforce is never resent; update, upsert and delete chunks are idempotent and
retried like any idempotent request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ConfigurationError, SFAuthError

__all__ = ["CHUNK", "CollectionError", "RecordResult", "send_collection"]

#: Records per sObject Collections request (Salesforce's limit).
CHUNK = 200


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What happened to one record of a Collections call.

    Attributes:
        id: The record's id (``None`` when a create failed).
        success: Whether Salesforce wrote it.
        errors: Salesforce's errors for it: ``{"statusCode", "message", "fields"}`` dicts
            (``ALL_OR_NONE_OPERATION_ROLLED_BACK`` for a record rolled back with another).
        created: For upserts, whether the record was created (``None`` for other operations
            and failed records).
    """

    id: str | None
    success: bool
    errors: list[dict[str, Any]] = field(default_factory=list)
    created: bool | None = None


class CollectionError(SFAuthError):
    """Some chunks of a Collections call got no answer (the others' results are kept).

    Attributes:
        results: One entry per input record, in input order: a :class:`RecordResult`, or
            ``None`` for a record whose chunk failed as a whole.
        failures: ``(index of the chunk's first record, the error)`` for each failed chunk.
    """

    def __init__(
        self,
        description: str,
        *,
        results: list[RecordResult | None],
        failures: list[tuple[int, BaseException]],
    ) -> None:
        self.results = results
        self.failures = failures
        super().__init__(description)


def _records(records: Iterable[Any], what: str, need: str | None) -> list[dict[str, Any]]:
    """The records as a list of dicts, every one checked before anything is sent."""
    if isinstance(records, (str, bytes, Mapping)):
        raise ConfigurationError(f"{what} must be an iterable of records (dicts), not one record")
    if not isinstance(records, Iterable):
        raise ConfigurationError(
            f"{what} must be an iterable of records (dicts); got {type(records).__name__}"
        )
    checked: list[dict[str, Any]] = []
    wanted = need.lower() if need is not None else None
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ConfigurationError(
                f"{what}[{index}] must be a mapping of field names to values; "
                f"got {type(record).__name__}; nothing was sent"
            )
        if not all(isinstance(key, str) for key in record):
            raise ConfigurationError(
                f"{what}[{index}] has a field name that is not a string; nothing was sent"
            )
        if wanted is not None and all(
            k.lower() != wanted or record[k] is None or record[k] == "" for k in record
        ):
            raise ConfigurationError(
                f"{what}[{index}] has no {need!r} (any case), which this operation needs; "
                "nothing was sent"
            )
        checked.append(dict(record))
    return checked


def _ids(ids: object) -> list[str]:
    """Record ids, each 15 or 18 letters and digits (they travel in a comma-separated list)."""
    if isinstance(ids, (str, bytes)):
        raise ConfigurationError("ids must be an iterable of record ids, not one string")
    if not isinstance(ids, Iterable):
        kind = type(ids).__name__
        raise ConfigurationError(f"ids must be an iterable of record ids; got {kind}")
    checked = list(ids)
    for index, value in enumerate(checked):
        if not isinstance(value, str) or len(value) not in (15, 18) or not value.isalnum():
            raise ConfigurationError(
                f"ids[{index}] is not a Salesforce record id (15 or 18 letters and digits): "
                f"{value!r:.40}; nothing was sent"
            )
    return checked


def _chunks(items: list[Any]) -> list[tuple[int, list[Any]]]:
    return [(start, items[start : start + CHUNK]) for start in range(0, len(items), CHUNK)]


def _typed(sobject: str, record: dict[str, Any], index: int) -> dict[str, Any]:
    """The record with ``attributes.type`` set to the helper's object (its other keys kept)."""
    attributes = record.get("attributes")
    if attributes is None:
        return {"attributes": {"type": sobject}, **record}
    if not isinstance(attributes, Mapping):
        raise ConfigurationError(f"records[{index}]['attributes'] must be a mapping")
    kind = attributes.get("type", sobject)
    if not isinstance(kind, str) or kind.lower() != sobject.lower():
        raise ConfigurationError(
            f"records[{index}] is typed {kind!r} in its attributes, but this is "
            f"sf.sobject({sobject!r}); nothing was sent"
        )
    return {**record, "attributes": {**attributes, "type": sobject}}


def _body(sobject: str, chunk: list[dict[str, Any]], all_or_none: bool, start: int) -> bytes:
    records = [_typed(sobject, r, start + i) for i, r in enumerate(chunk)]
    try:
        return json.dumps(
            {"allOrNone": all_or_none, "records": records},
            allow_nan=False,
            separators=(",", ":"),
        ).encode()
    except (TypeError, ValueError) as exc:
        reason = str(exc)
    raise ConfigurationError(
        f"records {start}-{start + len(chunk) - 1} must hold JSON values (dates as ISO strings, "
        f"no NaN or infinity): {reason}; nothing was sent"
    )


def _already_deleted(result: RecordResult) -> bool:
    return not result.success and [e.get("statusCode") for e in result.errors] == [
        "ENTITY_IS_DELETED"
    ]


def _result(raw: Any) -> RecordResult:
    if not isinstance(raw, dict):
        return RecordResult(None, False, [{"statusCode": None, "message": repr(raw)[:100]}])
    errors = raw.get("errors")
    created = raw.get("created")
    return RecordResult(
        id=raw["id"] if isinstance(raw.get("id"), str) else None,
        success=raw.get("success") is True,
        errors=list(errors) if isinstance(errors, list) else [],
        created=created if isinstance(created, bool) else None,
    )


async def send_collection(
    session: Any,
    sobject: str,
    operation: str,
    records: Iterable[Any],
    *,
    external_id: str | None = None,
    all_or_none: bool,
    concurrency: int,
) -> list[RecordResult]:
    """Send ``records`` in chunks of 200; return one result per record, in input order.

    Args:
        session: The ``AuthSession``.
        sobject: The object's API name.
        operation: ``"create"``, ``"update"``, ``"upsert"`` or ``"delete"`` (records are ids).
        records: The records (or ids for ``"delete"``).
        external_id: The external id field of an upsert.
        all_or_none: Salesforce's ``allOrNone``, per request of 200.
        concurrency: Chunks in flight at once (1 to 25).

    Returns:
        The results, one per record.

    Raises:
        ConfigurationError: Bad input (checked for every record before anything is sent).
        CollectionError: Some chunks got no answer; ``results`` holds the others'.
    """
    if (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not 0 < concurrency < 26
    ):
        raise ConfigurationError(f"concurrency must be an int from 1 to 25; got {concurrency!r}")
    # Imported here: _sobjects imports this module for SObject's *_many methods.
    from ._sobjects import SObjectsMixin, _send, _shape

    if not isinstance(all_or_none, bool):
        raise ConfigurationError(f"all_or_none must be True or False; got {all_or_none!r:.40}")
    if operation == "delete":
        items: list[Any] = _ids(records)
        bodies: list[bytes | None] = [None] * len(_chunks(items))
    else:
        need = {"update": "Id", "upsert": external_id}.get(operation)
        items = _records(records, "records", need)
        bodies = [_body(sobject, c, all_or_none, s) for s, c in _chunks(items)]
    if not items:
        return []
    base = await SObjectsMixin.data_path(session, "composite", "sobjects")
    semaphore = asyncio.Semaphore(concurrency)
    results: list[RecordResult | None] = [None] * len(items)

    async def send(start: int, chunk: list[Any], body: bytes | None) -> None:
        async with semaphore:
            what = f"{operation} {sobject} records {start}-{start + len(chunk) - 1}"
            if operation == "delete":
                flag = "true" if all_or_none else "false"
                params = {"ids": ",".join(chunk), "allOrNone": flag}
                _, answer = await _send(
                    session, "DELETE", base, params=params, idempotent=True, what=what
                )
            elif operation == "create":
                _, answer = await _send(session, "POST", base, data=body, what=what)
            elif operation == "update":
                _, answer = await _send(
                    session, "PATCH", base, data=body, idempotent=True, what=what
                )
            else:
                assert external_id is not None
                path = await SObjectsMixin.data_path(
                    session, "composite", "sobjects", sobject, external_id
                )
                _, answer = await _send(
                    session, "PATCH", path, data=body, idempotent=True, what=what
                )
        if not isinstance(answer, list) or len(answer) != len(chunk):
            raise _shape(what, f"one result per record ({len(chunk)})")
        for offset, raw in enumerate(answer):
            result = _result(raw)
            if operation == "delete" and _already_deleted(result):
                # In the recycle bin: what a delete wants, also when a retry of a request
                # whose answer was lost finds its own work done.
                result = RecordResult(chunk[offset], True)
            results[start + offset] = result

    chunks = _chunks(items)
    outcomes = await asyncio.gather(
        *(send(start, chunk, body) for (start, chunk), body in zip(chunks, bodies, strict=True)),
        return_exceptions=True,
    )
    failures = [
        (start, outcome)
        for (start, _), outcome in zip(chunks, outcomes, strict=True)
        if isinstance(outcome, BaseException)
    ]
    for _, outcome in failures:
        if not isinstance(outcome, Exception):
            raise outcome  # a cancellation or exit: not a per-chunk failure
    if failures:
        lost = sum(1 for r in results if r is None)
        raise CollectionError(
            f"{operation} {sobject}: {len(failures)} of {len(chunks)} requests failed "
            f"({lost} of {len(items)} records without a result; see .failures, .results): "
            f"{failures[0][1]}",
            results=results,
            failures=failures,
        )
    return [r for r in results if r is not None]
