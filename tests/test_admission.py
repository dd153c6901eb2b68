"""Fleet-wide concurrency leases and the API budget guard (issue 14 parts 5-6).

Server-side counts come from the emulator (``peak_in_flight``: REST requests being answered at
once), over real sockets; the leases live in the real Redis.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
import structlog

from sfauth import (
    ApiBudgetError,
    AuthSession,
    RequestTimeoutError,
    SessionClosedError,
    SFAuthError,
    TokenStoreError,
)
from sfauth._admission import STALE_USAGE, Budget
from sfauth._limits import UsageTracker
from sfauth.stores import MemoryTokenStore, RedisTokenStore, TokenStore
from sfauth.testing import Emulator, EmulatorCredentials

from .conftest import REDIS_URL
from .fleet import QUERY, SOQL, Worker, query_status, store_session


def _session(
    emulator: Emulator, creds: EmulatorCredentials, store: TokenStore | None, **overrides: Any
) -> AuthSession:
    return store_session(emulator, creds, store, api_version="62.0", **overrides)


async def _org(sf: AuthSession) -> str:
    return (await sf.token()).org_id


# --- leases ----------------------------------------------------------------------------------


async def test_two_processes_never_exceed_the_fleet_limit(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    emulator.response_delay = 0.01
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as one,
        RedisTokenStore(REDIS_URL, prefix=prefix) as two,
        _session(emulator, creds, one, fleet_limit=3) as first,
        _session(emulator, creds, two, fleet_limit=3) as second,
    ):
        org = await _org(first)
        emulator.reset_peak()
        statuses = await asyncio.gather(
            *(query_status(sf, long_running=True) for sf in (first, second) for _ in range(20))
        )
        assert statuses == [200] * 40
        assert emulator.peak_in_flight == 3  # server-side, both processes together
        assert await one.leases(org) == 0  # every lease given back
        assert first.auth.admission.leases is not None
        assert first.auth.admission.leases.held == 0

        emulator.reset_peak()  # unmarked requests take no lease
        assert await asyncio.gather(*(query_status(first) for _ in range(10))) == [200] * 10
        assert emulator.peak_in_flight == 10


async def test_scope_all_puts_every_request_under_the_limit(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    emulator.response_delay = 0.01
    store = MemoryTokenStore()
    async with (
        _session(emulator, creds, store, fleet_limit=2, fleet_limit_scope="all") as first,
        _session(emulator, creds, store, fleet_limit=2, fleet_limit_scope="all") as second,
    ):
        await _org(first)
        emulator.reset_peak()
        statuses = await asyncio.gather(
            *(query_status(sf) for sf in (first, second) for _ in range(10))
        )
        assert statuses == [200] * 20
        assert emulator.peak_in_flight == 2


async def test_an_awaited_request_reads_its_body_before_giving_the_lease_back(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as store,
        _session(emulator, creds, store, fleet_limit=1) as sf,
    ):
        resp = await sf.get(QUERY, params=SOQL, long_running=True)
        assert await store.leases(await _org(sf)) == 0
        assert (await resp.json())["totalSize"] == 1
        resp.release()


async def test_no_lease_within_the_total_timeout_is_a_timeout_before_sending(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as store,
        _session(emulator, creds, store, fleet_limit=1) as sf,
    ):
        org = await _org(sf)
        async with sf.get(QUERY, params=SOQL, long_running=True) as held:
            assert held.status == 200
            sent = len(emulator.requests)
            with pytest.raises(RequestTimeoutError) as info:
                await query_status(sf, long_running=True, timeout=0.2)  # type: ignore[arg-type]
            assert len(emulator.requests) == sent  # nothing went out
            assert await store.leases(org) == 1
        assert await store.leases(org) == 0
        assert await query_status(sf, long_running=True) == 200
    error = info.value
    assert error.sent is False
    assert "one of the org's fleet_limit=1 leases" in str(error)


async def test_a_cancelled_wait_takes_no_lease(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as store,
        _session(emulator, creds, store, fleet_limit=1) as sf,
    ):
        org = await _org(sf)
        async with sf.get(QUERY, params=SOQL, long_running=True):
            waiting = [asyncio.create_task(query_status(sf, long_running=True)) for _ in range(5)]
            await asyncio.sleep(0)  # queued behind the lease held here
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
        assert await store.leases(org) == 0
        leases = sf.auth.admission.leases
        assert leases is not None
        assert leases.held == 0
        assert await query_status(sf, long_running=True) == 200


async def test_without_redis_the_limit_is_the_sessions_own(
    emulator: Emulator, creds: EmulatorCredentials, unused_tcp_port: int
) -> None:
    emulator.response_delay = 0.01
    store = RedisTokenStore(f"redis://127.0.0.1:{unused_tcp_port}/0", socket_timeout=0.5)
    with structlog.testing.capture_logs() as logs:
        async with _session(emulator, creds, store, fleet_limit=2) as sf:
            await _org(sf)
            emulator.reset_peak()
            statuses = await asyncio.gather(
                *(query_status(sf, long_running=True) for _ in range(10))
            )
    await store.close()
    assert statuses == [200] * 10
    assert emulator.peak_in_flight == 2
    (warning,) = [e for e in logs if e.get("operation") == "lease"]
    assert warning["event"] == "sfauth.fleet.unavailable"
    assert warning["fallback"] == "this session's own 2 leases"


def test_bad_lease_settings() -> None:
    from sfauth import ConfigurationError, Settings

    base = {"client_id": "c", "username": "u", "private_key": "k"}
    with pytest.raises(
        ConfigurationError, match="fleet_limit must be an int >= 1 and <= 100,000; got 0"
    ):
        Settings(**base, fleet_limit=0)  # type: ignore[arg-type]
    with pytest.raises(
        ConfigurationError,
        match=r"lease_ttl must be a finite number of seconds >= 5 and <= 3600; got 1e\+300",
    ):
        Settings(**base, lease_ttl=1e300)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"lease_ttl .* got 0\.001"):
        Settings(**base, lease_ttl=0.001)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"refusal_cooldown .* <= 604800"):
        Settings(**base, refusal_cooldown=1e300)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="fleet_limit_scope must be 'long_running'"):
        Settings(**base, fleet_limit_scope="some")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="api_budget must be in"):
        Settings(**base, api_budget=1.5)  # type: ignore[arg-type]


async def test_marks_must_be_booleans(emulator: Emulator, creds: EmulatorCredentials) -> None:
    from sfauth import ConfigurationError

    async with _session(emulator, creds, None) as sf:
        with pytest.raises(ConfigurationError, match="long_running must be True or False"):
            sf.get(QUERY, long_running="yes")  # type: ignore[arg-type]


# --- 8 processes, one Redis ------------------------------------------------------------------


async def test_eight_processes_never_exceed_25_long_running_requests(
    emulator: Emulator, creds: EmulatorCredentials, key_file: Path, prefix: str
) -> None:
    emulator.response_delay = 0.01
    options = ("--requests", "200", "--fleet-limit", "25", "--long-running")
    workers = [await Worker.start(emulator, creds, key_file, prefix, *options) for _ in range(8)]
    results = [await w.line() for w in workers]
    assert [await w.finish() for w in workers] == [0] * 8
    assert [r["ok"] for r in results] == [200] * 8
    assert emulator.peak_in_flight == 25  # server-side, the 8 processes together
    assert emulator.token_request_count == 1


async def test_a_killed_process_leases_expire_within_the_ttl(
    emulator: Emulator,
    creds: EmulatorCredentials,
    key_file: Path,
    prefix: str,
    redis_client: redis_asyncio.Redis,
) -> None:
    emulator.response_delay = 2.0  # the first process's 25 requests hang
    options = ("--fleet-limit", "25", "--long-running", "--lease-ttl", "5")
    holder = await Worker.start(emulator, creds, key_file, prefix, "--requests", "25", *options)
    await emulator.wait_for_in_flight(25)  # its 25 requests reached the server
    (key,) = [k async for k in redis_client.scan_iter(match=f"{prefix}leases:*")]
    assert await redis_client.zcard(key) == 25
    holder.proc.send_signal(signal.SIGKILL)
    assert await holder.proc.wait() == -signal.SIGKILL
    emulator.response_delay = 0.0
    other = await Worker.start(emulator, creds, key_file, prefix, "--requests", "50", *options)
    # Every lease was the dead process's: the other proceeds once they expired (TTL 1 s).
    assert await other.line() == {
        "phase": 0,
        "ok": 50,
        "failed": {},
        "unsent": 0,
        "token_requests": 0,
    }
    assert await other.finish() == 0
    assert await redis_client.zcard(key) == 0


# --- the API budget guard --------------------------------------------------------------------


async def test_low_priority_requests_stop_at_the_budget_before_sending() -> None:
    async with Emulator(daily_api_limit=1000) as emulator:
        creds = emulator.create_credentials()
        async with _session(emulator, creds, None, api_budget=0.8) as sf:
            emulator.api_usage = 789
            assert await query_status(sf) == 200  # api-usage=790/1000: 79 %
            assert await query_status(sf, low_priority=True) == 200  # 791/1000
            emulator.api_usage = 809
            assert await query_status(sf) == 200  # 810/1000: 81 %
            sent = len(emulator.requests)
            with pytest.raises(ApiBudgetError) as info:
                await query_status(sf, low_priority=True)
            assert len(emulator.requests) == sent  # not a byte sent
            assert await query_status(sf) == 200  # normal requests pass
    error = info.value
    assert (error.used, error.limit, error.budget, error.sent) == (810, 1000, 0.8, False)
    assert str(error) == (
        "low-priority request not sent: the org has used 810 of its 1000 daily API requests "
        "(81.0%), past api_budget=0.8; send it again once the usage Salesforce reports is "
        "below that (the 24-hour window rolls), or without low_priority=True"
    )


async def test_the_budget_reading_is_shared_by_the_fleet(prefix: str) -> None:
    async with Emulator(daily_api_limit=1000) as emulator:
        creds = emulator.create_credentials()
        async with (
            RedisTokenStore(REDIS_URL, prefix=prefix) as one,
            RedisTokenStore(REDIS_URL, prefix=prefix) as two,
            _session(emulator, creds, one, api_budget=0.8) as busy,
            _session(emulator, creds, two, api_budget=0.8) as idle,
        ):
            emulator.api_usage = 849
            assert await query_status(busy) == 200  # 850/1000, shared by the busy process
            budget = busy.auth.admission.budget
            assert budget is not None
            assert budget._publishing is not None
            await budget._publishing
            assert await one.shared_usage(await _org(busy)) is not None
            sent = len(emulator.requests)
            with pytest.raises(ApiBudgetError) as info:
                await query_status(idle, low_priority=True)  # it saw no header itself
            assert len(emulator.requests) == sent
            assert (info.value.used, info.value.limit) == (850, 1000)


async def test_a_stale_reading_is_not_trusted() -> None:
    now = [1000.0]
    usage = UsageTracker(warn_fraction=0.9, clock=lambda: now[0])
    budget = Budget(None, 0.8, usage, lambda: "00D", clock=lambda: now[0])
    await budget.check("00D")  # no reading at all: the request brings one
    usage.observe("api-usage=900/1000")
    with pytest.raises(ApiBudgetError):
        await budget.check("00D")
    now[0] += STALE_USAGE + 1
    await budget.check("00D")  # a minute old: the window may have rolled; it goes out


async def test_without_redis_the_budget_uses_the_sessions_readings(
    unused_tcp_port: int,
) -> None:
    store = RedisTokenStore(f"redis://127.0.0.1:{unused_tcp_port}/0", socket_timeout=0.5)
    async with Emulator(daily_api_limit=100) as emulator:
        creds = emulator.create_credentials()
        with structlog.testing.capture_logs() as logs:
            async with _session(emulator, creds, store, api_budget=0.5) as sf:
                emulator.api_usage = 60
                assert await query_status(sf) == 200
                budget = sf.auth.admission.budget
                assert budget is not None
                assert budget._publishing is not None
                await budget._publishing  # sharing the reading fails: the store pauses
                with pytest.raises(ApiBudgetError):
                    await query_status(sf, low_priority=True)
    await store.close()
    operations = {e["operation"] for e in logs if e["event"] == "sfauth.fleet.unavailable"}
    # The login's refusal check (its guard pauses), then sharing the reading (no retry for 5 s).
    assert operations == {"refusal", "share_usage"}


async def test_a_store_that_breaks_fails_the_waiting_requests_not_hangs_them(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    class Breaking(MemoryTokenStore):
        calls = 0

        async def lease_acquire(self, org: str, ids: list[str], limit: int, ttl: float) -> int:
            self.calls += 1
            if self.calls > 2:  # the first grant, the second try's refusal, then it breaks
                raise RuntimeError("the store broke its protocol")
            return await super().lease_acquire(org, ids, limit, ttl)

    store = Breaking()
    async with _session(emulator, creds, store, fleet_limit=1) as sf:
        await _org(sf)
        async with sf.get(QUERY, params=SOQL, long_running=True):
            with (
                structlog.testing.capture_logs() as logs,
                pytest.raises(RuntimeError, match="the store broke its protocol"),
            ):
                await query_status(sf, long_running=True)
    (failed,) = [e for e in logs if e["event"] == "sfauth.fleet.lease_failed"]
    assert failed["error"] == "RuntimeError: the store broke its protocol"


# --- review fixes ----------------------------------------------------------------------------


async def test_closing_the_session_fails_the_waiters_and_frees_the_leases_in_flight(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    async with RedisTokenStore(REDIS_URL, prefix=prefix) as store:
        sf = _session(emulator, creds, store, fleet_limit=1)
        sf.open()
        org = await _org(sf)
        emulator.response_delay = 5.0
        holder = asyncio.create_task(query_status(sf, long_running=True))
        await emulator.wait_for_in_flight(1)
        waiter = asyncio.create_task(query_status(sf, long_running=True))
        await asyncio.sleep(0.05)  # queued behind the holder's lease
        await sf.close()
        with pytest.raises(SessionClosedError, match="waited for a lease"):
            await waiter  # not a bare CancelledError in a task nobody cancelled
        (outcome,) = await asyncio.gather(holder, return_exceptions=True)
        assert isinstance(outcome, SFAuthError)
        assert await store.leases(org) == 0  # given back, not left for lease_ttl


async def test_sessions_with_different_lease_ttls_keep_each_others_leases(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as store,
        _session(emulator, creds, store, fleet_limit=2, lease_ttl=30) as long,
        _session(emulator, creds, store, fleet_limit=2, lease_ttl=5) as short,
    ):
        org = await _org(long)
        async with long.get(QUERY, params=SOQL, long_running=True):
            assert await query_status(short, long_running=True) == 200
            key = f"{prefix}leases:{org}"
            client = redis_asyncio.Redis.from_url(REDIS_URL)
            try:
                ttl = await client.pttl(key)
            finally:
                await client.aclose()
            assert 29_000 < ttl <= 30_001  # the set lives as long as its longest lease
            assert await store.leases(org) == 1


async def test_a_store_that_fails_mid_run_never_doubles_the_sessions_leases(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    class Flaky(MemoryTokenStore):
        down = False

        async def lease_acquire(self, org: str, ids: list[str], limit: int, ttl: float) -> int:
            if self.down:
                raise TokenStoreError("Redis lease grant failed: ConnectionError: down")
            return await super().lease_acquire(org, ids, limit, ttl)

        async def lease_release(self, org: str, ids: list[str]) -> None:
            if not self.down:
                await super().lease_release(org, ids)

    store = Flaky()
    emulator.response_delay = 0.05
    async with _session(emulator, creds, store, fleet_limit=2) as sf:
        await _org(sf)
        emulator.reset_peak()
        first = [asyncio.create_task(query_status(sf, long_running=True)) for _ in range(2)]
        await emulator.wait_for_in_flight(2)  # 2 store leases held
        store.down = True
        later = [asyncio.create_task(query_status(sf, long_running=True)) for _ in range(4)]
        assert await asyncio.gather(*first, *later) == [200] * 6
    assert emulator.peak_in_flight == 2  # store and local leases together


async def test_a_lease_no_sfauth_session_granted_is_dropped(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str, redis_client: redis_asyncio.Redis
) -> None:
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as store,
        _session(emulator, creds, store, fleet_limit=1) as sf,
    ):
        org = await _org(sf)
        await redis_client.zadd(f"{prefix}leases:{org}", {"left-by-someone": 1e303})
        assert await query_status(sf, long_running=True, timeout=5) == 200  # type: ignore[arg-type]


async def test_query_pages_take_the_marks(prefix: str) -> None:
    async with Emulator(page_size=10, daily_api_limit=1000) as emulator:
        creds = emulator.create_credentials()
        emulator.response_delay = 0.01
        async with _session(emulator, creds, None, fleet_limit=2, api_budget=0.5) as sf:

            async def count() -> int:
                soql = "SELECT Id FROM Account"
                return len([r async for r in sf.query(soql, long_running=True)])

            emulator.reset_peak()
            assert await asyncio.gather(*(count() for _ in range(4))) == [250] * 4
            assert emulator.peak_in_flight == 2  # 4 queries x 25 pages, 2 pages at a time
            emulator.api_usage = 600
            assert await query_status(sf) == 200  # 601/1000: past the budget
            with pytest.raises(ApiBudgetError):
                await anext(sf.query_all("SELECT Id FROM Account", low_priority=True))


# --- second review -----------------------------------------------------------------------------


class _Gated(MemoryTokenStore):
    """A store whose first lease grant waits for ``gate``; later ones fail when ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.grants = 0
        self.down = False
        self.release_failures = 0

    async def lease_acquire(self, org: str, ids: list[str], limit: int, ttl: float) -> int:
        self.grants += 1
        if self.grants == 1:
            await self.gate.wait()
        elif self.down:
            raise TokenStoreError("Redis lease grant failed: ConnectionError: down")
        return await super().lease_acquire(org, ids, limit, ttl)

    async def lease_release(self, org: str, ids: list[str]) -> None:
        if self.release_failures:
            self.release_failures -= 1
            raise TokenStoreError("Redis ZREM lease failed: ConnectionError: blip")
        await super().lease_release(org, ids)


