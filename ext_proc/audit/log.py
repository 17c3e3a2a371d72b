"""The audit log: a non-blocking ``record()`` for the request path, a writer task behind it.

Flow: ``record(event)`` puts the event on a bounded queue (O(1), no I/O). The writer task takes
events in batches, seals and chains them (:class:`ChainWriter`) and hands the lines to every
sink, each in its own thread. A sink that fails is retried; a sink that still fails or stalls
gets its lines through the spill file, replayed in order when it recovers. When the queue is
full, ``record`` seals the event at once and appends its line to the spill file, so nothing is
dropped and the request never waits for the writer. ``close()`` drains the queue, writes the
final signed checkpoint and retries failed sinks for ``close_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client import Counter

from ext_proc.audit.chain import ChainWriter, prepare_dek
from ext_proc.audit.event import AuditEvent
from ext_proc.audit.format import Line
from ext_proc.audit.keys import AuditKeys, KeyWrapper, SubjectKeyStore, random_id
from ext_proc.audit.sinks import FileSink, Sink, SpillFile, StdoutSink
from ext_proc.config import AuditSettings
from ext_proc.errors import ConfigError
from ext_proc.metrics import Metrics

__all__ = ["AuditLog", "sinks_from_settings"]

log = logging.getLogger(__name__)

BATCH_MAX = 512


def sinks_from_settings(settings: AuditSettings) -> list[Sink]:
    sinks: list[Sink] = []
    if settings.stdout:
        sinks.append(StdoutSink())
    if settings.directory is not None:
        sinks.append(FileSink(settings.directory, fsync=settings.fsync))
    return sinks


def _records(lines: Sequence[Line]) -> int:
    return sum(1 for line in lines if line.kind == "rec")


class _SinkRunner:
    """One sink, its own thread (writes stay in order), and how far it has got."""

    def __init__(self, sink: Sink, written: Counter) -> None:
        self.sink = sink
        self.written = written
        self.name = sink.name
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"godel-audit-{sink.name}")
        self.delivered = -1  # highest sequence number the sink has taken; set in its thread
        self.inflight: asyncio.Future[None] | None = None
        self.failing = False
        self.next_try = 0.0

    def job(self, lines: Sequence[Line]) -> None:
        """Runs in the sink's thread. Writes segment by segment (a segment's lines go to one
        file), so after a failure ``delivered`` says exactly what the sink holds."""
        todo = [line for line in lines if line.seq > self.delivered]
        if todo and todo[0].seq != self.delivered + 1:
            raise OSError(f"gap before seq {todo[0].seq}")  # never expected: spill covers it
        chunk: list[Line] = []
        for line in todo:
            if line.kind == "key" and chunk:
                self._write(chunk)
                chunk = []
            chunk.append(line)
        if chunk:
            self._write(chunk)

    def _write(self, chunk: list[Line]) -> None:
        self.sink.write(chunk)
        self.delivered = chunk[-1].seq
        self.written.inc(_records(chunk))  # prometheus_client counters are thread-safe

    @property
    def stalled(self) -> bool:
        return self.inflight is not None and not self.inflight.done()


class _CheckpointFile:
    """Append-only copy of every signed checkpoint (O_APPEND; the store may be WORM)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, lines: Sequence[Line]) -> None:
        data = "".join(line.text + "\n" for line in lines).encode("ascii")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


