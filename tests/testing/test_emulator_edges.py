"""The emulator's schema, writes and SOQL at their edges: what an adversarial review broke.

Each test is one finding of that review: a crash (a 500 or a hang), a wrong result, or a schema
change that corrupted state. Expected answers are Salesforce's where it documents them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from sfauth.testing import Emulator
from sfauth.testing._schema import Schema, SchemaError
from sfauth.testing._soql import _Like
from tests.testing.test_schema_writes import T0, Api, api, creds, emu, error, http, now

__all__ = ["api", "creds", "emu", "http", "now"]  # fixtures used here

V = "/services/data/v62.0"


def codes(body: Any) -> list[str]:
    return [e["errorCode"] for e in body]


# ---------------------------------------------------------------------------------------------
# crashes and hangs


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("%a%", "xxaxx", True),
        ("a%", "bac", False),
        ("%c", "abcd", False),
        ("a_c", "abc", True),
        ("a_c", "abbc", False),
        ("%", "", True),
        ("%_%", "", False),
        ("a\\%b", "a%b", True),
        ("a\\%b", "axb", False),
        ("%ab%ab", "abab", True),
        ("%ab%ab", "aba", False),
        ("ACME%", "acme corp", True),
        ("%a%a%a%a%a%a%a%a%b", "a" * 60, False),
    ],
)
def test_like_matches_without_backtracking(pattern: str, value: str, matches: bool) -> None:
    assert _Like(pattern).match(value) is matches


async def test_a_like_pattern_that_backtracks_in_a_regex_answers(api: Api) -> None:
    api.emu.seed("Account", [{"Name": "a" * 60}, {"Name": "a" * 59 + "b"}])
    status, body = await api.query(
        "SELECT Name FROM Account WHERE Name LIKE '%a%a%a%a%a%a%a%a%a%a%b'"
    )
    assert (status, [r["Name"] for r in body["records"]]) == (200, ["a" * 59 + "b"])


async def test_date_literals_reaching_past_the_calendar_cover_that_side(api: Api) -> None:
    api.emu.seed(
        "Account",
        [
            {"Name": "old", "CreatedDate": "1901-01-01T00:00:00Z"},
            {"Name": "now", "CreatedDate": "2024-05-15T08:00:00Z"},
        ],
    )
    for literal, names in (
        ("LAST_N_DAYS:3650", ["now"]),
        ("LAST_N_DAYS:99999999", ["old", "now"]),
        ("LAST_N_YEARS:9000", ["old"]),
        ("NEXT_N_YEARS:9000", []),
        ("N_DAYS_AGO:99999999", []),
    ):
        status, body = await api.query(
            f"SELECT Name FROM Account WHERE CreatedDate = {literal} ORDER BY Name DESC"
        )
        assert (status, [r["Name"] for r in body["records"]]) == (200, names), literal


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Account LIMIT 99999999999999999999", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account LIMIT 1 OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE"),
        ("SELECT Id FROM Account WHERE NumberOfEmployees = " + "1" * 5000, "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE " + "NOT " * 500 + "Name = 'x'", "MALFORMED_QUERY"),
        (
            "SELECT Id FROM Account WHERE CreatedDate > 0001-01-01T00:00:00+01:00",
            "MALFORMED_QUERY",
        ),
        ("SELECT Id FROM Account WHERE Name = 'a\\ub'", "MALFORMED_QUERY"),
    ],
)
async def test_queries_past_the_limits_are_refused_not_a_500(
    api: Api, soql: str, code: str
) -> None:
    status, body = await api.query(soql)
    assert (status, codes(body)) == (400, [code])


async def test_offset_2000_is_the_most_salesforce_allows(api: Api) -> None:
    status, body = await api.query("SELECT Id FROM Account LIMIT 1 OFFSET 2000")
    assert (status, body["records"]) == (200, [])
    status, body = await api.query("SELECT Id FROM Account LIMIT 1 OFFSET 2001")
    assert body[0]["message"].endswith("\nMaximum SOQL offset allowed is 2000")


async def test_writes_past_the_limits_are_refused_not_a_500(api: Api) -> None:
    big = b'{"Name": "x", "AnnualRevenue": 1' + b"0" * 400 + b"}"
    status, body = await api.call("POST", "/sobjects/Account", raw=big)
    assert (status, codes(body)) == (400, ["NUMBER_OUTSIDE_VALID_RANGE"])
    huge = b'{"Name": "x", "NumberOfEmployees": ' + b"1" * 5000 + b"}"
    status, body = await api.call("POST", "/sobjects/Account", raw=huge)
    assert (status, body) == (400, error("JSON_PARSER_ERROR", "Numeric value out of range"))
    status, body = await api.call(
        "POST",
        "/sobjects/Event",
        {"Subject": "x", "ActivityDateTime": "0001-01-01T00:00:00+01:00"},
    )
    assert (status, codes(body)) == (400, ["JSON_PARSER_ERROR"])
    status, body = await api.call(
        "POST", "/sobjects/Account", {"Name": "x", "NumberOfEmployees": "1_000"}
    )
    assert (status, codes(body)) == (400, ["JSON_PARSER_ERROR"])
    assert api.emu.records("Account") == []
    assert api.emu.records("Event") == []


# ---------------------------------------------------------------------------------------------
# wrong results


async def test_ids_sort_case_sensitively_so_keyset_paging_sees_each_once(api: Api) -> None:
    api.emu.seed("Account", [{"Name": f"A{n}"} for n in range(120)])
    seen: list[str] = []
    last = None
    while True:
        where = f"WHERE Id > '{last}' " if last else ""
        status, body = await api.query(f"SELECT Id FROM Account {where}ORDER BY Id LIMIT 25")
        assert status == 200
        page = [r["Id"] for r in body["records"]]
        if not page:
            break
        seen += page
        last = page[-1]
    assert sorted(seen) == sorted(r["Id"] for r in api.emu.records("Account"))
    assert seen == sorted(seen)  # ASCII order: ids are case-sensitive


async def test_a_semi_join_sees_rows_added_between_runs(api: Api) -> None:
    accounts = api.emu.seed("Account", [{"Name": f"A{n}"} for n in range(6)])
    soql = "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact)"
    for count, account in enumerate(accounts, start=1):
        api.emu.seed("Contact", [{"LastName": "c", "AccountId": account}])
        status, body = await api.query(soql)
        assert (status, body["totalSize"]) == (200, count)


def test_each_schema_has_its_own_serial() -> None:
    assert len({Schema().serial for _ in range(3)}) == 3


async def test_polymorphic_relationships_lead_to_the_name_entity(api: Api) -> None:
    account = api.emu.seed("Account", [{"Name": "Acme"}])[0]
    deal = api.emu.seed(
        "Opportunity", [{"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2024-06-30"}]
    )[0]
    contact = api.emu.seed("Contact", [{"LastName": "Lovelace"}])[0]
    api.emu.seed(
        "Task",
        [
            {"Subject": "call", "WhatId": account, "WhoId": contact},
            {"Subject": "send", "WhatId": deal},
        ],
    )
    status, body = await api.query(
        "SELECT Subject, What.Type, What.Name, Who.Type FROM Task ORDER BY Subject"
    )
    assert status == 200
    [call, send] = body["records"]
    assert call["What"]["Type"] == "Account"
    assert call["What"]["Name"] == "Acme"
    assert call["Who"]["Type"] == "Contact"
    assert (send["What"]["Type"], send["What"]["Name"], send["Who"]) == (
        "Opportunity",
        "Deal",
        None,
    )
    status, body = await api.query("SELECT Subject FROM Task WHERE What.Type = 'Opportunity'")
    assert [r["Subject"] for r in body["records"]] == ["send"]
    status, body = await api.query("SELECT What.StageName FROM Task")
    assert (status, codes(body)) == (400, ["INVALID_FIELD"])
    assert "No such column 'StageName' on entity 'Name'" in body[0]["message"]


async def test_a_blank_value_is_saved_as_null(api: Api) -> None:
    status, body = await api.call("POST", "/sobjects/Account", {"Name": ""})
    assert (status, body) == (
        400,
        error("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", ["Name"]),
    )
    contact = await api.create("Contact", {"LastName": "x", "Email": "", "AccountId": ""})
    status, body = await api.query(
        "SELECT Id FROM Contact WHERE Email = null AND AccountId = null"
    )
    assert [r["Id"] for r in body["records"]] == [contact]


async def test_null_is_not_a_value_for_uniqueness(api: Api) -> None:
    api.emu.schema.add_field("Account", "Ext__c", "string", external_id=True, unique=True)
    await api.create("Account", {"Name": "a", "Ext__c": None})
    await api.create("Account", {"Name": "b", "Ext__c": "None"})
    await api.create("Account", {"Name": "c"})


async def test_upsert_by_a_number_external_id_finds_the_record(api: Api) -> None:
    api.emu.schema.add_field("Account", "Num__c", "double", external_id=True, precision=18)
    status, created = await api.call("PATCH", "/sobjects/Account/Num__c/5", {"Name": "x"})
    assert (status, created["created"]) == (201, True)
    for key in ("5", "5.0"):
        status, body = await api.call("PATCH", f"/sobjects/Account/Num__c/{key}", {"Name": "y"})
        assert (status, body["id"], body["created"]) == (200, created["id"], False)
    assert [(r["Name"], r["Num__c"]) for r in api.emu.records("Account")] == [("y", 5.0)]


async def test_relative_date_literals_in_an_in_list(api: Api) -> None:
    api.emu.seed(
        "Account",
        [
            {"Name": "today", "CreatedDate": "2024-05-15T08:00:00Z"},
            {"Name": "yesterday", "CreatedDate": "2024-05-14T08:00:00Z"},
            {"Name": "older", "CreatedDate": "2024-05-01T08:00:00Z"},
        ],
    )
    status, body = await api.query(
        "SELECT Name FROM Account WHERE CreatedDate IN (TODAY, YESTERDAY) ORDER BY Name"
    )
    assert (status, [r["Name"] for r in body["records"]]) == (200, ["today", "yesterday"])


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Account WHERE Id IN (SELECT OwnerId FROM Contact)", "INVALID_FIELD"),
        ("SELECT Id FROM Account WHERE Name IN (SELECT AccountId FROM Contact)", "INVALID_FIELD"),
        (
            "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE "
            "Id IN (SELECT ContactId FROM Case))",
            "MALFORMED_QUERY",
        ),
        ("SELECT Name, (SELECT Id FROM Contacts OFFSET 1) FROM Account", "MALFORMED_QUERY"),
        ("SELECT COUNT(Id) expr0, MAX(Name) FROM Account", "MALFORMED_QUERY"),
        ("SELECT Industry, COUNT(Id) Industry FROM Account GROUP BY Industry", "MALFORMED_QUERY"),
        ("SELECT COUNT() FROM Account HAVING COUNT(Id) > 1", "MALFORMED_QUERY"),
    ],
)
async def test_soql_salesforce_refuses_is_refused(api: Api, soql: str, code: str) -> None:
    status, body = await api.query(soql)
    assert (status, codes(body)) == (400, [code])


async def test_escapes_in_either_case(api: Api) -> None:
    api.emu.seed("Account", [{"Name": "a\nb"}, {"Name": "a\tb"}])
    for escaped, name in (("\\n", "a\nb"), ("\\N", "a\nb"), ("\\T", "a\tb")):
        status, body = await api.query(f"SELECT Name FROM Account WHERE Name = 'a{escaped}b'")
        assert (status, [r["Name"] for r in body["records"]]) == (200, [name]), escaped


async def test_years_before_1000_keep_four_digits(api: Api) -> None:
    await api.create("Event", {"Subject": "x", "ActivityDateTime": "0005-01-01T00:00:00Z"})
    assert [r["ActivityDateTime"] for r in api.emu.records("Event")] == [
        "0005-01-01T00:00:00.000+0000"
    ]
    _status, body = await api.query(
        "SELECT Subject FROM Event WHERE ActivityDateTime < 2000-01-01T00:00:00Z"
    )
    assert [r["Subject"] for r in body["records"]] == ["x"]


# ---------------------------------------------------------------------------------------------
# schema changes that must change nothing when refused


def _account_describe(**extra: object) -> dict[str, object]:
    return {
        "name": "Account",
        "keyPrefix": "001",
        "fields": [
            {"name": "Id", "type": "id", "nillable": False, "createable": False},
            {"name": "Name", "type": "string", "nillable": False},
        ],
        **extra,
    }


async def test_a_describe_cannot_move_an_objects_key_prefix(api: Api) -> None:
    account = await api.create("Account", {"Name": "Acme"})
    with pytest.raises(SchemaError, match=r"gives Account the key prefix '003'.*has '001'"):
        api.emu.schema.load_describe(_account_describe(keyPrefix="003"))
    status, body = await api.call("GET", f"/sobjects/Account/{account}")
    assert (status, body["Name"]) == (200, "Acme")


async def test_a_describe_list_with_a_bad_body_changes_nothing(api: Api) -> None:
    generation = api.emu.schema.generation
    with pytest.raises(SchemaError, match="needs 'name' and 'fields'"):
        api.emu.schema.load_describe([_account_describe(), {"name": "Broken__c"}])
    assert api.emu.schema.generation == generation
    assert api.emu.schema.get("Account").field("Industry") is not None  # type: ignore[union-attr]


async def test_a_describe_spelled_in_lower_case_keeps_the_records(api: Api) -> None:
    await api.create("Account", {"Name": "Acme"})
    api.emu.schema.load_describe({**_account_describe(), "name": "account", "keyPrefix": None})
    status, body = await api.query("SELECT Name FROM Account")
    assert (status, [r["Name"] for r in body["records"]]) == (200, ["Acme"])


def test_add_object_with_a_bad_field_adds_nothing() -> None:
    schema = Schema()
    schema.add_object("Inv__c", {"A__c": "string"})
    before = (schema.get("Inv__c"), schema.generation)
    with pytest.raises(SchemaError, match=r"field type 'bogus' of Inv__c.B__c is unknown"):
        schema.add_object("Inv__c", {"A__c": "string", "B__c": "bogus"})
    assert (schema.get("Inv__c"), schema.generation) == before


def test_a_picklist_default_comes_from_its_values() -> None:
    schema = Schema()
    schema.load_describe(
        {
            "name": "Ticket__c",
            "fields": [
                {"name": "Id", "type": "id", "nillable": False, "createable": False},
                {
                    "name": "Status__c",
                    "type": "picklist",
                    "defaultValue": None,
                    "defaultedOnCreate": True,
                    "picklistValues": [
                        {"value": "New", "active": True, "defaultValue": True},
                        {"value": "Done", "active": True, "defaultValue": False},
                    ],
                },
            ],
        }
    )
    emu = Emulator(schema=schema, default_accounts=0, now=T0)
    emu.seed("Ticket__c", [{}])
    assert [r["Status__c"] for r in emu.records("Ticket__c")] == ["New"]


def test_now_keeps_standing_still() -> None:
    emu = Emulator(default_accounts=0, now=T0 + dt.timedelta(days=1))
    emu.seed("Account", [{"Name": "a"}])
    assert [r["CreatedDate"] for r in emu.records("Account")] == ["2024-05-16T12:00:00.000+0000"]


async def test_lookups_follow_updates_deletes_and_rollbacks(api: Api) -> None:
    api.emu.schema.add_field("Account", "Ext__c", "string", external_id=True, unique=True)
    first = await api.create("Account", {"Name": "a", "Ext__c": "K1"})
    status, body = await api.call("PATCH", f"/sobjects/Account/{first}", {"Ext__c": "K2"})
    assert status == 204
    status, body = await api.call("PATCH", "/sobjects/Account/Ext__c/K1", {"Name": "new"})
    assert (status, body["created"]) == (201, True)  # K1 is free again
    status, body = await api.call("PATCH", "/sobjects/Account/Ext__c/k2", {"Name": "b"})
    assert (status, body["id"], body["created"]) == (200, first, False)
    await api.call("DELETE", f"/sobjects/Account/{first}")
    second = await api.create("Account", {"Name": "c", "Ext__c": "K2"})  # free after delete
    rolled_back = {
        "allOrNone": True,
        "records": [
            {"attributes": {"type": "Account"}, "Name": "d", "Ext__c": "K3"},
            {"attributes": {"type": "Account"}},
        ],
    }
    status, body = await api.call("POST", "/composite/sobjects", rolled_back)
    assert [r["success"] for r in body] == [False, False]
    status, body = await api.call("PATCH", "/sobjects/Account/Ext__c/K3", {"Name": "e"})
    assert (status, body["created"]) == (201, True)  # the rolled-back K3 left no trace
    status, body = await api.call("GET", "/sobjects/Account/Ext__c/K2")
    assert (status, body["Id"]) == (200, second)


async def test_an_emulator_used_before_it_started_says_how_to_start_it() -> None:
    emulator = Emulator()
    how = (
        "the emulator has not been started: use `async with Emulator() as emu:` (or `await "
        "emu.start()`, then `await emu.stop()`)"
    )
    with pytest.raises(RuntimeError) as info:
        emulator.url  # noqa: B018
    assert str(info.value) == how
    with pytest.raises(RuntimeError) as info:
        emulator.create_credentials()
    assert str(info.value) == how
    with pytest.raises(RuntimeError) as info:
        await emulator.add_instance()
    assert str(info.value) == how
