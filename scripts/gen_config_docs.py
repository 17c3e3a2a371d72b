"""Print docs/configuration.md from the settings models (the single declaration of each setting)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

from ext_proc.config import ENV_PREFIX, RouteRule, Settings, TierSettings

HEADER = """# Configuration

Godel reads one YAML file (`godel serve --config FILE`, `godel check-config FILE`,
`godel scan --policy FILE`). Every key is optional; a missing key takes the default below. Unknown
keys and bad values stop the process at start with an error that names the key, for example
`config.yaml: limiter.rate_per_second: Input should be greater than 0`.

Each setting can also come from the environment as `{prefix}<SECTION>__<KEY>` (shown per row);
the environment wins over the file. Only non-secret settings exist: keys and passwords are
fetched by a key provider, never written in this file or in the environment.

This page is generated from `ext_proc/config.py` by `make docs`; a test fails when they differ.

An example that states the defaults explicitly: [`docs/godel.example.yaml`](godel.example.yaml).
"""


def _default(value: Any) -> str:
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, PurePath):
        value = str(value)
    if isinstance(value, dict):
        value = {k: (v.value if isinstance(v, Enum) else v) for k, v in value.items()}
    return f"`{json.dumps(value)}`"


def _section(model: type[BaseModel], path: list[str], out: list[str]) -> None:
    rows = []
    nested: list[tuple[type[BaseModel], list[str]]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            nested.append((ann, [*path, name]))
            continue
        default = field.get_default(call_default_factory=True)
        env = ENV_PREFIX + "__".join(p.upper() for p in [*path, name])
        rows.append(f"| `{name}` | {_default(default)} | `{env}` | {field.description} |")
    if rows:
        out.append(f"\n## `{'.'.join(path)}`\n")
        out.append("| key | default | environment | meaning |")
        out.append("|---|---|---|---|")
        out.extend(rows)
    for sub, sub_path in nested:
        _section(sub, sub_path, out)


def render() -> str:
    out = [HEADER.format(prefix=ENV_PREFIX)]
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        assert isinstance(ann, type)
        assert issubclass(ann, BaseModel)
        _section(ann, [name], out)
    out.append("\n## `limiter.tiers.<name>` (each tier)\n")
    out.append("| key | default | meaning |")
    out.append("|---|---|---|")
    for name, field in TierSettings.model_fields.items():
        out.append(f"| `{name}` | {_default(field.default)} | {field.description} |")
    out.append("\n## `policy.routes[]` (each entry)\n")
    out.append("| key | default | meaning |")
    out.append("|---|---|---|")
    for name, field in RouteRule.model_fields.items():
        default = (
            "required"
            if field.is_required()
            else _default(field.get_default(call_default_factory=True))
        )
        out.append(f"| `{name}` | {default} | {field.description} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
