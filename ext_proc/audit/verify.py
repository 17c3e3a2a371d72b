"""Check an audit log: line hashes, the chain, sequence numbers, signed checkpoints, and the
copy of the checkpoints kept apart. Needs no secret: only the Ed25519 public key.

The first problem found is reported with its file, line number and sequence number; checking
stops there (everything after a broken link is unanchored).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ext_proc.audit.format import GENESIS, VERSION, b64d, checkpoint_message, split_line
from ext_proc.audit.keys import public_key_fingerprint

__all__ = ["Problem", "VerifyReport", "expand_paths", "verify_log"]

_FIELDS: dict[str, dict[str, type]] = {
    "key": {"kid": str, "alg": str, "kek": str, "wrapped": str},
    "rec": {"kid": str, "ct": str},
    "ckpt": {"seg": int, "kind": str, "records": int, "pk": str, "sig": str},
}
_COMMON: dict[str, type] = {"v": int, "t": str, "log": str, "seq": int, "ts": str, "prev": str}
CLOSING = ("segment_end", "close")


@dataclass(frozen=True, slots=True)
class Problem:
    file: Path
    line: int  # 1-based line number in ``file``
    seq: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"{where}{seq}: {self.reason}"


@dataclass(slots=True)
class VerifyReport:
    problem: Problem | None = None
    log_id: str | None = None
    lines: int = 0
    records: int = 0
    checkpoints: int = 0
    segments: int = 0
    last_signed_seq: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    signatures_checked: bool = False
    store_checkpoints: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given; a directory stands for its audit-*.jsonl files in name order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.glob("audit-*.jsonl")))
        else:
            out.append(p)
    return out


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _parse(raw: bytes) -> tuple[dict[str, Any], str]:
    split = split_line(raw)
    if split is None:
        raise _Bad("malformed line: no line hash at its end (edited or not an audit line)")
    computed, stated = split
    if computed != stated:
        raise _Bad("line hash does not match the line's content: the line was edited")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise _Bad("malformed JSON") from None
    if not isinstance(doc, dict):
        raise _Bad("not a JSON object")
    for name, typ in _COMMON.items():
        if not isinstance(doc.get(name), typ):
            raise _Bad(f"field {name!r} missing or not a {typ.__name__}")
    if doc["v"] != VERSION:
        raise _Bad(f"unknown format version {doc['v']}")
    extra = _FIELDS.get(doc["t"])
    if extra is None:
        raise _Bad(f"unknown line type {doc['t']!r}")
    for name, typ in extra.items():
        if not isinstance(doc.get(name), typ):
            raise _Bad(f"field {name!r} missing or not a {typ.__name__}")
    return doc, computed


def _check_signature(doc: dict[str, Any], key: Ed25519PublicKey | None) -> None:
    if key is None:
        return
    fingerprint = public_key_fingerprint(key)
    try:
        key.verify(b64d(doc["sig"]), checkpoint_message(doc))
    except (InvalidSignature, ValueError):
        if doc["pk"] != fingerprint:
            raise _Bad(
                f"checkpoint signature does not verify: it names signing key {doc['pk']}, the "
                f"given public key is {fingerprint}"
            ) from None
        raise _Bad("checkpoint signature does not verify (forged or edited checkpoint)") from None


def verify_log(
    paths: list[Path],
    *,
    public_key: Ed25519PublicKey | None = None,
    checkpoints: Path | None = None,
    allow_open: bool = False,
    partial: bool = False,
) -> VerifyReport:
    """Verify ``paths`` as consecutive parts of one log (a stdout capture, or segment files).

    ``allow_open``: the last file may end without a closing checkpoint (a log still being
    written). ``partial``: the files may be followed by later segments (checkpoints kept apart
    beyond their end are then noted, not an error).
    """
    report = VerifyReport(signatures_checked=public_key is not None)
    files = expand_paths(paths)
    if not files:
        report.problem = Problem(Path("-"), 0, None, "no audit files given")
        return report
    where: dict[int, tuple[Path, int, str]] = {}  # seq -> (file, line, line hash)
    prev_h: str | None = None
    expect: int | None = None
    segment_kid: str | None = None
    segment_start: int | None = None
    records_from_genesis: int | None = None
    closed_at: tuple[Path, int] | None = None
    last: tuple[Path, int, int] | None = None

    for index, path in enumerate(files):
        is_last_file = index == len(files) - 1
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.problem = Problem(path, 0, None, f"cannot read: {exc.strerror}")
            return report
        if not data:
            report.problem = Problem(path, 1, None, "empty file (truncated)")
            return report
        raw_lines = data.split(b"\n")
        complete = data.endswith(b"\n")
        if complete:
            raw_lines.pop()
        doc: dict[str, Any] = {}
        for number, raw in enumerate(raw_lines, start=1):
            seq_hint: int | None = expect
            try:
                if closed_at is not None:
                    raise _Bad(
                        f"line after the closing checkpoint at {closed_at[0]}:{closed_at[1]}"
                    )
                if number == len(raw_lines) and not complete:
                    raise _Bad("last line is incomplete: the file was truncated mid-line")
                doc, digest = _parse(raw)
                seq = doc["seq"]
                seq_hint = seq
                if report.log_id is None:
                    report.log_id = doc["log"]
                    report.first_seq = seq
                    if seq == 0:
                        if doc["prev"] != GENESIS:
                            raise _Bad("the first line of the log must have prev = 64 zeros")
                        records_from_genesis = 0
                    else:
                        report.notes.append(
                            f"log starts at seq {seq}: earlier segments not given; the chain "
                            "is anchored at this line's prev"
                        )
                elif doc["log"] != report.log_id:
                    raise _Bad(f"line of another log ({doc['log']}, expected {report.log_id})")
                if expect is not None and seq != expect:
                    raise _Bad(
                        f"sequence number {seq} where {expect} was expected: a line was "
                        "removed, inserted or moved"
                    )
                if prev_h is not None and doc["prev"] != prev_h:
                    raise _Bad(
                        "prev does not match the hash of the line before: a line was removed, "
                        "inserted, moved or changed"
                    )
                if number == 1 and doc["t"] != "key":
                    raise _Bad("a segment file must start with a key line")
                kind = doc["t"]
                if kind == "key":
                    segment_kid = doc["kid"]
                    segment_start = seq
                    report.segments += 1
                elif kind == "rec":
                    if doc["kid"] != segment_kid:
                        raise _Bad("record names a data key other than its segment's")
                    report.records += 1
                    if records_from_genesis is not None:
                        records_from_genesis += 1
                else:
                    if segment_start is not None and doc["seg"] != segment_start:
                        raise _Bad(f"checkpoint names segment {doc['seg']}, not {segment_start}")
                    if records_from_genesis is not None and doc["records"] != records_from_genesis:
                        raise _Bad(
                            f"checkpoint counts {doc['records']} records, the log has "
                            f"{records_from_genesis}: records were removed or inserted"
                        )
                    _check_signature(doc, public_key)
                    report.checkpoints += 1
                    report.last_signed_seq = seq
                    if doc["kind"] == "close":
                        closed_at = (path, number)
                    elif doc["kind"] not in (*CLOSING, "periodic"):
                        raise _Bad(f"unknown checkpoint kind {doc['kind']!r}")
                where[seq] = (path, number, digest)
                prev_h, expect = digest, seq + 1
                last = (path, number, seq)
                report.lines += 1
                report.last_seq = seq
            except _Bad as bad:
                report.problem = Problem(path, number, seq_hint, bad.reason)
                return report
        # The file ends: it must end with a closing checkpoint (a segment end or the close).
        if doc.get("t") != "ckpt" or doc.get("kind") not in CLOSING:
            if not (allow_open and is_last_file):
                signed = report.last_signed_seq
                since = f"seq {signed}" if signed is not None else "the start"
                report.problem = Problem(
                    path,
                    len(raw_lines),
                    doc.get("seq"),
                    f"file ends without a closing checkpoint: the lines after {since} are not "
                    "signed (truncated, or the writer did not close)",
                )
                return report
            report.notes.append(
                f"{path}: open log, lines after seq {report.last_signed_seq} are not yet signed"
            )
        if doc.get("kind") == "segment_end" and is_last_file:
            if not partial:
                report.problem = Problem(
                    path,
                    len(raw_lines),
                    doc.get("seq"),
                    "the log ends with a segment end, not its closing checkpoint: later "
                    "segments are missing (use --partial to check some segments only)",
                )
                return report
            report.notes.append("the last file ends a segment; later segments were not given")

    if checkpoints is not None:
        problem = _check_store(checkpoints, report, where, public_key, partial, last)
        if problem is not None:
            report.problem = problem
    return report


def _check_store(
    store: Path,
    report: VerifyReport,
    where: dict[int, tuple[Path, int, str]],
    key: Ed25519PublicKey | None,
    partial: bool,
    last: tuple[Path, int, int] | None,
) -> Problem | None:
    try:
        data = store.read_bytes()
    except OSError as exc:
        return Problem(store, 0, None, f"cannot read the checkpoint store: {exc.strerror}")
    first_seq = report.first_seq if report.first_seq is not None else 0
    first = where.get(first_seq)
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            doc, digest = _parse(raw)
            if doc["t"] != "ckpt":
                raise _Bad("not a checkpoint line")
            _check_signature(doc, key)
        except _Bad as bad:
            return Problem(store, number, None, f"checkpoint store: {bad.reason}")
        if doc["log"] != report.log_id:
            continue
        report.store_checkpoints += 1
        seq = doc["seq"]
        if seq < first_seq:
            continue
        found = where.get(seq)
        if found is None:
            if partial:
                report.notes.append(f"checkpoint store: seq {seq} is beyond the files given")
                continue
            assert last is not None
            return Problem(
                last[0],
                last[1],
                last[2],
                f"the checkpoint store holds a checkpoint at seq {seq}, beyond the end of the "
                "log: records were truncated or a later segment is missing",
            )
        if found[2] != digest:
            return Problem(
                found[0],
                found[1],
                seq,
                "line differs from the checkpoint kept in the checkpoint store: the log was "
                "rewritten",
            )
    if report.store_checkpoints == 0 and report.checkpoints > 0:
        # The log has signed checkpoints, so the store should have them: the log was replaced
        # by another one, or the store belongs to another deployment.
        return Problem(
            first[0] if first else store,
            first[1] if first else 0,
            report.first_seq,
            f"the checkpoint store has no checkpoint of log {report.log_id}: the log was "
            "replaced, or the store is not this log's",
        )
    return None
