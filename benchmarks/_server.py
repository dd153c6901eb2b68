"""The benchmark's server: a minimal aiohttp.web Salesforce stand-in, run in its own process.

It answers the two routes every client in the benchmark uses, the same way for all of them:

* ``POST /services/oauth2/token`` (JWT bearer grant): checks ``grant_type``, verifies the
  assertion's RS256 signature against the benchmark key's public half, and issues a session id
  with Salesforce's response fields (``instance_url`` is this server's own ``http://`` URL).
* ``GET /services/data/v{version}/query`` (with or without a trailing ``/``): answers a fixed
  3-record ``Account`` page with ``Sforce-Limit-Info`` for a live session id, Salesforce's
  401 ``INVALID_SESSION_ID`` body otherwise.

For the data-plane benchmark (``benchmarks/bulk.py``) it also stands in for Bulk API 2.0 and
sObject Collections without storing anything: an ingest job counts the rows of its upload,
completes on its first poll and answers its results with as many generated rows; a query job serves
``LIMIT n`` generated rows through ``maxRecords`` pages and ``Sforce-Locator``; a Collections
upsert answers one success per record. Answers are not compressed (the clients' CPU, not the
server's zlib, is what is measured).

Plus, for the harness only: ``POST /_bench/expire`` (every session expires), ``GET /_bench/stats``
(counters). Everything is precomputed; a request costs a header lookup and a set membership test,
so the client side, not the server, is what the benchmark measures as far as two cores allow.
It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import resource
import secrets
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ORG_ID = "00D5g00000BENCHAAA"
USER_ID = "0055g00000BENCHAAA"
DAILY_API_LIMIT = 5_000_000
LISTEN_BACKLOG = 4096  # the herd opens 10,000 connections at once
KEEPALIVE_TIMEOUT = 600.0

_SESSION_INVALID = json.dumps(
    [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
).encode()


def _page() -> bytes:
    records = [
        {
            "attributes": {
                "type": "Account",
                "url": f"/services/data/v62.0/sobjects/Account/0015g00000BENCH{n:03d}",
            },
            "Id": f"0015g00000BENCH{n:03d}",
            "Name": f"Account {n:04d}",
        }
        for n in range(1, 4)
    ]
    return json.dumps({"totalSize": 3, "done": True, "records": records}).encode()


QUERY_PAGE = _page()
_COLLECTION_RESULT = b'{"id":"0015g00000BENCHAAA","success":true,"errors":[],"created":true}'


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class BenchServer:
    """State and handlers of the stand-in server."""

    def __init__(self, public_key: rsa.RSAPublicKey) -> None:
        self.public_key = public_key
        self.sessions: set[str] = set()
        self.counts: collections.Counter[str] = collections.Counter()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/services/oauth2/token", self.token)
        app.router.add_get("/services/data/{version}/query", self.query)
        app.router.add_get("/services/data/{version}/query/", self.query)
        jobs = "/services/data/{version}/jobs/{kind:ingest|query}"
        app.router.add_post(jobs, self.bulk_create)
        app.router.add_get(jobs + "/{job}", self.bulk_info)
        app.router.add_patch(jobs + "/{job}", self.bulk_state)
        app.router.add_delete(jobs + "/{job}", self.bulk_delete)
        app.router.add_put(jobs + "/{job}/batches", self.bulk_upload)
        app.router.add_get(jobs + "/{job}/{results:[A-Za-z]+}", self.bulk_results)
        app.router.add_get(jobs + "/{job}/{results:[A-Za-z]+}/", self.bulk_results)
        app.router.add_patch(
            "/services/data/{version}/composite/sobjects/{sobject}/{field}", self.collection
        )
        app.router.add_post("/_bench/expire", self.expire)
        app.router.add_get("/_bench/stats", self.stats)
        return app

    async def query(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if header[:7].lower() != "bearer " or header[7:] not in self.sessions:
            self.counts["query_401"] += 1
            return web.Response(status=401, body=_SESSION_INVALID, content_type="application/json")
        self.counts["query_200"] += 1
        return web.Response(
            body=QUERY_PAGE,
            content_type="application/json",
            headers={
                "Sforce-Limit-Info": f"api-usage={self.counts['query_200']}/{DAILY_API_LIMIT}"
            },
        )

    def _refused(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer " and header[7:] in self.sessions:
            return None
        return web.Response(status=401, body=_SESSION_INVALID, content_type="application/json")

    async def bulk_create(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        spec = await request.json()
        self.counts["bulk_create"] += 1
        job_id = f"7505g{len(self.jobs):010d}AAA"
        kind = request.match_info["kind"]
        version = request.match_info["version"]
        job: dict[str, Any] = {
            "id": job_id,
            "operation": spec["operation"],
            "object": spec.get("object", "Account"),
            "state": "Open" if kind == "ingest" else "UploadComplete",
            "apiVersion": float(request.match_info["version"].lstrip("v")),
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
            "concurrencyMode": "Parallel",
            "createdById": USER_ID,
            "createdDate": "2026-01-01T00:00:00.000+0000",
            "systemModstamp": "2026-01-01T00:00:00.000+0000",
            "contentUrl": f"services/data/{version}/jobs/ingest/{job_id}/batches",
            "jobType": "V2Ingest" if kind == "ingest" else "V2Query",
            "numberRecordsProcessed": 0,
            "numberRecordsFailed": 0,
        }
        if kind == "query":  # "... LIMIT n": the job's size
            job["numberRecordsProcessed"] = int(spec["query"].rsplit(" ", 1)[1])
        self.jobs[job_id] = job
        return web.json_response(job)

    async def bulk_upload(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        job = self.jobs[request.match_info["job"]]
        newlines = 0
        header = b""
        async for chunk in request.content.iter_any():  # decompressed by aiohttp
            if not header:
                header = chunk.split(b"\n", 1)[0]
            newlines += chunk.count(b"\n")
        job["numberRecordsProcessed"] = newlines - 1
        job["columns"] = header.count(b",") + 1
        return web.Response(status=201)

    async def bulk_state(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        job = self.jobs[request.match_info["job"]]
        job["state"] = (await request.json())["state"]
        return web.json_response(job)

    async def bulk_info(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        job = self.jobs[request.match_info["job"]]
        if job["state"] == "UploadComplete":  # done by the first poll
            job["state"] = "JobComplete"
        return web.json_response(job)

    async def bulk_delete(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        self.jobs.pop(request.match_info["job"], None)
        return web.Response(status=204)

    async def bulk_results(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._refused(request)) is not None:
            return refused
        job = self.jobs[request.match_info["job"]]
        kind = request.match_info["results"]
        headers = {"Content-Type": "text/csv"}
        if kind == "results":  # a query job's page
            size = int(request.query.get("maxRecords", "50000"))
            offset = int(base64.b64decode(request.query.get("locator") or "MA==").decode())
            end = min(job["numberRecordsProcessed"], offset + size)
            more = end < job["numberRecordsProcessed"]
            headers["Sforce-Locator"] = (
                base64.b64encode(str(end).encode()).decode() if more else "null"
            )
            headers["Sforce-NumberOfRecords"] = str(end - offset)
            header, row, count = (
                b'"Id","Name"\n',
                b'"0015g00000BENCHAAA","Account name"\n',
                end - offset,
            )
        elif kind == "successfulResults":
            columns = job.get("columns", 1)
            header = b'"sf__Id","sf__Created"' + b",c" * columns + b"\n"
            row = b'"0015g00000BENCHAAA","true"' + b",x" * columns + b"\n"
            count = job["numberRecordsProcessed"]
        else:  # failedResults, unprocessedrecords: none
            header, row, count = b'"sf__Id","sf__Error"\n', b"", 0
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        await response.write(header)
        for start in range(0, count, 10_000):  # generated as sent: the server holds no rows
            await response.write(row * min(10_000, count - start))
        await response.write_eof()
        return response

    async def collection(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        records = (await request.json())["records"]
        self.counts["collection"] += 1
        return web.Response(
            body=b"[" + b",".join([_COLLECTION_RESULT] * len(records)) + b"]",
            content_type="application/json",
        )

    async def token(self, request: web.Request) -> web.Response:
        self.counts["token"] += 1
        form = await request.post()
        if form.get("grant_type") != GRANT_TYPE:
            return self._token_error("unsupported_grant_type", "grant type not supported")
        assertion = form.get("assertion")
        if not isinstance(assertion, str) or not self._signature_ok(assertion):
            return self._token_error("invalid_grant", "invalid assertion")
        access_token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(72)}"
        self.sessions.add(access_token)
        payload = {
            "access_token": access_token,
            "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
            "scope": "api",
            "instance_url": self.url,
            "id": f"{self.url}/id/{ORG_ID}/{USER_ID}",
            "token_type": "Bearer",
            "issued_at": str(int(time.time() * 1000)),
        }
        return web.json_response(payload)

    def _signature_ok(self, assertion: str) -> bool:
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64url_decode(header_b64))
            self.public_key.verify(
                _b64url_decode(signature_b64),
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (ValueError, InvalidSignature):
            return False
        return isinstance(header, dict) and header.get("alg") == "RS256"

    def _token_error(self, error: str, description: str) -> web.Response:
        self.counts["token_400"] += 1
        return web.json_response({"error": error, "error_description": description}, status=400)

    async def expire(self, request: web.Request) -> web.Response:
        self.sessions.clear()
        return web.json_response({"expired": True})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.counts))


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one (the herd holds 10,000 sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def pin_to_cpu(cpu: int | None) -> None:
    """Pin this process to one CPU when the platform allows it (Linux), else do nothing."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    if cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {cpu})


