"""Rate limiting and security debt behind one interface.

:class:`Limiter` is the seam: ``check(identity, tier, cost, debt)`` charges ``debt`` points (the
severity weights of this request's findings) to the caller's decaying security debt and, unless
the debt holds the caller back, takes ``cost`` tokens from the caller's bucket, and returns a
:class:`LimitVerdict`. One call per request: with the Redis backend
(:mod:`ext_proc.redis_limiter`) that is one round trip.

:class:`LocalLimiter` keeps the same state in this process: the backend for a single replica,
and the fallback the Redis backend uses while Redis is unreachable. It follows the same rules as
``limiter.lua``, so a caller sees the same behaviour from either.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from ext_proc.config import DebtSettings, LimiterSettings
from ext_proc.metrics import Metrics

if TYPE_CHECKING:
    from ext_proc.keys import Keyring, SecretBytes

__all__ = [
    "DebtLedger",
    "LimitVerdict",
    "Limiter",
    "LocalLimiter",
    "LocalTokenBucket",
    "Tier",
    "Tiers",
    "make_limiter",
]

Reason = Literal["ok", "rate", "debt", "uncharged"]
Source = Literal["local", "redis", "open", "closed"]


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    rate: float  # tokens per second
    capacity: float
    debt_limit: float

    @property
    def window_seconds(self) -> float:
        """Time to refill an empty bucket: the window of the RateLimit-Policy header."""
        return self.capacity / self.rate


class Tiers:
    """The tier table: ``default`` plus the named tiers of ``limiter.tiers``."""

    def __init__(self, settings: LimiterSettings) -> None:
        self.default = Tier(
            "default", settings.rate_per_second, settings.capacity, settings.debt_limit
        )
        self._tiers = {"default": self.default}
        for name, t in settings.tiers.items():
            self._tiers[name] = Tier(
                name,
                t.rate_per_second or self.default.rate,
                t.capacity or self.default.capacity,
                t.debt_limit or self.default.debt_limit,
            )

    def get(self, name: str | None) -> Tier:
        return self._tiers.get(name, self.default) if name else self.default

    def __iter__(self) -> Iterator[Tier]:
        return iter(self._tiers.values())


@dataclass(frozen=True, slots=True)
class LimitVerdict:
    """One limiter answer.

    ``reason``: ok (allowed), rate (bucket empty), debt (held back by security debt) or
    uncharged (no tokens were asked for). ``retry_after`` is seconds until a retry can pass.
    ``source`` says who decided: redis, local, or the failure policy (open / closed).
    """

    allowed: bool
    retry_after: float
    remaining: float
    reason: Reason = "ok"
    debt: float = 0.0
    tier: Tier | None = None
    source: Source = "local"

    @property
    def retry_after_header(self) -> str:
        """Whole seconds for the Retry-After header, never 0 for a refusal."""
        return str(max(1, math.ceil(self.retry_after)))

    def ratelimit_headers(self) -> list[tuple[str, str]]:
        """RateLimit and RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers-10).

        ``q`` is the bucket size, ``w`` the seconds to refill it from empty, ``r`` whole tokens
        left and ``t`` seconds until the bucket is full again.
        """
        if self.tier is None or self.reason == "uncharged":
            return []
        t = self.tier
        name = t.name
        full_in = max(0.0, t.capacity - self.remaining) / t.rate
        return [
            (
                "ratelimit-policy",
                f'"{name}";q={int(t.capacity)};w={max(1, math.ceil(t.window_seconds))}',
            ),
            ("ratelimit", f'"{name}";r={max(0, int(self.remaining))};t={math.ceil(full_in)}'),
        ]


class Limiter(Protocol):
    async def check(
        self, identity: str, tier: str | None = None, cost: float = 1.0, debt: float = 0.0
    ) -> LimitVerdict: ...

    async def start(self) -> bool: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class LocalTokenBucket:
    """In-process token buckets, one per key, refilled continuously (used by
    :class:`LocalLimiter`, which adds tiers and debt).

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

    def take(
        self,
        identity: str,
        cost: float = 1.0,
        rate: float | None = None,
        capacity: float | None = None,
    ) -> LimitVerdict:
        rate = self.rate if rate is None else rate
        capacity = self.capacity if capacity is None else capacity
        cost = min(cost, capacity)
        now = self._clock()
        state = self._buckets.pop(identity, None)
        if state is None:
            tokens = capacity
        else:
            tokens, stamp = state
            tokens = min(capacity, tokens + max(0.0, now - stamp) * rate)
        if tokens >= cost:
            tokens -= cost
            verdict = LimitVerdict(True, 0.0, tokens)
        else:
            verdict = LimitVerdict(False, (cost - tokens) / rate, tokens, "rate")
        self._buckets[identity] = (tokens, now)
        if len(self._buckets) > self.max_identities:
            self._buckets.popitem(last=False)
        return verdict

    def __len__(self) -> int:
        return len(self._buckets)


