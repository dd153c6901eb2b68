"""A local Salesforce for tests and demos.

:class:`Emulator` serves, on real sockets (HTTP or HTTPS), the OAuth 2.0 JWT Bearer token
endpoint, verifying RS256 assertions against registered certificates with Salesforce's exact
error bodies, and a slice of the REST API: versions, SOQL query with ``nextRecordsUrl`` paging,
sObject CRUD and upsert in memory, limits, userinfo and revoke. Sessions expire after inactivity
or on demand; token and REST answers can be scripted to inject faults, or replaced at random
(seeded, reproducible) by the transient faults of :data:`FAULT_KINDS` for soak tests; everything
is counted.

Example::

    from sfauth.testing import Emulator

    async with Emulator() as emu:
        creds = emu.create_credentials(username="etl@example.com")
        # Sign an RS256 assertion with creds.private_key_pem (iss=creds.client_id,
        # sub=creds.username, aud=creds.audience) and POST it to
        # f"{creds.login_url}/services/oauth2/token".

        emu.inject_faults(0.05, seed=1)  # 5 % of requests get a transient fault
        ...
        print(emu.faults_injected)  # Counter({'503': 12, 'reset': 9, ...})

:func:`no_backoff` makes sfauth retry without waiting inside a ``with`` block, so tests of code
that uses sfauth stay fast while exercising the same retry decisions.
"""

from sfauth._retry import backoff_disabled as no_backoff
from sfauth.testing._emulator import Emulator
from sfauth.testing._faults import FAULT_KINDS
from sfauth.testing._models import (
    EmulatorCredentials,
    RequestRecord,
    ScriptedResponse,
    TokenRequestRecord,
)

__all__ = [
    "FAULT_KINDS",
    "Emulator",
    "EmulatorCredentials",
    "RequestRecord",
    "ScriptedResponse",
    "TokenRequestRecord",
    "no_backoff",
]