async def _serve(public_pem: bytes, conn: Connection) -> None:
    public_key = serialization.load_pem_public_key(public_pem)
    assert isinstance(public_key, rsa.RSAPublicKey)
    server = BenchServer(public_key)
    runner = web.AppRunner(
        server.app(), access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_TIMEOUT
    )
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0), backlog=LISTEN_BACKLOG)
    site = web.SockSite(runner, sock, backlog=LISTEN_BACKLOG)
    await site.start()
    server.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    conn.send(server.url)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), stop.set)  # the harness closed its end, or sent "stop"
    try:
        await stop.wait()
    finally:
        loop.remove_reader(conn.fileno())
        await runner.cleanup()


def serve(public_pem: bytes, conn: Connection, cpu: int | None) -> None:
    """Process entry point: serve until the harness sends anything or closes the pipe."""
    pin_to_cpu(cpu)
    raise_fd_limit()
    asyncio.run(_serve(public_pem, conn))


def describe() -> dict[str, Any]:
    """What the report says about this server."""
    return {
        "name": "minimal aiohttp.web server (benchmarks/_server.py)",
        "routes": "POST /services/oauth2/token, GET /services/data/vXX.X/query, and for the "
        "data-plane benchmark /jobs/ingest, /jobs/query and /composite/sobjects",
    }
