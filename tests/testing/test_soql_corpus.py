"""A table-driven SOQL conformance corpus for the emulator's query engine.

Every case is a statement with either the exact REST body Salesforce answers (records with their
``attributes``, in order, and ``totalSize``) or the ``errorCode`` of its 400 answer. The expected
answers come from Salesforce's documented SOQL semantics (see tests/testing/soql_corpus_data.py
for the data set and the date-literal ranges of the frozen clock), not from the emulator.

One emulator serves the whole module: it is seeded once, and the record ``AX`` is deleted over
HTTP (``DELETE /sobjects/Account/{id}``) before any query, so ``/query`` must never see it and
``/queryAll`` must (with ``IsDeleted: true``).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import pytest
import pytest_asyncio

from sfauth.testing import Emulator
from tests.testing.soql_corpus_data import CASES, DELETED, NOW, SEED, Case, V, World

pytestmark = pytest.mark.asyncio(loop_scope="module")

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ERROR_CODES = {"MALFORMED_QUERY", "INVALID_FIELD", "INVALID_TYPE", "EMULATOR_UNSUPPORTED"}


@dataclass
class Org:
    emu: Emulator
    http: aiohttp.ClientSession
    token: str
    world: World

    async def run(self, endpoint: str, soql: str) -> tuple[int, Any]:
        async with self.http.get(
            f"{self.emu.url}{V}/{endpoint}",
            params={"q": soql},
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            return response.status, await response.json(content_type=None)


def _resolve(values: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    return {
        name: ids[value[1:]] if isinstance(value, str) and value.startswith("@") else value
        for name, value in values.items()
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def org() -> AsyncIterator[Org]:
    emu = Emulator(default_accounts=0, page_size=2000, now=lambda: NOW)
    await emu.start()
    try:
        creds = emu.create_credentials(username="corpus@example.com")
        emu.schema.add_object(
            "Invoice__c",
            {
                "Amount__c": "currency",
                "Tags__c": "multipicklist",
                "Paid__c": "boolean",
                "Units__c": "int",
                "Due__c": "date",
            },
        )
        emu.schema.add_field(
            "Invoice__c",
            "Account__c",
            "reference",
            reference_to="Account",
            child_relationship="Invoices__r",
        )
        ids: dict[str, str] = {}
        for key, (sobject, values) in SEED.items():  # parents come before their children
            [ids[key]] = emu.seed(sobject, [_resolve(values, ids)])
        async with aiohttp.ClientSession() as http:
            assertion = jwt.encode(
                {
                    "iss": creds.client_id,
                    "sub": creds.username,
                    "aud": creds.audience,
                    "exp": int(time.time()) + 300,
                },
                creds.private_key_pem,
                algorithm="RS256",
            )
            async with http.post(
                creds.login_url + "/services/oauth2/token",
                data={"grant_type": JWT_BEARER, "assertion": assertion},
            ) as response:
                assert response.status == 200, await response.text()
                token = (await response.json())["access_token"]
            for key in DELETED:
                sobject = SEED[key][0]
                async with http.delete(
                    f"{emu.url}{V}/sobjects/{sobject}/{ids[key]}",
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    assert response.status == 204, await response.text()
            yield Org(emu, http, token, World(ids))
    finally:
        await emu.stop()


def _has_outer_order_by(soql: str) -> bool:
    """Whether the statement outside any parenthesised subquery has ORDER BY."""
    depth = 0
    outer = []
    for char in soql:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0:
            outer.append(char)
    return "ORDER BY" in " ".join("".join(outer).upper().split())


def _canonical(record: Any) -> str:
    return json.dumps(record, sort_keys=True)


def _key_order(value: Any) -> Any:
    """The keys of every object in a body, in order (Salesforce returns select order)."""
    if isinstance(value, dict):
        return [(k, _key_order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_key_order(v) for v in value]
    return None


def _case_id(case: Case) -> str:
    return case.id


async def test_corpus_size() -> None:
    assert len(CASES) >= 170
    assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
async def test_soql(org: Org, case: Case) -> None:
    soql = case.soql.format_map(org.world.placeholders)
    status, body = await org.run(case.endpoint, soql)
    if isinstance(case.expect, str):
        assert case.expect in ERROR_CODES
        assert status == 400, body
        assert isinstance(body, list), body
        assert len(body) == 1, body
        assert body[0].get("errorCode") == case.expect, body
        assert isinstance(body[0].get("message"), str), body
        assert body[0]["message"], body
        return
    expected = case.expect(org.world)
    assert status == 200, body
    ordered = case.ordered if case.ordered is not None else _has_outer_order_by(soql)
    if not ordered and isinstance(body, dict) and isinstance(body.get("records"), list):
        body = {**body, "records": sorted(body["records"], key=_canonical)}
        expected = {**expected, "records": sorted(expected["records"], key=_canonical)}
    assert body == expected
    assert _key_order(body) == _key_order(expected), "fields must come in select order"
