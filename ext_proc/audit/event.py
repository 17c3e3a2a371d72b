"""One audited decision, as the pipeline knows it.

:class:`AuditEvent` holds the user id in memory only: the log stores its analytic id and audit
id, never the id itself, and never a body or a matched value (an event has no field for them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ext_proc.pipeline import Outcome, RequestContext

__all__ = ["AUDITED_DECISIONS", "AuditEvent"]

# Decisions recorded whatever the config says; "allow" only with audit.include_allow.
AUDITED_DECISIONS = frozenset({"block", "redact", "throttle", "too_large", "error"})


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """A decision to record. ``time`` is Unix seconds; ``debt`` the caller's security debt."""

    request_id: str
    user_id: str
    decision: str
    rules: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    debt: float = 0.0
    route: str = "default"
    time: float = field(default_factory=time.time)

    def __repr__(self) -> str:  # the user id is personal data: keep it out of logs
        return (
            f"AuditEvent(request_id={self.request_id!r}, decision={self.decision!r}, "
            f"rules={self.rules!r}, route={self.route!r})"
        )

    @classmethod
    def from_outcome(
        cls, ctx: RequestContext, outcome: Outcome, *, now: float | None = None
    ) -> AuditEvent:
        """Build the event for one pipeline outcome: rule ids and categories of the findings
        policy acted on (not allowed ones), the rule of a refusal, the limiter's debt."""
        verdict = outcome.inspection.verdict
        acted = [j.finding for j in verdict.judged if j.action.value != "allow"]
        rules = sorted({*outcome.rules, *(f.rule for f in acted)})
        categories = sorted({f.category for f in acted})
        route = ctx.route.name if ctx.route is not None else verdict.route
        return cls(
            request_id=ctx.request_id,
            user_id=ctx.identity,
            decision=outcome.decision,
            rules=tuple(rules),
            categories=tuple(categories),
            debt=float(outcome.limit.debt) if outcome.limit is not None else 0.0,
            route=route,
            time=time.time() if now is None else now,
        )
