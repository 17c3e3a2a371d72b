"""Turn audit events into sealed, chained log lines. Synchronous and free of I/O.

:class:`ChainWriter` owns the log's state: the sequence number, the hash of the last line, the
current data key (DEK) and the next one, already wrapped. Wrapping is the only slow (remote)
step, so it happens ahead of time in :func:`prepare_dek`; rotating then costs nothing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ext_proc.audit.event import AuditEvent
from ext_proc.audit.format import (
    DEK_ALG,
    GENESIS,
    VERSION,
    Line,
    Pseudonyms,
    b64e,
    checkpoint_message,
    dek_context,
    iso_time,
    record_aad,
    seal_line,
)
from ext_proc.audit.keys import (
    AuditKeyError,
    AuditKeys,
    KeyWrapper,
    SubjectKeyStore,
    public_key_fingerprint,
    random_id,
)

__all__ = ["ChainWriter", "PreparedDek", "prepare_dek"]

# AES-GCM with random 96-bit nonces stays within NIST's bound far below 2^32 messages per key.
HARD_RECORDS_PER_DEK = 2**30


@dataclass(frozen=True, slots=True)
class PreparedDek:
    """A fresh data key with its wrapped copy (what the key line stores)."""

    kid: str
    aead: AESGCM
    wrap_key_id: str
    blob: bytes

    def __repr__(self) -> str:
        return f"PreparedDek(kid={self.kid!r}, wrap_key_id={self.wrap_key_id!r})"


async def prepare_dek(wrapper: KeyWrapper, log_id: str) -> PreparedDek:
    """Generate a DEK and wrap it once (the one KMS call per segment)."""
    kid = random_id()
    key, wrap_key_id, blob = await wrapper.new_data_key(dek_context(log_id, kid))
    return PreparedDek(kid, AESGCM(key.reveal()), wrap_key_id, blob)


class ChainWriter:
    def __init__(
        self,
        log_id: str,
        keys: AuditKeys,
        *,
        checkpoint_records: int,
        checkpoint_seconds: float,
        segment_records: int,
        segment_seconds: float,
        subject_store: SubjectKeyStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.log = log_id
        self.seq = -1
        self.prev = GENESIS
        self.records_total = 0
        self.next_dek: PreparedDek | None = None
        self.checkpoint_records = checkpoint_records
        self.checkpoint_seconds = checkpoint_seconds
        self.segment_records_max = segment_records
        self.segment_seconds = segment_seconds
        self._subjects = subject_store
        self._clock = clock
        self._pseudo = Pseudonyms(keys.pseudonym, keys.subject)
        self._signer = keys.signer()
        self.pk = public_key_fingerprint(self._signer.public_key())
        self._dek: PreparedDek | None = None
        self._segment_start = -1
        self._segment_records = 0
        self._segment_opened = 0.0
        self._since_checkpoint = 0
        self._last_checkpoint = 0.0
        self.closed = False

    def __repr__(self) -> str:
        return f"ChainWriter(log={self.log!r}, seq={self.seq})"

    # -- state -------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._dek is not None

    @property
    def unsigned_records(self) -> int:
        """Records written since the last checkpoint."""
        return self._since_checkpoint

    def _next(self, fields: dict[str, Any], kind: str) -> Line:
        text, digest = seal_line(fields)
        self.prev = digest
        return Line(fields["seq"], kind, text)

    def _header(self, kind: str, now: float) -> dict[str, Any]:
        self.seq += 1
        return {"v": VERSION, "t": kind, "log": self.log, "seq": self.seq, "ts": iso_time(now)}

    # -- lines -------------------------------------------------------------------------------
    def open_segment(self) -> list[Line]:
        """Start a segment with the prepared DEK: one key line."""
        dek = self.next_dek
        if dek is None:
            raise AuditKeyError("no prepared data key to open a segment with")
        self.next_dek = None
        now = self._clock()
        fields = self._header("key", now)
        fields.update(
            kid=dek.kid, alg=DEK_ALG, kek=dek.wrap_key_id, wrapped=b64e(dek.blob), prev=self.prev
        )
        self._dek = dek
        self._segment_start = self.seq
        self._segment_records = 0
        self._segment_opened = now
        if self._last_checkpoint == 0.0:
            self._last_checkpoint = now
        return [self._next(fields, "key")]

    def _seal(self, event: AuditEvent) -> dict[str, Any]:
        analytic = self._pseudo.analytic_id(event.user_id)
        subject_key = None
        if self._subjects is not None:
            subject_key = self._subjects.key_for(analytic, create=True)
        return {
            "time": iso_time(event.time),
            "request_id": event.request_id,
            "decision": event.decision,
            "rules": list(event.rules),
            "categories": list(event.categories),
            "debt": float(event.debt),
            "route": event.route,
            "analytic_id": analytic,
            "audit_id": self._pseudo.audit_id(event.user_id, subject_key),
            "audit_key": "global" if subject_key is None else "subject",
        }

    def append(self, event: AuditEvent) -> list[Line]:
        """The lines for one event: maybe a segment rotation, the record, maybe a checkpoint."""
        if self._dek is None or self.closed:
            raise AuditKeyError("the audit chain is not open")
        lines: list[Line] = []
        if self._segment_records >= self.segment_records_max and self.next_dek is not None:
            lines += self.rotate()
        if self._segment_records >= HARD_RECORDS_PER_DEK:
            raise AuditKeyError("data key exhausted and no new data key could be prepared")
        dek = self._dek
        body = json.dumps(self._seal(event), separators=(",", ":")).encode()
        now = self._clock()
        fields = self._header("rec", now)
        fields["kid"] = dek.kid
        nonce = os.urandom(12)
        aad = record_aad(self.log, self.seq, fields["ts"], dek.kid)
        fields["ct"] = b64e(nonce + dek.aead.encrypt(nonce, body, aad))
        fields["prev"] = self.prev
        lines.append(self._next(fields, "rec"))
        self.records_total += 1
        self._segment_records += 1
        self._since_checkpoint += 1
        if self._since_checkpoint >= self.checkpoint_records:
            lines.append(self.checkpoint("periodic"))
        return lines

    def checkpoint(self, kind: str) -> Line:
        """A signed checkpoint of the chain head (the hash of the line before it)."""
        now = self._clock()
        fields = self._header("ckpt", now)
        fields.update(
            prev=self.prev,
            seg=self._segment_start,
            kind=kind,
            records=self.records_total,
            pk=self.pk,
        )
        fields["sig"] = b64e(self._signer.sign(checkpoint_message(fields)))
        self._since_checkpoint = 0
        self._last_checkpoint = now
        return self._next(fields, "ckpt")

    def rotate(self) -> list[Line]:
        """Close the segment (signed) and open the next with the prepared DEK."""
        return [self.checkpoint("segment_end"), *self.open_segment()]

    def tick(self) -> list[Line]:
        """Time-driven lines: rotate an old segment, or checkpoint unsigned records."""
        if self._dek is None or self.closed:
            return []
        now = self._clock()
        if (
            self._segment_records
            and now - self._segment_opened >= self.segment_seconds
            and self.next_dek is not None
        ):
            return self.rotate()
        if self._since_checkpoint and now - self._last_checkpoint >= self.checkpoint_seconds:
            return [self.checkpoint("periodic")]
        return []

    def close(self) -> list[Line]:
        """The final signed checkpoint; nothing may follow it."""
        if self._dek is None or self.closed:
            return []
        self.closed = True
        return [self.checkpoint("close")]
