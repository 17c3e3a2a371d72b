"""The request pipeline, top to bottom: normalise, traps, policy, limit, decide, mutate.

:meth:`Pipeline.inspect` is the pure part (no I/O): it is what ``godel scan`` runs offline.
:meth:`Pipeline.decide` adds the limiter and returns an :class:`Outcome` that the servicer turns
into an ext_proc reply. Nothing here knows about gRPC or Envoy messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ext_proc.config import Settings
from ext_proc.errors import BodyDecodeError
from ext_proc.limiter import Limiter, LimitVerdict, Tiers
from ext_proc.metrics import Metrics
from ext_proc.mutate import Redactor, merged_spans, redact
from ext_proc.policy import Policy, RoutePolicy, Verdict
from ext_proc.stream import TextSpan
from ext_proc.traps import TrapSet

__all__ = ["Inspection", "Outcome", "Pipeline", "RequestContext"]

DECODABLE = frozenset({"gzip", "x-gzip", "deflate", "br"})
UNDECODABLE_RULE = "undecodable-body"
DEBT_RULE = "security-debt"  # the "rule" of a request refused for the caller's debt


@dataclass(slots=True)
class RequestContext:
    """What Godel knows about one HTTP request before its body arrives."""

    request_id: str
    identity: str
    method: str = ""
    path: str = ""
    content_length: int | None = None
    route: RoutePolicy | None = None  # None: the global policy
    content_encoding: str = ""  # of the request body: "", gzip, deflate, br
    tier: str | None = None  # limiter tier named by the request; None: the default tier


@dataclass(frozen=True, slots=True)
class Inspection:
    """Traps and policy applied to one body; ``body`` is the redacted body for a redaction."""

    verdict: Verdict
    body: bytes | None = None

    @property
    def decision(self) -> str:
        return self.verdict.decision


CLEAN = Inspection(Verdict("allow", ()))


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final answer for one request.

    ``decision`` is one of allow, redact, block, throttle, too_large.
    """

    decision: str
    inspection: Inspection = CLEAN
    limit: LimitVerdict | None = None
    rules: tuple[str, ...] = field(default=())
    decoded: bool = False  # the body was decompressed; a mutation sends it uncompressed

    @property
    def body(self) -> bytes | None:
        return self.inspection.body


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        traps: TrapSet,
        limiter: Limiter,
        metrics: Metrics,
        redactor: Redactor | None = None,
    ) -> None:
        self.settings = settings
        self.traps = traps
        self.policy = Policy(settings.policy)
        self.redactor = redactor or Redactor(settings.policy.redaction)
        self.limiter = limiter
        self.metrics = metrics
        # Called with every decided request (the audit log); must not block or raise.
        self.on_outcome: Callable[[RequestContext, Outcome], None] | None = None
        self.max_body_bytes = settings.server.max_body_bytes
        # The limiter's settings (and so its tiers) only change on a restart. Series per tier
        # are created here, from the config, so a tier label can never carry a client's value.
        self._debt_on = settings.limiter.debt.enabled
        for tier in Tiers(settings.limiter):
            metrics.add_tier(tier.name)
        # Label children bound once, off the request path.
        self._debt_ratio = {
            t.name: metrics.debt_ratio.labels(t.name) for t in Tiers(settings.limiter)
        }
        self._decided = {
            (source, reason): metrics.limiter_decisions.labels(source, reason)
            for source in ("local", "open", "closed")
            for reason in ("ok", "rate", "debt", "uncharged")
        }

    def normalise(self, body: bytes) -> bytes:
        """The bytes handed to the traps: the body as sent (decompressed if it was encoded).

        The traps build the normalised views (JSON strings, escapes, Unicode, leetspeak,
        base64/hex) natively in the same call (ADR 0004); malformed JSON is scanned as text.
        """
        return body

    def reload(self, settings: Settings, traps: TrapSet, redactor: Redactor) -> None:
        """Swap in new traps and policy. Requests already past their scan keep what they had;
        the swap is two reference assignments on the event loop, so no request sees a mix."""
        self.settings = settings
        self.traps = traps
        self.policy = Policy(settings.policy)
        self.redactor = redactor
        self.max_body_bytes = settings.server.max_body_bytes

    def inspect(
        self, body: bytes, *, response: bool = False, route: RoutePolicy | None = None
    ) -> Inspection:
        """Scan ``body`` and apply the route's policy; redact if it says so. Pure, no I/O.

        ``response=True`` inspects a response body: blocking findings are redacted instead.
        The returned inspection reflects policy even in shadow mode; enforcement is decided
        by :meth:`decide`.
        """
        if not body:
            return CLEAN
        view = self.normalise(body)
        findings = self.traps.scan(view)
        if not findings:
            return CLEAN
        verdict = self.policy.judge(findings, route, response=response)
        if verdict.decision == "redact":
            new_body = redact(body, verdict.to_redact, self.redactor, self.traps.scan)
            if len(new_body) > self.max_body_bytes and self.redactor.operator != "mask":
                # Labels are longer than most secrets; a body near the limit must not grow past
                # it (Envoy would answer 413 for the mutated body). Masking keeps the length.
                new_body = redact(body, verdict.to_redact, self.redactor.masking(), self.traps.scan)
            return Inspection(verdict, new_body)
        return Inspection(verdict)

    def redact_text(
        self, text: str, route: RoutePolicy | None = None
    ) -> tuple[str, list[TextSpan]]:
        """Redact a response text (a stream's text, or one event's payload).

        Returns the redacted text (a JSON text stays valid JSON) and the redactions acted on:
        character spans of ``text``, overlapping findings merged, each with its replacement.
        Used by :class:`ext_proc.stream.SseRedactor`.
        """
        data = text.encode("utf-8", "surrogatepass")
        inspection = self.inspect(data, response=True, route=route)
        acted = inspection.verdict.to_redact
        if inspection.body is None or not acted or inspection.verdict.shadow:
            return text, []
        spans: list[TextSpan] = []
        pos, chars = 0, 0  # offsets advance monotonically: one pass over the text
        for start, end, covered in merged_spans(data, acted):
            chars += len(data[pos:start].decode("utf-8", "surrogatepass"))
            width = len(data[start:end].decode("utf-8", "surrogatepass"))
            replacement = self.redactor.replacement(covered[0], data[start:end]).decode()
            rules = tuple(f.rule for f in covered)
            categories = frozenset(f.category for f in covered)
            spans.append(TextSpan(chars, chars + width, replacement, rules, categories))
            chars += width
            pos = end
        return inspection.body.decode("utf-8", "replace"), spans

    def too_large(self, size: int) -> bool:
        return size > self.max_body_bytes

    def reject_too_large(self, ctx: RequestContext | None = None) -> Outcome:
        """The answer for a body whose declared size is already over the limit."""
        outcome = self._count(Outcome("too_large"))
        if ctx is not None and self.on_outcome is not None:
            self.on_outcome(ctx, outcome)
        return outcome

    async def decide(self, ctx: RequestContext, body: bytes | None) -> Outcome:
        """Inspect the body (if any), charge the caller's bucket, and pick the answer; then
        hand the outcome to ``on_outcome`` (the audit log), which never blocks."""
        outcome = await self._decide(ctx, body)
        if self.on_outcome is not None:
            self.on_outcome(ctx, outcome)
        return outcome

    async def _decide(self, ctx: RequestContext, body: bytes | None) -> Outcome:
        if body is not None and self.too_large(len(body)):
            return self.reject_too_large()
        decoded = False
        if body and ctx.content_encoding in DECODABLE:
            try:
                body = self.traps.decompress(body, ctx.content_encoding)
            except BodyDecodeError:
                # Not inspectable means not passed: a corrupt body or a zip bomb is refused.
                return self._count(Outcome("block", rules=(UNDECODABLE_RULE,)))
            decoded = True
            if self.too_large(len(body)):
                return self.reject_too_large()
        inspection = self.inspect(body, route=ctx.route) if body else CLEAN
        for judged in inspection.verdict.judged:
            self.metrics.count_findings(judged.finding.trap, judged.finding.category)
        enforce = not inspection.verdict.shadow
        if not enforce and inspection.verdict.judged:
            # Shadow mode: count what would have happened, change nothing.
            self.metrics.shadow_decisions.labels(inspection.decision).inc()
            inspection = Inspection(inspection.verdict)
        if inspection.body is not None and self.too_large(len(inspection.body)):
            return self.reject_too_large()
        blocked = enforce and inspection.decision == "block"
        # One limiter call per request: charge the findings to the caller's security debt and,
        # unless the traps already refuse the request, take a token from its bucket.
        limit = await self.limiter.check(
            ctx.identity, ctx.tier, cost=0.0 if blocked else 1.0, debt=inspection.verdict.weight
        )
        self._observe(limit)
        if blocked:
            rules = tuple(inspection.verdict.blocking_rules)
            return self._count(Outcome("block", inspection, limit, rules=rules))
        if limit.reason == "debt":
            self.metrics.debt_refusals.labels(limit.tier.name if limit.tier else "default").inc()
            if (ctx.route or self.policy.default).shadow:
                self.metrics.shadow_decisions.labels("block").inc()
            else:
                decision = (
                    "throttle" if self.settings.limiter.debt.action == "throttle" else "block"
                )
                return self._count(Outcome(decision, inspection, limit, rules=(DEBT_RULE,)))
        elif not limit.allowed:
            return self._count(Outcome("throttle", inspection, limit))
        decision = inspection.decision if enforce else "allow"
        return self._count(Outcome(decision, inspection, limit, decoded=decoded))

    def _observe(self, limit: LimitVerdict) -> None:
        """Metrics of one limiter verdict.

        The caller's debt as a fraction of its tier's limit, when the limiter measured it (Redis
        or this process; the open and closed failure policies know no debt). Decisions the Redis
        backend took are counted by the backend itself; the rest here.
        """
        if limit.source != "redis":
            self._decided[limit.source, limit.reason].inc()
        tier = limit.tier
        if self._debt_on and tier is not None and limit.source in ("redis", "local"):
            self._debt_ratio[tier.name].observe(limit.debt / tier.debt_limit)

    def _count(self, outcome: Outcome) -> Outcome:
        self.metrics.requests.labels(outcome.decision).inc()
        return outcome
