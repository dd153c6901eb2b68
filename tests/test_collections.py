"""sObject Collections helpers against the emulator over real sockets."""

from __future__ import annotations

import pytest

from sfauth import CollectionError, ConfigurationError, RecordResult
from sfauth.testing import Emulator, ScriptedResponse, no_backoff

from .conftest import SessionFactory

REQUIRED = {
    "statusCode": "REQUIRED_FIELD_MISSING",
    "message": "Required fields are missing: [LastName]",
    "fields": ["LastName"],
}
ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header",
    "fields": [],
}


def contacts(count: int, invalid: set[int]) -> list[dict[str, object]]:
    return [
        {"FirstName": f"F{n}"} if n in invalid else {"LastName": f"L{n:04d}"} for n in range(count)
    ]


async def test_1001_records_with_two_invalid(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    await sf.token()
    results = await sf.sobject("Contact").create_many(contacts(1001, {3, 777}))
    assert emulator.counters[("collection_create", 200)] == 6
    assert len(results) == 1001
    assert results[3] == RecordResult(None, False, [REQUIRED])
    assert results[777] == RecordResult(None, False, [REQUIRED])
    ids = [r.id for r in results if r.success]
    assert len(ids) == len(set(ids)) == 999
    stored = {r["Id"]: r["LastName"] for r in emulator.records("Contact")}
    # Input order kept: result n is the record of LastName Lnnnn.
    for n, result in enumerate(results):
        if n not in (3, 777):
            assert stored[result.id] == f"L{n:04d}"


async def test_all_or_none_rolls_back_its_own_chunk_only(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    results = await sf.sobject("Contact").create_many(contacts(401, {250}), all_or_none=True)
    assert [r.success for r in results[:200]] == [True] * 200  # chunk 1: fine
    assert results[250] == RecordResult(None, False, [REQUIRED])
    assert {tuple(map(str, r.errors)) for i, r in enumerate(results[200:400]) if i != 50} == {
        (str(ROLLED_BACK),)
    }
    assert all(r.id is None for r in results[200:400])
    assert results[400].success
    assert len(emulator.records("Contact")) == 201


async def test_update_upsert_delete_many(make_session: SessionFactory, emulator: Emulator) -> None:
    emulator.schema.add_field("Contact", "Ext__c", "string", external_id=True)
    sf = make_session(api_version="62.0")
    objects = sf.sobject("Contact")
    first = await objects.upsert_many(
        "Ext__c", [{"Ext__c": f"E{n}", "LastName": f"L{n}"} for n in range(250)]
    )
    assert {r.created for r in first} == {True}
    again = await objects.upsert_many(
        "Ext__c",
        [{"Ext__c": f"E{n}", "LastName": f"M{n}"} for n in range(240, 260)]
        + [{"Ext__c": "D", "LastName": "x"}, {"Ext__c": "D", "LastName": "y"}],
    )
    assert [r.created for r in again[:20]] == [False] * 10 + [True] * 10
    assert [r.errors[0]["statusCode"] for r in again[20:]] == ["DUPLICATE_EXTERNAL_ID"] * 2
    ids = [r.id for r in first]
    updated = await objects.update_many(
        [{"Id": record_id, "Title": "CTO"} for record_id in ids[:210]]
    )
    assert all(r.success for r in updated)
    assert sum(1 for r in emulator.records("Contact") if r.get("Title") == "CTO") == 210
    deleted = await objects.delete_many([*ids[:201], "001000000000000AAA"])
    assert [r.success for r in deleted] == [True] * 201 + [False]
    assert deleted[-1].errors[0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"
    assert len(emulator.records("Contact")) == 260 - 201
    assert emulator.counters[("collection_delete", 200)] == 2


async def test_a_create_chunk_that_may_have_arrived_is_not_resent(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(reset=True)])
    with no_backoff(), pytest.raises(CollectionError) as caught:
        await sf.sobject("Contact").create_many(contacts(300, set()), concurrency=1)
    error = caught.value
    assert [start for start, _ in error.failures] == [0]
    assert error.results[:200] == [None] * 200
    assert all(r is not None and r.success for r in error.results[200:])
    assert [r.status for r in emulator.requests if r.method == "POST"] == [0, 200]
    assert len(emulator.records("Contact")) == 100


async def test_chunks_in_flight_stay_within_concurrency(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    await sf.token()
    emulator.response_delay = 0.05
    emulator.reset_peak()
    await sf.sobject("Contact").create_many(contacts(1400, set()), concurrency=3)
    assert emulator.peak_in_flight == 3
    assert emulator.counters[("collection_create", 200)] == 7


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{1: "x"}], r"records\[0\] has a field name that is not a string"),
        (
            [{"attributes": {"type": "Account"}, "Name": "x"}],
            r"records\[0\] is typed 'Account' in its attributes, but this is "
            r"sf.sobject\('Contact'\)",
        ),
        ([{"LastName": "a"}, "b"], r"records\[1\] must be a mapping.*nothing was sent"),
        ({"LastName": "a"}, "must be an iterable of records"),
        ([{"LastName": float("nan")}], "must hold JSON values"),
    ],
)
async def test_bad_input_sends_nothing(
    make_session: SessionFactory, emulator: Emulator, records: object, message: str
) -> None:
    sf = make_session(api_version="62.0")
    with pytest.raises(ConfigurationError, match=message):
        await sf.sobject("Contact").create_many(records)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"records\[0\] has no 'Id'"):
        await sf.sobject("Contact").update_many([{"LastName": "x"}])
    with pytest.raises(ConfigurationError, match="concurrency must be an int from 1 to 25"):
        await sf.sobject("Contact").delete_many(["x"], concurrency=0)
    assert await sf.sobject("Contact").create_many([]) == []
    assert emulator.requests == []


async def test_ids_travel_only_as_ids(make_session: SessionFactory, emulator: Emulator) -> None:
    sf = make_session(api_version="62.0")
    made = await sf.sobject("Contact").create_many(contacts(3, set()))
    joined = f"{made[0].id},{made[1].id}"
    for ids in ([joined], [","], [made[0].id[:14]]):
        with pytest.raises(ConfigurationError, match=r"ids\[0\] is not a Salesforce record id"):
            await sf.sobject("Contact").delete_many(ids)
    assert len(emulator.records("Contact")) == 3
    with pytest.raises(ConfigurationError, match="all_or_none must be True or False"):
        await sf.sobject("Contact").delete_many([made[0].id], all_or_none="false")  # type: ignore[arg-type]


async def test_a_deleted_record_counts_as_deleted(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    made = await sf.sobject("Contact").create_many(contacts(2, set()))
    ids = [r.id for r in made if r.id]
    await sf.sobject("Contact").delete_many(ids[:1])
    again = await sf.sobject("Contact").delete_many(ids)
    assert again == [RecordResult(ids[0], True), RecordResult(ids[1], True)]


async def test_required_keys_in_any_case_and_falsy_values(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.schema.add_field("Contact", "Num__c", "double", external_id=True, precision=18)
    sf = make_session(api_version="62.0")
    created = await sf.sobject("Contact").upsert_many(
        "num__c", [{"Num__c": 0, "LastName": "zero"}]
    )
    assert created[0].created is True
    updated = await sf.sobject("Contact").update_many([{"id": created[0].id, "Title": "x"}])
    assert updated[0].success
    assert [r["Num__c"] for r in emulator.records("Contact")] == [0.0]
