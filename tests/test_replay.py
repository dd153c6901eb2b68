"""Which bodies are sent again, and what counts as a rejected session (trust issue items 1, 15).

A request is replayed after a refresh, or retried after a transient failure, only when its body
can be sent again whole: that is decided from the body the caller gave (bytes, str, JSON, form
fields, a seekable file), never from aiohttp's view of a payload after sending it.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import payload

from sfauth import InvalidSessionError, RetryPolicy, TransportError
from sfauth._bodies import rewinder
from sfauth.testing import Emulator, ScriptedResponse, no_backoff

from .conftest import SessionFactory

SOBJECTS = "/services/data/v62.0/sobjects/Account"


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def posts(emulator: Emulator) -> list[tuple[int, bytes]]:
    return [(r.status, r.body) for r in emulator.requests if r.method in ("POST", "PUT")]


# --- the decision, without sockets ---------------------------------------------------------


def test_in_memory_bodies_can_always_be_sent_again() -> None:
    for body in (
        None,
        b"",
        b"raw",
        payload.BytesPayload(b"raw"),
        payload.StringPayload("text"),
        payload.JsonPayload({"Name": "Acme"}),
    ):
        rewind = rewinder(body)
        assert rewind is not None
        assert rewind() is True


def test_streams_are_never_sent_again() -> None:
    assert rewinder(payload.AsyncIterablePayload(chunks(b"x"))) is None
    assert rewinder(object()) is None  # a payload type sfauth does not know


def test_a_seekable_file_goes_back_to_where_the_first_send_started(tmp_path: Path) -> None:
    path = tmp_path / "body.csv"
    path.write_bytes(b"header\nrow1\nrow2\n")
    with path.open("rb") as file:
        file.seek(7)  # the caller positioned it: the body starts here
        rewind = rewinder(payload.BufferedReaderPayload(file))
        assert rewind is not None
        assert file.read() == b"row1\nrow2\n"  # the first send read it all
        assert rewind() is True
        assert file.read() == b"row1\nrow2\n"
        assert rewind() is True
    assert rewind() is False  # closed: cannot be sent again


def test_multipart_is_as_replayable_as_its_parts() -> None:
    replayable = aiohttp.MultipartWriter("form-data")
    replayable.append_json({"Name": "Acme"})
    replayable.append(io.BytesIO(b"binary"))
    rewind = rewinder(replayable)
    assert rewind is not None
    assert rewind() is True
    streamed = aiohttp.MultipartWriter("form-data")
    streamed.append_json({"Name": "Acme"})
    streamed.append_payload(payload.AsyncIterablePayload(chunks(b"x")))
    assert rewinder(streamed) is None


# --- against the emulator --------------------------------------------------------------------


async def test_a_streamed_body_is_not_resent_after_a_401(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()
    emulator.expire_all_sessions()
    body = json.dumps({"Name": "Streamed"}).encode()
    headers = {"Content-Type": "application/json"}
    with pytest.raises(InvalidSessionError, match="is a stream") as info:
        await sf.post(SOBJECTS, data=chunks(body[:5], body[5:]), headers=headers)
    assert info.value.status == 401
    assert posts(emulator) == [(401, body)]  # sent once, whole; never again with no body
    assert emulator.token_request_count == 2  # the session itself was renewed
    assert [r["Name"] for r in emulator.records("Account")].count("Streamed") == 0


async def test_a_streamed_body_is_not_resent_after_a_dropped_connection(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()
    emulator.script_rest_responses([ScriptedResponse(reset=True)])
    with no_backoff(), pytest.raises(TransportError):
        await sf.put(f"{SOBJECTS}/001000000000001AAA", data=chunks(b"a,b\n", b"1,2\n"))
    assert posts(emulator) == [(0, b"a,b\n1,2\n")]  # PUT is idempotent, a stream is not


@pytest.mark.parametrize(
    ("kwargs", "sent"),
    [
        ({"json": {"Name": "Json"}}, b'{"Name": "Json"}'),
        ({"data": '{"Name": "Str"}'}, b'{"Name": "Str"}'),
        ({"data": b'{"Name": "Bytes"}'}, b'{"Name": "Bytes"}'),
    ],
    ids=["json", "str", "bytes"],
)
async def test_in_memory_bodies_are_replayed_whole_after_a_401(
    make_session: SessionFactory, emulator: Emulator, kwargs: dict[str, object], sent: bytes
) -> None:
    sf = make_session()
    await sf.token()
    emulator.expire_all_sessions()
    headers = {"Content-Type": "application/json"}
    async with sf.post(SOBJECTS, headers=headers, **kwargs) as resp:  # type: ignore[arg-type]
        assert resp.status == 201
    assert posts(emulator) == [(401, sent), (201, sent)]


async def test_a_file_body_is_replayed_whole_after_a_401_and_a_503(
    make_session: SessionFactory, emulator: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "account.json"
    path.write_bytes(b'{"Name": "FromFile"}')
    sf = make_session(retry=RetryPolicy(attempts=2))
    await sf.token()
    emulator.expire_all_sessions()
    with path.open("rb") as file:
        async with sf.post(
            SOBJECTS, data=file, headers={"Content-Type": "application/json"}, idempotent=True
        ) as resp:
            assert resp.status == 201
    assert posts(emulator) == [(401, path.read_bytes()), (201, path.read_bytes())]

    emulator.script_rest_responses([ScriptedResponse(status=503)])
    with no_backoff(), path.open("rb") as file:
        async with sf.post(
            SOBJECTS, data=file, headers={"Content-Type": "application/json"}, idempotent=True
        ) as resp:
            assert resp.status == 201
    assert posts(emulator)[2:] == [(503, path.read_bytes()), (201, path.read_bytes())]
    assert [r["Name"] for r in emulator.records("Account")].count("FromFile") == 2


# --- the async API's way of saying "session expired" -----------------------------------------

ASYNC_JOB = "/services/async/62.0/job"


@pytest.mark.parametrize("content_type", ["application/xml", "application/json"])
async def test_async_api_400_invalid_session_id_refreshes_and_replays(
    make_session: SessionFactory, emulator: Emulator, content_type: str
) -> None:
    sf = make_session()
    first = await sf.token()
    emulator.expire_all_sessions()
    async with sf.post(ASYNC_JOB, data=b"<jobInfo/>", headers={"Content-Type": content_type}) as r:
        assert r.status == 501  # the emulator's "session accepted, API not emulated"
        assert (await r.json())["exceptionCode"] == "EMULATOR_UNSUPPORTED"
    second = await sf.token()
    assert second.access_token != first.access_token
    assert emulator.token_request_count == 2
    sent = [(r.status, r.headers.get("X-SFDC-Session")) for r in emulator.requests]
    assert sent == [(400, first.access_token), (501, second.access_token)]


async def test_an_async_api_400_about_something_else_is_handed_back_readable(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()
    text = "<error><exceptionCode>InvalidJob</exceptionCode></error>"
    emulator.script_rest_responses([ScriptedResponse(status=400, text=text)])
    async with sf.get(f"{ASYNC_JOB}/750000000000001") as resp:
        assert resp.status == 400
        assert await resp.text() == text
    assert emulator.token_request_count == 1


async def test_a_rest_400_is_never_taken_for_an_expired_session(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session()
    await sf.token()
    body = [{"errorCode": "InvalidSessionId", "message": "not from the async API"}]
    emulator.script_rest_responses([ScriptedResponse(status=400, json=body)])
    async with sf.get(f"{SOBJECTS}/describe") as resp:
        assert resp.status == 400
    assert emulator.token_request_count == 1
