"""The keyed-hash redaction operator and its key (keys.redaction, through the keyring)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from ext_proc.config import settings_from_mapping
from ext_proc.errors import ConfigError, KeyProviderError
from ext_proc.keys import SecretBytes, load_keys, read_key_file
from ext_proc.metrics import Metrics
from ext_proc.server import build_pipeline
from tests.conftest import FAKE_AWS_KEY, chat


def pipeline_with_key(tmp_path: Path, key: bytes) -> object:
    key_file = tmp_path / f"k{len(list(tmp_path.iterdir()))}"
    key_file.write_bytes(key + b"\n")
    s = settings_from_mapping(
        {"policy": {"redaction": "hash"}, "keys": {"redaction": f"file:{key_file}"}}, env={}
    )
    return build_pipeline(s, Metrics(), asyncio.run(load_keys(s)))


def content(p: object, text: str) -> str:
    body = p.inspect(chat(text)).body  # type: ignore[attr-defined]
    assert body is not None
    return str(json.loads(body)["messages"][0]["content"])


def test_same_secret_same_pseudonym_and_key_dependent(tmp_path: Path) -> None:
    p1 = pipeline_with_key(tmp_path, b"k" * 32)
    p2 = pipeline_with_key(tmp_path, b"q" * 32)
    first = content(p1, f"use {FAKE_AWS_KEY}")
    again = content(p1, f"again {FAKE_AWS_KEY}")
    other_key = content(p2, f"use {FAKE_AWS_KEY}")
    token = re.search(r"\[HASH:aws-access-key:[0-9a-f]{16}\]", first)
    assert token is not None
    assert token.group(0) in again
    assert token.group(0) not in other_key
    assert FAKE_AWS_KEY not in first


def test_hash_without_a_key_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"policy.redaction 'hash' needs keys.redaction"):
        settings_from_mapping({"policy": {"redaction": "hash"}}, env={})


def test_short_key_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"tooshort")
    s = settings_from_mapping(
        {"policy": {"redaction": "hash"}, "keys": {"redaction": f"file:{short}"}}, env={}
    )
    with pytest.raises(KeyProviderError, match=r"keys.redaction .* at least 32 are needed"):
        asyncio.run(load_keys(s))
    with pytest.raises(ConfigError, match="cannot read key file"):
        read_key_file(tmp_path / "absent", "keys.redaction")


def test_key_never_shows_in_repr() -> None:
    secret = SecretBytes(b"super-secret-key-material-0123456789")
    assert "super" not in repr(secret)
    assert "super" not in str(secret)
    assert repr(secret) == "SecretBytes(<36 bytes>)"
