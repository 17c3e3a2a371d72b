"""The Helm chart, rendered by Helm's own engine (the Go SDK through helm-python-sdk).

Each values set under charts/godel-guardrail/ci/ is rendered and the manifests are checked for
the production checklist; the values schema is exercised with values it must refuse; `helm lint`
runs strict; and the Godel config each values set puts in the ConfigMap goes through
`godel check-config`, so the chart cannot hand Godel a config it would refuse at start.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from ext_proc import cli

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "godel-guardrail"
CI_VALUES = sorted(CHART.glob("ci/*-values.yaml"))
SCENARIOS = ["default", *[p.name.removesuffix("-values.yaml") for p in CI_VALUES]]
RELEASE, NAMESPACE = "godel", "guard"

Manifest = dict[str, Any]


def scenario_values(name: str) -> dict[str, Any]:
    if name == "default":
        return {}
    data = yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any]) -> list[Manifest]:
    rendered: dict[str, str] = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def one(docs: list[Manifest], kind: str) -> Manifest:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: list[Manifest]) -> set[str]:
    return {d["kind"] for d in docs}


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request: pytest.FixtureRequest, chart: Any) -> tuple[str, list[Manifest]]:
    name: str = request.param
    return name, render(chart, scenario_values(name))


def test_ci_values_sets_exist() -> None:
    expected = {"vault-agent", "csi", "hpa-off", "monitoring", "networkpolicy-off"}
    assert expected <= set(SCENARIOS)


# -- properties every values set must keep ---------------------------------------------------
def test_replicas_at_least_three(scenario: tuple[str, list[Manifest]]) -> None:
    _, docs = scenario
    deploy = one(docs, "Deployment")
    if "HorizontalPodAutoscaler" in kinds(docs):
        assert "replicas" not in deploy["spec"], "the HPA owns the replica count"
        hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
        assert hpa["minReplicas"] >= 3
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deploy["metadata"]["name"],
        }
        (metric,) = hpa["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    else:
        assert deploy["spec"]["replicas"] >= 3


def container(docs: list[Manifest]) -> dict[str, Any]:
    (godel,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(godel, dict)
    return godel


def test_probes_on_admin_port(scenario: tuple[str, list[Manifest]]) -> None:
    _, docs = scenario
    c = container(docs)
    admin = {p["name"]: p["containerPort"] for p in c["ports"]}["admin"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "admin"}
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "admin"}
    config = godel_config(docs)
    assert config["server"]["admin_address"].endswith(f":{admin}")


def test_grace_period_prestop_and_drain_fit(scenario: tuple[str, list[Manifest]]) -> None:
    _, docs = scenario
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    command = container(docs)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    server = godel_config(docs)["server"]
    assert pre_stop > 0
    assert server["shutdown_delay_seconds"] > 0
    total = pre_stop + server["shutdown_delay_seconds"] + server["drain_seconds"]
    assert total + 2 <= pod["terminationGracePeriodSeconds"]


def test_pdb(scenario: tuple[str, list[Manifest]]) -> None:
    _, docs = scenario
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1
    selector = one(docs, "Deployment")["spec"]["selector"]
    assert pdb["selector"] == selector


def test_spread_and_anti_affinity(scenario: tuple[str, list[Manifest]]) -> None:
    _, docs = scenario
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    keys = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert keys["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert "topology.kubernetes.io/zone" in keys
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_hardened_security_context(scenario: tuple[str, list[Manifest]]) -> None:
    _, docs = scenario
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container(docs)["resources"]["requests"]["cpu"]


def test_no_secret_material(scenario: tuple[str, list[Manifest]]) -> None:
    """No Secret objects, no environment, no literal keys: secrets are files from a provider."""
    _, docs = scenario
    assert "Secret" not in kinds(docs)
    c = container(docs)
    assert "env" not in c
    assert "envFrom" not in c
    spc = [d for d in docs if d["kind"] == "SecretProviderClass"]
    for d in spc:
        assert "secretObjects" not in d["spec"], "CSI must not sync keys into a Secret"
    config = godel_config(docs)
    for path, value in walk(config):
        leaf = path.rsplit(".", 1)[-1]
        if path.startswith("keys.") and isinstance(value, str) and value.startswith("file:"):
            assert value.startswith(("file:/vault/secrets/", "file:/mnt/secrets-store/")), path
        elif (
            re.search(r"password|secret|key", leaf)
            and leaf != "key_prefix"
            and not path.startswith("keys.")
            and isinstance(value, str)
        ):
            assert value.startswith(("/vault/secrets/", "/mnt/secrets-store/")), path


def test_services_expose_grpc_and_admin(scenario: tuple[str, list[Manifest]]) -> None:
    _, docs = scenario
    services = [d for d in docs if d["kind"] == "Service"]
    main = next(s for s in services if s["spec"].get("clusterIP") != "None")
    ports = {p["name"]: p for p in main["spec"]["ports"]}
    assert ports["grpc"]["port"] == 50051
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    assert ports["admin"]["port"] == 9100
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    assert len(headless) == 1
    assert headless[0]["spec"]["selector"] == main["spec"]["selector"]


def test_config_map_mounted_and_checksummed(scenario: tuple[str, list[Manifest]]) -> None:
    _, docs = scenario
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]
    cm = one(docs, "ConfigMap")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert container(docs)["args"] == ["serve", "--config", "/etc/godel/godel.yaml"]
    assert re.fullmatch(r"[0-9a-f]{64}", pod["metadata"]["annotations"]["checksum/config"])


def walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def godel_config(docs: list[Manifest]) -> dict[str, Any]:
    data = yaml.safe_load(one(docs, "ConfigMap")["data"]["godel.yaml"])
    assert isinstance(data, dict)
    return data


def test_config_passes_godel_check_config(
    scenario: tuple[str, list[Manifest]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rendered config is one Godel accepts: `godel check-config` validates it and compiles
    its rule packs (in process: the same entry point as the console script, without paying for
    an interpreter start per values set)."""
    name, docs = scenario
    for var in [v for v in os.environ if v.startswith("GODEL_")]:
        monkeypatch.delenv(var)  # no overrides from the caller's environment
    path = tmp_path / f"{name}.yaml"
    path.write_text(one(docs, "ConfigMap")["data"]["godel.yaml"])
    code = cli.main(["check-config", str(path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.startswith(f"ok: {path}")


# -- scenario-specific -----------------------------------------------------------------------
def test_vault_agent_annotations(chart: Any) -> None:
    docs = render(chart, scenario_values("vault-agent"))
    pod = one(docs, "Deployment")["spec"]["template"]
    ann = pod["metadata"]["annotations"]
    assert ann["vault.hashicorp.com/agent-inject"] == "true"
    assert ann["vault.hashicorp.com/role"] == "godel"
    assert ann["vault.hashicorp.com/agent-inject-secret-redis-password"] == (
        "secret/data/godel/redis"
    )
    assert ann["vault.hashicorp.com/agent-inject-template-redis-password"] == (
        '{{- with secret "secret/data/godel/redis" -}}{{ .Data.data.password }}{{- end -}}'
    )
    assert ann["vault.hashicorp.com/agent-inject-perms-redis-password"] == "0400"
    # Kubernetes auth needs the service-account token in the pod.
    assert pod["spec"]["automountServiceAccountToken"] is True
    config = godel_config(docs)
    assert config["keys"]["redis_password"] == "file:/vault/secrets/redis-password"
    assert config["limiter"]["redis"]["url"].startswith("redis+sentinel://")


def test_csi_volume_and_provider_class(chart: Any) -> None:
    docs = render(chart, scenario_values("csi"))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    csi = volumes["secrets-store"]["csi"]
    assert csi["driver"] == "secrets-store.csi.k8s.io"
    assert csi["readOnly"] is True
    assert csi["volumeAttributes"] == {"secretProviderClass": "godel-keys"}
    mounts = {m["name"]: m for m in container([one(docs, "Deployment")])["volumeMounts"]}
    assert mounts["secrets-store"] == {
        "name": "secrets-store",
        "mountPath": "/mnt/secrets-store",
        "readOnly": True,
    }
    spc = one(docs, "SecretProviderClass")
    assert spc["metadata"]["name"] == "godel-keys"
    objects = yaml.safe_load(spc["spec"]["parameters"]["objects"])
    assert {o["objectName"] for o in objects} == {"redis-password", "pseudonym-key"}
    assert not any(
        k.startswith("vault.hashicorp.com/")
        for k in one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    )


def test_default_has_no_secret_mounts(chart: Any) -> None:
    docs = render(chart, {})
    pod = one(docs, "Deployment")["spec"]["template"]
    assert {v["name"] for v in pod["spec"]["volumes"]} == {"config", "tmp"}
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert kinds(docs) >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceAccount",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    }
    assert not kinds(docs) & {"ServiceMonitor", "PrometheusRule", "SecretProviderClass"}


def test_hpa_off_uses_replica_count(chart: Any) -> None:
    docs = render(chart, scenario_values("hpa-off"))
    assert "HorizontalPodAutoscaler" not in kinds(docs)
    assert one(docs, "Deployment")["spec"]["replicas"] == 4


def test_monitoring_objects(chart: Any) -> None:
    docs = render(chart, scenario_values("monitoring"))
    sm = one(docs, "ServiceMonitor")
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "admin"
    assert endpoint["path"] == "/metrics"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rule = one(docs, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"GodelDown", "GodelNotReady", "GodelAuditRecordsLost"} <= set(alerts)
    assert "godel_health_status == 0" in alerts["GodelNotReady"]["expr"]
    assert alerts["GodelDown"]["labels"]["severity"] == "critical"
    shipped = yaml.safe_load((CHART / "files" / "godel-alerts.yaml").read_text())
    assert rule["spec"]["groups"] == shipped["groups"]


def test_network_policy(chart: Any) -> None:
    docs = render(chart, {})
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    by_port = {rule["ports"][0]["port"]: rule["from"] for rule in policy["ingress"]}
    assert set(by_port) == {"grpc", "admin"}
    envoy_peer = by_port["grpc"][0]
    assert envoy_peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "envoy"
    prom_peer = by_port["admin"][0]
    assert prom_peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "prometheus"
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 6379, 26379, 8200, 443}
    off = render(chart, scenario_values("networkpolicy-off"))
    assert "NetworkPolicy" not in kinds(off)


# -- values the chart must refuse -------------------------------------------------------------
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("one replica", {"replicaCount": 1}, "/replicaCount"),
    (
        "HPA floor below three",
        {"autoscaling": {"enabled": True, "minReplicas": 2}},
        "/autoscaling/minReplicas",
    ),
    ("unknown top-level key", {"redisPassword": "hunter2"}, "additional properties"),
    (
        "password in the Godel config",
        {"config": {"limiter": {"redis": {"password": "hunter2"}}}},
        "additional properties 'password' not allowed",
    ),
    (
        "literal password instead of a key reference",
        {"config": {"keys": {"redis_password": "hunter2"}}},
        "does not match pattern",
    ),
    (
        "key file outside the secrets mount",
        {"config": {"keys": {"redaction": "file:/etc/godel/hash.key"}}},
        "/config/keys/redaction",
    ),
    (
        "path climbing out of the secrets mount",
        {"config": {"keys": {"redaction": "file:/vault/secrets/../../etc/passwd"}}},
        "/config/keys/redaction",
    ),
    (
        "chart-owned server setting",
        {"config": {"server": {"drain_seconds": 60}}},
        "additional properties 'drain_seconds' not allowed",
    ),
    (
        "unknown Godel setting",
        {"config": {"limiter": {"rate": 5}}},
        "additional properties 'rate' not allowed",
    ),
    (
        "vault file with a value instead of a path",
        {
            "secrets": {
                "provider": "vaultAgent",
                "vaultAgent": {"files": [{"name": "k", "path": "s3cr3t value!", "field": "f"}]},
            }
        },
        "/secrets/vaultAgent/files/0/path",
    ),
    (
        "vault template smuggled through podAnnotations",
        {"podAnnotations": {"vault.hashicorp.com/agent-inject-template-k": "literal"}},
        "invalid propertyName 'vault.hashicorp.com/",
    ),
    (
        "writable root filesystem",
        {"securityContext": {"readOnlyRootFilesystem": False}},
        "/securityContext",
    ),
    (
        "privilege escalation",
        {
            "securityContext": {
                "runAsNonRoot": True,
                "allowPrivilegeEscalation": True,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            }
        },
        "/securityContext/allowPrivilegeEscalation",
    ),
    ("unknown secrets provider", {"secrets": {"provider": "env"}}, "/secrets/provider"),
]


@pytest.mark.parametrize(
    ("values", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_schema_refuses(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as info:
        chart.validate_schema(values)
    assert message in str(info.value)
    # An install renders through the same validation.
    with pytest.raises(helm.HelmError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"lifecycle": {"drainSeconds": 25}},
            "exceeds terminationGracePeriodSeconds",
        ),
        (
            {"config": {"keys": {"redis_password": "file:/vault/secrets/redis"}}},
            "secrets.provider none mounts secrets at nothing",
        ),
        (
            {
                "secrets": {"provider": "csi", "csi": {"secretProviderClass": "k"}},
                "config": {"keys": {"redis_password": "file:/vault/secrets/redis"}},
            },
            "mounts secrets at /mnt/secrets-store",
        ),
        ({"secrets": {"provider": "csi"}}, "needs secrets.csi.secretProviderClass"),
        (
            {"resources": {"requests": {"cpu": None}}},
            "autoscaling.enabled needs resources.requests.cpu",
        ),
    ],
    ids=[
        "drain beyond grace",
        "file without mount",
        "file in other mount",
        "csi no class",
        "hpa no cpu",
    ],
)
def test_render_refuses(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as info:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert message in str(info.value)


def test_schema_has_no_free_text_secret_fields() -> None:
    """Every string setting named like a secret is pinned to a pattern or an enum."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def visit(node: Any, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if isinstance(node, dict):
            if node.get("type") == "string":
                yield name, node
            for key, value in node.items():
                child = name
                if key not in ("properties", "anyOf", "items", "definitions"):
                    child = f"{name}.{key}"
                if isinstance(value, dict | list):
                    yield from visit(value, child)
        elif isinstance(node, list):
            for value in node:
                yield from visit(value, name)

    checked = 0
    for name, node in visit(schema, ""):
        leaf = name.rsplit(".", 1)[-1]
        if re.search(r"password|secret|token|key", leaf, re.IGNORECASE):
            checked += 1
            assert "pattern" in node or "enum" in node, name
    assert checked >= 4


def test_schema_is_generated_from_settings() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_chart_schema.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_helm_lint_strict() -> None:
    for values in [{}, *(scenario_values(s) for s in SCENARIOS[1:])]:
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems, problems
        assert not report["errors"], report["errors"]


def test_values_documented_in_readme() -> None:
    readme = (CHART / "README.md").read_text()
    params = re.findall(r"## @param (\S+)", (CHART / "values.yaml").read_text())
    assert len(params) > 20
    missing = [p for p in params if f"`{p}`" not in readme]
    assert not missing, f"values missing from charts/godel-guardrail/README.md: {missing}"
