"""Every Prometheus metric Godel exports, declared in one place.

Names follow Prometheus conventions: a ``godel_`` prefix, ``_total`` on counters (the client adds
it), base units (seconds, bytes) and ``_ratio`` for a fraction of 1. Labels are fixed and
low-cardinality: a decision, a trap, a category, a phase, a limiter tier (tier names come from
the config, and a name the config does not know counts as ``default``). Never a user id, a path,
a rule value or anything a client controls. Label sets are pre-initialised so dashboards see
zeros. The registry also carries the standard ``process_*`` metrics (CPU, memory, open files).

``deploy/prometheus/godel-alerts.yaml`` and ``deploy/grafana/godel-dashboard.json`` query these
names; ``tests/observability`` checks that every name they use is exported.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

__all__ = ["CATEGORIES", "DEBT_RATIO_BUCKETS", "DECISIONS", "LATENCY_BUCKETS", "PHASES", "Metrics"]

DECISIONS = ("allow", "redact", "block", "throttle", "too_large", "error")
PHASES = ("request_headers", "request_body")
TRAPS = ("regex", "entropy")
CATEGORIES = ("secret", "pii", "injection", "entropy", "other")

# Sub-millisecond resolution: a clean 4 KiB scan is tens of microseconds. 50 ms (the latency SLO
# of the alert rules) and 200 ms (Envoy's default ext_proc message_timeout) are exact boundaries,
# so the alert and the timeout need no interpolation inside a bucket.
LATENCY_BUCKETS = (
    25e-6, 50e-6, 100e-6, 200e-6, 400e-6, 800e-6,
    1.6e-3, 3.2e-3, 6.4e-3, 12.5e-3, 25e-3, 50e-3, 0.1, 0.2, 0.4, 1.0,
)  # fmt: skip
# Security debt as a fraction of the tier's debt limit: 1.0 is the limit, where requests are
# refused. Written out (not computed) so each boundary prints exactly, e.g. le="0.8".
DEBT_RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0)
SIZE_BUCKETS = tuple(float(2**k) for k in range(6, 24, 2))


class Metrics:
    """The metric set, bound to one registry (a fresh one per test, the default in production)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # process_cpu_seconds_total and friends (read from /proc at scrape time; the CPU alert
        # uses them). Godel's registry is its own, not the client's global one, so register here.
        ProcessCollector(registry=r)
        self.requests = Counter(
            "godel_requests", "Requests decided, by decision.", ["decision"], registry=r
        )
        self.findings = Counter(
            "godel_trap_findings",
            "Trap findings, by trap and finding category.",
            ["trap", "category"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "godel_processing_seconds",
            "Time Godel spends on one ext_proc message, by phase.",
            ["phase"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.shadow_decisions = Counter(
            "godel_shadow_decisions",
            "Decisions shadow mode computed but did not enforce, by decision.",
            ["decision"],
            registry=r,
        )
        self.config_reloads = Counter(
            "godel_config_reloads",
            "Policy and rule reloads (SIGHUP or POST /reload), by result (ok, error).",
            ["result"],
            registry=r,
        )
        self.responses = Counter(
            "godel_responses",
            "Responses seen, by how the body was scanned (buffered, streamed; unscanned: JSON, "
            "text or SSE Godel could not read; binary: a content type Godel does not scan) and "
            "the decision (allow, redact; block: an unscannable response refused under "
            "responses.unscannable: block, or a compressed stream cut short where it stopped "
            "decoding).",
            ["mode", "decision"],
            registry=r,
        )
        self.sse_hold_overflows = Counter(
            "godel_sse_hold_overflows",
            "Times a streamed response's text outgrew responses.sse_hold_chars while a token was "
            "unfinished, so its start was released before its end was seen.",
            registry=r,
        )
        self.body_bytes = Histogram(
            "godel_request_body_bytes",
            "Size of request bodies inspected.",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.streams_active = Gauge(
            "godel_streams_active", "ext_proc streams currently open.", registry=r
        )
        self.health_status = Gauge(
            "godel_health_status",
            "1 when this process is ready to serve (traps loaded, limiter reachable), else 0.",
            registry=r,
        )
        self.rules_loaded = Gauge(
            "godel_rules_loaded", "Regex rules compiled into the running trap set.", registry=r
        )
        self.keyword_filter_rebuilds = Gauge(
            "godel_keyword_filter_rebuilds",
            "Times the running trap set's AVX-512 keyword filter has rebuilt itself from the "
            "traffic (0 until it has scanned 256 KiB; 12 once tuned; 0 throughout with "
            "traps.tune_filter false or without AVX-512 VBMI).",
            registry=r,
        )
        self.limiter_decisions = Counter(
            "godel_limiter_decisions",
            "Limiter decisions, by who decided (redis, local, open, closed: the last two are the "
            "failure policy) and the result (ok, rate, debt, uncharged).",
            ["source", "result"],
            registry=r,
        )
        self.limiter_fallbacks = Counter(
            "godel_limiter_fallback_decisions",
            "Decisions the failure policy took because Redis failed or was timed out, by limit "
            "(rate, debt) and policy (local, open, closed).",
            ["limit", "policy"],
            registry=r,
        )
        self.limiter_backend_errors = Counter(
            "godel_limiter_backend_errors",
            "Failed Redis calls of the limiter, by kind (timeout, error).",
            ["kind"],
            registry=r,
        )
        self.limiter_backend_up = Gauge(
            "godel_limiter_backend_up",
            "1 while the last Redis call of the limiter succeeded, else 0.",
            registry=r,
        )
        self.limiter_call_seconds = Histogram(
            "godel_limiter_call_seconds",
            "Round trip of one limiter call to Redis (one batch of decisions).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.limiter_batch_decisions = Histogram(
            "godel_limiter_batch_decisions",
            "Decisions sent in one limiter call to Redis.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.debt_refusals = Counter(
            "godel_debt_refusals",
            "Requests refused because the caller's security debt is at or above its limit, by "
            "limiter tier.",
            ["tier"],
            registry=r,
        )
        self.audit_records_written = Counter(
            "godel_audit_records_written",
            "Audit records written, by sink (stdout, file); replays of spilled records count.",
            ["sink"],
            registry=r,
        )
        self.audit_records_spilled = Counter(
            "godel_audit_records_spilled",
            "Audit records put in the local spill file because a sink failed or stalled, or the "
            "queue was full.",
            registry=r,
        )
        self.audit_records_lost = Counter(
            "godel_audit_records_lost",
            "Audit records neither written nor spilled (should stay 0; page when not).",
            registry=r,
        )
        self.audit_errors = Counter(
            "godel_audit_errors",
            "Audit failures, by kind (sink, spill, checkpoint_store, key).",
            ["kind"],
            registry=r,
        )
        self.audit_enabled = Gauge(
            "godel_audit_enabled",
            "1 when this process writes an audit log (audit.enabled), else 0.",
            registry=r,
        )
        self.audit_queue_depth = Gauge(
            "godel_audit_queue_depth", "Audit events waiting for the writer.", registry=r
        )
        self.audit_spill_lines = Gauge(
            "godel_audit_spill_lines",
            "Lines in the audit spill file waiting for a sink to recover.",
            registry=r,
        )
        for sink in ("stdout", "file"):
            self.audit_records_written.labels(sink)
        for kind in ("sink", "spill", "checkpoint_store", "key"):
            self.audit_errors.labels(kind)
        self.debt_ratio = Histogram(
            "godel_security_debt_ratio",
            "The caller's security debt after each limiter decision, as a fraction of its tier's "
            "debt limit (1 = the limit, where requests are refused), by limiter tier.",
            ["tier"],
            buckets=DEBT_RATIO_BUCKETS,
            registry=r,
        )
        self.add_tier("default")  # the pipeline adds the configured tiers
        for source in ("redis", "local", "open", "closed"):
            for result in ("ok", "rate", "debt", "uncharged"):
                self.limiter_decisions.labels(source, result)
        for limit in ("rate", "debt"):
            for policy in ("local", "open", "closed"):
                self.limiter_fallbacks.labels(limit, policy)
        for kind in ("timeout", "error"):
            self.limiter_backend_errors.labels(kind)
        for decision in DECISIONS:
            self.requests.labels(decision)
        for trap in TRAPS:
            for category in CATEGORIES:
                self.findings.labels(trap, category)
        for decision in ("allow", "redact", "block"):
            self.shadow_decisions.labels(decision)
        for result in ("ok", "error"):
            self.config_reloads.labels(result)
        for mode in ("buffered", "streamed", "unscanned"):
            for decision in ("allow", "redact"):
                self.responses.labels(mode, decision)
        for phase in PHASES:
            self.processing_seconds.labels(phase)

    def add_tier(self, tier: str) -> None:
        """Pre-initialise the series of one limiter tier (a name from the config)."""
        self.debt_refusals.labels(tier)
        self.debt_ratio.labels(tier)

    def count_findings(self, trap: str, category: str) -> None:
        known = category if category in CATEGORIES else "other"
        self.findings.labels(trap, known).inc()
