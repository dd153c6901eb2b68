"""Tables, targets, RESULTS.md and the throughput plot from a benchmark run's measurements."""

from __future__ import annotations

import datetime
import importlib.util
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._clients import CONFIGURATION, SOQL
from benchmarks._provenance import machine as _provenance_machine
from benchmarks._provenance import revision

PLOT_NAME = "throughput.png"
#: Targets: sfauth's requests/s >= RATE_TARGET x raw aiohttp's and its CPU per request
#: <= CPU_TARGET x raw aiohttp's at each of TARGET_LEVELS; the requests/s ratio at the highest
#: level at most RATIO_DROP below the ratio at the lowest. Level 1 is measured, not a target.
TARGET_LEVELS = (16, 64, 256, 1024)
RATE_TARGET = 0.95
CPU_TARGET = 1.08
RATIO_DROP = 0.03
#: The herd behind a pool: p99 with the expiry <= p99 without + this many token round trips.
POOL_HERD_ROUND_TRIPS = 2
#: The herd all in flight: p99 with the expiry / p99 without <= this.
FLIGHT_P99_RATIO = 2.1
ASSERTION_TARGET = 1.5
MEMORY_TARGET = 0.05
TIME_BUDGET = 600.0
#: The committed summary of the million-request soak (``make soak N=1000000``).
SOAK_SUMMARY = Path(__file__).resolve().parent / "SOAK.md"
NO_SOAK = "no soak summary recorded yet"
#: What the fleet features add per request (``python -m benchmarks.leases``, run by make bench
#: before this report is written).
LEASES_SUMMARY = Path(__file__).resolve().parent / "LEASES.md"
#: The data-plane benchmark's report (``python -m benchmarks.bulk --write``, run by make bench).
BULK_SUMMARY = Path(__file__).resolve().parent / "BULK.md"
#: ``make bench-instructions`` writes it (valgrind; not rerun by ``make bench``).
INSTRUCTIONS_SUMMARY = Path(__file__).resolve().parent / "INSTRUCTIONS.md"

_VERSIONS = (
    "sfauth",
    "aiohttp",
    "multidict",
    "yarl",
    "httpx",
    "httpcore",
    "aiosalesforce",
    "simple-salesforce",
    "requests",
    "urllib3",
    "PyJWT",
    "cryptography",
    "matplotlib",
    "opentelemetry-api",
)


@dataclass(frozen=True)
class Target:
    """One of the issue's targets and whether this run met it."""

    name: str
    measured: str
    met: bool | None  # None: not measured in this run


# ---------------------------------------------------------------------------------- numbers


def throughputs(runs: list[dict[str, Any]]) -> list[float]:
    return [run["n"] / run["wall"] for run in runs]


def cpu_per_request(runs: list[dict[str, Any]]) -> list[float]:
    return [run["cpu"] / run["n"] * 1e6 for run in runs]


def _rate(run: dict[str, Any]) -> float:
    return float(run["n"] / run["wall"])


def _cpu(run: dict[str, Any]) -> float:
    return float(run["cpu"] / run["n"])


def paired(
    results: Any, client: str, level: int, measure: Any = _rate, base: str = "aiohttp"
) -> list[float]:
    """``client``'s figure over ``base``'s in each interleaved round at ``level``.

    Each client's kept rounds are stored in the order they ran, one per interleaved round, so
    the i-th rounds of two clients ran one after the other: their ratio leaves out what
    changed between rounds (other tenants' load on a shared VM, the CPU's clock), which moves
    single rounds by far more than the differences the targets test.
    """
    mine = results.overhead.get(client, {}).get(str(level)) or []
    theirs = results.overhead.get(base, {}).get(str(level)) or []
    return [measure(a) / measure(b) for a, b in zip(mine, theirs, strict=False)]


def median_interval(values: list[float], coverage: float = 0.95) -> tuple[float, float] | None:
    """An interval that holds the median of what ``values`` sample with ``coverage`` or more.

    Distribution-free (order statistics): the j-th smallest and j-th largest values, j the
    largest with P(Binomial(n, 1/2) <= j - 1) <= (1 - coverage) / 2. ``None`` for fewer than
    6 values at 95 % (no such j).
    """
    n = len(values)
    tail, excluded = 0.0, 0
    while excluded < n:
        tail += math.comb(n, excluded) / 2**n
        if tail > (1 - coverage) / 2:
            break
        excluded += 1
    if excluded == 0:
        return None
    ordered = sorted(values)
    return ordered[excluded - 1], ordered[n - excluded]


def _paired_median(results: Any, client: str, level: int, measure: Any = _rate) -> float | None:
    ratios = paired(results, client, level, measure)
    return statistics.median(ratios) if ratios else None


def overhead_table(results: Any) -> list[dict[str, Any]]:
    """One row per (concurrency, client): medians, ranges and ratios to raw aiohttp.

    A ratio is the median over the interleaved rounds of the client's figure over raw
    aiohttp's in the same round (``paired``).
    """
    rows = []
    overhead = results.overhead
    for level in results.config["levels"]:
        key = str(level)
        for client in results.config["clients"]:
            runs = overhead.get(client, {}).get(key)
            if not runs:
                continue
            rates = throughputs(runs)
            cpus = cpu_per_request(runs)
            rate = statistics.median(rates)
            cpu = statistics.median(cpus)
            busy = [run["server_busy"] for run in runs if "server_busy" in run]
            rows.append(
                {
                    "concurrency": level,
                    "client": client,
                    "server_busy": statistics.median(busy) if busy else None,
                    "client_busy": statistics.median(run["cpu"] / run["wall"] for run in runs),
                    "rate": rate,
                    "rate_min": min(rates),
                    "rate_max": max(rates),
                    "ratio": _paired_median(results, client, level),
                    "cpu_us": cpu,
                    "cpu_ratio": _paired_median(results, client, level, _cpu),
                    "ok": sum(run["ok"] for run in runs),
                    "n": sum(run["n"] for run in runs),
                }
            )
    return rows


def _median_rate(results: Any, client: str, level: int) -> float | None:
    runs = results.overhead.get(client, {}).get(str(level))
    return statistics.median(throughputs(runs)) if runs else None


def _median_cpu(results: Any, client: str, level: int) -> float | None:
    runs = results.overhead.get(client, {}).get(str(level))
    return statistics.median(cpu_per_request(runs)) if runs else None


def _interval_note(ratios: list[float], target: float, higher_is_better: bool) -> str:
    """The 95 % interval of the median ratio, and whether it settles the target."""
    interval = median_interval(ratios)
    if interval is None:
        return ""
    low, high = interval
    met = (low >= target) if higher_is_better else (high <= target)
    missed = (high < target) if higher_is_better else (low > target)
    settled = (
        "the whole interval meets it"
        if met
        else "the whole interval misses it"
        if missed
        else "the interval spans the target: this run cannot tell"
    )
    return f"; 95% interval of the median {low:.3f}-{high:.3f} ({len(ratios)} rounds): {settled}"


def _herd_rounds(herd: dict[str, Any]) -> dict[str, Any] | None:
    """Per-round figures and medians of one herd probe's rounds."""
    if not herd or not herd.get("rounds"):
        return None
    rounds = herd["rounds"]
    summary: dict[str, Any] = {
        "n": herd["n"],
        "limit": herd.get("limit", herd["n"]),
        "rounds": len(rounds),
        "round_trip": herd["token_round_trip"],
        "foreign_load": herd.get("foreign_load"),
    }
    for count in ("token_requests", "client_token_requests", "served_401", "served_200"):
        summary[count] = [r.get(count) for r in rounds]
    for prefix, phase in (("base", "baseline"), ("exp", "expired")):
        for stat in ("p50", "p99", "wall", "cpu", "gc"):
            values = [r[phase][stat] for r in rounds]
            summary[f"{prefix}_{stat}s"] = values
            summary[f"{prefix}_{stat}"] = statistics.median(values)
    return summary


