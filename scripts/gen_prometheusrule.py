"""Print deploy/prometheus/godel-prometheusrule.yaml: the alert rules of
deploy/prometheus/godel-alerts.yaml wrapped in a Prometheus Operator ``PrometheusRule``.

The rules file's ``groups:`` block is copied verbatim (indented under ``spec:``), so both files
read the same. Usage:
``.venv/bin/python scripts/gen_prometheusrule.py > deploy/prometheus/godel-prometheusrule.yaml``
(a test fails when the file differs from this output).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "godel-alerts.yaml"

HEADER = """\
# Generated from deploy/prometheus/godel-alerts.yaml by scripts/gen_prometheusrule.py; do not edit.
# The Prometheus Operator loads it when the labels below match the ruleSelector of its
# Prometheus resource (add e.g. `release: <your kube-prometheus-stack release>` if yours selects
# on that label). Runbooks: docs/operations.md, section "Alerts and runbooks".
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: godel-guardrail
  labels:
    app.kubernetes.io/name: godel-guardrail
    app.kubernetes.io/component: alerting
spec:
"""


def render(rules: str | None = None) -> str:
    text = RULES.read_text() if rules is None else rules
    lines = text.splitlines()
    start = lines.index("groups:")  # the leading comments describe the file, not the rules
    body = "".join(f"  {line}\n" if line else "\n" for line in lines[start:])
    return HEADER + body


if __name__ == "__main__":
    print(render(), end="")
