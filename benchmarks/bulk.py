"""The data-plane benchmark: Bulk API 2.0 ingest and query, sObject Collections (``make bench``).

``python -m benchmarks.bulk [--write benchmarks/BULK.md] [--plot benchmarks/bulk.png]``. One
stand-in server (``benchmarks/_server.py``, its own process) answers every client; each run of
each client is a fresh process of its own, so its CPU time and peak RSS (``ru_maxrss``) are that
run's alone. Cases, each through the clients' own public APIs:

- Bulk ingest (insert) of 100,000 and 1,000,000 generated Account records, from a generator of
  dicts: sfauth ``sf.bulk.insert(..., records)``; simple-salesforce 1.12
  ``sf.bulk2.Account.insert(records=list)`` (it takes a list); aiosalesforce 0.6.2
  ``sf.bulk_v2.ingest.perform_operation("insert", ..., fieldnames=...)`` (the call that takes a
  polling interval; it also downloads every job's results, as its ``insert`` does).
- Bulk query of 1,000,000 records with ``maxRecords`` 50,000: sfauth ``sf.bulk.query`` (dicts)
  and ``sf.bulk.query_csv`` (raw CSV); simple-salesforce ``sf.bulk2.Account.query`` (a CSV string
  per page). aiosalesforce 0.6.2 has no Bulk query.
- sObject Collections upsert of 20,000 records: sfauth ``upsert_many`` (200 a request, 4 at
  once) against raw aiohttp sending the same requests with a fixed bearer header (neither peer
  has a Collections helper).

Every client polls every 0.05 s (their defaults sleep 0.5 to 5 s, which would measure sleeping);
the stand-in completes a job on its first poll. Records/s is records ÷ the call's wall time;
CPU per record is the process's user+system time ÷ records. The medians of ``--rounds``
interleaved rounds are reported (one round for the 1,000,000-record cases).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import multiprocessing
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks import _server
from benchmarks._clients import (
    Target,
    aiosalesforce_client,
    sfauth_session,
    simple_salesforce_client,
)
from benchmarks._provenance import machine, revision

HERE = Path(__file__).resolve().parent
BULK_SUMMARY = HERE / "BULK.md"
#: What make bench writes (this report and the ones before it): not changes to the source.
_OUTPUTS = (BULK_SUMMARY, HERE / "bulk.png", HERE / "LEASES.md")
POLL = 0.05
FIELDS = ["Name", "External_Id__c", "Industry", "NumberOfEmployees"]
QUERY = "SELECT Id, Name FROM Account LIMIT {n}"
PAGE = 50_000
#: (case, records, clients); the first client of each case is sfauth's.
CASES: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("ingest", 100_000, ("sfauth", "simple-salesforce", "aiosalesforce")),
    ("ingest", 1_000_000, ("sfauth", "simple-salesforce", "aiosalesforce")),
    ("query", 1_000_000, ("sfauth", "sfauth (CSV)", "simple-salesforce")),
    ("collections", 20_000, ("sfauth", "aiohttp")),
)
RSS_LIMIT_MB = 150.0
#: The sfauth mode a peer is compared with: the one giving the same output (simple-salesforce's
#: Bulk query yields raw CSV pages; sfauth's ``query`` parses every record into a dict).
_SFAUTH_MODE = {("query", "simple-salesforce"): "sfauth (CSV)"}
#: What each client imports (before its run is timed).
_MODULES = {
    "sfauth": ("sfauth", "sfauth._bulk", "aiohttp"),
    "sfauth (CSV)": ("sfauth", "sfauth._bulk", "aiohttp"),
    "aiohttp": ("aiohttp", "jwt"),
    "aiosalesforce": ("aiosalesforce", "aiosalesforce.auth", "httpx"),
    "simple-salesforce": ("simple_salesforce", "requests"),
}


def records(n: int) -> Iterator[dict[str, Any]]:
    """``n`` generated Account records (the same for every client)."""
    for i in range(n):
        yield {
            "Name": f"Account {i:07d}",
            "External_Id__c": f"E{i:07d}",
            "Industry": "Technology",
            "NumberOfEmployees": i % 5000,
        }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _sfauth(case: str, n: int, target: Target, csv_only: bool) -> int:
    async with sfauth_session(target, 8, api_version="62.0") as sf:
        await sf.token()
        if case == "ingest":
            result = await sf.bulk.insert("Account", records(n), poll_interval=POLL)
            return result.records_processed
        if case == "query":
            count = 0
            soql = QUERY.format(n=n)
            if csv_only:
                async for chunk in sf.bulk.query_csv(soql, max_records=PAGE, poll_interval=POLL):
                    count += chunk.count(b"\n")
                return count - 1
            async for _ in sf.bulk.query(soql, max_records=PAGE, poll_interval=POLL):
                count += 1
            return count
        results = await sf.sobject("Account").upsert_many("External_Id__c", records(n))
        return sum(1 for r in results if r.success)


async def _aiohttp_collections(n: int, target: Target) -> int:
    import aiohttp

    from benchmarks._clients import fetch_token

    token = await fetch_token(target)
    url = f"{target.url}/services/data/v62.0/composite/sobjects/Account/External_Id__c"
    rows = [{"attributes": {"type": "Account"}, **r} for r in records(n)]
    gate = asyncio.Semaphore(4)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

        async def chunk(start: int) -> int:
            async with (
                gate,
                http.patch(
                    url, json={"allOrNone": False, "records": rows[start : start + 200]}
                ) as resp,
            ):
                return sum(1 for r in await resp.json() if r["success"])

        done = await asyncio.gather(*(chunk(s) for s in range(0, n, 200)))
    return sum(done)


async def _aiosalesforce(n: int, target: Target) -> int:
    http, sf = aiosalesforce_client(target, 8)
    try:
        processed = 0
        async for job in sf.bulk_v2.ingest.perform_operation(
            "insert", "Account", records(n), fieldnames=FIELDS, polling_interval=POLL
        ):
            processed += len(job.successful_results)
        return processed
    finally:
        await http.aclose()


def _simple_salesforce(case: str, n: int, target: Target) -> int:
    http, sf = simple_salesforce_client(target, 8)
    try:
        if case == "ingest":
            jobs = sf.bulk2.Account.insert(records=list(records(n)), wait=POLL)
            return sum(int(job["numberRecordsProcessed"]) for job in jobs)
        count = 0
        for page in sf.bulk2.Account.query(QUERY.format(n=n), max_records=PAGE, wait=POLL):
            count += page.count("\n") - 1
        return count
    finally:
        http.close()


def _one_run(conn: Connection, case: str, n: int, client: str, target: Target) -> None:
    """Process entry point: one measured run; sends back its numbers."""
    try:
        from benchmarks._worker import cpu_seconds

        for module in _MODULES[client]:  # imported before the clock starts, for every client
            importlib.import_module(module)
        base = _rss_mb()
        gc.collect()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        if client.startswith("sfauth"):
            done = asyncio.run(_sfauth(case, n, target, client == "sfauth (CSV)"))
        elif client == "aiohttp":
            done = asyncio.run(_aiohttp_collections(n, target))
        elif client == "aiosalesforce":
            done = asyncio.run(_aiosalesforce(n, target))
        else:
            done = _simple_salesforce(case, n, target)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        conn.send(
            ("ok", {"records": done, "wall": wall, "cpu": cpu, "rss": _rss_mb(), "base": base})
        )
    except BaseException as exc:  # reported to the harness, which fails the run
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def measure(case: str, n: int, client: str, target: Target) -> dict[str, Any]:
    """Run one client once, in a fresh process."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_one_run, args=(child, case, n, client, target), daemon=True)
    process.start()
    child.close()
    if not parent.poll(600):
        process.terminate()
        raise RuntimeError(f"{client} {case} {n}: no answer within 600 s")
    status, value = parent.recv()
    process.join(30)
    if status != "ok":
        raise RuntimeError(f"{client} {case} {n}: {value}")
    if value["records"] != n:
        raise RuntimeError(f"{client} {case} {n}: {value['records']} records done")
    return value


