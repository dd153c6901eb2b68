"""The four clients of the request-overhead benchmark, each driven the same way.

Every client sends the same request, ``GET /services/data/v62.0/query?q=SELECT Id, Name FROM
Account LIMIT 3``, and JSON-decodes the 3-record answer, with ``concurrency`` requests in flight
(a closed loop: ``concurrency`` coroutines, or threads for simple-salesforce, each sending its
next request as soon as the previous one is answered) until ``n`` requests are done. Every
client's connection pool holds ``concurrency`` connections and keeps idle ones for 600 s, so the
interleaved rounds never reconnect. Peers are imported only by the process that drives them.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

API_VERSION = "62.0"
QUERY_PATH = f"/services/data/v{API_VERSION}/query"
SOQL = "SELECT Id, Name FROM Account LIMIT 3"
PARAMS = {"q": SOQL}
CLIENT_ID = "3MVG9benchmarkConsumerKey"
USERNAME = "bench@example.com"
#: aiosalesforce insists on a My Domain URL; its requests are routed to the loopback server.
MY_DOMAIN = "https://bench.my.salesforce.com"
KEEPALIVE = 600.0

CLIENTS = ("aiohttp", "aiohttp+middleware", "sfauth", "aiosalesforce", "simple-salesforce")

#: How each client is configured, for the report.
CONFIGURATION = {
    "aiohttp": (
        "`aiohttp.ClientSession(headers={'Authorization': 'Bearer <token>'}, "
        "connector=TCPConnector(limit=C, keepalive_timeout=600))`; the token is fetched once "
        "before the run; `async with http.get(url, params=...) as r: await r.json()`. "
        "The ceiling: no auth logic at all."
    ),
    "sfauth": (
        "`AuthSession(client_id, username, private_key=<path>, login_url=<server>, "
        "allow_http_loopback=True, limit=C, keepalive_timeout=600)`; "
        "`async with sf.get('/services/data/v62.0/query', params=...) as r: await r.json()`."
    ),
    "aiohttp+middleware": (
        "as aiohttp, with the bearer stamped by a client middleware instead of the session's "
        "headers: `async def stamp(request, handler): request.headers['Authorization'] = "
        "bearer; response = await handler(request); await response.read(); return response`, "
        "installed with `ClientSession(middlewares=(stamp,))`. Not a client anyone would use: "
        "the floor of any design that authenticates inside aiohttp's middleware chain, "
        "measured beside the others (sfauth sends its common case outside the chain)."
    ),
    "aiosalesforce": (
        "`Salesforce(httpx.AsyncClient(transport=T, timeout=60), "
        "base_url='https://bench.my.salesforce.com', auth=JwtBearerFlow(client_id, username, "
        "private_key_file=<path>), version='62.0', concurrency_limit=C)`, as its README "
        "shows, with the default retry policy; `[r async for r in sf.query(soql)]`. `T` is an "
        "`httpx.AsyncHTTPTransport(limits=Limits(max_connections=C, "
        "max_keepalive_connections=C, keepalive_expiry=600))` subclass whose "
        "`handle_async_request` rewrites each request URL's scheme, host and port to the "
        "loopback server (`http://127.0.0.1:PORT`), keeping path, query and the `Host` header; "
        "the token request (`https://bench.my.salesforce.com/services/oauth2/token`) goes the "
        "same way. `sniffio` is installed: without it httpcore 1.0.9 retries a failing "
        "`import sniffio` (a dozen file-system lookups) for every lock it creates, which made "
        "aiosalesforce about a third slower in a profile."
    ),
    "simple-salesforce": (
        "`Salesforce(username, consumer_key, privatekey_file=<path>, domain='login', "
        "version='62.0', session=s)` (its JWT bearer login); `sf.query(soql)` from a "
        "`ThreadPoolExecutor(max_workers=C)` of C threads. `s` is a `requests.Session` with an "
        "`HTTPAdapter(pool_maxsize=C)` subclass mounted on `https://` whose `send` rewrites "
        "each URL's scheme, host and port to `http://127.0.0.1:PORT` (the login URL "
        "`https://login.salesforce.com/...` and the instance URLs alike)."
    ),
}


@dataclass(frozen=True)
class Target:
    """Where the server is and which key the clients sign with."""

    url: str
    key_path: str

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port


Outcome = tuple[int, dict[str, int]]


class Driver:
    """One client, set up for one concurrency at a time."""

    name = ""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.concurrency = 0

    def setup(self, concurrency: int) -> None:
        raise NotImplementedError

    def run(self, n: int) -> Outcome:
        """Send ``n`` requests, ``concurrency`` at a time; return (ok, errors by kind)."""
        raise NotImplementedError

    def teardown(self) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Facts about the client after a round that the report shows (may be empty)."""
        return {}


