"""Tables, targets, RESULTS.md and the throughput plot from a benchmark run's measurements."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._clients import CONFIGURATION, SOQL

PLOT_NAME = "throughput.png"
RATIO_TARGET = 0.90
ASSERTION_TARGET = 1.5
MEMORY_TARGET = 0.05
HERD_SLACK = 0.050
TIME_BUDGET = 600.0

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


def overhead_table(results: Any) -> list[dict[str, Any]]:
    """One row per (concurrency, client): medians, ranges and ratios to raw aiohttp."""
    rows = []
    overhead = results.overhead
    for level in results.config["levels"]:
        key = str(level)
        base = overhead.get("aiohttp", {}).get(key)
        base_rate = statistics.median(throughputs(base)) if base else None
        base_cpu = statistics.median(cpu_per_request(base)) if base else None
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
                    "ratio": rate / base_rate if base_rate else None,
                    "cpu_us": cpu,
                    "cpu_ratio": cpu / base_cpu if base_cpu else None,
                    "ok": sum(run["ok"] for run in runs),
                    "n": sum(run["n"] for run in runs),
                }
            )
    return rows


def _median_rate(results: Any, client: str, level: int) -> float | None:
    runs = results.overhead.get(client, {}).get(str(level))
    return statistics.median(throughputs(runs)) if runs else None


def herd_summary(results: Any) -> dict[str, Any] | None:
    herd = results.herd
    if not herd or not herd.get("rounds"):
        return None
    rounds = herd["rounds"]

    def med(phase: str, stat: str) -> float:
        return statistics.median(r[phase][stat] for r in rounds)

    summary = {
        "n": herd["n"],
        "rounds": len(rounds),
        "token_requests": [r["token_requests"] for r in rounds],
        "client_token_requests": [r["client_token_requests"] for r in rounds],
        "served_401": [r["served_401"] for r in rounds],
        "base_p50": med("baseline", "p50"),
        "base_p99": med("baseline", "p99"),
        "base_wall": med("baseline", "wall"),
        "exp_p50": med("expired", "p50"),
        "exp_p99": med("expired", "p99"),
        "exp_wall": med("expired", "wall"),
        "round_trip": herd["token_round_trip"],
    }
    summary["p99_bound"] = summary["base_p99"] + summary["round_trip"] + HERD_SLACK
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


def targets(results: Any) -> list[Target]:
    """The issue's targets, each with the measured figure."""
    found: list[Target] = []
    limit = results.config["foreign_limit"]
    for level in (64, 256):
        sf, raw = _median_rate(results, "sfauth", level), _median_rate(results, "aiohttp", level)
        name = f"sfauth >= {RATIO_TARGET:.2f} x raw aiohttp throughput at concurrency {level}"
        if sf is None or raw is None:
            found.append(Target(name, "not measured in this run", None))
            continue
        ratio = sf / raw
        runs = [
            run
            for client in ("aiohttp", "sfauth")
            for run in results.overhead.get(client, {}).get(str(level), [])
        ]
        disturbed = sum(1 for run in runs if (run.get("foreign_load") or 0.0) > limit)
        measured = f"{ratio:.3f} ({sf:,.0f} vs {raw:,.0f} req/s)"
        if disturbed:
            measured += (
                f"; unreliable: other processes loaded the machine in {disturbed} of "
                f"{len(runs)} of these rounds"
            )
        found.append(Target(name, measured, ratio >= RATIO_TARGET))
    for peer in ("aiosalesforce", "simple-salesforce"):
        name = f"sfauth ahead of {peer} at every concurrency"
        behind = []
        measured = []
        for level in results.config["levels"]:
            sf, other = _median_rate(results, "sfauth", level), _median_rate(results, peer, level)
            if sf is None or other is None:
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
            found.append(Target(name, text, not behind))
    herd = herd_summary(results)
    if herd is None:
        found.append(Target("herd: exactly 1 token request", "not measured in this run", None))
    else:
        counts = herd["token_requests"]
        found.append(
            Target(
                f"herd ({herd['n']:,} concurrent, expired session): exactly 1 token request",
                f"{', '.join(map(str, counts))} (per round)",
                all(count == 1 for count in counts),
            )
        )
        found.append(
            Target(
                "herd: p99 with expiry <= p99 without + 1 token round trip + 50 ms",
                f"{herd['exp_p99'] * 1e3:,.0f} ms vs bound {herd['p99_bound'] * 1e3:,.0f} ms "
                f"({herd['base_p99'] * 1e3:,.0f} + {herd['round_trip'] * 1e3:.1f} + 50)",
                herd["exp_p99"] <= herd["p99_bound"],
            )
        )
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


