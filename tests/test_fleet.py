"""Fleet login protection (issue 14 parts 3-4): refusal memory, login-rate back-off and cap.

In one process with two stores on the real Redis (each store object is what one process of a
fleet holds), then with 8 OS processes; the token endpoint is the emulator's, over sockets.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
import structlog

from sfauth import (
    AuthSession,
    CircuitOpenError,
    InvalidClientError,
    InvalidGrantError,
    LoginRateExceededError,
    RetryPolicy,
    TokenStoreError,
    TransientTokenError,
)
from sfauth._fleet import Refusal, user_key
from sfauth.cli import main
from sfauth.stores import MemoryTokenStore, RedisTokenStore
from sfauth.testing import Emulator, EmulatorCredentials, ScriptedResponse

from .conftest import REDIS_URL
from .fleet import Worker, integration_key, query_status, store_session

NOT_APPROVED = ScriptedResponse(
    status=400,
    json={"error": "invalid_grant", "error_description": "user hasn't approved this consumer"},
)
RATE = ScriptedResponse(
    status=400, json={"error": "invalid_grant", "error_description": "login rate exceeded"}
)


# --- refusal memory --------------------------------------------------------------------------


async def test_a_refusal_is_remembered_for_the_fleet_until_cleared(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    emulator.script_token_responses([NOT_APPROVED])
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as one,
        RedisTokenStore(REDIS_URL, prefix=prefix) as two,
        store_session(emulator, creds, one) as first,
        store_session(emulator, creds, two) as second,
    ):
        with pytest.raises(InvalidGrantError) as sent:
            await query_status(first)
        assert sent.value.sent is True
        assert emulator.token_request_count == 1

        with structlog.testing.capture_logs() as logs:
            for _ in range(3):  # every request of the other process, without a login
                with pytest.raises(InvalidGrantError) as remembered:
                    await query_status(second)
        assert emulator.token_request_count == 1
        error = remembered.value
        assert type(error) is InvalidGrantError
        assert (error.error, error.error_description, error.status, error.sent) == (
            "invalid_grant",
            "user hasn't approved this consumer",
            400,
            False,
        )
        assert error.retry_in is not None
        assert 295 < error.retry_in <= 300
        assert "Not sent: the token endpoint gave this answer" in str(error)
        assert "Pre-authorize the user's profile" in str(error)  # the original hint follows
        events = [e["event"] for e in logs if e["event"].startswith("sfauth.token.refusal")]
        assert events == ["sfauth.token.refusal_remembered"]  # once, not once per request
        assert second.token_requests == 0
        # Not a failed login of this session: its circuit stays closed.
        assert not second.auth._engine.manager.circuit_is_open()

        assert await second.clear_refusal() is True
        assert await second.clear_refusal() is False
        assert await query_status(second) == 200  # the script is spent: the login works
        assert emulator.token_request_count == 2


async def test_a_session_asks_the_store_for_the_refusal_at_most_once_a_second(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    class Counting(MemoryTokenStore):
        asked = 0

        async def refusal(self, key: str) -> tuple[Refusal, float] | None:
            self.asked += 1
            return await super().refusal(key)

    store = Counting()
    refusal = Refusal("InvalidClientError", "app_not_found", "app not installed", 400, 0.0)
    await store.refuse(integration_key(emulator, creds), refusal, 60)
    async with store_session(emulator, creds, store) as sf:
        for _ in range(50):
            with pytest.raises(InvalidClientError, match="app not installed"):
                await query_status(sf)
        assert store.asked == 1  # then raised from memory for a second
        assert await sf.clear_refusal() is True
        assert await query_status(sf) == 200  # clearing also forgets what this session saw
    assert emulator.token_request_count == 1


async def test_a_login_anywhere_ends_the_refusal(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    key = integration_key(emulator, creds)
    async with RedisTokenStore(REDIS_URL, prefix=prefix) as store:
        refusal = Refusal("InvalidGrantError", "invalid_grant", "inactive user", 400, 0.0)
        await store.refuse(key, refusal, 60)
        found = await store.refusal(key)
        assert found is not None
        assert found[0] == refusal
        assert 59 < found[1] <= 60
        async with store_session(emulator, creds, store, refusal_cooldown=0) as sf:
            with pytest.raises(InvalidGrantError, match="inactive user"):
                await query_status(sf)  # remembered, whatever this session's own cooldown
            await store.clear_refusal(key)
            await store.refuse(key, refusal, 60)
            # A process whose login was already on its way publishes: that clears it.
            token = await store_session(emulator, creds, None).__aenter__()
            published = await token.token()
            await token.close()
            await store.publish(key, published)
            assert await store.refusal(key) is None
            assert await query_status(sf) == 200
    assert emulator.token_request_count == 1


async def test_the_refusal_lapses_after_the_cooldown(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    emulator.script_token_responses([NOT_APPROVED])
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as store,
        store_session(emulator, creds, store, refusal_cooldown=0.3) as sf,
    ):
        with pytest.raises(InvalidGrantError):
            await query_status(sf)
        with pytest.raises(InvalidGrantError) as remembered:
            await query_status(sf)
        assert remembered.value.sent is False
        assert remembered.value.retry_in is not None
        await asyncio.sleep(remembered.value.retry_in)  # Redis's own TTL decides
        assert await query_status(sf) == 200
    assert emulator.token_request_count == 2


@pytest.mark.parametrize(
    ("body", "error_class"),
    [
        ({"error": "invalid_client_id", "error_description": "client identifier invalid"},
         InvalidClientError),
        ({"error": "app_not_found", "error_description": "app not installed"},
         InvalidClientError),
    ],
)  # fmt: skip
async def test_every_permanent_refusal_is_remembered_with_its_class(
    emulator: Emulator,
    creds: EmulatorCredentials,
    body: dict[str, str],
    error_class: type[Exception],
) -> None:
    store = MemoryTokenStore()  # sessions of one process share the memory too
    emulator.script_token_responses([ScriptedResponse(status=400, json=body)])
    async with (
        store_session(emulator, creds, store) as one,
        store_session(emulator, creds, store) as two,
    ):
        with pytest.raises(error_class):
            await query_status(one)
        with pytest.raises(error_class) as remembered:
            await query_status(two)
    assert remembered.value.error == body["error"]  # type: ignore[attr-defined]
    assert remembered.value.sent is False  # type: ignore[attr-defined]
    assert emulator.token_request_count == 1


@pytest.mark.parametrize(
    "response",
    [
        # This host's clock, not the fleet's problem.
        ScriptedResponse(
            status=400,
            json={"error": "invalid_grant", "error_description": "expired authorization code"},
        ),
        # Transient: retried, never remembered.
        ScriptedResponse(
            status=503, json={"error": "unknown_error", "error_description": "retry"}
        ),
    ],
    ids=["clock-skew", "transient"],
)
async def test_what_is_not_the_fleets_problem_is_not_remembered(
    emulator: Emulator, creds: EmulatorCredentials, response: ScriptedResponse
) -> None:
    store = MemoryTokenStore()
    emulator.script_token_responses([response] * 10)
    async with (
        store_session(emulator, creds, store, retry=None, refresh_timeout=0.5) as one,
        store_session(emulator, creds, store) as two,
    ):
        with pytest.raises((InvalidGrantError, TransientTokenError)):
            await query_status(one)
        emulator.clear_scripts()
        assert await query_status(two) == 200
    assert await store.refusal(integration_key(emulator, creds)) is None


async def test_without_a_store_a_refusal_is_the_circuit_breakers(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    emulator.script_token_responses([NOT_APPROVED] * 3)
    async with store_session(emulator, creds, None, failure_threshold=3) as sf:
        for _ in range(3):  # each is a real login (no fleet to share the memory with)
            with pytest.raises(InvalidGrantError) as info:
                await query_status(sf)
            assert info.value.sent is True
        with pytest.raises(CircuitOpenError):
            await query_status(sf)
    assert emulator.token_request_count == 3


# --- login rate ------------------------------------------------------------------------------


async def test_login_rate_exceeded_backs_the_fleet_off(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    emulator.script_token_responses([RATE])
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as one,
        RedisTokenStore(REDIS_URL, prefix=prefix) as two,
        store_session(emulator, creds, one) as first,
        store_session(emulator, creds, two) as second,
    ):
        with pytest.raises(LoginRateExceededError) as sent:
            await query_status(first)
        assert sent.value.sent is True
        assert "3,600 times in an hour" in str(sent.value)
        with pytest.raises(LoginRateExceededError) as backed_off:
            await query_status(second)
        assert backed_off.value.sent is False
        assert backed_off.value.retry_in is not None
        assert 3595 < backed_off.value.retry_in <= 3600  # login_backoff's default: an hour
        assert "(login rate back-off)" in str(backed_off.value)
        assert isinstance(backed_off.value, InvalidGrantError)  # still an invalid_grant
    assert emulator.token_request_count == 1


async def test_without_a_store_login_rate_exceeded_backs_this_session_off(
    emulator: Emulator, creds: EmulatorCredentials
) -> None:
    emulator.script_token_responses([RATE])
    async with store_session(emulator, creds, None, login_backoff=120) as sf:
        with pytest.raises(LoginRateExceededError):
            await query_status(sf)
        with pytest.raises(LoginRateExceededError) as backed_off:
            await query_status(sf)
        assert backed_off.value.sent is False
        assert backed_off.value.retry_in is not None
        assert backed_off.value.retry_in <= 120
        assert await sf.clear_refusal() is True
        assert await query_status(sf) == 200
    assert emulator.token_request_count == 2


async def test_logins_are_counted_per_user_fleet_wide_and_capped(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as one,
        RedisTokenStore(REDIS_URL, prefix=prefix) as two,
        store_session(emulator, creds, one, login_rate_cap=3) as first,
        store_session(emulator, creds, two, login_rate_cap=3, max_relogins=10) as second,
    ):
        assert await query_status(first) == 200  # login 1
        for _ in range(2):  # logins 2 and 3, in the other process
            emulator.expire_all_sessions()
            await one.invalidate(integration_key(emulator, creds), await second.token())
            assert await query_status(second) == 200
        assert await two.logins(user_key(creds.username)) == 3
        emulator.expire_all_sessions()
        with pytest.raises(LoginRateExceededError) as capped:
            await query_status(first)
    error = capped.value
    assert (error.error, error.sent, error.status) == ("login_rate_cap", False, None)
    assert "3 logins of this user in the last hour reached login_rate_cap=3" in str(error)
    assert emulator.token_request_count == 3


async def test_a_warning_past_the_login_rate_fraction(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    async with RedisTokenStore(REDIS_URL, prefix=prefix) as store:
        with structlog.testing.capture_logs() as logs:
            # 1 of 3,600 is past a fraction of 1/7200: the very first login warns.
            async with store_session(emulator, creds, store, login_rate_warning=1 / 7200) as sf:
                assert await query_status(sf) == 200
    (high,) = [e for e in logs if e["event"] == "sfauth.login_rate.high"]
    assert (high["logins_last_hour"], high["limit"], high["cap"]) == (1, 3600, None)


async def test_an_unreachable_store_falls_back_to_this_session(
    emulator: Emulator, creds: EmulatorCredentials, unused_tcp_port: int
) -> None:
    emulator.script_token_responses([RATE])
    store = RedisTokenStore(f"redis://127.0.0.1:{unused_tcp_port}/0", socket_timeout=0.5)
    with structlog.testing.capture_logs() as logs:
        async with store_session(emulator, creds, store, login_rate_cap=5) as sf:
            with pytest.raises(LoginRateExceededError):
                await query_status(sf)
            with pytest.raises(LoginRateExceededError) as local:
                await query_status(sf)  # the back-off is this session's own now
            assert local.value.sent is False
    await store.close()
    assert emulator.token_request_count == 1
    fallbacks = [e["operation"] for e in logs if e["event"] == "sfauth.fleet.unavailable"]
    # One failed read, then reads leave the store alone for a few seconds (no timeout per
    # call); recording the back-off is tried all the same, and falls back too.
    assert fallbacks == ["refusal", "refuse"]


# --- the CLI ---------------------------------------------------------------------------------


def _cli(emulator: Emulator, creds: EmulatorCredentials, prefix: str, action: str) -> list[str]:
    return [
        "store", action,
        "--redis", REDIS_URL,
        "--prefix", prefix,
        "--client-id", creds.client_id,
        "--username", creds.username,
        "--instance-url", emulator.url,
        "--allow-http-loopback",
    ]  # fmt: skip


async def test_sfauth_store_status_and_clear(
    emulator: Emulator,
    creds: EmulatorCredentials,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.script_token_responses([RATE])
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as store,
        store_session(emulator, creds, store) as sf,
    ):
        with pytest.raises(LoginRateExceededError):
            await query_status(sf)
        status = await asyncio.to_thread(main, _cli(emulator, creds, prefix, "status"))
        assert status == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown.pop("refusal") is None  # the app's: nothing
        refusal = shown.pop("login_backoff")  # the user's, whichever app logs in
        assert 3590 < refusal.pop("retry_in") <= 3600
        assert refusal.pop("age") < 10
        assert refusal == {
            "error": "invalid_grant",
            "error_description": "login rate exceeded",
            "status": 400,
            "kind": "LoginRateExceededError",
        }
        assert shown == {
            "prefix": prefix,
            "token_url": f"{emulator.url}/services/oauth2/token",
            "client_id": creds.client_id,
            "username": creds.username,
            "audience": creds.audience,
            "logins_last_hour": 1,
            "login_rate_limit": 3600,
            "refresh_locked": False,
        }
        assert await asyncio.to_thread(main, _cli(emulator, creds, prefix, "clear")) == 0
        assert json.loads(capsys.readouterr().out) == {"cleared": True}
        assert await query_status(sf) == 200  # no back-off any more
    assert emulator.token_request_count == 2


def test_sfauth_store_needs_a_redis_url(
    emulator: Emulator,
    creds: EmulatorCredentials,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SF_REDIS_URL", raising=False)
    argv = _cli(emulator, creds, "p:", "clear")
    del argv[2:4]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "sfauth: error: no Redis URL: pass --redis redis://HOST:6379/0 or set SF_REDIS_URL\n"
    )


# --- 8 OS processes, one Redis ---------------------------------------------------------------


async def _fleet(
    emulator: Emulator, creds: EmulatorCredentials, key_file: Path, prefix: str, n: int = 8
) -> list[dict[str, Any]]:
    workers = [
        await Worker.start(emulator, creds, key_file, prefix, "--requests", "20") for _ in range(n)
    ]
    results = [await w.line() for w in workers]
    assert [await w.finish() for w in workers] == [0] * n
    return results


async def test_eight_processes_one_invalid_grant(
    emulator: Emulator,
    creds: EmulatorCredentials,
    key_file: Path,
    prefix: str,
    redis_client: redis_asyncio.Redis,
) -> None:
    emulator.script_token_responses([NOT_APPROVED])
    results = await _fleet(emulator, creds, key_file, prefix)
    assert emulator.token_request_count == 1  # fleet-wide, during the cooldown
    assert sorted(r["token_requests"] for r in results) == [0] * 7 + [1]
    assert [r["failed"] for r in results] == [{"InvalidGrantError": 20}] * 8
    # The process that asked got Salesforce's answer; the 7 others the remembered one.
    assert sorted(r["unsent"] for r in results) == [0] + [20] * 7

    # The cooldown ends (Redis expires the key): one process tries again, and logs in.
    refusal_key = f"{prefix}{integration_key(emulator, creds)}:refusal"
    assert 290_000 < await redis_client.pttl(refusal_key) <= 300_000
    assert await redis_client.pexpire(refusal_key, 1)
    await asyncio.sleep(0.01)  # Redis's clock, not one this test could await
    assert not await redis_client.exists(refusal_key)
    (again,) = await _fleet(emulator, creds, key_file, prefix, n=1)
    assert again == {"phase": 0, "ok": 20, "failed": {}, "unsent": 0, "token_requests": 1}
    assert emulator.token_request_count == 2


async def test_eight_processes_one_login_rate_exceeded(
    emulator: Emulator,
    creds: EmulatorCredentials,
    key_file: Path,
    prefix: str,
    redis_client: redis_asyncio.Redis,
) -> None:
    emulator.script_token_responses([RATE])
    results = await _fleet(emulator, creds, key_file, prefix)
    assert emulator.token_request_count == 1  # one token request during the back-off
    assert [r["failed"] for r in results] == [{"LoginRateExceededError": 20}] * 8
    assert sorted(r["unsent"] for r in results) == [0] + [20] * 7
    ttl = await redis_client.pttl(f"{prefix}logins:{user_key(creds.username)}:refusal")
    assert 3590_000 < ttl <= 3600_000
    assert await redis_client.zcard(f"{prefix}logins:{user_key(creds.username)}") == 1


# --- review fixes ----------------------------------------------------------------------------


async def test_the_login_rate_back_off_is_the_users_whichever_app_logs_in(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    other_app = emulator.create_credentials(username=creds.username.upper())  # same user
    emulator.script_token_responses([RATE])
    async with (
        RedisTokenStore(REDIS_URL, prefix=prefix) as store,
        store_session(emulator, creds, store) as first,
        AuthSession(
            client_id=other_app.client_id,
            username=other_app.username,
            private_key=other_app.private_key_pem,
            login_url=emulator.url,
            allow_http_loopback=True,
            token_store=store,
        ) as second,
    ):
        with pytest.raises(LoginRateExceededError):
            await query_status(first)
        with pytest.raises(LoginRateExceededError) as backed_off:
            await query_status(second)  # another connected app, the same user (any case)
        assert backed_off.value.sent is False
        assert await second.clear_refusal() is True
        assert await query_status(second) == 200
    assert emulator.token_request_count == 2


async def test_a_login_that_never_connected_is_not_counted(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str, unused_tcp_port: int
) -> None:
    async with RedisTokenStore(REDIS_URL, prefix=prefix) as store:
        dead = AuthSession(
            client_id=creds.client_id,
            username=creds.username,
            private_key=creds.private_key_pem,
            login_url=f"http://127.0.0.1:{unused_tcp_port}",
            allow_http_loopback=True,
            token_store=store,
            login_rate_cap=2,
            retry=RetryPolicy(attempts=3, backoff_base=0.001, backoff_cap=0.001),
        )
        async with dead:
            with pytest.raises(TransientTokenError, match="connection_error"):
                await dead.token()  # 3 attempts, none reached a server
        assert await store.logins(user_key(creds.username)) == 0
        async with store_session(emulator, creds, store, login_rate_cap=2) as sf:
            assert await query_status(sf) == 200  # the cap was not spent by the outage
        assert await store.logins(user_key(creds.username)) == 1


@pytest.mark.parametrize(
    "value",
    [
        b'{"kind":"InvalidGrantError","error":"invalid_grant","error_description":"x",'
        b'"status":400,"at":1' + b"0" * 400 + b"}",
        b'{"kind":"InvalidGrantError","error":"invalid_grant","error_description":"x",'
        b'"status":400,"at":NaN}',
        b"[" * 100_000,
        b"\xff\xfe",
    ],
    ids=["huge-at", "nan-at", "deep", "not-utf8"],
)
async def test_an_unreadable_refusal_is_no_refusal(
    emulator: Emulator,
    creds: EmulatorCredentials,
    prefix: str,
    redis_client: redis_asyncio.Redis,
    value: bytes,
) -> None:
    await redis_client.set(f"{prefix}{integration_key(emulator, creds)}:refusal", value, px=60_000)
    async with RedisTokenStore(REDIS_URL, prefix=prefix) as store:
        assert await store.refusal(integration_key(emulator, creds)) is None
        async with store_session(emulator, creds, store) as sf:
            assert await query_status(sf) == 200


async def test_a_back_off_is_shared_even_right_after_a_store_failure(
    emulator: Emulator, creds: EmulatorCredentials, prefix: str
) -> None:
    class Blip(RedisTokenStore):
        failures = 1

        async def refusal(self, key: str) -> tuple[Refusal, float] | None:
            if self.failures:
                self.failures -= 1
                raise TokenStoreError("Redis GET refusal failed: ConnectionError: blip")
            return await super().refusal(key)

    emulator.script_token_responses([RATE])
    async with (
        Blip(REDIS_URL, prefix=prefix) as blipping,
        RedisTokenStore(REDIS_URL, prefix=prefix) as other,
        store_session(emulator, creds, blipping) as first,
        store_session(emulator, creds, other) as second,
    ):
        with pytest.raises(LoginRateExceededError):
            await query_status(first)  # its guard paused the store after the blip
        with pytest.raises(LoginRateExceededError) as backed_off:
            await query_status(second)  # yet the back-off reached Redis
        assert backed_off.value.sent is False
    assert emulator.token_request_count == 1