def pool_herd_summary(results: Any) -> dict[str, Any] | None:
    """The herd behind a pool: medians, per-round figures and the p99 bound."""
    summary = _herd_rounds(results.pool_herd)
    if summary is None:
        return None
    herd = results.pool_herd
    summary["expire_after"] = herd["expire_after"]
    summary["expiries"] = [r["expired"].get("expiry", {}) for r in herd["rounds"]]
    summary["p99_bound"] = summary["base_p99"] + POOL_HERD_ROUND_TRIPS * summary["round_trip"]
    # What the replays alone cost at the baseline's pace: 401s / (requests per second).
    summary["replay_cost"] = statistics.median(summary["served_401"]) * (
        summary["base_wall"] / summary["n"]
    )
    return summary


def herd_summary(results: Any) -> dict[str, Any] | None:
    """The herd all in flight: medians, per-round figures and the p99 ratio."""
    summary = _herd_rounds(results.herd)
    if summary is None:
        return None
    summary["p99_ratios"] = [
        exp / base for exp, base in zip(summary["exp_p99s"], summary["base_p99s"], strict=True)
    ]
    summary["p99_ratio"] = summary["exp_p99"] / summary["base_p99"]
    # Twice the work: every request sent twice, so its p99 near twice the burst without's wall.
    summary["work_ratio"] = summary["exp_p99"] / summary["base_wall"]
    summary["base_shape"] = summary["base_p99"] / summary["base_wall"]
    return summary


def memory_summary(results: Any) -> dict[str, Any] | None:
    memory = results.memory
    if not memory or not memory.get("rows"):
        return None
    rows = memory["rows"]
    first, last = rows[0], rows[-1]
    return {
        "rows": rows,
        "first": first,
        "last": last,
        "growth": (last["rss"] - first["rss"]) / first["rss"],
        "concurrency": memory["concurrency"],
        "token_requests": memory["token_requests"],
        "seconds": memory["seconds"],
    }


def _at_least(value: float, target: float, unit: str = "") -> str:
    """How far ``value`` is from a ``>= target`` target."""
    gap = value - target
    return f"{gap:.3f}{unit} above the target" if gap >= 0 else f"{-gap:.3f}{unit} short"


def _at_most(value: float, limit: float, unit: str = "") -> str:
    """How far ``value`` is from a ``<= limit`` target."""
    gap = limit - value
    return f"{gap:.3f}{unit} under the limit" if gap >= 0 else f"{-gap:.3f}{unit} over"


def _disturbed(results: Any, level: int) -> str:
    """A note when other processes loaded the machine in the rounds a ratio comes from."""
    limit = results.config["foreign_limit"]
    runs = [
        run
        for client in ("aiohttp", "sfauth")
        for run in results.overhead.get(client, {}).get(str(level), [])
    ]
    disturbed = sum(1 for run in runs if (run.get("foreign_load") or 0.0) > limit)
    if not disturbed:
        return ""
    return (
        f"; unreliable: other processes loaded the machine in {disturbed} of {len(runs)} of "
        "these rounds"
    )


def _probe_disturbed(results: Any, data: dict[str, Any]) -> str:
    load = data.get("foreign_load")
    if load is None or load <= results.config["foreign_limit"]:
        return ""
    return f"; unreliable: other processes used {load:.2f} cores during this probe"


def _overhead_targets(results: Any) -> list[Target]:
    """Requests/s and CPU per request against raw aiohttp, and the ratio across levels."""
    found: list[Target] = []
    for level in TARGET_LEVELS:
        sf, raw = _median_rate(results, "sfauth", level), _median_rate(results, "aiohttp", level)
        ratios = paired(results, "sfauth", level)
        name = f"requests/s: sfauth >= {RATE_TARGET:.2f} x raw aiohttp at concurrency {level}"
        if sf is None or not raw or not ratios:
            found.append(Target(name, "not measured in this run", None))
            continue
        ratio = statistics.median(ratios)
        measured = f"{ratio:.3f} ({sf:,.0f} vs {raw:,.0f} req/s): {_at_least(ratio, RATE_TARGET)}"
        if ratio < RATE_TARGET:
            measured += f" (needs {RATE_TARGET * raw:,.0f} req/s)"
        measured += _interval_note(ratios, RATE_TARGET, higher_is_better=True)
        found.append(Target(name, measured + _disturbed(results, level), ratio >= RATE_TARGET))
    for level in TARGET_LEVELS:
        sf, raw = _median_cpu(results, "sfauth", level), _median_cpu(results, "aiohttp", level)
        ratios = paired(results, "sfauth", level, _cpu)
        name = f"CPU per request: sfauth <= {CPU_TARGET:.2f} x raw aiohttp at concurrency {level}"
        if sf is None or not raw or not ratios:
            found.append(Target(name, "not measured in this run", None))
            continue
        ratio = statistics.median(ratios)
        measured = f"{ratio:.3f} ({sf:,.1f} vs {raw:,.1f} us): {_at_most(ratio, CPU_TARGET)}"
        if ratio > CPU_TARGET:
            measured += f" (needs <= {CPU_TARGET * raw:,.1f} us)"
        measured += _interval_note(ratios, CPU_TARGET, higher_is_better=False)
        found.append(Target(name, measured + _disturbed(results, level), ratio <= CPU_TARGET))
    low, high = TARGET_LEVELS[0], TARGET_LEVELS[-1]
    name = (
        f"the requests/s ratio does not fall as concurrency grows: ratio at {high} >= ratio "
        f"at {low} - {RATIO_DROP:.2f}"
    )
    ratios_low, ratios_high = paired(results, "sfauth", low), paired(results, "sfauth", high)
    if not ratios_low or not ratios_high:
        found.append(Target(name, "not measured in this run", None))
    else:
        at_low, at_high = statistics.median(ratios_low), statistics.median(ratios_high)
        change = at_high - at_low
        moved = f"fell by {-change:.3f}" if change < 0 else f"rose by {change:.3f}"
        measured = f"{at_high:.3f} at {high} vs {at_low:.3f} at {low}: {moved}"
        if -change > RATIO_DROP:
            measured += f", {-change - RATIO_DROP:.3f} more than the {RATIO_DROP:.2f} allowed"
        else:
            measured += f" (at most {RATIO_DROP:.2f} allowed)"
        spans = [median_interval(ratios_high), median_interval(ratios_low)]
        if spans[0] is not None and spans[1] is not None:
            (high_lo, high_hi), (low_lo, low_hi) = spans
            measured += (
                f"; 95% intervals of the medians {high_lo:.3f}-{high_hi:.3f} at {high}, "
                f"{low_lo:.3f}-{low_hi:.3f} at {low}"
            )
        found.append(Target(name, measured, change >= -RATIO_DROP))
    return found


