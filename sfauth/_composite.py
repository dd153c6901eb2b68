"""Composite: up to 25 subrequests in one API call, chained by reference ids.

``POST /services/data/vXX.X/composite`` ("Composite", REST API Developer Guide): subrequests
run in order on the server, a later one can use an earlier one's result through
``@{referenceId.path}`` (``@{newAccount.id}``, ``@{query.records[0].Id}``), and with
``all_or_none`` one failure rolls all of them back. At most 25 subrequests, and at most 5 of
them queries or sObject Collections requests; sfauth checks both, and every reference, before
sending anything::

    results = await sf.composite(
        [
            Subrequest("POST", "sobjects/Account", {"Name": "Acme"}, reference_id="account"),
            Subrequest(
                "POST",
                "sobjects/Contact",
                {"LastName": "Lovelace", "AccountId": "@{account.id}"},
                reference_id="contact",
            ),
        ],
        all_or_none=True,
    )
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .exceptions import APIError, ConfigurationError

__all__ = ["MAX_QUERIES", "MAX_SUBREQUESTS", "CompositeResult", "Subrequest", "send_composite"]

#: Subrequests per Composite request, and how many of them may be queries or Collections.
MAX_SUBREQUESTS = 25
MAX_QUERIES = 5
_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
#: Headers a subrequest may not set ("Composite": the whole request fails with 400).
_FORBIDDEN_HEADERS = frozenset({"accept", "authorization", "content-type"})
_REFERENCE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_REFERENCE = re.compile(r"@\{([A-Za-z][A-Za-z0-9_]*)\.[^}]+\}")
_QUERY_PATH = re.compile(r"(^|/)(query|queryAll)/?$|(^|/)composite/sobjects(/|$)")


@dataclass(frozen=True, slots=True)
class Subrequest:
    """One subrequest of :meth:`AuthSession.composite`.

    Attributes:
        method: ``GET``, ``POST``, ``PATCH``, ``PUT`` or ``DELETE``.
        url: A path under the session's versioned base (``"sobjects/Account"``, ``"query?q=…"``),
            a full ``/services/data/vXX.X/…`` path, or a reference to one
            (``"@{query.nextRecordsUrl}"``). May hold ``@{ref.path}`` references.
        body: The JSON body (``None`` for none); strings may hold references.
        reference_id: The name later subrequests use (``"account"``); default ``ref0``,
            ``ref1``, … by position. Letters, digits and ``_``, starting with a letter.
        headers: Extra headers of this subrequest (``httpHeaders``); not ``Accept``,
            ``Authorization`` or ``Content-Type``, which Salesforce refuses there.
    """

    method: str
    url: str
    body: Any = None
    reference_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CompositeResult:
    """The answer to one subrequest.

    Attributes:
        reference_id: The subrequest's reference id.
        status: Its HTTP status (a subrequest's failure is here, not raised).
        body: Its JSON body (Salesforce's error list for a failure; ``PROCESSING_HALTED`` for
            one rolled back or never run).
        headers: Its ``httpHeaders`` (e.g. ``Location`` of a created record).
    """

    reference_id: str
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the subrequest succeeded (a status below 300)."""
        return self.status < 300


def _check(subrequests: object) -> list[tuple[Subrequest, str]]:
    """Every subrequest with its reference id, checked against Salesforce's limits."""
    if isinstance(subrequests, (str, bytes)) or not isinstance(subrequests, Sequence):
        raise ConfigurationError("subrequests must be a list of sfauth.Subrequest")
    if not subrequests:
        raise ConfigurationError("a composite request needs at least one subrequest")
    if len(subrequests) > MAX_SUBREQUESTS:
        raise ConfigurationError(
            f"a composite request holds at most {MAX_SUBREQUESTS} subrequests; got "
            f"{len(subrequests)} (split them, or use sObject Collections or Bulk API 2.0)"
        )
    named: list[tuple[Subrequest, str]] = []
    seen: set[str] = set()
    queries = 0
    for index, sub in enumerate(subrequests):
        if not isinstance(sub, Subrequest):
            raise ConfigurationError(
                f"subrequests[{index}] must be a sfauth.Subrequest; got {type(sub).__name__}"
            )
        if not isinstance(sub.method, str) or sub.method.upper() not in _METHODS:
            raise ConfigurationError(
                f"subrequests[{index}].method {sub.method!r:.20} is not one of "
                "GET, POST, PATCH, PUT, DELETE"
            )
        if not isinstance(sub.url, str) or not sub.url:
            raise ConfigurationError(f"subrequests[{index}].url must be a non-empty string")
        if "://" in sub.url or (
            sub.url.startswith("/") and not sub.url.startswith("/services/data/")
        ):
            raise ConfigurationError(
                f"subrequests[{index}].url {sub.url!r:.60} must be relative to the versioned "
                "base (e.g. 'sobjects/Account') or start with /services/data/"
            )
        if not isinstance(sub.headers, Mapping) or any(
            not isinstance(k, str) or k.lower() in _FORBIDDEN_HEADERS for k in sub.headers
        ):
            raise ConfigurationError(
                f"subrequests[{index}].headers must be a mapping of header names, without "
                "Accept, Authorization or Content-Type (Salesforce refuses those there)"
            )
        reference = sub.reference_id if sub.reference_id is not None else f"ref{index}"
        if not _REFERENCE_ID.fullmatch(reference) or reference in seen:
            raise ConfigurationError(
                f"subrequests[{index}].reference_id {reference!r} must be unique and made of "
                "letters, digits and _, starting with a letter"
            )
        try:
            text = sub.url + " " + json.dumps(sub.body, allow_nan=False)
        except (TypeError, ValueError) as exc:  # not JSON, NaN, or a circular structure
            reason = str(exc)
        else:
            reason = ""
        if reason:
            raise ConfigurationError(
                f"subrequests[{index}].body must hold JSON values: {reason}; nothing was sent"
            )
        for used in _REFERENCE.findall(text):
            if used not in seen:
                raise ConfigurationError(
                    f"subrequests[{index}] refers to @{{{used}…}}, which no earlier subrequest "
                    "names"
                )
        seen.add(reference)
        if _QUERY_PATH.search(sub.url.partition("?")[0]):
            queries += 1
        named.append((sub, reference))
    if queries > MAX_QUERIES:
        raise ConfigurationError(
            f"a composite request holds at most {MAX_QUERIES} queries and sObject Collections "
            f"requests; got {queries}"
        )
    return named


async def send_composite(
    session: Any, subrequests: Sequence[Subrequest], *, all_or_none: bool
) -> list[CompositeResult]:
    """Send one Composite request; return one result per subrequest, in order.

    Args:
        session: The ``AuthSession``.
        subrequests: The subrequests.
        all_or_none: Roll every subrequest back when one fails.

    Returns:
        The results.

    Raises:
        ConfigurationError: Over Salesforce's limits, an unknown reference, or a body that is
            not JSON (nothing is sent).
        APIError: Salesforce refused the Composite request itself.
    """
    if not isinstance(all_or_none, bool):
        raise ConfigurationError(f"all_or_none must be True or False; got {all_or_none!r:.40}")
    named = _check(subrequests)
    # Imported here: _sobjects imports this module for AuthSession.composite.
    from ._sobjects import SObjectsMixin, _send

    base = await SObjectsMixin.data_path(session)
    requests = []
    for sub, reference in named:
        # A full path, or a reference the server turns into one, goes as it is.
        url = sub.url if sub.url.startswith(("/services/data/", "@{")) else f"{base}/{sub.url}"
        item: dict[str, Any] = {"method": sub.method.upper(), "url": url, "referenceId": reference}
        if sub.body is not None:
            item["body"] = sub.body
        if sub.headers:
            item["httpHeaders"] = dict(sub.headers)
        requests.append(item)
    try:
        data = json.dumps(
            {"allOrNone": all_or_none, "compositeRequest": requests}, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as exc:
        reason = str(exc)
    else:
        reason = ""
    if reason:
        raise ConfigurationError(f"a subrequest body must hold JSON values: {reason}")
    # Only reads can be resent safely: a write may have happened before an answer was lost.
    idempotent = all(item["method"] == "GET" for item in requests)
    _, answer = await _send(
        session, "POST", f"{base}/composite", data=data, idempotent=idempotent, what="composite"
    )
    responses = answer.get("compositeResponse") if isinstance(answer, dict) else None
    if (
        not isinstance(responses, list)
        or len(responses) != len(requests)
        or not all(
            isinstance(r, dict) and isinstance(r.get("httpStatusCode"), int) for r in responses
        )
    ):
        raise APIError(
            "composite answered without one result per subrequest",
            status=200,
            error_code=None,
            message="(unexpected body)",
            method="POST",
            url=f"{base}/composite",
        )
    return [
        CompositeResult(
            reference_id=str(r.get("referenceId")),
            status=r["httpStatusCode"],
            body=r.get("body"),
            headers=dict(r.get("httpHeaders") or {}),
        )
        for r in responses
    ]
