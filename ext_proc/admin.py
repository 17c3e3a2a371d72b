"""The admin HTTP server: liveness, readiness and Prometheus metrics.

* ``GET /health``  200 while the process runs (liveness).
* ``GET /ready``   200 when traps are loaded, the limiter answers and no shutdown is under way;
  otherwise 503 with the reason (readiness).
* ``GET /metrics`` the Prometheus exposition of :mod:`ext_proc.metrics`.
* ``POST /reload`` re-reads the config file and swaps in new rule packs and policy without
  dropping a request; 200 with the rule count, 422 naming the bad key (the old config stays),
  403 unless the caller is on loopback. (Token authentication arrives with the key provider.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ext_proc.errors import GodelError
from ext_proc.metrics import Metrics

__all__ = ["ReadinessProbe", "build_admin_app"]

ReadinessProbe = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else a short reason."""
Reloader = Callable[[], Awaitable[dict[str, Any]]]
"""Reloads config; returns a summary, raises GodelError with the reason on a bad config."""

_LOOPBACK = {"127.0.0.1", "::1"}


def build_admin_app(
    metrics: Metrics, readiness: ReadinessProbe, reloader: Reloader | None = None
) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_: web.Request) -> web.Response:
        reason = await readiness()
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": reason}, status=503)

    async def metrics_page(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def reload(request: web.Request) -> web.Response:
        if request.remote not in _LOOPBACK:
            return web.json_response({"error": "reload is allowed from loopback only"}, status=403)
        assert reloader is not None
        try:
            summary = await reloader()
        except GodelError as exc:
            return web.json_response({"status": "error", "error": str(exc)}, status=422)
        return web.json_response({"status": "reloaded", **summary})

    app = web.Application()
    if reloader is not None:
        app.router.add_post("/reload", reload)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics_page)
    return app
