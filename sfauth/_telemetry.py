"""OpenTelemetry traces and metrics; the only module that imports ``opentelemetry``.

Optional: without ``opentelemetry-api`` (the ``otel`` extra) every method here does nothing.
With the API and no SDK, sfauth's calls reach OpenTelemetry's no-op (proxy) objects,
and only on rare paths: a login, a retry, a 401 replay. The one per-request span,
``sfauth.request``, is made only by sessions opened while a recording tracer provider was
configured (``tracer_provider=``, or the global one), so the hot path of every other session
pays nothing.

Names and units follow the OpenTelemetry semantic conventions where they exist
(``http.request.method``, ``url.path``, ``server.address``, ``http.response.status_code``,
``error.type``; durations in seconds, counts in ``{unit}`` annotations). Nothing recorded here
carries a token, an assertion, a key or an ``Authorization`` header: attributes are built from
methods, paths without query strings, hosts, status codes, error codes and class names only.
"""

from __future__ import annotations

import asyncio
import operator
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace

    _AVAILABLE = True
except ImportError:  # the optional extra is not installed: telemetry is off
    _AVAILABLE = False

from yarl import URL

from ._version import __version__

__all__ = ["METRICS", "SPANS", "Refresh", "Telemetry", "available"]

#: The instrumentation scope of every span and instrument.
SCOPE = "sfauth"

#: Every span sfauth makes: name -> what it covers (README "Observability").
SPANS = {
    "sfauth.request": "one AuthSession request: the send, its retries and 401 replays, the "
    "JSON body read (INTERNAL; aiohttp instrumentation's HTTP spans are its children)",
    "sfauth.token.refresh": "one login or refresh shared by every waiter: its token requests "
    "and their retries (INTERNAL; the token POST's HTTP span is its child)",
}

#: Every instrument: name -> (kind, unit, description).
METRICS = {
    "sfauth.token.requests": (
        "counter",
        "{request}",
        "Token requests sent, by sfauth.outcome (success or the error class)",
    ),
    "sfauth.token.refresh.duration": (
        "histogram",
        "s",
        "Duration of logins and refreshes, by sfauth.outcome and sfauth.token.shared",
    ),
    "sfauth.request.retries": (
        "counter",
        "{retry}",
        "Retries scheduled, by sfauth.retry.reason and sfauth.retry.target (api or token)",
    ),
    "sfauth.request.replays": (
        "counter",
        "{replay}",
        "Requests resent after a rejected session (401 INVALID_SESSION_ID), by error code",
    ),
    "sfauth.circuit.open": (
        "gauge",
        "1",
        "1 while logins are suspended after repeated failures (the circuit is open), else 0",
    ),
    "sfauth.api.requests.used": (
        "gauge",
        "{request}",
        "API requests used in the org's 24-hour window (latest Sforce-Limit-Info)",
    ),
    "sfauth.api.requests.limit": (
        "gauge",
        "{request}",
        "The org's 24-hour API request allocation (latest Sforce-Limit-Info)",
    ),
    "sfauth.requests.in_flight": (
        "updowncounter",
        "{request}",
        "Requests holding a send slot now",
    ),
}

#: Bucket boundaries (seconds) of ``sfauth.token.refresh.duration``: a login takes tens of
#: milliseconds to seconds, and ``refresh_timeout`` is 30 s by default.
REFRESH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: The OpenTelemetry context key under which the request's span travels (events find it
#: even when aiohttp's instrumentation made its own HTTP span current).
_REQUEST_SPAN = otel_context.create_key("sfauth.request") if _AVAILABLE else ""


def available() -> bool:
    """Whether ``opentelemetry-api`` is installed (``pip install '/path/to/sfauth[otel]'``)."""
    return _AVAILABLE


@dataclass(slots=True)
class _Source:
    """What one session reports through the observable instruments."""

    attributes: dict[str, str]
    in_flight: Callable[[], int | None]
    circuit_open: Callable[[], bool]
    usage: Callable[[], tuple[int, int] | None]


