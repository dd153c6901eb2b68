"""A reduced benchmark run in CI: every client answers, the herd costs one token request.

No speed is asserted here; ``make bench`` measures and reports. The peers come from the
``bench`` extra: without them these tests fail, they do not skip.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from benchmarks import _report
from benchmarks._clients import CLIENTS
from benchmarks.bench import Config, Results, run

PEERS = ("aiosalesforce", "simple_salesforce", "httpx", "requests", "jwt", "matplotlib")


@pytest.mark.parametrize("module", PEERS)
def test_bench_peer_is_installed(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(
            f"{module} is missing: install the bench extra (pip install -e '.[bench]'): {exc}"
        )


@pytest.fixture(scope="module")
def results() -> Results:
    return run(Config.reduced(), quiet=True)


def test_every_client_answered_every_request_with_200(results: Results) -> None:
    config = Config.reduced()
    assert set(results.overhead) == set(CLIENTS)
    for client in CLIENTS:
        assert sorted(results.overhead[client]) == sorted(str(level) for level in config.levels)
        for level, rounds in results.overhead[client].items():
            assert len(rounds) == config.rounds, (client, level)
            for run_ in rounds:
                where = f"{client} at concurrency {level}"
                assert run_["errors"] == {}, where
                assert run_["ok"] == run_["n"] == config.requests, where
                assert run_["server_200"] == config.requests, where
                assert run_["wall"] > 0, where
                assert run_["cpu"] > 0, where
        for level, warmup in results.warmups[client].items():
            assert warmup["ok"] == warmup["n"], (client, level)
    assert results.failures() == []


def test_the_herd_costs_exactly_one_token_request(results: Results) -> None:
    herd = results.herd
    assert herd["n"] == Config.reduced().herd
    for herd_round in herd["rounds"]:
        assert herd_round["token_requests"] == 1
        assert herd_round["client_token_requests"] == 1
        assert herd_round["served_401"] > 0  # the expired session was really met
        for phase in ("baseline", "expired"):
            assert herd_round[phase]["ok"] == herd["n"], phase
            assert herd_round[phase]["errors"] == {}, phase


def test_memory_and_assertion_probes_ran(results: Results) -> None:
    memory = results.memory
    assert [row["requests"] for row in memory["rows"]] == list(Config.reduced().memory)
    assert memory["ok"] == Config.reduced().memory[-1]
    assert memory["errors"] == {}
    assert memory["token_requests"] == 1
    assert all(row["rss"] > 0 for row in memory["rows"])
    assert set(results.assertion["median"]) == {"sfauth", "naive", "bare"}
    assert all(value > 0 for value in results.assertion["median"].values())


def test_the_report_renders(results: Results, tmp_path: Path) -> None:
    _report.write(results, tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## 1. Request overhead" in text
    assert "## 2. Thundering herd" in text
    for client in CLIENTS:
        assert f"| {client} |" in text
    assert (tmp_path / _report.PLOT_NAME).read_bytes().startswith(b"\x89PNG")
    assert "targets:" in _report.summary(results)
