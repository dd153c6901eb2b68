"""A client process: runs what the harness asks over a pipe and answers with measurements.

Each client (and each sfauth-only probe) runs in a process of its own, pinned to its own CPU
where the platform allows, so the user+sys CPU time measured around a run
(``resource.getrusage(RUSAGE_SELF)``, every thread included) is that client's alone.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import resource
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from benchmarks._clients import Driver, Target, make_driver
from benchmarks._server import pin_to_cpu, raise_fd_limit


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured_run(driver: Driver, n: int) -> dict[str, Any]:
    """One measured round: wall time and CPU time around ``n`` requests."""
    gc.collect()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    ok, errors = driver.run(n)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    return {"n": n, "wall": wall, "cpu": cpu, "ok": ok, "errors": errors, **driver.state()}


#: Imported by every client process before it measures anything, whichever client it runs: the
#: modules a process has imported shift its speed (on the 2-core benchmark machine, importing
#: structlog alone made raw aiohttp's requests about 15 % cheaper), so the processes compared
#: (raw aiohttp, aiohttp+middleware, sfauth) differ only in the code each request runs.
PRELOAD = ("aiohttp", "jwt", "sfauth")


def preload() -> None:
    """Import the libraries of the clients compared (``PRELOAD``) into this process."""
    for module in PRELOAD:
        importlib.import_module(module)


def main(conn: Connection, client: str, target: Target, cpu: int | None) -> None:
    """Process entry point: answer commands until ``("stop",)`` or the pipe closes."""
    pin_to_cpu(cpu)
    raise_fd_limit()
    preload()
    with asyncio.Runner() as runner:
        driver = make_driver(client, target, runner) if client != "probe" else None
        while True:
            try:
                command = conn.recv()
            except EOFError:
                return
            op, args = command[0], command[1:]
            if op == "stop":
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", _dispatch(op, args, driver, target, runner)))
            except BaseException:
                conn.send(("error", traceback.format_exc()))


def _dispatch(
    op: str, args: tuple[Any, ...], driver: Driver | None, target: Target, runner: asyncio.Runner
) -> Any:
    from benchmarks import _probes

    if op == "ping":
        return "pong"
    if op in ("setup", "run", "teardown"):
        assert driver is not None, "a probe process has no client"
        if op == "setup":
            concurrency, warmup = args
            driver.setup(concurrency)
            ok, errors = driver.run(warmup)
            return {"n": warmup, "ok": ok, "errors": errors}
        if op == "run":
            return measured_run(driver, args[0])
        driver.teardown()
        return None
    if op == "herd":
        return runner.run(_probes.herd(target, *args))
    if op == "pool_herd":
        return runner.run(_probes.pool_herd(target, *args))
    if op == "memory":
        return runner.run(_probes.memory(target, *args))
    if op == "assertion":
        return _probes.assertion_cost(target, *args)
    if op == "layers":
        return runner.run(_probes.layers(target, *args))
    if op == "gc":
        return _probes.gc_cost(target, runner, *args)
    if op == "profile":
        return runner.run(_probes.profile(target, *args))
    raise ValueError(f"unknown command {op!r}")