class AsyncDriver(Driver):
    """A client on asyncio; one event loop for the life of the worker process."""

    def __init__(self, target: Target, runner: asyncio.Runner) -> None:
        super().__init__(target)
        self.runner = runner

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def one(self) -> bool:
        """Send one request and decode it; ``True`` for a 200 with the 3 records."""
        raise NotImplementedError

    def setup(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.runner.run(self.open())

    def teardown(self) -> None:
        self.runner.run(self.close())

    def run(self, n: int) -> Outcome:
        return self.runner.run(closed_loop(self.one, n, self.concurrency))


async def closed_loop(one: Callable[[], Awaitable[bool]], n: int, concurrency: int) -> Outcome:
    """Run ``one`` ``n`` times with ``concurrency`` calls in flight."""
    remaining = n
    ok = 0
    errors: collections.Counter[str] = collections.Counter()

    async def loop() -> None:
        nonlocal remaining, ok
        while remaining > 0:
            remaining -= 1
            try:
                if await one():
                    ok += 1
                else:
                    errors["unexpected answer"] += 1
            except Exception as exc:
                errors[type(exc).__name__] += 1

    await asyncio.gather(*(loop() for _ in range(min(concurrency, n))))
    return ok, dict(errors)


async def fetch_token(target: Target) -> str:
    """One JWT bearer exchange with PyJWT and aiohttp (for the fixed-header ceiling)."""
    import aiohttp
    import jwt

    pem = Path(target.key_path).read_bytes()  # noqa: ASYNC240 (a 2 KiB file, once per setup)
    claims = {
        "iss": CLIENT_ID,
        "sub": USERNAME,
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 180,
    }
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": jwt.encode(claims, pem, algorithm="RS256"),
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{target.url}/services/oauth2/token", data=form) as resp,
    ):
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"token request failed: {resp.status} {body}")
        token: str = body["access_token"]
        return token


class RawAiohttp(AsyncDriver):
    """The ceiling: aiohttp with a fixed bearer header, no auth logic."""

    name = "aiohttp"

    async def open(self) -> None:
        import aiohttp

        token = await fetch_token(self.target)
        self.url = self.target.url + QUERY_PATH
        self.http = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"},
            connector=aiohttp.TCPConnector(limit=self.concurrency, keepalive_timeout=KEEPALIVE),
        )

    async def close(self) -> None:
        await self.http.close()

    async def one(self) -> bool:
        async with self.http.get(self.url, params=PARAMS) as resp:
            body = await resp.json()
            return resp.status == 200 and len(body["records"]) == 3


class MiddlewareAiohttp(RawAiohttp):
    """aiohttp with a fixed bearer stamped by a trivial client middleware (a floor, not a peer)."""

    name = "aiohttp+middleware"

    async def open(self) -> None:
        import aiohttp

        bearer = "Bearer " + await fetch_token(self.target)

        async def stamp(
            request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
        ) -> aiohttp.ClientResponse:
            request.headers["Authorization"] = bearer
            response = await handler(request)
            await response.read()  # as sfauth does: a body cut short is seen before returning
            return response

        self.url = self.target.url + QUERY_PATH
        self.http = aiohttp.ClientSession(
            middlewares=(stamp,),
            connector=aiohttp.TCPConnector(limit=self.concurrency, keepalive_timeout=KEEPALIVE),
        )


def sfauth_session(target: Target, limit: int, **settings: Any) -> Any:
    """An ``AuthSession`` on the loopback server (also used by the herd and memory runs)."""
    from sfauth import AuthSession

    return AuthSession(
        client_id=CLIENT_ID,
        username=USERNAME,
        private_key=target.key_path,
        login_url=target.url,
        allow_http_loopback=True,
        limit=limit,
        keepalive_timeout=KEEPALIVE,
        **settings,
    )


class SfauthDriver(AsyncDriver):
    """sfauth's ``AuthSession``."""

    name = "sfauth"

    async def open(self) -> None:
        self.sf = sfauth_session(self.target, self.concurrency)
        self.sf.open()

    async def close(self) -> None:
        await self.sf.close()

    async def one(self) -> bool:
        async with self.sf.get(QUERY_PATH, params=PARAMS) as resp:
            body = await resp.json()
            return resp.status == 200 and len(body["records"]) == 3


