"""Key references, the keys config section and the file provider (no servers needed)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ext_proc.config import settings_from_mapping
from ext_proc.errors import ConfigError, KeyProviderError, KeyUnwrapError
from ext_proc.keys import (
    MIN_KEY_BYTES,
    KeyRef,
    RefError,
    Scheme,
    SecretBytes,
    build_keyring,
    load_keys,
    parse_ref,
    read_key_file,
    read_secret_file,
)
from ext_proc.keys.file import FileProvider

LITERAL = "k3y-material-that-must-never-be-echoed-0123456789"


def test_public_api_kept() -> None:
    assert MIN_KEY_BYTES == 32
    assert callable(read_key_file)
    assert callable(read_secret_file)
    assert repr(SecretBytes(b"x" * 40)) == "SecretBytes(<40 bytes>)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("file:/run/keys/hmac", KeyRef(Scheme.FILE, "file:/run/keys/hmac", "/run/keys/hmac")),
        (
            "vault-kv:secret/godel/prod#pseudonym",
            KeyRef(
                Scheme.VAULT_KV,
                "vault-kv:secret/godel/prod#pseudonym",
                "godel/prod",
                mount="secret",
                field="pseudonym",
            ),
        ),
        (
            "vault-transit:transit/audit",
            KeyRef(Scheme.VAULT_TRANSIT, "vault-transit:transit/audit", "audit", mount="transit"),
        ),
        ("ssm:/godel/pseudonym", KeyRef(Scheme.SSM, "ssm:/godel/pseudonym", "/godel/pseudonym")),
        ("ssm:godel-key", KeyRef(Scheme.SSM, "ssm:godel-key", "godel-key")),
        ("kms:alias/godel", KeyRef(Scheme.KMS, "kms:alias/godel", "alias/godel")),
        (
            "kms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            KeyRef(
                Scheme.KMS,
                "kms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            ),
        ),
    ],
)
def test_parse_ref(text: str, expected: KeyRef) -> None:
    assert parse_ref(text) == expected
    assert str(parse_ref(text)) == text
    assert parse_ref(text).key_id("v3") == f"{text}@v3"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (LITERAL, "not a key reference"),
        ("file:relative/path", "absolute file path"),
        ("vault-kv:secret/godel", "#<field>"),
        ("vault-kv:secret#field", "mount and path"),
        ("vault-kv:secret/../x#f", "segments"),
        ("vault-kv:secret//x#f", "segments"),
        ("vault-transit:transit", "vault-transit:<mount>/<key>"),
        ("vault-transit:transit/a/b", "vault-transit:<mount>/<key>"),
        ("ssm:godel/x", "hierarchical name starts with '/'"),
        ("ssm:/godel/x:2", "no ':version' selector"),
        ("kms:", "kms:<key id>"),
    ],
)
def test_parse_ref_errors(text: str, message: str) -> None:
    with pytest.raises(RefError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_ref(text)


def test_literal_error_does_not_echo_the_value() -> None:
    with pytest.raises(RefError) as info:
        parse_ref(LITERAL)
    assert LITERAL not in str(info.value)


# -- config -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["redaction", "pseudonym", "audit", "audit_signing"])
def test_literal_key_in_config_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({"keys": {name: LITERAL}}, env={})
    text = str(info.value)
    assert f"keys.{name}: " in text
    assert "not a key reference" in text
    assert "docs/security.md" in text
    assert LITERAL not in text


def test_non_string_literal_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"keys.redis_password: .*not a key reference"):
        settings_from_mapping({"keys": {"redis_password": 12345678}}, env={})


def test_literal_key_in_environment_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({}, env={"GODEL_KEYS__PSEUDONYM": LITERAL})
    text = str(info.value)
    assert "GODEL_KEYS__PSEUDONYM" in text
    assert "not a key reference" in text
    assert LITERAL not in text


def test_reference_in_environment_is_accepted() -> None:
    s = settings_from_mapping({}, env={"GODEL_KEYS__PSEUDONYM": "file:/run/keys/p"})
    assert s.keys.pseudonym == "file:/run/keys/p"


def test_unknown_keys_env_variable_is_refused_without_its_value() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({}, env={"GODEL_KEYS__VAULT__TOKEN": LITERAL})
    assert "keys.vault.token: unknown setting" in str(info.value)
    assert LITERAL not in str(info.value)


def test_scheme_must_fit_the_use() -> None:
    with pytest.raises(ConfigError, match=r"keys.audit_kek: .*wraps data keys"):
        settings_from_mapping({"keys": {"audit_kek": "ssm:/godel/kek"}}, env={})
    with pytest.raises(ConfigError, match=r"keys.pseudonym: .*needs key material"):
        settings_from_mapping({"keys": {"pseudonym": "kms:alias/godel"}}, env={})


def test_vault_refs_need_url_and_auth_inputs() -> None:
    with pytest.raises(ConfigError, match=r"keys.vault.url is unset"):
        settings_from_mapping({"keys": {"audit": "vault-kv:secret/g#audit"}}, env={})
    with pytest.raises(ConfigError, match=r"needs keys.vault.role"):
        settings_from_mapping(
            {"keys": {"audit": "vault-kv:secret/g#audit", "vault": {"url": "https://v:8200"}}},
            env={},
        )
    with pytest.raises(ConfigError, match=r"needs keys.vault.token_file"):
        settings_from_mapping({"keys": {"vault": {"auth": "token"}}}, env={})
    with pytest.raises(ConfigError, match=r"keys.vault.url"):
        settings_from_mapping({"keys": {"vault": {"url": "https://u:p@vault:8200"}}}, env={})


# -- file provider and keyring ----------------------------------------------------------------
def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # as Vault Agent and Kubernetes secret volumes do


def test_file_key_keeps_a_binary_key_whole_and_strips_a_text_keys_newline(tmp_path: Path) -> None:
    binary = tmp_path / "binary"
    # 31 random bytes and a final byte that reads as a newline: a KEK from `openssl rand 32`
    # ends so about once in 128 keys. Stripping it would leave 31 bytes and a refused KEK.
    key = bytes([0x00, 0xFF]) + os.urandom(29) + b"\n"
    _write(binary, key)
    text = tmp_path / "text"
    _write(text, b"c2VjcmV0LWtleS1tYXRlcmlhbC0zMi1ieXRlcy1sb25n\r\n")
    lines = tmp_path / "lines"
    _write(lines, b"first half of a passphrase\n\tsecond half\n\n")

    async def run() -> None:
        provider = FileProvider()
        got = await provider.fetch(parse_ref(f"file:{binary}"))
        assert got.material.reveal() == key
        dk = await provider.generate_data_key(parse_ref(f"file:{binary}"), {"log": "audit"})
        assert len(dk.plaintext.reveal()) == 32
        got = await provider.fetch(parse_ref(f"file:{text}"))
        assert got.material.reveal() == b"c2VjcmV0LWtleS1tYXRlcmlhbC0zMi1ieXRlcy1sb25n"
        got = await provider.fetch(parse_ref(f"file:{lines}"))
        assert got.material.reveal() == b"first half of a passphrase\n\tsecond half"

    asyncio.run(run())


def test_file_provider_rereads_on_change_and_keyring_keeps_previous(tmp_path: Path) -> None:
    key = tmp_path / "pseudonym"
    first, second, third = (os.urandom(24).hex().encode() for _ in range(3))
    _write(key, first + b"\n")
    settings = settings_from_mapping({"keys": {"pseudonym": f"file:{key}"}}, env={})

    async def run() -> None:
        ring = await load_keys(settings)
        v1 = ring.current("pseudonym")
        assert v1.material.reveal() == first
        assert v1.key_id.startswith(f"file:{key}@")
        assert len(v1.version) == 8
        assert not (await ring.refresh())[0].changed  # unchanged file: same version
        _write(key, second)
        [status] = await ring.refresh()
        assert status.changed
        assert status.ok
        assert ring.current("pseudonym").material.reveal() == second
        assert ring.get("pseudonym", v1.key_id).material.reveal() == first
        _write(key, third)
        await ring.refresh()
        assert [v.material.reveal() for v in ring.versions("pseudonym")] == [third, second]
        with pytest.raises(KeyProviderError, match="not held"):
            ring.get("pseudonym", v1.key_id)
        key.unlink()
        [status] = await ring.refresh()
        assert not status.ok
        assert "cannot read the key file" in (status.error or "")
        assert ring.current("pseudonym").material.reveal() == third  # kept after a failure
        await ring.close()

    asyncio.run(run())


def test_short_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "short"
    key.write_bytes(b"x" * 31)
    settings = settings_from_mapping({"keys": {"redaction": f"file:{key}"}}, env={})
    with pytest.raises(KeyProviderError, match=r"keys.redaction .* 31 bytes; at least 32"):
        asyncio.run(load_keys(settings))
    key.write_bytes(b"short-password")  # a password may be short
    settings = settings_from_mapping({"keys": {"redis_password": f"file:{key}"}}, env={})
    ring = asyncio.run(load_keys(settings))
    assert ring.material("redis_password").reveal() == b"short-password"


def test_file_kek_wraps_with_context_and_survives_rotation(tmp_path: Path) -> None:
    kek = tmp_path / "kek"
    _write(kek, os.urandom(32))
    ref = parse_ref(f"file:{kek}")
    ctx = {"log": "audit", "period": "2026-11"}

    async def run() -> None:
        provider = FileProvider(keep=2)
        dk = await provider.generate_data_key(ref, ctx)
        assert len(dk.plaintext.reveal()) == 32
        assert dk.plaintext.reveal() not in dk.wrapped
        assert await provider.unwrap(ref, dk.wrapped, dict(reversed(ctx.items()))) == dk.plaintext
        with pytest.raises(KeyUnwrapError, match="wrong encryption context"):
            await provider.unwrap(ref, dk.wrapped, {**ctx, "period": "2026-12"})
        _write(kek, os.urandom(32))
        dk2 = await provider.generate_data_key(ref, ctx)
        assert dk2.kek_id != dk.kek_id
        assert await provider.unwrap(ref, dk.wrapped, ctx) == dk.plaintext  # old version kept
        assert await provider.unwrap(ref, dk2.wrapped, ctx) == dk2.plaintext
        _write(kek, os.urandom(32))
        await provider.generate_data_key(ref, ctx)
        with pytest.raises(KeyUnwrapError, match="no longer holds"):
            await provider.unwrap(ref, dk.wrapped, ctx)
        with pytest.raises(KeyUnwrapError, match="not a data key wrapped by a file KEK"):
            await provider.unwrap(ref, b"garbage", ctx)

    asyncio.run(run())


def test_keyring_kek_status_and_misuse(tmp_path: Path) -> None:
    kek = tmp_path / "kek"
    kek.write_bytes(os.urandom(32))
    settings = settings_from_mapping({"keys": {"audit_kek": f"file:{kek}"}}, env={})

    async def run() -> None:
        ring = build_keyring(settings.keys)
        [status] = await ring.refresh()
        assert status.ok
        assert status.key_id
        assert status.key_id.startswith(f"file:{kek}@")
        with pytest.raises(KeyProviderError, match="no local material"):
            ring.current("audit_kek")
        with pytest.raises(KeyProviderError, match="not configured"):
            ring.current("pseudonym")
        dk = await ring.generate_data_key("audit_kek", {"a": "b"})
        assert await ring.unwrap("audit_kek", dk.wrapped, {"a": "b"}) == dk.plaintext
        assert "plaintext" not in repr(dk)
        assert dk.plaintext.reveal().hex() not in repr(dk)

    asyncio.run(run())
