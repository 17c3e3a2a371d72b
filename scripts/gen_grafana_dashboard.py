"""Print deploy/grafana/godel-dashboard.json, the Grafana dashboard for Godel's metrics.

Usage: ``.venv/bin/python scripts/gen_grafana_dashboard.py > deploy/grafana/godel-dashboard.json``
(a test fails when the file differs from this output). Every query uses the ``${datasource}``
variable (no datasource uid is written in the file) and the ``$job`` variable.
"""

from __future__ import annotations

import json
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOB = 'job=~"$job"'
RATE = "$__rate_interval"

Target = tuple[str, str]  # (PromQL, legend)


def rate(metric: str, by: str = "", selector: str = "") -> str:
    """``sum [by (labels)] (rate(metric{job=~"$job"[, selector]}[$__rate_interval]))``."""
    labels = f"{JOB}, {selector}" if selector else JOB
    group = f" by ({by})" if by else ""
    return f"sum{group} (rate({metric}{{{labels}}}[{RATE}]))"


def quantile(q: float, metric: str, by: str) -> str:
    return f"histogram_quantile({q}, {rate(metric + '_bucket', f'le, {by}')})"


def debt_share_over(threshold: str) -> str:
    count = rate("godel_security_debt_ratio_count", "tier")
    under = rate("godel_security_debt_ratio_bucket", "tier", f'le="{threshold}"')
    return f"({count} - {under}) / {count}"


