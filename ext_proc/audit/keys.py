"""What the audit log needs from key management, and local implementations for tests and files.

The audit log never talks to a KMS directly. It takes:

* :class:`AuditKeys`: three long-lived secrets held in memory (pseudonym HMAC key, audit-id key,
  Ed25519 signing seed);
* a :class:`KeyWrapper`: wraps and unwraps data keys (DEKs). Production backs it with KMS or Vault
  Transit; :class:`LocalKeyWrapper` is an AES-256-GCM key-encryption key held in memory;
* optionally a :class:`SubjectKeyStore` with one key per subject, for crypto-shredding.
  :class:`LocalSubjectKeyStore` keeps them in a directory, each wrapped under the audit-id key.

Key files read here hold exactly 32 bytes: raw, 64 hex characters, or base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ext_proc.errors import ConfigError, GodelError, KeyProviderError
from ext_proc.keys import Keyring, SecretBytes

__all__ = [
    "KEY_BYTES",
    "AuditKeyError",
    "AuditKeys",
    "KeyWrapper",
    "KeyringKeyWrapper",
    "LocalKeyWrapper",
    "LocalSubjectKeyStore",
    "SubjectKeyStore",
    "canonical_json",
    "load_audit_key_file",
    "load_public_key",
    "parse_audit_key",
    "public_key_fingerprint",
    "public_key_pem",
]

KEY_BYTES = 32


class AuditKeyError(GodelError):
    """A key is missing, malformed, or does not open a wrapped key or record."""


def canonical_json(value: object) -> bytes:
    """Sorted keys, no spaces, ASCII only: one byte string per value (for AAD and signatures)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True, slots=True)
class AuditKeys:
    """The audit log's own secrets (32 bytes each), fetched by a key provider.

    ``pseudonym``: HMAC-SHA256 key of analytic ids. ``subject``: key of the reversible audit id
    (and, with a local subject-key store, the key that wraps per-subject keys). ``signing``:
    Ed25519 seed that signs checkpoints.
    """

    pseudonym: SecretBytes
    subject: SecretBytes
    signing: SecretBytes

    def __post_init__(self) -> None:
        for name in ("pseudonym", "subject", "signing"):
            value = getattr(self, name)
            if not isinstance(value, SecretBytes) or len(value.reveal()) != KEY_BYTES:
                raise AuditKeyError(f"audit key {name!r} must be {KEY_BYTES} bytes of SecretBytes")

    def signer(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.signing.reveal())

    def public_key(self) -> Ed25519PublicKey:
        return self.signer().public_key()


class KeyWrapper(Protocol):
    """Wraps data keys under a key-encryption key that stays in the KMS (or in memory here).

    ``context`` is bound to the wrapped key (KMS encryption context, Transit associated data):
    unwrapping with a different context fails. ``key_id`` names the KEK (and its version) that
    wrapped the blob, so old blobs stay readable after rotation.
    """

    async def new_data_key(self, context: Mapping[str, str]) -> tuple[SecretBytes, str, bytes]:
        """A fresh 256-bit data key: (plaintext, id of the KEK that wrapped it, wrapped blob)."""
        ...

    async def unwrap(self, key_id: str, blob: bytes, context: Mapping[str, str]) -> SecretBytes: ...


def _kek_id(kek: bytes) -> str:
    # A fingerprint that names the KEK without revealing it (the KEK is 256 random bits).
    return "local:" + hashlib.sha256(b"godel-audit-kek-id\x00" + kek).hexdigest()[:16]


class LocalKeyWrapper:
    """AES-256-GCM key-encryption keys held in memory: for tests and file-based setups.

    ``keys`` are the KEKs; the first one wraps, all of them unwrap (rotation: put the new key
    first and keep the old ones until every blob they wrapped is gone). A blob is
    ``nonce(12) || ciphertext || tag(16)``; the associated data is the canonical JSON of the
    context.
    """

    def __init__(self, *keys: SecretBytes) -> None:
        if not keys:
            raise AuditKeyError("LocalKeyWrapper needs at least one key")
        self._keys: dict[str, AESGCM] = {}
        self._primary = ""
        for k in keys:
            raw = k.reveal()
            if len(raw) != KEY_BYTES:
                raise AuditKeyError(f"a key-encryption key must be {KEY_BYTES} bytes")
            kid = _kek_id(raw)
            self._keys[kid] = AESGCM(raw)
            self._primary = self._primary or kid

    @property
    def primary_key_id(self) -> str:
        return self._primary

    def __repr__(self) -> str:
        return f"LocalKeyWrapper(primary={self._primary!r}, keys={len(self._keys)})"

    def wrap_sync(self, plaintext: SecretBytes, context: Mapping[str, str]) -> tuple[str, bytes]:
        nonce = os.urandom(12)
        aead = self._keys[self._primary]
        return self._primary, nonce + aead.encrypt(
            nonce, plaintext.reveal(), canonical_json(context)
        )

    def unwrap_sync(self, key_id: str, blob: bytes, context: Mapping[str, str]) -> SecretBytes:
        aead = self._keys.get(key_id)
        if aead is None:
            raise AuditKeyError(f"no key-encryption key with id {key_id}")
        try:
            return SecretBytes(aead.decrypt(blob[:12], blob[12:], canonical_json(context)))
        except InvalidTag:
            raise AuditKeyError(
                f"wrapped key does not open with {key_id} and its context"
            ) from None

    async def new_data_key(self, context: Mapping[str, str]) -> tuple[SecretBytes, str, bytes]:
        key = SecretBytes(AESGCM.generate_key(bit_length=256))
        key_id, blob = self.wrap_sync(key, context)
        return key, key_id, blob

    async def unwrap(self, key_id: str, blob: bytes, context: Mapping[str, str]) -> SecretBytes:
        return self.unwrap_sync(key_id, blob, context)


