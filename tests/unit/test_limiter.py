from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from ext_proc.config import settings_from_mapping
from ext_proc.errors import ConfigError
from ext_proc.limiter import LocalLimiter, LocalTokenBucket
from ext_proc.tiers import TierResolver


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_up_to_capacity_then_refused_with_retry_after() -> None:
    clock = FakeClock()
    bucket = LocalTokenBucket(rate_per_second=2, capacity=3, clock=clock)
    verdicts = [bucket.take("alice") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[3].retry_after == pytest.approx(0.5)
    assert verdicts[3].retry_after_header == "1"


def test_refill_is_continuous_and_capped() -> None:
    clock = FakeClock()
    bucket = LocalTokenBucket(rate_per_second=1, capacity=2, clock=clock)
    bucket.take("a")
    bucket.take("a")
    assert not bucket.take("a").allowed
    clock.now += 1.0
    assert bucket.take("a").allowed
    clock.now += 100.0
    assert bucket.take("a").remaining == pytest.approx(1.0)  # capped at capacity, minus one


def test_identities_are_independent() -> None:
    bucket = LocalTokenBucket(rate_per_second=1, capacity=1, clock=FakeClock())
    assert bucket.take("a").allowed
    assert not bucket.take("a").allowed
    assert bucket.take("b").allowed


def test_memory_is_bounded() -> None:
    bucket = LocalTokenBucket(rate_per_second=1, capacity=1, max_identities=100, clock=FakeClock())
    for i in range(1000):
        bucket.take(f"user-{i}")
    assert len(bucket) == 100


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="rate_per_second"):
        LocalTokenBucket(rate_per_second=0, capacity=1)
    with pytest.raises(ValueError, match="capacity"):
        LocalTokenBucket(rate_per_second=1, capacity=0.5)


# -- security debt, tiers and headers (LocalLimiter: the local backend and Redis fallback) ----


def _limiter(clock: FakeClock, **limiter: Any) -> LocalLimiter:
    return LocalLimiter(settings_from_mapping({"limiter": limiter}, env={}).limiter, clock=clock)


def _check(lim: LocalLimiter, who: str, **kw: Any) -> Any:
    return asyncio.run(lim.check(who, **kw))


def test_debt_at_the_limit_blocks_for_the_cooldown_then_lifts_after_decay() -> None:
    clock = FakeClock()
    lim = _limiter(clock, debt_limit=10, debt={"half_life_seconds": 10, "cooldown_seconds": 30})
    assert _check(lim, "eve", debt=5).allowed  # 5 points: under the limit
    v = _check(lim, "eve", debt=5)  # 10: at the limit
    assert (v.allowed, v.reason) == (False, "debt")
    assert v.retry_after == pytest.approx(30)  # the cooldown is longer than the decay (0 s)
    clock.now += 29
    assert _check(lim, "eve").reason == "debt"  # a clean request during the block is refused
    clock.now += 2
    v = _check(lim, "eve")
    assert v.allowed
    assert v.debt == pytest.approx(10 * 2 ** (-3.1), rel=1e-6)  # decayed over 31 s
    assert _check(lim, "bob").allowed  # others are not affected


def test_a_large_debt_blocks_until_it_has_decayed_below_the_limit() -> None:
    clock = FakeClock()
    lim = _limiter(
        clock,
        debt_limit=10,
        debt={"half_life_seconds": 10, "cooldown_seconds": 1, "max_points_per_request": 100},
    )
    v = _check(lim, "eve", debt=40)  # two half-lives above the limit
    assert v.reason == "debt"
    assert v.retry_after == pytest.approx(20)
    clock.now += 19.9
    assert _check(lim, "eve").reason == "debt"
    clock.now += 0.2
    assert _check(lim, "eve").allowed


def test_one_request_adds_at_most_max_points_per_request() -> None:
    lim = _limiter(FakeClock(), debt_limit=50, debt={"max_points_per_request": 7})
    assert _check(lim, "eve", debt=1000).debt == pytest.approx(7)