def _herd_targets(results: Any) -> list[Target]:
    found: list[Target] = []
    pool = pool_herd_summary(results)
    if pool is None:
        found.append(
            Target("herd behind a pool: exactly 1 token request", "not measured in this run", None)
        )
    else:
        note = _probe_disturbed(results, results.pool_herd)
        limit = pool["limit"]
        counts = pool["token_requests"]
        found.append(
            Target(
                f"herd behind a pool ({pool['n']:,} requests, `AuthSession(limit={limit})`, "
                f"every session expired after {pool['expire_after']:,} completed): exactly 1 "
                "token request per round",
                f"{_join(counts)} (per round, server count)",
                all(count == 1 for count in counts),
            )
        )
        served = pool["served_401"]
        worst = max(served)
        found.append(
            Target(
                f"herd behind a pool: at most {limit} (`limit`) 401s served per round",
                f"{_join(served)} (per round, server count): max {worst:,}, "
                + (
                    f"{limit - worst:,} under the limit"
                    if worst <= limit
                    else f"{worst - limit:,} over"
                ),
                worst <= limit,
            )
        )
        bound = pool["p99_bound"]
        gap = pool["exp_p99"] - bound
        found.append(
            Target(
                f"herd behind a pool: p99 with the expiry <= p99 without + "
                f"{POOL_HERD_ROUND_TRIPS} token round trips",
                f"{pool['exp_p99'] * 1e3:,.0f} ms vs bound {bound * 1e3:,.0f} ms "
                f"({pool['base_p99'] * 1e3:,.0f} + {POOL_HERD_ROUND_TRIPS} x "
                f"{pool['round_trip'] * 1e3:.1f}): "
                + (f"{-gap * 1e3:,.0f} ms under" if gap <= 0 else f"{gap * 1e3:,.0f} ms over")
                + f" (medians of {_rounds(pool['rounds'])}"
                + (
                    f"; the p99 without ranged {_spread(pool['base_p99s'])}"
                    if pool["rounds"] > 1
                    else ""
                )
                + ")"
                + note,
                gap <= 0,
            )
        )
    herd = herd_summary(results)
    if herd is None:
        found.append(
            Target("herd all in flight: exactly 1 token request", "not measured in this run", None)
        )
    else:
        note = _probe_disturbed(results, results.herd)
        counts = herd["token_requests"]
        found.append(
            Target(
                f"herd all in flight ({herd['n']:,} concurrent, `AuthSession(limit="
                f"{herd['limit']:,})`, every session expired before the burst): exactly 1 "
                "token request per round",
                f"{_join(counts)} (per round, server count)",
                all(count == 1 for count in counts),
            )
        )
        ratio = herd["p99_ratio"]
        found.append(
            Target(
                f"herd all in flight: p99 with expiry / p99 without <= {FLIGHT_P99_RATIO}",
                f"{ratio:.2f} ({herd['exp_p99'] * 1e3:,.0f} vs {herd['base_p99'] * 1e3:,.0f} ms, "
                f"medians of {_rounds(herd['rounds'])}; per round "
                + ", ".join(f"{value:.2f}" for value in herd["p99_ratios"])
                + f"): {_at_most(ratio, FLIGHT_P99_RATIO)}; p99 with / wall time without "
                f"{herd['work_ratio']:.2f} (every request sent twice: 2.0 is twice the work), "
                f"the p99 without being {herd['base_shape']:.2f} of its wall time" + note,
                ratio <= FLIGHT_P99_RATIO,
            )
        )
    return found


def targets(results: Any) -> list[Target]:
    """The issue's targets, each with the measured figure and how far it is from the target."""
    found = _overhead_targets(results)
    for peer in ("aiosalesforce", "simple-salesforce"):
        name = f"sfauth ahead of {peer} at every concurrency"
        behind = []
        measured = []
        missing = []
        for level in results.config["levels"]:
            sf, other = _median_rate(results, "sfauth", level), _median_rate(results, peer, level)
            if sf is None or other is None:
                missing.append(level)
                continue
            measured.append(f"{level}: {sf / other:.1f}x")
            if sf <= other:
                behind.append(level)
        if not measured:
            found.append(Target(name, "not measured in this run", None))
        else:
            text = "sfauth/peer " + ", ".join(measured)
            if behind:
                text += f"; behind at {', '.join(map(str, behind))}"
            if missing:
                text += f"; not run at {', '.join(map(str, missing))}"
            found.append(Target(name, text, not behind))
    found.extend(_herd_targets(results))
    assertion = results.assertion
    if assertion:
        med = assertion["median"]
        ratio = med["sfauth"] / med["bare"]
        found.append(
            Target(
                f"assertion: sfauth <= {ASSERTION_TARGET} x the bare RSA-SHA256 signature",
                f"{ratio:.2f}x ({med['sfauth'] * 1e6:,.0f} vs {med['bare'] * 1e6:,.0f} us; "
                f"naive PEM each time {med['naive'] * 1e6:,.0f} us)",
                ratio <= ASSERTION_TARGET,
            )
        )
    memory = memory_summary(results)
    if memory is not None:
        found.append(
            Target(
                f"memory: RSS growth from {memory['first']['requests']:,} to "
                f"{memory['last']['requests']:,} requests < {MEMORY_TARGET:.0%}",
                f"{memory['growth']:+.2%} ({memory['first']['rss'] / 2**20:.1f} -> "
                f"{memory['last']['rss'] / 2**20:.1f} MiB)",
                memory["growth"] < MEMORY_TARGET,
            )
        )
    found.append(
        Target(
            "make bench under 10 minutes on 2 cores",
            f"{results.seconds:.0f} s (benchmark run, excluding the .venv install)",
            results.seconds < TIME_BUDGET if not results.config["quick"] else None,
        )
    )
    return found


def disturbed_rounds(results: Any) -> int:
    """Client rounds used in the tables although other processes loaded the machine."""
    limit = results.config["foreign_limit"]
    return sum(
        1
        for levels in results.overhead.values()
        for runs in levels.values()
        for run in runs
        if (run.get("foreign_load") or 0.0) > limit
    )


def _probes(results: Any) -> list[tuple[str, dict[str, Any]]]:
    """The sfauth-only probes, by the name the report gives them."""
    return [
        ("pool herd", getattr(results, "pool_herd", {})),
        ("herd all in flight", results.herd),
        ("memory", results.memory),
        ("assertion", results.assertion),
        ("profile", results.profile),
        ("GC", getattr(results, "gc", {})),
        ("layers", getattr(results, "layers", {})),
    ]


def _disturbance_warning(results: Any) -> str | None:
    used = disturbed_rounds(results)
    probes = [
        name
        for name, data in _probes(results)
        if data and (data.get("foreign_load") or 0.0) > results.config["foreign_limit"]
    ]
    if not used and not probes:
        return None
    parts = []
    if used:
        parts.append(f"{used} client rounds used in the tables")
    if probes:
        parts.append(f"the {', '.join(probes)} probe(s)")
    return (
        f"WARNING: other processes loaded this machine during {' and '.join(parts)} (more "
        f"than {results.config['foreign_limit']:.2f} cores, see 'Other load on the machine'); "
        "these figures are less reliable than a run on a quiet machine."
    )


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**MISSED**", None: "n/a"}[met]


# ---------------------------------------------------------------------------------- text


def summary(results: Any) -> str:
    """The console summary."""
    lines = [f"server: {results.server['name']}; pinning {results.pinning}", ""]
    lines.append(f"{'conc':>5} {'client':<18} {'req/s':>9} {'x aiohttp':>9} {'CPU us/req':>10}")
    for row in overhead_table(results):
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
        lines.append(
            f"{row['concurrency']:>5} {row['client']:<18} {row['rate']:>9,.0f} {ratio:>9} "
            f"{row['cpu_us']:>10,.0f}"
        )
    lines.append("")
    for title, herd in (
        ("herd behind a pool", pool_herd_summary(results)),
        ("herd all in flight", herd_summary(results)),
    ):
        if herd is None:
            continue
        lines.append(
            f"{title}: {herd['n']:,} requests, limit {herd['limit']:,}; token requests "
            f"{herd['token_requests']}; 401s served {herd['served_401']}; p50/p99 without "
            f"expiry {herd['base_p50'] * 1e3:,.0f}/{herd['base_p99'] * 1e3:,.0f} ms, with "
            f"{herd['exp_p50'] * 1e3:,.0f}/{herd['exp_p99'] * 1e3:,.0f} ms (medians; p99 per "
            f"round without {_ms(herd['base_p99s'])}, with {_ms(herd['exp_p99s'])}); token round "
            f"trip {herd['round_trip'] * 1e3:.1f} ms"
        )
    if results.assertion:
        med = results.assertion["median"]
        lines.append(
            f"assertion: sfauth {med['sfauth'] * 1e6:,.0f} us, naive PEM "
            f"{med['naive'] * 1e6:,.0f} us, bare signature {med['bare'] * 1e6:,.0f} us"
        )
    memory = memory_summary(results)
    if memory is not None:
        lines.append(
            "memory: "
            + ", ".join(f"{r['requests']:,}: {r['rss'] / 2**20:.1f} MiB" for r in memory["rows"])
        )
    lines += ["", "targets:"]
    for target in targets(results):
        lines.append(f"  [{_verdict(target.met).strip('*')}] {target.name}: {target.measured}")
    warning = _disturbance_warning(results)
    if warning:
        lines.append(warning)
    lines.append(f"total wall time: {results.seconds:.1f} s")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """What this machine is, and which revision of sfauth ran."""
    here = Path(__file__).resolve().parent
    # The run's own outputs (this report, the plot, and LEASES.md that make bench wrote just
    # before) do not make the source dirty.
    outputs = (
        here / "RESULTS.md",
        here / "throughput.png",
        LEASES_SUMMARY,
        BULK_SUMMARY,
        here / "bulk.png",
    )
    return {"revision": revision(*outputs), **_provenance_machine(_VERSIONS)}