class _Instruments:
    """The instruments of one meter provider, shared by every session that uses it."""

    def __init__(self, provider: Any) -> None:
        meter = otel_metrics.get_meter(SCOPE, __version__, meter_provider=provider)
        #: The open sessions' telemetry. The callbacks run on the metric reader's thread
        #: (a periodic exporter, a Prometheus scrape) while sessions open on the loop's.
        self._sources: weakref.WeakSet[Telemetry] = weakref.WeakSet()
        self._lock = threading.Lock()

        def unit(name: str) -> str:
            return METRICS[name][1]

        def about(name: str) -> str:
            return METRICS[name][2]

        name = "sfauth.token.requests"
        self.token_requests = meter.create_counter(name, unit(name), about(name))
        name = "sfauth.token.refresh.duration"
        try:  # bucket advice; releases of opentelemetry-api before it take a View instead
            self.refresh_duration = meter.create_histogram(
                name,
                unit(name),
                about(name),
                explicit_bucket_boundaries_advisory=list(REFRESH_BUCKETS),
            )
        except TypeError:
            self.refresh_duration = meter.create_histogram(name, unit(name), about(name))
        name = "sfauth.request.retries"
        self.retries = meter.create_counter(name, unit(name), about(name))
        name = "sfauth.request.replays"
        self.replays = meter.create_counter(name, unit(name), about(name))
        for name, callback in (
            ("sfauth.circuit.open", self._observe_circuit),
            ("sfauth.api.requests.used", self._observe_used),
            ("sfauth.api.requests.limit", self._observe_limit),
        ):
            meter.create_observable_gauge(name, [callback], unit(name), about(name))
        name = "sfauth.requests.in_flight"
        meter.create_observable_up_down_counter(
            name, [self._observe_in_flight], unit(name), about(name)
        )

    def add(self, telemetry: Telemetry) -> None:
        with self._lock:
            self._sources.add(telemetry)

    def discard(self, telemetry: Telemetry) -> None:
        with self._lock:
            self._sources.discard(telemetry)

    def _observe(
        self, read: Callable[[_Source], int | None], combine: Callable[[int, int], int]
    ) -> list[Any]:
        """One observation per attribute set: sessions of the same user are combined."""
        with self._lock:
            sources = [t.source for t in self._sources if t.source is not None]
        combined: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], int]] = {}
        for source in sources:
            value = read(source)
            if value is None:
                continue
            key = tuple(sorted(source.attributes.items()))
            seen = combined.get(key)
            combined[key] = (source.attributes, value if seen is None else combine(seen[1], value))
        return [otel_metrics.Observation(value, attrs) for attrs, value in combined.values()]

    def _observe_circuit(self, options: Any) -> Iterable[Any]:
        return self._observe(lambda s: int(s.circuit_open()), max)  # open if any is

    def _observe_used(self, options: Any) -> Iterable[Any]:
        return self._observe(lambda s: u[0] if (u := s.usage()) else None, max)

    def _observe_limit(self, options: Any) -> Iterable[Any]:
        return self._observe(lambda s: u[1] if (u := s.usage()) else None, max)

    def _observe_in_flight(self, options: Any) -> Iterable[Any]:
        return self._observe(lambda s: s.in_flight(), operator.add)  # every session's sends


#: One ``_Instruments`` per meter provider given as ``meter_provider=`` …
_BY_PROVIDER: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
#: … and one for the global provider (OpenTelemetry's proxy until an SDK is set).
_GLOBAL: list[_Instruments] = []


def _instruments(provider: Any) -> _Instruments:
    """The instruments of ``provider`` (``None``: the global one), made on first use."""
    if provider is None:
        if not _GLOBAL:
            _GLOBAL.append(_Instruments(None))
        return _GLOBAL[0]
    found = _BY_PROVIDER.get(provider)
    if found is None:
        found = _BY_PROVIDER[provider] = _Instruments(provider)
    return found


class Refresh:
    """The outcome of one login or refresh, filled in while it runs (see ``Telemetry.refresh``)."""

    __slots__ = ("shared", "token_requests")

    def __init__(self) -> None:
        self.token_requests = 0
        self.shared = False


