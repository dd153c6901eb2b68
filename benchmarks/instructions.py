"""Instructions per request: sfauth against raw aiohttp, counted, not timed.

Run with ``make bench-instructions`` (or ``python -m benchmarks.instructions --help``). On a
shared 2-core VM single rounds swing by 20-30 % for every client alike, so ``make bench`` can
often not tell a CPU ratio of 1.08 from 1.15 (its 95 % intervals say so). Valgrind's callgrind
counts the instructions a process executes instead: the same count for the same binary, inputs
and event-loop schedule, whatever else the machine is doing. Each client (raw aiohttp with a
fixed bearer, aiohttp with a stamping middleware, sfauth's ``AuthSession``; configured as in
``make bench``, benchmarks/_clients.py) runs twice under callgrind against the benchmark server
(benchmarks/_server.py, in its own process, not under valgrind): once with only its set-up and
warm-up, once with ``--requests`` more requests, at each ``--concurrency`` (by default the
levels ``make bench`` targets). The difference over the requests is its instructions per
request; the ratio to raw aiohttp's at the same concurrency is the per-request overhead without
the noise. Instructions are not time: cache misses and branch mispredictions are not counted,
so the ratio is a floor of the CPU-time ratio, not a replacement for it (``make bench``
measures that).

It also counts the Python bytecodes each function executes per request (``sys.settrace`` opcode
events, without valgrind, at ``--bytecodes-at``) for raw aiohttp and sfauth, and lists the
functions whose count differs: where sfauth's extra instructions are spent, per function.
``--write FILE`` writes the report as markdown (``benchmarks/INSTRUCTIONS.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import _provenance, _server, _worker, bench
from benchmarks._clients import Target, make_driver

CLIENTS = ("aiohttp", "aiohttp+middleware", "sfauth")
_COLLECTED = re.compile(r"==\d+== Collected : (\d+)")
_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Count:
    """Instructions of one client at ``concurrency``: with its set-up and warm-up only, and with
    ``n`` more requests."""

    client: str
    base: int
    total: int
    n: int
    concurrency: int

    @property
    def per_request(self) -> float:
        """Instructions per request (the difference of the two runs over ``n``)."""
        return (self.total - self.base) / self.n


def child(url: str, key: str, client: str, concurrency: int, requests: int, ops: str) -> None:
    """One client process: set up, warm up, then ``requests`` more requests.

    With ``ops`` (a file path), the ``requests`` are counted bytecode by bytecode per function
    (``sys.settrace``) and the counts written there as JSON.
    """
    _server.pin_to_cpu(1)
    _worker.preload()
    with asyncio.Runner() as runner:
        driver = make_driver(client, Target(url=url, key_path=key), runner)
        driver.setup(concurrency)
        ok, errors = driver.run(max(2 * concurrency, 200))
        if errors:
            raise SystemExit(f"{client}: warm-up failed: {errors}")
        if requests:
            counts: collections.Counter[str] = collections.Counter()
            if ops:
                sys.settrace(_tracer(counts))
            ok, errors = driver.run(requests)
            sys.settrace(None)
            if errors or ok != requests:
                raise SystemExit(f"{client}: {ok} of {requests} ok: {errors}")
            if ops:
                Path(ops).write_text(json.dumps(counts))
        driver.teardown()


def _tracer(counts: collections.Counter[str]) -> Any:
    """A ``sys.settrace`` function counting opcode events by ``file:line function``."""

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        if event == "call":
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
        elif event == "opcode":
            code = frame.f_code
            counts[f"{_short(code.co_filename)}:{code.co_firstlineno} {code.co_qualname}"] += 1
        return trace

    return trace


def _short(filename: str) -> str:
    """A source path without the site-packages or repository prefix."""
    for marker in ("site-packages/", f"{_ROOT}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return os.path.basename(filename)


def _command(target: Target, client: str, concurrency: int, requests: int, ops: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        json.dumps([target.url, target.key_path, client, concurrency, requests, ops]),
    ]


def instructions(target: Target, client: str, concurrency: int, requests: int) -> int:
    """Instructions callgrind counted for one client process (``requests`` after warm-up)."""
    with tempfile.TemporaryDirectory(prefix="sfauth-callgrind-") as folder:
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={folder}/callgrind.out",
                *_command(target, client, concurrency, requests, ""),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            cwd=_ROOT,
            check=False,
        )
    found = _COLLECTED.findall(result.stderr)
    if result.returncode != 0 or not found:
        raise RuntimeError(f"{client} under callgrind failed: {result.stderr[-2000:]}")
    return int(found[-1])


def opcodes(target: Target, client: str, concurrency: int, requests: int) -> dict[str, float]:
    """Bytecodes per request by function, for one client process."""
    with tempfile.TemporaryDirectory(prefix="sfauth-opcodes-") as folder:
        path = os.path.join(folder, "ops.json")
        subprocess.run(
            _command(target, client, concurrency, requests, path), cwd=_ROOT, check=True
        )
        counts: dict[str, int] = json.loads(Path(path).read_text())
    return {name: count / requests for name, count in counts.items()}


def report(
    counts: list[Count],
    ops: dict[str, dict[str, float]],
    concurrency: int,
    command: str,
    source: str,
) -> str:
    """The markdown report: instructions per request and ratios, then bytecodes by function.

    Args:
        counts: Every client's counts, at one or more concurrencies (a ratio is to raw
            aiohttp's at the same concurrency).
        ops: Bytecodes per request by function, for ``aiohttp`` and ``sfauth``.
        concurrency: The concurrency ``ops`` were counted at.
        command: The command line, as the report shows it.
        source: The git revision (``_provenance.revision``).
    """
    raw = {c.concurrency: c for c in counts if c.client == "aiohttp"}
    levels = sorted(raw)
    shown = ", ".join(f"{level:,}" for level in levels)
    requests = ", ".join(f"{raw[level].n:,}" for level in levels)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = _provenance.machine(("aiohttp", "multidict", "yarl"))
    out = [
        "## Instructions per request (callgrind)",
        "",
        f"`{command}` on {when}; sfauth source: {source}.",
        "",
        f"- Machine: {machine['cpu']}; {machine['os']}",
        f"- Python: {machine['python']}; {machine['versions']}; {_valgrind_version()}",
        "",
        f"Each client sends `GET /services/data/v62.0/query` with {shown} requests in "
        "flight, as in `make bench` (§1), in a process run twice under valgrind's callgrind: "
        f"once with its set-up and warm-up only, once with {requests} more requests "
        "(by concurrency). Instructions per request = the difference / the requests; the "
        "ratio is to raw aiohttp's at the same concurrency. Instructions are not "
        "time (cache misses are not counted): the ratio is a floor of the CPU-time ratio.",
        "",
        "| concurrency | client | instructions, set-up only | with the requests | per request "
        "| x aiohttp |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for c in sorted(counts, key=lambda c: (c.concurrency, CLIENTS.index(c.client))):
        out.append(
            f"| {c.concurrency:,} | {c.client} | {c.base:,} | {c.total:,} | "
            f"{c.per_request:,.0f} | {c.per_request / raw[c.concurrency].per_request:.3f} |"
        )
    mine, theirs = ops.get("sfauth", {}), ops.get("aiohttp", {})
    if mine and theirs:
        rows = sorted(set(mine) | set(theirs), key=lambda k: -(mine.get(k, 0) - theirs.get(k, 0)))
        rows = [k for k in rows if abs(mine.get(k, 0) - theirs.get(k, 0)) >= 0.5]
        out += [
            "",
            f"Python bytecodes per request at concurrency {concurrency:,}: aiohttp "
            f"{sum(theirs.values()):,.0f}, sfauth "
            f"{sum(mine.values()):,.0f} ({sum(mine.values()) / sum(theirs.values()):.3f}x; "
            "`sys.settrace` opcode events, not under valgrind). The functions whose count "
            "differs by half a bytecode or more:",
            "",
            "| function | aiohttp | sfauth | difference |",
            "|---|---:|---:|---:|",
        ]
        for k in rows:
            a, s = theirs.get(k, 0), mine.get(k, 0)
            out.append(f"| `{k}` | {a:,.1f} | {s:,.1f} | {s - a:+,.1f} |")
    return "\n".join(out) + "\n"


def _valgrind_version() -> str:
    result = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    return result.stdout.strip() or "valgrind"


def parser() -> argparse.ArgumentParser:
    """The command line (``--help``)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--requests",
        type=int,
        default=3000,
        help="requests counted per client and concurrency, at least 100 and at least 3 x "
        "the concurrency (repeat runs of 3,000 at 64 agreed within 0.05 %% in one session, "
        "about 0.5 %% across sessions)",
    )
    p.add_argument(
        "--concurrency",
        type=_levels,
        default=(16, 64, 256, 1024),
        help="requests in flight, comma-separated (default 16,64,256,1024, as make bench)",
    )
    p.add_argument(
        "--bytecodes-at",
        type=int,
        default=64,
        help="the concurrency the bytecodes by function are counted at (default 64)",
    )
    p.add_argument("--write", help="write the report (markdown) to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


def _levels(text: str) -> tuple[int, ...]:
    """``--concurrency``: comma-separated positive integers."""
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of whole numbers such as 16,64"
        ) from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"every concurrency must be at least 1; got {text!r}")
    return levels


