"""The emulator's schema over real sockets: validated writes, system fields, describe, ids.

Expected bodies are Salesforce's, from the REST API Developer Guide ("Status Codes and Error
Responses", "sObject Basic Information", "Insert or Update (Upsert) a Record Using an External
ID", "sObject Describe") and from captured org responses. Where the emulator answers differently
the test is written to Salesforce's answer.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sfauth.testing import Emulator, EmulatorCredentials
from sfauth.testing._ids import IdFactory, canonical_id, is_valid_id
from sfauth.testing._schema import Schema, SchemaError
from tests.testing.test_emulator import bearer, login

V = "/services/data/v62.0"
T0 = dt.datetime(2024, 5, 15, 12, 0, tzinfo=dt.UTC)
T0_TEXT = "2024-05-15T12:00:00.000+0000"
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
STANDARD_OBJECTS = [
    "Account",
    "Campaign",
    "Case",
    "Contact",
    "Event",
    "Lead",
    "Opportunity",
    "Task",
    "User",
]
READ_ONLY_TAIL = (
    ". Please check the security settings of this field and verify that it is read/write for "
    "your profile or permission set."
)


# ---------------------------------------------------------------------------------------------
# an independent oracle of Salesforce's case-safe id suffix

_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def oracle_suffix(id15: str) -> str:
    """Salesforce's 3-character suffix: per 5-char chunk, bit i set when char i is A-Z."""
    assert len(id15) == 15
    suffix = ""
    for chunk in range(3):
        bits = 0
        for i, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        suffix += _SUFFIX_ALPHABET[bits]
    return suffix


def assert_salesforce_id(value: object, prefix: str) -> None:
    assert isinstance(value, str)
    assert re.fullmatch(r"[0-9A-Za-z]{18}", value), value
    assert value.startswith(prefix), value
    assert value[15:] == oracle_suffix(value[:15]), value
    assert is_valid_id(value)


# ---------------------------------------------------------------------------------------------
# fixtures and helpers


class FakeNow:
    """The emulator's wall clock (``Emulator(now=...)``), moved by hand."""

    def __init__(self) -> None:
        self.value = T0

    def __call__(self) -> dt.datetime:
        return self.value


@pytest.fixture
def now() -> FakeNow:
    return FakeNow()


@pytest.fixture
async def emu(now: FakeNow) -> AsyncIterator[Emulator]:
    async with Emulator(now=now, default_accounts=0) as emulator:
        yield emulator


@pytest.fixture
def creds(emu: Emulator) -> EmulatorCredentials:
    return emu.create_credentials(username="etl@example.com")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Api:
    """A logged-in REST client of one emulator: ``(status, parsed body or None)`` per call."""

    def __init__(self, http: aiohttp.ClientSession, emu: Emulator, token: dict[str, str]):
        self.http = http
        self.emu = emu
        self.headers = bearer(token)

    async def call(
        self, method: str, path: str, body: object = None, *, raw: bytes | None = None
    ) -> tuple[int, Any]:
        headers = dict(self.headers)
        data = None
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            method, self.emu.url + V + path, data=data, headers=headers
        ) as response:
            text = await response.read()
            return response.status, (json.loads(text) if text else None)

    async def create(self, sobject: str, values: dict[str, object]) -> str:
        status, body = await self.call("POST", f"/sobjects/{sobject}", values)
        assert status == 201, body
        assert body == {"id": body["id"], "success": True, "errors": []}
        return str(body["id"])

    async def query(self, soql: str, *, all_rows: bool = False) -> tuple[int, Any]:
        resource = "/queryAll" if all_rows else "/query"
        async with self.http.get(
            self.emu.url + V + resource, params={"q": soql}, headers=self.headers
        ) as response:
            return response.status, await response.json()


@pytest.fixture
async def api(http: aiohttp.ClientSession, emu: Emulator, creds: EmulatorCredentials) -> Api:
    return Api(http, emu, await login(http, emu, creds))


def error(code: str, message: str, fields: list[str] | None = None) -> list[dict[str, object]]:
    """A REST error body; ``fields=None``: the body has no ``fields`` key."""
    body: dict[str, object] = {"message": message, "errorCode": code}
    if fields is not None:
        body["fields"] = fields
    return [body]


# ---------------------------------------------------------------------------------------------
# writes: one test per validation error


async def test_unknown_field_on_create_is_invalid_field(api: Api) -> None:
    status, body = await api.call("POST", "/sobjects/Account", {"Name": "x", "NoSuchField__c": 1})
    assert status == 400
    assert body == error(
        "INVALID_FIELD", "No such column 'NoSuchField__c' on sobject of type Account"
    )
    assert api.emu.records("Account") == []


async def test_missing_required_field(api: Api) -> None:
    status, body = await api.call("POST", "/sobjects/Account", {"Phone": "555"})
    assert status == 400
    assert body == error("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", ["Name"])


