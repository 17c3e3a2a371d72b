"""Every rule's own examples: each `match` string yields the rule, no `no_match` string does."""

from __future__ import annotations

from pathlib import Path

import pytest

from ext_proc.config import EntropySettings, TrapSettings
from ext_proc.errors import RulePackError
from ext_proc.traps import TrapSet, load_rule_pack

PACK = load_rule_pack("builtin:starter")
CASES = [
    (rule_id, kind, text)
    for rule_id, examples in PACK.examples.items()
    for kind, texts in examples.items()
    for text in texts
]
TRAPS = TrapSet([PACK], TrapSettings(entropy=EntropySettings(enabled=False)))


def test_starter_pack_covers_the_required_families() -> None:
    ids = set(TRAPS.rule_ids)
    assert {
        "aws-access-key-id",
        "github-token",
        "private-key-pem",
        "email-address",
        "payment-card-number",
        "injection-ignore-instructions",
    } <= ids
    for rule_id, examples in PACK.examples.items():
        assert examples["match"], f"{rule_id} has no positive example"
        assert examples["no_match"], f"{rule_id} has no negative example"


@pytest.mark.parametrize(("rule_id", "kind", "text"), CASES)
def test_rule_example(rule_id: str, kind: str, text: str) -> None:
    hits = [f for f in TRAPS.scan(text.encode()) if f.rule == rule_id]
    if kind == "match":
        assert hits, f"{rule_id} missed {text!r}"
    else:
        assert not hits, f"{rule_id} flagged {text!r}"


def test_spans_are_byte_offsets_of_the_secret() -> None:
    body = "é😀 key=AKIAIOSFODNN7EXAMPLE.".encode()
    (hit,) = [f for f in TRAPS.scan(body) if f.rule == "aws-access-key-id"]
    assert body[hit.start : hit.end] == b"AKIAIOSFODNN7EXAMPLE"


def test_bad_custom_pack_names_file_and_rule(tmp_path: Path) -> None:
    f = tmp_path / "custom.yaml"
    f.write_text(
        "rules:\n  - id: broken\n    category: secret\n    severity: critical\n"
        "    pattern: '(unclosed'\n"
    )
    with pytest.raises(RulePackError, match=r"custom\.yaml.*broken"):
        TrapSet.from_settings(TrapSettings(rule_packs=(str(f),)))


def test_unknown_rule_key_and_missing_pack(tmp_path: Path) -> None:
    f = tmp_path / "custom.yaml"
    f.write_text(
        "rules:\n  - id: r1\n    category: secret\n    severity: critical\n"
        "    pattern: 'x'\n    colour: red\n"
    )
    with pytest.raises(RulePackError, match=r"rule r1: unknown key\(s\) \['colour'\]"):
        load_rule_pack(str(f))
    with pytest.raises(RulePackError, match="no such built-in rule pack"):
        load_rule_pack("builtin:nope")


def test_rust_bench_mirror_matches_the_starter_pack() -> None:
    mirror = (
        Path(__file__).resolve().parents[2] / "native_traps" / "tests" / "common" / "mod.rs"
    ).read_text()
    for rule in PACK.rules:
        assert f'"{rule["id"]}"' in mirror, f"{rule['id']} missing from the Rust mirror"
        assert f'r"{rule["pattern"]}"' in mirror, f"{rule['id']}: pattern differs in the mirror"
