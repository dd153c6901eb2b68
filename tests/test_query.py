"""QueryMixin against the emulator over real sockets: paging, queryAll, versions, limits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp
import pytest

from sfauth import APIError, AuthSession, ConfigurationError, MalformedRequestError
from sfauth._query import normalize_api_version
from sfauth.testing import Emulator, ScriptedResponse, no_backoff

ACCOUNTS = "SELECT Id, Name FROM Account"

QuerySession = AuthSession


Factory = Callable[..., Any]


@pytest.fixture
def make_query_session(make_session: Factory) -> Factory:
    return make_session


def account_ids(emulator: Emulator) -> list[str]:
    return [str(record["Id"]) for record in emulator.records("Account")]


def rest_requests(emulator: Emulator, endpoint: str) -> list[Any]:
    return [r for r in emulator.requests if r.endpoint == endpoint]


# ---------------------------------------------------------------------------- query paging


async def test_query_pages_all_250_accounts_in_order(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    records = [record async for record in sf.query(ACCOUNTS, batch_size=200)]
    ids = [record["Id"] for record in records]
    assert len(ids) == 250
    assert len(set(ids)) == 250
    assert ids == account_ids(emulator)
    assert records[0]["Name"] == "Account 0001"
    assert records[249]["Name"] == "Account 0250"
    assert records[0]["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v62.0/sobjects/Account/{ids[0]}",
    }
    assert emulator.counters[("query", 200)] == 1
    assert emulator.counters[("query_more", 200)] == 1
    first, more = rest_requests(emulator, "query"), rest_requests(emulator, "query_more")
    assert first[0].path == "/services/data/v62.0/query"
    assert first[0].headers["Sforce-Query-Options"] == "batchSize=200"
    assert more[0].path.startswith("/services/data/v62.0/query/01g")
    assert more[0].path.endswith("-200")


async def test_query_without_batch_size_sends_no_query_options(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    ids = [record["Id"] async for record in sf.query(ACCOUNTS)]
    assert ids == account_ids(emulator)
    (request,) = rest_requests(emulator, "query")
    assert "Sforce-Query-Options" not in request.headers
    assert emulator.counters[("query_more", 200)] == 0


async def test_query_fetches_the_next_page_only_when_the_current_one_is_consumed(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    records = sf.query(ACCOUNTS, batch_size=200)
    assert emulator.counters[("query", 200)] == 0  # nothing is sent before iterating
    first = await anext(records)
    assert first["Name"] == "Account 0001"
    assert emulator.counters[("query", 200)] == 1
    for n in range(2, 201):
        assert (await anext(records))["Name"] == f"Account {n:04d}"
    assert emulator.counters[("query_more", 200)] == 0  # page 1 consumed, page 2 not asked
    assert (await anext(records))["Name"] == "Account 0201"
    assert emulator.counters[("query_more", 200)] == 1
    rest = [record["Name"] async for record in records]
    assert rest == [f"Account {n:04d}" for n in range(202, 251)]
    assert emulator.counters[("query_more", 200)] == 1


async def test_breaking_out_early_sends_nothing_more(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    records = sf.query(ACCOUNTS, batch_size=200)
    async with contextlib.aclosing(records):  # type: ignore[type-var]
        async for record in records:
            if record["Name"] == "Account 0010":
                break
    assert emulator.counters[("query", 200)] == 1
    assert emulator.counters[("query_more", 200)] == 0


async def test_where_and_limit_are_the_servers_business(
    make_query_session: Factory,
) -> None:
    sf = make_query_session(api_version="62.0")
    soql = "SELECT Id, Name, Industry FROM Account WHERE Industry = 'Finance' LIMIT 3"
    records = [record async for record in sf.query(soql)]
    assert [(r["Name"], r["Industry"]) for r in records] == [
        ("Account 0002", "Finance"),
        ("Account 0007", "Finance"),
        ("Account 0012", "Finance"),
    ]


async def test_session_expiry_between_pages_costs_one_refresh(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    seen = 0
    async for _ in sf.query(ACCOUNTS, batch_size=200):
        seen += 1
        if seen == 200:
            emulator.expire_all_sessions()
    assert seen == 250
    assert emulator.token_request_count == 2
    assert emulator.counters[("query_more", 401)] == 1
    assert emulator.counters[("query_more", 200)] == 1


async def test_transient_faults_on_pages_are_retried(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    emulator.inject_faults(0.5, seed=3, endpoints={"query", "query_more"})
    with no_backoff():
        ids = [record["Id"] async for record in sf.query(ACCOUNTS, batch_size=200)]
    assert ids == account_ids(emulator)
    assert sum(emulator.faults_injected.values()) > 0


@pytest.mark.parametrize("batch_size", [0, 199, 2001, True, 200.0, "200"])
async def test_batch_size_out_of_range_is_refused_before_any_request(
    make_query_session: Factory, emulator: Emulator, batch_size: Any
) -> None:
    sf = make_query_session(api_version="62.0")
    with pytest.raises(ConfigurationError, match="batch_size must be an int from 200 to 2000"):
        sf.query(ACCOUNTS, batch_size=batch_size)
    with pytest.raises(ConfigurationError, match="batch_size"):
        sf.query_all(ACCOUNTS, batch_size=batch_size)
    assert emulator.requests == []
    assert emulator.token_request_count == 0


@pytest.mark.parametrize("soql", ["", "   ", None, 42])
async def test_empty_soql_is_refused(make_query_session: Factory, soql: Any) -> None:
    sf = make_query_session(api_version="62.0")
    with pytest.raises(ConfigurationError, match="soql must be a non-empty"):
        sf.query(soql)


async def test_batch_size_bounds_are_accepted(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    assert len([r async for r in sf.query(ACCOUNTS, batch_size=2000)]) == 250
    (request,) = rest_requests(emulator, "query")
    assert request.headers["Sforce-Query-Options"] == "batchSize=2000"


# ---------------------------------------------------------------------------- errors


async def test_malformed_soql_raises_api_error_with_salesforce_fields(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    with pytest.raises(APIError) as caught:
        async for _ in sf.query("SELEC Id FROM Account"):
            pass
    error = caught.value
    # The same typed error as every other helper's 400 (an APIError subclass).
    assert type(error) is MalformedRequestError
    assert error.status == 400
    assert error.error_code == "MALFORMED_QUERY"
    assert error.message
    assert error.method == "GET"
    assert error.url == f"{emulator.url}/services/data/v62.0/query"  # no query string
    assert "MALFORMED_QUERY" in str(error)
    assert str(error).startswith("SOQL query failed (GET ")


async def test_a_long_soql_error_message_comes_whole(make_query_session: Factory) -> None:
    # A SOQL error quotes the query and points at the fault with a caret line.
    sf = make_query_session(api_version="62.0")
    soql = "SELECT Id, Name, Industry, Rating, Phone, Website, Nme FROM Account"
    async with sf.get("/services/data/v62.0/query", params={"q": soql}) as resp:
        assert resp.status == 400
        (sent,) = await resp.json()
    assert len(sent["message"]) > 300
    with pytest.raises(MalformedRequestError) as caught:
        async for _ in sf.query(soql):
            pass
    assert caught.value.message == sent["message"]
    assert caught.value.errors[0]["message"] == sent["message"]


async def test_unknown_sobject_raises_invalid_type(make_query_session: Factory) -> None:
    sf = make_query_session(api_version="62.0")
    with pytest.raises(APIError) as caught:
        _ = [r async for r in sf.query("SELECT Id FROM Nope__c")]
    assert caught.value.status == 400
    assert caught.value.error_code == "INVALID_TYPE"
    # Salesforce's message: the query, a caret under the object, the position, the text.
    assert caught.value.message == (
        "\nSELECT Id FROM Nope__c\n               ^\nERROR at Row:1:Column:16\n"
        "sObject type 'Nope__c' is not supported. If you are attempting to use a custom object, "
        "be sure to append the '__c' after the entity name. Please reference your WSDL or the "
        "describe call for the appropriate names."
    )


async def test_a_non_json_200_page_is_an_api_error(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(200, text="<html>maintenance</html>")])
    with pytest.raises(APIError) as caught:
        _ = [r async for r in sf.query(ACCOUNTS)]
    assert caught.value.status == 200
    assert caught.value.error_code is None
    assert "without a JSON body" in str(caught.value)


async def test_a_page_without_records_is_an_api_error(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(200, json={"totalSize": 1, "done": True})])
    with pytest.raises(APIError, match="not with a query result with 'records'"):
        _ = [r async for r in sf.query(ACCOUNTS)]


async def test_an_expired_query_locator_surfaces_as_api_error(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    await sf.token()
    emulator.script_rest_responses(
        [
            ScriptedResponse(
                200,
                json={
                    "totalSize": 2,
                    "done": False,
                    "nextRecordsUrl": "/services/data/v62.0/query/01gGONE-1",
                    "records": [{"Id": "001A"}],
                },
            )
        ]
    )
    records = sf.query(ACCOUNTS)
    assert (await anext(records))["Id"] == "001A"
    with pytest.raises(APIError) as caught:
        await anext(records)
    assert caught.value.error_code == "INVALID_QUERY_LOCATOR"
    assert caught.value.url == f"{emulator.url}/services/data/v62.0/query/01gGONE-1"


# ---------------------------------------------------------------------------- queryAll


async def test_query_all_uses_query_all_and_follows_its_pages(
    make_query_session: Factory, emulator: Emulator
) -> None:
    # The emulator has no /queryAll endpoint: script what Salesforce answers.
    sf = make_query_session(api_version="62.0")
    await sf.token()
    deleted = {"attributes": {"type": "Account"}, "Id": "001D", "IsDeleted": True}
    emulator.script_rest_responses(
        [
            ScriptedResponse(
                200,
                json={
                    "totalSize": 3,
                    "done": False,
                    "nextRecordsUrl": "/services/data/v62.0/queryAll/01gALL-2",
                    "records": [{"Id": "001A", "IsDeleted": False}, deleted],
                },
            ),
            ScriptedResponse(
                200, json={"totalSize": 3, "done": True, "records": [{"Id": "001C"}]}
            ),
        ]
    )
    soql = "SELECT Id, IsDeleted FROM Account"
    records = [r async for r in sf.query_all(soql, batch_size=500)]
    assert [r["Id"] for r in records] == ["001A", "001D", "001C"]
    assert records[1] == deleted
    first, second = emulator.requests
    assert first.path == "/services/data/v62.0/queryAll"
    assert first.query_string == "q=SELECT+Id,+IsDeleted+FROM+Account"
    assert first.headers["Sforce-Query-Options"] == "batchSize=500"
    assert second.path == "/services/data/v62.0/queryAll/01gALL-2"
    assert second.query_string == ""
    assert "Sforce-Query-Options" not in second.headers


# ---------------------------------------------------------------------------- versions


async def test_latest_resolves_once_for_100_concurrent_callers(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session()  # api_version="latest" is the default
    versions = await asyncio.gather(*(sf.api_version_resolved() for _ in range(100)))
    assert versions == ["62.0"] * 100
    assert emulator.counters[("versions", 200)] == 1
    assert await sf.api_version_resolved() == "62.0"
    assert emulator.counters[("versions", 200)] == 1
    assert emulator.token_request_count == 1


async def test_concurrent_first_queries_share_the_version_lookup(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="latest")

    async def count() -> int:
        return len([r async for r in sf.query("SELECT Id FROM Account LIMIT 3")])

    assert await asyncio.gather(*(count() for _ in range(50))) == [3] * 50
    assert emulator.counters[("versions", 200)] == 1
    assert {r.path for r in rest_requests(emulator, "query")} == {"/services/data/v62.0/query"}


async def test_latest_is_the_highest_version_the_org_lists() -> None:
    async with Emulator(api_versions=("9.0", "61.0", "62.1", "62.0", "100.0")) as emu:
        c = emu.create_credentials()
        async with QuerySession(
            client_id=c.client_id,
            username=c.username,
            private_key=c.private_key_pem,
            login_url=emu.url,
            allow_http_loopback=True,
        ) as sf:
            assert await sf.api_version_resolved() == "100.0"
            limits = await sf.limits()
            assert limits["DailyApiRequests"]["Max"] == 15000
        assert emu.requests[-1].path == "/services/data/v100.0/limits"


@pytest.mark.parametrize(("configured", "used"), [("61.0", "61.0"), ("v60.0", "60.0")])
async def test_fixed_version_skips_the_lookup(
    make_query_session: Factory, emulator: Emulator, configured: str, used: str
) -> None:
    sf = make_query_session(api_version=configured)
    assert await sf.api_version_resolved() == used
    assert len([r async for r in sf.query("SELECT Id FROM Account LIMIT 2")]) == 2
    assert emulator.counters[("versions", 200)] == 0
    assert [r.path for r in emulator.requests] == [f"/services/data/v{used}/query"]


async def test_a_failed_lookup_is_not_cached(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session()
    await sf.token()
    emulator.script_rest_responses(
        [ScriptedResponse(500, json=[{"errorCode": "UNKNOWN_EXCEPTION", "message": "boom"}])]
    )
    with pytest.raises(APIError) as caught:
        await sf.api_version_resolved()
    assert caught.value.status == 500
    assert caught.value.error_code == "UNKNOWN_EXCEPTION"
    assert caught.value.message == "boom"
    assert caught.value.url == f"{emulator.url}/services/data/"
    assert str(caught.value).startswith("API version lookup failed")
    assert await sf.api_version_resolved() == "62.0"
    assert emulator.counters[("versions", 500)] == 1
    assert emulator.counters[("versions", 200)] == 1


async def test_an_empty_version_list_is_an_api_error(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session()
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(200, json=[])])
    with pytest.raises(APIError, match="not with a list of"):
        await sf.api_version_resolved()


class _Gate:
    """Holds a response context (the ``GET /services/data/``) until released."""

    def __init__(self) -> None:
        self.inner: Any = None
        self.calls = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def wrap(self, inner: Any) -> _Gate:
        self.inner = inner
        self.calls += 1
        return self

    async def __aenter__(self) -> aiohttp.ClientResponse:
        self.entered.set()
        await self.release.wait()
        response: aiohttp.ClientResponse = await self.inner.__aenter__()
        return response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)


async def test_cancelling_one_caller_does_not_cancel_the_shared_lookup(
    make_query_session: Factory, emulator: Emulator
) -> None:
    gate = _Gate()

    class Gated(QuerySession):  # type: ignore[valid-type, misc]
        def get(self, path: str, **kwargs: Any) -> Any:
            inner = super().get(path, **kwargs)
            return gate.wrap(inner) if path == "/services/data/" else inner

    sf = make_query_session(Gated)
    first = asyncio.create_task(sf.api_version_resolved())
    second = asyncio.create_task(sf.api_version_resolved())
    await gate.entered.wait()  # the lookup is under way, both callers wait for it
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.release.set()
    assert await second == "62.0"
    assert await sf.api_version_resolved() == "62.0"
    assert gate.calls == 1
    assert emulator.counters[("versions", 200)] == 1


@pytest.mark.parametrize("bad", ["62", "v62", "sixty", "62.0.1", "", "LATEST!", 62.0, None])
def test_malformed_versions_are_configuration_errors(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="api_version must be 'latest' or a REST API"):
        normalize_api_version(bad)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("62.0", "62.0"),
        ("v62.0", "62.0"),
        (" 61.0 ", "61.0"),
        ("latest", "latest"),
        ("Latest", "latest"),
    ],
)
def test_versions_are_normalised(given: str, canonical: str) -> None:
    assert normalize_api_version(given) == canonical


async def test_a_malformed_configured_version_fails_on_use(
    make_query_session: Factory, emulator: Emulator
) -> None:
    sf = make_query_session(api_version="62.0")
    sf._api_version = "sixty-two"  # set around the constructor's validation
    with pytest.raises(ConfigurationError, match="api_version"):
        await sf.api_version_resolved()
    with pytest.raises(ConfigurationError, match="api_version"):
        await sf.limits()
    assert emulator.requests == []


# ---------------------------------------------------------------------------- limits


async def test_limits(make_query_session: Factory, emulator: Emulator) -> None:
    sf = make_query_session()
    limits = await sf.limits()
    # The versions lookup is unauthenticated; the limits call is the first counted one.
    assert limits["DailyApiRequests"] == {"Max": 15000, "Remaining": 14999}
    assert limits["DataStorageMB"] == {"Max": 5, "Remaining": 5}
    assert [r.path for r in emulator.requests] == [
        "/services/data/",
        "/services/data/v62.0/limits",
    ]


async def test_limits_error_is_typed(make_query_session: Factory, emulator: Emulator) -> None:
    sf = make_query_session(api_version="62.0")
    await sf.token()
    emulator.script_rest_responses(
        [
            ScriptedResponse(
                403,
                json=[{"errorCode": "INSUFFICIENT_ACCESS", "message": "no access"}],
            )
        ]
    )
    with pytest.raises(APIError) as caught:
        await sf.limits()
    assert caught.value.status == 403
    assert caught.value.error_code == "INSUFFICIENT_ACCESS"
    assert str(caught.value).startswith("limits request failed (GET ")
