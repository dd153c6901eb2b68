"""The token request itself: only what the flow needs, honest retries (trust issue 10, 13, 14).

RFC 7523 section 2.1: the request is a form POST with ``grant_type`` and ``assertion`` and
nothing else; it must not inherit the caller's ``ClientSession`` defaults (headers meant for
another service, ``raise_for_status``, cookies).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from sfauth import (
    AuthSession,
    InvalidGrantError,
    RetryPolicy,
    SalesforceAuthMiddleware,
    TokenEndpointError,
    TransientAPIError,
)
from sfauth.testing import Emulator, EmulatorCredentials, ScriptedResponse

from .conftest import SessionFactory

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id FROM Account LIMIT 1"}
FOREIGN = {
    "Authorization": "Bearer other-service-credential-0123456789",
    "X-Api-Key": "other-service-key",
    "Content-Type": "application/json",
}


async def test_the_token_request_carries_nothing_of_the_callers_session(
    emulator: Emulator, creds: EmulatorCredentials, flow: dict[str, Any]
) -> None:
    auth = SalesforceAuthMiddleware(**flow)
    async with aiohttp.ClientSession(
        middlewares=(auth,), headers=FOREIGN, raise_for_status=True, cookies={"sid": "cookie"}
    ) as http:
        token = await auth.token(http)
        async with http.get(f"{token.instance_url}{QUERY}", params=SOQL) as resp:
            assert resp.status == 200
    (record,) = emulator.token_requests
    assert record.status == 200
    assert record.content_type == "application/x-www-form-urlencoded"
    assert sorted(record.form) == ["assertion", "grant_type"]
    sent = {name.lower() for name in record.headers}
    assert not sent & {"authorization", "x-api-key", "cookie"}
    # The API request got sfauth's bearer in place of the session default.
    assert emulator.requests[-1].authorization == f"Bearer {token.access_token}"


async def test_a_refused_login_is_not_retried_under_raise_for_status(
    emulator: Emulator, creds: EmulatorCredentials, flow: dict[str, Any]
) -> None:
    auth = SalesforceAuthMiddleware(**flow)
    refusal = {"error": "invalid_grant", "error_description": "user hasn't approved this consumer"}
    emulator.script_token_responses([ScriptedResponse(status=400, json=refusal)])
    async with aiohttp.ClientSession(middlewares=(auth,), raise_for_status=True) as http:
        with pytest.raises(InvalidGrantError, match="user hasn't approved this consumer"):
            await auth.token(http)
    assert emulator.token_request_count == 1


async def test_the_retry_budget_counts_the_first_attempt(
    make_session: SessionFactory, emulator: Emulator
) -> None:
    sf = make_session(retry=RetryPolicy(budget=1.0))
    await sf.token()
    # The first answer alone takes longer than the whole budget: no retry may start.
    emulator.script_rest_responses([ScriptedResponse(status=503, delay=1.2)] * 2)
    with pytest.raises(TransientAPIError) as info:
        await sf.get(QUERY, params=SOQL)
    assert info.value.attempts == 1
    assert [r.status for r in emulator.requests] == [503]


async def test_a_tls_verification_failure_at_the_token_endpoint_is_not_retried() -> None:
    async with Emulator(tls=True) as emulator:
        creds = emulator.create_credentials()
        sf = AuthSession(
            client_id=creds.client_id,
            username=creds.username,
            private_key=creds.private_key_pem,
            login_url=emulator.url,  # https, signed by a CA the system store does not know
        )
        async with sf:
            with pytest.raises(TokenEndpointError) as info:
                await sf.token()
        assert sf.token_requests == 1
    error = info.value
    assert type(error) is TokenEndpointError
    assert (error.error, error.status, error.retryable) == ("tls_error", None, False)
    assert "ClientConnectorCertificateError" in error.error_description
    assert "pass ssl= an ssl.SSLContext that trusts the host's CA" in error.hint
