"""OpenTelemetry: the span tree and the metrics of a login with a retry and a shared refresh.

These need the OpenTelemetry SDK (the ``dev`` extra installs it). Where it is absent they are
skipped with the reason, except under ``SFAUTH_REQUIRE_OTEL=1`` (``.ci/run`` sets it): there
a missing SDK fails the run instead of hiding the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

if os.environ.get("SFAUTH_REQUIRE_OTEL") == "1":
    import opentelemetry.sdk  # noqa: F401 (CI: a missing SDK is an error, never a skip)
sdk_trace = pytest.importorskip(
    "opentelemetry.sdk.trace",
    reason="opentelemetry-sdk is not installed (pip install -e '.[dev]')",
)

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from sfauth import AuthSession, TransientAPIError, TransientTokenError  # noqa: E402
from sfauth._telemetry import METRICS, SPANS  # noqa: E402
from sfauth.testing import Emulator, EmulatorCredentials, ScriptedResponse, no_backoff  # noqa: E402

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}


class Telemetry:
    """An SDK tracer provider and meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """name -> [(attributes, value)]; a histogram's value is its count."""
        data = self.reader.get_metrics_data()
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points = found.setdefault(metric.name, [])
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count
                        points.append((dict(point.attributes), value))
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    found = Telemetry()
    yield found
    found.tracer_provider.shutdown()
    found.meter_provider.shutdown()


@contextlib.contextmanager
def aiohttp_instrumented(telemetry: Telemetry, **options: Any) -> Iterator[None]:
    """opentelemetry-instrumentation-aiohttp-client on, for sessions opened inside."""
    aiohttp_client = pytest.importorskip(
        "opentelemetry.instrumentation.aiohttp_client",
        reason="opentelemetry-instrumentation-aiohttp-client is not installed",
    )
    instrumentor = aiohttp_client.AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, **options)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def _session(
    emulator: Emulator, creds: EmulatorCredentials, t: Telemetry, **options: Any
) -> AuthSession:
    return AuthSession(
        client_id=creds.client_id,
        username=creds.username,
        private_key=creds.private_key_pem,
        login_url=emulator.url,
        allow_http_loopback=True,
        tracer_provider=t.tracer_provider,
        meter_provider=t.meter_provider,
        **options,
    )


async def _query(sf: AuthSession) -> int:
    async with sf.get(QUERY, params=SOQL) as resp:
        await resp.json()
        return resp.status


def _events(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, dict(e.attributes or {})) for e in span.events]


