"""Measurements beside the rounds, each in a fresh process: herds, memory, GC, profile…"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import cProfile
import gc
import os
import pstats
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._clients import (
    CLIENT_ID,
    PARAMS,
    QUERY_PATH,
    USERNAME,
    Target,
    closed_loop,
    fetch_token,
    sfauth_session,
)
from benchmarks._worker import cpu_seconds


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class GcTimer:
    """Seconds CPython's cyclic garbage collector ran while the ``with`` block ran.

    Timed by ``gc.callbacks`` (``perf_counter`` at each collection's start and stop).
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began: float | None = None

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        elif self._began is not None:  # not the end of a collection begun before the block
            self.seconds += time.perf_counter() - self._began
            self._began = None

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self._on_collection)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(ValueError):  # the block may have cleared gc.callbacks
            gc.callbacks.remove(self._on_collection)


def sfauth_one(sf: Any) -> Callable[[], Awaitable[bool]]:
    async def one() -> bool:
        async with sf.get(QUERY_PATH, params=PARAMS) as resp:
            body = await resp.json()
            return resp.status == 200 and len(body["records"]) == 3

    return one


# -------------------------------------------------------------------------------- layers

#: The layers probe's clients, each adding one layer of sfauth's direct path to the one before.
LAYERS = (
    "aiohttp",
    "aiohttp, bearer per request",
    "+ a request object of its own",
    "+ the middleware's send",
    "+ AuthSession's request",
)


class _RequestObject:
    """The least an ``async with sf.get(...)`` API adds around a send, and nothing of sfauth's.

    It holds the send and its arguments, awaits the send on entry and releases the response
    on exit, as ``AuthSession``'s request object does around its own work.
    """

    __slots__ = ("_args", "_kwargs", "_resp", "_send")

    def __init__(self, send: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> None:
        self._send = send
        self._args = args
        self._kwargs = kwargs
        self._resp: Any = None

    async def __aenter__(self) -> Any:
        self._resp = resp = await self._send(*self._args, **self._kwargs)
        return resp

    async def __aexit__(self, *exc_info: object) -> None:
        resp = self._resp
        resp.release()
        await resp.wait_for_close()


async def layers(target: Target, concurrency: int, n: int, rounds: int) -> dict[str, Any]:
    """Where sfauth's cost over raw aiohttp goes: its direct path taken apart, layer by layer.

    One process, one event loop, ``rounds`` interleaved rounds (order reversed every other
    round) of ``n`` requests per client at ``concurrency``, CPU time per round:

    - ``aiohttp``: the fixed-header ceiling of the main table;
    - ``aiohttp, bearer per request``: ``AuthSession``'s own pool (``sf.http``), the bearer in
      each request's headers, redirects off, no middleware: the aiohttp call the direct path
      makes, and nothing of sfauth's;
    - ``+ a request object of its own``: the same call made by a bare ``async with`` object
      (``_RequestObject``), the least any ``async with sf.get(...)`` API adds;
    - ``+ the middleware's send``: that object around ``SalesforceAuthMiddleware.send``
      called directly with the URL built (checks, send slot, the call above, status, usage
      header, body read);
    - ``+ AuthSession's request``: ``sf.get()`` as users write it (the token check, the URL
      and its origin, the view, and sfauth's request object in place of the bare one).
    """
    import aiohttp

    async with sfauth_session(target, concurrency) as sf:
        token = await sf.token()
        url = token.instance_url + QUERY_PATH
        bearer = {"Authorization": "Bearer " + token.access_token}
        view = sf.auth.for_request(relative=True, idempotent=False)
        loop = asyncio.get_running_loop()

        async def checked(resp: Any) -> bool:
            body = await resp.json()
            return bool(resp.status == 200 and len(body["records"]) == 3)

        async def per_request() -> bool:
            async with sf.http.request(
                "GET", url, params=PARAMS, headers=bearer, allow_redirects=False, middlewares=()
            ) as resp:
                await resp.read()  # as the direct path does, inside its retry loop
                return await checked(resp)

        async def in_object() -> bool:
            async with _RequestObject(
                sf.http.request,
                "GET",
                url,
                params=PARAMS,
                headers=bearer,
                allow_redirects=False,
                middlewares=(),
            ) as resp:
                await resp.read()
                return await checked(resp)

        async def send() -> bool:
            async with _RequestObject(
                view.send, sf.http, loop, token, "GET", url, {"params": PARAMS}
            ) as resp:
                return await checked(resp)

        async with aiohttp.ClientSession(
            headers=bearer,
            connector=aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=600.0),
        ) as http:

            async def raw() -> bool:
                async with http.get(url, params=PARAMS) as resp:
                    return await checked(resp)

            clients = dict(
                zip(LAYERS, (raw, per_request, in_object, send, sfauth_one(sf)), strict=True)
            )
            for one in clients.values():
                await closed_loop(one, max(2 * concurrency, 200), concurrency)
            cpu: dict[str, list[float]] = {name: [] for name in LAYERS}
            ok = 0
            for number in range(rounds):
                for name in LAYERS if number % 2 == 0 else LAYERS[::-1]:
                    gc.collect()
                    started = cpu_seconds()
                    done, _ = await closed_loop(clients[name], n, concurrency)
                    cpu[name].append((cpu_seconds() - started) / n)
                    ok += done
    return {
        "concurrency": concurrency,
        "requests": n,
        "rounds": rounds,
        "cpu": cpu,
        "ok": ok,
        "n": n * rounds * len(LAYERS),
    }


