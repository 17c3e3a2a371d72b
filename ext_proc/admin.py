"""The admin HTTP server: liveness, readiness and Prometheus metrics.

* ``GET /health``  200 while the process runs (liveness).
* ``GET /ready``   200 when traps are loaded, the limiter answers and no shutdown is under way;
  otherwise 503 with the reason (readiness).
* ``GET /metrics`` the Prometheus exposition of :mod:`ext_proc.metrics`.
* ``POST /reload`` re-fetches the keys, re-reads the config file and swaps in new rule packs,
  policy and keys without dropping a request; 200 with the rule count and key versions, 422
  naming the bad key (the old config stays). With ``keys.admin_token`` configured the caller
  must send ``Authorization: Bearer <token>`` (401 otherwise, compared in constant time);
  without it only loopback callers may reload (403). The admin port binds to loopback by
  default.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ext_proc.errors import GodelError
from ext_proc.keys import SecretBytes
from ext_proc.metrics import Metrics

__all__ = ["ReadinessProbe", "build_admin_app"]

ReadinessProbe = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else a short reason."""
Reloader = Callable[[], Awaitable[dict[str, Any]]]
"""Reloads config; returns a summary, raises GodelError with the reason on a bad config."""

_LOOPBACK = {"127.0.0.1", "::1"}


def build_admin_app(
    metrics: Metrics,
    readiness: ReadinessProbe,
    reloader: Reloader | None = None,
    *,
    reload_token: SecretBytes | None = None,
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
        if reload_token is not None:
            sent = request.headers.get("Authorization", "")
            scheme, _, token = sent.partition(" ")
            expected = reload_token.reveal()
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode("utf-8", "surrogateescape"), expected
            ):
                return web.json_response(
                    {"error": "reload needs Authorization: Bearer <keys.admin_token>"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        elif request.remote not in _LOOPBACK:
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
