"""The compose example, checked without a Docker engine: its YAML parses, every mounted file
exists and is the tested one, ports and commands agree with the configs they point at, and the
derived Envoy config passes `envoy --mode validate` with the pinned Envoy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ext_proc import cli
from ext_proc.devstack import envoy_binary

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path, for bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        out[container] = (COMPOSE_DIR / host).resolve()
    return out


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "godel",
        "upstream",
        "envoy",
        "redis",
        "prometheus",
        "grafana",
    }


def test_every_mount_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for container, host in mounts(service).items():
            assert host.exists(), f"{name}: {host} (for {container}) is missing"
            assert ROOT in host.parents, f"{name}: {host} is outside the repository"


def test_godel_service(
    compose: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    godel = compose["services"]["godel"]
    assert godel["build"] == {"context": "../..", "dockerfile": "Dockerfile"}
    assert (COMPOSE_DIR / godel["build"]["context"] / "Dockerfile").resolve().exists()
    command = godel["command"]
    assert command[:2] == ["serve", "--config"]
    config_path = mounts(godel)[command[2]]
    for var in [v for v in os.environ if v.startswith("GODEL_")]:
        monkeypatch.delenv(var)
    assert cli.main(["check-config", str(config_path)]) == 0, capsys.readouterr().err
    config = yaml.safe_load(config_path.read_text())
    assert config["server"]["admin_address"] == "0.0.0.0:9100"
    assert config["server"]["grpc_address"] == "0.0.0.0:50051"
    assert config["limiter"]["backend"] == "redis"
    assert config["limiter"]["redis"]["url"].startswith("redis://redis:")
    # Hardening matches the chart's pod.
    assert godel["read_only"] is True
    assert godel["user"] == "10001:10001"
    assert godel["cap_drop"] == ["ALL"]
    grace = int(godel["stop_grace_period"].removesuffix("s"))
    assert config["server"]["shutdown_delay_seconds"] + config["server"]["drain_seconds"] < grace
    for port in godel["ports"]:
        assert port.startswith("127.0.0.1:"), "published on the host's loopback only"


def test_envoy_points_at_services(compose: dict[str, Any]) -> None:
    envoy = compose["services"]["envoy"]
    version = (ROOT / ".envoy-version").read_text().strip()
    assert envoy["image"] == f"envoyproxy/envoy:v{version}"
    command = envoy["command"]
    config_path = mounts(envoy)[command[command.index("-c") + 1]]
    assert config_path == (COMPOSE_DIR / "envoy.yaml").resolve()
    config = yaml.safe_load(config_path.read_text())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}

    def target(cluster: str) -> tuple[str, int]:
        (group,) = clusters[cluster]["load_assignment"]["endpoints"]
        sa = group["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        return sa["address"], sa["port_value"]

    godel_config = yaml.safe_load((COMPOSE_DIR / "godel.yaml").read_text())
    assert target("godel") == ("godel", int(godel_config["server"]["grpc_address"].split(":")[1]))
    upstream = compose["services"]["upstream"]["command"]
    assert target("app") == ("upstream", int(upstream[upstream.index("--address") + 1][-4:]))
    (listener,) = config["static_resources"]["listeners"]
    port = listener["address"]["socket_address"]["port_value"]
    assert f"127.0.0.1:{port}:{port}" in envoy["ports"]


def test_compose_envoy_is_generated_from_reference() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_compose_envoy.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_compose_envoy_validates() -> None:
    done = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(COMPOSE_DIR / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


def test_prometheus(compose: dict[str, Any]) -> None:
    prom = compose["services"]["prometheus"]
    files = mounts(prom)
    config_file = prom["command"][0].removeprefix("--config.file=")
    config = yaml.safe_load(files[config_file].read_text())
    for rule_file in config["rule_files"]:
        assert rule_file in files, f"{rule_file} is not mounted"
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    godel = jobs["godel"]
    assert godel["metrics_path"] == "/metrics"
    admin_port = yaml.safe_load((COMPOSE_DIR / "godel.yaml").read_text())["server"][
        "admin_address"
    ].split(":")[1]
    assert godel["static_configs"][0]["targets"] == [f"godel:{admin_port}"]
    rules = yaml.safe_load(files["/etc/prometheus/godel-alerts.yaml"].read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert "GodelDown" in alerts
    assert 'up{job=~".*godel.*"} == 0' in alerts["GodelDown"]["expr"]


def test_alert_rules_match_chart() -> None:
    """The compose rule file and the chart's embedded one hold the same rules."""
    compose_rules = yaml.safe_load(
        (ROOT / "deploy" / "prometheus" / "godel-alerts.yaml").read_text()
    )
    chart_rules = yaml.safe_load(
        (ROOT / "charts" / "godel-guardrail" / "files" / "godel-alerts.yaml").read_text()
    )
    assert compose_rules == chart_rules


def test_grafana(compose: dict[str, Any]) -> None:
    files = mounts(compose["services"]["grafana"])
    provisioning = files["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    prom_port = compose["services"]["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert source["url"] == f"http://prometheus:{prom_port}"
    providers = yaml.safe_load((provisioning / "dashboards" / "godel.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    dashboards = files[path]
    found = sorted(dashboards.glob("*.json"))
    assert found, "no dashboard JSON to provision"
    for dashboard in found:
        data = json.loads(dashboard.read_text())
        assert data["uid"]
        assert data["panels"]
        for panel in data["panels"]:
            ds = panel.get("datasource")
            if isinstance(ds, dict) and ds.get("type") == "prometheus":
                assert ds["uid"] in (source["uid"], "${datasource}", "$datasource")
