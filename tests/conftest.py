"""Shared fixtures. End-to-end fixtures start real processes on 127.0.0.1 and stop them by PID."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ext_proc.config import Settings, settings_from_mapping
from ext_proc.metrics import Metrics
from ext_proc.pipeline import Pipeline
from ext_proc.server import build_pipeline

ROOT = Path(__file__).resolve().parent.parent
ENVOY_CONFIG = ROOT / "envoy" / "envoy.yaml"
FAKE_AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def chat(text: str, **extra: object) -> bytes:
    return json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": text}], **extra}
    ).encode()


@pytest.fixture
def settings() -> Settings:
    return settings_from_mapping({}, env={})


@pytest.fixture
def pipeline(settings: Settings) -> Pipeline:
    return build_pipeline(settings, Metrics())
