"""Soak: many requests through one AuthSession while the emulator misbehaves.

Run with ``make soak N=1000000`` (or ``python -m benchmarks.soak --help``). The emulator
(``sfauth.testing.Emulator``) runs in its own process, so that the client's memory and CPU are the
client's alone; the soak drives it through a pipe. It injects seeded random transient faults
(503, 502 HTML pages, 429, the concurrent-request limit, resets, truncated JSON, slow answers,
token-endpoint ``unknown_error``) into about ``--fault-rate`` of everything it serves, while
``--in-flight`` long-lived workers keep that many requests in flight until ``--requests`` are
done. Spread evenly over the run, it expires every session ``--expiries`` times, revokes the
current token ``--revocations`` times and moves the org to another instance ``--instance-moves``
times (a move is one of the expiries: the session learns the new ``instance_url`` from the
refresh that follows, as after a real org migration).

The run passes when no request failed, at least 10 % of the answers were injected faults,
every planned action happened, the logins were exactly 1 + expiries + revocations (token
requests retried after injected token-endpoint faults are counted separately), no request
started after a move went to the old instance, and (from 100,000 requests on) the client's
RSS grew by less than 2 % between 10 % of the run and its end. ``--write FILE`` also writes the
summary as a markdown section (see :func:`soak_section`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import functools
import gc
import itertools
import multiprocessing
import os
import resource
import shlex
import sys
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import structlog
from yarl import URL

from benchmarks._provenance import machine, revision
from benchmarks._server import pin_to_cpu, raise_fd_limit
from sfauth import AuthSession, Token
from sfauth.testing import Emulator

QUERY = "/services/data/v62.0/query"
SOQL = {"q": "SELECT Id, Name FROM Account LIMIT 3"}
#: The issue's targets.
FAULT_FLOOR = 0.10
RSS_GROWTH_LIMIT = 0.02
#: RSS growth is measured from this share of the run to its end...
RSS_BASELINE_SHARE = 0.10
#: ...and gated only for runs of at least this many requests.
RSS_GATE_REQUESTS = 100_000
NO_RUN = "no soak run recorded"
#: Samples of sfauth's OpenTelemetry counters over a run (for the plot).
TIMELINE_POINTS = 50
T = TypeVar("T")
#: Seconds between the director's looks at the request counter and the current token.
_POLL = 0.005
_REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class Action:
    """One disturbance: after ``at`` requests completed, ``kind`` happens.

    ``kind`` is ``"expire"`` (every session expires), ``"revoke"`` (the current token is
    revoked) or ``"move"`` (the org's ``instance_url`` moves to site ``site``, then every
    session expires: a move is also an expiry).
    """

    at: int
    kind: str
    site: int = 0


def plan_actions(
    requests: int, expiries: int, revocations: int, instance_moves: int
) -> list[Action]:
    """Spread the expiries and revocations evenly over the run; moves replace some expiries.

    The ``expiries + revocations`` rejections come at ``requests * k / (rejections + 1)``
    completed requests (k = 1, 2, ...); the revocations and, among the expiries, the moves are
    themselves spread evenly over those slots.

    Raises:
        ValueError: A count is negative, or there are more moves than expiries.
    """
    if min(expiries, revocations, instance_moves) < 0:
        raise ValueError("expiries, revocations and instance moves must be >= 0")
    if instance_moves > expiries:
        raise ValueError(
            f"each instance move is one of the expiries: --instance-moves ({instance_moves}) "
            f"must not exceed --expiries ({expiries})"
        )
    slots = expiries + revocations
    revoked = {(j + 1) * slots // (revocations + 1) for j in range(revocations)}
    expiry_slots = [slot for slot in range(slots) if slot not in revoked]
    moved = {
        expiry_slots[(m + 1) * len(expiry_slots) // (instance_moves + 1)]
        for m in range(instance_moves)
    }
    plan = []
    site = 0
    for slot in range(slots):
        at = requests * (slot + 1) // (slots + 1)
        if slot in revoked:
            plan.append(Action(at, "revoke"))
        elif slot in moved:
            site += 1
            plan.append(Action(at, "move", site))
        else:
            plan.append(Action(at, "expire"))
    return plan


# ---------------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    """This process's resident set size now (Linux ``/proc/self/statm``; else the peak)."""
    try:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------- emulator


