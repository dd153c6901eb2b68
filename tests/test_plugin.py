"""The pytest plugin (sfauth.testing.plugin), run in pytest subprocesses.

Until pyproject.toml registers the plugin (``[project.entry-points.pytest11]``), it is loaded
with ``-p sfauth.testing.plugin``, or through a throw-away ``*.dist-info`` that declares the
same entry point. ``test_installed_package_provides_the_fixtures`` runs only once the real
entry point is installed: WIRE the pytest11 entry point in pyproject.toml and reinstall
(``pip install -e .``) for it to run instead of being skipped.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sfauth.testing.plugin

pytest_plugins = ["pytester"]

PLUGIN = "sfauth.testing.plugin"
INI = """
[pytest]
asyncio_mode = {mode}
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

FIXTURE_TESTS = """
import pytest

import sfauth._retry
from sfauth import AuthSession, SFAuthError
from sfauth.testing import Emulator, EmulatorCredentials

SEEN = {}


@pytest.mark.asyncio
async def test_fixtures_are_wired_together(
    sf_emulator: Emulator, sf_credentials: EmulatorCredentials, sf_session: AuthSession
) -> None:
    assert isinstance(sf_emulator, Emulator)
    assert isinstance(sf_session, AuthSession)
    assert sf_credentials.login_url == sf_emulator.url
    token = await sf_session.token()
    assert token.instance_url == sf_emulator.url
    assert token.user_id == sf_credentials.user_id
    query = {"q": "SELECT Id FROM Account"}
    async with sf_session.get("/services/data/v62.0/query", params=query) as resp:
        assert (await resp.json())["totalSize"] == 250
    SEEN["session"] = sf_session
    SEEN["emulator"] = sf_emulator


def test_session_and_emulator_were_closed_after_the_test() -> None:
    with pytest.raises(SFAuthError, match="not open"):
        SEEN["session"].http
    assert SEEN["emulator"]._runner is None


@pytest.mark.asyncio
async def test_every_test_gets_a_fresh_emulator(sf_emulator: Emulator) -> None:
    assert sf_emulator is not SEEN["emulator"]
    assert sf_emulator.token_request_count == 0
    assert len(sf_emulator.records("Account")) == 250


def test_no_backoff_fixture(sf_no_backoff: None) -> None:
    assert sfauth._retry._state["backoff_disabled"] is True


def test_backoff_is_back_after_the_fixture() -> None:
    assert sfauth._retry._state["backoff_disabled"] is False
"""


def _docstring_example() -> str:
    doc = sfauth.testing.plugin.__doc__
    assert doc is not None
    return textwrap.dedent(doc.split("A complete test module::", 1)[1])


def _registered_entry_points() -> list[importlib.metadata.EntryPoint]:
    return [ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.value == PLUGIN]


ENTRY_POINT_INSTALLED = bool(_registered_entry_points())


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_fixtures_and_the_docstring_example_in_a_pytest_subprocess(
    pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makeini(INI.format(mode=mode))
    pytester.makepyfile(test_fixtures=FIXTURE_TESTS, test_example=_docstring_example())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=6)


def test_overriding_sf_emulator_reconfigures_the_other_fixtures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI.format(mode="strict"))
    pytester.makeconftest(
        """
        import pytest_asyncio
        from sfauth.testing import Emulator


        @pytest_asyncio.fixture
        async def sf_emulator():
            async with Emulator(page_size=100, default_accounts=150) as emulator:
                yield emulator
        """
    )
    pytester.makepyfile(
        """
        import pytest


        @pytest.mark.asyncio
        async def test_small_pages(sf_session, sf_emulator):
            async with sf_session.get(
                "/services/data/v62.0/query", params={"q": "SELECT Id FROM Account"}
            ) as resp:
                page = await resp.json()
            assert page["totalSize"] == 150
            assert len(page["records"]) == 100
            assert page["done"] is False
        """
    )
    result = pytester.runpytest_subprocess(timeout=120)
    result.assert_outcomes(passed=1)


def test_fixtures_are_listed_with_their_docs(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(mode="strict"))
    result = pytester.runpytest_subprocess("--fixtures", timeout=120)
    assert result.ret == 0
    for line in (
        "sf_emulator -- *sfauth/testing/plugin.py:*",
        "    A started sfauth emulator (a local Salesforce org), stopped after the test.",
        "sf_credentials -- *sfauth/testing/plugin.py:*",
        "sf_session -- *sfauth/testing/plugin.py:*",
        "    An open ``AuthSession`` bound to ``sf_emulator`` (plain http allowed), closed after.",
        "sf_no_backoff -- *sfauth/testing/plugin.py:*",
    ):
        result.stdout.fnmatch_lines([line])