# ---------------------------------------------------------------------------------- herd


class _Control:
    """The harness's own aiohttp session to the bench server's ``/_bench`` routes."""

    def __init__(self, http: Any, url: str) -> None:
        self.http = http
        self.url = url

    async def stats(self) -> dict[str, int]:
        async with self.http.get(f"{self.url}/_bench/stats") as resp:
            data: dict[str, int] = await resp.json()
            return data

    async def expire(self) -> None:
        """Expire every session on the server; returns once the server has done it."""
        async with self.http.post(f"{self.url}/_bench/expire") as resp:
            await resp.read()


async def _burst(
    sf: Any,
    n: int,
    *,
    expire_after: int | None = None,
    expire: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """``n`` requests started at once; each one's latency from its own start to its body.

    Also the process's CPU seconds over the burst (``cpu``) and the part of them CPython's
    garbage collector ran (``gc``).

    With ``expire_after``, the coroutine whose request is the ``expire_after``-th to complete
    (counting failures too) then awaits ``expire()`` (the server's answer to the control
    request, in this same event loop; no sleeping) while the rest of the burst keeps running:
    the burst meets the expiry mid-way. Its latency was recorded before, so the control
    request is in no request's latency.
    """
    gc.collect()
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    one = sfauth_one(sf)
    completed = 0
    expiry: dict[str, Any] = {}

    async def timed() -> None:
        nonlocal completed
        t0 = time.perf_counter()
        try:
            good = await one()
        except Exception as exc:
            errors[type(exc).__name__] += 1
        else:
            if good:
                latencies.append(time.perf_counter() - t0)
            else:
                errors["unexpected answer"] += 1
        completed += 1
        if completed == expire_after and expire is not None:
            expiry["completed_before"] = completed
            expiry["sent_at"] = time.perf_counter() - started
            await expire()
            expiry["confirmed_at"] = time.perf_counter() - started
            expiry["completed_when_confirmed"] = completed

    cpu0 = cpu_seconds()
    started = time.perf_counter()
    with GcTimer() as collector:
        await asyncio.gather(*(timed() for _ in range(n)))
    result = {
        "n": n,
        "ok": len(latencies),
        "errors": dict(errors),
        "wall": time.perf_counter() - started,
        "cpu": cpu_seconds() - cpu0,
        "gc": collector.seconds,
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies, default=float("nan")),
    }
    if expire_after is not None:
        result["expiry"] = expiry
    return result


