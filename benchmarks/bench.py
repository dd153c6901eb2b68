"""Benchmarks: sfauth against raw aiohttp and the other Salesforce clients (``make bench``).

Starts a minimal Salesforce stand-in server (``benchmarks/_server.py``) in its own process and
each client in a process of its own (pinned to separate CPUs where possible), then measures,
with medians over interleaved rounds:

1. request overhead: requests/s and client CPU per request at several concurrencies for raw
   aiohttp with a fixed bearer header (the ceiling), sfauth's ``AuthSession``, aiosalesforce
   and simple-salesforce;
2. the thundering herd, twice: 10,000 requests through ``AuthSession(limit=100)`` whose
   session expires on the server mid-burst (behind a pool), and 10,000 concurrent requests
   that all meet an expired session (all in flight);
3. the cost of minting an assertion;
4. client memory after 10,000 and 200,000 requests through one session;
5. a cProfile of sfauth's hot path.

The full run writes ``benchmarks/RESULTS.md`` and ``benchmarks/throughput.png``. ``--quick``
runs a reduced version in seconds (used by ``tests/test_bench.py``) and writes nothing unless
``--output-dir`` is given. RESULTS.md also embeds the committed million-request soak's summary
(``make soak N=1000000``; not rerun here). The exit status is non-zero when a request failed or
a herd round cost other than one token request; missed targets are reported (and fail only
with ``--strict``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from benchmarks import _server, _worker
from benchmarks._clients import CLIENTS, Target
from benchmarks._report import TARGET_LEVELS

BENCH_DIR = Path(__file__).resolve().parent
COMMAND_TIMEOUT = 900.0


@dataclass(frozen=True)
class Config:
    """What to run. ``Config()`` is ``make bench``; ``Config.quick()`` the CI version."""

    levels: tuple[int, ...] = (1, 16, 64, 256, 1024)
    requests: int = 3_000
    #: Interleaved rounds of the clients in ``fresh_per_round`` (the targets' ratios) at the
    #: concurrencies the targets name; ``peer_rounds`` at the others.
    rounds: int = 15
    target_levels: tuple[int, ...] = TARGET_LEVELS
    #: Rounds of the other clients (the peers: far slower, compared for the record only).
    peer_rounds: int = 3
    #: (client, concurrency) pairs not run: aiosalesforce manages 20-80 requests/s at 1024,
    #: so its rounds there alone would take longer than the rest of the benchmark.
    not_run: tuple[tuple[str, int], ...] = (("aiosalesforce", 1024),)
    warmup_factor: int = 2
    warmup_min: int = 200
    #: The herd all in flight: ``AuthSession(limit=herd)``, ``herd`` requests.
    herd: int = 10_000
    #: Rounds of each herd (a baseline burst and a burst meeting the expiry per round).
    herd_rounds: int = 3
    #: The herd behind a pool: ``pool_herd`` requests through ``AuthSession(limit=
    #: pool_herd_limit)``, every session expired once ``pool_herd_at`` of them completed.
    pool_herd: int = 10_000
    pool_herd_limit: int = 100
    pool_herd_at: float = 0.25
    memory: tuple[int, ...] = (10_000, 50_000, 100_000, 150_000, 200_000)
    memory_concurrency: int = 64
    assertion_round_seconds: float = 0.2
    assertion_rounds: int = 7
    #: The GC probe: requests per round, rounds, at these concurrencies.
    gc_requests: int = 6_000
    gc_rounds: int = 3
    gc_levels: tuple[int, ...] = (16, 1024)
    #: The layers probe: concurrency, requests per round, interleaved rounds.
    layers_concurrency: int = 16
    layers_requests: int = 3_000
    layers_rounds: int = 15
    profile_requests: int = 20_000
    profile_concurrency: int = 64
    #: A client's round is "disturbed" when processes outside the benchmark used more than
    #: this many cores on average during it (another job on the machine); the interleaved
    #: round is then repeated, up to ``extra_rounds`` times per level and while the run is
    #: younger than ``retry_until`` seconds. Disturbed rounds are reported, not hidden.
    #: Clients given a new process (and pool, and warm-up) for every round, so that the
    #: ratio between them does not ride on one process's luck (memory layout, hash seed):
    #: raw aiohttp and sfauth, whose ratio is a target, and the middleware floor; the peers
    #: keep one process per level (their warm-up at high concurrency takes seconds).
    fresh_per_round: tuple[str, ...] = ("aiohttp", "aiohttp+middleware", "sfauth")
    foreign_limit: float = 0.25
    extra_rounds: int = 3
    retry_until: float = 420.0
    quick: bool = False
    clients: tuple[str, ...] = CLIENTS

    @classmethod
    def reduced(cls) -> Config:
        """A few seconds: every client answers, each herd costs one token request."""
        return cls(
            levels=(1, 16),
            requests=200,
            rounds=1,
            peer_rounds=1,
            not_run=(),
            warmup_factor=1,
            warmup_min=20,
            herd=500,
            herd_rounds=1,
            pool_herd=500,
            pool_herd_limit=25,
            memory=(1_000, 3_000),
            memory_concurrency=16,
            assertion_round_seconds=0.01,
            assertion_rounds=2,
            gc_requests=200,
            gc_rounds=1,
            gc_levels=(16,),
            layers_requests=200,
            layers_rounds=2,
            profile_requests=0,
            extra_rounds=0,
            quick=True,
        )

    def warmup(self, concurrency: int) -> int:
        return max(self.warmup_factor * concurrency, self.warmup_min)


@dataclass
class Results:
    """Everything measured, JSON-friendly (see ``_report`` for how it is shown)."""

    config: dict[str, Any]
    server: dict[str, Any]
    pinning: dict[str, Any]
    # client -> str(concurrency) -> rounds {n, wall, cpu, ok, errors, server_200, foreign_load}
    overhead: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    # str(concurrency) -> interleaved rounds repeated because other processes used the CPU
    discarded: dict[str, list[dict[str, dict[str, Any]]]] = field(default_factory=dict)
    load_average: tuple[float, float, float] | None = None
    warmups: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    herd: dict[str, Any] = field(default_factory=dict)  # all in flight
    pool_herd: dict[str, Any] = field(default_factory=dict)  # behind a pool, expiry mid-burst
    memory: dict[str, Any] = field(default_factory=dict)
    assertion: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    gc: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, Any] = field(default_factory=dict)  # sfauth's direct path, layer by layer
    seconds: float = 0.0
    command: str = ""

    def failures(self) -> list[str]:
        """Correctness problems: failed requests, missing 200s, herd token requests != 1.

        Also a herd round whose expiry no request met (no 401 served): the benchmark itself
        did not test what it says. The herds' latency and the pool herd's 401 count are
        targets (``_report.targets``), not failures.
        """
        problems = []
        for client, levels in self.overhead.items():
            for level, rounds in levels.items():
                for number, run in enumerate(rounds, 1):
                    if run["ok"] != run["n"] or run["errors"]:
                        problems.append(
                            f"{client} at concurrency {level}, round {number}: {run['ok']} of "
                            f"{run['n']} ok, errors {run['errors']}"
                        )
                    if run["server_200"] != run["n"]:
                        problems.append(
                            f"{client} at concurrency {level}, round {number}: the server "
                            f"answered {run['server_200']} of {run['n']} requests with 200"
                        )
        for client, levels in self.warmups.items():
            for level, run in levels.items():
                if run["ok"] != run["n"] or run["errors"]:
                    problems.append(f"{client} warm-up at concurrency {level}: {run}")
        for name, herd in (("herd all in flight", self.herd), ("pool herd", self.pool_herd)):
            for number, herd_round in enumerate(herd.get("rounds", []), 1):
                where = f"{name} round {number}"
                if herd_round["token_requests"] != 1:
                    problems.append(f"{where}: {herd_round['token_requests']} token requests")
                if herd_round["served_401"] == 0:
                    problems.append(f"{where}: no request met the expired session (no 401)")
                for phase in ("baseline", "expired"):
                    burst = herd_round[phase]
                    if burst["ok"] != burst["n"] or burst["errors"]:
                        shown = {k: v for k, v in burst.items() if k != "expiry"}
                        problems.append(f"{where} {phase}: {shown}")
        memory = self.memory
        if memory and (memory["ok"] != self.config["memory"][-1] or memory["errors"]):
            problems.append(f"memory run: {memory['ok']} ok, errors {memory['errors']}")
        layers = self.layers
        if layers and layers["ok"] != layers["n"]:
            problems.append(f"layers probe: {layers['ok']} of {layers['n']} ok")
        return problems


class Process:
    """A child process and its end of the command pipe."""

    def __init__(self, name: str, conn: Connection, process: Any) -> None:
        self.name = name
        self.conn = conn
        self.process = process

    def call(self, *command: Any) -> Any:
        self.conn.send(command)
        if not self.conn.poll(COMMAND_TIMEOUT):
            raise RuntimeError(f"{self.name}: no answer to {command[0]!r} within the timeout")
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"{self.name} failed on {command[0]!r}:\n{value}")
        return value

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError, RuntimeError):
            if self.process.is_alive():
                self.call("stop")
        self.conn.close()
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self.process.close()


class LoadMeter:
    """CPU used by processes other than the benchmark's own, from Linux's ``/proc``.

    ``foreign(mark)`` is the average number of cores that the rest of the machine used since
    ``mark`` (user + system time of every process minus this benchmark's processes, plus
    hypervisor steal); ``None`` where ``/proc`` is missing or the window is shorter than
    0.2 s. The resolution is one clock tick (10 ms) per process read, so short windows are
    rough.
    """

    def __init__(self, pids: Any) -> None:
        self._pids = pids
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = os.path.exists("/proc/stat")

    @staticmethod
    def _machine() -> tuple[int, int]:
        with open("/proc/stat") as file:
            fields = [int(value) for value in file.readline().split()[1:]]
        steal = fields[7] if len(fields) > 7 else 0
        return fields[0] + fields[1] + fields[2], steal  # user + nice + system, steal

    @staticmethod
    def _process(pid: int) -> int | None:
        try:
            with open(f"/proc/{pid}/stat") as file:
                fields = file.read().rpartition(")")[2].split()
        except OSError:
            return None
        return int(fields[11]) + int(fields[12])  # utime + stime

    def process_seconds(self, pid: int) -> float | None:
        """CPU seconds of the main thread of ``pid`` so far (the server has only that one)."""
        try:
            with open(f"/proc/{pid}/schedstat") as file:
                return int(file.read().split()[0]) / 1e9  # nanoseconds on the CPU
        except (OSError, ValueError, IndexError):
            ticks = self._process(pid) if self.available else None
            return ticks / self._hz if ticks is not None else None

    def mark(self) -> tuple[float, int, int, dict[int, int]] | None:
        if not self.available:
            return None
        own = {pid: self._process(pid) for pid in self._pids()}
        busy, steal = self._machine()
        return time.perf_counter(), busy, steal, {k: v for k, v in own.items() if v is not None}

    def foreign(self, mark: tuple[float, int, int, dict[int, int]] | None) -> float | None:
        if mark is None:
            return None
        started, busy0, steal0, own0 = mark
        busy1, steal1 = self._machine()
        own = 0
        for pid, before in own0.items():
            after = self._process(pid)
            if after is not None:
                own += after - before
        wall = time.perf_counter() - started
        if wall < 0.2:
            return None  # a few clock ticks: too coarse to say anything
        ticks = (busy1 - busy0) - own + (steal1 - steal0)
        return max(ticks, 0) / self._hz / wall


def _cpus() -> tuple[int | None, int | None]:
    """(server CPU, client CPU): two different CPUs when this process may use two."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