def test_debt_raises_the_token_cost_when_configured() -> None:
    clock = FakeClock()
    lim = _limiter(
        clock, capacity=10, rate_per_second=0.001, debt_limit=100, debt={"cost_per_point": 1}
    )
    v = _check(lim, "eve", debt=4)  # cost 1 + 4 points
    assert v.allowed
    assert v.remaining == pytest.approx(5)
    assert _check(lim, "bob").remaining == pytest.approx(9)


def test_disabled_debt_never_refuses() -> None:
    lim = _limiter(FakeClock(), debt_limit=1, debt={"enabled": False})
    assert all(_check(lim, "eve", debt=25).allowed for _ in range(5))


def test_trap_blocked_requests_charge_debt_without_taking_tokens() -> None:
    lim = _limiter(FakeClock(), capacity=2, rate_per_second=0.001, debt_limit=100)
    v = _check(lim, "eve", cost=0, debt=5)
    assert (v.allowed, v.reason, v.debt) == (True, "uncharged", 5)
    assert _check(lim, "eve").remaining == pytest.approx(1)


def test_tiers_have_their_own_rate_capacity_and_debt_limit() -> None:
    lim = _limiter(
        FakeClock(),
        capacity=2,
        rate_per_second=0.001,
        tiers={"premium": {"capacity": 5}},
    )
    assert [_check(lim, "a").allowed for _ in range(3)] == [True, True, False]
    assert [_check(lim, "b", tier="premium").allowed for _ in range(6)] == [True] * 5 + [False]
    # An unknown tier is the default tier.
    v = _check(lim, "c", tier="platinum")
    assert v.tier is not None
    assert v.tier.name == "default"
    assert lim.tiers.get("premium").debt_limit == lim.tiers.default.debt_limit


def test_ratelimit_headers_follow_the_ietf_draft() -> None:
    lim = _limiter(FakeClock(), capacity=20, rate_per_second=10)
    v = _check(lim, "a")
    assert v.ratelimit_headers() == [
        ("ratelimit-policy", '"default";q=20;w=2'),
        ("ratelimit", '"default";r=19;t=1'),
    ]


def _claims(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_tier_from_header_claim_and_value_map() -> None:
    sel = settings_from_mapping(
        {
            "limiter": {
                "tiers": {"premium": {}, "free": {}},
                "tier_from": {
                    "header": "x-tier",
                    "claim_header": "x-jwt-payload",
                    "claim": "plan.level",
                    "values": {"gold": "premium"},
                },
            }
        },
        env={},
    ).limiter.tier_from
    r = TierResolver(sel)
    assert r.resolve_headers({"x-tier": "free"}) == "free"
    assert r.resolve_headers({"x-tier": "gold"}) == "premium"
    jwt = _claims({"sub": "u1", "plan": {"level": "gold"}})
    # The verified claim wins over the plain header.
    assert r.resolve_headers({"x-jwt-payload": jwt, "x-tier": "free"}) == "premium"
    for bad in ("%%%", _claims({"plan": "gold"}), "bm90IGpzb24", _claims({"plan": {"level": []}})):
        assert r.resolve_headers({"x-jwt-payload": bad}) is None
    assert r.resolve_headers({}) is None


@pytest.mark.parametrize(
    ("limiter", "key"),
    [
        ({"redis": {"url": "redis://user:hunter2@127.0.0.1:6379"}}, "limiter.redis.url"),
        ({"redis": {"url": "memcached://127.0.0.1"}}, "limiter.redis.url"),
        ({"redis": {"url": "redis+sentinel://127.0.0.1:26379"}}, "limiter.redis.url"),
        ({"redis": {"timeout_ms": 0}}, "limiter.redis.timeout_ms"),
        ({"on_error": "maybe"}, "limiter.on_error"),
        ({"tiers": {"gold": {"rate_per_second": 0}}}, "limiter.tiers.gold.rate_per_second"),
        ({"tier_from": {"values": {"x": "nope"}}}, "limiter"),
        ({"debt": {"half_life_seconds": 0}}, "limiter.debt.half_life_seconds"),
    ],
)
def test_bad_limiter_settings_name_the_key(limiter: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping({"limiter": limiter}, env={})
    assert f"{key}:" in str(err.value)
    assert "hunter2" not in str(err.value)