async def test_missing_required_fields_are_listed_in_schema_order(api: Api) -> None:
    status, body = await api.call("POST", "/sobjects/Opportunity", {"Amount": 10})
    assert status == 400
    assert body == error(
        "REQUIRED_FIELD_MISSING",
        "Required fields are missing: [Name, StageName, CloseDate]",
        ["Name", "StageName", "CloseDate"],
    )
    assert api.emu.records("Opportunity") == []


async def test_text_into_a_number_field_is_json_parser_error(api: Api) -> None:
    raw = b'{"Name": "x", "NumberOfEmployees": "abc"}'
    # Jackson reports the position just past the offending token (1-based columns).
    column = raw.index(b'"abc"') + len(b'"abc"') + 1
    status, body = await api.call("POST", "/sobjects/Account", raw=raw)
    assert status == 400
    assert body == error(
        "JSON_PARSER_ERROR",
        "Cannot deserialize instance of int from VALUE_STRING value abc or request may be "
        f"missing a required field at [line:1, column:{column}]",
    )
    assert column == 41


async def test_object_into_a_text_field_is_json_parser_error(api: Api) -> None:
    raw = b'{"Name": {"first": "x"}}'
    column = raw.index(b"{", 1) + 2  # just past the START_OBJECT token
    status, body = await api.call("POST", "/sobjects/Account", raw=raw)
    assert status == 400
    assert body == error(
        "JSON_PARSER_ERROR",
        "Cannot deserialize instance of string from START_OBJECT value { or request may be "
        f"missing a required field at [line:1, column:{column}]",
    )
    assert column == 11


async def test_fraction_into_an_integer_field_is_invalid_type(api: Api) -> None:
    status, body = await api.call(
        "POST", "/sobjects/Account", {"Name": "x", "NumberOfEmployees": 1.5}
    )
    assert status == 400
    assert body == error(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "Employees: value not of required type: 1.5",
        ["NumberOfEmployees"],
    )


async def test_fraction_into_an_integer_field_code_and_fields(api: Api) -> None:
    """The error's code and fields, also for a value given as a JSON string."""
    status, body = await api.call(
        "POST", "/sobjects/Account", {"Name": "x", "NumberOfEmployees": 1.5}
    )
    assert status == 400
    assert len(body) == 1
    assert body[0]["errorCode"] == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    assert body[0]["fields"] == ["NumberOfEmployees"]
    assert body[0]["message"].endswith(": value not of required type: 1.5")


async def test_read_only_field_on_create(api: Api) -> None:
    status, body = await api.call(
        "POST", "/sobjects/Account", {"Name": "x", "CreatedDate": "2020-01-01T00:00:00.000+0000"}
    )
    assert status == 400
    assert body == error(
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "Unable to create/update fields: CreatedDate" + READ_ONLY_TAIL,
        ["CreatedDate"],
    )
    assert api.emu.records("Account") == []