async def test_cold_start_with_a_503_then_an_expiry_under_100_requests(
    emulator: Emulator, creds: EmulatorCredentials, telemetry: Telemetry
) -> None:
    emulator.script_token_responses([ScriptedResponse(status=503, text="down for a moment")])
    with no_backoff():
        async with _session(emulator, creds, telemetry) as sf:
            assert await _query(sf) == 200
            emulator.expire_all_sessions()
            statuses = await asyncio.gather(*(_query(sf) for _ in range(100)))
            gauges = telemetry.metrics()  # an open session's (a closed one stops reporting)
    assert statuses == [200] * 100
    assert emulator.token_request_count == 3  # a 503, a login, one refresh for the 100

    spans = telemetry.finished()
    requests = [s for s in spans if s.name == "sfauth.request"]
    refreshes = [s for s in spans if s.name == "sfauth.token.refresh"]
    assert len(spans) == 103
    assert len(requests) == 101
    assert len(refreshes) == 2

    # The login: a child of the first request, two token requests, one retry event.
    first, *after_expiry = sorted(requests, key=lambda s: s.start_time or 0)
    login, refresh = sorted(refreshes, key=lambda s: s.start_time or 0)
    assert login.parent is not None
    assert login.parent.span_id == first.context.span_id
    assert login.context.trace_id == first.context.trace_id
    assert dict(login.attributes or {}) == {
        "sfauth.token_url": f"{emulator.url}/services/oauth2/token",
        "sfauth.audience": "https://login.salesforce.com",
        "sfauth.outcome": "success",
        "sfauth.token.requests": 2,
        "sfauth.token.shared": False,
    }
    assert _events(login) == [
        (
            "sfauth.retry",
            {"sfauth.retry.reason": "http_503", "sfauth.attempt": 1, "sfauth.wait": 0.0},
        )
    ]
    assert dict(first.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": QUERY,
        "server.address": "127.0.0.1",
        "http.response.status_code": 200,
    }
    assert _events(first) == []

    # The expiry: one refresh shared by the 100, each of which carries one replay event.
    assert dict(refresh.attributes or {})["sfauth.token.requests"] == 1
    assert _events(refresh) == []
    assert refresh.parent is not None
    starter = [r for r in after_expiry if r.context.span_id == refresh.parent.span_id]
    assert len(starter) == 1
    replay = (
        "sfauth.replay",
        {"http.response.status_code": 401, "sfauth.error_code": "INVALID_SESSION_ID"},
    )
    assert [_events(r) for r in after_expiry] == [[replay]] * 100

    metrics = telemetry.metrics()
    assert sorted(metrics["sfauth.token.requests"], key=repr) == [
        ({"sfauth.outcome": "TransientTokenError"}, 1),
        ({"sfauth.outcome": "success"}, 2),
    ]
    assert metrics["sfauth.request.retries"] == [
        ({"sfauth.retry.reason": "http_503", "sfauth.retry.target": "token"}, 1)
    ]
    assert metrics["sfauth.request.replays"] == [
        ({"sfauth.error_code": "INVALID_SESSION_ID"}, 100)
    ]
    assert metrics["sfauth.token.refresh.duration"] == [
        ({"sfauth.outcome": "success", "sfauth.token.shared": False}, 2)
    ]
    who = {"sfauth.username": creds.username}
    assert gauges["sfauth.circuit.open"] == [(who, 0)]
    assert gauges["sfauth.requests.in_flight"] == [(who, 0)]
    assert gauges["sfauth.api.requests.used"] == [(who, emulator.api_usage)]
    assert gauges["sfauth.api.requests.limit"][0][0] == who
    assert set(gauges) == set(METRICS)
    assert {"sfauth.circuit.open", "sfauth.requests.in_flight"}.isdisjoint(metrics)


async def test_api_retries_are_counted_and_put_on_the_request_span(
    emulator: Emulator, creds: EmulatorCredentials, telemetry: Telemetry
) -> None:
    with no_backoff():
        async with _session(emulator, creds, telemetry) as sf:
            assert await _query(sf) == 200
            emulator.script_rest_responses([ScriptedResponse(status=503, text="busy")])
            assert await _query(sf) == 200
    second = sorted(
        (s for s in telemetry.finished() if s.name == "sfauth.request"),
        key=lambda s: s.start_time or 0,
    )[1]
    assert _events(second) == [
        (
            "sfauth.retry",
            {"sfauth.retry.reason": "http_503", "sfauth.attempt": 1, "sfauth.wait": 0.0},
        )
    ]
    assert telemetry.metrics()["sfauth.request.retries"] == [
        ({"sfauth.retry.reason": "http_503", "sfauth.retry.target": "api"}, 1)
    ]


async def test_a_request_that_fails_for_good_still_names_its_host(
    emulator: Emulator, creds: EmulatorCredentials, telemetry: Telemetry
) -> None:
    with no_backoff():
        async with _session(emulator, creds, telemetry) as sf:
            assert await _query(sf) == 200
            emulator.script_rest_responses([ScriptedResponse(status=503, text="busy")] * 10)
            with pytest.raises(TransientAPIError):
                await _query(sf)
    failed = sorted(
        (s for s in telemetry.finished() if s.name == "sfauth.request"),
        key=lambda s: s.start_time or 0,
    )[1]
    assert dict(failed.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": QUERY,
        "server.address": "127.0.0.1",
        "error.type": "TransientAPIError",
    }
    assert failed.status.description == "TransientAPIError"
    retries = [e for e in _events(failed) if e[0] == "sfauth.retry"]
    assert len(retries) == sf.settings.retry.attempts - 1


def test_refresh_durations_get_buckets_in_seconds(telemetry: Telemetry) -> None:
    from opentelemetry.metrics import Meter

    from sfauth._telemetry import REFRESH_BUCKETS
    from sfauth._telemetry import Telemetry as SessionTelemetry

    recorder = SessionTelemetry(meter_provider=telemetry.meter_provider)
    with recorder.refresh("https://login.salesforce.com/services/oauth2/token", "aud"):
        pass
    data = telemetry.reader.get_metrics_data()
    assert data is not None
    (histogram,) = [
        m
        for r in data.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        if m.name == "sfauth.token.refresh.duration"
    ]
    (point,) = histogram.data.data_points
    assert point.count == 1
    if (
        "explicit_bucket_boundaries_advisory"
        in inspect.signature(Meter.create_histogram).parameters
    ):
        assert tuple(point.explicit_bounds) == REFRESH_BUCKETS
    else:  # an API without bucket advice: the README says to add a View
        assert tuple(point.explicit_bounds) != REFRESH_BUCKETS


