"""A reduced benchmark run in CI: every client answers, each herd costs one token request.

No speed is asserted here; ``make bench`` measures and reports. What is deterministic is
asserted exactly: every request answered, one token request per herd round, at most ``limit``
401s when the session expires behind a pool. The peers come from the ``bench`` extra: without
them these tests fail, they do not skip.
"""

from __future__ import annotations

import ast
import gc
import importlib
from pathlib import Path
from typing import Any

import pytest

from benchmarks import _probes, _report, bench
from benchmarks._clients import CLIENTS
from benchmarks.bench import Config, Results, run

PEERS = ("aiosalesforce", "simple_salesforce", "httpx", "requests", "jwt", "matplotlib")
SFAUTH = Path(__file__).resolve().parent.parent / "sfauth"


@pytest.mark.parametrize("module", PEERS)
def test_bench_peer_is_installed(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(
            f"{module} is missing: install the bench extra (pip install -e '.[bench]'): {exc}"
        )


def test_the_full_and_the_reduced_configuration() -> None:
    full, quick = Config(), Config.reduced()
    assert full.levels == (1, *_report.TARGET_LEVELS)
    assert (full.herd, full.pool_herd, full.pool_herd_limit, full.herd_rounds) == (
        10_000,
        10_000,
        100,
        3,
    )
    assert full.pool_herd_at == 0.25
    assert (quick.herd, quick.pool_herd, quick.pool_herd_limit, quick.herd_rounds) == (
        500,
        500,
        25,
        1,
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


def test_the_layers_probe_ran_every_layer_in_every_round(results: Results) -> None:
    config = Config.reduced()
    layers = results.layers
    assert list(layers["cpu"]) == list(_probes.LAYERS)
    assert all(len(rounds) == config.layers_rounds for rounds in layers["cpu"].values())
    assert layers["ok"] == layers["n"] == config.layers_requests * config.layers_rounds * 5
    (first, *rest) = _report.layers_rows(results)
    assert (first["ratio"], first["added"]) == (1.0, None)
    assert all(row["added"] is not None for row in rest)


def _every_request_ok(herd: dict[str, Any]) -> None:
    for burst in (
        herd["warmup"],
        *(r[phase] for r in herd["rounds"] for phase in ("baseline", "expired")),
    ):
        assert burst["errors"] == {}
        assert burst["ok"] == burst["n"] == herd["n"]
        assert burst["cpu"] > 0
        assert burst["gc"] >= 0


def test_the_herd_behind_a_pool_expires_mid_burst(results: Results) -> None:
    config = Config.reduced()
    herd = results.pool_herd
    assert (herd["n"], herd["limit"]) == (config.pool_herd, config.pool_herd_limit)
    assert herd["expire_after"] == config.pool_herd // 4
    assert len(herd["rounds"]) == config.herd_rounds
    _every_request_ok(herd)
    for herd_round in herd["rounds"]:
        assert herd_round["token_requests"] == 1
        assert herd_round["client_token_requests"] == 1
        assert herd_round["baseline_401"] == 0
        # Every request answered once with 200; the expiry was met, by at most `limit` sends.
        assert herd_round["served_200"] == config.pool_herd
        assert 0 < herd_round["served_401"] <= config.pool_herd_limit
        expiry = herd_round["expired"]["expiry"]
        assert expiry["completed_before"] == herd["expire_after"]
        assert herd["expire_after"] <= expiry["completed_when_confirmed"] < config.pool_herd
        assert 0 < expiry["sent_at"] <= expiry["confirmed_at"]
    assert herd["token_round_trip"] > 0


def test_the_herd_all_in_flight_costs_exactly_one_token_request(results: Results) -> None:
    config = Config.reduced()
    herd = results.herd
    assert herd["n"] == herd["limit"] == config.herd
    assert len(herd["rounds"]) == config.herd_rounds
    _every_request_ok(herd)
    for herd_round in herd["rounds"]:
        assert herd_round["token_requests"] == 1
        assert herd_round["client_token_requests"] == 1
        assert herd_round["served_200"] == config.herd
        assert 0 < herd_round["served_401"] <= config.herd  # the expired session was met


def test_the_gc_probe_timed_each_compared_client(results: Results) -> None:
    rows = results.gc["rows"]
    assert [(row["client"], row["concurrency"]) for row in rows] == [
        ("aiohttp", 16),
        ("aiohttp+middleware", 16),
        ("sfauth", 16),
    ]
    assert all(row["cpu_us"] > 0 and 0 <= row["gc_us"] <= row["cpu_us"] for row in rows)


def test_memory_and_assertion_probes_ran(results: Results) -> None:
    memory = results.memory
    assert [row["requests"] for row in memory["rows"]] == list(Config.reduced().memory)
    assert memory["ok"] == Config.reduced().memory[-1]
    assert memory["errors"] == {}
    assert memory["token_requests"] == 1
    assert all(row["rss"] > 0 for row in memory["rows"])
    assert set(results.assertion["median"]) == {"sfauth", "naive", "bare"}
    assert all(value > 0 for value in results.assertion["median"].values())


def test_the_targets_of_the_reduced_run(results: Results) -> None:
    found = {target.name: target for target in _report.targets(results)}
    rate = [name for name in found if name.startswith("requests/s: sfauth >= 0.95")]
    cpu = [name for name in found if name.startswith("CPU per request: sfauth <= 1.08")]
    assert [name.rsplit(" ", 1)[1] for name in rate] == ["16", "64", "256", "1024"]
    assert [name.rsplit(" ", 1)[1] for name in cpu] == ["16", "64", "256", "1024"]
    for name in (*rate, *cpu):
        measured = name.endswith(" 16")  # the reduced run measures concurrency 1 and 16
        assert (found[name].met is not None) is measured, name
    (falls,) = [name for name in found if "does not fall" in name]
    assert found[falls].met is None  # 1024 is not measured in the reduced run
    pool = [target for name, target in found.items() if name.startswith("herd behind a pool")]
    assert len(pool) == 3
    assert pool[0].met is True  # exactly 1 token request
    assert pool[1].met is True  # at most `limit` 401s
    assert pool[2].met is not None  # the p99 bound: measured, whatever this machine makes of it
    flight = [target for name, target in found.items() if name.startswith("herd all in flight")]
    assert len(flight) == 2
    assert flight[0].met is True
    assert flight[1].met is not None


def test_the_report_renders(results: Results, tmp_path: Path) -> None:
    _report.write(results, tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## 1. Request overhead" in text
    assert "## 2. Thundering herd" in text
    assert "### Behind a pool: the session expires mid-burst" in text
    assert "### All in flight: every request meets the expired session" in text
    assert "## 6. Million-request soak" in text
    assert "## 7. Fleet leases and the API budget guard" in text
    assert "| **median** |" in text
    assert "**The middleware floor.**" in text
    assert "**The garbage collector.**" in text
    assert "**Where sfauth's cost goes.**" in text
    for layer in _probes.LAYERS:
        assert f"| {layer} |" in text
    for client in CLIENTS:
        assert f"| {client} |" in text
    assert (tmp_path / _report.PLOT_NAME).read_bytes().startswith(b"\x89PNG")
    summary = _report.summary(results)
    assert "targets:" in summary
    assert "herd behind a pool: 500 requests, limit 25" in summary


async def test_the_leases_benchmark_counts_the_round_trips_it_adds(prefix: str) -> None:
    from benchmarks import leases

    from .conftest import REDIS_URL

    result = await leases.run(REDIS_URL, requests=20, rounds=1)
    trips = {mode: result["round_trips"][mode][0] for mode, *_ in leases.MODES}
    assert trips == {
        "plain": 0.0,
        "lease (memory)": 0.0,
        "lease (redis)": 2.0,  # the Lua grant and the ZREM
        "low priority (redis)": 0.0,  # the fleet's reading: once a second at most
        "lease + low priority (redis)": 2.0,
    }
    text = leases.render(result, command="python -m benchmarks.leases", seconds=1.0)
    assert "| lease (redis) |" in text
    assert text.startswith("## Fleet leases and the API budget guard\n")


# ---------------------------------------------------------------------------------- no run


def _runs(rate: float, cpu_us: float) -> list[dict[str, Any]]:
    return [{"n": 1000, "wall": 1000 / rate, "cpu": cpu_us * 1e-3, "foreign_load": 0.0}] * 3


def _results(ratios: dict[int, tuple[float, float]]) -> Results:
    """Results with only overhead figures: level -> (sfauth rate ratio, sfauth CPU ratio)."""
    config = Config()
    results = Results(config=vars(config) | {"levels": list(config.levels)}, server={}, pinning={})
    results.overhead = {
        "aiohttp": {str(level): _runs(10_000, 100) for level in ratios},
        "sfauth": {
            str(level): _runs(10_000 * rate, 100 * cpu) for level, (rate, cpu) in ratios.items()
        },
    }
    return results


def test_the_overhead_targets_say_by_how_much() -> None:
    results = _results(
        {1: (1.2, 0.9), 16: (0.96, 1.05), 64: (0.95, 1.08), 256: (0.93, 1.10), 1024: (0.92, 1.2)}
    )
    found = {target.name: target for target in _report.targets(results)}
    rate = "requests/s: sfauth >= 0.95 x raw aiohttp at concurrency {}"
    cpu = "CPU per request: sfauth <= 1.08 x raw aiohttp at concurrency {}"
    assert found[rate.format(16)].met is True
    assert "0.010 above the target" in found[rate.format(16)].measured
    assert found[rate.format(64)].met is True
    assert found[rate.format(256)].met is False
    measured = found[rate.format(256)].measured
    assert measured == "0.930 (9,300 vs 10,000 req/s): 0.020 short (needs 9,500 req/s)"
    assert found[cpu.format(64)].met is True
    assert found[cpu.format(256)].met is False
    assert "0.020 over (needs <= 108.0 us)" in found[cpu.format(256)].measured
    assert found[cpu.format(1024)].measured.startswith("1.200 (120.0 vs 100.0 us): 0.120 over")
    assert not any(name.endswith("concurrency 1") for name in found)  # measured, not a target
    (falls,) = [target for target in found.values() if "does not fall" in target.name]
    assert falls.met is False
    assert falls.measured == (
        "0.920 at 1024 vs 0.960 at 16: fell by 0.040, 0.010 more than the 0.03 allowed"
    )


def test_a_peer_target_names_the_levels_the_peer_was_not_run_at() -> None:
    results = _results({16: (1.0, 1.0), 1024: (1.0, 1.0)})
    results.config["levels"] = [16, 1024]
    results.overhead["aiosalesforce"] = {"16": _runs(1_000, 1_000), "1024": []}
    (peer,) = [
        t
        for t in _report.targets(results)
        if t.name.endswith("aiosalesforce at every concurrency")
    ]
    assert peer.met is True
    assert peer.measured == "sfauth/peer 16: 10.0x; not run at 1024"


def test_the_ratio_may_fall_by_the_allowed_amount() -> None:
    results = _results({16: (0.98, 1.0), 1024: (0.96, 1.0)})
    (falls,) = [t for t in _report.targets(results) if "does not fall" in t.name]
    assert falls.met is True
    assert falls.measured == "0.960 at 1024 vs 0.980 at 16: fell by 0.020 (at most 0.03 allowed)"


def test_the_gc_timer_counts_only_collections_it_saw_begin() -> None:
    with _probes.GcTimer() as timer:
        timer._on_collection("stop", {})  # the end of a collection begun before the block
        assert timer.seconds == 0.0
        timer._on_collection("start", {})
        timer._on_collection("stop", {})
        counted = timer.seconds
        assert counted > 0.0
        gc.callbacks.remove(timer._on_collection)  # the block may clear gc.callbacks
    assert timer._on_collection not in gc.callbacks
    assert timer.seconds == counted


def _burst(p99: float, wall: float, cpu: float, gc: float) -> dict[str, Any]:
    return {
        "n": 1000,
        "ok": 1000,
        "errors": {},
        "p50": p99 / 2,
        "p99": p99,
        "wall": wall,
        "cpu": cpu,
        "gc": gc,
    }


def test_the_herd_all_in_flight_says_what_stands_in_the_way_of_its_ratio() -> None:
    results = _results({})
    counts = {"token_requests": 1, "client_token_requests": 1, "served_401": 1000}
    results.herd = {
        "n": 1000,
        "limit": 1000,
        "token_round_trip": 0.003,
        "rounds": [
            {"baseline": _burst(0.9, 1.0, 1.2, 0.6), "expired": _burst(2.0, 2.1, 2.5, 1.5)}
            | counts
        ]
        * 3,
    }
    (ratio,) = [
        t for t in _report.targets(results) if t.name.startswith("herd all in flight: p99")
    ]
    assert ratio.met is False
    assert ratio.measured == (
        "2.22 (2,000 vs 900 ms, medians of 3 rounds; per round 2.22, 2.22, 2.22): 0.122 over; "
        "p99 with / wall time without 2.00 (every request sent twice: 2.0 is twice the work), "
        "the p99 without being 0.90 of its wall time"
    )
    text = "\n".join(_report._herd_section(results))
    assert (
        "Measured: p99 with / wall time without = 2.00 (2.0 would be exactly twice the work). "
        "In the burst *without*, requests finish all along: its p99 is 0.90 of its wall time. "
        "So even at exactly twice the work, the target's ratio would be about 2 / 0.90 = 2.22."
    ) in text
    assert (
        "Client CPU per burst (medians; `gc.callbacks` around each collection): without 1.20 s, "
        "of which the garbage collector 0.60 s (50%); with 2.50 s, of which the garbage "
        "collector 1.50 s (60%). Every collection traverses every request still alive (all "
        "1,000 of a burst are started at once), and a request that waits for the refresh stays "
        "alive, and is traversed, about twice as long."
    ) in text


def test_a_herd_too_short_for_cpu_figures_leaves_them_out() -> None:
    results = _results({})
    counts = {"token_requests": 1, "client_token_requests": 1, "served_401": 1000}
    results.herd = {
        "n": 1000,
        "limit": 1000,
        "token_round_trip": 0.003,
        "rounds": [  # getrusage counts in ticks: a short burst can measure 0 s
            {"baseline": _burst(0.9, 1.0, 0.0, 0.0), "expired": _burst(2.0, 2.1, 0.0, 0.0)}
            | counts
        ],
    }
    text = "\n".join(_report._herd_section(results))
    assert "p99 with / wall time without = 2.00 (2.0 would" in text
    assert "Client CPU per burst" not in text


def test_the_soak_summary_is_embedded_with_its_headings_one_level_down(tmp_path: Path) -> None:
    path = tmp_path / "SOAK.md"
    path.write_text("## Soak: 1,000,000 requests\n\nResult: **PASS**.\n\n| a | b |\n|---|---|\n")
    text = "\n".join(_report._soak_section(path))
    assert text.startswith("## 6. Million-request soak")
    assert "### Soak: 1,000,000 requests" in text
    assert "Result: **PASS**." in text


def test_no_soak_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "\n".join(_report._soak_section(tmp_path / "SOAK.md"))
    assert "make soak N=1000000" in text
    assert "###" not in text
    soak = importlib.import_module("benchmarks.soak")
    monkeypatch.delattr(soak, "soak_section")
    assert _report.soak_summary(tmp_path / "SOAK.md") == (None, _report.NO_SOAK)


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


@pytest.mark.parametrize(
    ("file_name", "function"),
    sorted(
        (set(_probes.MARKERS.values()) | set(_probes.REPLAY_COUNTS.values())) - _probes.NOT_SFAUTH
    ),
)
def test_the_profile_names_functions_that_exist(file_name: str, function: str) -> None:
    assert function in _functions(SFAUTH / file_name), f"sfauth/{file_name} has no {function}"


def test_the_data_plane_benchmark_runs_every_case_and_renders() -> None:
    from benchmarks import bulk

    result = bulk.run(rounds=1, scale=0.001, quiet=True)  # 1,000 records a case
    rows = bulk.table(result)
    assert [(r["case"], r["client"]) for r in rows] == [
        (case, client) for case, _, clients in bulk.CASES for client in clients
    ]
    assert all(r["records"] == 1000 and r["rate"] > 0 for r in rows)
    text = bulk.render(result, command="python -m benchmarks.bulk --scale 0.001")
    assert text.startswith("## Data plane: Bulk API 2.0 and sObject Collections\n")
    assert "| ingest | 1,000 | aiosalesforce |" in text
    assert "| sfauth ahead of simple-salesforce on records/s: query of 1,000 |" in text


def test_the_median_interval_comes_from_order_statistics() -> None:
    # P(Binomial(11, 1/2) <= 1) = 12/2048 <= 2.5 % < P(<= 2) = 67/2048: the 2nd and 10th values.
    assert _report.median_interval([float(v) for v in range(11, 0, -1)]) == (2.0, 10.0)
    assert _report.median_interval([6.0, 1.0, 5.0, 2.0, 4.0, 3.0]) == (1.0, 6.0)  # 1/64 <= 2.5 %
    assert _report.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # 1/32 > 2.5 %


def _swinging(rates: list[float], factor: float) -> dict[str, list[dict[str, Any]]]:
    """Rounds whose speed swings for both clients alike; sfauth ``factor`` x raw each round."""
    return {
        "aiohttp": [{"n": 1000, "wall": 1000 / r, "cpu": 0.1, "foreign_load": 0.0} for r in rates],
        "sfauth": [
            {"n": 1000, "wall": 1000 / (r * factor), "cpu": 0.1 / factor, "foreign_load": 0.0}
            for r in rates
        ],
    }


SWINGS = [10_000.0, 5_000.0, 12_000.0, 6_000.0, 9_000.0, 14_000.0, 7_000.0, 11_000.0]


def test_a_ratio_is_taken_round_by_round() -> None:
    results = _results({16: (1.0, 1.0)})
    rounds = _swinging(SWINGS, 0.96)
    rounds["sfauth"] = rounds["sfauth"][1:] + rounds["sfauth"][:1]  # rounds out of step
    results.overhead = {name: {"16": runs} for name, runs in rounds.items()}
    # Out of step, the medians over all rounds agree, but no single round's ratio is 0.96.
    assert _report.paired(results, "sfauth", 16) != [0.96] * len(SWINGS)
    results.overhead = {name: {"16": runs} for name, runs in _swinging(SWINGS, 0.96).items()}
    assert [round(r, 12) for r in _report.paired(results, "sfauth", 16)] == [0.96] * len(SWINGS)
    found = {target.name: target for target in _report.targets(results)}
    rate = found["requests/s: sfauth >= 0.95 x raw aiohttp at concurrency 16"]
    assert rate.met is True
    assert rate.measured == (
        "0.960 (9,120 vs 9,500 req/s): 0.010 above the target; 95% interval of the median "
        "0.960-0.960 (8 rounds): the whole interval meets it"
    )
    cpu = found["CPU per request: sfauth <= 1.08 x raw aiohttp at concurrency 16"]
    assert cpu.measured == (
        "1.042 (104.2 vs 100.0 us): 0.038 under the limit; 95% interval of the median "
        "1.042-1.042 (8 rounds): the whole interval meets it"
    )


def test_an_interval_across_the_target_says_the_run_cannot_tell() -> None:
    results = _results({16: (1.0, 1.0)})
    rounds = _swinging(SWINGS, 1.0)
    factors = [0.90, 0.99, 0.93, 0.97, 0.95, 0.96, 0.92, 1.00]
    rounds["sfauth"] = [
        {**run, "wall": run["wall"] / f} for run, f in zip(rounds["sfauth"], factors, strict=True)
    ]
    results.overhead = {name: {"16": runs} for name, runs in rounds.items()}
    found = {target.name: target for target in _report.targets(results)}
    rate = found["requests/s: sfauth >= 0.95 x raw aiohttp at concurrency 16"]
    assert rate.met is True  # median 0.955
    assert rate.measured.endswith(
        "; 95% interval of the median 0.900-1.000 (8 rounds): the interval spans the target: "
        "this run cannot tell"
    )


def test_the_instructions_report_renders_counts_and_the_bytecode_difference() -> None:
    from benchmarks import instructions

    counts = [
        instructions.Count("aiohttp", 2_000_000, 3_200_000, 3000, 64),
        instructions.Count("sfauth", 2_100_000, 3_420_000, 3000, 64),
    ]
    ops = {
        "aiohttp": {"aiohttp/client.py:1 get": 17.0, "x.py:2 same": 5.0},
        "sfauth": {"sfauth/_middleware.py:3 send": 150.0, "x.py:2 same": 5.2},
    }
    text = instructions.report(counts, ops, 64, "python -m benchmarks.instructions", "git abc")
    assert text.startswith("## Instructions per request (callgrind)\n")
    assert "sfauth source: git abc." in text
    assert "| 64 | aiohttp | 2,000,000 | 3,200,000 | 400 | 1.000 |" in text
    assert "| 64 | sfauth | 2,100,000 | 3,420,000 | 440 | 1.100 |" in text
    bytecodes = "Python bytecodes per request at concurrency 64: aiohttp 22, sfauth 155 (7.055x;"
    assert bytecodes in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows == [
        "| `sfauth/_middleware.py:3 send` | 0.0 | 150.0 | +150.0 |",
        "| `aiohttp/client.py:1 get` | 17.0 | 0.0 | -17.0 |",
    ]  # a difference under half a bytecode is left out


def test_the_instructions_report_takes_each_ratio_at_its_own_concurrency() -> None:
    from benchmarks import instructions

    counts = [
        instructions.Count("sfauth", 2_100_000, 3_420_000, 3000, 16),
        instructions.Count("aiohttp", 2_000_000, 3_200_000, 3000, 16),
        instructions.Count("aiohttp", 2_000_000, 5_000_000, 6000, 1024),
        instructions.Count("sfauth", 2_100_000, 5_400_000, 6000, 1024),
    ]
    text = instructions.report(counts, {}, 64, "python -m benchmarks.instructions", "git abc")
    rows = [line for line in text.splitlines() if line.startswith("| 1")]
    assert rows == [
        "| 16 | aiohttp | 2,000,000 | 3,200,000 | 400 | 1.000 |",
        "| 16 | sfauth | 2,100,000 | 3,420,000 | 440 | 1.100 |",
        "| 1,024 | aiohttp | 2,000,000 | 5,000,000 | 500 | 1.000 |",
        "| 1,024 | sfauth | 2,100,000 | 5,400,000 | 550 | 1.100 |",
    ]
    assert "with 16, 1,024 requests in flight" in text
    assert "once with 3,000, 6,000 more requests (by concurrency)" in text


@pytest.mark.parametrize("given", ["0", "16,0", "a", "16,,64", ""])
def test_the_instructions_tool_refuses_a_concurrency_that_is_not_positive_whole_numbers(
    given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import instructions

    with pytest.raises(SystemExit):
        instructions.parser().parse_args(["--concurrency", given])
    assert "--concurrency" in capsys.readouterr().err
    assert instructions.parser().parse_args(["--concurrency", "16,64"]).concurrency == (16, 64)
    assert instructions.parser().parse_args([]).concurrency == (16, 64, 256, 1024)


def test_the_bytecodes_of_sfauths_requests_are_counted_by_function() -> None:
    from benchmarks import instructions

    with bench.served(0) as (target, _):
        ops = instructions.opcodes(target, "sfauth", 4, 20)
    send = [v for k, v in ops.items() if k.endswith(" SalesforceAuthMiddleware.send")]
    assert len(send) == 1
    assert send[0] > 50  # every request went through the direct send
    assert any(k.startswith("aiohttp/client.py:") for k in ops)