async def test_read_only_field_on_update(api: Api) -> None:
    opp = await api.create(
        "Opportunity", {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2024-06-30"}
    )
    status, body = await api.call("PATCH", f"/sobjects/Opportunity/{opp}", {"IsWon": True})
    assert status == 400
    assert body == error(
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "Unable to create/update fields: IsWon" + READ_ONLY_TAIL,
        ["IsWon"],
    )
    [record] = api.emu.records("Opportunity")
    assert record["IsWon"] is False


async def test_upsert_by_external_id_creates_then_updates(api: Api) -> None:
    api.emu.schema.add_field("Account", "External_Id__c", "string", external_id=True, unique=True)
    path = "/sobjects/Account/External_Id__c/A-1"

    status, body = await api.call("PATCH", path, {"Name": "Acme"})
    assert status == 201
    record_id = body["id"]
    assert body == {"id": record_id, "success": True, "errors": [], "created": True}
    assert_salesforce_id(record_id, "001")

    status, body = await api.call("PATCH", path, {"Name": "Acme Corp"})
    assert status == 200
    assert body == {"id": record_id, "success": True, "errors": [], "created": False}

    [record] = api.emu.records("Account")
    assert (record["Id"], record["Name"], record["External_Id__c"]) == (
        record_id,
        "Acme Corp",
        "A-1",
    )


async def test_upsert_matching_two_records_answers_300_with_their_urls(api: Api) -> None:
    api.emu.schema.add_field("Account", "Legacy_Key__c", "string", external_id=True)
    first, second = api.emu.seed(
        "Account", [{"Name": "one", "Legacy_Key__c": "K"}, {"Name": "two", "Legacy_Key__c": "K"}]
    )
    status, body = await api.call("PATCH", "/sobjects/Account/Legacy_Key__c/K", {"Name": "x"})
    assert status == 300
    assert body == [f"{V}/sobjects/Account/{first}", f"{V}/sobjects/Account/{second}"]
    assert sorted(str(r["Name"]) for r in api.emu.records("Account")) == ["one", "two"]


async def test_upsert_with_an_unknown_external_id_field_is_404(api: Api) -> None:
    status, body = await api.call("PATCH", "/sobjects/Account/Nope__c/A-1", {"Name": "x"})
    assert status == 404
    assert body == [
        {
            "errorCode": "NOT_FOUND",
            "message": "Provided external ID field does not exist or is not accessible: Nope__c",
        }
    ]


async def test_duplicate_value_of_a_unique_field_on_insert(api: Api) -> None:
    api.emu.schema.add_field("Account", "External_Id__c", "string", external_id=True, unique=True)
    first = await api.create("Account", {"Name": "a", "External_Id__c": "X-1"})
    status, body = await api.call(
        "POST", "/sobjects/Account", {"Name": "b", "External_Id__c": "X-1"}
    )
    assert status == 400
    assert body == error(
        "DUPLICATE_VALUE",
        f"duplicate value found: External_Id__c duplicates value on record with id: {first[:15]}",
        [],
    )


async def test_duplicate_value_of_a_unique_field_refuses_the_insert(api: Api) -> None:
    """Unique values compare case-insensitively, and nothing is stored."""
    api.emu.schema.add_field("Account", "External_Id__c", "string", external_id=True, unique=True)
    first = await api.create("Account", {"Name": "a", "External_Id__c": "X-1"})
    status, body = await api.call(
        "POST", "/sobjects/Account", {"Name": "b", "External_Id__c": "x-1"}
    )
    assert status == 400
    assert len(body) == 1
    assert body[0]["errorCode"] == "DUPLICATE_VALUE"
    assert body[0]["message"].startswith(
        "duplicate value found: External_Id__c duplicates value on record with id: "
    )
    assert first[:15] in body[0]["message"]
    assert [r["Name"] for r in api.emu.records("Account")] == ["a"]


async def _deleted_account(api: Api) -> str:
    record_id = await api.create("Account", {"Name": "Gone"})
    status, body = await api.call("DELETE", f"/sobjects/Account/{record_id}")
    assert (status, body) == (204, None)
    return record_id


ENTITY_IS_DELETED = error("ENTITY_IS_DELETED", "entity is deleted", [])


async def test_update_of_a_deleted_record_is_entity_is_deleted(api: Api) -> None:
    record_id = await _deleted_account(api)
    status, body = await api.call("PATCH", f"/sobjects/Account/{record_id}", {"Name": "Back"})
    assert (status, body) == (404, ENTITY_IS_DELETED)


async def test_delete_of_a_deleted_record_is_entity_is_deleted(api: Api) -> None:
    record_id = await _deleted_account(api)
    status, body = await api.call("DELETE", f"/sobjects/Account/{record_id}")
    assert (status, body) == (404, ENTITY_IS_DELETED)


async def test_writes_to_a_deleted_record_are_refused_and_change_nothing(
    api: Api, now: FakeNow
) -> None:
    """Refused writes to a deleted record change nothing (not even LastModifiedDate)."""
    record_id = await _deleted_account(api)
    [before] = api.emu.records("Account", include_deleted=True)
    now.value = T0 + dt.timedelta(hours=1)
    for method, payload in (("PATCH", {"Name": "Back"}), ("DELETE", None)):
        status, body = await api.call(method, f"/sobjects/Account/{record_id}", payload)
        assert status == 404, method
        assert [(e["errorCode"], e["message"]) for e in body] == [
            ("ENTITY_IS_DELETED", "entity is deleted")
        ], method
    assert api.emu.records("Account", include_deleted=True) == [before]


async def test_lookup_set_to_a_malformed_id(api: Api) -> None:
    status, body = await api.call(
        "POST", "/sobjects/Contact", {"LastName": "x", "AccountId": "abc"}
    )
    assert status == 400
    assert body == error(
        "MALFORMED_ID", "Account ID: id value of incorrect type: abc", ["AccountId"]
    )


async def test_lookup_set_to_an_id_of_another_object(api: Api) -> None:
    opp = await api.create(
        "Opportunity", {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2024-06-30"}
    )
    status, body = await api.call("POST", "/sobjects/Contact", {"LastName": "x", "AccountId": opp})
    assert status == 400
    assert body == error(
        "FIELD_INTEGRITY_EXCEPTION",
        f"Account ID: id value of incorrect type: {opp}",
        ["AccountId"],
    )
    assert api.emu.records("Contact") == []


def _missing_account_id() -> str:
    id15 = "001" + "Zz9" + "000000001"
    return id15 + oracle_suffix(id15)


async def test_lookup_set_to_a_record_that_does_not_exist(api: Api) -> None:
    missing = _missing_account_id()
    status, body = await api.call(
        "POST", "/sobjects/Contact", {"LastName": "x", "AccountId": missing}
    )
    assert status == 400
    assert body == error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])


async def test_lookup_set_to_a_record_that_does_not_exist_is_refused(api: Api) -> None:
    """Nothing is stored when a lookup is refused."""
    missing = _missing_account_id()
    assert is_valid_id(missing)
    status, body = await api.call(
        "POST", "/sobjects/Contact", {"LastName": "x", "AccountId": missing}
    )
    assert status == 400
    assert [e["errorCode"] for e in body] == ["INVALID_CROSS_REFERENCE_KEY"]
    assert body[0]["message"].endswith("invalid cross reference id")
    assert api.emu.records("Contact") == []