def main(argv: list[str] | None = None) -> int:
    """Count, print the report, and write it with ``--write``."""
    args = parser().parse_args(argv)
    if args.child:
        child(*json.loads(args.child))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    if args.requests < 100 or args.bytecodes_at < 1:
        print("--requests and --bytecodes-at must be at least 100 and 1", file=sys.stderr)
        return 2
    counts = []
    ops = {}
    with bench.served(0) as (target, _):  # the server on CPU 0, the clients on 1
        for level in dict.fromkeys(args.concurrency):  # in order, once each
            n = max(args.requests, 3 * level)  # every request slot used a few times over
            for client in CLIENTS:
                base = instructions(target, client, level, 0)
                total = instructions(target, client, level, n)
                if total <= base:  # the requests cost nothing: the runs differ by more
                    raise SystemExit(
                        f"{client} at {level}: {total:,} instructions with the requests, "
                        f"{base:,} without: too few requests to count (raise --requests)"
                    )
                counts.append(Count(client, base, total, n, level))
                print(
                    f"concurrency {level}, {client}: {counts[-1].per_request:,.0f} "
                    "instructions per request",
                    flush=True,
                )
        for client in ("aiohttp", "sfauth"):
            ops[client] = opcodes(target, client, args.bytecodes_at, min(args.requests, 1000))
    command = "python -m benchmarks.instructions " + " ".join(argv or sys.argv[1:])
    source = _provenance.revision(*([Path(args.write)] if args.write else []))
    text = report(counts, ops, args.bytecodes_at, command.strip(), source)
    print(text)
    if args.write:
        Path(args.write).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
