"""How an :class:`Outcome` is answered over HTTP, whatever carries the answer.

The ext_proc servicer wraps a :class:`Refusal` in an ``ImmediateResponse``; the HTTP inspect
endpoint (:mod:`ext_proc.inspect`) sends it as its own response. Keeping the mapping here means
both front ends refuse with the same status, JSON body and headers:

* block     -> 403 ``{"error", "rules", "request_id"}``
* throttle  -> 429 ``{"error", "retry_after", "request_id"}`` + ``Retry-After`` (+ RateLimit)
* too_large -> 413 ``{"error", "limit_bytes", "request_id"}``
* a caller over its security debt -> 403 or 429 with ``Retry-After``

allow and redact are not refusals (:func:`refusal` returns None); each front end passes or
rewrites the body in its own way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from ext_proc.pipeline import DEBT_RULE, Outcome, RequestContext

__all__ = ["Refusal", "redacted_rules", "refusal"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A local reply: HTTP status, JSON body, extra headers, and Envoy's response details."""

    status: int
    payload: dict[str, object]
    details: str  # %RESPONSE_CODE_DETAILS% in Envoy's access log
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":")).encode("ascii")


def refusal(
    ctx: RequestContext, outcome: Outcome, *, max_body_bytes: int, ratelimit_headers: bool
) -> Refusal | None:
    """The refusal for ``outcome``, or None when the request goes on (allow, redact)."""
    decision = outcome.decision
    limit = outcome.limit
    rid = ctx.request_id
    if limit is not None and outcome.rules == (DEBT_RULE,):
        retry = limit.retry_after_header
        log.info("refused for security debt request_id=%s", rid)
        return Refusal(
            403 if decision == "block" else 429,
            {
                "error": "refused: this caller's security debt is over its limit",
                "retry_after": int(retry),
                "request_id": rid,
            },
            "godel_debt",
            {"retry-after": retry, "x-request-id": rid},
        )
    if decision == "block":
        log.info("blocked request_id=%s rules=%s", rid, ",".join(outcome.rules))
        return Refusal(
            403,
            {"error": "request blocked by policy", "rules": list(outcome.rules), "request_id": rid},
            "godel_block",
            {"x-request-id": rid},
        )
    if decision == "throttle":
        assert limit is not None
        retry = limit.retry_after_header
        extra = dict(limit.ratelimit_headers()) if ratelimit_headers else {}
        return Refusal(
            429,
            {"error": "rate limit exceeded", "retry_after": int(retry), "request_id": rid},
            "godel_throttle",
            {"retry-after": retry, "x-request-id": rid, **extra},
        )
    if decision == "too_large":
        return Refusal(
            413,
            {
                "error": "request body too large to inspect",
                "limit_bytes": max_body_bytes,
                "request_id": rid,
            },
            "godel_too_large",
            {"x-request-id": rid},
        )
    return None


def redacted_rules(ctx: RequestContext, outcome: Outcome) -> list[str]:
    """The rule ids acted on by a redaction (sorted, unique); logs the redaction."""
    rules = sorted({f.rule for f in outcome.inspection.verdict.to_redact})
    log.info("redacted request_id=%s rules=%s", ctx.request_id, ",".join(rules))
    return rules
