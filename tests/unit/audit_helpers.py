"""Shared helpers of the audit tests: local keys in files, a log written to disk, and the
attacker's tools (edit a line, then re-seal the chain from there on)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ext_proc.audit import AuditEvent, AuditKeys, AuditLog, LocalKeyWrapper, Sink
from ext_proc.audit.format import Line, seal_line
from ext_proc.config import AuditSettings
from ext_proc.keys import SecretBytes
from ext_proc.metrics import Metrics

USER = "alice@example.com"
SECRET_VALUE = "AKIAIOSFODNN7EXAMPLE"
RAW_BODY = f'{{"messages":[{{"content":"my key is {SECRET_VALUE}"}}]}}'


@dataclass
class KeySet:
    keys: AuditKeys
    kek: SecretBytes
    wrapper: LocalKeyWrapper
    dir: Path

    @property
    def pseudonym_file(self) -> Path:
        return self.dir / "pseudonym.key"

    @property
    def subject_file(self) -> Path:
        return self.dir / "subject.key"

    @property
    def signing_file(self) -> Path:
        return self.dir / "signing.key"

    @property
    def kek_file(self) -> Path:
        return self.dir / "kek.key"

    @property
    def public_file(self) -> Path:
        return self.dir / "audit.pub"

    def all_secret_bytes(self) -> list[bytes]:
        k = self.keys
        return [k.pseudonym.reveal(), k.subject.reveal(), k.signing.reveal(), self.kek.reveal()]


def make_keys(tmp: Path) -> KeySet:
    kdir = tmp / "keys"
    kdir.mkdir()
    raw = {name: os.urandom(32) for name in ("pseudonym", "subject", "signing", "kek")}
    for name, value in raw.items():
        (kdir / f"{name}.key").write_text(value.hex())
    keys = AuditKeys(
        SecretBytes(raw["pseudonym"]), SecretBytes(raw["subject"]), SecretBytes(raw["signing"])
    )
    kek = SecretBytes(raw["kek"])
    ks = KeySet(keys, kek, LocalKeyWrapper(kek), kdir)
    from ext_proc.audit import public_key_pem

    ks.public_file.write_bytes(public_key_pem(keys))
    return ks


def settings(tmp: Path, **over: Any) -> AuditSettings:
    base: dict[str, Any] = {
        "directory": tmp / "log",
        "spill_path": tmp / "spill" / "spill.jsonl",
        "checkpoint_path": tmp / "store" / "checkpoints.jsonl",
        "checkpoint_records": 3,
        "fsync": False,
        "retry_seconds": 0.02,
        "sink_timeout_seconds": 0.5,
        "close_timeout_seconds": 2.0,
    }
    base.update(over)
    return AuditSettings(**base)


def event(i: int, user: str = USER, decision: str = "block") -> AuditEvent:
    return AuditEvent(
        request_id=f"req-{i}",
        user_id=user,
        decision=decision,
        rules=("aws-access-key",),
        categories=("secret",),
        debt=4.0 + i,
        route="chat",
        time=1_700_000_000.0 + i,
    )


def write_log(
    tmp: Path,
    ks: KeySet,
    n: int = 7,
    *,
    sinks: Sequence[Sink] | None = None,
    metrics: Metrics | None = None,
    users: Sequence[str] = (USER,),
    **over: Any,
) -> AuditLog:
    """Write ``n`` block records (users in turn) and close the log."""

    async def run() -> AuditLog:
        log = AuditLog(
            settings(tmp, **over), ks.keys, ks.wrapper, metrics or Metrics(), sinks=sinks
        )
        await log.start()
        for i in range(n):
            log.record(event(i, users[i % len(users)]))
        await log.close()
        return log

    return asyncio.run(run())


def log_files(tmp: Path) -> list[Path]:
    return sorted((tmp / "log").glob("audit-*.jsonl"))


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def reseal(lines: list[str], start: int) -> list[str]:
    """What an attacker without the signing key can do: recompute ``prev`` and ``h`` of every
    line from index ``start`` on, so the chain is consistent again."""
    out = list(lines)
    prev = json.loads(out[start - 1])["h"] if start > 0 else "0" * 64
    for i in range(start, len(out)):
        doc = json.loads(out[i])
        doc.pop("h")
        doc["prev"] = prev
        out[i], prev = seal_line(doc)
    return out


def field_of(line: str, name: str) -> Any:
    return json.loads(line)[name]


class MemorySink:
    """Collects lines; can be made to fail or to stall."""

    name = "file"

    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.fail_next = 0  # this many writes raise OSError
        self.fail_always = False
        self.gate: threading.Event | None = None  # while set and not released, writes block
        self.calls = 0

    def write(self, lines: Sequence[Line]) -> None:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_always or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            raise OSError(28, "No space left on device")
        self.lines.extend(lines)

    def close(self) -> None:
        pass

    def dump(self, path: Path) -> Path:
        path.write_text("".join(line.text + "\n" for line in self.lines))
        return path