def test_without_pytest_asyncio_the_plugin_loads_and_async_fixtures_explain(
    pytester: pytest.Pytester,
) -> None:
    # Simulate an environment without pytest-asyncio: block its import and its plugin.
    pytester.makepyfile(block_pytest_asyncio="import sys\nsys.modules['pytest_asyncio'] = None\n")
    pytester.makepyfile(
        test_plain="""
        def test_unrelated():
            assert True


        def test_sync_fixtures_work(sf_no_backoff):
            assert True


        def test_async_fixture(sf_session):
            pass
        """
    )
    args = ("-p", "no:asyncio", "-p", "block_pytest_asyncio")
    result = pytester.runpytest_subprocess(*args, timeout=120)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*sfauth's 'sf_session' fixture is async and needs pytest-asyncio*"]
    )


BREAK_SFAUTH_TESTING = """
import sys


class BrokenEmulator:
    # What an sfauth.testing import failure looks like, e.g. under a PyJWT too old for it.
    def find_spec(self, name, path=None, target=None):
        if name == "sfauth.testing._emulator":
            raise ImportError("cannot import name 'InsecureKeyLengthWarning' from 'jwt.warnings'")
        return None


sys.meta_path.insert(0, BrokenEmulator())
"""


def test_a_broken_sfauth_testing_fails_only_the_tests_that_use_its_fixtures(
    pytester: pytest.Pytester,
) -> None:
    # pytest loads the plugin in every run where sfauth is installed: a run that uses none of
    # its fixtures must not notice that sfauth.testing cannot be imported.
    pytester.makeini(INI.format(mode="auto"))
    pytester.makepyfile(break_sfauth_testing=BREAK_SFAUTH_TESTING)
    args = ("-p", "break_sfauth_testing", "-p", PLUGIN, "-p", "no:cacheprovider")
    pytester.makepyfile(
        test_unrelated="""
        import sys


        def test_unrelated():
            assert "sfauth.testing.plugin" in sys.modules
            assert "sfauth.testing._emulator" not in sys.modules


        async def test_unrelated_async():
            assert True
        """
    )
    unrelated = pytester.runpytest_subprocess(*args, timeout=120)
    unrelated.assert_outcomes(passed=2)
    assert unrelated.ret == pytest.ExitCode.OK

    pytester.makepyfile(
        test_fixtures="""
        def test_no_backoff_needs_no_emulator(sf_no_backoff):
            assert True


        def test_emulator(sf_emulator):
            pass


        def test_session(sf_session):
            pass
        """
    )
    result = pytester.runpytest_subprocess(*args, "test_fixtures.py", timeout=120)
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*sfauth's 'sf_emulator' fixture cannot be set up: importing sfauth failed with "
            "ImportError: cannot import name 'InsecureKeyLengthWarning' from 'jwt.warnings'*"
        ]
    )


@pytest.mark.parametrize("listed", ["-p", "pytest_plugins"])
def test_listing_the_installed_plugin_explicitly_as_well_still_works(
    pytester: pytest.Pytester, listed: str
) -> None:
    # The entry point is named after the module, so projects that also pass
    # -p sfauth.testing.plugin or list it in pytest_plugins keep working (under another name
    # pytest stops with "Plugin already registered under a different name").
    assert ENTRY_POINT_INSTALLED
    pytester.makeini(INI.format(mode="auto"))
    pytester.makepyfile(test_fixtures=FIXTURE_TESTS)
    if listed == "pytest_plugins":
        pytester.makeconftest(f"pytest_plugins = [{PLUGIN!r}]")
        result = pytester.runpytest_subprocess(timeout=120)
    else:
        result = pytester.runpytest_subprocess("-p", PLUGIN, timeout=120)
    result.assert_outcomes(passed=5)


def test_installed_package_provides_the_fixtures(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n"
        'asyncio_mode = "strict"\n'
        'asyncio_default_fixture_loop_scope = "function"\n'
        'filterwarnings = ["error"]\n'
    )
    (project / "tests" / "test_uses_sfauth.py").write_text(
        FIXTURE_TESTS + "\n\n" + _docstring_example()
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout
