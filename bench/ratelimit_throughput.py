"""Limiter decisions per second from one Godel process, against Redis's own ceiling, in one run.

One redis-server (Debian's, no persistence) is started on a loopback port and pinned to one CPU;
this process (the client) is pinned to another. Then, per round:

- ``godel-batched``: :class:`ext_proc.redis_limiter.RedisLimiter` as shipped (decisions of one
  event-loop tick share one FCALL, up to ``batch_max``), ``--concurrency`` callers in a loop;
- ``godel-unbatched``: the same limiter with ``batch_max: 1``: one FCALL per decision, the
  baseline the batching is measured against;
- ``redis-benchmark``: the ceiling for the same function on the same Redis, one decision per
  FCALL, 50 clients, pipeline 16 (no Python in the way);
- ``limits-moving-window``: the ``limits`` library's moving window (``limits.aio``, Redis storage)
  with the same callers and concurrency: the usual Python choice, for comparison.

Decisions use 5000 identities at random, default tier, no debt points. Top-level FCALL/EVALSHA
calls per decision (from ``INFO commandstats``) show the round trips. Prints a table and the
ratios; writes bench/results/ratelimit_throughput.json.

    .venv/bin/python bench/ratelimit_throughput.py [--seconds 3] [--rounds 3] [--concurrency 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import redis
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from ext_proc.config import settings_from_mapping
from ext_proc.devstack import start_redis
from ext_proc.limiter import make_limiter
from ext_proc.metrics import Metrics
from ext_proc.redis_limiter import FUNCTION, library_code

ROOT = Path(__file__).resolve().parent.parent
IDENTITIES = [f"user-{i}" for i in range(5000)]


def pin(pid: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(pid, {cpu})


async def drive(call: Callable[[str], Awaitable[Any]], seconds: float, concurrency: int) -> float:
    """Decisions per second from ``concurrency`` callers looping for ``seconds``."""
    stop = time.monotonic() + seconds
    done = 0

    async def caller(seed: int) -> None:
        nonlocal done
        rng = random.Random(seed)
        while time.monotonic() < stop:
            await call(rng.choice(IDENTITIES))
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return done / (time.monotonic() - started)


SCRIPT_CALLS = ("fcall", "fcall_ro", "eval", "evalsha", "eval_ro", "evalsha_ro")


def script_calls(r: redis.Redis) -> int:
    """Top-level script and function calls so far (commands they issue are not counted)."""
    stats = r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in SCRIPT_CALLS)


async def godel(url: str, batch_max: int, seconds: float, concurrency: int) -> float:
    settings = settings_from_mapping(
        {
            "limiter": {
                "backend": "redis",
                "capacity": 1e6,
                "rate_per_second": 1e6,
                "redis": {"url": url, "batch_max": batch_max, "timeout_ms": 1000},
            }
        },
        env={},
    )
    metrics = Metrics()
    lim = make_limiter(settings.limiter, metrics)
    await lim.start()
    try:
        rate = await drive(lambda who: lim.check(who), seconds, concurrency)
    finally:
        await lim.close()
    fallbacks = sum(
        metrics.limiter_fallbacks.labels(limit, policy)._value.get()
        for limit in ("rate", "debt")
        for policy in ("local", "open", "closed")
    )
    if fallbacks:
        raise RuntimeError(f"{fallbacks} decisions fell back: the run does not measure Redis")
    return rate


async def limits_moving_window(port: int, seconds: float, concurrency: int) -> float:
    storage = RedisStorage(f"async+redis://127.0.0.1:{port}/0")
    limiter = MovingWindowRateLimiter(storage)
    # A window as large as the token bucket's would make it keep a million timestamps per key;
    # 100/s is never reached by one of 5000 callers here, so every hit is admitted, as above.
    item = parse("100/second")
    try:
        return await drive(lambda who: limiter.hit(item, who), seconds, concurrency)
    finally:
        closer = getattr(storage, "close", None)
        if closer is not None:
            result = closer()
            if asyncio.iscoroutine(result):
                await result


def redis_benchmark(port: int, requests: int) -> float:
    """redis-benchmark's requests/s for one FCALL decision, pipelined 16, 50 clients."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise FileNotFoundError("redis-benchmark not found (Debian package redis-tools)")
    args = [
        exe, "-p", str(port), "-n", str(requests), "-c", "50", "-P", "16", "-r", "5000", "-q",
        "FCALL", FUNCTION, "2", "rb:{__rand_int__}:rate:default", "rb:{__rand_int__}:debt",
        "1", "1000000", "1000000", "600000", "20", "60000", "0", "1", "1", "0",
    ]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=300).stdout
    found = re.findall(r"([\d.]+) requests per second", out)
    if not found:
        raise RuntimeError(f"cannot read redis-benchmark output: {out!r}")
    return float(found[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--bench-requests", type=int, default=400_000)
    args = ap.parse_args()

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="godel-rl-bench-") as tmp:
        proc, port = start_redis(Path(tmp))
        try:
            if len(cpus) >= 2:
                pin(proc.pid, cpus[1])
                pin(0, cpus[0])
            url = f"redis://127.0.0.1:{port}/0"
            r = redis.Redis(port=port)
            r.function_load(library_code(), replace=True)
            for rnd in range(1, args.rounds + 1):
                engines: list[tuple[str, Callable[[], Coroutine[Any, Any, float]]]] = [
                    ("godel-batched", lambda: godel(url, 128, args.seconds, args.concurrency)),
                    ("godel-unbatched", lambda: godel(url, 1, args.seconds, args.concurrency)),
                    (
                        "limits-moving-window",
                        lambda: limits_moving_window(port, args.seconds, args.concurrency),
                    ),
                ]
                for name, run in engines:
                    r.flushall()
                    before = script_calls(r)
                    rate = asyncio.run(run())
                    calls = script_calls(r) - before
                    rows.append(
                        {
                            "round": rnd,
                            "engine": name,
                            "decisions_per_s": rate,
                            "redis_calls_per_decision": calls / max(1.0, rate * args.seconds),
                        }
                    )
                r.flushall()
                rows.append(
                    {
                        "round": rnd,
                        "engine": "redis-benchmark (FCALL, P=16)",
                        "decisions_per_s": redis_benchmark(port, args.bench_requests),
                        "redis_calls_per_decision": 1.0,
                    }
                )
        finally:
            proc.stop()

    print(f"{'round':>5}  {'engine':<32} {'decisions/s':>12}  {'redis calls/decision':>20}")
    for row in rows:
        print(
            f"{row['round']:>5}  {row['engine']:<32} {row['decisions_per_s']:>12,.0f}  "
            f"{row['redis_calls_per_decision']:>20.3f}"
        )

    def med(engine: str) -> float:
        return float(statistics.median(r["decisions_per_s"] for r in rows if r["engine"] == engine))

    batched = med("godel-batched")
    ratios = {
        "godel_batched_per_s_median": batched,
        "batched_over_unbatched": batched / med("godel-unbatched"),
        "batched_over_redis_benchmark": batched / med("redis-benchmark (FCALL, P=16)"),
        "batched_over_limits_moving_window": batched / med("limits-moving-window"),
    }
    print()
    for key, val in ratios.items():
        print(f"{key}: {val:,.2f}")
    out = ROOT / "bench" / "results" / "ratelimit_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "ratios": ratios}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
