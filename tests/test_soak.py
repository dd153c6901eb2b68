"""A reduced soak in CI: faults, expiries and a revocation lose no request (issue #3)."""

from __future__ import annotations

from benchmarks.soak import soak


async def test_reduced_soak_loses_nothing() -> None:
    result = await soak(requests=2_000, in_flight=200, fault_rate=0.15, expiries=3, seed=11)
    print(result.report())
    assert result.failed == {}
    assert result.ok == 2_000
    assert sum(result.faults.values()) / result.served >= 0.10
    assert result.retries > 0
    assert result.replays > 0
    assert (result.expiries, result.revocations) == (3, 1)
    assert result.logins == 5
    assert result.passed