async def test_string_too_long(api: Api) -> None:
    value = "9" * 41
    status, body = await api.call(
        "POST", "/sobjects/Account", {"Name": "x", "AccountNumber": value}
    )
    assert status == 400
    assert body == error(
        "STRING_TOO_LONG",
        f"Account Number: data value too large: {value} (max length=40)",
        ["AccountNumber"],
    )
    # 40 characters fit.
    await api.create("Account", {"Name": "x", "AccountNumber": value[:40]})


async def test_invalid_email_address(api: Api) -> None:
    status, body = await api.call(
        "POST", "/sobjects/Contact", {"LastName": "x", "Email": "not-an-address"}
    )
    assert status == 400
    assert body == error(
        "INVALID_EMAIL_ADDRESS", "Email: invalid email address: not-an-address", ["Email"]
    )


# ---------------------------------------------------------------------------------------------
# system fields, the recycle bin


async def test_created_record_has_salesforce_system_fields(
    api: Api, creds: EmulatorCredentials
) -> None:
    record_id = await api.create("Account", {"Name": "Acme"})
    assert_salesforce_id(record_id, "001")
    assert_salesforce_id(creds.user_id, "005")

    status, record = await api.call("GET", f"/sobjects/Account/{record_id}")
    assert status == 200
    assert record["attributes"] == {"type": "Account", "url": f"{V}/sobjects/Account/{record_id}"}
    assert {
        name: record[name]
        for name in (
            "Id",
            "Name",
            "IsDeleted",
            "CreatedDate",
            "LastModifiedDate",
            "SystemModstamp",
            "CreatedById",
            "LastModifiedById",
            "OwnerId",
        )
    } == {
        "Id": record_id,
        "Name": "Acme",
        "IsDeleted": False,
        "CreatedDate": T0_TEXT,
        "LastModifiedDate": T0_TEXT,
        "SystemModstamp": T0_TEXT,
        "CreatedById": creds.user_id,
        "LastModifiedById": creds.user_id,
        "OwnerId": creds.user_id,
    }
    # The session user is a real User record.
    status, user = await api.call("GET", f"/sobjects/User/{creds.user_id}")
    assert (status, user["Username"]) == (200, "etl@example.com")


async def test_update_moves_last_modified_but_not_created(api: Api, now: FakeNow) -> None:
    record_id = await api.create("Account", {"Name": "Acme"})
    later = T0 + dt.timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=567)
    now.value = later
    status, body = await api.call("PATCH", f"/sobjects/Account/{record_id}", {"Phone": "555-0100"})
    assert (status, body) == (204, None)

    status, record = await api.call("GET", f"/sobjects/Account/{record_id}")
    assert status == 200
    assert record["Phone"] == "555-0100"
    assert record["CreatedDate"] == T0_TEXT
    assert record["LastModifiedDate"] == "2024-05-16T14:03:04.567+0000"
    assert record["SystemModstamp"] == "2024-05-16T14:03:04.567+0000"


async def test_delete_moves_the_record_to_the_recycle_bin(api: Api) -> None:
    kept = await api.create("Account", {"Name": "Kept"})
    gone = await api.create("Account", {"Name": "Gone"})
    status, body = await api.call("DELETE", f"/sobjects/Account/{gone}")
    assert (status, body) == (204, None)

    assert [r["Id"] for r in api.emu.records("Account")] == [kept]
    everything = api.emu.records("Account", include_deleted=True)
    assert [(r["Id"], r["IsDeleted"]) for r in everything] == [(kept, False), (gone, True)]

    soql = "SELECT Id, Name, IsDeleted FROM Account ORDER BY Name"
    status, page = await api.query(soql)
    assert status == 200
    assert page == {
        "totalSize": 1,
        "done": True,
        "records": [
            {
                "attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{kept}"},
                "Id": kept,
                "Name": "Kept",
                "IsDeleted": False,
            }
        ],
    }
    status, page = await api.query(soql, all_rows=True)
    assert status == 200
    assert page == {
        "totalSize": 2,
        "done": True,
        "records": [
            {
                "attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{gone}"},
                "Id": gone,
                "Name": "Gone",
                "IsDeleted": True,
            },
            {
                "attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{kept}"},
                "Id": kept,
                "Name": "Kept",
                "IsDeleted": False,
            },
        ],
    }


async def test_get_of_a_deleted_record(api: Api) -> None:
    """A record in the recycle bin reads as deleted, as writes to it do."""
    record_id = await _deleted_account(api)
    status, body = await api.call("GET", f"/sobjects/Account/{record_id}")
    assert (status, body) == (404, ENTITY_IS_DELETED)


# ---------------------------------------------------------------------------------------------
# describe