class KeyringKeyWrapper:
    """The production :class:`KeyWrapper`: data keys from the key provider's ``audit_kek``
    (KMS ``GenerateDataKey``, Vault Transit ``datakey``, or a file KEK), so the KEK never leaves
    the KMS. The context is bound as encryption context / associated data."""

    def __init__(self, keyring: Keyring, name: str = "audit_kek") -> None:
        self._keyring = keyring
        self._name = name

    def __repr__(self) -> str:
        return f"KeyringKeyWrapper({self._name!r})"

    async def new_data_key(self, context: Mapping[str, str]) -> tuple[SecretBytes, str, bytes]:
        dk = await self._keyring.generate_data_key(self._name, context)
        return dk.plaintext, dk.kek_id, dk.wrapped

    async def unwrap(self, key_id: str, blob: bytes, context: Mapping[str, str]) -> SecretBytes:
        try:
            return await self._keyring.unwrap(self._name, blob, context)
        except KeyProviderError as exc:
            raise AuditKeyError(f"cannot unwrap a data key wrapped by {key_id}: {exc}") from None


class SubjectKeyStore(Protocol):
    """One random key per subject, found by the subject's analytic id; shredding deletes it.

    Calls are synchronous and must be cheap after the first use of a subject (cache in memory);
    the audit log calls ``key_for`` while it seals a record.
    """

    def key_for(self, analytic_id: str, *, create: bool) -> SecretBytes | None: ...

    def shred(self, analytic_id: str) -> bool: ...


class LocalSubjectKeyStore:
    """Per-subject keys in a directory: one file per subject, named by a hash of its analytic
    id, holding the subject key wrapped with AES-256-GCM under ``store_key`` (the audit-id key)
    with the analytic id as associated data. :meth:`shred` deletes the file and the cached copy.

    A Vault KV v2 store maps one-to-one: path ``<mount>/godel/audit-subjects/<file name>``, value
    the key; shredding is ``kv metadata delete`` (every version destroyed).
    """

    def __init__(self, directory: Path, store_key: SecretBytes) -> None:
        self.directory = directory
        self._aead = AESGCM(store_key.reveal())
        self._cache: dict[str, SecretBytes] = {}

    def __repr__(self) -> str:
        return f"LocalSubjectKeyStore({str(self.directory)!r})"

    def _path(self, analytic_id: str) -> Path:
        name = hashlib.sha256(analytic_id.encode()).hexdigest()[:32]
        return self.directory / f"{name}.key"

    def key_for(self, analytic_id: str, *, create: bool) -> SecretBytes | None:
        cached = self._cache.get(analytic_id)
        if cached is not None:
            return cached
        path = self._path(analytic_id)
        aad = b"godel-audit-subject\x00" + analytic_id.encode()
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            if not create:
                return None
            key = SecretBytes(AESGCM.generate_key(bit_length=256))
            nonce = os.urandom(12)
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(nonce + self._aead.encrypt(nonce, key.reveal(), aad))
            os.replace(tmp, path)
            self._cache[analytic_id] = key
            return key
        try:
            key = SecretBytes(self._aead.decrypt(blob[:12], blob[12:], aad))
        except InvalidTag:
            raise AuditKeyError(f"subject key file {path.name} does not open") from None
        self._cache[analytic_id] = key
        return key

    def shred(self, analytic_id: str) -> bool:
        self._cache.pop(analytic_id, None)
        try:
            self._path(analytic_id).unlink()
        except FileNotFoundError:
            return False
        return True


def load_audit_key_file(path: Path, setting: str) -> SecretBytes:
    """Read a 32-byte key: raw bytes, 64 hex characters, or base64 (errors name ``setting``)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read key file {path} ({exc.strerror})") from None
    return parse_audit_key(raw, f"{setting}: key file {path}")


def parse_audit_key(raw: bytes, what: str) -> SecretBytes:
    """A 32-byte key from raw bytes, 64 hex characters or base64 (errors name ``what``)."""
    if len(raw) == KEY_BYTES:
        return SecretBytes(raw)
    text = raw.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return SecretBytes(binascii.unhexlify(text))
        except binascii.Error:
            pass
    try:
        decoded = base64.b64decode(text, validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) == KEY_BYTES:
        return SecretBytes(decoded)
    raise ConfigError(f"{what} must hold {KEY_BYTES} bytes (raw, hex or base64)")


def public_key_pem(keys: AuditKeys) -> bytes:
    return keys.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(path: Path, setting: str = "--public-key") -> Ed25519PublicKey:
    """An Ed25519 public key: PEM (SubjectPublicKeyInfo), or 32 bytes raw, hex or base64."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path} ({exc.strerror})") from None
    if raw.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(raw)
        except ValueError:
            raise ConfigError(f"{setting}: {path} is not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{setting}: {path} is not an Ed25519 public key")
        return key
    data = load_audit_key_file(path, setting).reveal()
    return Ed25519PublicKey.from_public_bytes(data)


def random_id() -> str:
    """64 random bits as 16 hex characters (log ids, data-key ids)."""
    return secrets.token_hex(8)


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
