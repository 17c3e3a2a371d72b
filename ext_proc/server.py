"""Process assembly: build the pipeline, start the gRPC and admin servers, drain on SIGTERM.

Shutdown order on SIGTERM or SIGINT: readiness flips to 503 and the gRPC health service to
NOT_SERVING; after ``server.shutdown_delay_seconds`` the gRPC server stops accepting streams and
gives in-flight ones up to ``server.drain_seconds`` to finish; then the limiter and the admin
server close and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from ext_proc.admin import build_admin_app
from ext_proc.audit import AuditEvent, AuditKeys, AuditLog, KeyringKeyWrapper, parse_audit_key
from ext_proc.config import Settings, load_config
from ext_proc.context import ContextBuilder
from ext_proc.errors import ConfigError, GodelError, KeyProviderError
from ext_proc.inspect import build_inspect_app
from ext_proc.keys import MIN_KEY_BYTES, Keyring, SecretBytes, load_keys
from ext_proc.limiter import make_limiter
from ext_proc.metrics import Metrics
from ext_proc.mutate import Redactor
from ext_proc.pipeline import Pipeline
from ext_proc.servicer import ExtProcServicer
from ext_proc.traps import TrapSet

__all__ = ["GodelServer", "build_pipeline", "build_redactor", "serve"]

log = logging.getLogger(__name__)

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
# Headroom above the largest body for the rest of the ProcessingRequest (headers, attributes).
GRPC_MESSAGE_HEADROOM = 1024 * 1024


def build_redactor(settings: Settings, keyring: Keyring | None = None) -> Redactor:
    """The redaction operator, with the current ``keys.redaction`` key when it needs one."""
    policy = settings.policy
    key = None
    if policy.redaction == "hash":
        if keyring is None or "redaction" not in keyring:
            raise ConfigError("policy.redaction 'hash' needs keys.redaction (a key reference)")
        key = keyring.material("redaction")
        if len(key.reveal()) < MIN_KEY_BYTES:
            raise ConfigError(f"keys.redaction: the key must be at least {MIN_KEY_BYTES} bytes")
    return Redactor(policy.redaction, key)


def show_traps(metrics: Metrics, traps: TrapSet) -> None:
    """Point the trap-set gauges at ``traps``, the set now running."""
    metrics.rules_loaded.set(len(traps))
    metrics.keyword_filter_rebuilds.set_function(lambda: traps.filter_rebuilds)


def build_pipeline(
    settings: Settings, metrics: Metrics, keyring: Keyring | None = None
) -> Pipeline:
    """The pipeline for ``settings``; ``keyring`` holds the fetched keys it needs (if any)."""
    traps = TrapSet.from_settings(settings.traps)
    show_traps(metrics, traps)
    log.info("traps compiled rules=%d prefilter=%s", len(traps), traps.prefilter)
    limiter = make_limiter(settings.limiter, metrics, keyring)
    return Pipeline(settings, traps, limiter, metrics, build_redactor(settings, keyring))


def build_audit(settings: Settings, keyring: Keyring, metrics: Metrics) -> AuditLog:
    """The audit log, its keys from the keyring and its data keys wrapped by ``keys.audit_kek``."""
    keys = AuditKeys(
        pseudonym=parse_audit_key(keyring.material("pseudonym").reveal(), "keys.pseudonym"),
        subject=parse_audit_key(keyring.material("audit").reveal(), "keys.audit"),
        signing=parse_audit_key(keyring.material("audit_signing").reveal(), "keys.audit_signing"),
    )
    return AuditLog(settings.audit, keys, KeyringKeyWrapper(keyring), metrics)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def _listen(runner: web.AppRunner, address: str) -> int:
    """Set up ``runner`` on ``address``; return the bound port (port 0 picks one)."""
    await runner.setup()
    host, port = _split(address)
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # aiohttp exposes no public accessor for the bound port
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else port


class GodelServer:
    """One process's servers. ``start()`` builds the pipeline and binds; ``stop()`` drains."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.config_path = config_path
        self.grpc_port = 0
        self.admin_port = 0
        self.inspect_port = 0  # 0 while the inspect endpoint is off
        self.inspect_runner: web.AppRunner | None = None
        self._stopping = False
        self._reload_lock = asyncio.Lock()
        self.audit: AuditLog | None = None
        self._refresher: asyncio.Future[None] | None = None

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file; swap in its rule packs and policy (SIGHUP, POST /reload).

        Everything is built before anything is swapped, so a bad file changes nothing and
        raises :class:`GodelError` naming the key. Settings that need new sockets or a new
        limiter (server, identity, limiter) keep their running values until a restart.
        """
        async with self._reload_lock:
            try:
                new = load_config(self.config_path)
                # Keys first: a rotated key becomes current, the previous versions stay for
                # decryption. A failed fetch keeps the running version (and is reported).
                statuses = await self.keyring.refresh()
                failed = [f"keys.{st.name}: {st.error}" for st in statuses if not st.ok]
                if failed:
                    raise KeyProviderError("; ".join(failed))
                # Compiling a large rule set takes a moment; keep the event loop serving.
                traps = await asyncio.to_thread(TrapSet.from_settings, new.traps)
                redactor = build_redactor(new, self.keyring)
            except GodelError:
                self.metrics.config_reloads.labels("error").inc()
                log.exception("reload failed; keeping the running config")
                raise
            kept = [
                name
                for name in ("server", "identity", "limiter", "keys", "audit")
                if getattr(new, name) != getattr(self.settings, name)
            ]
            merged = new.model_copy(update={name: getattr(self.settings, name) for name in kept})
            self.pipeline.reload(merged, traps, redactor)
            self.settings = merged
            show_traps(self.metrics, traps)
            self.metrics.config_reloads.labels("ok").inc()
            if kept:
                log.warning("reload: %s changed and take effect on restart", ", ".join(kept))
            log.info("reloaded rules=%d routes=%d", len(traps), len(new.policy.routes))
            return {
                "rules": len(traps),
                "routes": len(new.policy.routes),
                "keys": {st.name: st.key_id for st in statuses},
                "restart_needed": kept,
            }

    async def readiness(self) -> str | None:
        if self._stopping:
            return "shutting down"
        if not len(self.pipeline.traps):
            return "no trap rules loaded"
        if not await self.pipeline.limiter.ready():
            return "limiter unreachable"
        return None

    async def start(self) -> None:
        s = self.settings.server
        # Keys are fetched before anything serves: a key that does not load stops the start
        # with an error naming it (never its value).
        self.keyring = await load_keys(self.settings)
        self.pipeline = build_pipeline(self.settings, self.metrics, self.keyring)
        await self.pipeline.limiter.start()
        if self.settings.audit.enabled:
            self.audit = build_audit(self.settings, self.keyring, self.metrics)
            await self.audit.start()
            self.metrics.audit_enabled.set(1)
            audit = self.audit
            self.pipeline.on_outcome = lambda ctx, outcome: audit.record(
                AuditEvent.from_outcome(ctx, outcome)
            )
        if self.settings.keys.refresh_seconds > 0 and self.keyring.names:
            self._refresher = asyncio.ensure_future(
                self.keyring.refresh_forever(self.settings.keys.refresh_seconds)
            )
        limit = s.max_body_bytes + GRPC_MESSAGE_HEADROOM
        self.grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ]
        )
        servicer = ExtProcServicer(self.pipeline, self.settings.identity, self.metrics)
        pb_grpc.add_ExternalProcessorServicer_to_server(servicer, self.grpc)
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        self.grpc_port = self.grpc.add_insecure_port(s.grpc_address)
        if self.grpc_port == 0:
            raise OSError(f"server.grpc_address: cannot bind {s.grpc_address}")
        await self.grpc.start()

        self.admin_runner = web.AppRunner(
            build_admin_app(
                self.metrics, self.readiness, self.reload, reload_token=self._key("admin_token")
            ),
            access_log=None,
        )
        host, _ = _split(s.admin_address)
        self.admin_port = await _listen(self.admin_runner, s.admin_address)
        if s.inspect_address is not None:
            app = build_inspect_app(
                self.pipeline,
                ContextBuilder(self.pipeline, self.settings.identity),
                self._key("inspect_token"),
            )
            # Bodies arrive as the client sent them; Godel decodes gzip/deflate/br itself, with
            # the same bomb limits as on the Envoy path, instead of aiohttp inflating them.
            self.inspect_runner = web.AppRunner(app, access_log=None, auto_decompress=False)
            self.inspect_port = await _listen(self.inspect_runner, s.inspect_address)
            log.info("inspect endpoint on %s:%d", _split(s.inspect_address)[0], self.inspect_port)
        await self._set_serving(True)
        log.info(
            "godel serving grpc=%s:%d admin=%s:%d rules=%d",
            _split(s.grpc_address)[0],
            self.grpc_port,
            host,
            self.admin_port,
            len(self.pipeline.traps),
        )

    def _key(self, name: str) -> SecretBytes | None:
        """The current version of a configured key, or None when it is not configured."""
        return self.keyring.material(name) if name in self.keyring else None

    async def _set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        for service in ("", EXT_PROC_SERVICE):
            await self.health.set(service, status)
        self.metrics.health_status.set(1 if serving else 0)

    async def stop(self) -> None:
        s = self.settings.server
        self._stopping = True
        await self._set_serving(False)
        log.info("shutdown: not ready; draining for up to %.1fs", s.drain_seconds)
        if s.shutdown_delay_seconds:
            await asyncio.sleep(s.shutdown_delay_seconds)
        await self.grpc.stop(s.drain_seconds)
        if self.inspect_runner is not None:
            await self.inspect_runner.cleanup()
        if self._refresher is not None:
            self._refresher.cancel()
        if self.audit is not None:
            await self.audit.close()  # every queued record is written or spilled
        await self.pipeline.limiter.close()
        await self.keyring.close()
        await self.admin_runner.cleanup()
        log.info("shutdown complete")


async def _reload_quietly(server: GodelServer) -> None:
    with contextlib.suppress(GodelError):  # already logged and counted by reload()
        await server.reload()


async def serve(
    settings: Settings, port_file: Path | None = None, config_path: Path | None = None
) -> None:
    """Run until SIGTERM or SIGINT, then drain and return; SIGHUP reloads ``config_path``.

    ``port_file`` receives ``{"grpc": port, "admin": port}`` (plus ``"inspect"`` when that
    endpoint is on) once the servers listen (useful with port 0); it is written atomically.
    """
    server = GodelServer(settings, config_path=config_path)
    await server.start()
    if port_file is not None:
        tmp = port_file.with_suffix(port_file.suffix + ".tmp")
        ports = {"grpc": server.grpc_port, "admin": server.admin_port}
        if server.inspect_port:
            ports["inspect"] = server.inspect_port
        tmp.write_text(json.dumps(ports))
        tmp.replace(port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[Any]] = set()

    def on_sighup() -> None:
        task = loop.create_task(_reload_quietly(server))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    await stop.wait()
    await server.stop()