# (title, description, unit, targets); laid out three to a row.
Panel = tuple[str, str, str, list[Target]]
ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Traffic and decisions",
        [
            (
                "Requests per second",
                "Requests decided by Godel per second, all decisions together.",
                "reqps",
                [(rate("godel_requests_total"), "requests/s")],
            ),
            (
                "Decisions by type",
                "allow, redact, block, throttle (rate or security debt), too_large (body over "
                "server.max_body_bytes) and error (the stream failed; Envoy applied its failure "
                "mode).",
                "reqps",
                [(rate("godel_requests_total", "decision"), "{{decision}}")],
            ),
            (
                "Trap findings by category",
                "Findings per second by category (secret, pii, injection, entropy, other). "
                "Shadow-mode findings count here too.",
                "ops",
                [(rate("godel_trap_findings_total", "category"), "{{category}}")],
            ),
        ],
    ),
    (
        "Responses",
        [
            (
                "Responses by scan mode",
                "buffered (JSON, text), streamed (SSE), unscanned (JSON, text or SSE Godel could "
                "not read: too large or of unknown length to buffer, an encoding it does not "
                "decode), binary (a content type Godel does not scan).",
                "reqps",
                [(rate("godel_responses_total", "mode"), "{{mode}}")],
            ),
            (
                "Unscanned share of responses",
                "Share of responses that were text Godel could not read. "
                "GodelResponsesUnscanned fires above 5 % for 30 minutes; "
                "responses.unscannable: block refuses them with 502 (decision block).",
                "percentunit",
                [
                    (
                        rate("godel_responses_total", "", 'mode="unscanned"')
                        + " / "
                        + rate("godel_responses_total"),
                        "unscanned",
                    )
                ],
            ),
            (
                "Response decisions",
                "allow, redact, and block (refused under responses.unscannable: block, or a "
                "compressed stream cut short where it stopped decoding); SSE hold overflows "
                "(a token longer than responses.sse_hold_chars released in part).",
                "reqps",
                [
                    (rate("godel_responses_total", "decision"), "{{decision}}"),
                    (rate("godel_sse_hold_overflows_total"), "SSE hold overflows"),
                ],
            ),
        ],
    ),
    (
        "Latency",
        [
            (
                "Processing latency",
                "Time Godel spends on one ext_proc message, by phase (request_headers, "
                "request_body). GodelLatencyHigh fires when p99 stays above 50 ms for 5 "
                "minutes; Envoy gives up at its ext_proc message_timeout (200 ms by default).",
                "s",
                [
                    (
                        quantile(q, "godel_processing_seconds", "phase"),
                        f"p{int(q * 100)} {{{{phase}}}}",
                    )
                    for q in (0.5, 0.9, 0.99)
                ],
            ),
            (
                "Shadow decisions",
                "Decisions shadow mode computed but did not enforce: what enforcing would change.",
                "reqps",
                [(rate("godel_shadow_decisions_total", "decision"), "{{decision}}")],
            ),
            (
                "Request body size",
                "Median and p99 size of the request bodies inspected.",
                "bytes",
                [
                    (
                        quantile(q, "godel_request_body_bytes", "job"),
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ],
            ),
        ],
    ),
    (
        "Security debt",
        [
            (
                "Decisions with debt above 0.8 of the limit",
                "Share of limiter decisions, per tier, that found the caller's security debt "
                "above 0.8 of the tier's limit. GodelSecurityDebtHigh fires above 5% for 10 "
                "minutes.",
                "percentunit",
                [(debt_share_over("0.8"), "{{tier}}")],
            ),
            (
                "Debt as a fraction of the limit",
                "p50, p90 and p99 of the caller's debt divided by its tier's limit, per decision. "
                "1 is the limit: requests are refused from there.",
                "percentunit",
                [
                    (
                        quantile(q, "godel_security_debt_ratio", "tier"),
                        f"p{int(q * 100)} {{{{tier}}}}",
                    )
                    for q in (0.5, 0.9, 0.99)
                ],
            ),
            (
                "Refused for security debt",
                "Requests refused per second because the caller's debt is at or above its limit.",
                "reqps",
                [(rate("godel_debt_refusals_total", "tier"), "{{tier}}")],
            ),
        ],
    ),
    (
        "Limiter and Redis",
        [
            (
                "Limiter fallbacks",
                "Decisions taken by the failure policy (local, open, closed) because Redis failed "
                "or was too slow, by limit (rate, debt). Anything above zero means the limits are "
                "not global at that moment.",
                "ops",
                [
                    (
                        rate("godel_limiter_fallback_decisions_total", "limit, policy"),
                        "{{limit}} {{policy}}",
                    )
                ],
            ),
            (
                "Redis up",
                "1 while the last limiter call to Redis succeeded, per instance. Stays 0 with the "
                "local limiter backend (no Redis configured).",
                "short",
                [(f"godel_limiter_backend_up{{{JOB}}}", "{{instance}}")],
            ),
            (
                "Redis call latency",
                "Round trip of one limiter call to Redis (one batch of decisions).",
                "s",
                [
                    (quantile(q, "godel_limiter_call_seconds", "job"), f"p{int(q * 100)}")
                    for q in (0.5, 0.9, 0.99)
                ],
            ),
            (
                "Redis errors",
                "Failed limiter calls per second, by kind (timeout, error).",
                "ops",
                [(rate("godel_limiter_backend_errors_total", "kind"), "{{kind}}")],
            ),
            (
                "Limiter decisions",
                "Limiter decisions per second by who decided (redis, local, open, closed) and "
                "the result (ok, rate, debt, uncharged).",
                "ops",
                [
                    (
                        rate("godel_limiter_decisions_total", "source, result"),
                        "{{source}} {{result}}",
                    )
                ],
            ),
            (
                "Redis batch size",
                "Median and p99 decisions sent in one call to Redis; batches grow with load.",
                "short",
                [
                    (
                        quantile(q, "godel_limiter_batch_decisions", "job"),
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ],
            ),
        ],
    ),
    (
        "Process health and audit",
        [
            (
                "Ready",
                "godel_health_status per instance: 1 serving, 0 not ready (starting, draining, "
                "or unable to serve).",
                "short",
                [(f"godel_health_status{{{JOB}}}", "{{instance}}")],
            ),
            (
                "CPU",
                "CPU seconds per second per instance. GodelHighCpu fires above 0.8 for 15 minutes.",
                "short",
                [
                    (
                        f"rate(process_cpu_seconds_total{{{JOB}}}[{RATE}])",
                        "{{instance}}",
                    )
                ],
            ),
            (
                "Audit records",
                "Audit records written and lost per second. Any loss pages "
                "(GodelAuditRecordsLost).",
                "ops",
                [
                    (rate("godel_audit_records_written_total"), "written"),
                    (rate("godel_audit_records_lost_total"), "lost"),
                ],
            ),
        ],
    ),
]


def _panel(pid: int, x: int, y: int, panel: Panel) -> dict[str, Any]:
    title, description, unit, targets = panel
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    pid = 1
    for title, row in ROWS:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid += 1
        y += 1
        for i, panel in enumerate(row):
            panels.append(_panel(pid, 8 * (i % 3), y + 8 * (i // 3), panel))
            pid += 1
        y += 8 * ((len(row) + 2) // 3)
    return {
        "title": "Godel Guardrail",
        "uid": "godel-guardrail",
        "description": "Decisions, traps, latency, security debt, limiter and Redis of Godel "
        "Guardrail. Panels are explained in docs/operations.md, section Dashboard.",
        "tags": ["godel", "guardrail"],
        "timezone": "",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "job",
                    "label": "Job",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": "label_values(godel_health_status, job)", "refId": "job"},
                    "definition": "label_values(godel_health_status, job)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {},
                    "hide": 0,
                },
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    print(render(), end="")
