from __future__ import annotations

from pathlib import Path

import pytest

from ext_proc.config import Action, load_config, settings_from_mapping
from ext_proc.errors import ConfigError


def test_defaults_are_valid_and_documented_values() -> None:
    s = load_config(None, env={})
    assert s.identity.header == "x-user-id"
    assert s.policy.actions["injection"] is Action.BLOCK
    assert s.server.max_body_bytes == 4 * 1024 * 1024


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("limiter:\n  rate_per_second: -5\n")
    with pytest.raises(ConfigError, match=r"limiter\.rate_per_second: Input should be greater"):
        load_config(f, env={})


def test_unknown_key_is_rejected_by_name(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("server:\n  grpc_adress: 127.0.0.1:1\n")
    with pytest.raises(ConfigError, match=r"server\.grpc_adress: unknown setting"):
        load_config(f, env={})


def test_bad_action_and_address_both_reported() -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(
            {"policy": {"actions": {"secret": "explode"}}, "server": {"admin_address": "nope"}},
            env={},
        )
    text = str(err.value)
    assert "policy.actions.secret" in text
    assert "server.admin_address: Value error, expected host:port" in text


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("server:\n  grpc_address: [unclosed\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+"):
        load_config(f, env={})


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml", env={})
    f = tmp_path / "list.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(f, env={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("limiter:\n  capacity: 5\n")
    s = load_config(f, env={"GODEL_LIMITER__CAPACITY": "7", "GODEL_IDENTITY__HEADER": "x-tenant"})
    assert s.limiter.capacity == 7
    assert s.identity.header == "x-tenant"


def test_bad_environment_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"limiter\.capacity"):
        load_config(None, env={"GODEL_LIMITER__CAPACITY": "lots"})
