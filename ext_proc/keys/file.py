"""``file:`` keys: files mounted by Vault Agent, the Secrets Store CSI driver or a tmpfs volume.

A file is read again only when its identity changes (inode, size or modification time: Vault
Agent and Kubernetes secret volumes replace files atomically). Its version is a fingerprint, the
first 8 hex digits of a domain-separated SHA-256 of the content, so every process that reads the
same content reports the same key id. For a random key of 32 bytes or more the fingerprint
reveals nothing useful; for a weak password it would help confirm a guess, so use strong ones.

As a KEK (``keys.audit_kek: file:/...``) the file's bytes are stretched by HKDF-SHA256 into an
AES-256-GCM key; a wrapped data key is ``b"GK1" | fingerprint (4) | nonce (12) | ciphertext+tag``
with the canonical encryption context as associated data. The provider keeps the last
``keep`` versions of each KEK file, so data keys wrapped before a rotation still unwrap.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ext_proc.errors import KeyProviderError, KeyUnwrapError
from ext_proc.keys._secret import SecretBytes
from ext_proc.keys.base import DataKey, KeyVersion, canonical_context
from ext_proc.keys.refs import KeyRef, Scheme

__all__ = ["FileProvider", "fingerprint"]

_MAGIC = b"GK1"
_KEK_INFO = b"godel file kek v1"
_NONCE = 12


def _without_text_newline(raw: bytes) -> bytes:
    """The file's key material: a text file (UTF-8 whose only control characters are line
    breaks and tabs, such as a base64 or hex key, a password written by a template or ``echo``,
    or several lines of them) loses its trailing newlines; anything else (a binary key, as from
    ``openssl rand 32``) is kept byte for byte, since a random key may well end in a byte that
    reads as a newline."""
    text = raw.rstrip(b"\r\n")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    is_text = all(c.isprintable() or c in "\t\r\n" for c in decoded)
    return text if is_text else raw


def fingerprint(material: bytes) -> str:
    """8 hex digits identifying a key's content (not its value)."""
    return hashlib.sha256(b"godel-key-fingerprint\x00" + material).hexdigest()[:8]


@dataclass
class _Loaded:
    stat_key: tuple[int, int, int, int]
    version: KeyVersion


class FileProvider:
    name = "file"

    def __init__(self, keep: int = 2) -> None:
        self._keep = max(1, keep)
        self._current: dict[str, _Loaded] = {}
        self._kek_versions: dict[str, list[tuple[str, AESGCM]]] = {}

    async def fetch(self, ref: KeyRef) -> KeyVersion:
        return self._read(ref)

    def _read(self, ref: KeyRef) -> KeyVersion:
        if ref.scheme is not Scheme.FILE:
            raise KeyProviderError(f"{ref}: not a file: reference")
        path = Path(ref.path)
        try:
            st = path.stat()
            stat_key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._current.get(ref.path)
            if cached is not None and cached.stat_key == stat_key:
                return cached.version
            raw = _without_text_newline(path.read_bytes())
        except OSError as exc:
            raise KeyProviderError(f"{ref}: cannot read the key file ({exc.strerror})") from None
        if not raw:
            raise KeyProviderError(f"{ref}: the key file is empty")
        fp = fingerprint(raw)
        version = KeyVersion(ref.key_id(fp), fp, SecretBytes(raw))
        self._current[ref.path] = _Loaded(stat_key, version)
        return version

    def _kek(self, ref: KeyRef) -> tuple[str, AESGCM]:
        current = self._read(ref)
        versions = self._kek_versions.setdefault(ref.path, [])
        for fp, aead in versions:
            if fp == current.version:
                return fp, aead
        if len(current.material.reveal()) < 32:
            raise KeyProviderError(f"{ref}: a KEK file needs at least 32 bytes")
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEK_INFO).derive(
            current.material.reveal()
        )
        entry = (current.version, AESGCM(derived))
        versions.insert(0, entry)
        del versions[self._keep :]
        return entry

    async def generate_data_key(self, ref: KeyRef, context: Mapping[str, str]) -> DataKey:
        fp, aead = self._kek(ref)
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        sealed = aead.encrypt(nonce, dek, canonical_context(context))
        wrapped = _MAGIC + bytes.fromhex(fp) + nonce + sealed
        return DataKey(SecretBytes(dek), wrapped, ref.key_id(fp))

    async def unwrap(self, ref: KeyRef, wrapped: bytes, context: Mapping[str, str]) -> SecretBytes:
        aad = canonical_context(context)
        if len(wrapped) < len(_MAGIC) + 4 + _NONCE + 16 or not wrapped.startswith(_MAGIC):
            raise KeyUnwrapError(f"{ref}: not a data key wrapped by a file KEK")
        fp = wrapped[3:7].hex()
        self._kek(ref)  # pick up a rotated file
        for have, aead in self._kek_versions.get(ref.path, []):
            if have == fp:
                try:
                    return SecretBytes(aead.decrypt(wrapped[7:19], wrapped[19:], aad))
                except InvalidTag:
                    raise KeyUnwrapError(
                        f"{ref}@{fp}: data key refused (wrong encryption context or corrupt)"
                    ) from None
        raise KeyUnwrapError(
            f"{ref}@{fp}: wrapped under a KEK version this process no longer holds "
            f"(keeps the last {self._keep})"
        )

    async def check(self) -> str:
        return "file: local files"

    async def close(self) -> None:
        self._current.clear()
        self._kek_versions.clear()
