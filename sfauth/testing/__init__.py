"""A local Salesforce for tests and demos.

:class:`Emulator` serves, on real sockets (HTTP or HTTPS), the OAuth 2.0 JWT Bearer token
endpoint, verifying RS256 assertions against registered certificates with Salesforce's exact
error bodies, and a slice of the REST API: versions, SOQL query with ``nextRecordsUrl`` paging,
sObject CRUD and upsert in memory, limits, userinfo and revoke. Sessions expire after inactivity
or on demand; token and REST answers can be scripted to inject faults; everything is counted.

Example::

    from sfauth.testing import Emulator

    async with Emulator() as emu:
        creds = emu.create_credentials(username="etl@example.com")
        # Sign an RS256 assertion with creds.private_key_pem (iss=creds.client_id,
        # sub=creds.username, aud=creds.audience) and POST it to
        # f"{creds.login_url}/services/oauth2/token".
"""

from sfauth.testing._emulator import Emulator
from sfauth.testing._models import (
    EmulatorCredentials,
    RequestRecord,
    ScriptedResponse,
    TokenRequestRecord,
)

__all__ = [
    "Emulator",
    "EmulatorCredentials",
    "RequestRecord",
    "ScriptedResponse",
    "TokenRequestRecord",
]