async def test_a_grant_that_fails_while_another_succeeds_never_exceeds_the_limit(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    store = _Gated()
    emulator.response_delay = 0.05
    async with _session(emulator, creds, store, fleet_limit=2) as sf:
        await _org(sf)
        emulator.reset_peak()
        first = asyncio.create_task(query_status(sf, long_running=True))  # its grant waits
        await asyncio.sleep(0.01)
        store.down = True  # the next grant fails: local leases, but only what is left
        others = [asyncio.create_task(query_status(sf, long_running=True)) for _ in range(3)]
        await asyncio.sleep(0.01)
        store.gate.set()
        assert await asyncio.gather(first, *others) == [200] * 4
    assert emulator.peak_in_flight == 2


async def test_a_release_that_fails_is_given_back_later(
    emulator: Emulator, creds: EmulatorCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sfauth._admission._STORE_PAUSE", 0.05)
    store = _Gated()
    store.gate.set()
    async with _session(emulator, creds, store, fleet_limit=2) as sf:
        org = await _org(sf)
        store.release_failures = 1
        assert await query_status(sf, long_running=True) == 200  # its release fails
        assert await store.leases(org) == 1  # left in the store for now
        await asyncio.sleep(0.1)  # the pause after the failure (the store is left alone)
        assert await query_status(sf, long_running=True) == 200
        assert await store.leases(org) == 0  # the next call to the store gave it back


async def test_closing_while_the_first_grant_is_in_flight_is_session_closed(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    store = _Gated()
    sf = _session(emulator, creds, store, fleet_limit=1)
    sf.open()
    org = await _org(sf)
    request = asyncio.create_task(query_status(sf, long_running=True))
    await asyncio.sleep(0.01)  # its grant waits at the gate
    await sf.close()
    store.gate.set()
    with pytest.raises(SessionClosedError, match="waited for a lease"):
        await request
    assert await store.leases(org) == 0
