"""pytest fixtures for code that uses sfauth: a running emulator and a session bound to it.

Installing sfauth registers this plugin with pytest (a ``pytest11`` entry point named
``sfauth.testing.plugin``), so the fixtures are available in every test without any import.
Where the entry point is not installed, enable it with ``-p sfauth.testing.plugin`` or
``pytest_plugins = ["sfauth.testing.plugin"]`` in your top-level ``conftest.py``; as the entry
point carries the module's name, listing it that way as well is harmless. Disable it with
``-p no:sfauth.testing.plugin``.

The async fixtures need `pytest-asyncio <https://pypi.org/project/pytest-asyncio/>`_
(``pip install pytest-asyncio``). They work in its ``strict`` mode (the default: mark your
tests ``@pytest.mark.asyncio``) and in ``auto`` mode alike, and run in the event loop your
configuration gives fixtures (``asyncio_default_fixture_loop_scope``), which must be the loop
your tests run in: the default, ``function``, is right. Without pytest-asyncio the plugin still
loads, and a test that requests an async fixture fails with a message saying so.

Loading the plugin imports nothing but pytest (and pytest-asyncio): each fixture imports what it
needs when a test requests it. So a pytest run that uses none of these fixtures works even where
sfauth's testing helpers cannot be imported; a test that requests one of them then fails with the
import error in its message.

Fixtures (all function-scoped: every test gets a fresh org):

``sf_emulator``
    A started :class:`~sfauth.testing.Emulator` on ``127.0.0.1`` and a free port, holding
    250 ``Account`` records; stopped after the test. Override it in your ``conftest.py`` to
    configure the emulator (``page_size``, ``session_timeout``, more seed data…): the other
    fixtures use your override.
``sf_credentials``
    ``sf_emulator.create_credentials()``: a registered connected app and approved user
    (:class:`~sfauth.testing.EmulatorCredentials`).
``sf_session``
    An open :class:`~sfauth.AuthSession` logged in lazily against ``sf_emulator`` over plain
    http (``allow_http_loopback=True``); closed after the test.
``sf_no_backoff``
    Retries still happen, without waiting (:func:`sfauth.testing.no_backoff`), for the
    whole test.

A complete test module::

    import pytest

    from sfauth import AuthSession
    from sfauth.testing import Emulator


    @pytest.mark.asyncio  # not needed with asyncio_mode = "auto"
    async def test_etl_survives_expiry_and_faults(
        sf_session: AuthSession, sf_emulator: Emulator, sf_no_backoff: None
    ) -> None:
        query = {"q": "SELECT Id, Name FROM Account LIMIT 5"}
        async with sf_session.get("/services/data/v62.0/query", params=query) as resp:
            assert len((await resp.json())["records"]) == 5

        sf_emulator.expire_all_sessions()
        sf_emulator.inject_faults(0.5, seed=7, endpoints={"query"}, kinds={"503"})
        async with sf_session.get("/services/data/v62.0/query", params=query) as resp:
            assert resp.status == 200  # one refresh, 503s retried at once

        assert sf_emulator.token_request_count == 2  # the first login and one refresh
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import pytest

if TYPE_CHECKING:
    from sfauth import AuthSession
    from sfauth.testing import Emulator, EmulatorCredentials

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only where pytest-asyncio is missing
    _HAVE_PYTEST_ASYNCIO = False
else:
    _HAVE_PYTEST_ASYNCIO = True

__all__ = ["sf_credentials", "sf_emulator", "sf_no_backoff", "sf_session"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture(func: _F) -> _F:
    """Register an async fixture with pytest-asyncio (in strict and auto mode alike).

    Without pytest-asyncio, register a stand-in that fails the requesting test with a message
    naming the missing package, so that merely having sfauth installed never breaks a test run.
    """
    if _HAVE_PYTEST_ASYNCIO:
        return cast(_F, pytest_asyncio.fixture(func))
    name = func.__name__

    def missing() -> NoReturn:  # pragma: no cover - see above
        pytest.fail(
            f"sfauth's {name!r} fixture is async and needs pytest-asyncio: "
            "pip install pytest-asyncio",
            pytrace=False,
        )

    missing.__doc__ = func.__doc__
    return cast(_F, pytest.fixture(name=name)(missing))


@contextlib.contextmanager
def _importing(fixture: str) -> Iterator[None]:
    """Turn a failure to import sfauth inside ``fixture`` into a failure of the requesting test."""
    try:
        yield
    except Exception as exc:
        pytest.fail(
            f"sfauth's {fixture!r} fixture cannot be set up: importing sfauth failed with "
            f"{type(exc).__name__}: {exc}. Check that sfauth's dependencies are within the "
            "versions it declares (pip check).",
            pytrace=False,
        )


@_async_fixture
async def sf_emulator() -> AsyncIterator[Emulator]:
    """A started sfauth emulator (a local Salesforce org), stopped after the test."""
    with _importing("sf_emulator"):
        from sfauth.testing import Emulator
    async with Emulator() as emulator:
        yield emulator


@pytest.fixture
def sf_credentials(sf_emulator: Emulator) -> EmulatorCredentials:
    """Credentials of a connected app and approved user registered with ``sf_emulator``."""
    return sf_emulator.create_credentials()


@_async_fixture
async def sf_session(
    sf_emulator: Emulator, sf_credentials: EmulatorCredentials
) -> AsyncIterator[AuthSession]:
    """An open ``AuthSession`` bound to ``sf_emulator`` (plain http allowed), closed after."""
    with _importing("sf_session"):
        from sfauth import AuthSession
    async with AuthSession(
        client_id=sf_credentials.client_id,
        username=sf_credentials.username,
        private_key=sf_credentials.private_key_pem,
        login_url=sf_emulator.url,
        allow_http_loopback=True,
    ) as session:
        yield session


@pytest.fixture
def sf_no_backoff() -> Iterator[None]:
    """Make sfauth retry without waiting (``sfauth.testing.no_backoff()``) during the test."""
    with _importing("sf_no_backoff"):
        from sfauth.testing import no_backoff
    with no_backoff():
        yield