async def test_describe_account(api: Api) -> None:
    status, body = await api.call("GET", "/sobjects/Account/describe")
    assert status == 200
    assert body["name"] == "Account"
    assert body["keyPrefix"] == "001"
    assert body["custom"] is False
    assert body["urls"]["describe"] == f"{V}/sobjects/Account/describe"
    fields = {f["name"]: f for f in body["fields"]}
    assert {k: fields["Name"][k] for k in ("type", "nillable", "createable", "updateable")} == {
        "type": "string",
        "nillable": False,
        "createable": True,
        "updateable": True,
    }
    assert fields["Id"]["type"] == "id"
    assert fields["CreatedDate"]["createable"] is False
    assert fields["NumberOfEmployees"]["type"] == "int"
    contacts = [r for r in body["childRelationships"] if r["relationshipName"] == "Contacts"]
    assert len(contacts) == 1
    assert (contacts[0]["childSObject"], contacts[0]["field"]) == ("Contact", "AccountId")


async def test_describe_global_lists_standard_and_custom_objects(api: Api) -> None:
    status, body = await api.call("GET", "/sobjects")
    assert status == 200
    assert [o["name"] for o in body["sobjects"]] == STANDARD_OBJECTS
    assert {o["name"]: o["keyPrefix"] for o in body["sobjects"]}["Contact"] == "003"

    api.emu.schema.add_object("Widget__c", {"Size__c": "double"})
    status, body = await api.call("GET", "/sobjects/")
    assert status == 200
    assert [o["name"] for o in body["sobjects"]] == [*STANDARD_OBJECTS, "Widget__c"]
    [widget] = [o for o in body["sobjects"] if o["name"] == "Widget__c"]
    assert widget["custom"] is True
    assert widget["urls"]["sobject"] == f"{V}/sobjects/Widget__c"


async def test_describe_of_an_unknown_object_is_404(api: Api) -> None:
    status, body = await api.call("GET", "/sobjects/Nope__c/describe")
    assert (status, body) == (404, NOT_FOUND)


# ---------------------------------------------------------------------------------------------
# a custom object loaded from a describe file


def _field(name: str, type_: str, **attributes: object) -> dict[str, object]:
    """One ``DescribeFieldResult`` as the REST describe serialises it (common defaults)."""
    field: dict[str, object] = {
        "name": name,
        "label": name.removesuffix("__c").replace("_", " "),
        "type": type_,
        "length": 0,
        "precision": 0,
        "scale": 0,
        "nillable": True,
        "createable": True,
        "updateable": True,
        "defaultedOnCreate": False,
        "defaultValue": None,
        "externalId": False,
        "unique": False,
        "idLookup": False,
        "custom": name.endswith("__c"),
        "calculated": False,
        "referenceTo": [],
        "relationshipName": None,
        "picklistValues": [],
        "soapType": "xsd:string",
    }
    field.update(attributes)
    return field


SYSTEM_READ_ONLY = {"createable": False, "updateable": False}

