"""Composite requests against the emulator over real sockets."""

from __future__ import annotations

import pytest

from sfauth import CompositeResult, ConfigurationError, Subrequest
from sfauth.testing import Emulator

from .conftest import SessionFactory

V = "/services/data/v62.0"
HALTED = "PROCESSING_HALTED"


async def test_a_reference_chain(make_session: SessionFactory, emulator: Emulator) -> None:
    sf = make_session(api_version="62.0")
    results = await sf.composite(
        [
            Subrequest("POST", "sobjects/Account", {"Name": "Acme"}, reference_id="account"),
            Subrequest(
                "POST",
                "sobjects/Contact",
                {"LastName": "Lovelace", "AccountId": "@{account.id}"},
                reference_id="contact",
            ),
            Subrequest("GET", "sobjects/Contact/@{contact.id}?fields=AccountId"),
            Subrequest("GET", "query?q=SELECT+Account.Name+FROM+Contact", reference_id="q"),
        ],
        all_or_none=True,
    )
    account, contact, read, query = results
    account_id, contact_id = account.body["id"], contact.body["id"]
    assert account == CompositeResult(
        "account",
        201,
        {"id": account_id, "success": True, "errors": []},
        {"Location": f"{V}/sobjects/Account/{account_id}"},
    )
    assert (contact.reference_id, contact.status) == ("contact", 201)
    assert [r["Id"] for r in emulator.records("Contact")] == [contact_id]
    assert (read.reference_id, read.body["AccountId"]) == ("ref2", account_id)
    assert query.body["records"][0]["Account"]["Name"] == "Acme"
    assert all(r.ok for r in results)
    assert emulator.counters[("composite", 200)] == 1
    assert emulator.api_usage == 1  # one API call, whatever it holds


async def test_all_or_none_rolls_every_subrequest_back(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    before = len(emulator.records("Account"))
    results = await sf.composite(
        [
            Subrequest("POST", "sobjects/Account", {"Name": "Kept?"}, reference_id="a"),
            Subrequest(
                "POST", "sobjects/Contact", {"FirstName": "no last name"}, reference_id="c"
            ),
        ],
        all_or_none=True,
    )
    assert [(r.status, r.body[0]["errorCode"]) for r in results] == [
        (400, HALTED),
        (400, "REQUIRED_FIELD_MISSING"),
    ]
    assert len(emulator.records("Account")) == before


async def test_without_all_or_none_only_dependents_halt(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    results = await sf.composite(
        [
            Subrequest("POST", "sobjects/Contact", {"FirstName": "x"}, reference_id="bad"),
            Subrequest("POST", "sobjects/Account", {"Name": "Fine"}, reference_id="fine"),
            Subrequest("PATCH", "sobjects/Contact/@{bad.id}", {"Title": "y"}, reference_id="dep"),
        ]
    )
    assert [r.status for r in results] == [400, 201, 400]
    assert results[2].body[0]["errorCode"] == HALTED
    assert [r["Name"] for r in emulator.records("Account")][-1] == "Fine"


@pytest.mark.parametrize(
    ("subrequests", "message"),
    [
        ([Subrequest("GET", "limits")] * 26, "at most 25 subrequests; got 26"),
        (
            [Subrequest("GET", f"query?q=SELECT+Id+FROM+Account+LIMIT+{n}") for n in range(6)],
            "at most 5 queries and sObject Collections requests; got 6",
        ),
        ([Subrequest("GET", "sobjects/Account/@{nope.id}")], r"refers to @\{nope"),
        (
            [
                Subrequest("GET", "limits", reference_id="a"),
                Subrequest("GET", "x", reference_id="a"),
            ],
            "must be unique",
        ),
        ([], "at least one subrequest"),
        ([Subrequest("HEAD", "limits")], "is not one of GET, POST, PATCH, PUT, DELETE"),
        ([Subrequest("GET", "https://evil.example/x")], "must be relative to the versioned base"),
        ([Subrequest("GET", "/sobjects/Account")], "must be relative to the versioned base"),
        (
            [Subrequest("GET", "limits", headers={"Authorization": "Bearer x"})],
            "without Accept, Authorization or Content-Type",
        ),
        ([Subrequest("POST", "sobjects/Account", {"Amount": float("nan")})], "JSON values"),
    ],
)
async def test_over_the_limits_nothing_is_sent(
    make_session: SessionFactory, emulator: Emulator, subrequests: list[Subrequest], message: str
) -> None:
    sf = make_session(api_version="62.0")
    with pytest.raises(ConfigurationError, match=message):
        await sf.composite(subrequests)
    assert emulator.requests == []


async def test_the_emulator_refuses_what_salesforce_refuses(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    body = {"compositeRequest": [{"method": "GET", "url": f"{V}/limits", "referenceId": "a"}] * 26}
    async with sf.post(f"{V}/composite", json=body) as response:
        assert response.status == 400
        assert (await response.json())[0]["errorCode"] == "LIMIT_EXCEEDED"


async def test_a_collections_subrequest_follows_the_composites_all_or_none(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(api_version="62.0")
    before = len(emulator.records("Account"))
    records = [
        {"attributes": {"type": "Account"}, "Name": "InColl"},
        {"attributes": {"type": "Account"}},
    ]
    results = await sf.composite(
        [
            Subrequest("POST", "composite/sobjects", {"allOrNone": False, "records": records}),
            Subrequest("POST", "sobjects/Account", {"Name": "After"}),
        ],
        all_or_none=True,
    )
    assert [r.status for r in results] == [200, 400]
    assert [r["success"] for r in results[0].body] == [False, False]
    assert results[1].body[0]["errorCode"] == HALTED
    assert len(emulator.records("Account")) == before


async def test_references_keep_their_type_and_page_through_a_query(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    emulator.seed("Account", [{"Name": f"P{n}", "NumberOfEmployees": n} for n in range(450)])
    sf = make_session(api_version="62.0")
    results = await sf.composite(
        [
            Subrequest(
                "GET",
                "query?q=SELECT+Id,NumberOfEmployees+FROM+Account+WHERE+Name+LIKE+'P%'",
                reference_id="q",
                headers={"Sforce-Query-Options": "batchSize=200"},
            ),
            Subrequest("GET", "@{q.nextRecordsUrl}", reference_id="page2"),
            Subrequest(
                "POST",
                "sobjects/Account",
                {"Name": "copy", "NumberOfEmployees": "@{q.records[3].NumberOfEmployees}"},
            ),
        ]
    )
    assert [r.status for r in results] == [200, 200, 201]
    assert len(results[1].body["records"]) == 200
    copy = [r for r in emulator.records("Account") if r["Name"] == "copy"]
    assert [r["NumberOfEmployees"] for r in copy] == [3]