class DebtLedger:
    """Decaying security debt per caller, in this process (the rules of ``limiter.lua``).

    Debt halves every ``half_life`` seconds. A request that brings the debt to or above the limit
    starts a block lasting ``cooldown`` or until the debt decays back to the limit, whichever is
    longer; findings during a block extend it by their decay time.
    """

    def __init__(
        self,
        settings: DebtSettings,
        max_identities: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.half_life = settings.half_life_seconds
        self.cooldown = settings.cooldown_seconds
        self.max_identities = max_identities
        self._clock = clock
        # identity -> (debt, stamp, blocked until)
        self._debts: OrderedDict[str, tuple[float, float, float]] = OrderedDict()

    def charge(self, identity: str, points: float, limit: float) -> tuple[float, float]:
        """Add ``points``; return (debt now, seconds the caller stays blocked, 0 if not)."""
        now = self._clock()
        level, stamp, hold = self._debts.pop(identity, (0.0, now, 0.0))
        if level:
            level *= 2.0 ** (-max(0.0, now - stamp) / self.half_life)
        was_blocked = now < hold
        level += points
        if level >= limit and points > 0:
            decay = self.half_life * math.log2(level / limit)
            hold = max(hold, now + (decay if was_blocked else max(self.cooldown, decay)))
        if level > 0.001 or now < hold:
            self._debts[identity] = (level, now, hold)
            if len(self._debts) > self.max_identities:
                self._debts.popitem(last=False)
        return level, max(0.0, hold - now)

    def __len__(self) -> int:
        return len(self._debts)


class LocalLimiter:
    """Buckets per (caller, tier) and debt per caller in this process."""

    def __init__(
        self, settings: LimiterSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tiers = Tiers(settings)
        self.debt_enabled = settings.debt.enabled
        self.cost_per_point = settings.debt.cost_per_point
        self.debt_cap = settings.debt.max_points_per_request
        self.buckets = LocalTokenBucket(
            settings.rate_per_second, settings.capacity, settings.max_identities, clock
        )
        self.ledger = DebtLedger(settings.debt, settings.max_identities, clock)

    def take(self, identity: str, tier: Tier, cost: float) -> LimitVerdict:
        """The bucket alone (the fallback for the rate limit)."""
        v = self.buckets.take(f"{tier.name}\x00{identity}", cost, tier.rate, tier.capacity)
        return LimitVerdict(v.allowed, v.retry_after, v.remaining, v.reason, tier=tier)

    def charge(self, identity: str, tier: Tier, debt: float) -> tuple[float, float]:
        """The debt alone (the fallback for the debt limit)."""
        return self.ledger.charge(identity, debt, tier.debt_limit)

    def decide(self, identity: str, tier: Tier, cost: float, debt: float) -> LimitVerdict:
        level = 0.0
        if self.debt_enabled:
            level, blocked = self.charge(identity, tier, min(debt, self.debt_cap))
            if blocked > 0:
                return LimitVerdict(False, blocked, 0.0, "debt", level, tier)
        if cost <= 0:
            return LimitVerdict(True, 0.0, tier.capacity, "uncharged", level, tier)
        v = self.take(identity, tier, cost + self.cost_per_point * level)
        return LimitVerdict(v.allowed, v.retry_after, v.remaining, v.reason, level, tier)

    async def check(
        self, identity: str, tier: str | None = None, cost: float = 1.0, debt: float = 0.0
    ) -> LimitVerdict:
        return self.decide(identity, self.tiers.get(tier), cost, debt)

    async def start(self) -> bool:
        return True

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def make_limiter(
    settings: LimiterSettings, metrics: Metrics | None = None, keyring: Keyring | None = None
) -> Limiter:
    """Build the limiter the config names; the Redis one takes its password (keys.redis_password)
    and key-name pseudonym key (keys.pseudonym) from the keyring and connects on first use."""
    if settings.backend == "redis":
        from ext_proc.redis_limiter import RedisLimiter  # redis-py only when configured

        def key(name: str) -> SecretBytes | None:
            return keyring.material(name) if keyring is not None and name in keyring else None

        return RedisLimiter(
            settings,
            password=key("redis_password"),
            metrics=metrics,
            pseudonym_key=key("pseudonym"),
        )
    return LocalLimiter(settings)