INVOICE_FIELDS: list[dict[str, object]] = [
    _field(
        "Id",
        "id",
        label="Record ID",
        length=18,
        nillable=False,
        defaultedOnCreate=True,
        idLookup=True,
        soapType="tns:ID",
        **SYSTEM_READ_ONLY,
    ),
    _field(
        "OwnerId",
        "reference",
        label="Owner ID",
        length=18,
        nillable=False,
        defaultedOnCreate=True,
        referenceTo=["Group", "User"],
        relationshipName="Owner",
        soapType="tns:ID",
    ),
    _field(
        "IsDeleted",
        "boolean",
        label="Deleted",
        nillable=False,
        defaultedOnCreate=True,
        defaultValue=False,
        soapType="xsd:boolean",
        **SYSTEM_READ_ONLY,
    ),
    _field("Name", "string", label="Invoice Name", length=80),
    _field(
        "CreatedDate",
        "datetime",
        label="Created Date",
        nillable=False,
        defaultedOnCreate=True,
        soapType="xsd:dateTime",
        **SYSTEM_READ_ONLY,
    ),
    _field(
        "CreatedById",
        "reference",
        label="Created By ID",
        length=18,
        nillable=False,
        defaultedOnCreate=True,
        referenceTo=["User"],
        relationshipName="CreatedBy",
        soapType="tns:ID",
        **SYSTEM_READ_ONLY,
    ),
    _field(
        "LastModifiedDate",
        "datetime",
        label="Last Modified Date",
        nillable=False,
        defaultedOnCreate=True,
        soapType="xsd:dateTime",
        **SYSTEM_READ_ONLY,
    ),
    _field(
        "LastModifiedById",
        "reference",
        label="Last Modified By ID",
        length=18,
        nillable=False,
        defaultedOnCreate=True,
        referenceTo=["User"],
        relationshipName="LastModifiedBy",
        soapType="tns:ID",
        **SYSTEM_READ_ONLY,
    ),
    _field(
        "SystemModstamp",
        "datetime",
        label="System Modstamp",
        nillable=False,
        defaultedOnCreate=True,
        soapType="xsd:dateTime",
        **SYSTEM_READ_ONLY,
    ),
    _field(
        "Amount__c",
        "currency",
        precision=18,
        scale=2,
        nillable=False,
        soapType="xsd:double",
    ),
    _field(
        "Status__c",
        "picklist",
        length=255,
        picklistValues=[
            {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
            for v in ("Draft", "Sent", "Paid")
        ],
    ),
    _field(
        "Account__c",
        "reference",
        label="Account",
        length=18,
        referenceTo=["Account"],
        relationshipName="Account__r",
        soapType="tns:ID",
    ),
    _field(
        "External_Key__c",
        "string",
        length=40,
        externalId=True,
        unique=True,
        idLookup=True,
    ),
]

INVOICE_DESCRIBE: dict[str, object] = {
    "name": "Invoice__c",
    "label": "Invoice",
    "labelPlural": "Invoices",
    "keyPrefix": "a0F",
    "custom": True,
    "createable": True,
    "updateable": True,
    "deletable": True,
    "queryable": True,
    "urls": {
        "sobject": "/services/data/v62.0/sobjects/Invoice__c",
        "describe": "/services/data/v62.0/sobjects/Invoice__c/describe",
        "rowTemplate": "/services/data/v62.0/sobjects/Invoice__c/{ID}",
    },
    "fields": INVOICE_FIELDS,
    "childRelationships": [],
    "recordTypeInfos": [],
}


@pytest.fixture
def invoice_file(tmp_path: Path) -> Path:
    path = tmp_path / "Invoice__c.describe.json"
    path.write_text(json.dumps(INVOICE_DESCRIBE, indent=2), encoding="utf-8")
    return path


async def test_describe_file_serves_validates_and_queries(api: Api, invoice_file: Path) -> None:
    [loaded] = api.emu.schema.load_describe(invoice_file)
    assert (loaded.name, loaded.key_prefix) == ("Invoice__c", "a0F")

    status, body = await api.call("GET", "/sobjects/Invoice__c/describe")
    assert status == 200
    assert (body["name"], body["keyPrefix"], body["custom"]) == ("Invoice__c", "a0F", True)
    assert [f["name"] for f in body["fields"]] == [f["name"] for f in INVOICE_FIELDS]
    fields = {f["name"]: f for f in body["fields"]}
    assert {
        k: fields["Amount__c"][k]
        for k in ("type", "nillable", "createable", "defaultedOnCreate", "precision", "scale")
    } == {
        "type": "currency",
        "nillable": False,
        "createable": True,
        "defaultedOnCreate": False,
        "precision": 18,
        "scale": 2,
    }
    assert [p["value"] for p in fields["Status__c"]["picklistValues"]] == ["Draft", "Sent", "Paid"]
    assert (fields["Account__c"]["referenceTo"], fields["Account__c"]["relationshipName"]) == (
        ["Account"],
        "Account__r",
    )
    assert {k: fields["External_Key__c"][k] for k in ("externalId", "unique", "idLookup")} == {
        "externalId": True,
        "unique": True,
        "idLookup": True,
    }

    status, body = await api.call("POST", "/sobjects/Invoice__c", {"Name": "INV-0"})
    assert status == 400
    assert body == error(
        "REQUIRED_FIELD_MISSING", "Required fields are missing: [Amount__c]", ["Amount__c"]
    )
    status, body = await api.call(
        "POST", "/sobjects/Invoice__c", {"Amount__c": 1, "Bogus__c": "x"}
    )
    assert status == 400
    assert body == error(
        "INVALID_FIELD", "No such column 'Bogus__c' on sobject of type Invoice__c"
    )

    account = await api.create("Account", {"Name": "Acme"})
    small = await api.create("Invoice__c", {"Name": "INV-1", "Amount__c": 5})
    big = await api.create(
        "Invoice__c",
        {"Name": "INV-2", "Amount__c": 25.5, "Status__c": "Sent", "Account__c": account},
    )
    orphan = await api.create("Invoice__c", {"Name": "INV-3", "Amount__c": 11})
    for record_id in (small, big, orphan):
        assert_salesforce_id(record_id, "a0F")

    status, page = await api.query(
        "SELECT Name, Amount__c, Account__r.Name FROM Invoice__c WHERE Amount__c > 10"
    )
    assert status == 200
    assert (page["totalSize"], page["done"]) == (2, True)
    # No ORDER BY: SOQL promises no order, so compare in name order.
    assert sorted(page["records"], key=lambda r: r["Name"]) == [
        {
            "attributes": {"type": "Invoice__c", "url": f"{V}/sobjects/Invoice__c/{big}"},
            "Name": "INV-2",
            "Amount__c": 25.5,
            "Account__r": {
                "attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{account}"},
                "Name": "Acme",
            },
        },
        {
            "attributes": {"type": "Invoice__c", "url": f"{V}/sobjects/Invoice__c/{orphan}"},
            "Name": "INV-3",
            "Amount__c": 11,
            "Account__r": None,
        },
    ]

    status, body = await api.query("SELECT Bogus__c FROM Invoice__c")
    assert status == 400
    assert body == error(
        "INVALID_FIELD",
        "\nSELECT Bogus__c FROM Invoice__c\n       ^\nERROR at Row:1:Column:8\n"
        "No such column 'Bogus__c' on entity 'Invoice__c'. If you are attempting to use a "
        "custom field, be sure to append the '__c' after the custom field name. Please "
        "reference your WSDL or the describe call for the appropriate names.",
    )


