"""Other Salesforce clients against the emulator, unchanged.

Handing sfauth's token to simple-salesforce and getting a new one when it expires (#7);
simple-salesforce's own JWT login and the Salesforce CLI's assertion (#20).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import requests
import requests.adapters
from simple_salesforce import Salesforce, SalesforceExpiredSession

from sfauth import AuthSession
from sfauth.testing import Emulator


def count_accounts(instance_url: str, session_id: str, ca_file: Path) -> int:
    http = requests.Session()
    http.trust_env = False  # else $REQUESTS_CA_BUNDLE would replace the CA below
    http.verify = str(ca_file)  # the emulator's test CA
    with http:
        sf = Salesforce(
            instance_url=instance_url, session_id=session_id, version="62.0", session=http
        )
        result: int = sf.query("SELECT Id FROM Account")["totalSize"]
    return result


async def test_simple_salesforce_uses_the_token_and_replace_token_renews_it(
    tmp_path: Path,
) -> None:
    async with Emulator(tls=True) as emu:
        assert emu.ca_pem is not None
        ca_file = tmp_path / "ca.pem"
        ca_file.write_bytes(emu.ca_pem)
        creds = emu.create_credentials()
        async with AuthSession(
            client_id=creds.client_id,
            username=creds.username,
            private_key=creds.private_key_pem,
            login_url=emu.url,
            ssl=emu.client_ssl_context(),
        ) as sf:
            token = await sf.token()
            count = await asyncio.to_thread(
                count_accounts, token.instance_url, token.access_token, ca_file
            )
            assert count == 250

            emu.expire_all_sessions()
            with pytest.raises(SalesforceExpiredSession):
                await asyncio.to_thread(
                    count_accounts, token.instance_url, token.access_token, ca_file
                )
            fresh = await sf.replace_token(token)
            assert fresh.access_token != token.access_token
            assert await sf.replace_token(token) is fresh  # reported twice: one login
            count = await asyncio.to_thread(
                count_accounts, fresh.instance_url, fresh.access_token, ca_file
            )
            assert count == 250
        assert emu.token_request_count == 2


class HostsEntry(requests.adapters.HTTPAdapter):
    """Send what is addressed to one origin to another one, like an ``/etc/hosts`` entry.

    simple-salesforce always posts its JWT login to ``https://{domain}.salesforce.com``; mounted
    on that origin, this adapter delivers the request to the emulator instead, unchanged.
    """

    def __init__(self, origin: str, target: str) -> None:
        super().__init__()
        self.origin = origin
        self.target = target

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert request.url is not None
        assert request.url.startswith(self.origin + "/")
        request.url = self.target + request.url.removeprefix(self.origin)
        return super().send(request, **kwargs)


def simple_salesforce_jwt_login(
    emu_url: str, username: str, client_id: str, private_key: str, ca_file: Path
) -> tuple[str, int]:
    """Log in with simple-salesforce's own JWT Bearer code, then run a query with the session."""
    http = requests.Session()
    http.trust_env = False  # else $REQUESTS_CA_BUNDLE would replace the CA below
    http.verify = str(ca_file)
    http.mount(
        "https://login.salesforce.com/", HostsEntry("https://login.salesforce.com", emu_url)
    )
    with http:
        sf = Salesforce(
            username=username,
            consumer_key=client_id,
            privatekey=private_key,
            domain="login",
            version="62.0",
            session=http,
        )
        total: int = sf.query("SELECT Id FROM Account")["totalSize"]
    return sf.session_id, total


async def test_simple_salesforce_jwt_login_against_the_emulator(tmp_path: Path) -> None:
    async with Emulator(tls=True) as emu:
        assert emu.ca_pem is not None
        ca_file = tmp_path / "ca.pem"
        ca_file.write_bytes(emu.ca_pem)
        creds = emu.create_credentials()
        session_id, total = await asyncio.to_thread(
            simple_salesforce_jwt_login,
            emu.url,
            creds.username,
            creds.client_id,
            creds.private_key_pem.decode(),
            ca_file,
        )
        assert total == 250
        assert session_id.startswith(creds.org_id + "!")
        assert emu.token_request_count == 1
        record = emu.token_requests[0]
        assert (record.status, record.error) == (200, None)
        # simple-salesforce sends exp as a string of digits, 3 minutes ahead, and typ JWT
        exp = record.claims["exp"]
        assert isinstance(exp, str)
        assert exp.isdigit()
        assert 170 <= int(exp) - time.time() <= 181
        assert record.header == {"alg": "RS256", "typ": "JWT"}
        assert record.claims["aud"] == "https://login.salesforce.com"


async def test_salesforce_cli_assertion_with_exp_in_milliseconds_logs_in() -> None:
    """The Salesforce CLI (@salesforce/core ``AuthInfo``) signs with jsonwebtoken.

    Its claims are ``{iss, sub, aud, exp: Date.now() + 300}`` (milliseconds), to which
    jsonwebtoken adds ``iat`` (seconds) and the header ``{"alg": "RS256", "typ": "JWT"}``;
    it posts the usual form.
    """
    async with Emulator() as emu, aiohttp.ClientSession() as http:
        creds = emu.create_credentials()
        now = time.time()
        claims = {
            "iss": creds.client_id,
            "sub": creds.username,
            "aud": "https://login.salesforce.com",
            "exp": int(now * 1000) + 300,
            "iat": int(now),
        }
        assertion = jwt.encode(claims, creds.private_key_pem, algorithm="RS256")
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion,
        }
        async with http.post(f"{emu.url}/services/oauth2/token", data=form) as response:
            assert response.status == 200, await response.text()
            token = await response.json()
        assert token["token_type"] == "Bearer"
        assert emu.token_requests[0].claims["exp"] == claims["exp"]
        async with http.get(
            f"{token['instance_url']}/services/data/v62.0/query",
            params={"q": "SELECT Id FROM Account"},
            headers={"Authorization": f"Bearer {token['access_token']}"},
        ) as response:
            assert response.status == 200
            assert (await response.json())["totalSize"] == 250