async def test_a_failed_login_marks_its_spans_with_the_error_class_only(
    emulator: Emulator, creds: EmulatorCredentials, telemetry: Telemetry
) -> None:
    emulator.script_token_responses(
        [
            ScriptedResponse(
                status=400,
                json={
                    "error": "invalid_grant",
                    "error_description": "user hasn't approved this consumer",
                },
            )
        ]
    )
    async with _session(emulator, creds, telemetry) as sf:
        with pytest.raises(Exception, match="invalid_grant") as caught:
            await _query(sf)
    error = type(caught.value).__name__
    by_name = {s.name: s for s in telemetry.finished()}
    for name in ("sfauth.request", "sfauth.token.refresh"):
        span = by_name[name]
        assert span.status.status_code.name == "ERROR"
        assert span.status.description == error
        assert dict(span.attributes or {})["error.type"] == error
    assert telemetry.metrics()["sfauth.token.requests"] == [({"sfauth.outcome": error}, 1)]


async def test_aiohttp_instrumentation_spans_nest_under_sfauths(
    emulator: Emulator, creds: EmulatorCredentials, telemetry: Telemetry
) -> None:
    with aiohttp_instrumented(telemetry):
        async with _session(emulator, creds, telemetry) as sf:
            assert await _query(sf) == 200
    spans = telemetry.finished()
    by_id = {s.context.span_id: s for s in spans}

    def kind(span: ReadableSpan) -> str:
        if span.name.startswith("sfauth."):
            return span.name
        attributes = dict(span.attributes or {})  # old and new HTTP semantic conventions
        return f"HTTP {attributes.get('http.request.method') or attributes.get('http.method')}"

    parents = Counter(
        (kind(s), kind(by_id[s.parent.span_id]) if s.parent else None) for s in spans
    )
    assert parents == Counter(
        {
            ("sfauth.request", None): 1,
            ("sfauth.token.refresh", "sfauth.request"): 1,
            ("HTTP POST", "sfauth.token.refresh"): 1,  # the token request
            ("HTTP GET", "sfauth.request"): 1,  # the query
        }
    )


async def test_no_secret_reaches_a_span_or_a_metric(
    emulator: Emulator, creds: EmulatorCredentials, telemetry: Telemetry
) -> None:
    no_soql = {"url_filter": lambda url: str(url.with_query(None))}  # as the README says
    with aiohttp_instrumented(telemetry, **no_soql), no_backoff():
        async with _session(emulator, creds, telemetry) as sf:
            first = await sf.token()
            emulator.script_rest_responses([ScriptedResponse(status=503, text="busy")])
            assert await _query(sf) == 200
            emulator.expire_all_sessions()
            assert await _query(sf) == 200
            second = await sf.token()
    exported = [span.to_json() for span in telemetry.finished()]
    data = telemetry.reader.get_metrics_data()
    assert data is not None
    exported.append(data.to_json())
    text = "\n".join(exported)
    assert len(telemetry.finished()) >= 6
    pem = (
        creds.private_key_pem.decode()
        if isinstance(creds.private_key_pem, bytes)
        else creds.private_key_pem
    )
    key_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    canaries = [first.access_token, second.access_token, "Bearer ", "assertion", *key_lines]
    canaries += [SOQL["q"], "SELECT", "q="]
    assert [c for c in canaries if c in text] == []
    assert first.instance_url.split("//")[1] in text  # the canary looks at the right text