def test_sf_cli_describe_json_loads_the_same(tmp_path: Path, invoice_file: Path) -> None:
    cli_file = tmp_path / "sf-describe.json"
    cli_file.write_text(
        json.dumps({"status": 0, "result": INVOICE_DESCRIBE, "warnings": []}), encoding="utf-8"
    )
    from_rest, from_cli = Schema(), Schema()
    [rest_object] = from_rest.load_describe(invoice_file)
    [cli_object] = from_cli.load_describe(cli_file)
    assert cli_object.describe("62.0") == rest_object.describe("62.0")
    assert cli_object.field("amount__c") == rest_object.field("Amount__c")
    assert cli_object.field("Amount__c") is not None
    assert cli_object.field("Amount__c").required  # type: ignore[union-attr]


def test_describe_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"^describe file .*broken\.json is not JSON: "):
        Schema().load_describe(path)


def test_describe_body_without_a_name(tmp_path: Path) -> None:
    path = tmp_path / "nameless.json"
    body = {k: v for k, v in INVOICE_DESCRIBE.items() if k != "name"}
    path.write_text(json.dumps(body), encoding="utf-8")
    with pytest.raises(SchemaError) as caught:
        Schema().load_describe(path)
    assert str(caught.value) == (
        "a describe body needs 'name' and 'fields' (the REST /sobjects/{name}/describe body "
        "or `sf sobject describe --json` output)"
    )


def test_describe_file_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"^cannot read describe file .*missing\.json: "):
        Schema().load_describe(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------
# ids


def test_the_oracle_matches_published_ids() -> None:
    # Pairs published with Salesforce id converters (the salesforce_id_formatter gem's README
    # and the sf15to18 package's README).
    assert "70130000001tcyI" + oracle_suffix("70130000001tcyI") == "70130000001tcyIAAQ"
    assert "001550V000WOQZi" + oracle_suffix("001550V000WOQZi") == "001550V000WOQZiACP"
    assert oracle_suffix("abcdeabcdeabcde") == "AAA"
    assert oracle_suffix("ZZZZZZZZZZZZZZZ") == "555"
    assert oracle_suffix("A0000B00000000C") == "BBQ"


def test_id_factory_makes_a_thousand_valid_ids() -> None:
    factory = IdFactory()
    ids = [factory.new("001") for _ in range(1000)]
    assert len(set(ids)) == 1000
    for value in ids:
        assert_salesforce_id(value, "001")


async def test_inserted_records_get_a_thousand_valid_ids(emu: Emulator) -> None:
    ids = emu.seed("Account", ({"Name": f"Account {n}"} for n in range(1000)))
    ids += emu.seed("Contact", ({"LastName": f"Smith {n}"} for n in range(10)))
    assert len(set(ids)) == 1010
    for value in ids[:1000]:
        assert_salesforce_id(value, "001")
    for value in ids[1000:]:
        assert_salesforce_id(value, "003")
    assert [r["Id"] for r in emu.records("Account")] == ids[:1000]


def test_a_corrupted_checksum_is_not_a_valid_id() -> None:
    factory = IdFactory()
    for _ in range(200):
        value = factory.new("006")
        assert is_valid_id(value)
        assert is_valid_id(value[:15])
        for position in (15, 16, 17):
            for replacement in ("A", "Q", "5"):
                if value[position] == replacement:
                    continue
                corrupted = value[:position] + replacement + value[position + 1 :]
                # An 18-character id is case-insensitive: its checksum says which of the first
                # 15 characters are upper-case. Another checksum is either impossible (a digit
                # flagged upper-case) or another casing, i.e. another record's id.
                assert canonical_id(corrupted) != canonical_id(value), corrupted
        assert canonical_id(value.lower()) == value
        assert canonical_id(value.upper()) == value
    assert not is_valid_id("001Em000000000")  # 14 characters
    assert not is_valid_id("001Em0000000005IA")  # 17 characters
    assert not is_valid_id("001Em000000000-IAA")  # not base 62
    assert not is_valid_id("00100000000000055A")  # flags a digit as upper-case


# ---------------------------------------------------------------------------------------------
# seeding


async def test_seed_of_an_unknown_object_says_how_to_add_it(emu: Emulator) -> None:
    with pytest.raises(ValueError, match=r"^no sObject named 'Nope__c'") as caught:
        emu.seed("Nope__c", [{"Name": "x"}])
    assert "emu.schema.add_object('Nope__c', {field: type})" in str(caught.value)
    assert "emu.schema.load_describe()" in str(caught.value)


async def test_seed_of_a_bad_record_names_the_error_and_the_index(emu: Emulator) -> None:
    tail = "INVALID_FIELD: No such column 'Bogus' on sobject of type Account"
    with pytest.raises(ValueError, match=r"^Account record 0: ") as caught:
        emu.seed("Account", [{"Bogus": 1}])
    assert str(caught.value) == "Account record 0: " + tail
    with pytest.raises(ValueError, match=r"^Account record 1: ") as caught:
        emu.seed("Account", [{"Name": "fine"}, {"Name": "x", "Bogus": 1}])
    assert str(caught.value) == "Account record 1: " + tail


# ---------------------------------------------------------------------------------------------
# what a new user tripped over


def test_now_takes_a_fixed_aware_datetime_or_a_function() -> None:
    stopped = Emulator(default_accounts=1, now=T0)
    assert [r["CreatedDate"] for r in stopped.records("Account")] == [T0_TEXT]
    with pytest.raises(TypeError, match=r"needs an aware datetime"):
        Emulator(now=dt.datetime(2024, 5, 15))
    with pytest.raises(TypeError, match=r"a function returning an aware datetime.*got str"):
        Emulator(now="2024-05-15")  # type: ignore[arg-type]


def test_add_field_refuses_what_an_org_would_not_have() -> None:
    schema = Schema()
    with pytest.raises(SchemaError, match=r"'Region' is not a custom field's API name"):
        schema.add_field("Account", "Region", "string")
    with pytest.raises(SchemaError, match=r"points at Nope__c, which the schema does not have"):
        schema.add_field("Account", "Foo__c", "reference", reference_to="Nope__c")
    with pytest.raises(SchemaError, match=r"Account already has a child relationship named"):
        schema.add_field(
            "Contact",
            "Other__c",
            "reference",
            reference_to="Account",
            child_relationship="Contacts",
        )


async def test_a_child_relationship_named_after_loading_only_the_child(
    api: Api, tmp_path: Path
) -> None:
    path = tmp_path / "Invoice__c.json"
    path.write_text(
        json.dumps(
            {
                "name": "Invoice__c",
                "keyPrefix": "a0I",
                "fields": [
                    {"name": "Id", "type": "id", "nillable": False, "createable": False},
                    {"name": "Name", "type": "string", "defaultedOnCreate": True},
                    {
                        "name": "Account__c",
                        "type": "reference",
                        "referenceTo": ["Account"],
                        "relationshipName": "Account__r",
                    },
                ],
            }
        )
    )
    api.emu.schema.load_describe(path)
    soql = "SELECT Name, (SELECT Name FROM Invoices__r) FROM Account"
    status, body = await api.query(soql)
    assert (status, body[0]["errorCode"]) == (400, "INVALID_TYPE")
    api.emu.schema.add_child_relationship("Account", "Invoices__r", "Invoice__c", "Account__c")
    account = await api.create("Account", {"Name": "Acme"})
    invoice = await api.create("Invoice__c", {"Name": "INV-1", "Account__c": account})
    status, body = await api.query(soql)
    assert status == 200
    assert body["records"] == [
        {
            "attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{account}"},
            "Name": "Acme",
            "Invoices__r": {
                "totalSize": 1,
                "done": True,
                "records": [
                    {
                        "attributes": {
                            "type": "Invoice__c",
                            "url": f"{V}/sobjects/Invoice__c/{invoice}",
                        },
                        "Name": "INV-1",
                    }
                ],
            },
        }
    ]
    with pytest.raises(SchemaError, match=r"Contact.AccountId is not a lookup to Invoice__c"):
        api.emu.schema.add_child_relationship("Invoice__c", "X__r", "Contact", "AccountId")