def _join(values: list[int]) -> str:
    return ", ".join(f"{value:,}" for value in values)


def _spread(values: list[float]) -> str:
    return f"{min(values) * 1e3:,.0f}-{max(values) * 1e3:,.0f} ms"


def _ms(values: list[float]) -> str:
    return "/".join(f"{value * 1e3:,.0f}" for value in values)


def _rounds(count: int) -> str:
    return f"{count} round" + ("" if count == 1 else "s")


def _percent(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "n/a"


def _fmt_ratio(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def render(results: Any) -> str:
    """RESULTS.md."""
    cfg = results.config
    info = machine()
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    pin = results.pinning
    pinned = (
        f"the server process is pinned to CPU {pin['server_cpu']} and every client process to "
        f"CPU {pin['client_cpu']} (`os.sched_setaffinity`)"
        if pin["server_cpu"] is not None
        else "processes are not pinned (fewer than two CPUs available)"
    )
    out: list[str] = []
    add = out.append
    add("# sfauth benchmarks\n")
    add(
        f"Generated by `{results.command or 'python -m benchmarks.bench'}` (`make bench`) on "
        f"{today}; the whole run took **{results.seconds:.0f} s**. Every number below comes "
        "from that one run; rerun `make bench` to regenerate this file and "
        f"[`{PLOT_NAME}`]({PLOT_NAME}).\n"
    )
    warning = _disturbance_warning(results)
    if warning:
        add(f"> **{warning}**\n")
    add("## Machine\n")
    add(f"- CPU: {info['cpu']}")
    add(f"- Memory: {info['memory']}")
    add(f"- OS: {info['os']}")
    add(f"- Python: {info['python']}")
    add(f"- Packages: {info['versions']}")
    if importlib.util.find_spec("opentelemetry") is not None:
        add(
            "- OpenTelemetry: the API is installed and no SDK is configured, so sfauth's "
            "telemetry code is in place and records nothing (README, Observability)"
        )
    add(f"- sfauth source: {info['revision']}\n")
    add("## Setup\n")
    add(
        f"- **Server**: {results.server['name']}, in its own process on 127.0.0.1, the same "
        f"for every client. It answers `{results.server['routes']}` with precomputed "
        "bodies (a 3-record `Account` page plus `Sforce-Limit-Info: api-usage=N/5000000`, "
        "N counting up like Salesforce's; 401 `INVALID_SESSION_ID` for an unknown or expired "
        "session) and verifies each assertion's RS256 signature. It was chosen over "
        "`sfauth.testing.Emulator` because the emulator parses the SOQL and records state on "
        "every call, which would leave less CPU for the clients."
    )
    add(
        f"- **Two cores, shared**: {pinned}, so server and client each get one core; the "
        "harness process sleeps while a round runs. They still share caches and memory "
        "bandwidth. The tables show how busy each side was during the round (CPU time / wall "
        "time): a client near 100% with the server below it means the client set the pace, "
        "so requests/s compares the clients; if the server ever reached 100%, the fastest "
        "clients' differences would be compressed and the CPU-per-request column would be "
        "the fairer comparison."
    )
    add(
        f"- **Request**: every client sends `GET /services/data/v62.0/query?q={SOQL}` and "
        "JSON-decodes the answer (each in its own idiomatic way). A closed loop keeps C "
        "requests in flight (C coroutines, or C threads for simple-salesforce) until "
        f"{cfg['requests']:,} requests are done: one **round**. Each client's connection pool "
        "holds C connections."
    )
    fresh = [client for client in cfg["clients"] if client in cfg.get("fresh_per_round", ())]
    peers = [client for client in cfg["clients"] if client not in fresh]
    fresh_text = (
        f"{', '.join(fresh)} get a new process, set up and warmed up the same way, for "
        "every round: one process's memory layout can make it 10-15 % faster or slower than "
        "the next for its whole life, and the median over fresh processes keeps that out of "
        "their ratio; the other clients keep one process per level. "
        if fresh
        else ""
    )
    peer_rounds = cfg.get("peer_rounds", cfg["rounds"])
    target_levels = cfg.get("target_levels", cfg["levels"])
    others = [level for level in cfg["levels"] if level not in target_levels]
    peer_text = (
        f"The peers ({', '.join(peers)}) take part in the first {_rounds(peer_rounds)} "
        "only: they are an order of magnitude slower, compared for the record, and their "
        "rounds would take most of the run. "
        if peers and peer_rounds < cfg["rounds"]
        else ""
    )
    if others and peer_rounds < cfg["rounds"]:
        peer_text += (
            f"At concurrency {', '.join(map(str, others))} (no target) every client runs "
            f"{_rounds(peer_rounds)}. "
        )
    for client, level in cfg.get("not_run", ()):
        peer_text += (
            f"{client} is not run at concurrency {level}: its rounds there alone would take "
            "longer than the rest of the benchmark. "
        )
    add(
        f"- **Method**: per concurrency level, each client is set up and warmed up "
        f"(max({cfg['warmup_factor']} x C, {cfg['warmup_min']}) requests, which also opens "
        f"the pool's connections and logs in), then {_rounds(cfg['rounds'])} run interleaved "
        f"across clients ({', '.join(cfg['clients'])}, then again). "
        + peer_text
        + fresh_text
        + "Every client process imports aiohttp, PyJWT and sfauth before it measures "
        "anything, whichever client it runs: the modules a process has imported shift its "
        "speed (importing structlog alone made raw aiohttp about 15 % cheaper per request on "
        "this 2-core machine), so the processes compared differ only in the code each "
        "request runs. "
        + "Requests/s = requests / wall time of the round; CPU per request = the client "
        "process's user+sys CPU time (`getrusage(RUSAGE_SELF)`, all threads) over the round / "
        "requests. Tables show the median round (and the range). A ratio to raw aiohttp is "
        "the median, over the interleaved rounds, of the client's figure over raw aiohttp's in "
        "the same round: on a shared 2-core VM single rounds swing by 20-30 % for every client "
        "alike (other tenants, the CPU's clock), and rounds run back to back share most of "
        "that swing. The speed targets also give the 95 % interval of that median (order "
        "statistics: no distribution assumed), and say whether the interval settles the "
        "target or this run cannot tell. Every round's requests were checked "
        "on both sides: the client decoded 3 records and the server counted a 200 for each."
    )
    add("- **Clients**, each in its own process:")
    for client in cfg["clients"]:
        add(f"  - **{client}**: {CONFIGURATION[client]}")
    add(
        "- Peers are installed by the `bench` extra (`pip install -e '.[bench]'`), not by "
        "sfauth.\n"
    )

    add("## Targets\n")
    add("| target | measured | verdict |")
    add("|---|---|---|")
    for target in targets(results):
        add(f"| {target.name} | {target.measured} | {_verdict(target.met)} |")
    add("")

    add("## 1. Request overhead\n")
    add(f"![requests/s against concurrency]({PLOT_NAME})\n")
    add(
        "| concurrency | client | requests/s (median) | range over rounds | x aiohttp | "
        "CPU us/request | CPU x aiohttp | client busy | server busy |"
    )
    add("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in overhead_table(results):
        add(
            f"| {row['concurrency']} | {row['client']} | {row['rate']:,.0f} | "
            f"{row['rate_min']:,.0f}-{row['rate_max']:,.0f} | {_fmt_ratio(row['ratio'])} | "
            f"{row['cpu_us']:,.0f} | {_fmt_ratio(row['cpu_ratio'])} | "
            f"{_percent(row['client_busy'])} | {_percent(row['server_busy'])} |"
        )
    pools = []
    for level in cfg["levels"]:
        sizes = sorted(
            {
                run["pool_connections"]
                for run in results.overhead.get("aiosalesforce", {}).get(str(level), [])
                if "pool_connections" in run
            }
        )
        if sizes:
            pools.append(f"{level}: {'/'.join(map(str, sizes))}")
    if pools:
        add(
            "\naiosalesforce's httpx pool held these numbers of connections after its rounds "
            f"(concurrency: connections): {', '.join(pools)}. httpcore checks every pooled "
            "connection's socket when it assigns a request, so its cost per request grows "
            "with that number, which depends on how many connections the warm-up happened to "
            "open; this is why aiosalesforce's figures at one concurrency can differ by up to "
            "2x between runs."
        )
    out.extend(_floor_lines(results))
    out.extend(_gc_lines(results))
    out.extend(_layers_lines(results))
    add("")

    out.extend(_herd_section(results))

    assertion = results.assertion
    if assertion:
        med = assertion["median"]
        add("## 3. Assertion cost\n")
        add(
            f"RSA {assertion['key_bits']}-bit key; median of {cfg['assertion_rounds']} "
            "interleaved rounds, each about "
            f"{cfg['assertion_round_seconds'] * 1e3:.0f} ms of back-to-back calls.\n"
        )
        add("| what | us per assertion | x bare signature |")
        add("|---|---:|---:|")
        rows = (
            ("sfauth `AssertionSigner.mint()` (key parsed once)", med["sfauth"]),
            ('naive: `jwt.encode(claims, pem_bytes, algorithm="RS256")`', med["naive"]),
            (
                "bare `private_key.sign(data, PKCS1v15(), SHA256())` on the "
                f"{assertion['signing_input_bytes']}-byte signing input (the floor)",
                med["bare"],
            ),
        )
        for label, value in rows:
            add(f"| {label} | {value * 1e6:,.1f} | {value / med['bare']:.2f} |")
        add(
            "\nThe naive figure is dominated by parsing and validating the PEM key on every "
            "call (aiosalesforce re-reads and parses its key file on each login; "
            "simple-salesforce passes the PEM to PyJWT).\n"
        )

    memory = memory_summary(results)
    if memory is not None:
        add("## 4. Memory\n")
        add(
            f"Client RSS (`/proc/self/statm`, after `gc.collect()`) of a fresh process sending "
            f"{memory['last']['requests']:,} requests through one `AuthSession`, "
            f"{memory['concurrency']} in flight ({memory['token_requests']} token request, "
            f"{memory['seconds']:.0f} s).\n"
        )
        add("| requests so far | RSS | vs first |")
        add("|---:|---:|---:|")
        for row in memory["rows"]:
            growth = (row["rss"] - memory["first"]["rss"]) / memory["first"]["rss"]
            add(f"| {row['requests']:,} | {row['rss'] / 2**20:.2f} MiB | {growth:+.2%} |")
        add("")

    if results.profile:
        out.extend(_profile_section(results.profile))

    out.extend(_soak_section(SOAK_SUMMARY))
    out.extend(_embedded_section(LEASES_SUMMARY, "7. Fleet leases and the API budget guard"))
    out.extend(_embedded_section(BULK_SUMMARY, "8. Data plane: Bulk API 2.0 and Collections"))
    out.extend(
        _embedded_section(
            INSTRUCTIONS_SUMMARY, "9. Instructions per request", make="make bench-instructions"
        )
    )
    out.extend(_interference(results))
    add("## Notes\n")
    add(
        "- Both processes share one 2-core VM; absolute numbers move by a few percent from run "
        "to run. The interleaved rounds make drift hit every client alike; compare ratios "
        "within one run, not across runs."
    )
    add(
        "- The benchmark is not tuned to pass: a missed target above is reported with the "
        "figure measured."
    )
    return "\n".join(out) + "\n"


def _floor_lines(results: Any) -> list[str]:
    """The middleware floor: what authenticating inside aiohttp's middleware chain costs."""
    floor = "aiohttp+middleware"
    levels = [level for level in results.config["levels"] if level > 1]
    parts, rest = [], []
    for level in levels:
        over_raw = paired(results, floor, level)
        cpu_over_raw = paired(results, floor, level, _cpu)
        sf_over = paired(results, "sfauth", level, base=floor)
        sf_cpu_over = paired(results, "sfauth", level, _cpu, base=floor)
        if not (over_raw and sf_over):
            continue
        med = statistics.median
        parts.append(f"{level}: {med(over_raw):.3f} (CPU {med(cpu_over_raw):.3f})")
        rest.append(f"{level}: {med(sf_over):.3f} (CPU {med(sf_cpu_over):.3f})")
    if not parts:
        return []
    return [
        "",
        "**The middleware floor.** The `aiohttp+middleware` client does nothing but stamp a "
        "fixed bearer in aiohttp's client middleware chain and read the body: its cost over "
        "raw aiohttp is what any design that authenticates inside the chain pays, whatever "
        "the middleware does. Requests/s over raw aiohttp (concurrency: ratio): "
        f"{', '.join(parts)}. sfauth over that floor: {', '.join(rest)}. aiohttp builds the "
        "chain for every request (a closure, its cells and one more coroutine per "
        "middleware), and CPython's cyclic garbage collector costs more per request the more "
        "requests are in flight, because every live object is traversed by more collections "
        "before it dies: objects a request keeps alive cost little at concurrency 16 and "
        "much at 1024. So `AuthSession` sends its common case outside the chain (the direct "
        "path: a token that has worked, a path on the instance, a free send slot), and hands "
        "a redirect, a 401, a classified answer or a failure to the middleware.",
    ]


def layers_rows(results: Any) -> list[dict[str, Any]]:
    """The layers probe: each layer's CPU per request over raw aiohttp's in the same round."""
    data = getattr(results, "layers", None)
    if not data:
        return []
    cpu = data["cpu"]
    names = list(cpu)
    base = cpu[names[0]]
    rows = []
    previous = None
    for name in names:
        ratios = [mine / theirs for mine, theirs in zip(cpu[name], base, strict=True)]
        ratio = statistics.median(ratios)
        rows.append(
            {
                "layer": name,
                "cpu_us": statistics.median(cpu[name]) * 1e6,
                "ratio": ratio,
                "interval": median_interval(ratios),
                "added": None if previous is None else ratio - previous,
            }
        )
        previous = ratio
    return rows


def _layers_lines(results: Any) -> list[str]:
    rows = layers_rows(results)
    if not rows:
        return []
    data = results.layers
    out = [
        "",
        "**Where sfauth's cost goes.** sfauth's direct path taken apart, one layer added per "
        "row; the third row's bare `async with` object, the least any `sf.get(...)`-style API "
        "adds, stands in for sfauth's own request object until the last row "
        f"(benchmarks/_probes.py `layers`): one process, concurrency "
        f"{data['concurrency']}, {_rounds(data['rounds'])} of {data['requests']:,} requests "
        "per client, interleaved (order reversed every other round); CPU per request over raw "
        "aiohttp's in the same round, median and its 95 % interval"
        f"{_probe_disturbed(results, data)}:",
        "",
        "| layer | CPU us/request (median) | x aiohttp | 95% interval | added by this layer |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        interval = row["interval"]
        span = f"{interval[0]:.3f}-{interval[1]:.3f}" if interval is not None else "-"
        added = f"{row['added']:+.3f}" if row["added"] is not None else "-"
        out.append(
            f"| {row['layer']} | {row['cpu_us']:.1f} | {row['ratio']:.3f} | {span} | {added} |"
        )
    return out


def _gc_lines(results: Any) -> list[str]:
    """The garbage collector's share of each client's CPU, by concurrency (the GC probe)."""
    data = getattr(results, "gc", None)
    if not data:
        return []
    out = [
        "",
        f"**The garbage collector.** Time CPython's cyclic GC spent per request (`gc.callbacks` "
        f"around each collection; one process for the clients below, medians of "
        f"{_rounds(data['rounds'])} of {data['requests']:,} requests; the share is the median "
        f"of each round's GC time over its CPU time){_probe_disturbed(results, data)}:",
        "",
        "| concurrency | client | GC us/request | CPU us/request | GC share of CPU | "
        "collections per 1,000 requests |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in data["rows"]:
        out.append(
            f"| {row['concurrency']} | {row['client']} | {row['gc_us']:.1f} | "
            f"{row['cpu_us']:.1f} | {row['share']:.0%} | "
            f"{row['collections'] / data['requests'] * 1000:.1f} |"
        )
    return out


def _herd_table(herd: dict[str, Any], extra: list[tuple[str, list[str], str]]) -> list[str]:
    """Per-round rows and a median row; ``extra``: (header, value per round, median cell)."""
    head = (
        "| round | p50 without | p99 without | wall without | p50 with | p99 with | wall with | "
        + " | ".join(name for name, _, _ in extra)
        + " | token requests (server; client) | 401s served |"
    )
    out = [head, "|---" + "|---:" * (8 + len(extra)) + "|"]
    for number in range(herd["rounds"]):
        cells = [
            str(number + 1),
            f"{herd['base_p50s'][number] * 1e3:,.0f} ms",
            f"{herd['base_p99s'][number] * 1e3:,.0f} ms",
            f"{herd['base_walls'][number]:.2f} s",
            f"{herd['exp_p50s'][number] * 1e3:,.0f} ms",
            f"{herd['exp_p99s'][number] * 1e3:,.0f} ms",
            f"{herd['exp_walls'][number]:.2f} s",
            *(values[number] for _, values, _ in extra),
            f"{herd['token_requests'][number]}; {herd['client_token_requests'][number]}",
            f"{herd['served_401'][number]:,}",
        ]
        out.append("| " + " | ".join(cells) + " |")
    median = [
        "**median**",
        f"{herd['base_p50'] * 1e3:,.0f} ms",
        f"{herd['base_p99'] * 1e3:,.0f} ms",
        f"{herd['base_wall']:.2f} s",
        f"{herd['exp_p50'] * 1e3:,.0f} ms",
        f"{herd['exp_p99'] * 1e3:,.0f} ms",
        f"{herd['exp_wall']:.2f} s",
        *(cell for _, _, cell in extra),
        f"{statistics.median(herd['token_requests']):g}; "
        f"{statistics.median(herd['client_token_requests']):g}",
        f"{statistics.median(herd['served_401']):,.0f}",
    ]
    out.append("| " + " | ".join(median) + " |")
    out.append("")
    return out


def _herd_section(results: Any) -> list[str]:
    pool = pool_herd_summary(results)
    herd = herd_summary(results)
    if pool is None and herd is None:
        return []
    out = ["## 2. Thundering herd\n"]
    out.append(
        "Two herds, each in a fresh process with one `AuthSession` and a warm pool (a warm-up "
        "burst logs in and opens the connections). All of a burst's requests are started at "
        "once; latency runs from each request's start to its decoded body, so the time a "
        "request waits for a send slot is part of it. Per round: a burst with a valid session "
        "(*without*), then the same burst meeting the expiry (*with*); the server counts the "
        "token requests it received and the 401s it served during the burst with the expiry. "
        "One token round trip = a fresh `AuthSession`'s first `token()` (signing, POST on a "
        "new loopback connection, parsing), median of 5 in the probe's own process.\n"
    )
    if pool is not None:
        limit = pool["limit"]
        out.append("### Behind a pool: the session expires mid-burst\n")
        out.append(
            f"`AuthSession(limit={limit})`: {pool['n']:,} requests, at most {limit} sent at a "
            f"time (the pool's connections and sfauth's send slots; the others wait for a "
            f"slot). In the burst *with*, once {pool['expire_after']:,} of its requests have "
            "completed, the coroutine whose request completed last sends `POST /_bench/expire` "
            "from the same event loop and awaits the server's answer while the burst runs on "
            "(no sleeping: the expiry lands at a count of completed requests); every "
            "request in flight at that moment, and any sent with the old session before the "
            "client has seen a 401, is answered 401; the client refreshes once and replays "
            f"them. Token round trip: {pool['round_trip'] * 1e3:.1f} ms.\n"
        )
        expiry = [
            f"{e.get('completed_when_confirmed', 0):,} / {e.get('confirmed_at', 0.0):.2f} s"
            if e
            else "-"
            for e in pool["expiries"]
        ]
        out.extend(
            _herd_table(
                pool, [("expiry confirmed (requests completed / s into the burst)", expiry, "-")]
            )
        )
        rate = pool["n"] / pool["base_wall"]
        out.append(
            f"Bound for the p99 with the expiry: {pool['base_p99'] * 1e3:,.0f} + "
            f"{POOL_HERD_ROUND_TRIPS} x {pool['round_trip'] * 1e3:.1f} = "
            f"{pool['p99_bound'] * 1e3:,.0f} ms; measured {pool['exp_p99'] * 1e3:,.0f} ms "
            f"(medians). The requests answered 401 (median "
            f"{statistics.median(pool['served_401']):,.0f}) are each sent twice: at the pace "
            f"of the burst without expiry ({rate:,.0f} requests/s) the replays alone take "
            f"about {pool['replay_cost'] * 1e3:,.1f} ms of the burst, on top of the refresh."
            + (
                f" The p99 without expiry itself ranged {_spread(pool['base_p99s'])} over the "
                "rounds."
                if pool["rounds"] > 1
                else ""
            )
            + "\n"
        )
        out.extend(_gc_share(pool, all_wait=False))
    if herd is not None:
        out.append("### All in flight: every request meets the expired session\n")
        out.append(
            f"`AuthSession(limit={herd['limit']:,})`: {herd['n']:,} requests, all in flight "
            "at once. Before the burst *with*, every session is expired on the server, so "
            "every request leaves with the old session, gets the 401, joins the single "
            "refresh and is replayed once: the burst costs the client and the server twice "
            f"the requests of the burst without. Token round trip: "
            f"{herd['round_trip'] * 1e3:.1f} ms.\n"
        )
        ratios = [f"{value:.2f}" for value in herd["p99_ratios"]]
        out.extend(_herd_table(herd, [("p99 with / without", ratios, f"{herd['p99_ratio']:.2f}")]))
        out.append(
            f"Target: p99 with / without <= {FLIGHT_P99_RATIO}, taken as the ratio of the "
            "median p99s (the median row); the per-round ratios show its spread. What keeps it "
            "near or above 2: every request of the burst *with* is sent twice, and the replays "
            "start only once the refresh is in, after the 401s, so nearly all of its requests "
            "finish in its last stretch and its p99 is close to its whole length. Measured: p99 "
            f"with / wall time without = {herd['work_ratio']:.2f} (2.0 would be exactly twice "
            "the work). In the burst *without*, requests finish all along: its p99 is "
            f"{herd['base_shape']:.2f} of its wall time. So even at exactly twice the work, "
            f"the target's ratio would be about 2 / {herd['base_shape']:.2f} = "
            f"{2 / herd['base_shape']:.2f}.\n"
        )
        out.extend(_gc_share(herd, all_wait=True))
    return out


def _gc_share(herd: dict[str, Any], *, all_wait: bool) -> list[str]:
    """The herd's client CPU and the garbage collector's part of it (medians).

    ``all_wait``: every request of the burst with the expiry waits for the refresh.
    """
    if not herd["base_cpu"] or not herd["exp_cpu"]:  # too short for getrusage's ticks
        return []
    parts = [
        f"{name} {herd[f'{key}_cpu']:.2f} s, of which the garbage collector "
        f"{herd[f'{key}_gc']:.2f} s ({herd[f'{key}_gc'] / herd[f'{key}_cpu']:.0%})"
        for name, key in (("without", "base"), ("with", "exp"))
    ]
    return [
        f"Client CPU per burst (medians; `gc.callbacks` around each collection): {parts[0]}; "
        f"{parts[1]}. Every collection traverses every request still alive (all "
        f"{herd['n']:,} of a burst are started at once)"
        + (
            ", and a request that waits for the refresh stays alive, and is traversed, about "
            "twice as long.\n"
            if all_wait
            else ".\n"
        )
    ]


def soak_summary(path: Path = SOAK_SUMMARY) -> tuple[str | None, str]:
    """``(markdown, "")`` of the committed soak, or ``(None, why not)``.

    The markdown is ``benchmarks.soak.soak_section(path)``, imported only here: the soak
    module (and the emulator it imports) is not needed to measure anything. Whatever goes
    wrong in reading it costs the report this section only, never the run's measurements.
    """
    try:
        from benchmarks import soak

        section = soak.soak_section
    except (ImportError, AttributeError):
        return None, NO_SOAK
    try:
        text = section(path)
    except Exception as exc:  # the report must still be written
        return None, f"{NO_SOAK} (reading it failed: {type(exc).__name__}: {exc})"
    nothing = getattr(soak, "NO_RUN", NO_SOAK)
    if not isinstance(text, str) or not text.strip() or text.strip() == nothing:
        return None, nothing
    return text.strip(), ""


def _soak_section(path: Path) -> list[str]:
    """The million-request soak, from its committed summary (not rerun by ``make bench``)."""
    out = ["## 6. Million-request soak\n"]
    text, why_not = soak_summary(path)
    where = f"`benchmarks/{path.name}`" if path.parent == SOAK_SUMMARY.parent else f"`{path}`"
    if text is None:
        out.append(
            f"{why_not[:1].upper() + why_not[1:]} in {where}: `make soak N=1000000` runs the "
            "soak and writes its summary there; commit it, and the next `make bench` embeds "
            "it here.\n"
        )
        return out
    out.append(
        f"The latest committed soak, embedded from {where} as `make soak N=1000000` wrote it "
        "(`make bench` does not rerun it: its command, date and sfauth revision are its "
        "own, stated below).\n"
    )
    for line in text.splitlines():  # its headings one level down, under this section's
        out.append("#" + line if line.startswith("#") else line)
    out.append("")
    return out


def _embedded_section(path: Path, title: str, make: str = "") -> list[str]:
    """Another benchmark's report, its own title replaced by ``title``.

    ``benchmarks/LEASES.md`` (``python -m benchmarks.leases``) and ``benchmarks/BULK.md``
    (``python -m benchmarks.bulk``), which ``make bench`` writes just before this report, or
    (``make``: the target that writes it) the committed one of a run ``make bench`` does not
    repeat. Each states its own command and revision.
    """
    out = [f"## {title}\n"]
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    module = path.stem.lower()
    if not text:
        runs = f"`{make}` runs it" if make else "run by `make bench` before this report"
        out.append(
            f"No `{path.name}`: `python -m benchmarks.{module} --write {path.name}` ({runs}) "
            "measures it.\n"
        )
        return out
    if make:
        out.append(
            f"The latest committed run, embedded from `benchmarks/{path.name}` as `{make}` "
            "wrote it (`make bench` does not rerun it; its command, date and revision are "
            "stated in it).\n"
        )
    else:
        out.append(
            f"Embedded from `benchmarks/{path.name}`, which `make bench` wrote just before "
            "this report (its command and revision are stated in it).\n"
        )
    for line in text.splitlines()[1:]:  # its own title is this section's
        out.append("#" + line if line.startswith("#") else line)
    out.append("")
    return out


def _load(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "n/a"


def _interference(results: Any) -> list[str]:
    """How much CPU the rest of the machine used while the benchmark measured."""
    out = ["## Other load on the machine\n"]
    load = results.load_average
    out.append(
        "The benchmark measures, during each client round and each probe, the CPU that "
        "processes other than its own used (from `/proc`: all user+system time minus the "
        "server's, the clients' and the harness's, plus hypervisor steal, in cores). An "
        "interleaved round in which any client saw more than "
        f"{results.config['foreign_limit']:.2f} cores of such load is repeated (at most "
        f"{results.config['extra_rounds']} extra rounds per level, and only in the first "
        f"{results.config['retry_until']:.0f} s); repeated rounds are listed here, not used."
        + (
            f" Load average when the run started: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}."
            if load
            else ""
        )
        + "\n"
    )
    out.append(
        "| concurrency | rounds repeated | rounds used with other load over the limit | "
        "worst other load in the rounds used (cores) |"
    )
    out.append("|---:|---:|---:|---:|")
    for level in results.config["levels"]:
        key = str(level)
        loads = [
            run.get("foreign_load")
            for client in results.overhead.values()
            for run in client.get(key, [])
            if run.get("foreign_load") is not None
        ]
        repeated = len(results.discarded.get(key, []))
        over = sum(1 for value in loads if value > results.config["foreign_limit"])
        out.append(f"| {level} | {repeated} | {over} | {_load(max(loads) if loads else None)} |")
    out.append("")
    shown = [
        f"{name} {_load(data.get('foreign_load'))}" for name, data in _probes(results) if data
    ]
    if shown:
        out.append(f"Average other load during the probes (cores): {', '.join(shown)}.\n")
    return out


def _row(profile: dict[str, Any], *fragments: str) -> dict[str, Any] | None:
    for row in profile["own"]:
        if all(fragment in row["function"] for fragment in fragments):
            return row  # type: ignore[no-any-return]
    return None


def _callee_us(profile: dict[str, Any], fragment: str) -> float:
    return sum(row["tottime_us"] for row in profile["callees"] if fragment in row["call"])


def _profile_section(data: dict[str, Any]) -> list[str]:
    sf = data["sfauth"]
    raw = data["aiohttp"]
    out = ["## 5. Profile of sfauth's hot path\n"]
    out.append(
        f"cProfile over {sf['n']:,} requests at concurrency {data['concurrency']} (after a "
        f"warm-up), in a fresh process; the same for raw aiohttp. Profiled time per request: "
        f"sfauth {sf['profiled_us_per_request']:.0f} us, raw aiohttp "
        f"{raw['profiled_us_per_request']:.0f} us (cProfile inflates Python-level calls, so "
        "the gap is larger than the unprofiled CPU gap above). sfauth's own functions account "
        f"for {sf['sfauth_own_share']:.1%} of the profiled time (self time).\n"
    )
    out.append("Fast-path checks (calls per request, steady state):\n")
    out.append("| call | per request |")
    out.append("|---|---:|")
    for label, value in sf["markers"].items():
        out.append(f"| {label} | {value:.3f} |")
    out.append("")
    out.append("sfauth functions by self time (coroutines count one call per resumption):\n")
    out.append("| function | calls/request | self us/request | self share | cumulative share |")
    out.append("|---|---:|---:|---:|---:|")
    for row in sf["own"][:14]:
        out.append(
            f"| `{row['function']}` | {row['calls_per_request']:.2f} | {row['tottime_us']:.2f} "
            f"| {row['tottime_share']:.2%} | {row['cumtime_share']:.2%} |"
        )
    out.append("")
    out.append("Calls made directly by sfauth code, by the callee's self time:\n")
    out.append("| callee (caller) | calls/request | us/request | share |")
    out.append("|---|---:|---:|---:|")
    for row in sf["callees"][:14]:
        out.append(
            f"| `{row['call']}` | {row['calls_per_request']:.2f} | {row['tottime_us']:.2f} | "
            f"{row['share']:.2%} |"
        )
    out.append("")
    out.extend(_suggestions(data))
    return out


def _short(label: str) -> str:
    """``sfauth/_session.py:347 _send`` -> ``_session.py _send``."""
    where, _, name = label.partition(" ")
    return f"{where.split(':')[0].rsplit('/', 1)[-1]} {name}"


def _suggestions(data: dict[str, Any]) -> list[str]:
    """Changes the profile supports, each with the figures measured for it.

    Every item is emitted only when its evidence shows up in this run's profile, so the list
    stays true while the hot path changes.
    """
    sf = data["sfauth"]
    markers = sf["markers"]
    raw_us = data["aiohttp"]["profiled_us_per_request"]
    items: list[str] = []

    limits_own = [row for row in sf["own"] if "_limits.py" in row["function"]]
    limits_us = sum(row["tottime_us"] for row in limits_own) + sum(
        row["tottime_us"] for row in sf["callees"] if "_limits.py" in row["call"]
    )
    if markers["parse_limit_info"] >= 0.5:
        items.append(
            f"**`Sforce-Limit-Info` is fully parsed on every response** (`parse_limit_info` "
            f"{markers['parse_limit_info']:.2f}/request, {limits_us:.1f} us/request in "
            "`_limits.py` and what it calls: regex, `re.split`, an `ApiUsage` per response). "
            'An "unchanged header" shortcut never hits against Salesforce because '
            "`api-usage=N` counts every call: read only the two numbers of the "
            "`api-usage=N/M` prefix per response and parse the rest on demand."
        )
    elif markers["UsageTracker.observe"] >= 0.5 and limits_us >= 1.0:
        digits = sum(
            row["calls_per_request"]
            for row in sf["callees"]
            if "_limits.py" in row["call"] and ("isdigit" in row["call"] or "len>" in row["call"])
        )
        items.append(
            f"**`UsageTracker.observe` per response**: {limits_us:.1f} us/request "
            f"({markers['UsageTracker.observe']:.2f} calls/request"
            + (f", {digits:.0f} `isdigit`/`len` calls per response" if digits else "")
            + "). Store the raw header string per response (one attribute store) and do the "
            "arithmetic only when `api_usage` is read; for the `usage_warning` check, cache "
            "the limit text `M` with its threshold count and compare `int(value[10:slash])` "
            "against it, or check only every k-th response."
        )
    popped = sum(
        row["calls_per_request"]
        for row in sf["callees"]
        if "'popone'" in row["call"] or "'popall'" in row["call"]
    )
    if popped >= 0.5:
        items.append(
            f"**Internal marker headers**: the middleware pops {popped:.2f} headers per "
            "request that `AuthSession` added to a per-request copy of the headers. Pass the "
            "flags out of band (a `contextvars.ContextVar` set by `AuthSession`, read by the "
            "middleware in the same task) and copy headers only when the caller passed some."
        )
    waits = markers.get("SendGate.enter", 0.0)
    if waits >= 0.05:
        items.append(
            f"**Requests wait for a send slot**: `SendGate.enter` {waits:.3f}/request against "
            f"`SendGate.try_enter` {markers.get('SendGate.try_enter', 0.0):.3f} at concurrency "
            f"{data['concurrency']}, where the closed loop never has more requests in flight "
            "than there are slots: a slot is held past the end of the send that took it "
            "(see where `SendGate.leave` runs), and a queued request pays for `Exchange` and "
            "the general path."
        )
    if markers["asyncio Semaphore.acquire"] >= 0.5:
        lock_us = sum(
            row["tottime_us"]
            for row in sf["callees"]
            if "locks.py" in row["call"] or "Semaphore" in row["call"]
        )
        items.append(
            f"**A semaphore acquisition per request**: `asyncio.Semaphore.acquire` "
            f"{markers['asyncio Semaphore.acquire']:.2f}/request ({lock_us:.2f} us/request in "
            "`locks.py` called by sfauth code). sfauth's send slots are `SendGate` "
            "(`_gate.py`), whose `try_enter` takes a free slot without `await`: find which "
            "caller still goes through an `asyncio.Semaphore`."
        )
    frames = [
        row for row in sf["own"] if row["calls_per_request"] >= 1.9 and row["cumtime_share"] >= 0.2
    ]
    if frames:
        names = ", ".join(f"`{_short(row['function'])}`" for row in frames)
        built = markers.get("Exchange.__init__", 0.0)
        general = markers.get("SalesforceAuthMiddleware._exchange", 0.0)
        text = (
            f"**{len(frames)} sfauth coroutine frames on every request's await chain** "
            f"({names}: each is resumed once per suspension, hence about 2 calls/request). "
            f"Profiled time per request is {sf['profiled_us_per_request']:.0f} us against "
            f"{raw_us:.0f} us for raw aiohttp."
        )
        if built >= 0.01 or general >= 0.01:
            init = _row(sf, "_exchange.py", " __init__")
            text += (
                f" {built:.3f} `Exchange` objects"
                + (f" ({init['tottime_us']:.2f} us)" if init else "")
                + f" and {general:.3f} calls of the general path "
                "(`SalesforceAuthMiddleware._exchange`) per request in the steady state: that "
                "share of requests misses the fast paths (`SalesforceAuthMiddleware.send`, "
                "`__call__`); find which of their conditions fails (token, proven, origin, "
                "arguments, body, free slot)."
            )
        else:
            hops = markers.get("middleware chain hops (__call__)", 0.0)
            where = (
                "the direct path in `SalesforceAuthMiddleware.send`, outside aiohttp's "
                "middleware chain"
                if hops < 0.01
                else f"a fast path ({hops:.3f} middleware chain hops per request)"
            )
            text += (
                " No `Exchange` is built in the steady state (`Exchange.__init__` "
                f"{built:.3f}/request): every request takes {where}."
            )
        if any("__aenter__" in row["function"] for row in frames):
            text += (
                " The session's send, `_ResponseContext.__aenter__` (token, URL, middleware "
                "view), is a frame of its own beside `SalesforceAuthMiddleware.send`."
            )
        items.append(text)
    content_type = _callee_us(sf, "content_type")
    if content_type > 0:
        items.append(
            f"**`response.content_type`** ({content_type:.2f} us/request; aiohttp parses the "
            "header) only to decide whether to pre-read a JSON body: test the raw "
            "`Content-Type` header's prefix instead."
        )
    logging_line = (
        f"**Logging**: sfauth's logger runs {markers['sfauth logger _emit']:.3f} times per "
        "request on the fast path, so nothing is formatted there."
    )
    replay = data.get("replay")
    if replay:
        per = replay["per_replay"]
        formatted = per.get("where (URL formatted for a log event or error)", 0.0)
        rendered = per.get("_redact (event fields rendered)", 0.0)
        logging_line += (
            f" On the 401 path ({replay['burst']:,} requests that all met an expired "
            f"session, {replay['replays']:,} 401s, {replay['token_requests']} token "
            f"request), per replayed request: `logger.debug` {per['sfauth logger debug']:.2f}, "
            f"`_emit` {per['sfauth logger _emit']:.2f}, the request URL formatted by "
            f"`_scoping.where` "
            f"{formatted:.2f}, fields rendered (`_redact`) {rendered:.2f} times (logging at "
            "its default level)."
        )
        if formatted >= 0.5 and rendered < 0.5:
            logging_line += (
                " The URL string is built for the `sfauth.request.replayed` debug event "
                "(`_replay.after_rejection`) that is then dropped: check the level before "
                "building the fields (or pass the request and format inside `_emit` only when "
                "the event is emitted)."
            )
    items.append(logging_line)
    out = ["### What to remove from the hot path\n"]
    out.extend(f"{number}. {text}" for number, text in enumerate(items, 1))
    out.append("")
    return out


def plot(results: Any, path: Path) -> None:
    """Requests/s against concurrency, one line per client, range over rounds as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = overhead_table(results)
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    styles = {
        "aiohttp": ("#555555", "s", "--"),
        "aiohttp+middleware": ("#999999", "v", ":"),
        "sfauth": ("#1f77b4", "o", "-"),
        "aiosalesforce": ("#d62728", "^", "-"),
        "simple-salesforce": ("#2ca02c", "D", "-"),
    }
    for client in results.config["clients"]:
        mine = [row for row in rows if row["client"] == client]
        if not mine:
            continue
        xs = [row["concurrency"] for row in mine]
        ys = [row["rate"] for row in mine]
        err = [
            [row["rate"] - row["rate_min"] for row in mine],
            [row["rate_max"] - row["rate"] for row in mine],
        ]
        color, marker, line = styles.get(client, ("#000000", "x", "-"))
        label = "raw aiohttp, fixed header (ceiling)" if client == "aiohttp" else client
        ax.errorbar(
            xs, ys, yerr=err, label=label, color=color, marker=marker, linestyle=line, capsize=3
        )
    ax.set_xscale("log", base=2)
    levels = results.config["levels"]
    ax.set_xticks(levels)
    ax.set_xticklabels([str(level) for level in levels])
    ax.set_xlabel("concurrency (requests in flight)")
    ax.set_ylabel("requests/s (median round; bars: min-max)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    pinned = results.pinning.get("server_cpu") is not None
    ax.set_title(
        "GET query + JSON decode against a loopback server\n"
        + (
            f"(server and client each pinned to one core of a {os.cpu_count()}-core machine)"
            if pinned
            else "(server and client share the machine's CPUs)"
        ),
        fontsize=10,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(results: Any, folder: Path) -> None:
    """Write RESULTS.md and the plot into ``folder``."""
    plot(results, folder / PLOT_NAME)
    (folder / "RESULTS.md").write_text(render(results))
