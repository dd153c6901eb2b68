"""Property tests: any input to a parser gives a result or an sfauth error, nothing else.

``make test`` runs a few hundred examples per parser; ``make fuzz`` runs 10,000
(``HYPOTHESIS_PROFILE=thorough``).
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfauth import SFAuthError, TokenEndpointError
from sfauth._limits import ApiUsage, UsageTracker, parse_limit_info
from sfauth._retry import parse_retry_after
from sfauth._token import Token, classify_token_error, parse_token_response

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

URL = "https://login.salesforce.com/services/oauth2/token"
AUD = "https://login.salesforce.com"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
token_fields = st.fixed_dictionaries(
    {},
    optional={
        "access_token": json_values | st.just("00D000000000001!AQ0abc"),
        "instance_url": json_values | st.sampled_from(["https://a.my.salesforce.com", "http://x"]),
        "id": json_values | st.just("https://login.salesforce.com/id/00D/005"),
        "token_type": json_values | st.just("Bearer"),
        "scope": json_values,
        "issued_at": json_values | st.just("1700000000000"),
        "signature": json_values,
        "sfdc_community_url": json_values,
    },
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | token_fields.map(lambda v: json.dumps(v).encode())
)


@given(status=st.integers(100, 599), body=bodies)
def test_token_response_parser_total(status: int, body: bytes) -> None:
    error: TokenEndpointError | None = None
    try:
        token = parse_token_response(status, body, token_url=URL, audience=AUD, obtained_at=0.0)
    except TokenEndpointError as exc:
        error = exc
    if error is not None:
        assert str(error)
        assert "00D000000000001!AQ0abc" not in str(error)
    else:
        assert status == 200
        assert isinstance(token, Token)
        assert token.token_type == "Bearer"
        assert token.access_token not in repr(token)


@given(
    status=st.integers(300, 599),
    body=bodies
    | st.fixed_dictionaries({"error": json_values, "error_description": json_values}).map(
        lambda v: json.dumps(v).encode()
    ),
)
def test_token_error_classifier_total(status: int, body: bytes) -> None:
    exc = classify_token_error(status, body, token_url=URL, audience=AUD)
    assert isinstance(exc, TokenEndpointError)
    assert isinstance(exc.retryable, bool)
    assert exc.hint


limit_entries = st.tuples(
    st.sampled_from(["api-usage", "per-app-api-usage", "api-bursts", "x"]),
    st.integers(0, 10**20),
    st.integers(0, 10**20),
).map(lambda t: f"{t[0]}={t[1]}/{t[2]}")


@given(value=st.text(max_size=200) | st.lists(limit_entries, max_size=4).map("; ".join))
def test_limit_info_parser_total(value: str) -> None:
    usage = parse_limit_info(value)
    assert usage is None or isinstance(usage, ApiUsage)
    if usage is not None:
        assert usage.used >= 0
        assert usage.limit >= 0
        assert usage.fraction >= 0


@given(headers=st.lists(st.text(max_size=60) | st.lists(limit_entries, max_size=3).map("; ".join)))
def test_usage_tracker_total(headers: list[str]) -> None:
    tracker = UsageTracker(warn_fraction=0.5)
    for header in headers:
        tracker.observe(header)
    latest = tracker.latest
    assert latest is None or latest.used >= 0


@given(
    value=st.none()
    | st.text(max_size=60)
    | st.integers(-(10**12), 10**12).map(str)
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S %Z"))
)
def test_retry_after_parser_total(value: str | None) -> None:
    try:
        seconds = parse_retry_after(value, now=1_700_000_000.0)
    except SFAuthError:  # pragma: no cover - allowed by contract, never expected
        return
    assert seconds is None or 0.0 <= seconds <= 86400.0
