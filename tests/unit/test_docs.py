from __future__ import annotations

import runpy

import yaml

from ext_proc.config import Settings, settings_from_mapping
from tests.conftest import ROOT


def test_configuration_md_is_generated_from_the_models() -> None:
    render = runpy.run_path(str(ROOT / "scripts" / "gen_config_docs.py"))["render"]
    assert (ROOT / "docs" / "configuration.md").read_text() == render(), "run `make docs`"


def test_example_config_equals_the_defaults() -> None:
    data = yaml.safe_load((ROOT / "docs" / "godel.example.yaml").read_text())
    assert settings_from_mapping(data, env={}) == Settings()