@contextlib.contextmanager
def _key_files() -> Iterator[tuple[str, bytes]]:
    """A fresh RSA 2048 key in a private temporary file, and its public half (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder = tempfile.mkdtemp(prefix="sfauth-bench-")
    try:
        path = os.path.join(folder, "bench.key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        yield path, public
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def served(cpu: int | None) -> Iterator[tuple[Target, int]]:
    """The benchmark server in a process of its own (pinned to ``cpu``), and a key to sign with.

    Yields the ``Target`` (the server's URL, the private key's file) and the server's pid. On
    exit the server is asked to stop, then terminated if it has not within 10 s.

    Raises:
        RuntimeError: The server exited at start or did not start within 60 s.
    """
    ctx = multiprocessing.get_context("spawn")
    with _key_files() as (key_path, public_pem):
        parent, child = ctx.Pipe()
        server = ctx.Process(target=_server.serve, args=(public_pem, child, cpu), daemon=True)
        server.start()
        child.close()
        try:
            try:
                if not parent.poll(60):
                    raise RuntimeError("the benchmark server did not start within 60 s")
                url = parent.recv()
            except EOFError:
                server.join(5)  # its pipe closes before it can be reaped
                raise RuntimeError(
                    f"the benchmark server exited at start (exit code {server.exitcode})"
                ) from None
            assert server.pid is not None  # started
            yield Target(url=url, key_path=key_path), server.pid
        finally:
            with contextlib.suppress(OSError):
                parent.send("stop")
            parent.close()
            server.join(10)
            for end in (server.terminate, server.kill):
                if server.is_alive():
                    end()
                    server.join(5)
            if not server.is_alive():
                server.close()


def _server_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_bench/stats", timeout=30) as resp:
        data: dict[str, int] = json.loads(resp.read())
        return data


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


def run(config: Config, *, quiet: bool = False) -> Results:
    """Run the benchmark and return its measurements."""
    started = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    server_cpu, client_cpu = _cpus()
    results = Results(
        config=asdict(config),
        server=_server.describe(),
        pinning={"server_cpu": server_cpu, "client_cpu": client_cpu},
    )
    processes: list[Process] = []
    server_pids: list[int] = []
    meter = LoadMeter(lambda: [os.getpid(), *server_pids, *(p.process.pid for p in processes)])
    if hasattr(os, "getloadavg"):
        results.load_average = os.getloadavg()

    def spawn(name: str, target_fn: Any, *args: Any) -> Process:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=target_fn, args=(child, *args), daemon=True, name=name)
        process.start()
        child.close()
        handle = Process(name, parent, process)
        processes.append(handle)
        return handle

    def stop(handle: Process) -> None:
        processes.remove(handle)
        handle.stop()

    with served(server_cpu) as (target, server_pid):
        server_pids.append(server_pid)
        url = target.url
        _log(f"server: {results.server['name']} at {url}, pinning {results.pinning}", quiet)
        try:
            _overhead(
                config, results, target, spawn, stop, client_cpu, meter, server_pids[0], quiet
            )

            def probe(name: str, *command: Any) -> dict[str, Any]:
                handle = spawn(name, _worker.main, "probe", target, client_cpu)
                handle.call("ping")
                mark = meter.mark()
                value: dict[str, Any] = handle.call(name, *command)
                value["foreign_load"] = meter.foreign(mark)
                stop(handle)
                return value

            _log(
                f"herd behind a pool: {config.pool_herd} requests, limit "
                f"{config.pool_herd_limit}, expiry after {config.pool_herd_at:.0%}, "
                f"{config.herd_rounds} round(s)",
                quiet,
            )
            results.pool_herd = probe(
                "pool_herd",
                config.pool_herd,
                config.pool_herd_limit,
                config.herd_rounds,
                config.pool_herd_at,
            )
            _log(
                f"herd all in flight: {config.herd} concurrent, {config.herd_rounds} round(s)",
                quiet,
            )
            results.herd = probe("herd", config.herd, config.herd_rounds)
            _log(f"memory: RSS after {', '.join(map(str, config.memory))} requests", quiet)
            results.memory = probe("memory", list(config.memory), config.memory_concurrency)
            _log("assertion cost", quiet)
            results.assertion = probe(
                "assertion", config.assertion_round_seconds, config.assertion_rounds
            )
            gc_clients = [name for name in config.fresh_per_round if name in config.clients]
            _log(
                f"garbage collector: {', '.join(gc_clients)} at concurrency "
                f"{', '.join(map(str, config.gc_levels))}",
                quiet,
            )
            results.gc = probe(
                "gc", gc_clients, list(config.gc_levels), config.gc_requests, config.gc_rounds
            )
            _log(
                f"layers: sfauth's direct path taken apart at concurrency "
                f"{config.layers_concurrency}, {config.layers_rounds} round(s)",
                quiet,
            )
            results.layers = probe(
                "layers",
                config.layers_concurrency,
                config.layers_requests,
                config.layers_rounds,
            )
            if config.profile_requests:
                _log(
                    f"profile: {config.profile_requests} requests at concurrency "
                    f"{config.profile_concurrency}",
                    quiet,
                )
                results.profile = probe(
                    "profile",
                    config.profile_concurrency,
                    config.profile_requests,
                    config.warmup(config.profile_concurrency),
                )
        finally:
            for handle in list(processes):
                stop(handle)
    results.seconds = time.perf_counter() - started
    return results


def _overhead(
    config: Config,
    results: Results,
    target: Target,
    spawn: Any,
    stop: Any,
    client_cpu: int | None,
    meter: LoadMeter,
    server_pid: int,
    quiet: bool,
) -> None:
    started = time.perf_counter()
    fresh = [name for name in config.clients if name in config.fresh_per_round]

    def start_workers(names: list[str]) -> dict[str, Process]:
        started_now = {name: spawn(name, _worker.main, name, target, client_cpu) for name in names}
        for worker in started_now.values():
            worker.call("ping")
        return started_now

    def setup(name: str, level: int) -> None:
        warmup = config.warmup(level)
        done = workers[name].call("setup", level, warmup)
        total = results.warmups[name].setdefault(str(level), {"n": 0, "ok": 0, "errors": {}})
        total["n"] += done["n"]
        total["ok"] += done["ok"]
        for kind, count in done["errors"].items():
            total["errors"][kind] = total["errors"].get(kind, 0) + count

    workers = start_workers([name for name in config.clients if name not in fresh])
    for name in config.clients:
        results.overhead[name] = {}
        results.warmups[name] = {}
    for level in config.levels:
        key = str(level)
        skipped = {name for name, at in config.not_run if at == level}
        rounds = config.rounds if level in config.target_levels else config.peer_rounds
        for name in list(workers):
            if name not in skipped:
                setup(name, level)
        for name in config.clients:
            results.overhead[name][key] = []
        results.discarded[key] = []
        kept = attempts = 0
        while kept < rounds:
            attempts += 1
            for name in fresh:
                if name in workers:
                    workers[name].call("teardown")
                    stop(workers.pop(name))
            workers.update(start_workers(fresh))
            for name in fresh:
                if name not in skipped:
                    setup(name, level)
            runs: dict[str, dict[str, Any]] = {}
            for name in config.clients:  # interleaved: ABCD ABCD ...
                if name in skipped or (name not in fresh and kept >= config.peer_rounds):
                    continue  # not run at this level, or a peer with its rounds done
                before = _server_stats(target.url)
                mark = meter.mark()
                server_before = meter.process_seconds(server_pid)
                run = workers[name].call("run", config.requests)
                server_after = meter.process_seconds(server_pid)
                run["foreign_load"] = meter.foreign(mark)
                if server_before is not None and server_after is not None:
                    run["server_busy"] = (server_after - server_before) / run["wall"]
                after = _server_stats(target.url)
                run["server_200"] = after.get("query_200", 0) - before.get("query_200", 0)
                runs[name] = run
            worst = max(run["foreign_load"] or 0.0 for run in runs.values())
            spare = rounds + config.extra_rounds - attempts >= rounds - kept
            in_time = time.perf_counter() - started < config.retry_until
            line = ", ".join(
                f"{name} {run['n'] / run['wall']:,.0f}/s" for name, run in runs.items()
            )
            if worst > config.foreign_limit and spare and in_time:
                results.discarded[key].append(runs)
                _log(
                    f"concurrency {level:>4} round repeated, other processes used up to "
                    f"{worst:.2f} cores: {line}",
                    quiet,
                )
                continue
            kept += 1
            for name, run in runs.items():
                results.overhead[name][key].append(run)
            _log(f"concurrency {level:>4} round {kept}: {line}", quiet)
        for name, worker in workers.items():
            if name not in skipped:
                worker.call("teardown")
    for worker in workers.values():
        stop(worker)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced run (seconds)")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="where RESULTS.md and throughput.png go (default: benchmarks/ for a full run, "
        "nowhere for --quick)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results")
    parser.add_argument(
        "--strict", action="store_true", help="exit non-zero when a speed target is missed"
    )
    args = parser.parse_args(argv)
    from benchmarks import _report

    config = Config.reduced() if args.quick else Config()
    output = (
        args.output_dir if args.output_dir is not None else (None if args.quick else BENCH_DIR)
    )
    print(
        f"sfauth benchmarks ({'quick' if args.quick else 'full'}): concurrency "
        f"{', '.join(map(str, config.levels))}; {config.requests} requests x {config.rounds} "
        f"round(s) at {', '.join(map(str, config.target_levels))}, {config.peer_rounds} "
        "elsewhere and for the peers",
        flush=True,
    )
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 1.0:
        print(
            f"note: load average {os.getloadavg()[0]:.2f}: other work is running; rounds it "
            "disturbs are repeated or flagged in the report",
            flush=True,
        )
    results = run(config)
    results.command = (
        "python -m benchmarks.bench" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    )
    print()
    print(_report.summary(results))
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        _report.write(results, output)
        print(f"wrote {output / 'RESULTS.md'} and {output / 'throughput.png'}")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(results), indent=1))
    failures = results.failures()
    for problem in failures:
        print(f"FAILED: {problem}")
    if failures:
        return 1
    if args.strict and not all(target.met for target in _report.targets(results)):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