def aiosalesforce_client(target: Target, concurrency: int) -> tuple[Any, Any]:
    """aiosalesforce's ``Salesforce`` on its httpx client, routed to the loopback server.

    Returns:
        ``(httpx.AsyncClient, aiosalesforce.Salesforce)``; close the client when done.
    """
    import httpx
    from aiosalesforce import Salesforce
    from aiosalesforce.auth import JwtBearerFlow

    port = target.port

    class LoopbackTransport(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=port)
            return await super().handle_async_request(request)

    limits = httpx.Limits(
        max_connections=concurrency,
        max_keepalive_connections=concurrency,
        keepalive_expiry=KEEPALIVE,
    )
    http = httpx.AsyncClient(transport=LoopbackTransport(limits=limits), timeout=60.0)
    sf = Salesforce(
        http,
        base_url=MY_DOMAIN,
        auth=JwtBearerFlow(
            client_id=CLIENT_ID, username=USERNAME, private_key_file=target.key_path
        ),
        version=API_VERSION,
        concurrency_limit=concurrency,
    )
    return http, sf


def simple_salesforce_client(target: Target, concurrency: int) -> tuple[Any, Any]:
    """simple-salesforce's ``Salesforce`` (JWT login) on a ``requests`` session to loopback.

    Returns:
        ``(requests.Session, simple_salesforce.Salesforce)``; close the session when done.
    """
    import requests
    from requests.adapters import HTTPAdapter
    from simple_salesforce import Salesforce

    netloc = f"127.0.0.1:{target.port}"

    class LoopbackAdapter(HTTPAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            parts = urlsplit(request.url or "")
            request.url = urlunsplit(("http", netloc, parts.path, parts.query, ""))
            return super().send(request, **kwargs)

    http = requests.Session()
    http.mount("https://", LoopbackAdapter(pool_connections=1, pool_maxsize=concurrency))
    sf = Salesforce(
        username=USERNAME,
        consumer_key=CLIENT_ID,
        privatekey_file=target.key_path,
        domain="login",
        version=API_VERSION,
        session=http,
    )
    return http, sf


class AiosalesforceDriver(AsyncDriver):
    """aiosalesforce (httpx), its JWT bearer flow, routed to loopback by an httpx transport."""

    name = "aiosalesforce"

    async def open(self) -> None:
        self.http, self.sf = aiosalesforce_client(self.target, self.concurrency)

    async def close(self) -> None:
        await self.http.aclose()

    def state(self) -> dict[str, Any]:
        try:  # httpcore's pool: its cost per request grows with its number of connections
            return {"pool_connections": len(self.http._transport._pool.connections)}
        except AttributeError:
            return {}

    async def one(self) -> bool:
        records = [record async for record in self.sf.query(SOQL)]
        return len(records) == 3


class SimpleSalesforceDriver(Driver):
    """simple-salesforce (requests, synchronous) from a thread pool of ``concurrency`` threads."""

    name = "simple-salesforce"

    def setup(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.http, self.sf = simple_salesforce_client(self.target, concurrency)
        self.pool = ThreadPoolExecutor(max_workers=concurrency)

    def run(self, n: int) -> Outcome:
        numbers = iter(range(n))  # shared: each thread takes the next number until none is left
        query = self.sf.query

        def loop() -> Outcome:
            ok = 0
            errors: collections.Counter[str] = collections.Counter()
            for _ in numbers:
                try:
                    if len(query(SOQL)["records"]) == 3:
                        ok += 1
                    else:
                        errors["unexpected answer"] += 1
                except Exception as exc:
                    errors[type(exc).__name__] += 1
            return ok, dict(errors)

        futures = [self.pool.submit(loop) for _ in range(min(self.concurrency, n))]
        ok = 0
        errors: collections.Counter[str] = collections.Counter()
        for future in futures:
            done, failed = future.result()
            ok += done
            errors.update(failed)
        return ok, dict(errors)

    def teardown(self) -> None:
        self.pool.shutdown(wait=True)
        self.http.close()


def make_driver(name: str, target: Target, runner: asyncio.Runner) -> Driver:
    """The driver for client ``name``."""
    if name == "aiohttp":
        return RawAiohttp(target, runner)
    if name == "aiohttp+middleware":
        return MiddlewareAiohttp(target, runner)
    if name == "sfauth":
        return SfauthDriver(target, runner)
    if name == "aiosalesforce":
        return AiosalesforceDriver(target, runner)
    if name == "simple-salesforce":
        return SimpleSalesforceDriver(target)
    raise ValueError(f"unknown client {name!r}")
