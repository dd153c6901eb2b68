"""A quick A/B of raw aiohttp and sfauth: ``python -m benchmarks.compare``.

For iterating on the hot path between full ``make bench`` runs (which take minutes): the same
server (``benchmarks/_server.py``, pinned to CPU 0) and the same client drivers as the full
benchmark, both clients in this one process pinned to CPU 1, interleaved rounds, medians.
Prints requests/s and client CPU per request per concurrency, and sfauth's ratios to raw
aiohttp. One process for both clients keeps the run short, but it shifts the ratios (memory
layout, shared caches): compare runs of this script with each other, never with the full
benchmark, whose fresh process per round is the figure of record (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from benchmarks import _server
from benchmarks._clients import Target, make_driver
from benchmarks._worker import preload

CLIENTS = ("aiohttp", "aiohttp+middleware", "sfauth")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="16,64,256,1024", help="concurrencies, e.g. 64,1024")
    parser.add_argument("--requests", type=int, default=6000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with tempfile.TemporaryDirectory() as tmp:
        key_path = Path(tmp) / "bench.pem"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        ours, theirs = multiprocessing.Pipe()
        server = multiprocessing.Process(target=_server.serve, args=(public, theirs, 0))
        server.start()
        try:
            target = Target(url=ours.recv(), key_path=str(key_path))
            _server.pin_to_cpu(1)
            preload()
            with asyncio.Runner() as runner:
                for level in levels:
                    compare(runner, target, level, args.requests, args.rounds)
        finally:
            ours.send("stop")
            server.join()


def compare(runner: asyncio.Runner, target: Target, level: int, n: int, rounds: int) -> None:
    drivers = {name: make_driver(name, target, runner) for name in CLIENTS}
    for driver in drivers.values():
        driver.setup(level)
        driver.run(max(2 * level, 500))  # warm up: log in, open the pool's connections
    walls: dict[str, list[float]] = {name: [] for name in CLIENTS}
    cpus: dict[str, list[float]] = {name: [] for name in CLIENTS}
    try:
        for _ in range(rounds):
            for name, driver in drivers.items():
                gc.collect()
                cpu0, t0 = cpu_seconds(), time.perf_counter()
                ok, errors = driver.run(n)
                walls[name].append(time.perf_counter() - t0)
                cpus[name].append(cpu_seconds() - cpu0)
                assert ok == n, errors
    finally:
        for driver in drivers.values():
            driver.teardown()
    rate = {name: n / statistics.median(walls[name]) for name in CLIENTS}
    cpu = {name: statistics.median(cpus[name]) / n * 1e6 for name in CLIENTS}
    for name in CLIENTS:
        print(f"c={level:<5} {name:<8} {rate[name]:>9,.0f} req/s {cpu[name]:>7.1f} us CPU/req")
    print(
        f"c={level:<5} sfauth/aiohttp: {rate['sfauth'] / rate['aiohttp']:.3f} x req/s, "
        f"{cpu['sfauth'] / cpu['aiohttp']:.3f} x CPU/req",
        flush=True,
    )


if __name__ == "__main__":
    main()
