"""The emulator's Composite endpoint, as a third-party client sees it."""

from __future__ import annotations

import pytest

from tests.testing.test_schema_writes import Api, api, creds, emu, http, now

__all__ = ["api", "creds", "emu", "http", "now"]  # fixtures used here

V = "/services/data/v62.0"


def one(**item: object) -> dict[str, object]:
    return {
        "compositeRequest": [{"method": "GET", "url": f"{V}/limits", "referenceId": "a", **item}]
    }


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"compositeRequest": []}, "JSON_PARSER_ERROR"),
        (one(method="get"), "METHOD_NOT_ALLOWED"),
        (one(referenceId=""), "INVALID_REFERENCE_ID"),
        (one(httpHeaders={"Authorization": "Bearer x"}), "INVALID_HEADER"),
        (one(url=f"{V}/composite"), "INVALID_URL"),
        ({**one(), "allOrNone": "yes"}, "JSON_PARSER_ERROR"),
    ],
)
async def test_requests_salesforce_refuses_whole(
    api: Api, payload: dict[str, object], code: str
) -> None:
    status, body = await api.call("POST", "/composite", payload)
    assert (status, [e["errorCode"] for e in body]) == (400, [code])


async def test_deeply_nested_bodies_are_refused_not_a_500(api: Api) -> None:
    for depth, statuses in ((600, (200, 400)), (50_000, (400, None))):
        nested = "[" * depth + "]" * depth
        raw = (
            '{"compositeRequest":[{"method":"POST","url":"' + V + '/sobjects/Account",'
            '"referenceId":"a","body":{"Name":' + nested + "}}]}"
        ).encode()
        status, body = await api.call("POST", "/composite", raw=raw)
        inner = body["compositeResponse"][0]["httpStatusCode"] if status == 200 else None
        assert (status, inner) == statuses, depth
    status, _ = await api.call("POST", "/composite", raw=b"[" * 100000)
    assert status == 400


async def test_an_upsert_that_creates_has_no_made_up_location(api: Api) -> None:
    api.emu.schema.add_field("Account", "Ext__c", "string", external_id=True)
    payload = {
        "compositeRequest": [
            {
                "method": "PATCH",
                "url": f"{V}/sobjects/Account/Ext__c/E1",
                "referenceId": "up",
                "body": {"Name": "x"},
            }
        ]
    }
    status, body = await api.call("POST", "/composite", payload)
    assert status == 200
    [answer] = body["compositeResponse"]
    assert (answer["httpStatusCode"], answer["httpHeaders"]) == (201, {})
