"""Alert rules, their PrometheusRule copy and the Grafana dashboard, checked by the real tools.

* ``promtool check rules`` and ``promtool test rules`` on deploy/prometheus (every alert is
  tested firing and not firing);
* ``promtool check metrics`` on a real scrape of ``godel serve``'s ``/metrics``;
* every metric name the alert rules and the dashboard query is exported by that scrape (the
  audit module's metrics excepted until it lands), and every dashboard query parses as PromQL.
"""

from __future__ import annotations

import json
import re
import runpy
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ext_proc.devstack import http, start_godel
from tests.conftest import ROOT

PROM_DIR = ROOT / "deploy" / "prometheus"
RULES = PROM_DIR / "godel-alerts.yaml"
RULE_TESTS = PROM_DIR / "godel-alerts.test.yaml"
PROMETHEUS_RULE = PROM_DIR / "godel-prometheusrule.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "godel-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"

# Metrics from the audit module: queried by the rules and the dashboard, exported once that
# module is merged. Until then they are the only names allowed to be missing from a scrape.
AUDIT_METRICS = frozenset({"godel_audit_records_written_total", "godel_audit_records_lost_total"})
# Series Prometheus itself makes for every target.
SCRAPE_SERIES = frozenset({"up"})

# -- PromQL: the metric names an expression selects ------------------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_WORD = re.compile(r"(?<![\w.:$])[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression.

    String literals, label matchers, ranges and the label lists of by/without/on/ignoring/
    group_* are blanked out first; of the words left, a word followed by ``(`` is a function or
    an aggregation, and keywords and numbers (``1e-3``, durations) are skipped.
    """
    assert "__name__" not in expr, "write the metric name out, not as a __name__ matcher"
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for m in _WORD.finditer(text):
        word = m.group()
        if text[m.end() :].lstrip().startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def test_metric_names_tokenizer() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_seconds_bucket{le="0.05", '
        'x=~"sum(b)"}[5m] offset 1h))) > 1e-3 and on (job) b_total unless sum(c) by (d) '
        "> bool 2 * scalar(e:rec) or vector(1)"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c", "e:rec"}


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as plain PromQL: Grafana's variables replaced by example values."""
    return expr.replace("$__rate_interval", "5m").replace("$job", ".*")


# -- promtool ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's prometheus package (make install)")
    return path


def run_promtool(promtool: str, *args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(
        [promtool, *args], input=stdin, capture_output=True, timeout=60, cwd=PROM_DIR, check=False
    )
    out = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{out}"
    return out


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    out = run_promtool(promtool, "check", "rules", str(RULES))
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


def test_alert_rule_unit_tests_pass(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", RULE_TESTS.name)


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for t in tests for case in t.get("alert_rule_test", [])]
    for rule in alert_rules():
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no case where it is quiet"


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of a Markdown file."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_alert_has_labels_annotations_and_a_runbook_section() -> None:
    anchors = _anchors(OPERATIONS.read_text())
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"Godel[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert rule["labels"]["priority"] in ("P0", "P1", "P2"), name
        notes = rule["annotations"]
        assert notes["summary"], name
        assert notes["description"], name
        path, _, anchor = notes["runbook_url"].partition("#")
        assert path == "docs/operations.md", name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"{name}: docs/operations.md has no section #{anchor}"


def test_prometheusrule_carries_the_same_rules(promtool: str, tmp_path: Path) -> None:
    render = runpy.run_path(str(ROOT / "scripts" / "gen_prometheusrule.py"))["render"]
    assert PROMETHEUS_RULE.read_text() == render(), "run scripts/gen_prometheusrule.py"
    manifest = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["spec"] == yaml.safe_load(RULES.read_text())
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(manifest["spec"]))
    run_promtool(promtool, "check", "rules", str(spec))


# -- the dashboard ---------------------------------------------------------------------------
def test_dashboard_is_generated_and_uses_the_datasource_variable() -> None:
    render = runpy.run_path(str(ROOT / "scripts" / "gen_grafana_dashboard.py"))["render"]
    assert DASHBOARD.read_text() == render(), "run scripts/gen_grafana_dashboard.py"
    doc = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    def uids(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource" and isinstance(value, dict):
                    assert value.get("type") == "prometheus"
                    yield str(value.get("uid"))
                else:
                    yield from uids(value)
        elif isinstance(node, list):
            for item in node:
                yield from uids(item)

    found = list(uids(doc))
    assert found
    assert set(found) == {"${datasource}"}, "a datasource uid is hard-coded"
    titles = [p["title"] for p in doc["panels"]]
    assert len(titles) == len(set(titles))


def test_dashboard_queries_parse_as_promql(promtool: str, tmp_path: Path) -> None:
    # promtool has no query checker; recording rules go through the same PromQL parser.
    rules = [
        {"record": f"godel_dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, expr in enumerate(dashboard_exprs())
    ]
    check = tmp_path / "dashboard-queries.yaml"
    check.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool(promtool, "check", "rules", str(check))


# -- a real scrape -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The /metrics page of a running ``godel serve`` (a named tier configured)."""
    workdir = tmp_path_factory.mktemp("scrape")
    config = {"limiter": {"tiers": {"premium": {"capacity": 50}}}}
    proc, _, admin = start_godel(workdir, config)
    try:
        status, headers, body = http("GET", f"http://127.0.0.1:{admin}/metrics")
    finally:
        proc.stop()
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    return body.decode()


def test_scrape_passes_promtool_check_metrics(promtool: str, scrape: str) -> None:
    out = run_promtool(promtool, "check", "metrics", stdin=scrape.encode())
    assert not out.strip(), out  # promtool prints nothing for a clean exposition


def test_scrape_carries_the_new_series(scrape: str) -> None:
    samples = {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
    }
    names = {name for name, _ in samples}
    assert "process_cpu_seconds_total" in names
    assert ("godel_health_status", ()) in samples
    for tier in ("default", "premium"):
        assert ("godel_security_debt_ratio_bucket", (("le", "0.8"), ("tier", tier))) in samples
        assert ("godel_debt_refusals_total", (("tier", tier),)) in samples


def test_rules_and_dashboard_query_only_exported_metrics(scrape: str) -> None:
    exported = {s.name for f in text_string_to_metric_families(scrape) for s in f.samples}
    queries = [rule["expr"] for rule in alert_rules()] + dashboard_exprs()
    used: set[str] = set()
    for expr in queries:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        used |= names
    missing = used - exported - SCRAPE_SERIES - AUDIT_METRICS
    assert not missing, f"queried but not exported by godel serve: {sorted(missing)}"
    # The allowlist is for the audit module's names only, and each of them is really queried.
    assert used >= AUDIT_METRICS