def test_an_sf_cli_error_is_not_taken_for_a_describe(tmp_path: Path) -> None:
    path = tmp_path / "error.json"
    path.write_text(json.dumps({"status": 1, "name": "NOT_FOUND", "message": "No such object"}))
    with pytest.raises(
        SchemaError,
        match=r"^this is an `sf` CLI error, not a describe: NOT_FOUND: No such object$",
    ):
        Schema().load_describe(path)


async def test_an_impossible_date_in_a_filter_is_refused(api: Api) -> None:
    status, body = await api.query("SELECT Id FROM Opportunity WHERE CloseDate = 2024-13-01")
    assert status == 400
    assert body[0]["errorCode"] == "MALFORMED_QUERY"
    assert body[0]["message"].endswith("\ninvalid date: 2024-13-01")


async def test_numbers_keep_the_fields_scale_rounding_half_up(api: Api) -> None:
    opportunity = await api.create(
        "Opportunity",
        {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2024-06-30", "Amount": 1.235},
    )
    [stored] = api.emu.records("Opportunity")
    assert (stored["Id"], stored["Amount"]) == (opportunity, 1.24)


async def test_an_unsupported_construct_is_placed_in_the_query(api: Api) -> None:
    status, body = await api.query(
        "SELECT Id,\n  TYPEOF What WHEN Account THEN Name END FROM Task"
    )
    assert status == 400
    assert body[0]["errorCode"] == "EMULATOR_UNSUPPORTED"
    assert body[0]["message"].startswith(
        "\n  TYPEOF What WHEN Account THEN Name END FROM Task\n  ^\nERROR at Row:2:Column:3\n"
        "the sfauth emulator does not implement TYPEOF"
    )