async def _token_round_trip(target: Target, logins: int) -> float:
    """Median seconds of a fresh ``AuthSession``'s first ``token()`` (sign, POST, parse)."""
    round_trips: list[float] = []
    for _ in range(logins):
        async with sfauth_session(target, 10) as fresh:
            t0 = time.perf_counter()
            await fresh.token()
            round_trips.append(time.perf_counter() - t0)
    return statistics.median(round_trips)


def _counted(
    before: dict[str, int], after: dict[str, int], client_before: int, sf: Any
) -> dict[str, int]:
    return {
        "token_requests": after.get("token", 0) - before.get("token", 0),
        "client_token_requests": sf.token_requests - client_before,
        "served_401": after.get("query_401", 0) - before.get("query_401", 0),
        "served_200": after.get("query_200", 0) - before.get("query_200", 0),
    }


async def herd(target: Target, n: int, rounds: int, logins: int = 5) -> dict[str, Any]:
    """Thundering herd, all in flight: ``n`` concurrent requests that all meet an expired session.

    One ``AuthSession`` with ``limit=n`` (every request in flight at once). A warm-up burst
    logs in and opens the connections. Then, per round: a burst with a valid session (the
    baseline), every session expired on the server, and the same burst again (every request
    leaves with the old session, gets the 401 and is replayed), counting the token requests
    the server received and the 401s it served.
    """
    import aiohttp

    async with aiohttp.ClientSession() as http:
        control = _Control(http, target.url)
        round_trip = await _token_round_trip(target, logins)
        async with sfauth_session(target, n) as sf:
            warmup = await _burst(sf, n)
            results = []
            for _ in range(rounds):
                baseline = await _burst(sf, n)
                before = await control.stats()
                client_before = sf.token_requests
                await control.expire()
                expired = await _burst(sf, n)
                after = await control.stats()
                results.append(
                    {"baseline": baseline, "expired": expired}
                    | _counted(before, after, client_before, sf)
                )
    return {
        "n": n,
        "limit": n,
        "warmup": warmup,
        "rounds": results,
        "token_round_trip": round_trip,
    }


async def pool_herd(
    target: Target, n: int, limit: int, rounds: int, at: float = 0.25, logins: int = 5
) -> dict[str, Any]:
    """Thundering herd behind a pool: ``n`` requests through ``AuthSession(limit=limit)``.

    ``limit`` requests are sent at a time (the pool and sfauth's send slots), the others
    wait for a slot. A warm-up burst logs in and opens the connections. Then, per round: a
    burst with a valid session (the baseline), and the same burst again with every session
    expired on the server once ``at`` of its requests have completed (the requests in flight
    then, and any sent with the old token before the client learns of the expiry, get a 401;
    the rest wait for the one refresh), counting the token requests the server received and
    the 401s it served during that burst.
    """
    import aiohttp

    expire_after = max(1, min(n - 1, round(n * at)))
    async with aiohttp.ClientSession() as http:
        control = _Control(http, target.url)
        round_trip = await _token_round_trip(target, logins)
        async with sfauth_session(target, limit) as sf:
            warmup = await _burst(sf, n)
            results = []
            for _ in range(rounds):
                before = await control.stats()
                baseline = await _burst(sf, n)
                middle = await control.stats()
                client_before = sf.token_requests
                expired = await _burst(sf, n, expire_after=expire_after, expire=control.expire)
                after = await control.stats()
                results.append(
                    {
                        "baseline": baseline,
                        "expired": expired,
                        "baseline_401": middle.get("query_401", 0) - before.get("query_401", 0),
                    }
                    | _counted(middle, after, client_before, sf)
                )
    return {
        "n": n,
        "limit": limit,
        "expire_after": expire_after,
        "warmup": warmup,
        "rounds": results,
        "token_round_trip": round_trip,
    }


