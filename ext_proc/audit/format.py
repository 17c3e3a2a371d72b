"""The audit log's line format (version 1) and the identifiers in a record.

Every line is one JSON object ending in ``,"h":"<64 hex>"}``. ``h`` is SHA-256 of the exact
line bytes with that suffix replaced by ``}``; every line carries ``prev``, the ``h`` of the
line before it (64 zeros for the first line of a log). See ``docs/audit.md`` for each field.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ext_proc.audit.keys import AuditKeyError, canonical_json
from ext_proc.keys import SecretBytes

__all__ = [
    "GENESIS",
    "VERSION",
    "Line",
    "Pseudonyms",
    "b64d",
    "b64e",
    "checkpoint_message",
    "dek_context",
    "iso_time",
    "record_aad",
    "seal_line",
    "split_line",
]

VERSION = 1
GENESIS = "0" * 64
DEK_ALG = "AES-256-GCM"
_SUFFIX = re.compile(rb',"h":"([0-9a-f]{64})"}$')
CHECKPOINT_DOMAIN = b"godel-audit-checkpoint/v1\n"


@dataclass(frozen=True, slots=True)
class Line:
    """One finished log line: its sequence number, type (key, rec, ckpt) and text (no newline)."""

    seq: int
    kind: str
    text: str


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def iso_time(t: float) -> str:
    """UTC, millisecond precision: 2025-01-31T12:00:00.123Z."""
    whole = int(t)
    ms = int((t - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def seal_line(fields: dict[str, Any]) -> tuple[str, str]:
    """Serialise ``fields`` (insertion order) and append ``h``; returns (line, h)."""
    body = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(body.encode("ascii")).hexdigest()
    return body[:-1] + ',"h":"' + digest + '"}', digest


def split_line(raw: bytes) -> tuple[str, str] | None:
    """(recomputed hash, stated hash) of one line without its newline; None if malformed."""
    m = _SUFFIX.search(raw)
    if m is None:
        return None
    body = raw[: m.start()] + b"}"
    return hashlib.sha256(body).hexdigest(), m.group(1).decode("ascii")


def record_aad(log: str, seq: int, ts: str, kid: str) -> bytes:
    """Associated data of a record: its clear header, canonical JSON."""
    return canonical_json({"v": VERSION, "t": "rec", "log": log, "seq": seq, "ts": ts, "kid": kid})


def dek_context(log: str, kid: str) -> dict[str, str]:
    """Context bound to a wrapped data key (KMS encryption context)."""
    return {"purpose": "godel-audit-dek", "log": log, "kid": kid}


def checkpoint_message(fields: dict[str, Any]) -> bytes:
    """The bytes a checkpoint signature covers: every field except ``sig`` and ``h``."""
    signed = {k: v for k, v in fields.items() if k not in ("sig", "h")}
    return CHECKPOINT_DOMAIN + canonical_json(signed)


_ANALYTIC_DOMAIN = b"godel-audit/analytic-id/v1\x00"
_AUDIT_AD = b"godel-audit/audit-id/v1"


class Pseudonyms:
    """Analytic ids (keyed one-way) and audit ids (keyed, reversible) of user ids.

    * analytic id ``p1:<32 hex>``: HMAC-SHA256(pseudonym key, domain || user id), truncated to
      128 bits. Stable per user, not reversible, not confirmable without the key.
    * audit id ``s1:<base64>``: AES-SIV (RFC 5297, deterministic authenticated encryption) of
      the user id under a 512-bit key derived by HKDF-SHA256 from the audit-id key (or from a
      per-subject key). Deterministic, so a warrant can search for it; authenticated, so a
      forged or altered id does not decrypt.
    """

    def __init__(self, pseudonym: SecretBytes, subject: SecretBytes) -> None:
        self._mac_key = pseudonym.reveal()
        self._siv = self._siv_for(subject)

    def __repr__(self) -> str:
        return "Pseudonyms(<keys hidden>)"

    @staticmethod
    def _siv_for(key: SecretBytes) -> AESSIV:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=64, salt=None, info=b"godel-audit/audit-id-key/v1"
        ).derive(key.reveal())
        return AESSIV(derived)

    def analytic_id(self, user_id: str) -> str:
        mac = hmac.new(self._mac_key, _ANALYTIC_DOMAIN + user_id.encode(), hashlib.sha256)
        return "p1:" + mac.hexdigest()[:32]

    def audit_id(self, user_id: str, subject_key: SecretBytes | None = None) -> str:
        siv = self._siv if subject_key is None else self._siv_for(subject_key)
        return "s1:" + b64e(siv.encrypt(user_id.encode(), [_AUDIT_AD]))

    def reveal_audit_id(self, audit_id: str, subject_key: SecretBytes | None = None) -> str:
        """The user id inside an audit id; raises AuditKeyError with the wrong key."""
        if not audit_id.startswith("s1:"):
            raise AuditKeyError("unknown audit id version")
        siv = self._siv if subject_key is None else self._siv_for(subject_key)
        try:
            return siv.decrypt(b64d(audit_id[3:]), [_AUDIT_AD]).decode()
        except (InvalidTag, ValueError):
            raise AuditKeyError("audit id does not open with this key") from None