def _disturbance_warning(results: Any) -> str | None:
    used = disturbed_rounds(results)
    probes = [
        name
        for name, data in (
            ("herd", results.herd),
            ("memory", results.memory),
            ("assertion", results.assertion),
            ("profile", results.profile),
        )
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
    herd = herd_summary(results)
    if herd is not None:
        lines += [
            "",
            f"herd: {herd['n']} concurrent; token requests {herd['token_requests']}; 401s served "
            f"{herd['served_401']}; p50/p99 without expiry {herd['base_p50'] * 1e3:,.0f}/"
            f"{herd['base_p99'] * 1e3:,.0f} ms, with {herd['exp_p50'] * 1e3:,.0f}/"
            f"{herd['exp_p99'] * 1e3:,.0f} ms; token round trip {herd['round_trip'] * 1e3:.1f} ms",
        ]
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
    """What this machine is."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemTotal"):
                    memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                    break
    except OSError:
        pass
    versions = []
    for name in _VERSIONS:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    try:
        here = Path(__file__).resolve().parent

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()

        # The run's own outputs (this report and the plot) do not make the source dirty.
        changed = git(
            "status", "--porcelain", "--", ":/",
            ":(top,exclude)benchmarks/RESULTS.md", ":(top,exclude)benchmarks/throughput.png",
        )  # fmt: skip
        revision = f"git {git('rev-parse', '--short=12', 'HEAD')}"
        if changed:
            revision += "-dirty (uncommitted changes in the work tree)"
    except (OSError, subprocess.SubprocessError):
        revision = "unknown (not a git checkout)"
    return {
        "revision": revision,
        "cpu": f"{cpu}, {os.cpu_count()} logical CPUs",
        "memory": memory,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": ", ".join(versions),
    }


def _join(values: list[int]) -> str:
    return ", ".join(f"{value:,}" for value in values)


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
    add(f"- sfauth source: {info['revision']}\n")
    add("## Setup\n")
    add(
        f"- **Server**: {results.server['name']}, in its own process on 127.0.0.1, the same "
        f"for all four clients. It answers `{results.server['routes']}` with precomputed "
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
    fresh_text = (
        f"{' and '.join(fresh)} get a new process, set up and warmed up the same way, for "
        "every round: one process's memory layout can make it 10-15 % faster or slower than "
        "the next for its whole life, and the median over fresh processes keeps that out of "
        "their ratio; the other clients keep one process per level. "
        if fresh
        else ""
    )
    add(
        f"- **Method**: per concurrency level, each client is set up and warmed up "
        f"(max({cfg['warmup_factor']} x C, {cfg['warmup_min']}) requests, which also opens "
        f"the pool's connections and logs in), then {_rounds(cfg['rounds'])} run interleaved "
        "across clients (aiohttp, sfauth, aiosalesforce, simple-salesforce, then again). "
        + fresh_text
        + "Requests/s = requests / wall time of the round; CPU per request = the client "
        "process's user+sys CPU time (`getrusage(RUSAGE_SELF)`, all threads) over the round / "
        "requests. Tables show the median round (and the range); ratios are medians over "
        "medians relative to raw aiohttp in the same run. Every round's requests were checked "
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
    add("")

    herd = herd_summary(results)
    if herd is not None:
        add("## 2. Thundering herd\n")
        add(
            f"One `AuthSession(limit={herd['n']:,})` with a warm pool; {herd['n']:,} requests "
            "started at once (latency: from each request's start to its decoded body). Per "
            "round: a burst with a valid session (baseline), then every session expired on "
            f"the server and the same burst again. Median over {_rounds(herd['rounds'])}. One "
            "token round trip = a fresh `AuthSession`'s first `token()` (signing, POST on a "
            f"new loopback connection, parsing): {herd['round_trip'] * 1e3:.1f} ms (median of 5)."
            "\n"
        )
        add("| | without expiry | with expiry |")
        add("|---|---:|---:|")
        add(
            f"| p50 latency | {herd['base_p50'] * 1e3:,.0f} ms | {herd['exp_p50'] * 1e3:,.0f} ms |"
        )
        add(
            f"| p99 latency | {herd['base_p99'] * 1e3:,.0f} ms | {herd['exp_p99'] * 1e3:,.0f} ms |"
        )
        add(f"| burst wall time | {herd['base_wall']:.2f} s | {herd['exp_wall']:.2f} s |")
        add(
            "| token requests per round (server; client) | 0 | "
            f"{_join(herd['token_requests'])}; {_join(herd['client_token_requests'])} |"
        )
        add(f"| 401s served per round | 0 | {_join(herd['served_401'])} |")
        add("")
        add(
            "Every request of the expired burst leaves with the old session (all "
            f"{herd['n']:,} are in flight at once), gets the 401, joins the single refresh and "
            "is replayed once: the burst costs the client and the server twice the requests "
            "of the baseline."
            + (
                " That doubled work, not the token request, is why the p99 grows by much more "
                "than one token round trip on this CPU-bound machine.\n"
                if herd["exp_p99"] > herd["p99_bound"]
                else "\n"
            )
        )

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
    probes = [
        ("herd", results.herd),
        ("memory", results.memory),
        ("assertion", results.assertion),
        ("profile", results.profile),
    ]
    shown = [f"{name} {_load(data.get('foreign_load'))}" for name, data in probes if data]
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
    if markers["asyncio Semaphore.acquire"] >= 0.5:
        lock_us = sum(
            row["tottime_us"]
            for row in sf["callees"]
            if "locks.py" in row["call"] or "Semaphore" in row["call"]
        )
        items.append(
            f"**A semaphore acquisition per request**: `asyncio.Semaphore.acquire` "
            f"{markers['asyncio Semaphore.acquire']:.2f}/request for the `max_in_flight` gate "
            f"({lock_us:.2f} us/request in `locks.py`, plus a coroutine call). The token fast "
            f"path itself takes no lock (`TokenManager.get` {markers['TokenManager.get']:.3f} "
            f"and `_join` {markers['TokenManager._join']:.3f} calls/request). Give the gate a "
            "synchronous fast path: a counter of free slots taken without `await` while it is "
            "positive, a waiter future only when it is zero."
        )
    frames = [
        row for row in sf["own"] if row["calls_per_request"] >= 1.9 and row["cumtime_share"] >= 0.2
    ]
    if frames:
        names = ", ".join(f"`{_short(row['function'])}`" for row in frames)
        init = _row(sf, "_middleware.py", " __init__")
        items.append(
            f"**{len(frames)} sfauth coroutine frames on every request's await chain** "
            f"({names}: each is resumed once per suspension, hence 2.00 calls/request"
            + (f"; plus a `_Send` object, {init['tottime_us']:.2f} us" if init else "")
            + f"). Profiled time per request is {sf['profiled_us_per_request']:.0f} us "
            f"against {raw_us:.0f} us for raw aiohttp. Handle the common case inline in "
            "`SalesforceAuthMiddleware.__call__`: valid token, free slot, stamp, `await "
            "handler(request)`, return unless the status needs classifying or something "
            "raised; build `_Send` and the retry machinery only on that slow path. In "
            "`AuthSession.request`, when a valid token is cached, return "
            "`self.http.request(...)` (aiohttp's own context manager) instead of wrapping "
            "a coroutine of sfauth's."
        )
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
        formatted = per.get("_where (URL formatted for a log event or error)", 0.0)
        rendered = per.get("_redact (event fields rendered)", 0.0)
        logging_line += (
            f" On the 401 path ({replay['burst']:,} requests that all met an expired "
            f"session, {replay['replays']:,} 401s, {replay['token_requests']} token "
            f"request), per replayed request: `logger.debug` {per['sfauth logger debug']:.2f}, "
            f"`_emit` {per['sfauth logger _emit']:.2f}, the request URL formatted by `_where` "
            f"{formatted:.2f}, fields rendered (`_redact`) {rendered:.2f} times (logging at "
            "its default level)."
        )
        if formatted >= 0.5 and rendered < 0.5:
            logging_line += (
                " The URL string is built for a debug event that is then dropped: check the "
                "level before building the fields (or pass the request and format inside "
                "`_emit` only when the event is emitted)."
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
