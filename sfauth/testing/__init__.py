"""A local Salesforce for tests and demos.

:class:`Emulator` serves, on real sockets (HTTP or HTTPS), the OAuth 2.0 JWT Bearer token
endpoint, verifying RS256 assertions against registered certificates with Salesforce's exact
error bodies, and a slice of the REST API: versions, SOQL query and queryAll with
``nextRecordsUrl`` paging, sObject CRUD and upsert validated against a :class:`Schema` (standard
objects, plus custom ones added in code or loaded from an org's describe JSON), describe and
describe global, limits, userinfo and revoke. Sessions expire after inactivity
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

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from sfauth._retry import backoff_disabled as no_backoff
    from sfauth.testing._emulator import Emulator
    from sfauth.testing._faults import FAULT_KINDS
    from sfauth.testing._models import (
        EmulatorCredentials,
        RequestRecord,
        ScriptedResponse,
        TokenRequestRecord,
    )
    from sfauth.testing._schema import FieldSchema, Schema, SchemaError, SObjectSchema

__all__ = [
    "FAULT_KINDS",
    "Emulator",
    "EmulatorCredentials",
    "FieldSchema",
    "RequestRecord",
    "SObjectSchema",
    "Schema",
    "SchemaError",
    "ScriptedResponse",
    "TokenRequestRecord",
    "no_backoff",
]

# Imported on first use (PEP 562), so that importing sfauth.testing.plugin, which pytest does in
# every run where sfauth is installed, imports none of the emulator.
_LAZY = {
    "FAULT_KINDS": ("sfauth.testing._faults", "FAULT_KINDS"),
    "Emulator": ("sfauth.testing._emulator", "Emulator"),
    "EmulatorCredentials": ("sfauth.testing._models", "EmulatorCredentials"),
    "RequestRecord": ("sfauth.testing._models", "RequestRecord"),
    "ScriptedResponse": ("sfauth.testing._models", "ScriptedResponse"),
    "TokenRequestRecord": ("sfauth.testing._models", "TokenRequestRecord"),
    "FieldSchema": ("sfauth.testing._schema", "FieldSchema"),
    "SObjectSchema": ("sfauth.testing._schema", "SObjectSchema"),
    "Schema": ("sfauth.testing._schema", "Schema"),
    "SchemaError": ("sfauth.testing._schema", "SchemaError"),
    "no_backoff": ("sfauth._retry", "backoff_disabled"),
}


def __getattr__(name: str) -> _typing.Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
