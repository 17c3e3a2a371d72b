"""``POST /v1/inspect``: the pipeline over plain HTTP, for proxies without ext_proc (NGINX + njs).

The request body is the client's raw request body; a few headers carry what Envoy would have
told the servicer (docs/inspect-api.yaml):

* ``x-godel-identity``  the caller (else the configured identity header, else
  ``x-godel-client-ip``, else anonymous);
* ``x-godel-path`` / ``x-godel-method``  the original request line, for route policy;
* ``content-type``, ``content-encoding`` (gzip/deflate/br are decoded by Godel, bounded),
  ``x-request-id``.

The answer is built for a proxy to act on without parsing JSON: its status is the status the
client should get, and ``x-godel-decision`` names the decision.

* 200 ``allow``    empty body: send the original body on.
* 200 ``redact``   the body *is* the redacted request body: send it on instead
  (``x-godel-body-decoded: 1`` means it was decompressed: drop ``content-encoding``).
* 403/429/413      ``block`` / ``throttle`` / ``too_large``: relay status, JSON body and
  headers (``retry-after``, ...) to the client. Same bodies as the Envoy path
  (:mod:`ext_proc.replies`).

Anything without ``x-godel-decision`` (401 for a bad token, 5xx, a proxy's own error) is not a
decision; the caller applies its failure policy. Bodies are never logged.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from ext_proc.context import ContextBuilder
from ext_proc.keys import SecretBytes
from ext_proc.pipeline import Outcome, Pipeline, RequestContext
from ext_proc.replies import redacted_rules, refusal

__all__ = ["DECISION_HEADER", "INSPECT_PATH", "build_inspect_app"]

INSPECT_PATH = "/v1/inspect"
DECISION_HEADER = "x-godel-decision"
_CHUNK = 64 * 1024

log = logging.getLogger(__name__)


async def _read_capped(request: web.Request, cap: int) -> bytes | None:
    """The whole body, or None once it passes ``cap`` bytes (chunked bodies have no length)."""
    buf = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        buf += chunk
        if len(buf) > cap:
            return None
    return bytes(buf)


def _authorized(request: web.Request, token: SecretBytes | None) -> bool:
    if token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.reveal()
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), expected
    )


def build_inspect_app(
    pipeline: Pipeline, contexts: ContextBuilder, token: SecretBytes | None = None
) -> web.Application:
    async def inspect(request: web.Request) -> web.Response:
        if not _authorized(request, token):
            return web.json_response(
                {"error": "missing or wrong bearer token"},
                status=401,
                headers={"www-authenticate": "Bearer"},
            )
        headers = {k.lower(): v for k, v in request.headers.items()}
        headers[":path"] = headers.get("x-godel-path") or "/"
        headers[":method"] = headers.get("x-godel-method") or "POST"
        if headers.get("x-godel-identity"):
            headers[contexts.identity_header] = headers["x-godel-identity"]
        client = headers.get("x-godel-client-ip", "")
        ctx = contexts.build(headers, {"source.address": client} if client else {})

        body: bytes | None = None
        if ctx.content_length is not None and pipeline.too_large(ctx.content_length):
            outcome = pipeline.reject_too_large()
        else:
            body = await _read_capped(request, pipeline.max_body_bytes)
            if body is None:
                outcome = pipeline.reject_too_large()
            else:
                pipeline.metrics.body_bytes.observe(len(body))
                try:
                    outcome = await pipeline.decide(ctx, body)
                except Exception:
                    # As on the gRPC path: counted, logged (never the body), and answered
                    # without a decision so the proxy applies its failure policy.
                    pipeline.metrics.requests.labels("error").inc()
                    log.exception("inspect failed request_id=%s", ctx.request_id)
                    return web.json_response({"error": "godel: internal error"}, status=500)
        return _answer(ctx, outcome)

    def _answer(ctx: RequestContext, outcome: Outcome) -> web.Response:
        """The outcome as an HTTP response: the refusal the client gets, else pass or rewrite."""
        refused = refusal(
            ctx,
            outcome,
            max_body_bytes=pipeline.max_body_bytes,
            ratelimit_headers=pipeline.settings.limiter.headers,
        )
        if refused is not None:
            headers = {DECISION_HEADER: outcome.decision, **refused.headers}
            if outcome.rules:
                headers["x-godel-rules"] = ",".join(outcome.rules)
            return web.Response(
                body=refused.body(),
                status=refused.status,
                content_type="application/json",
                headers=headers,
            )
        rid = {"x-request-id": ctx.request_id}
        if outcome.decision == "redact" and outcome.body is not None:
            rules = redacted_rules(ctx, outcome)
            return web.Response(
                body=outcome.body,
                content_type="application/octet-stream",
                headers={
                    DECISION_HEADER: "redact",
                    "x-godel-rules": ",".join(rules),
                    "x-godel-body-decoded": "1" if outcome.decoded else "0",
                    **rid,
                },
            )
        # allow; also a shadow route's would-be decision, which changes nothing
        return web.Response(status=200, headers={DECISION_HEADER: "allow", **rid})

    app = web.Application()
    app.router.add_post(INSPECT_PATH, inspect)
    return app
