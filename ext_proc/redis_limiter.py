"""The global limiter: every Godel process shares one bucket and one debt per caller in Redis.

Each decision is one call of ``limiter.lua`` (a Redis Function, or EVALSHA where functions are
not allowed): the caller's debt and bucket are read, decayed or refilled by the server's clock,
checked and written back atomically. Decisions that arrive in the same event-loop tick are sent
together, up to ``batch_max`` per call, so a request costs one shared round trip and Redis runs
one script for many decisions.

Failure policy: a call that fails or takes longer than ``timeout_ms`` is answered, for every
decision in it, by ``limiter.on_error`` (the bucket) and ``limiter.debt.on_error`` (the debt):
``local`` uses this process's :class:`~ext_proc.limiter.LocalLimiter`, ``open`` lets the limit
pass, ``closed`` refuses. For ``retry_interval_ms`` after a failure Redis is not asked at all, so
no request waits on a dead server; then the next decision tries again, and a missing function or
script (a restart, failover, ``FUNCTION FLUSH``, ``SCRIPT FLUSH``) is loaded again and the call
retried. Every fallback decision is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, NoScriptError, RedisError, ResponseError

from ext_proc.config import FailurePolicy, LimiterSettings, RedisSettings
from ext_proc.keys import SecretBytes
from ext_proc.limiter import LimitVerdict, LocalLimiter, Reason, Tier, Tiers
from ext_proc.metrics import Metrics

__all__ = [
    "FUNCTION",
    "LIBRARY",
    "Connection",
    "RedisLimiter",
    "connect",
    "library_code",
    "script_code",
]

log = logging.getLogger("godel.limiter")

LIBRARY = "godel_v1"
FUNCTION = "godel_decide_v1"
_REASONS: dict[int, Reason] = {0: "ok", 1: "rate", 2: "debt", 3: "uncharged"}
_KEY_CACHE = 65_536  # (identity, tier) -> key names, cleared when full

# identity, tier, cost, debt points, the caller's future, when it was queued (monotonic)
_Pending = tuple[str, Tier, float, float, "asyncio.Future[LimitVerdict]", float]


def _number(x: float) -> str:
    """A number as the script reads it; the common costs and points without formatting."""
    return _SMALL.get(x) or repr(float(x))


_SMALL = {0.0: "0", 1.0: "1", 2.0: "2", 3.0: "3", 4.0: "4", 5.0: "5"}


def _lua_body() -> str:
    return resources.files("ext_proc").joinpath("limiter.lua").read_text(encoding="utf-8")


def library_code() -> str:
    """``limiter.lua`` as the Redis Function library ``godel_v1``."""
    return f"#!lua name={LIBRARY}\n{_lua_body()}\nredis.register_function('{FUNCTION}', decide)\n"


def script_code() -> str:
    """``limiter.lua`` as an EVAL script (the fallback where functions are not allowed)."""
    return f"{_lua_body()}\nreturn decide(KEYS, ARGV)\n"


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    """``h1:6379,[::1]:6380,h3`` -> [(host, port), ...]."""
    out = []
    for part in netloc.rsplit("@", 1)[-1].split(","):
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, _, port = part.partition(":")
        out.append((host or "127.0.0.1", int(port) if port else default_port))
    return out


@dataclass(frozen=True, slots=True)
class Connection:
    """A client from :func:`connect`, and the Sentinel clients behind it (closed together)."""

    client: aredis.Redis | RedisCluster
    sentinel: Sentinel | None = None

    async def close(self) -> None:
        try:
            await self.client.aclose()
        finally:
            for node in self.sentinel.sentinels if self.sentinel is not None else ():
                await node.aclose()


def connect(cfg: RedisSettings, password: SecretBytes | None) -> Connection:
    """A client for ``cfg.url``: one server, Sentinel or Cluster, TLS for ``rediss``."""
    scheme = cfg.url.split("://", 1)[0]
    secret = password.reveal().decode("utf-8") if password is not None else None
    timeout = cfg.timeout_ms / 1000
    common: dict[str, Any] = {
        "username": cfg.username,
        "password": secret,
        "socket_timeout": max(timeout, 0.05) * 4,
        "socket_connect_timeout": max(timeout, 0.05) * 4,
    }
    tls = scheme.startswith("rediss")
    tls_args: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(cfg.tls_ca_file)} if tls else {}
    if tls and cfg.tls_ca_file is None:
        tls_args.pop("ssl_ca_certs")
    if scheme.endswith("+cluster"):
        split = urlsplit(cfg.url)
        nodes = [ClusterNode(h, p) for h, p in _hosts(split.netloc, 6379)]
        return Connection(
            RedisCluster(
                startup_nodes=nodes, max_connections=cfg.max_connections, **common, **tls_args
            )
        )
    if scheme.endswith("+sentinel"):
        split = urlsplit(cfg.url)
        parts = [unquote(p) for p in split.path.split("/") if p]
        service, db = parts[0], int(parts[1]) if len(parts) > 1 else 0
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            _hosts(split.netloc, 26379),
            sentinel_kwargs={"socket_timeout": common["socket_timeout"], **tls_args},
            **common,
            **tls_args,
        )
        return Connection(sentinel.master_for(service, db=db), sentinel)
    extra: dict[str, Any] = (
        {"ssl_ca_certs": str(cfg.tls_ca_file)} if tls and cfg.tls_ca_file else {}
    )
    client = aredis.Redis.from_url(cfg.url, max_connections=cfg.max_connections, **common, **extra)
    return Connection(client)


class RedisLimiter:
    """:class:`~ext_proc.limiter.Limiter` over Redis, batched, with a failure policy."""

    def __init__(
        self,
        settings: LimiterSettings,
        password: SecretBytes | None = None,
        metrics: Metrics | None = None,
        pseudonym_key: SecretBytes | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.redis
        self.tiers = Tiers(settings)
        self.local = LocalLimiter(settings)
        self.metrics = metrics if metrics is not None else Metrics()
        self._password = password
        self._pseudonym_key = pseudonym_key
        self._client: Connection | None = None
        self._cluster = self.cfg.url.split("://", 1)[0].endswith("+cluster")
        self._mode: str | None = None  # "functions" or "eval" once loaded
        self._sha = hashlib.sha1(script_code().encode(), usedforsecurity=False).hexdigest()
        self._pending: list[_Pending] = []
        self._scheduled = False
        self._inflight = 0
        self._expiry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._down_until = 0.0
        self._keys: dict[tuple[str, str], tuple[str, str]] = {}
        debt = settings.debt
        self._debt_on = debt.enabled
        self._debt_cap = debt.max_points_per_request
        # Per tier, its six numbers as the script takes them, formatted once.
        self._tier_args: dict[str, tuple[str, ...]] = {}
        for tier in self.tiers:
            half = debt.half_life_seconds * 1000 if debt.enabled else 0.0
            self._tier_args[tier.name] = tuple(
                repr(float(x))
                for x in (
                    tier.rate,
                    tier.capacity,
                    half,
                    tier.debt_limit,
                    debt.cooldown_seconds * 1000,
                    debt.cost_per_point,
                )
            )
        m = self.metrics
        self._up = m.limiter_backend_up
        self._up.set(0)
        # Label children bound once: labels() costs more than the decision itself.
        self._decided = {
            reason: m.limiter_decisions.labels("redis", reason) for reason in _REASONS.values()
        }
        self._fell_back = {
            (limit, policy): m.limiter_fallbacks.labels(limit, policy)
            for limit in ("rate", "debt")
            for policy in ("local", "open", "closed")
        }

    # -- keys ------------------------------------------------------------------------------
    def _caller(self, identity: str) -> str:
        """The caller's pseudonym in key names (keyed when a pseudonym key is configured)."""
        data = identity.encode("utf-8", "surrogatepass")
        if self._pseudonym_key is not None:
            return hmac.new(self._pseudonym_key.reveal(), data, hashlib.sha256).hexdigest()[:32]
        return hashlib.sha256(data).hexdigest()[:32]

    def keys_for(self, identity: str, tier: Tier) -> tuple[str, str]:
        """(bucket key, debt key): one hash tag, so both live in one Cluster slot."""
        cached = self._keys.get((identity, tier.name))
        if cached is None:
            tag = self._caller(identity)
            prefix = self.cfg.key_prefix
            cached = (f"{prefix}:{{{tag}}}:rate:{tier.name}", f"{prefix}:{{{tag}}}:debt")
            if len(self._keys) >= _KEY_CACHE:
                self._keys.clear()
            self._keys[identity, tier.name] = cached
        return cached

    # -- the Limiter protocol ----------------------------------------------------------------
    async def check(
        self, identity: str, tier: str | None = None, cost: float = 1.0, debt: float = 0.0
    ) -> LimitVerdict:
        t = self.tiers.get(tier)
        points = min(debt, self._debt_cap) if self._debt_on else 0.0
        if time.monotonic() < self._down_until:
            return self._fallback(identity, t, cost, points)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[LimitVerdict] = loop.create_future()
        self._pending.append((identity, t, cost, points, fut, time.monotonic()))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._kick)
        return await fut

    async def start(self, wait: float = 5.0) -> bool:
        """Connect and load the function (or script) before traffic arrives. A failure is
        logged, not raised: requests then get the failure policy until Redis answers."""
        try:
            await asyncio.wait_for(self._load(), wait)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("redis limiter not reachable at start (%s)", type(exc).__name__)
            return False
        self._up.set(1)
        return True

    async def ready(self) -> bool:
        # With a local or open failure policy this process can answer without Redis.
        closed = self.settings.on_error == "closed" or (
            self._debt_on and self.settings.debt.on_error == "closed"
        )
        return not (closed and time.monotonic() < self._down_until)

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- batching ----------------------------------------------------------------------------
    def _kick(self) -> None:
        """Send what is pending, ``batch_max`` per call, on at most ``max_connections`` calls.

        While every connection is busy, decisions keep queueing and go out together in the next
        free call (batches grow with load). A decision that has queued for ``timeout_ms``
        without a free connection is answered by the failure policy.
        """
        self._scheduled = False
        size = self.cfg.batch_max
        while self._pending and self._inflight < self.cfg.max_connections:
            batch = self._pending[:size]
            del self._pending[:size]
            self._inflight += 1
            task = asyncio.ensure_future(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._sent)
        if self._pending and self._expiry is None:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(self.cfg.timeout_ms / 1000, self._expire)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._inflight -= 1
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _expire(self) -> None:
        self._expiry = None
        deadline = time.monotonic() - self.cfg.timeout_ms / 1000
        stale = [p for p in self._pending if p[5] <= deadline]
        if stale:
            self._pending = [p for p in self._pending if p[5] > deadline]
            self.metrics.limiter_backend_errors.labels("timeout").inc()
            for identity, tier, cost, points, fut, _ in stale:
                if not fut.done():
                    fut.set_result(self._fallback(identity, tier, cost, points))
        if self._pending:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(self.cfg.timeout_ms / 1000, self._expire)

    async def _send(self, batch: list[_Pending]) -> None:
        keys: list[str] = []
        args: list[str] = []
        index: dict[str, str] = {}
        for identity, tier, cost, points, _, _ in batch:
            keys.extend(self.keys_for(identity, tier))
            slot = index.get(tier.name)
            if slot is None:
                slot = index[tier.name] = str(len(index) + 1)
            args += (slot, _number(cost), _number(points))
        head = [str(len(index))]
        for name in index:
            head.extend(self._tier_args[name])
        args[:0] = head
        started = time.perf_counter()
        try:
            reply = await asyncio.wait_for(self._call(keys, args), self.cfg.timeout_ms / 1000)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            for identity, tier, cost, points, fut, _ in batch:
                if not fut.done():
                    fut.set_result(self._fallback(identity, tier, cost, points))
            return
        except BaseException as exc:  # cancelled at shutdown, or a bug: never strand a caller
            for *_, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(exc)
            raise
        self.metrics.limiter_call_seconds.observe(time.perf_counter() - started)
        self.metrics.limiter_batch_decisions.observe(len(batch))
        if self._down_until:
            log.info("redis limiter recovered")
            self._down_until = 0.0
        self._up.set(1)
        for i, (_, tier, _, _, fut, _) in enumerate(batch):
            status, tokens, retry_ms, level = reply[4 * i : 4 * i + 4]
            reason = _REASONS.get(int(status), "ok")
            verdict = LimitVerdict(
                allowed=reason in ("ok", "uncharged"),
                retry_after=int(retry_ms) / 1000,
                remaining=float(tokens),
                reason=reason,
                debt=float(level),
                tier=tier,
                source="redis",
            )
            self._decided[reason].inc()
            if not fut.done():
                fut.set_result(verdict)

    def _failed(self, exc: BaseException) -> None:
        kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        self.metrics.limiter_backend_errors.labels(
            "timeout" if kind == "timeout" else "error"
        ).inc()
        if not self._down_until or time.monotonic() >= self._down_until:
            log.warning(
                "redis limiter unavailable (%s); failure policy for %d ms",
                kind,
                self.cfg.retry_interval_ms,
            )
        self._down_until = time.monotonic() + self.cfg.retry_interval_ms / 1000
        self._up.set(0)
        # Pooled connections to a server that went away are all stale: start afresh (and load
        # the code again) at the next attempt rather than failing once per stale connection.
        if self._client is not None:
            old, self._client, self._mode = self._client, None, None
            task = asyncio.ensure_future(self._close_quietly(old))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _close_quietly(conn: Connection) -> None:
        with contextlib.suppress(RedisError, OSError):
            await conn.close()

    # -- talking to Redis --------------------------------------------------------------------
    def _redis(self) -> aredis.Redis | RedisCluster:
        if self._client is None:
            self._client = connect(self.cfg, self._password)
        return self._client.client

    async def _load(self) -> None:
        client = self._redis()
        if self.cfg.scripting in ("auto", "functions"):
            try:
                await client.function_load(library_code(), replace=True)
                self._mode = "functions"
                return
            except ResponseError as exc:
                if self.cfg.scripting == "functions":
                    raise
                log.info("redis functions unavailable (%s); using EVALSHA", exc)
        sha = await client.script_load(script_code())
        if sha != self._sha:
            raise RedisError("redis returned an unexpected script digest")
        self._mode = "eval"

    async def _call(self, keys: list[str], args: list[str]) -> list[Any]:
        if self._mode is None:
            await self._load()
        try:
            return await self._invoke(keys, args)
        except NoScriptError:
            pass
        except (MovedError, AskError):
            # Slots moved (resharding, failover): refresh the slot map and retry once.
            cluster = self._redis()
            assert isinstance(cluster, RedisCluster)
            await cluster.nodes_manager.initialize()
            return await self._invoke(keys, args)
        except ResponseError as exc:
            if "function not found" not in str(exc).lower():
                raise
        # The server lost the code (restart, failover, FLUSH): load it again, retry once.
        await self._load()
        return await self._invoke(keys, args)

    async def _invoke(self, keys: list[str], args: list[str]) -> list[Any]:
        client = self._redis()
        if self._mode == "functions":
            head: tuple[Any, ...] = ("FCALL", FUNCTION)
        else:
            head = ("EVALSHA", self._sha)
        if not self._cluster:
            assert isinstance(client, aredis.Redis)
            return await self._raw(client, (*head, len(keys), *keys, *args))
        assert isinstance(client, RedisCluster)
        return await self._cluster_invoke(client, head, keys, args)

    @staticmethod
    async def _cluster_invoke(
        client: RedisCluster, head: tuple[Any, ...], keys: list[str], args: list[str]
    ) -> list[Any]:
        """Cluster: one call per hash slot (a call's keys must share one), and the calls for
        one primary pipelined on one connection, so a batch costs one round trip per node."""
        tiers = int(args[0])
        tier_args, body = args[: 1 + 6 * tiers], args[1 + 6 * tiers :]
        slots: dict[int, list[int]] = {}
        for i in range(len(keys) // 2):
            slots.setdefault(key_slot(keys[2 * i].encode()), []).append(i)
        nodes: dict[str, ClusterNode] = {}
        per_node: dict[str, list[tuple[list[int], bytes]]] = {}
        for idx in slots.values():
            ks = [k for i in idx for k in keys[2 * i : 2 * i + 2]]
            av = tier_args + [a for i in idx for a in body[3 * i : 3 * i + 3]]
            node = client.get_node_from_key(ks[0])
            if node is None:
                raise RedisError("no cluster node serves this slot")
            nodes[node.name] = node
            packed = hiredis.pack_command((*head, len(ks), *ks, *av))
            per_node.setdefault(node.name, []).append((idx, packed))

        async def on_node(name: str) -> list[tuple[list[int], Any]]:
            node, calls = nodes[name], per_node[name]
            conn = node.acquire_connection()
            try:
                await conn.send_packed_command(b"".join(c for _, c in calls), check_health=False)
                replies = [await conn.read_response() for _ in calls]
            except BaseException:
                await conn.disconnect()  # unread replies would put the next caller out of step
                raise
            finally:
                node.release(conn)
            return [(idx, reply) for (idx, _), reply in zip(calls, replies, strict=True)]

        reply: list[Any] = [None] * (2 * len(keys))
        for part in await asyncio.gather(*(on_node(name) for name in per_node)):
            for idx, out in part:
                for j, i in enumerate(idx):
                    reply[4 * i : 4 * i + 4] = out[4 * j : 4 * j + 4]
        return reply

    @staticmethod
    async def _raw(client: aredis.Redis, command: tuple[Any, ...]) -> list[Any]:
        """One command packed by hiredis on a pooled connection.

        redis-py packs arguments in Python, which costs more than the rest of a decision;
        hiredis packs the same RESP array in C. Errors come back as redis-py exceptions.
        """
        pool = client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(hiredis.pack_command(command), check_health=False)
            reply = await conn.read_response()
        except BaseException:
            # A timeout or cancellation mid-reply leaves the connection out of step.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        if isinstance(reply, ResponseError):
            raise reply
        if not isinstance(reply, list):
            raise RedisError(f"unexpected limiter reply type {type(reply).__name__}")
        return reply

    # -- failure policy ----------------------------------------------------------------------
    def _fallback(self, identity: str, tier: Tier, cost: float, points: float) -> LimitVerdict:
        level = 0.0
        if self._debt_on:
            policy: FailurePolicy = self.settings.debt.on_error
            self._fell_back["debt", policy].inc()
            if policy == "closed":
                wait = self.cfg.retry_interval_ms / 1000
                return LimitVerdict(False, wait, 0.0, "debt", 0.0, tier, "closed")
            if policy == "local":
                level, blocked = self.local.charge(identity, tier, points)
                if blocked > 0:
                    return LimitVerdict(False, blocked, 0.0, "debt", level, tier, "local")
        if cost <= 0:
            return LimitVerdict(True, 0.0, tier.capacity, "uncharged", level, tier, "local")
        policy = self.settings.on_error
        self._fell_back["rate", policy].inc()
        if policy == "open":
            return LimitVerdict(True, 0.0, tier.capacity, "ok", level, tier, "open")
        if policy == "closed":
            wait = self.cfg.retry_interval_ms / 1000
            return LimitVerdict(False, wait, 0.0, "rate", level, tier, "closed")
        v = self.local.take(identity, tier, cost + self.settings.debt.cost_per_point * level)
        return LimitVerdict(v.allowed, v.retry_after, v.remaining, v.reason, level, tier, "local")
