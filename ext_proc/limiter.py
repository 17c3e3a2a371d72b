"""Rate limiting behind one interface.

:class:`Limiter` is the seam: ``check(identity, cost)`` returns a :class:`LimitVerdict`.
The embedded
default, :class:`LocalTokenBucket`, keeps one token bucket per identity in this process: good for a
single replica or as a fallback, but N replicas allow N times the rate. The Redis-backed global
limiter implements the same protocol.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ext_proc.config import LimiterSettings

__all__ = ["LimitVerdict", "Limiter", "LocalTokenBucket", "make_limiter"]


@dataclass(frozen=True, slots=True)
class LimitVerdict:
    """``allowed``; if not, ``retry_after`` seconds until ``cost`` tokens are back."""

    allowed: bool
    retry_after: float
    remaining: float

    @property
    def retry_after_header(self) -> str:
        """Whole seconds for the Retry-After header, never 0 for a refusal."""
        return str(max(1, math.ceil(self.retry_after)))


class Limiter(Protocol):
    async def check(self, identity: str, cost: float = 1.0) -> LimitVerdict: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class LocalTokenBucket:
    """In-process token buckets, one per identity, refilled continuously.

    Memory is bounded: at most ``max_identities`` buckets are kept, least recently used first out
    (a dropped bucket comes back full, which only ever favours the caller).
    """

    def __init__(
        self,
        rate_per_second: float,
        capacity: float,
        max_identities: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be > 0")
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.rate = float(rate_per_second)
        self.capacity = float(capacity)
        self.max_identities = max_identities
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, identity: str, cost: float = 1.0) -> LimitVerdict:
        now = self._clock()
        state = self._buckets.pop(identity, None)
        if state is None:
            tokens = self.capacity
        else:
            tokens, stamp = state
            tokens = min(self.capacity, tokens + max(0.0, now - stamp) * self.rate)
        if tokens >= cost:
            tokens -= cost
            verdict = LimitVerdict(True, 0.0, tokens)
        else:
            verdict = LimitVerdict(False, (cost - tokens) / self.rate, tokens)
        self._buckets[identity] = (tokens, now)
        if len(self._buckets) > self.max_identities:
            self._buckets.popitem(last=False)
        return verdict

    async def check(self, identity: str, cost: float = 1.0) -> LimitVerdict:
        return self.take(identity, cost)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


def make_limiter(settings: LimiterSettings) -> Limiter:
    """Build the limiter the config names."""
    return LocalTokenBucket(
        settings.rate_per_second, settings.capacity, max_identities=settings.max_identities
    )