def run(rounds: int, scale: float = 1.0, quiet: bool = False) -> dict[str, Any]:
    """Every case and client, interleaved; returns ``{"cases": [...], "seconds": ...}``."""
    from benchmarks.bench import _key_files

    started = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    cases: list[dict[str, Any]] = []
    with _key_files() as (key_path, public_pem):
        parent, child = ctx.Pipe()
        server = ctx.Process(target=_server.serve, args=(public_pem, child, None), daemon=True)
        server.start()
        url = parent.recv()
        target = Target(url, key_path)
        try:
            for case, size, clients in CASES:
                n = max(1000, int(size * scale))
                runs: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
                for _ in range(1 if size >= 1_000_000 else rounds):
                    for client in clients:
                        runs[client].append(measure(case, n, client, target))
                        if not quiet:
                            last = runs[client][-1]
                            print(
                                f"bulk: {case} {n:,} {client}: {n / last['wall']:,.0f} records/s, "
                                f"peak RSS {last['rss']:.0f} MB",
                                flush=True,
                            )
                cases.append({"case": case, "records": n, "runs": runs})
        finally:
            parent.send("stop")
            server.join(10)
    return {"cases": cases, "seconds": time.perf_counter() - started}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per case and client: records/s, µs of CPU per record, peak RSS, ratio to sfauth."""
    rows = []
    for case in result["cases"]:
        n = case["records"]
        rates = {c: n / _median(r, "wall") for c, r in case["runs"].items()}
        for client, runs in case["runs"].items():
            rows.append(
                {
                    "case": case["case"],
                    "records": n,
                    "client": client,
                    "rate": rates[client],
                    "cpu_us": _median(runs, "cpu") / n * 1e6,
                    "rss": max(r["rss"] for r in runs),
                    "base": min(r["base"] for r in runs),
                    "sfauth_ratio": rates[_SFAUTH_MODE.get((case["case"], client), "sfauth")]
                    / rates[client],
                }
            )
    return rows


def targets(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """``(target, met, measured)`` for the issue's data-plane targets."""
    rows = table(result)
    out = []
    for row in rows:
        if row["client"].startswith("sfauth") or row["client"] == "aiohttp":
            continue
        out.append(
            (
                f"sfauth ahead of {row['client']} on records/s: {row['case']} of "
                f"{row['records']:,}",
                row["sfauth_ratio"] >= 1.0,
                f"{row['sfauth_ratio']:.2f}x",
            )
        )
    ingest = {
        r["records"]: r["rss"] for r in rows if r["case"] == "ingest" and r["client"] == "sfauth"
    }
    if len(ingest) == 2:
        small, large = sorted(ingest)
        out.append(
            (
                f"sfauth ingest peak RSS flat from {small:,} to {large:,} records (within 10 %)",
                ingest[large] <= ingest[small] * 1.10,
                f"{ingest[small]:.0f} MB -> {ingest[large]:.0f} MB",
            )
        )
    for row in rows:
        if row["client"] == "sfauth" and row["records"] >= 1_000_000:
            out.append(
                (
                    f"sfauth peak RSS under {RSS_LIMIT_MB:.0f} MB: {row['case']} of "
                    f"{row['records']:,}",
                    row["rss"] < RSS_LIMIT_MB,
                    f"{row['rss']:.0f} MB",
                )
            )
    return out