# ---------------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def memory(target: Target, checkpoints: list[int], concurrency: int) -> dict[str, Any]:
    """RSS after each checkpoint's total of requests through one ``AuthSession``."""
    rows = []
    done = 0
    ok_total = 0
    errors: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    async with sfauth_session(target, concurrency) as sf:
        one = sfauth_one(sf)
        for checkpoint in checkpoints:
            ok, failed = await closed_loop(one, checkpoint - done, concurrency)
            ok_total += ok
            errors.update(failed)
            done = checkpoint
            gc.collect()
            rows.append({"requests": checkpoint, "rss": rss_bytes()})
        token_requests = sf.token_requests
    return {
        "concurrency": concurrency,
        "rows": rows,
        "ok": ok_total,
        "errors": dict(errors),
        "token_requests": token_requests,
        "seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------------------------- GC


def gc_cost(
    target: Target,
    runner: asyncio.Runner,
    clients: list[str],
    levels: list[int],
    n: int,
    rounds: int,
) -> dict[str, Any]:
    """Time CPython's cyclic garbage collector spends per request, per client and concurrency.

    Every client runs in this one process (interleaved rounds, medians), timed by
    ``gc.callbacks`` around each collection, beside the process's CPU time over the round.
    """
    from benchmarks._clients import make_driver

    rows = []
    for level in levels:
        drivers = {name: make_driver(name, target, runner) for name in clients}
        per: dict[str, list[tuple[float, float, int]]] = {name: [] for name in clients}
        ready = []
        try:
            for driver in drivers.values():
                driver.setup(level)
                ready.append(driver)
                driver.run(max(2 * level, 200))
            for _ in range(rounds):
                for name, driver in drivers.items():
                    gc.collect()
                    collections_before = sum(stat["collections"] for stat in gc.get_stats())
                    cpu0 = cpu_seconds()
                    with GcTimer() as collector:
                        ok, errors = driver.run(n)
                    cpu = cpu_seconds() - cpu0
                    assert ok == n, errors
                    count = sum(stat["collections"] for stat in gc.get_stats())
                    per[name].append((collector.seconds, cpu, count - collections_before))
        finally:
            for driver in ready:
                driver.teardown()
        for name, runs in per.items():
            rows.append(
                {
                    "client": name,
                    "concurrency": level,
                    "gc_us": statistics.median(run[0] for run in runs) / n * 1e6,
                    "cpu_us": statistics.median(run[1] for run in runs) / n * 1e6,
                    "share": statistics.median(run[0] / run[1] for run in runs),
                    "collections": statistics.median(run[2] for run in runs),
                }
            )
    return {"requests": n, "rounds": rounds, "rows": rows}


# ---------------------------------------------------------------------------------- assertion


def assertion_cost(target: Target, round_seconds: float, rounds: int) -> dict[str, Any]:
    """Seconds per assertion: sfauth's cached key, PyJWT with the PEM each time, bare signature.

    The three are timed in interleaved rounds (each calibrated to last about
    ``round_seconds``); the median round counts.
    """
    import jwt
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from sfauth._assertion import AssertionSigner
    from sfauth._keys import load_private_key

    with open(target.key_path, "rb") as file:
        pem = file.read()
    key = load_private_key(pem)
    audience = "https://login.salesforce.com"
    signer = AssertionSigner(
        client_id=CLIENT_ID, username=USERNAME, audience=audience, private_key=key
    )
    signing_input = signer.mint().rsplit(".", 1)[0].encode()

    def naive() -> str:
        claims = {
            "iss": CLIENT_ID,
            "sub": USERNAME,
            "aud": audience,
            "exp": int(time.time()) + 180,
        }
        return jwt.encode(claims, pem, algorithm="RS256")

    def bare() -> bytes:
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())

    cases: dict[str, Callable[[], object]] = {"sfauth": signer.mint, "naive": naive, "bare": bare}
    numbers = {}
    for name, fn in cases.items():
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-6)
        numbers[name] = max(1, int(round_seconds / once))
    per_round: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            number = numbers[name]
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            per_round[name].append((time.perf_counter() - t0) / number)
    return {
        "median": {name: statistics.median(times) for name, times in per_round.items()},
        "rounds": per_round,
        "numbers": numbers,
        "key_bits": key.key_size,
        "signing_input_bytes": len(signing_input),
    }