class AuditLog:
    """The audit log of one process. Build it with the audit keys and a key wrapper."""

    def __init__(
        self,
        settings: AuditSettings,
        keys: AuditKeys,
        wrapper: KeyWrapper,
        metrics: Metrics,
        *,
        sinks: Sequence[Sink] | None = None,
        subject_store: SubjectKeyStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.spill_path is None:
            raise ConfigError("audit.spill_path: needed to run the audit log")
        self.settings = settings
        self.metrics = metrics
        self.log_id = random_id()
        self._wrapper = wrapper
        self._clock = clock
        self._chain = ChainWriter(
            self.log_id,
            keys,
            checkpoint_records=settings.checkpoint_records,
            checkpoint_seconds=settings.checkpoint_seconds,
            segment_records=settings.segment_records,
            segment_seconds=settings.segment_seconds,
            subject_store=subject_store,
            clock=clock,
        )
        chosen = list(sinks) if sinks is not None else sinks_from_settings(settings)
        if not chosen:
            raise ConfigError("audit: no sink configured (audit.stdout or audit.directory)")
        self._runners = [
            _SinkRunner(s, metrics.audit_records_written.labels(s.name)) for s in chosen
        ]
        self.spill = SpillFile(settings.spill_path)
        self._ckpt_file = (
            _CheckpointFile(settings.checkpoint_path) if settings.checkpoint_path else None
        )
        self._pending_ckpts: list[Line] = []
        self._queue: asyncio.Queue[AuditEvent | None] = asyncio.Queue(settings.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._next_dek_try = 0.0

    def __repr__(self) -> str:
        return f"AuditLog(log_id={self.log_id!r}, sinks={[r.name for r in self._runners]})"

    # -- request path --------------------------------------------------------------------------
    def record(self, event: AuditEvent) -> None:
        """Queue one decision; never blocks, never raises. ``allow`` only with include_allow."""
        if event.decision == "allow" and not self.settings.include_allow:
            return
        if not self._started or self._closed:
            self.metrics.audit_records_lost.inc()
            log.error("audit record after close or before start: lost (%s)", event.decision)
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._overflow(event)
        self.metrics.audit_queue_depth.set(self._queue.qsize())

    def _overflow(self, event: AuditEvent) -> None:
        # Seal now (CPU only) and append the ciphertext to the spill file; the writer replays
        # it to the sinks before anything chained after it.
        try:
            lines = self._chain.append(event)
            self.spill.append(lines)
        except Exception:
            self.metrics.audit_records_lost.inc()
            self.metrics.audit_errors.labels("spill").inc()
            log.exception("audit queue full and the spill file failed: record lost")
            return
        self.metrics.audit_records_spilled.inc(_records(lines))
        self.metrics.audit_spill_lines.set(self.spill.lines)
        self._pending_ckpts += [line for line in lines if line.kind == "ckpt"]

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Wrap the first two data keys (two key-provider calls), write the first key line and
        start the writer. Raises if the key provider fails: no audit, no start."""
        if self._started:
            return
        aside = await asyncio.to_thread(self.spill.recover)
        if aside is not None:
            log.warning("audit spill file of an earlier run kept as %s (not delivered)", aside)
        self._chain.next_dek = await prepare_dek(self._wrapper, self.log_id)
        first = self._chain.open_segment()
        self._chain.next_dek = await prepare_dek(self._wrapper, self.log_id)
        self._started = True
        await self._deliver(first)
        self._task = asyncio.create_task(self._run(), name="godel-audit-writer")

    async def flush(self) -> None:
        """Wait until every queued event is written or spilled, then retry failed sinks once."""
        if self._task is None or self._closed:
            return
        await self._queue.join()
        await self._deliver(self._chain.tick())

    async def close(self) -> None:
        """Drain, sign the final checkpoint, deliver; failed sinks are retried until
        ``close_timeout_seconds``, then what they miss stays in the spill file."""
        if not self._started or self._closed:
            return
        self._closed = True
        if self._task is not None:
            if not self._task.done():
                await self._queue.put(None)
            try:
                await self._task
            except Exception:
                log.exception("audit writer task failed; closing with what is sealed")
        await self._deliver(self._chain.close())
        deadline = time.monotonic() + self.settings.close_timeout_seconds
        while self._behind() and time.monotonic() < deadline:
            await asyncio.sleep(min(self.settings.retry_seconds, 0.5))
            for r in self._runners:
                r.next_try = 0.0
            await self._deliver([])
        if self._behind():
            log.error(
                "audit: %d lines not delivered to every sink; kept in %s",
                self.spill.lines,
                self.spill.path,
            )
            await asyncio.to_thread(self.spill.sync)
        for r in self._runners:
            if not r.stalled:
                try:
                    await asyncio.get_running_loop().run_in_executor(r.executor, r.sink.close)
                except OSError:
                    log.warning("audit sink %s failed to close", r.name)
            r.executor.shutdown(wait=False)
        self.metrics.audit_queue_depth.set(0)

    def stats(self) -> dict[str, int]:
        """Sequence number, records sealed and spill lines (tests, admin)."""
        return {
            "seq": self._chain.seq,
            "records": self._chain.records_total,
            "spill_lines": self.spill.lines,
        }

    # -- writer --------------------------------------------------------------------------------
    def _behind(self) -> bool:
        top = self._chain.seq
        return any(r.delivered < top for r in self._runners)

    async def _run(self) -> None:
        tick = min(1.0, self.settings.checkpoint_seconds, self.settings.retry_seconds * 5)
        stop = False
        while not stop:
            batch: list[AuditEvent] = []
            taken = 0
            try:
                first = await asyncio.wait_for(self._queue.get(), tick)
                taken = 1
                if first is None:
                    stop = True
                else:
                    batch.append(first)
                while not stop and len(batch) < BATCH_MAX:
                    nxt = self._queue.get_nowait()
                    taken += 1
                    if nxt is None:
                        stop = True
                    else:
                        batch.append(nxt)
            except (TimeoutError, asyncio.QueueEmpty):
                pass
            lines: list[Line] = []
            for event in batch:
                try:
                    lines += self._chain.append(event)
                except Exception:
                    self.metrics.audit_records_lost.inc()
                    self.metrics.audit_errors.labels("key").inc()
                    log.exception("audit: could not seal a record")
            lines += self._chain.tick()
            self.metrics.audit_queue_depth.set(self._queue.qsize())
            try:
                await self._deliver(lines)
                await self._prepare_next_dek()
            except Exception:  # keep the writer alive; count the batch as lost (alerts fire)
                self.metrics.audit_errors.labels("sink").inc()
                self.metrics.audit_records_lost.inc(_records(lines))
                log.exception("audit: delivery failed unexpectedly; batch counted as lost")
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    async def _prepare_next_dek(self) -> None:
        if self._chain.next_dek is not None or self._chain.closed:
            return
        now = time.monotonic()
        if now < self._next_dek_try:
            return
        try:
            self._chain.next_dek = await prepare_dek(self._wrapper, self.log_id)
        except Exception:
            self._next_dek_try = now + 5.0
            self.metrics.audit_errors.labels("key").inc()
            log.exception("audit: could not wrap the next data key; the current one stays")

    async def _deliver(self, lines: list[Line]) -> None:
        ckpts = self._pending_ckpts + [line for line in lines if line.kind == "ckpt"]
        self._pending_ckpts = []
        if ckpts and self._ckpt_file is not None:
            try:
                await asyncio.to_thread(self._ckpt_file.append, ckpts)
            except OSError:
                self.metrics.audit_errors.labels("checkpoint_store").inc()
                log.exception("audit: checkpoint store write failed")
        upto = lines[0].seq - 1 if lines else self._chain.seq
        spill = False
        for runner in self._runners:
            if not await self._send(runner, lines, upto):
                spill = True
        if spill and lines:
            try:
                await asyncio.to_thread(self.spill.append, lines)
                self.metrics.audit_records_spilled.inc(_records(lines))
            except OSError:
                self.metrics.audit_records_lost.inc(_records(lines))
                self.metrics.audit_errors.labels("spill").inc()
                log.exception("audit: a sink failed and the spill file failed too")
        if self.spill.lines and not any(r.stalled for r in self._runners):
            low = min(r.delivered for r in self._runners)
            await asyncio.to_thread(self.spill.clear_through, low)
        self.metrics.audit_spill_lines.set(self.spill.lines)

    async def _send(self, runner: _SinkRunner, lines: list[Line], upto: int) -> bool:
        """Give ``runner`` what it misses up to ``upto`` (from the spill file), then ``lines``."""
        if runner.stalled:
            return False
        now = time.monotonic()
        if runner.failing and now < runner.next_try:
            return False
        payload: list[Line] = []
        if runner.delivered < upto:
            payload = await asyncio.to_thread(self.spill.read, runner.delivered, upto)
        payload += lines
        if not payload:
            return True
        loop = asyncio.get_running_loop()
        attempts = 1 if runner.failing else self.settings.sink_retries + 1
        for attempt in range(attempts):
            runner.inflight = loop.run_in_executor(runner.executor, runner.job, payload)
            try:
                await asyncio.wait_for(
                    asyncio.shield(runner.inflight), self.settings.sink_timeout_seconds
                )
            except TimeoutError:
                self.metrics.audit_errors.labels("sink").inc()
                log.warning("audit sink %s stalled; spilling until it recovers", runner.name)
                runner.failing = True
                runner.next_try = time.monotonic() + self.settings.retry_seconds
                return False
            except Exception as exc:
                self.metrics.audit_errors.labels("sink").inc()
                log.warning("audit sink %s failed: %s", runner.name, type(exc).__name__)
                if attempt + 1 < attempts:
                    await asyncio.sleep(self.settings.retry_seconds * 2**attempt)
                continue
            if runner.failing:
                log.warning("audit sink %s recovered", runner.name)
            runner.failing = False
            return True
        runner.failing = True
        runner.next_try = time.monotonic() + self.settings.retry_seconds
        return False