def render(result: dict[str, Any], command: str) -> str:
    """``benchmarks/BULK.md``."""
    info = machine(["aiohttp", "simple-salesforce", "aiosalesforce", "httpx", "requests"])
    lines = [
        "## Data plane: Bulk API 2.0 and sObject Collections\n",
        f"Command: `{command}`; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; revision "
        f"{revision(*_OUTPUTS)}; {result['seconds']:.0f} s.\n",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".\n",
        "One stand-in server process answers every client (`benchmarks/_server.py`: jobs "
        "complete on their first poll, results are generated as sent, nothing is compressed); "
        "each run is a fresh client process. Every client polls every 0.05 s. Peak RSS is "
        'the process\'s `ru_maxrss`, interpreter and imports included ("before": after '
        "imports, before the run).\n",
        "| case | records | client | records/s | CPU µs/record | peak RSS MB (before) "
        "| sfauth ÷ client (records/s) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in table(result):
        lines.append(
            f"| {row['case']} | {row['records']:,} | {row['client']} | {row['rate']:,.0f} | "
            f"{row['cpu_us']:.1f} | {row['rss']:.0f} ({row['base']:.0f}) | "
            f"{row['sfauth_ratio']:.2f} |"
        )
    lines.append("")
    lines.append("| target | verdict | measured |")
    lines.append("|---|---|---|")
    for name, met, measured in targets(result):
        lines.append(f"| {name} | {'met' if met else 'MISSED'} | {measured} |")
    lines.append("")
    lines.append(
        "aiosalesforce 0.6.2 has no Bulk query and neither peer has an sObject Collections "
        "helper: those rows compare sfauth with its other mode or with raw aiohttp. "
        "simple-salesforce's Bulk query yields each page as one CSV string, so it is compared "
        "with `sfauth (CSV)` (`sf.bulk.query_csv`); `sfauth` (`sf.bulk.query`) also parses "
        "every record into a dict."
    )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """A bar chart of records/s per case and client."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table(result)
    labels = [f"{r['case']} {r['records']:,}\n{r['client']}" for r in rows]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    colors = ["tab:blue" if r["client"].startswith("sfauth") else "tab:gray" for r in rows]
    ax.bar(range(len(rows)), [r["rate"] for r in rows], color=colors)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("records/s")
    ax.set_title("Data plane: records/s (sfauth in blue)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write the report when asked; 1 if a run failed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the smaller cases")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every record count (quick runs)"
    )
    parser.add_argument("--write", type=Path, help="write the Markdown report here")
    parser.add_argument("--plot", type=Path, help="write the bar chart here")
    args = parser.parse_args(argv)
    result = run(args.rounds, args.scale)
    text = render(result, "python -m benchmarks.bulk " + " ".join(argv or sys.argv[1:]))
    print(text)
    if args.write is not None:
        args.write.write_text(text, encoding="utf-8")
    if args.plot is not None:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