# ---------------------------------------------------------------------------------- profile

_PACKAGE_DIR = os.sep + "sfauth" + os.sep


def _is_sfauth(key: tuple[str, int, str]) -> bool:
    filename = key[0]
    return _PACKAGE_DIR in filename and (_PACKAGE_DIR + "testing" + os.sep) not in filename


def _label(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    marker = filename.rfind(_PACKAGE_DIR)
    short = filename[marker + 1 :] if marker >= 0 else os.path.basename(filename)
    return f"{short}:{line} {name}"


#: Calls counted per request in the steady-state profile: label -> (file name, function name).
#: The sfauth ones name functions of ``sfauth/`` (``tests/test_bench.py`` checks that each
#: still exists); ``locks.py`` is asyncio's.
MARKERS = {
    "TokenManager.get": ("_refresh.py", "get"),
    "TokenManager._join": ("_refresh.py", "_join"),
    "SendGate.try_enter": ("_gate.py", "try_enter"),
    "SendGate.enter": ("_gate.py", "enter"),
    "asyncio Semaphore.acquire": ("locks.py", "acquire"),
    "SalesforceAuthMiddleware.send": ("_middleware.py", "send"),
    "middleware chain hops (__call__)": ("_middleware.py", "__call__"),
    "SalesforceAuthMiddleware._exchange": ("_middleware.py", "_exchange"),
    "Exchange.__init__": ("_exchange.py", "__init__"),
    "sfauth logger _emit": ("_logging.py", "_emit"),
    "UsageTracker.observe": ("_limits.py", "observe"),
    "parse_limit_info": ("_limits.py", "parse_limit_info"),
}

#: Calls counted per replayed request on the 401 path (``is_configured`` is structlog's).
REPLAY_COUNTS = {
    "sfauth logger debug": ("_logging.py", "debug"),
    "sfauth logger _emit": ("_logging.py", "_emit"),
    "structlog is_configured": ("_config.py", "is_configured"),
    "where (URL formatted for a log event or error)": ("_scoping.py", "where"),
    "_redact (event fields rendered)": ("_logging.py", "_redact"),
    "after_rejection (the replay; coroutine resumptions)": ("_replay.py", "after_rejection"),
    "Exchange.__init__": ("_exchange.py", "__init__"),
}


#: The entries above that are not sfauth's own functions.
NOT_SFAUTH = frozenset({("locks.py", "acquire"), ("_config.py", "is_configured")})


def _calls(raw: dict[Any, Any], file_end: str, func: str) -> int:
    return sum(
        entry[1]
        for key, entry in raw.items()
        if key[0].endswith(os.sep + file_end) and key[2] == func
    )


def summarize_profile(profile: cProfile.Profile, n: int) -> dict[str, Any]:
    """Shares of sfauth's own functions and of the calls they make, per request."""
    raw: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    own = []
    for key, (_cc, nc, tt, ct, _callers) in raw.items():
        if _is_sfauth(key):
            own.append(
                {
                    "function": _label(key),
                    "calls_per_request": nc / n,
                    "tottime_us": tt / n * 1e6,
                    "tottime_share": tt / total,
                    "cumtime_share": ct / total,
                }
            )
    callees: dict[str, list[float]] = {}
    for key, (_cc, _nc, _tt, _ct, callers) in raw.items():
        if _is_sfauth(key):
            continue
        for caller, (c_nc, _c_cc, c_tt, _c_ct) in callers.items():
            if _is_sfauth(caller):
                row = callees.setdefault(f"{_label(key)}  (from {_label(caller)})", [0, 0.0])
                row[0] += c_nc
                row[1] += c_tt
    own_tt = sum(row["tottime_share"] for row in own)
    markers = {
        label: _calls(raw, file_end, func) / n for label, (file_end, func) in MARKERS.items()
    }
    return {
        "n": n,
        "profiled_us_per_request": total / n * 1e6,
        "sfauth_own_share": own_tt,
        "own": sorted(own, key=lambda row: row["tottime_share"], reverse=True),
        "callees": [
            {
                "call": name,
                "calls_per_request": calls / n,
                "tottime_us": tt / n * 1e6,
                "share": tt / total,
            }
            for name, (calls, tt) in sorted(callees.items(), key=lambda kv: -kv[1][1])
        ],
        "markers": markers,
    }


async def _replay_profile(target: Target, burst: int) -> dict[str, Any]:
    """cProfile a burst in which every request meets an expired session (the 401 path)."""
    import aiohttp

    async with aiohttp.ClientSession() as control, sfauth_session(target, burst) as sf:
        one = sfauth_one(sf)
        await closed_loop(one, burst, burst)  # log in, open the connections
        async with control.get(f"{target.url}/_bench/stats") as resp:
            before = await resp.json()
        async with control.post(f"{target.url}/_bench/expire") as resp:
            await resp.read()
        gc.collect()
        prof = cProfile.Profile()
        prof.enable()
        ok, errors = await closed_loop(one, burst, burst)
        prof.disable()
        async with control.get(f"{target.url}/_bench/stats") as resp:
            after = await resp.json()
    raw: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    replays = max(after.get("query_401", 0) - before.get("query_401", 0), 1)
    counts = {
        label: _calls(raw, file_end, func) for label, (file_end, func) in REPLAY_COUNTS.items()
    }
    return {
        "burst": burst,
        "replays": replays,
        "token_requests": after.get("token", 0) - before.get("token", 0),
        "ok": ok,
        "errors": errors,
        "per_replay": {name: calls / replays for name, calls in counts.items()},
    }


async def profile(
    target: Target, concurrency: int, n: int, warmup: int, replay_burst: int = 1000
) -> dict[str, Any]:
    """cProfile sfauth, and the fixed-header aiohttp ceiling, over ``n`` requests each."""
    import aiohttp

    results: dict[str, Any] = {}
    async with sfauth_session(target, concurrency) as sf:
        one = sfauth_one(sf)
        await closed_loop(one, warmup, concurrency)
        gc.collect()
        prof = cProfile.Profile()
        prof.enable()
        ok, errors = await closed_loop(one, n, concurrency)
        prof.disable()
        results["sfauth"] = summarize_profile(prof, n) | {"ok": ok, "errors": errors}

    token = await fetch_token(target)
    url = target.url + QUERY_PATH
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {token}"},
        connector=aiohttp.TCPConnector(limit=concurrency),
    ) as http:

        async def raw_one() -> bool:
            async with http.get(url, params=PARAMS) as resp:
                body = await resp.json()
                return resp.status == 200 and len(body["records"]) == 3

        await closed_loop(raw_one, warmup, concurrency)
        gc.collect()
        prof = cProfile.Profile()
        prof.enable()
        ok, errors = await closed_loop(raw_one, n, concurrency)
        prof.disable()
        raw_total = sum(e[2] for e in pstats.Stats(prof).stats.values())  # type: ignore[attr-defined]
        results["aiohttp"] = {"profiled_us_per_request": raw_total / n * 1e6, "ok": ok}
    results["concurrency"] = concurrency
    results["replay"] = await _replay_profile(target, replay_burst)
    return results
