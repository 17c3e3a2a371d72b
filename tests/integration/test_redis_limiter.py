"""The global limiter against a real redis-server: script semantics, failure policy, recovery,
hash tags on a real three-node Cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from ext_proc.config import settings_from_mapping
from ext_proc.keys import load_keys
from ext_proc.limiter import LimitVerdict, make_limiter
from ext_proc.metrics import Metrics
from ext_proc.redis_limiter import FUNCTION, RedisLimiter, library_code
from tests.integration.conftest import RedisServer

pytestmark = pytest.mark.redis


def limiter(url: str, metrics: Metrics | None = None, **cfg: Any) -> RedisLimiter:
    """A Redis limiter; it connects on first use (tests that need it warm call start())."""
    redis_cfg = {"url": url, **cfg.pop("redis", {})}
    keys = cfg.pop("keys", {})
    settings = settings_from_mapping(
        {"limiter": {"backend": "redis", "redis": redis_cfg, **cfg}, "keys": keys}, env={}
    )
    keyring = asyncio.run(load_keys(settings)) if keys else None
    lim = make_limiter(settings.limiter, metrics or Metrics(), keyring)
    assert isinstance(lim, RedisLimiter)
    return lim


def value(metric: Any, *labels: str) -> float:
    child = metric.labels(*labels) if labels else metric
    return float(child._value.get())


def test_bucket_admits_its_capacity_then_refuses_with_retry_after(
    redis_server: RedisServer,
) -> None:
    async def go() -> list[LimitVerdict]:
        lim = limiter(redis_server.url, capacity=5, rate_per_second=2)
        try:
            return list(await asyncio.gather(*(lim.check("alice") for _ in range(8))))
        finally:
            await lim.close()

    verdicts = asyncio.run(go())
    assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 3
    assert {v.source for v in verdicts} == {"redis"}
    assert 0.3 < verdicts[-1].retry_after <= 0.5  # one token at 2/s
    assert verdicts[-1].retry_after_header == "1"


def test_state_is_one_hash_per_caller_and_limit_with_time_to_full_expiry(
    redis_server: RedisServer,
) -> None:
    lim = limiter(redis_server.url, capacity=10, rate_per_second=1)

    async def go() -> tuple[str, str]:
        try:
            for _ in range(4):
                await lim.check("alice@example.com")
            await lim.check("alice@example.com", debt=3)
            return lim.keys_for("alice@example.com", lim.tiers.default)
        finally:
            await lim.close()

    bucket, debt = asyncio.run(go())
    r = redis.Redis(port=redis_server.port)
    assert sorted(r.keys("*")) == sorted([bucket.encode(), debt.encode()])
    assert "alice" not in bucket  # key names carry a pseudonym, not the identity
    assert r.type(bucket) == b"hash"
    assert r.type(debt) == b"hash"
    assert key_slot(bucket.encode()) == key_slot(debt.encode())
    # 5 tokens used at 1/s: full again in about 5 s; the expiry adds 1 s of margin.
    assert 5000 < r.pttl(bucket) <= 6000
    assert float(r.hget(debt, "d") or 0) == pytest.approx(3, abs=0.01)


def test_a_clock_behind_the_stored_timestamp_mints_no_tokens(redis_server: RedisServer) -> None:
    """After a failover to a server whose clock is behind, the bucket must not refill."""
    lim = limiter(redis_server.url, capacity=3, rate_per_second=100)
    bucket, _ = lim.keys_for("bob", lim.tiers.default)
    r = redis.Redis(port=redis_server.port)
    future_us = int((time.time() + 3600) * 1_000_000)
    r.hset(bucket, mapping={"tk": "0", "ts": str(future_us)})

    async def go() -> list[LimitVerdict]:
        try:
            return [await lim.check("bob") for _ in range(3)]
        finally:
            await lim.close()

    assert not any(v.allowed for v in asyncio.run(go()))
    assert int(r.hget(bucket, "ts") or 0) == future_us  # never moved backwards


def test_invalid_parameters_are_refused_before_any_write(redis_server: RedisServer) -> None:
    r = redis.Redis(port=redis_server.port)
    r.function_load(library_code(), replace=True)
    # One tier with rate 0, then one decision.
    args = ["1", "0", "5", "0", "10", "0", "0", "1", "1", "0"]
    with pytest.raises(redis.ResponseError, match="invalid tier"):
        r.fcall(FUNCTION, 2, "t:{x}:rate", "t:{x}:debt", *args)
    args = ["1", "1", "0.5", "0", "10", "0", "0", "1", "1", "0"]
    with pytest.raises(redis.ResponseError, match="invalid tier"):
        r.fcall(FUNCTION, 2, "t:{x}:rate", "t:{x}:debt", *args)
    with pytest.raises(redis.ResponseError, match="expected 2 keys"):
        r.fcall(FUNCTION, 1, "t:{x}:rate", *args)
    assert r.dbsize() == 0


def test_debt_blocks_a_caller_across_processes_then_lifts_after_decay(
    redis_server: RedisServer,
) -> None:
    cfg: dict[str, Any] = {
        "debt_limit": 10,
        "debt": {"half_life_seconds": 0.5, "cooldown_seconds": 0.2},
    }

    async def go() -> tuple[LimitVerdict, LimitVerdict, LimitVerdict, LimitVerdict]:
        a, b = limiter(redis_server.url, **cfg), limiter(redis_server.url, **cfg)
        try:
            first = await a.check("eve", debt=6)
            crossing = await b.check("eve", debt=6)  # another process, the same debt
            during = await a.check("eve")
            await asyncio.sleep(crossing.retry_after + 0.05)
            after = await b.check("eve")
            return first, crossing, during, after
        finally:
            await a.close()
            await b.close()

    first, crossing, during, after = asyncio.run(go())
    assert first.allowed
    assert (crossing.allowed, crossing.reason) == (False, "debt")
    # 12 points against a limit of 10 decay in 0.5 * log2(1.2) = 0.13 s; the cooldown is longer.
    assert 0.15 <= crossing.retry_after <= 0.25
    assert during.reason == "debt"
    assert after.allowed
    assert after.debt < 10


def test_tiers_and_debt_cost_through_redis(redis_server: RedisServer) -> None:
    async def go() -> tuple[list[bool], list[bool], LimitVerdict]:
        lim = limiter(
            redis_server.url,
            capacity=2,
            rate_per_second=0.01,
            debt_limit=100,
            tiers={"premium": {"capacity": 4}},
            debt={"cost_per_point": 0.5},
        )
        try:
            default = [(await lim.check("a")).allowed for _ in range(3)]
            premium = [(await lim.check("b", "premium")).allowed for _ in range(5)]
            costly = await lim.check("c", "premium", debt=4)  # 1 + 0.5 * 4 tokens
            return default, premium, costly
        finally:
            await lim.close()

    default, premium, costly = asyncio.run(go())
    assert default == [True, True, False]
    assert premium == [True] * 4 + [False]
    assert costly.remaining == pytest.approx(1, abs=0.01)


def test_function_flush_and_script_flush_fail_no_decision(redis_server: RedisServer) -> None:
    r = redis.Redis(port=redis_server.port)

    async def go(scripting: str) -> tuple[int, float]:
        metrics = Metrics()
        lim = limiter(redis_server.url, metrics, capacity=1000, redis={"scripting": scripting})
        ok = 0
        try:
            for round_ in range(20):
                if round_ % 4 == 0:
                    r.function_flush()
                    r.script_flush()
                verdicts = await asyncio.gather(*(lim.check(f"u{i}") for i in range(50)))
                ok += sum(v.allowed and v.source == "redis" for v in verdicts)
        finally:
            await lim.close()
        return ok, value(metrics.limiter_backend_errors, "error")

    for scripting in ("functions", "eval"):
        ok, errors = asyncio.run(go(scripting))
        assert (ok, errors) == (1000, 0), scripting


@pytest.mark.parametrize(
    ("policy", "allowed"),
    [("local", [True, True, False]), ("open", [True, True, True]), ("closed", [False] * 3)],
)
def test_redis_down_is_answered_in_time_by_the_failure_policy_then_recovers(
    redis_server: RedisServer, policy: str, allowed: list[bool]
) -> None:
    metrics = Metrics()
    cfg: dict[str, Any] = {
        "capacity": 2,
        "rate_per_second": 0.01,
        "on_error": policy,
        "debt": {"on_error": "local" if policy == "closed" else policy},
        "redis": {"timeout_ms": 50, "retry_interval_ms": 200},
    }

    async def go() -> tuple[list[LimitVerdict], float, LimitVerdict]:
        lim = limiter(redis_server.url, metrics, **cfg)
        try:
            assert await lim.start()
            assert (await lim.check("warmup")).source == "redis"
            redis_server.kill()
            started = time.monotonic()
            down = [await lim.check("mallory") for _ in range(3)]
            elapsed = time.monotonic() - started
            redis_server.restart()
            await asyncio.sleep(0.25)  # past retry_interval_ms: Redis is asked again
            back = await lim.check("mallory")
            return down, elapsed, back
        finally:
            await lim.close()

    down, elapsed, back = asyncio.run(go())
    assert [v.allowed for v in down] == allowed
    assert {v.source for v in down} == {policy}
    # The first waits at most the 50 ms timeout, the others none: far below the seconds a
    # dead server costs a client without one (loose bound: CI machines are shared).
    assert elapsed < 2.0
    assert value(metrics.limiter_fallbacks, "rate", policy) == 3
    assert value(metrics.limiter_backend_errors, "error") >= 1
    # Redis restarted empty: the function is loaded again and the global bucket is used.
    assert (back.source, back.allowed) == ("redis", True)
    assert value(metrics.limiter_backend_up) == 1


def test_a_stalled_redis_costs_no_request_more_than_the_timeout(
    redis_server: RedisServer,
) -> None:
    metrics = Metrics()

    async def go() -> tuple[list[LimitVerdict], float]:
        lim = limiter(redis_server.url, metrics, redis={"timeout_ms": 40})
        try:
            assert await lim.start()
            os.kill(redis_server.proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                verdicts = await asyncio.gather(*(lim.check(f"u{i}") for i in range(200)))
                return list(verdicts), time.monotonic() - started
            finally:
                os.kill(redis_server.proc.pid, signal.SIGCONT)
        finally:
            await lim.close()

    verdicts, elapsed = asyncio.run(go())
    assert all(v.allowed and v.source == "local" for v in verdicts)
    # A stopped server answers never; the 40 ms timeout answers for it (loose bound for CI).
    assert elapsed < 2.0
    assert value(metrics.limiter_backend_errors, "timeout") >= 1


def test_password_comes_from_a_file_and_never_from_config_text(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.restart("--requirepass", "correct horse battery staple")
    secret = tmp_path / "redis-password"
    secret.write_text("correct horse battery staple\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")

    def check(path: Path) -> LimitVerdict:
        lim = limiter(redis_server.url, keys={"redis_password": f"file:{path}"})

        async def go() -> LimitVerdict:
            try:
                return await lim.check("alice")
            finally:
                await lim.close()

        return asyncio.run(go())

    assert check(secret).source == "redis"
    assert check(wrong).source == "local"
    lim = limiter(redis_server.url, keys={"redis_password": f"file:{secret}"})
    assert "correct horse" not in repr(lim._password)


def test_cluster_keys_of_one_decision_share_a_slot_and_calls_reach_every_node(
    redis_cluster: list[int],
) -> None:
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in redis_cluster)
    metrics = Metrics()

    async def go() -> list[LimitVerdict]:
        lim = limiter(url, metrics, capacity=3, rate_per_second=0.01)
        try:
            assert await lim.start()
            burst = await asyncio.gather(*(lim.check(f"user-{i % 40}") for i in range(160)))
            return list(burst)
        finally:
            await lim.close()

    verdicts = asyncio.run(go())
    assert {v.source for v in verdicts} == {"redis"}
    assert sum(v.allowed for v in verdicts) == 40 * 3  # each caller's bucket, once, cluster-wide
    per_node = [redis.Redis(port=p).dbsize() for p in redis_cluster]
    assert sum(per_node) == 40  # one bucket per caller; no debt, so no debt key
    assert all(n > 0 for n in per_node)  # callers are spread over the three primaries
