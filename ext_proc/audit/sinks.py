"""Where finished audit lines go: stdout, segment files, and the local spill file.

A sink's ``write`` blocks (it runs in the sink's own thread, never on the event loop), writes
every line or raises ``OSError``. Lines are already encrypted and chained, so a sink never sees
a plaintext record.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

from ext_proc.audit.format import Line

__all__ = ["FileSink", "Sink", "SpillFile", "StdoutSink"]


class Sink(Protocol):
    name: str  # a metric label: stdout, file, or another fixed word

    def write(self, lines: Sequence[Line]) -> None: ...

    def close(self) -> None: ...


class StdoutSink:
    """JSON lines on stdout (or another text stream) for a log shipper (ELK, Loki)."""

    name = "stdout"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def write(self, lines: Sequence[Line]) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write("".join(line.text + "\n" for line in lines))
        stream.flush()

    def close(self) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        stream.flush()


class FileSink:
    """One file per segment in ``directory``: ``audit-<log id>-<seq of its key line>.jsonl``.

    A key line (new data key) starts a new file, so each file holds its own wrapped data key
    and can be verified and decrypted alone. A failed write is cut back to the last whole line.
    """

    name = "file"

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = directory
        self.fsync = fsync
        self.current: Path | None = None
        self._fh: IO[bytes] | None = None

    def _open_for(self, line: Line) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        log = str(json.loads(line.text).get("log", "unknown"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.current = self.directory / f"audit-{log}-{line.seq:012d}.jsonl"
        self._fh = open(self.current, "ab")  # noqa: SIM115 - held open across writes

    def _handle(self) -> IO[bytes]:
        if self._fh is None:
            if self.current is None:
                raise OSError("audit file sink: no segment open (first line is not a key line)")
            self._fh = open(self.current, "ab")  # noqa: SIM115
        return self._fh

    def _write_run(self, run: list[Line]) -> None:
        fh = self._handle()
        start = fh.tell()
        try:
            fh.write("".join(line.text + "\n" for line in run).encode("ascii"))
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                fh.truncate(start)
            self._fh = None
            with contextlib.suppress(OSError):
                fh.close()
            raise

    def write(self, lines: Sequence[Line]) -> None:
        run: list[Line] = []
        for line in lines:
            if line.kind == "key":
                if run:
                    self._write_run(run)
                    run = []
                self._open_for(line)
            run.append(line)
        if run:
            self._write_run(run)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class SpillFile:
    """Lines that a sink could not take yet, kept on local disk until it recovers.

    Appends and reads are serialised by a lock (the event loop thread appends on queue
    overflow, the writer's worker thread appends on sink failure). Lines are ciphertext.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.lines = 0  # lines currently held
        self.max_seq = -1

    def recover(self) -> Path | None:
        """Move a spill file left by an earlier run aside (its lines belong to an older log)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        aside = self.path.with_name(f"{self.path.name}.{int(time.time())}.undelivered")
        os.replace(self.path, aside)
        return aside

    def append(self, lines: Sequence[Line]) -> None:
        if not lines:
            return
        data = "".join(line.text + "\n" for line in lines).encode("ascii")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError("short write to the audit spill file")
            finally:
                os.close(fd)
            self.lines += len(lines)
            self.max_seq = max(self.max_seq, *(line.seq for line in lines))

    def read(self, after: int, upto: int) -> list[Line]:
        """Spilled lines with ``after < seq <= upto``, in sequence order."""
        with self._lock:
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                return []
        found: dict[int, Line] = {}
        for text in raw.decode("ascii").splitlines():
            doc = json.loads(text)
            seq = int(doc["seq"])
            if after < seq <= upto:
                found[seq] = Line(seq, str(doc["t"]), text)
        return [found[s] for s in sorted(found)]

    def clear_through(self, seq: int) -> bool:
        """Delete the file if every line in it has ``seq`` at most ``seq`` (all delivered)."""
        with self._lock:
            if self.max_seq > seq:
                return False
            self._unlink()
            return True

    def clear(self) -> None:
        with self._lock:
            self._unlink()

    def _unlink(self) -> None:  # with the lock held
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.lines = 0
        self.max_seq = -1

    def sync(self) -> None:
        with self._lock:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