class Telemetry:
    """One middleware's tracer and instruments; every method is a no-op without the API.

    Args:
        tracer_provider: An OpenTelemetry ``TracerProvider``; ``None`` for the global one.
        meter_provider: An OpenTelemetry ``MeterProvider``; ``None`` for the global one.
    """

    def __init__(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._tracer_provider = tracer_provider
        self.source: _Source | None = None
        if not _AVAILABLE:
            self._tracer: Any = None
            self._metrics: _Instruments | None = None
            return
        self._tracer = otel_trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        self._metrics = _instruments(meter_provider)

    def watch(
        self,
        *,
        attributes: dict[str, str],
        in_flight: Callable[[], int | None],
        circuit_open: Callable[[], bool],
        usage: Callable[[], tuple[int, int] | None],
    ) -> None:
        """Report these readings through the observable instruments while this object lives.

        Args:
            attributes: Attributes of every observation (``sfauth.username``).
            in_flight: Requests holding a send slot now (``None``: no gate).
            circuit_open: Whether logins are suspended now.
            usage: ``(used, limit)`` from the latest ``Sforce-Limit-Info``, or ``None``.
        """
        if self._metrics is None:
            return
        self.source = _Source(attributes, in_flight, circuit_open, usage)
        self._metrics.add(self)

    def pause(self) -> None:
        """Stop reporting through the observable instruments (the session closed)."""
        if self._metrics is not None:
            self._metrics.discard(self)

    def resume(self) -> None:
        """Report again after ``pause`` (the session opened again)."""
        if self._metrics is not None and self.source is not None:
            self._metrics.add(self)

    def records_requests(self) -> bool:
        """Whether request spans are worth making: a recording tracer provider is configured.

        ``AuthSession.open`` asks once; the answer holds for the life of that pool.
        """
        if not _AVAILABLE:
            return False
        provider = self._tracer_provider or otel_trace.get_tracer_provider()
        return not isinstance(
            provider, otel_trace.ProxyTracerProvider | otel_trace.NoOpTracerProvider
        )

    @contextmanager
    def request(self, method: str, path: str) -> Iterator[Any]:
        """The ``sfauth.request`` span around one request, current while it runs.

        Args:
            method: The HTTP method.
            path: The path or URL the caller gave (its query string is not recorded).
        """
        try:
            url_path = URL("/" + path.lstrip("/") if "://" not in path else path).path
        except (TypeError, ValueError, AttributeError):
            url_path = ""  # the request itself reports the bad path
        attributes = {"http.request.method": method, "url.path": url_path}
        with self._start("sfauth.request", attributes) as span:
            token = otel_context.attach(otel_context.set_value(_REQUEST_SPAN, span))
            try:
                yield span
            except asyncio.CancelledError:
                raise  # the caller gave up (a timeout of theirs): not the request's error
            except BaseException as exc:
                _failed(span, type(exc).__name__)
                raise
            finally:
                otel_context.detach(token)

    @contextmanager
    def refresh(self, token_url: str, audience: str) -> Iterator[Refresh]:
        """The ``sfauth.token.refresh`` span and duration of one login or refresh.

        Args:
            token_url: The token endpoint.
            audience: The assertion's ``aud``.

        Yields:
            A ``Refresh`` the caller fills in (token requests sent, shared from a store).
        """
        outcome = Refresh()
        if self._tracer is None:
            yield outcome
            return
        started = time.perf_counter()
        result = "success"
        # A child of the request that started it, even when aiohttp's instrumentation made
        # its own HTTP span current where the middleware runs.
        starter = otel_context.get_value(_REQUEST_SPAN)
        parent = (
            otel_trace.set_span_in_context(starter)
            if isinstance(starter, otel_trace.Span)
            else None
        )
        attributes = {"sfauth.token_url": token_url, "sfauth.audience": audience}
        with self._start("sfauth.token.refresh", attributes, parent) as span:
            # Retry events of the token requests belong here, not to the request that
            # started the refresh (whose span the refresh task's context still names).
            token = otel_context.attach(otel_context.set_value(_REQUEST_SPAN, None))
            try:
                yield outcome
            except asyncio.CancelledError:
                result = "cancelled"  # closed, or refresh_timeout: not a failed login
                raise
            except BaseException as exc:
                result = type(exc).__name__
                _failed(span, result)
                raise
            finally:
                otel_context.detach(token)
                span.set_attribute("sfauth.outcome", result)
                span.set_attribute("sfauth.token.requests", outcome.token_requests)
                span.set_attribute("sfauth.token.shared", outcome.shared)
                if self._metrics is not None:
                    self._metrics.refresh_duration.record(
                        time.perf_counter() - started,
                        {"sfauth.outcome": result, "sfauth.token.shared": outcome.shared},
                    )

    def _start(self, name: str, attributes: dict[str, str], parent: Any = None) -> Any:
        """Start an INTERNAL span, current while its ``with`` block runs.

        sfauth sets the status itself, from the exception's class name only: OpenTelemetry's
        own handling would record the exception's message, which is not ours to export.
        """
        return self._tracer.start_as_current_span(
            name,
            context=parent,
            kind=otel_trace.SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    def token_request(self, outcome: str) -> None:
        """Count one token request sent, by outcome.

        Args:
            outcome: ``"success"``, ``"cancelled"`` (cut off by ``refresh_timeout`` or a
                close) or the error's class name.
        """
        if self._metrics is not None:
            self._metrics.token_requests.add(1, {"sfauth.outcome": outcome})

    def retry(self, target: str, reason: str, attempt: int, wait: float) -> None:
        """Count a scheduled retry and add a ``sfauth.retry`` event to the current work's span.

        Args:
            target: ``"api"`` (a request) or ``"token"`` (a token request).
            reason: A low-cardinality reason (``http_503``, ``TransportError``…).
            attempt: The attempt that failed (1 for the first).
            wait: Seconds until the next attempt.
        """
        if self._metrics is None:
            return
        self._metrics.retries.add(
            1, {"sfauth.retry.reason": reason, "sfauth.retry.target": target}
        )
        _span().add_event(
            "sfauth.retry",
            {"sfauth.retry.reason": reason, "sfauth.attempt": attempt, "sfauth.wait": wait},
        )

    def replay(self, status: int, error_code: str) -> None:
        """Count a 401 replay and add a ``sfauth.replay`` event to the request's span."""
        if self._metrics is None:
            return
        self._metrics.replays.add(1, {"sfauth.error_code": error_code})
        _span().add_event(
            "sfauth.replay", {"http.response.status_code": status, "sfauth.error_code": error_code}
        )


def _failed(span: Any, error_type: str) -> None:
    """Mark ``span`` as failed with ``error_type`` (a class name, never a message)."""
    span.set_status(otel_trace.StatusCode.ERROR, error_type)
    span.set_attribute("error.type", error_type)


def _span() -> Any:
    """The span of the work in progress: the request's (if any), else the current one."""
    span = otel_context.get_value(_REQUEST_SPAN)
    return span if span is not None else otel_trace.get_current_span()


def retry_reason(error: BaseException | None) -> str:
    """A low-cardinality name for why an attempt failed: ``http_<status>`` or the class name."""
    if error is None:
        return "unknown"
    status = getattr(error, "status", None)
    if isinstance(status, int):
        return f"http_{status}"
    return type(error).__name__


def prometheus() -> tuple[Any, Callable[[], bytes], str]:
    """An SDK ``MeterProvider`` whose metrics a Prometheus scrape reads (``sfauth demo``).

    Needs the ``prometheus`` extra (the OpenTelemetry SDK, its Prometheus exporter and
    ``prometheus_client``). The exporter's collector joins ``prometheus_client``'s default
    registry; ``provider.shutdown()`` removes it.

    Returns:
        ``(provider, scrape, content_type)``: pass ``provider`` as ``meter_provider=``;
        ``scrape()`` returns the exposition text of every registered collector.

    Raises:
        ImportError: The extra is not installed (the message says how to install it).
    """
    try:
        import prometheus_client
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        raise ImportError(
            "metrics for Prometheus need the prometheus extra: pip install "
            "'/path/to/sfauth[prometheus]' (or make test, whose .venv has it)"
        ) from None
    buckets = View(
        instrument_name="sfauth.token.refresh.duration",
        aggregation=ExplicitBucketHistogramAggregation(list(REFRESH_BUCKETS)),
    )
    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader()],
        resource=Resource.create({"service.name": "sfauth-demo"}),
        views=[buckets],
    )

    def scrape() -> bytes:
        return prometheus_client.generate_latest(prometheus_client.REGISTRY)

    return provider, scrape, prometheus_client.CONTENT_TYPE_LATEST
