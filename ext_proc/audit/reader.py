"""Decrypt audit records: the warrant workflow (one subject's records) and tests.

Each key line's data key is unwrapped once through the :class:`KeyWrapper`, with the context it
was wrapped under; each record is opened with its clear header as associated data, so a header
moved onto another record's ciphertext does not decrypt.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ext_proc.audit.format import b64d, dek_context, record_aad
from ext_proc.audit.keys import AuditKeyError, KeyWrapper
from ext_proc.audit.verify import expand_paths

__all__ = ["DecryptedRecord", "read_records"]


@dataclass(frozen=True, slots=True)
class DecryptedRecord:
    file: Path
    line: int
    seq: int
    ts: str
    body: dict[str, Any]


async def read_records(paths: list[Path], wrapper: KeyWrapper) -> AsyncIterator[DecryptedRecord]:
    """Every record of the files, decrypted, in order. Raises AuditKeyError naming the line
    whose data key or ciphertext does not open."""
    deks: dict[str, AESGCM] = {}
    for path in expand_paths(paths):
        for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
            doc = json.loads(raw)
            kind = doc.get("t")
            if kind == "key":
                key = await wrapper.unwrap(
                    doc["kek"], b64d(doc["wrapped"]), dek_context(doc["log"], doc["kid"])
                )
                deks[doc["kid"]] = AESGCM(key.reveal())
            elif kind == "rec":
                aead = deks.get(doc["kid"])
                if aead is None:
                    raise AuditKeyError(f"{path}:{number}: no key line for data key {doc['kid']}")
                blob = b64d(doc["ct"])
                aad = record_aad(doc["log"], doc["seq"], doc["ts"], doc["kid"])
                try:
                    plain = aead.decrypt(blob[:12], blob[12:], aad)
                except InvalidTag:
                    raise AuditKeyError(f"{path}:{number}: record does not decrypt") from None
                yield DecryptedRecord(path, number, doc["seq"], doc["ts"], json.loads(plain))
