from __future__ import annotations

import pytest

from ext_proc.limiter import LocalTokenBucket


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
