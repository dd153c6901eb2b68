"""sObject helpers, typed errors and versioned paths, against the emulator over real sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
import math

import pytest

from sfauth import (
    APIVersionError,
    ConfigurationError,
    MalformedRequestError,
    MultipleRecordsError,
    NotFoundError,
    TransientAPIError,
    UpsertResult,
)
from sfauth.testing import Emulator, ScriptedResponse, no_backoff

from .conftest import SessionFactory

V = "/services/data/v62.0"


async def test_create_get_update_delete(make_session: SessionFactory, emulator: Emulator) -> None:
    sf = make_session(api_version="62.0")
    contacts = sf.sobject("Contact")
    record_id = await contacts.create({"LastName": "Lovelace", "Email": "ada@example.com"})
    assert record_id.startswith("003")
    assert await contacts.get(record_id, ["LastName", "Email"]) == {
        "attributes": {"type": "Contact", "url": f"{V}/sobjects/Contact/{record_id}"},
        "LastName": "Lovelace",
        "Email": "ada@example.com",
    }
    await contacts.update(record_id, {"Email": "ada@math.example"})
    assert (await contacts.get(record_id))["Email"] == "ada@math.example"
    await contacts.delete(record_id)
    with pytest.raises(NotFoundError) as caught:
        await contacts.get(record_id)
    assert (caught.value.status, caught.value.error_code) == (404, "ENTITY_IS_DELETED")
    assert [r["Id"] for r in emulator.records("Contact", include_deleted=True)] == [record_id]


async def test_upsert_reports_created_then_updated(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.schema.add_field("Account", "External_Id__c", "string", external_id=True)
    sf = make_session(api_version="62.0")
    accounts = sf.sobject("Account")
    first = await accounts.upsert("External_Id__c", "A/1", {"Name": "Acme"})
    assert first.created is True
    again = await accounts.upsert("External_Id__c", "A/1", {"Name": "Acme Corp"})
    assert again == UpsertResult(first.id, False)
    assert (await accounts.get_by("External_Id__c", "A/1", ["Name"]))["Name"] == "Acme Corp"
    emulator.seed("Account", [{"Name": "dup", "External_Id__c": "D"}] * 2)
    with pytest.raises(MultipleRecordsError) as caught:
        await accounts.upsert("External_Id__c", "D", {"Name": "x"})
    assert len(caught.value.urls) == 2
    assert caught.value.status == 300
    assert str(caught.value).startswith(
        "upsert Account by 'External_Id__c' matched 2 records; nothing was written (PATCH "
    )
    assert str(caught.value).endswith(
        "-> HTTP 300: 2 records match (Salesforce lists their URLs))"
    )


async def test_errors_carry_salesforce_code_message_and_fields(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    with pytest.raises(MalformedRequestError) as caught:
        await sf.sobject("Opportunity").create({"Name": "Deal"})
    error = caught.value
    assert (error.status, error.error_code) == (400, "REQUIRED_FIELD_MISSING")
    assert error.message == "Required fields are missing: [StageName, CloseDate]"
    assert error.fields == ["StageName", "CloseDate"]
    assert error.errors == [
        {
            "errorCode": "REQUIRED_FIELD_MISSING",
            "message": "Required fields are missing: [StageName, CloseDate]",
            "fields": ["StageName", "CloseDate"],
        }
    ]
    assert error.url == emulator.url + f"{V}/sobjects/Opportunity"
    with pytest.raises(NotFoundError) as not_found:
        await sf.sobject("Account").upsert("Nope__c", "1", {"Name": "x"})
    assert not_found.value.message == (
        "Provided external ID field does not exist or is not accessible: Nope__c"
    )


async def test_a_create_that_may_have_arrived_is_not_resent(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(reset=True)])
    with no_backoff(), pytest.raises(Exception) as caught:  # noqa: PT011 - the transport error
        await sf.sobject("Account").create({"Name": "Once"})
    assert type(caught.value).__name__ == "TransportError"
    assert [r.status for r in emulator.requests if r.method == "POST"] == [0]
    # An update is idempotent: the same fault is retried and the update lands.
    record_id = emulator.seed("Account", [{"Name": "Before"}])[0]
    emulator.script_rest_responses([ScriptedResponse(status=503, json=[{"errorCode": "X"}])])
    with no_backoff():
        await sf.sobject("Account").update(record_id, {"Name": "After"})
    assert [r["Name"] for r in emulator.records("Account") if r["Id"] == record_id] == ["After"]


async def test_raise_for_status_of_a_raw_response_holds_no_bearer(
    make_session: SessionFactory,
) -> None:
    sf = make_session(api_version="62.0")
    token = (await sf.token()).access_token
    async with sf.post(await sf.data_path("sobjects", "Account"), json={"Bogus": 1}) as resp:
        with pytest.raises(MalformedRequestError) as caught:
            await sf.raise_for_status(resp)
    error = caught.value
    assert (error.error_code, error.fields) == ("INVALID_FIELD", [])
    assert error.__cause__ is None
    assert error.__context__ is None
    seen = " ".join([str(error), repr(error), repr(vars(error))])
    assert token not in seen
    assert "Bearer" not in seen
    async with sf.get(await sf.data_path("limits")) as resp:
        await sf.raise_for_status(resp)  # a 200: nothing


async def test_an_unserved_pinned_version_says_which_are_served(
    make_session: SessionFactory,
) -> None:
    sf = make_session(api_version="99.0")
    with pytest.raises(APIVersionError) as caught:
        await sf.sobject("Account").create({"Name": "x"})
    assert str(caught.value).startswith(
        "API version 99.0 is not served by this org; it serves up to 62.0 "
        "(set api_version='62.0' or 'latest')"
    )
    assert (caught.value.version, caught.value.served) == ("99.0", ["60.0", "61.0", "62.0"])
    assert isinstance(caught.value, NotFoundError)
    # The query and limits paths say the same.
    with pytest.raises(APIVersionError, match=r"API version 99\.0 is not served by this org"):
        [r async for r in sf.query("SELECT Id FROM Account")]
    with pytest.raises(APIVersionError, match=r"API version 99\.0 is not served by this org"):
        await sf.limits()


@pytest.mark.parametrize("name", [" Account", "Account/../Contact", "", "1Account", None])
async def test_an_object_name_must_be_an_api_name(
    make_session: SessionFactory, name: object
) -> None:
    sf = make_session(api_version="62.0")
    with pytest.raises(ConfigurationError, match="the sObject name must be an API name"):
        sf.sobject(name)  # type: ignore[arg-type]


async def test_paths_follow_the_resolved_version_and_encode_segments(
    make_session: SessionFactory,
) -> None:
    sf = make_session(api_version="latest")
    assert await sf.data_path("sobjects", "Account", "a/b?c") == (
        f"{V}/sobjects/Account/a%2Fb%3Fc"
    )
    with pytest.raises(ConfigurationError, match="a path segment must be a non-empty string"):
        await sf.data_path("sobjects", "")


async def test_describes_are_cached_until_refreshed(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    described = await sf.sobject("Account").describe()
    assert described["keyPrefix"] == "001"
    names = [o["name"] for o in (await sf.describe_global())["sobjects"]]
    assert "Contact" in names
    before = emulator.counters[("describe", 200)]
    await sf.sobject("account").describe()  # cached: any case of the name
    await sf.describe_global()
    assert emulator.counters[("describe", 200)] == before
    emulator.schema.add_field("Account", "Tier__c", "string")
    assert (await sf.sobject("Account").describe(refresh=True))["fields"][-1]["name"] == (
        "Tier__c"
    )
    sf.forget_describes()
    await sf.describe_global()
    assert emulator.counters[("describe_global", 200)] == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda o: o.create(["Name"]), "record must be a mapping"),
        (lambda o: o.get("001", "Name"), "fields must be a non-empty sequence of field names"),
        (lambda o: o.get("001", []), "fields must be a non-empty sequence of field names"),
        (lambda o: o.get(".."), r"record_id must be a Salesforce record id \(15 or 18 letters"),
        (lambda o: o.get("123"), r"record_id must be .* got '123'; nothing was sent"),
        (lambda o: o.delete("001Em0000000003IA/"), "record_id must be a Salesforce record id"),
        (
            lambda o: o.upsert("Ext__c", "A-1", {"ext__C": "A-2"}),
            r"record has ext__C='A-2', but the upsert is by Ext__c='A-1'; leave the field out",
        ),
        (lambda o: o.create_many(None), "records must be an iterable of records .dicts.; got"),
        (lambda o: o.delete_many(None), "ids must be an iterable of record ids; got NoneType"),
        (lambda o: o.create({"When": dt.datetime(2024, 1, 1)}), "record must hold JSON values"),
        (lambda o: o.create({"Amount": math.nan}), "no NaN or infinity"),
        (lambda o: o.update("", {}), "record_id must be a Salesforce record id"),
    ],
)
async def test_bad_input_is_refused_before_sending(
    make_session: SessionFactory, emulator: Emulator, call: object, message: str
) -> None:
    sf = make_session(api_version="62.0")
    with pytest.raises(ConfigurationError, match=message):
        await call(sf.sobject("Account"))  # type: ignore[operator]
    assert emulator.requests == []


async def test_concurrent_describes_share_one_request(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    await sf.token()
    bodies = await asyncio.gather(*(sf.sobject("Contact").describe() for _ in range(50)))
    assert all(b == bodies[0] for b in bodies)
    bodies[0]["fields"].clear()  # each caller has its own copy
    assert (await sf.sobject("Contact").describe())["fields"] == bodies[1]["fields"]
    await asyncio.gather(*(sf.describe_global() for _ in range(50)))
    assert emulator.counters[("describe", 200)] == 1
    assert emulator.counters[("describe_global", 200)] == 1
    # A failed describe is not kept: the next call asks again.
    with pytest.raises(NotFoundError):
        await sf.sobject("Nope__c").describe()
    emulator.schema.add_object("Nope__c")
    assert (await sf.sobject("Nope__c").describe())["name"] == "Nope__c"


async def test_not_found_costs_one_version_listing_per_session(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    missing = emulator.seed("Account", [{"Name": "x"}])[0]
    await sf.sobject("Account").delete(missing)
    for _ in range(5):
        with pytest.raises(NotFoundError) as caught:
            await sf.sobject("Account").get(missing)
        assert not isinstance(caught.value, APIVersionError)
    assert emulator.counters[("versions", 200)] == 1
    latest = make_session(api_version="latest")
    with pytest.raises(NotFoundError):
        await latest.sobject("Account").get(missing)
    assert emulator.counters[("versions", 200)] == 2  # the "latest" lookup, no listing after


async def test_a_delete_that_finds_its_work_done_succeeds(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    record_id = emulator.seed("Account", [{"Name": "x"}])[0]
    await sf.sobject("Account").delete(record_id)
    await sf.sobject("Account").delete(record_id)  # already in the recycle bin
    with pytest.raises(NotFoundError) as caught:
        await sf.sobject("Account").delete("001" + "Zz9000000001" + "AAA")
    assert caught.value.error_code == "NOT_FOUND"


async def test_upsert_needs_api_version_46(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="45.0")
    with pytest.raises(ConfigurationError, match=r"upsert needs API version 46.0 or later"):
        await sf.sobject("Account").upsert("External_Id__c", "A-1", {"Name": "x"})
    assert [r for r in emulator.requests if r.method == "PATCH"] == []


async def test_a_transient_refusal_of_a_create_is_typed_transient(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    await sf.token()
    emulator.script_rest_responses(
        [ScriptedResponse(status=503, json=[{"errorCode": "SERVER_UNAVAILABLE", "message": "x"}])]
    )
    with no_backoff(), pytest.raises(TransientAPIError) as caught:
        await sf.sobject("Account").create({"Name": "x"})
    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert [r.status for r in emulator.requests if r.method == "POST"] == [503]


async def test_a_failing_version_listing_leaves_the_404_as_it_was(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    await sf.token()
    not_found = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
    emulator.script_rest_responses(
        [ScriptedResponse(status=404, json=not_found), ScriptedResponse(json=5)]
    )
    with pytest.raises(NotFoundError) as caught:
        await sf.sobject("Account").get("001000000000000AAA")
    assert type(caught.value) is NotFoundError
    assert caught.value.message == "The requested resource does not exist"