async def test_a_token_request_cut_off_by_refresh_timeout_is_counted(
    emulator: Emulator,
    creds: EmulatorCredentials,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sfauth._oauth import TokenClient

    async def endless(self: TokenClient, http: object, assertion: str | None = None) -> None:
        await asyncio.Event().wait()  # an answer that never comes (no timeout of its own)

    monkeypatch.setattr(TokenClient, "fetch", endless)
    async with _session(emulator, creds, telemetry, refresh_timeout=0.2) as sf:
        with pytest.raises(TransientTokenError, match="refresh_timeout"):
            await sf.token()
    assert telemetry.metrics()["sfauth.token.requests"] == [({"sfauth.outcome": "cancelled"}, 1)]
    (refresh,) = telemetry.finished()
    assert dict(refresh.attributes or {})["sfauth.outcome"] == "TransientTokenError"


async def test_sessions_of_one_user_report_one_series_and_closed_ones_none(
    emulator: Emulator, creds: EmulatorCredentials, telemetry: Telemetry
) -> None:
    healthy = _session(emulator, creds, telemetry)
    failing = _session(emulator, creds, telemetry, failure_threshold=1)
    who = {"sfauth.username": creds.username}
    async with healthy:
        assert await _query(healthy) == 200
        async with failing:
            emulator.script_token_responses(
                [ScriptedResponse(status=400, json={"error": "invalid_grant"})]
            )
            with pytest.raises(Exception, match="invalid_grant"):
                await failing.token()
            # One series per user: the circuit is open if any session's is; sends add up.
            for order in range(2):
                metrics = telemetry.metrics()
                assert metrics["sfauth.circuit.open"] == [(who, 1)], order
                assert metrics["sfauth.requests.in_flight"] == [(who, 0)]
        metrics = telemetry.metrics()
        assert metrics["sfauth.circuit.open"] == [(who, 0)]  # the failing one closed
    assert "sfauth.circuit.open" not in telemetry.metrics()  # and now the healthy one


async def test_a_refresh_after_a_401_is_a_child_of_the_request_under_aiohttp_spans(
    emulator: Emulator, creds: EmulatorCredentials, telemetry: Telemetry
) -> None:
    with aiohttp_instrumented(telemetry):
        async with _session(emulator, creds, telemetry) as sf:
            await sf.token()
            emulator.expire_all_sessions()
            assert await _query(sf) == 200
    spans = telemetry.finished()
    (request,) = [s for s in spans if s.name == "sfauth.request"]
    login, refresh = sorted(
        (s for s in spans if s.name == "sfauth.token.refresh"), key=lambda s: s.start_time or 0
    )
    assert login.parent is None  # sf.token(): no request span
    assert refresh.parent is not None
    assert refresh.parent.span_id == request.context.span_id


async def test_a_cancelled_request_is_not_marked_as_an_error(
    emulator: Emulator, creds: EmulatorCredentials, telemetry: Telemetry
) -> None:
    async with _session(emulator, creds, telemetry) as sf:
        await sf.token()
        emulator.script_rest_responses([ScriptedResponse(status=200, json={}, delay=5.0)])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await _query(sf)
    (request,) = [s for s in telemetry.finished() if s.name == "sfauth.request"]
    assert request.status.status_code.name == "UNSET"
    assert "error.type" not in dict(request.attributes or {})


def test_sfauth_works_without_opentelemetry_installed() -> None:
    script = textwrap.dedent(
        """
        import asyncio, importlib.abc, json, sys

        class NoOpenTelemetry(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError(f"blocked for this test: {name}")
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())
        from sfauth import AuthSession
        from sfauth._telemetry import available
        from sfauth.testing import Emulator, ScriptedResponse, no_backoff

        async def main():
            async with Emulator() as emu:
                creds = emu.create_credentials(username="plain@example.com")
                emu.script_token_responses([ScriptedResponse(status=503, text="down")])
                with no_backoff():
                    async with AuthSession(
                        client_id=creds.client_id, username=creds.username,
                        private_key=creds.private_key_pem, login_url=emu.url,
                        allow_http_loopback=True,
                    ) as sf:
                        statuses = []
                        for _ in range(2):
                            async with sf.get("/services/data/v62.0/limits") as r:
                                statuses.append(r.status)
                            emu.expire_all_sessions()
                return statuses, emu.token_request_count

        statuses, token_requests = asyncio.run(main())
        print(json.dumps({"available": available(), "statuses": statuses,
                          "token_requests": token_requests,
                          "otel": [m for m in sys.modules if m.startswith("opentelemetry")]}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "available": False,
        "statuses": [200, 200],
        "token_requests": 3,
        "otel": [],
    }


def test_the_documented_names_are_the_ones_used() -> None:
    assert set(SPANS) == {"sfauth.request", "sfauth.token.refresh"}
    assert all(name.startswith("sfauth.") for name in METRICS)
