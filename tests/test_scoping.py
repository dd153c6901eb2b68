"""Origin scoping: where a request to the org goes, and how it is shown in errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, web
from aiohttp.test_utils import TestServer
from yarl import URL

from sfauth import ConfigurationError, CrossOriginError, SessionClosedError
from sfauth._scoping import open_session, origin_of, rebind, request_origin, resolve, where
from sfauth.testing import Emulator

from .conftest import SessionFactory

INSTANCE = "https://acme.my.salesforce.com"
REFUSED = (
    "refusing to send to {!r}: requests go only to the org's instance_url "
    "'https://acme.my.salesforce.com'; pass a path such as '/services/data/...'"
)


# --- resolve ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/services/data/v62.0/limits", (f"{INSTANCE}/services/data/v62.0/limits", True)),
        (
            "services/data/v62.0/query?q=SELECT%20Id",
            (f"{INSTANCE}/services/data/v62.0/query?q=SELECT%20Id", True),
        ),
        (
            f"{INSTANCE}/services/data/v62.0/query/01gD0000002HU6KIAW-2000",
            (f"{INSTANCE}/services/data/v62.0/query/01gD0000002HU6KIAW-2000", False),
        ),
        (  # the default port written out is the same origin
            "https://acme.my.salesforce.com:443/services/data/",
            ("https://acme.my.salesforce.com:443/services/data/", False),
        ),
        (  # scheme and host compare case-insensitively
            "HTTPS://ACME.my.salesforce.com/services/data/",
            ("HTTPS://ACME.my.salesforce.com/services/data/", False),
        ),
    ],
)
def test_resolve_paths_and_same_origin_urls(path: str, expected: tuple[str, bool]) -> None:
    assert resolve(INSTANCE, path) == expected


def test_resolve_accepts_a_scheme_relative_url_of_the_instance() -> None:
    url, relative = resolve(INSTANCE, "//acme.my.salesforce.com/services/data/?x=1")
    assert relative is False
    assert URL(url).path_qs == "/services/data/?x=1"


def test_resolve_makes_a_scheme_relative_url_absolute() -> None:
    assert resolve(INSTANCE, "//acme.my.salesforce.com/services/data/?x=1") == (
        "https://acme.my.salesforce.com/services/data/?x=1",
        False,
    )


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("https://evil.example/steal/this?sid=SECRET#frag", "https://evil.example"),
        ("//evil.example/steal/this?sid=SECRET", "https://evil.example"),
        ("http://acme.my.salesforce.com/steal/this?sid=SECRET", "http://acme.my.salesforce.com"),
        (
            "https://acme.my.salesforce.com.evil.example/steal/this?sid=SECRET",
            "https://acme.my.salesforce.com.evil.example",
        ),
    ],
)
def test_another_origin_is_refused_without_showing_path_or_query(path: str, shown: str) -> None:
    with pytest.raises(CrossOriginError) as info:
        resolve(INSTANCE, path)
    assert str(info.value) == REFUSED.format(shown)


def test_another_port_is_another_origin() -> None:
    with pytest.raises(CrossOriginError) as info:
        resolve(INSTANCE, "https://acme.my.salesforce.com:8443/steal/this?sid=SECRET")
    assert str(info.value) == REFUSED.format("https://acme.my.salesforce.com:8443")


def test_credentials_in_an_instance_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve(INSTANCE, "https://user:hunter2@acme.my.salesforce.com/services/data/")
    assert str(info.value) == (
        "the URL carries credentials (user:password@); sfauth authenticates with the bearer "
        "token: pass a path such as '/services/data/...'"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("mailto:admin@example.com", "path 'mailto:admin@example.com' has a scheme but no host"),
        ("https:/services/data/", "path 'https:/services/data/' has a scheme but no host"),
        ("https://[::1/x", "path 'https://[::1/x' is not a valid URL or path"),
        (12, "path must be a str such as '/services/data/'; got 12"),
        (None, "path must be a str such as '/services/data/'; got None"),
        (
            b"/services/data/",
            "path must be a str such as '/services/data/'; got b'/services/data/'",
        ),
    ],
)
def test_resolve_refuses_what_is_not_a_path_or_url(path: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve(INSTANCE, path)
    assert str(info.value) == message


# --- origins ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://acme.my.salesforce.com", ("https", "acme.my.salesforce.com", 443)),
        ("http://127.0.0.1", ("http", "127.0.0.1", 80)),
        ("https://acme.my.salesforce.com:443/x", ("https", "acme.my.salesforce.com", 443)),
        ("https://acme.my.salesforce.com:8443/x?y", ("https", "acme.my.salesforce.com", 8443)),
        ("HTTPS://ACME.My.Salesforce.com/", ("https", "acme.my.salesforce.com", 443)),
        ("http://[::1]:8080/", ("http", "::1", 8080)),
    ],
)
def test_origin_of_makes_the_default_port_explicit(url: str, origin: tuple[str, str, int]) -> None:
    assert origin_of(url) == origin


def test_where_drops_query_and_fragment() -> None:
    request: Any = SimpleNamespace(url=URL("https://acme.my.salesforce.com/a/b?sid=x#frag"))
    assert where(request) == "https://acme.my.salesforce.com/a/b"
    request = SimpleNamespace(url=URL("https://acme.my.salesforce.com/a%20b/"))
    assert where(request) == "https://acme.my.salesforce.com/a%20b/"
    request = SimpleNamespace(url=URL("https://user:hunter2@acme.my.salesforce.com/a"))
    assert where(request) == "https://acme.my.salesforce.com/a"


# --- on real requests ------------------------------------------------------------------------


async def start(seen: list[tuple[str, str | None]]) -> TestServer:
    """A server recording each request's raw path-and-query and ``Host`` header."""

    async def record(request: web.Request) -> web.Response:
        seen.append((request.raw_path, request.headers.get("Host")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.fixture
async def two_servers() -> AsyncIterator[tuple[TestServer, list[Any], TestServer, list[Any]]]:
    old_seen: list[tuple[str, str | None]] = []
    new_seen: list[tuple[str, str | None]] = []
    old, new = await start(old_seen), await start(new_seen)
    yield old, old_seen, new, new_seen
    await old.close()
    await new.close()


async def test_rebind_sends_path_and_raw_query_to_the_new_origin(
    two_servers: tuple[TestServer, list[Any], TestServer, list[Any]],
) -> None:
    old, old_seen, new, new_seen = two_servers
    new_url = str(new.make_url("")).rstrip("/")
    facts: dict[str, Any] = {}

    async def move(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        facts["before"] = request.url.raw_path_qs
        facts["origin_before"] = request_origin(request)
        rebind(request, new_url)
        facts["origin_after"] = request_origin(request)
        facts["url_after"] = request.url
        return await handler(request)

    target = f"{old.make_url('/services/data/v62.0/a%20b/')}?q=SELECT+Id&k=a%26b&e=%C3%A9"
    async with aiohttp.ClientSession(middlewares=(move,)) as http, http.get(target) as resp:
        assert await resp.text() == "ok"
    raw = "/services/data/v62.0/a%20b/?q=SELECT+Id&k=a%26b&e=%C3%A9"
    assert facts["before"] == raw
    assert old_seen == []
    assert new_seen == [(raw, f"127.0.0.1:{new.port}")]
    assert facts["origin_before"] == ("http", "127.0.0.1", old.port)
    assert facts["origin_after"] == ("http", "127.0.0.1", new.port)
    assert facts["url_after"] == URL(f"{new_url}{raw}", encoded=True)


async def test_rebind_to_a_default_port_writes_the_host_without_it(
    two_servers: tuple[TestServer, list[Any], TestServer, list[Any]],
) -> None:
    old, _, _, _ = two_servers
    facts: dict[str, Any] = {}

    async def look(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        response = await handler(request)  # sent first; rebind is only looked at here
        rebind(request, "https://acme.my.salesforce.com")
        facts["url"] = str(request.url)
        facts["host"] = request.headers["Host"]
        facts["origin"] = request_origin(request)
        facts["where"] = where(request)
        return response

    url = old.make_url("/x/y%2Fz")
    async with (
        aiohttp.ClientSession(middlewares=(look,)) as http,
        http.get(url, params={"a": "1 2"}) as resp,
    ):
        assert resp.status == 200
    assert facts == {
        "url": "https://acme.my.salesforce.com/x/y%2Fz?a=1+2",
        "host": "acme.my.salesforce.com",
        "origin": ("https", "acme.my.salesforce.com", 443),
        "where": "https://acme.my.salesforce.com/x/y%2Fz",
    }


async def test_open_session_is_the_requests_session_until_it_is_closed(
    two_servers: tuple[TestServer, list[Any], TestServer, list[Any]],
) -> None:
    old, _, _, _ = two_servers
    facts: dict[str, Any] = {}

    async def look(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        facts["request"] = request
        facts["session"] = open_session(request)
        return await handler(request)

    async with (
        aiohttp.ClientSession(middlewares=(look,)) as http,
        http.get(old.make_url("/x"), params={"sid": "secret"}) as resp,
    ):
        assert resp.status == 200
    assert facts["session"] is http
    with pytest.raises(SessionClosedError) as info:
        open_session(facts["request"])
    assert str(info.value) == (
        f"the HTTP session was closed while GET {old.make_url('/x')} was still being sent, "
        "retried or waiting for a token"
    )


async def test_a_scheme_relative_url_of_the_instance_is_sent_with_the_bearer(
    emulator: Emulator, make_session: SessionFactory
) -> None:
    sf = make_session(api_version="62.0")
    token = await sf.token()
    host = token.instance_url.split("://", 1)[1]
    async with sf.get(f"//{host}/services/data/v62.0/limits") as resp:
        assert resp.status == 200
    assert [r.authorization for r in emulator.requests] == [f"Bearer {token.access_token}"]