def _emulator_process(conn: Connection, cpu: int | None, sites: int) -> None:
    """Process entry point: run the emulator and obey the soak's commands until ``stop``."""
    pin_to_cpu(cpu)
    raise_fd_limit()
    asyncio.run(_serve_emulator(conn, sites))


async def _serve_emulator(conn: Connection, sites: int) -> None:
    # record_requests=False: the emulator keeps counters only, no record per REST request.
    # A daily API allowance the soak cannot reach: sfauth would warn at 80 % of it.
    async with Emulator(record_requests=False, daily_api_limit=1_000_000_000) as emu:
        creds = emu.create_credentials(username="soak@example.com")
        extra = [await emu.add_instance() for _ in range(sites)]
        conn.send(
            {
                "client_id": creds.client_id,
                "username": creds.username,
                "private_key_pem": creds.private_key_pem,
                "urls": [emu.url, *extra],
            }
        )
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def command() -> None:
            try:
                name, *args = conn.recv()
            except (EOFError, OSError):
                stop.set()  # the soak is gone
                return
            conn.send(_obey(emu, name, args))
            if name == "stop":
                stop.set()

        loop.add_reader(conn.fileno(), command)
        try:
            await stop.wait()
        finally:
            loop.remove_reader(conn.fileno())


def _obey(emu: Emulator, name: str, args: list[Any]) -> Any:
    if name == "faults":
        rate, seed = args
        emu.inject_faults(rate, seed=seed)
        return None
    if name == "expire":
        emu.expire_all_sessions()
        return None
    if name == "revoke":
        return emu.revoke(args[0])
    if name == "rss":
        return rss_bytes()
    if name == "move":
        # An org moving to another instance: new tokens carry the new instance_url, and the
        # sessions issued so far end, so the client learns it from the refresh that follows.
        emu.set_instance_url(args[0])
        emu.expire_all_sessions()
        return None
    if name in ("stats", "stop"):
        logins = 0
        token_faults: collections.Counter[str] = collections.Counter()
        for record in emu.token_requests:
            if record.status == 200 and record.fault in (None, "slow"):
                logins += 1
            else:
                token_faults[record.fault or f"HTTP {record.status} {record.error}"] += 1
        return {
            "served": sum(emu.counters.values()),
            "unauthorized": sum(v for (_, status), v in emu.counters.items() if status == 401),
            "faults": dict(emu.faults_injected),
            "token_requests": emu.token_request_count,
            "logins": logins,
            "token_faults": dict(token_faults),
        }
    raise ValueError(f"unknown command {name!r}")


class RemoteEmulator:
    """An :class:`Emulator` in its own process (spawned), driven through a pipe.

    Args:
        sites: Listening sites to open besides the first one (targets of instance moves).
        cpu: CPU to pin the emulator process to, or ``None``.
    """

    def __init__(self, *, sites: int = 0, cpu: int | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_emulator_process, args=(child, cpu, sites), name="soak-emulator", daemon=True
        )
        self._process.start()
        child.close()
        self.setup: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        try:
            self.setup = await asyncio.wait_for(self._recv(), 120)
        except BaseException:
            self._kill()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await asyncio.wait_for(self.call("stop"), 10)
        except (OSError, EOFError, TimeoutError):
            pass
        finally:
            await asyncio.to_thread(self._process.join, 10)
            self._kill()

    def _kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()

    @property
    def urls(self) -> list[str]:
        """The sites' base URLs; the first is the login URL and the first instance."""
        return list(self.setup["urls"])

    async def call(self, name: str, *args: Any) -> Any:
        """Send one command and return the emulator's answer (the event loop keeps running)."""
        async with self._lock:
            self._conn.send((name, *args))
            return await self._recv()

    async def _recv(self) -> Any:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self._conn.fileno()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        try:
            while not ready.done():
                if not self._process.is_alive():
                    raise EOFError("the emulator process died")
                await asyncio.wait({ready}, timeout=1.0)
        finally:
            loop.remove_reader(fd)
        return self._conn.recv()


