"""A reduced soak in CI: faults, expiries, revocations and an instance move lose no request."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import (
    NO_RUN,
    Action,
    command_line,
    main,
    parser,
    plan_actions,
    plot_timeline,
    soak,
    soak_section,
    write_summary,
)


async def test_reduced_soak_loses_nothing(tmp_path: Path) -> None:
    result = await soak(
        requests=4_000,
        in_flight=100,
        fault_rate=0.15,
        expiries=3,
        revocations=2,
        instance_moves=1,
        seed=11,
    )
    print(result.report())
    assert result.failed == {}
    assert result.ok == 4_000
    assert result.fault_share >= 0.10
    assert result.retries > 0
    assert result.replays > 0
    # Every action happened, in the planned order, no earlier than planned.
    assert [kind for kind, _, _ in result.done] == [
        "expire",
        "revoke",
        "move",
        "revoke",
        "expire",
    ]
    planned = [action.at for action in result.planned]
    assert all(at >= plan for (_, at, _), plan in zip(result.done, planned, strict=True))
    assert (result.expiries, result.revocations, result.moves) == (3, 2, 1)
    # One login, then exactly one per expiry (the move's included) and per revocation; the
    # token requests retried after injected token-endpoint faults are counted apart.
    assert result.logins == 6
    assert result.token_requests == 6 + sum(result.token_faults.values())
    assert result.token_fault_retries == sum(result.token_faults.values())
    assert result.max_relogins == 6
    # The requests went to the first instance, then, from the move on, to the second one.
    first, second = result.ok_by_instance
    assert result.done[2][2] == second
    assert result.ok_by_instance[first] > 0
    assert result.ok_by_instance[second] > 0
    assert result.ok_by_instance[first] + result.ok_by_instance[second] == 4_000
    assert result.strays == 0
    # RSS sampled at every tenth of the run; too short a run to gate its growth.
    assert [done for done, _ in result.rss] == list(range(400, 4_001, 400))
    assert [done for done, _ in result.heap_blocks] == list(range(400, 4_001, 400))
    assert all(blocks > 0 for _, blocks in result.heap_blocks)
    assert [met for _, _, met in result.criteria()] == [True, True, True, True, True, None]
    assert result.passed
    # sfauth's OpenTelemetry counters, read at the start and at every fiftieth of the run,
    # agree with the emulator's and the logs' counts.
    assert [done for done, _, _ in result.timeline] == [0, *range(80, 4_001, 80)]
    first_counts, last_counts = result.timeline[0][2], result.timeline[-1][2]
    assert first_counts == {"token requests": 1}
    assert last_counts["token requests"] == result.token_requests
    assert last_counts["401 replays"] == result.replays
    assert last_counts["api retries"] + last_counts.get("token retries", 0) == result.retries
    plot = tmp_path / "soak_telemetry.png"
    assert plot_timeline(result, plot)
    assert plot.read_bytes().startswith(b"\x89PNG\r\n")

    path = tmp_path / "SOAK.md"
    command = "python -m benchmarks.soak --requests=4000"
    text = write_summary(result, path, command)
    assert text.startswith(f"## Soak: 4,000 requests\n\n`{command}` on ")
    assert "Result: **PASS**." in text
    assert "| logins = 1 + expiries + revocations | 6 = 1 + 3 + 2 (and " in text
    assert "| no request failed | 4,000 ok, 0 failed of 4,000 | PASS |" in text
    assert "| requests follow the instance moves | 0 requests went" in text
    assert "(not gated below 100,000 requests) | n/a |" in text
    assert "sfauth source: " in text
    assert soak_section(path) == text.strip()


def test_soak_section_without_a_run(tmp_path: Path) -> None:
    assert soak_section(tmp_path / "SOAK.md") == NO_RUN == "no soak run recorded"
    (tmp_path / "empty.md").write_text("\n")
    assert soak_section(tmp_path / "empty.md") == NO_RUN


def test_the_actions_are_spread_evenly_and_a_move_replaces_an_expiry() -> None:
    assert plan_actions(1_000_000, 10, 3, 1) == [
        Action(71_428, "expire"),
        Action(142_857, "expire"),
        Action(214_285, "expire"),
        Action(285_714, "revoke"),
        Action(357_142, "expire"),
        Action(428_571, "expire"),
        Action(500_000, "revoke"),
        Action(571_428, "move", 1),
        Action(642_857, "expire"),
        Action(714_285, "revoke"),
        Action(785_714, "expire"),
        Action(857_142, "expire"),
        Action(928_571, "expire"),
    ]
    assert plan_actions(600, 0, 2, 0) == [Action(200, "revoke"), Action(400, "revoke")]
    assert plan_actions(100, 0, 0, 0) == []
    with pytest.raises(ValueError, match="must not exceed --expiries"):
        plan_actions(100, 1, 0, 2)


def test_the_command_line_spells_out_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["--requests", "1000000", "--write", "benchmarks/SOAK.md"])
    assert command_line(args) == (
        "python -m benchmarks.soak --requests=1000000 --in-flight=1000 --fault-rate=0.12 "
        "--expiries=10 --revocations=3 --instance-moves=1 --seed=7 "
        "--write=benchmarks/SOAK.md"
    )
    assert parser().parse_args([]).requests == 100_000
    with pytest.raises(SystemExit) as info:
        main(["--expiries", "1", "--instance-moves", "2"])
    assert info.value.code == 2
    assert "must not exceed --expiries" in capsys.readouterr().err
