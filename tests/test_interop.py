"""Handing sfauth's token to simple-salesforce, and getting a new one when it expires (#7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import requests
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
