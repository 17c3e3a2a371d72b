"""Refresh the Godel-config part of the chart's values.schema.json from the settings models.

The chart's ``config`` value is rendered into Godel's config file, so its schema is derived from
``ext_proc.config.Settings`` (one declaration of each setting) and tightened where secrets could
slip in: files holding keys or passwords must be paths under the mounted secrets directory, key
settings must be references (``vault-kv:...``), never the key itself. The chart-owned server
settings (addresses, shutdown timings) are removed. Everything else in the schema is written by
hand; this script replaces only ``properties.config`` and ``definitions``.

    python scripts/gen_chart_schema.py          # rewrite the file
    python scripts/gen_chart_schema.py --check  # exit 1 if it is stale (the tests do this)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from ext_proc.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "charts" / "godel-guardrail" / "values.schema.json"

# Where Vault Agent (/vault/secrets) or the Secrets Store CSI driver (/mnt/secrets-store) put
# files; no segment may start with a dot, so ".." cannot climb out.
MOUNTED_FILE_PATTERN = r"^/(vault/secrets|mnt/secrets-store)(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$"
ABSOLUTE_PATH_PATTERN = r"^(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$"
# A key setting names where the key lives; a file: reference must point into the secrets mount.
KEY_REF_PATTERN = (
    r"^(file:/(vault/secrets|mnt/secrets-store)(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+"
    r"|(vault-kv|vault-transit|ssm|kms):[^\s]+)$"
)
SENSITIVE_NAME = re.compile(r"password|secret|token|key|_id_file")
# Set by the chart from ports, bindAddress and lifecycle.
CHART_OWNED_SERVER = ("grpc_address", "admin_address", "drain_seconds", "shutdown_delay_seconds")
KEY_SECTION = "KeySettings"  # the key-reference section, where the models have one


def _string_branch(prop: dict[str, Any]) -> dict[str, Any] | None:
    if prop.get("type") == "string":
        return prop
    for branch in prop.get("anyOf", []):
        if branch.get("type") == "string":
            return branch  # type: ignore[no-any-return]
    return None


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _strip(v)
            for k, v in node.items()
            if k != "title" and not (k == "format" and v == "path")
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _tighten(def_name: str, definition: dict[str, Any]) -> None:
    for name, prop in definition.get("properties", {}).items():
        branch = _string_branch(prop)
        if branch is None:
            continue
        if def_name == KEY_SECTION and "pattern" not in branch and "enum" not in branch:
            branch["pattern"] = KEY_REF_PATTERN
        if name.endswith("_file"):
            sensitive = SENSITIVE_NAME.search(name) is not None
            branch["pattern"] = MOUNTED_FILE_PATTERN if sensitive else ABSOLUTE_PATH_PATTERN
        if SENSITIVE_NAME.search(name) and "pattern" not in branch and "enum" not in branch:
            raise SystemExit(
                f"{def_name}.{name}: a secret-looking string setting with no pattern; "
                "decide in scripts/gen_chart_schema.py how the chart may accept it"
            )


def config_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the ``config`` property schema, its definitions)."""
    raw = Settings.model_json_schema(ref_template="#/definitions/{model}")
    definitions: dict[str, Any] = _strip(raw.pop("$defs"))
    server = definitions["ServerSettings"]["properties"]
    for name in CHART_OWNED_SERVER:
        del server[name]
    for def_name, definition in definitions.items():
        _tighten(def_name, definition)
    config = _strip(raw)
    config["description"] = (
        "Godel's settings (docs/configuration.md), rendered into the ConfigMap. Generated from "
        "ext_proc/config.py by scripts/gen_chart_schema.py."
    )
    return config, dict(sorted(definitions.items()))


def render(current: dict[str, Any]) -> str:
    config, definitions = config_schema()
    current["properties"]["config"] = config
    current["definitions"] = definitions
    return json.dumps(current, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args()
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    new = render(json.loads(text))
    if args.check:
        if new != text:
            print(f"{SCHEMA_PATH}: stale; run python scripts/gen_chart_schema.py", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