# ---------------------------------------------------------------------------------- the run


@dataclass
class SoakResult:
    """What one soak did and saw; :attr:`criteria` says whether it passed."""

    requests: int
    in_flight: int
    fault_rate: float
    seed: int
    max_relogins: int
    ok: int
    failed: dict[str, int]
    #: Fault kind -> answers it replaced, on every endpoint (the token endpoint included).
    faults: dict[str, int]
    served: int
    #: Answers 401 (expired, revoked or moved sessions).
    unauthorized: int
    retries: int
    replays: int
    token_requests: int
    logins: int
    #: Token requests that got an injected fault (and were retried), by fault kind.
    token_faults: dict[str, int]
    planned: list[Action]
    #: ``(kind, completed requests when it happened, detail)`` of every action taken.
    done: list[tuple[str, int, str]]
    #: Base URL -> requests answered 200 with 3 records from that instance.
    ok_by_instance: dict[str, int]
    #: Requests started after a move that were answered by an instance the org had left.
    strays: int
    #: ``(completed requests, client RSS in bytes)`` at every tenth of the run.
    rss: list[tuple[int, int]]
    #: The same for the emulator's process (what an in-process emulator would add).
    emulator_rss: list[tuple[int, int]]
    seconds: float
    pinned: str = ""
    events: dict[str, int] = field(default_factory=dict)
    #: ``(completed requests, CPython's allocated memory blocks after a full collection)`` at
    #: the RSS samples: flat while RSS steps up means the allocator kept memory freed after a
    #: peak (a herd of replays), not that objects accumulate.
    heap_blocks: list[tuple[int, int]] = field(default_factory=list)
    #: ``(completed requests, seconds, sfauth's OpenTelemetry counters)`` at the start and at
    #: every fiftieth of the run (empty without the OpenTelemetry SDK).
    timeline: list[tuple[int, float, dict[str, int]]] = field(default_factory=list)

    @property
    def expiries(self) -> int:
        """Expiries that happened, moves included."""
        return sum(1 for kind, _, _ in self.done if kind in ("expire", "move"))

    @property
    def revocations(self) -> int:
        return sum(1 for kind, _, _ in self.done if kind == "revoke")

    @property
    def moves(self) -> int:
        return sum(1 for kind, _, _ in self.done if kind == "move")

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    @property
    def fault_share(self) -> float:
        return sum(self.faults.values()) / max(self.served, 1)

    @property
    def token_fault_retries(self) -> int:
        return self.token_requests - self.logins

    @property
    def rss_baseline(self) -> tuple[int, int] | None:
        """``(requests, bytes)`` of the sample at 10 % of the run."""
        return self.rss[0] if self.rss else None

    @property
    def rss_end(self) -> tuple[int, int] | None:
        return self.rss[-1] if self.rss else None

    @property
    def rss_growth(self) -> float | None:
        if not self.rss:
            return None
        return self.rss[-1][1] / self.rss[0][1] - 1

    def criteria(self) -> list[tuple[str, str, bool | None]]:
        """``(criterion, measured, met)``; ``met`` is ``None`` when it is not gated."""
        planned = collections.Counter(action.kind for action in self.planned)
        planned_expiries = planned["expire"] + planned["move"]
        growth = self.rss_growth
        base, end = self.rss_baseline, self.rss_end
        rss_text = "no samples"
        if growth is not None and base is not None and end is not None:
            rss_text = (
                f"{_mib(base[1])} at {base[0]:,} requests, {_mib(end[1])} at {end[0]:,}: "
                f"{growth:+.2%}"
            )
            if self.requests < RSS_GATE_REQUESTS:
                rss_text += f" (not gated below {RSS_GATE_REQUESTS:,} requests)"
        final = list(self.ok_by_instance)[-1] if self.ok_by_instance else ""
        return [
            (
                "no request failed",
                f"{self.ok:,} ok, {self.failures:,} failed of {self.requests:,}",
                self.failures == 0 and self.ok == self.requests,
            ),
            (
                f">= {FAULT_FLOOR:.0%} injected transient faults",
                f"{sum(self.faults.values()):,} of {self.served:,} answers "
                f"({self.fault_share:.1%})",
                self.fault_share >= FAULT_FLOOR,
            ),
            (
                "every planned expiry, revocation and instance move happened",
                f"{self.expiries} of {planned_expiries} expiries (instance moves: {self.moves} "
                f"of {planned['move']}), {self.revocations} of {planned['revoke']} revocations",
                (self.expiries, self.moves, self.revocations)
                == (planned_expiries, planned["move"], planned["revoke"]),
            ),
            (
                "logins = 1 + expiries + revocations",
                f"{self.logins} = 1 + {self.expiries} + {self.revocations} "
                f"(and {_plural(self.token_fault_retries, 'token request')} retried after "
                "injected token-endpoint faults)",
                self.logins == 1 + self.expiries + self.revocations,
            ),
            (
                "requests follow the instance moves",
                f"{self.strays} requests went to an instance the org had left; "
                f"{self.ok_by_instance.get(final, 0):,} answered by the last instance",
                self.strays == 0 and (self.moves == 0 or self.ok_by_instance.get(final, 0) > 0),
            ),
            (
                f"client RSS growth < {RSS_GROWTH_LIMIT:.0%} from {RSS_BASELINE_SHARE:.0%} "
                "of the run to its end",
                rss_text,
                None
                if self.requests < RSS_GATE_REQUESTS or growth is None
                else growth < RSS_GROWTH_LIMIT,
            ),
        ]

    @property
    def passed(self) -> bool:
        return all(met is not False for _, _, met in self.criteria())

    def _lines(self) -> list[tuple[str, str]]:
        faults = ", ".join(f"{k} {v:,}" for k, v in sorted(self.faults.items()))
        token_faults = ", ".join(f"{k} {v}" for k, v in sorted(self.token_faults.items()))
        actions = "; ".join(
            f"{kind}{f' to {detail}' if detail else ''} at {at:,}"
            for kind, at, detail in self.done
        )
        instances = ", ".join(f"{url} {n:,}" for url, n in self.ok_by_instance.items())
        rss = ", ".join(f"{_mib(b)} at {n:,}" for n, b in self.rss)
        emulator_rss = ", ".join(f"{_mib(b)} at {n:,}" for n, b in self.emulator_rss)
        heap = ", ".join(f"{b:,} at {n:,}" for n, b in self.heap_blocks)
        busy = [blocks for _, blocks in self.heap_blocks[:-1]]  # the last: nothing in flight
        if busy:
            heap += (
                f" (CPython's memory blocks in use after a full collection, sampled with the "
                f"RSS: {min(busy):,} to {max(busy):,} while requests were in flight)"
            )
        if len(self.emulator_rss) > 1 and self.emulator_rss[0][1]:
            growth = self.emulator_rss[-1][1] / self.emulator_rss[0][1] - 1
            emulator_rss += f" ({growth:+.2%}; its own process, not gated)"
        return [
            (
                "requests",
                f"{self.requests:,} in {self.seconds:.1f} s "
                f"({self.requests / self.seconds:,.0f} requests/s), {self.in_flight:,} in flight",
            ),
            ("requests ok", f"{self.ok:,}"),
            (
                "requests failed",
                f"{self.failures:,}"
                + "".join(f", {k} {v}" for k, v in sorted(self.failed.items())),
            ),
            (
                "faults injected",
                f"{sum(self.faults.values()):,} of {self.served:,} answers served "
                f"({self.fault_share:.1%}; rate {self.fault_rate:g}, seed {self.seed}): {faults}",
            ),
            ("retries", f"{self.retries:,}"),
            ("401 answers", f"{self.unauthorized:,}"),
            ("401 replays", f"{self.replays:,}"),
            (
                "token requests",
                f"{self.token_requests} = {self.logins} logins (1 + {self.expiries} expiries + "
                f"{self.revocations} revocations) + {self.token_fault_retries} retried after "
                f"injected token-endpoint faults ({token_faults or 'none'})",
            ),
            ("max_relogins", f"{self.max_relogins} (AuthSession's default is 5 per 300 s)"),
            ("actions", actions or "none"),
            ("ok by instance", f"{instances}; strays {self.strays}"),
            ("client RSS", rss or "no samples"),
            ("client heap", heap or "no samples"),
            ("emulator RSS", emulator_rss or "no samples"),
        ]

    def report(self) -> str:
        """The console summary."""
        lines = [f"{name + ':':<17}{value}" for name, value in self._lines()]
        for name, measured, met in self.criteria():
            lines.append(f"[{_verdict(met)}] {name}: {measured}")
        lines.append(f"result:          {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)

    def markdown(self, *, command: str, when: str, revision: str) -> str:
        """The summary as a markdown section (``## Soak ...``)."""
        info = machine(("sfauth", "aiohttp", "yarl", "multidict"))
        lines = [
            f"## Soak: {self.requests:,} requests",
            "",
            f"`{command}` on {when}; sfauth source: {revision}. "
            f"Result: **{'PASS' if self.passed else 'FAIL'}**.",
            "",
            f"- Machine: {info['cpu']}, {info['memory']}; {info['os']}",
            f"- Python: {info['python']}; {info['versions']}",
            f"- Setup: one `AuthSession(limit={self.in_flight}, max_relogins="
            f"{self.max_relogins})` in this process, {self.in_flight:,} workers each sending "
            f"`GET {QUERY}?q={SOQL['q']}` until {self.requests:,} are done; "
            "`sfauth.testing.Emulator(record_requests=False, daily_api_limit=1_000_000_000)` "
            "in its own process"
            f"{f' ({self.pinned})' if self.pinned else ''}.",
            "",
            "| criterion | measured | verdict |",
            "|---|---|---|",
            *(
                f"| {name} | {measured} | {_verdict(met)} |"
                for name, measured, met in self.criteria()
            ),
            "",
            "| count | value |",
            "|---|---|",
            *(f"| {name} | {value} |" for name, value in self._lines()),
            "",
        ]
        if self.timeline:
            _, _, last = self.timeline[-1]
            counted = ", ".join(f"{name} {value:,}" for name, value in sorted(last.items()))
            lines += [
                f"sfauth's own OpenTelemetry counters at the end of the run: {counted}. "
                "Token requests and retries over the run: `soak_telemetry.png` (`--plot`).",
                "",
            ]
        return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("PASS" if met else "FAIL")


async def soak(
    *,
    requests: int = 20_000,
    in_flight: int = 1_000,
    fault_rate: float = 0.12,
    expiries: int = 10,
    revocations: int = 3,
    instance_moves: int = 1,
    seed: int = 7,
    pin: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SoakResult:
    """Run the soak in this event loop (the emulator in a child process) and return its counts.

    Args:
        pin: Pin the emulator process to the second CPU this process may use, and this
            process to the first, so that each gets a core of its own (for the CLI: pytest
            should not be pinned).
        progress: Called with a line of progress at every tenth of the run.
    """
    if requests < 1 or in_flight < 1:
        raise ValueError("requests and in_flight must be >= 1")
    plan = plan_actions(requests, expiries, revocations, instance_moves)
    events: collections.Counter[str] = collections.Counter()

    def count(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        events[event["event"]] += 1
        raise structlog.DropEvent

    structlog.configure(processors=[count], wrapper_class=structlog.make_filtering_bound_logger(0))
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    emulator_cpu = cpus[1] if pin and len(cpus) >= 2 else None
    try:
        async with RemoteEmulator(sites=instance_moves, cpu=emulator_cpu) as emu:
            if emulator_cpu is not None:
                pin_to_cpu(cpus[0])  # after the spawn: the emulator must not inherit it
            result = await _run(emu, plan, requests, in_flight, fault_rate, seed, events, progress)
    finally:
        structlog.reset_defaults()
    if emulator_cpu is not None:
        result.pinned = f"emulator pinned to CPU {emulator_cpu}, client to CPU {cpus[0]}"
    return result


async def _run(
    emu: RemoteEmulator,
    plan: list[Action],
    n: int,
    in_flight: int,
    fault_rate: float,
    seed: int,
    events: collections.Counter[str],
    progress: Callable[[str], None] | None,
) -> SoakResult:
    urls = emu.urls
    site_of_port = {URL(url).port: i for i, url in enumerate(urls)}
    rejections = len(plan)
    # AuthSession allows max_relogins=5 logins per relogin_window=300 s to replace rejected
    # tokens (one per rejected token; token-endpoint faults are retried inside the same
    # refresh and do not count). A soak rejects expiries + revocations tokens within a few
    # minutes, so it must allow more than that, or the later rejections would raise
    # InvalidSessionError instead of logging in. One spare: the exact-login check still
    # catches any extra login.
    max_relogins = max(5, rejections + 1)
    telemetry = _telemetry()
    timeline: list[tuple[int, float, dict[str, int]]] = []
    async with AuthSession(
        client_id=emu.setup["client_id"],
        username=emu.setup["username"],
        private_key=emu.setup["private_key_pem"],
        login_url=urls[0],
        allow_http_loopback=True,
        limit=in_flight,
        max_relogins=max_relogins,
        meter_provider=telemetry[0] if telemetry is not None else None,
    ) as sf:
        await sf.token()
        await emu.call("faults", fault_rate, seed)
        started = finished = ok = strays = 0
        site = 0  # the instance the org is on, once the session has followed it
        failed: collections.Counter[str] = collections.Counter()
        by_site: collections.Counter[int] = collections.Counter()
        done: list[tuple[str, int, str]] = []
        rss: list[tuple[int, int]] = []
        heap_blocks: list[tuple[int, int]] = []
        emulator_rss: list[asyncio.Task[tuple[int, int]]] = []

        async def emulator_sample(finished: int) -> tuple[int, int]:
            return finished, await emu.call("rss")

        marks = [n * k // 10 for k in range(1, 11)] if n >= 10 else [n]
        next_mark = marks.pop(0)
        samples = sorted({max(n * k // TIMELINE_POINTS, 1) for k in range(1, TIMELINE_POINTS + 1)})
        next_sample = samples.pop(0)

        async def worker() -> None:
            nonlocal started, finished, ok, strays, next_mark, next_sample
            while started < n:
                started += 1
                site_at_start = site
                try:
                    async with sf.get(QUERY, params=SOQL) as resp:
                        body = await resp.json()
                        status = resp.status
                        port = resp.url.port
                    if status == 200 and len(body["records"]) == 3:
                        ok += 1
                        answered_by = site_of_port.get(port, -1)
                        by_site[answered_by] += 1
                        if answered_by < site_at_start:
                            strays += 1
                    else:
                        failed[f"HTTP {status}"] += 1
                except Exception as exc:  # a soak counts every kind of failure
                    failed[type(exc).__name__] += 1
                finished += 1
                if finished >= next_sample:
                    if telemetry is not None:
                        timeline.append((finished, time.perf_counter() - began, telemetry[1]()))
                    next_sample = samples.pop(0) if samples else n + 1
                if finished >= next_mark:
                    rss.append((finished, rss_bytes()))
                    gc.collect()
                    heap_blocks.append((finished, sys.getallocatedblocks()))
                    emulator_rss.append(asyncio.create_task(emulator_sample(finished)))
                    next_mark = marks.pop(0) if marks else n + 1
                    if progress is not None:
                        elapsed = time.perf_counter() - began
                        progress(
                            f"  {finished:>11,} done in {elapsed:7.1f} s "
                            f"({finished / elapsed:,.0f}/s), {len(done)} actions, "
                            f"{sum(failed.values())} failed, client RSS {_mib(rss[-1][1])}"
                        )

        def reached(at: int) -> bool:
            return finished >= at

        def live(killed: Token | None) -> Token | None:
            token = sf.auth.current_token
            return token if token is not killed else None

        async def direct() -> None:
            nonlocal site
            killed = None
            for action in plan:
                await _until(functools.partial(reached, action.at))
                # The previous action's refresh must be over: act on a token that is live.
                token = await _until(functools.partial(live, killed))
                detail = ""
                if action.kind == "revoke":
                    if not await emu.call("revoke", token.access_token):
                        done.append(("revoke missed", finished, "token was not live"))
                        continue
                elif action.kind == "move":
                    detail = urls[action.site]
                    await emu.call("move", detail)
                else:
                    await emu.call("expire")
                killed = token
                done.append((action.kind, finished, detail))
                if action.kind == "move":
                    await _until(functools.partial(live, killed))
                    site = action.site  # requests started from now on belong there

        began = time.perf_counter()
        if telemetry is not None:
            timeline.append((0, 0.0, telemetry[1]()))  # the first login is already done
        director = asyncio.create_task(direct())
        try:
            await asyncio.gather(*(worker() for _ in range(min(in_flight, n))))
        finally:
            seconds = time.perf_counter() - began
            director.cancel()
            await asyncio.gather(director, return_exceptions=True)
        await emu.call("faults", 0, None)
        stats = await emu.call("stats")
        emulator_samples = list(await asyncio.gather(*emulator_rss))
    return SoakResult(
        requests=n,
        in_flight=in_flight,
        fault_rate=fault_rate,
        seed=seed,
        max_relogins=max_relogins,
        ok=ok,
        failed=dict(failed),
        faults=stats["faults"],
        served=stats["served"],
        unauthorized=stats["unauthorized"],
        retries=events["sfauth.retry.scheduled"],
        replays=events["sfauth.request.replayed"],
        token_requests=stats["token_requests"],
        logins=stats["logins"],
        token_faults=stats["token_faults"],
        planned=plan,
        done=done,
        ok_by_instance={(urls[i] if i >= 0 else "elsewhere"): by_site[i] for i in sorted(by_site)},
        strays=strays,
        rss=rss,
        heap_blocks=heap_blocks,
        emulator_rss=emulator_samples,
        seconds=seconds,
        events=dict(events),
        timeline=timeline,
    )


def _telemetry() -> tuple[Any, Callable[[], dict[str, int]]] | None:
    """An in-memory OpenTelemetry meter provider and a reader of sfauth's counters.

    ``None`` without the OpenTelemetry SDK (``pip install -e '.[dev]'`` has it).
    """
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    except ImportError:
        return None
    reader = InMemoryMetricReader()

    def read() -> dict[str, int]:
        counts: collections.Counter[str] = collections.Counter()
        data = reader.get_metrics_data()
        for exported in data.resource_metrics if data is not None else ():
            for scope in exported.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = int(getattr(point, "value", 0))
                        if metric.name == "sfauth.token.requests":
                            counts["token requests"] += value
                        elif metric.name == "sfauth.request.retries":
                            counts[f"{point.attributes['sfauth.retry.target']} retries"] += value
                        elif metric.name == "sfauth.request.replays":
                            counts["401 replays"] += value
        return dict(counts)

    return MeterProvider(metric_readers=[reader]), read


def plot_timeline(result: SoakResult, path: Path) -> bool:
    """Plot token requests and retries over the run from ``result.timeline`` into ``path``.

    Returns:
        ``False`` (nothing written) when the run has no timeline or matplotlib is missing.
    """
    if len(result.timeline) < 2:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    done = [finished for finished, _, _ in result.timeline]
    counts = [counters for _, _, counters in result.timeline]

    def total(name: str) -> list[int]:
        return [c.get(name, 0) for c in counts]

    def per_interval(name: str) -> list[int]:
        values = total(name)
        return [b - a for a, b in itertools.pairwise(values)]

    figure, (logins, retries) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    logins.step(done, total("token requests"), where="post", color="tab:blue")
    logins.set_ylabel("token requests (cumulative)")
    colours = {"expire": "tab:orange", "revoke": "tab:red", "move": "tab:purple"}
    for kind, at, _ in result.done:
        for axis in (logins, retries):
            axis.axvline(at, color=colours.get(kind, "grey"), linewidth=0.8, linestyle=":")
    logins.set_title(
        f"Soak: {result.requests:,} requests, {result.in_flight:,} in flight, "
        f"{result.fault_rate:.0%} faults; dotted: expiry (orange), revocation (red), "
        "instance move (purple)",
        fontsize=9,
    )
    middle = [(a + b) / 2 for a, b in itertools.pairwise(done)]
    for name, colour in (("api retries", "tab:green"), ("token retries", "tab:red")):
        retries.plot(middle, per_interval(name), label=name, color=colour)
    retries.plot(middle, per_interval("401 replays"), label="401 replays", color="tab:orange")
    retries.set_ylabel(f"per {result.requests // TIMELINE_POINTS:,} requests")
    retries.set_xlabel("requests completed")
    retries.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


async def _until(check: Callable[[], T | None]) -> T:
    """Poll ``check`` every few milliseconds until it returns something truthy; return that."""
    while True:
        value = check()
        if value:
            return value
        await asyncio.sleep(_POLL)


# ---------------------------------------------------------------------------------- summary


def write_summary(
    result: SoakResult, path: Path, command: str, also: tuple[Path, ...] = ()
) -> str:
    """Write ``result``'s markdown section to ``path`` and return it.

    ``also``: other files this run wrote (the plot); like ``path``, they do not make the
    recorded revision ``-dirty``.
    """
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = result.markdown(command=command, when=when, revision=revision(path, *also))
    path.write_text(text)
    return text


def soak_section(path: str | os.PathLike[str]) -> str:
    """The markdown section of the soak recorded in ``path``, or ``"no soak run recorded"``.

    For the benchmark report: embed it in RESULTS.md as is (it starts with ``## Soak: ...``).
    """
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return NO_RUN
    return text or NO_RUN


# ---------------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    """The command-line options."""
    options = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_argument("--requests", type=int, default=100_000)
    options.add_argument("--in-flight", type=int, default=1_000)
    options.add_argument("--fault-rate", type=float, default=0.12)
    options.add_argument("--expiries", type=int, default=10, help="instance moves included")
    options.add_argument("--revocations", type=int, default=3)
    options.add_argument("--instance-moves", type=int, default=1)
    options.add_argument("--seed", type=int, default=7)
    options.add_argument("--no-pin", action="store_true", help="do not pin client and emulator")
    options.add_argument("--write", type=Path, help="write the summary as markdown to this file")
    options.add_argument(
        "--plot", type=Path, help="plot token requests and retries over the run (PNG)"
    )
    return options


def command_line(args: argparse.Namespace) -> str:
    """The full command that reproduces ``args`` (every setting spelled out)."""
    words = [
        "python",
        "-m",
        "benchmarks.soak",
        f"--requests={args.requests}",
        f"--in-flight={args.in_flight}",
        f"--fault-rate={args.fault_rate:g}",
        f"--expiries={args.expiries}",
        f"--revocations={args.revocations}",
        f"--instance-moves={args.instance_moves}",
        f"--seed={args.seed}",
    ]
    if args.no_pin:
        words.append("--no-pin")
    if args.write is not None:
        words.append(f"--write={args.write}")
    if args.plot is not None:
        words.append(f"--plot={args.plot}")
    return shlex.join(words)


def main(argv: list[str] | None = None) -> int:
    options = parser()
    args = options.parse_args(argv)
    try:
        plan_actions(args.requests, args.expiries, args.revocations, args.instance_moves)
    except ValueError as exc:
        options.error(str(exc))
    raise_fd_limit()
    print(
        f"soak: {args.requests:,} requests, {args.in_flight:,} in flight, fault rate "
        f"{args.fault_rate:.0%}, {args.expiries} expiries ({args.instance_moves} of them "
        f"instance moves) + {args.revocations} revocations, seed {args.seed}",
        flush=True,
    )
    result = asyncio.run(
        soak(
            requests=args.requests,
            in_flight=args.in_flight,
            fault_rate=args.fault_rate,
            expiries=args.expiries,
            revocations=args.revocations,
            instance_moves=args.instance_moves,
            seed=args.seed,
            pin=not args.no_pin,
            progress=functools.partial(print, flush=True),
        )
    )
    print(result.report())
    if args.plot is not None:
        if plot_timeline(result, args.plot):
            print(f"plot written to {args.plot}")
        else:
            print("no plot: the OpenTelemetry SDK or matplotlib is not installed")
    if args.write is not None:
        plots = (args.plot,) if args.plot is not None else ()
        write_summary(result, args.write, command_line(args), also=plots)
        print(f"summary written to {args.write}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
