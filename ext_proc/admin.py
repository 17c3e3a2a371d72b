"""The admin HTTP server: liveness, readiness and Prometheus metrics.

* ``GET /health``  200 while the process runs (liveness).
* ``GET /ready``   200 when traps are loaded, the limiter answers and no shutdown is under way;
  otherwise 503 with the reason (readiness).
* ``GET /metrics`` the Prometheus exposition of :mod:`ext_proc.metrics`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ext_proc.metrics import Metrics

__all__ = ["ReadinessProbe", "build_admin_app"]

ReadinessProbe = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else a short reason."""


def build_admin_app(metrics: Metrics, readiness: ReadinessProbe) -> web.Application:
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

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics_page)
    return app
