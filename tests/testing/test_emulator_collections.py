"""The emulator's sObject Collections endpoints, as a third-party client sees them."""

from __future__ import annotations

from typing import Any

from tests.testing.test_schema_writes import Api, api, creds, emu, error, http, now

__all__ = ["api", "creds", "emu", "http", "now"]  # fixtures used here


def accounts(count: int) -> dict[str, Any]:
    return {
        "records": [{"attributes": {"type": "Account"}, "Name": f"A{n}"} for n in range(count)]
    }


async def test_more_than_200_records_is_refused_whole(api: Api) -> None:
    status, body = await api.call("POST", "/composite/sobjects", accounts(201))
    assert (status, body) == (
        400,
        error(
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        ),
    )
    assert api.emu.records("Account") == []


async def test_results_per_record_in_order(api: Api) -> None:
    payload = accounts(3)
    payload["records"][1] = {"attributes": {"type": "Account"}}  # no Name
    payload["records"].append({"Name": "no type"})
    status, body = await api.call("POST", "/composite/sobjects", payload)
    assert status == 200
    assert [r["success"] for r in body] == [True, False, True, False]
    assert body[1]["errors"] == [
        {
            "statusCode": "REQUIRED_FIELD_MISSING",
            "message": "Required fields are missing: [Name]",
            "fields": ["Name"],
        }
    ]
    assert body[3]["errors"][0]["statusCode"] == "INVALID_TYPE"
    assert [r["Name"] for r in api.emu.records("Account")] == ["A0", "A2"]


async def test_all_or_none_rolls_the_request_back(api: Api) -> None:
    payload = {**accounts(3), "allOrNone": True}
    payload["records"][2]["NumberOfEmployees"] = "many"
    status, body = await api.call("POST", "/composite/sobjects", payload)
    assert status == 200
    assert [(r["success"], "id" in r, r["errors"][0]["statusCode"]) for r in body] == [
        (False, False, "ALL_OR_NONE_OPERATION_ROLLED_BACK"),
        (False, False, "ALL_OR_NONE_OPERATION_ROLLED_BACK"),
        (False, False, "INVALID_TYPE_ON_FIELD_IN_RECORD"),
    ]
    assert api.emu.records("Account") == []


async def test_upsert_by_an_unknown_field_is_404(api: Api) -> None:
    status, body = await api.call("PATCH", "/composite/sobjects/Account/Nope__c", accounts(1))
    assert status == 404
    assert body[0]["message"] == (
        "Provided external ID field does not exist or is not accessible: Nope__c"
    )


async def test_delete_needs_ids(api: Api) -> None:
    status, body = await api.call("DELETE", "/composite/sobjects")
    assert (status, body) == (400, error("MISSING_ARGUMENT", "The ids parameter is required"))


async def test_all_or_none_must_be_a_boolean(api: Api) -> None:
    status, body = await api.call(
        "POST", "/composite/sobjects", {**accounts(1), "allOrNone": "no"}
    )
    assert (status, body) == (400, error("JSON_PARSER_ERROR", "allOrNone must be true or false"))
    assert api.emu.records("Account") == []


async def test_an_upsert_list_holds_only_the_uris_type(api: Api) -> None:
    api.emu.schema.add_field("Contact", "Ext__c", "string", external_id=True)
    payload = {
        "records": [
            {"attributes": {"type": "Contact"}, "Ext__c": "C1", "LastName": "a"},
            {"attributes": {"type": "Account"}, "Ext__c": "C2", "Name": "b"},
        ]
    }
    status, body = await api.call("PATCH", "/composite/sobjects/Contact/Ext__c", payload)
    assert status == 200
    assert [r["success"] for r in body] == [True, False]
    assert body[1]["errors"][0]["statusCode"] == "INVALID_TYPE"
    assert api.emu.records("Account") == []
