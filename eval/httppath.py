"""Evasions that exist only on the HTTP path, measured through the server's own objects.

``godel scan`` sees one line of text; a compressed request body or a payload split across the
events of a streamed response cannot be written as such a line. These variants therefore go
through what ``godel serve`` runs for each ext_proc message, in this process: the
:class:`~ext_proc.servicer.ExtProcServicer` built on the :class:`~ext_proc.pipeline.Pipeline` of
:func:`ext_proc.server.build_pipeline`, fed the same protobuf messages Envoy sends. No Envoy and
no sockets: thousands of samples through a real Envoy per sample would take far too long. The
end-to-end tests (tests/e2e) send the same shapes over HTTP through a real Envoy.

* ``gzip``: the line, gzip-compressed, as a request body with ``content-encoding: gzip`` (request
  headers message, then the body message). The categories are those of the findings the
  pipeline judged (``Outcome.inspection.verdict.judged``), the same findings ``godel scan``
  reports for a plain line.
* ``sse-split``: the line as the text of an OpenAI-style ``chat.completion.chunk`` stream
  (``text/event-stream`` response; for a JSON chat carrier, its last message's content, as the
  chunk events are the envelope there), cut at 1 to 3 seeded points *inside the payload* into 2
  to 4 content events, followed by a finishing event and ``[DONE]``. The stream is fed as response
  body chunks: one per event, plus one extra cut at a seeded byte offset so chunk boundaries do
  not always align with events. ``sse-split-plain`` is the same with plain ``data:`` events (no
  chat JSON), which is how non-OpenAI streams look to the redactor.

A streamed response is never refused, only rewritten: the stream scanner
(:class:`~ext_proc.stream.SseRedactor`) counts the findings it redacts in what it releases. For
the stream columns a category counts as found when a finding of that category is among those
counted ones. The harness reads their categories from the redactions the redactor counts
(:class:`RecordingSse`); the servicer builds the redactor, the harness only swaps in that
recording subclass with the same arguments. Entropy findings are ``log`` in the
eval policy, so a stream never redacts them and they never count there.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from corpus import PAYLOAD, Sample, with_payload
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from ext_proc.config import Settings, load_config
from ext_proc.metrics import Metrics
from ext_proc.pipeline import Outcome, Pipeline, RequestContext
from ext_proc.server import build_pipeline
from ext_proc.servicer import ExtProcServicer, _Stream
from ext_proc.stream import SseRedactor, TextSpan
from ext_proc.traps import ENTROPY_CATEGORY

__all__ = [
    "HTTP_EVASIONS",
    "HttpCase",
    "HttpResult",
    "RecordingPipeline",
    "RecordingSse",
    "build_cases",
    "client_text",
    "run_cases",
    "split_points",
    "stream_text",
]

GZIP, SSE_CHAT, SSE_PLAIN = "gzip", "sse-split", "sse-split-plain"
# name -> what is done (for the report and docs/detection.md).
HTTP_EVASIONS: tuple[tuple[str, str], ...] = (
    (GZIP, "request body gzip-compressed, sent with content-encoding: gzip"),
    (SSE_CHAT, "payload split inside across 2-4 chat.completion.chunk events of a response"),
    (SSE_PLAIN, "payload split inside across 2-4 plain data: events of a response"),
)
PATH = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class HttpCase:
    """One evaded sample and the ext_proc body chunks that carry it."""

    sample: Sample
    chunks: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class HttpResult:
    """Categories found (entropy apart), whether an entropy finding was judged, and what the
    client would have read (for a stream)."""

    categories: frozenset[str]
    entropy: bool
    text: str = ""


# -- building the variants ------------------------------------------------------------------------
def stream_text(sample: Sample) -> tuple[str, int, int]:
    """The text a response streams for ``sample`` and the payload's character span in it.

    A line is streamed as it is. A JSON chat carrier is a request envelope; in a response the
    chunk events are the envelope, so its last message's content is streamed instead.
    """
    before, sep, after = sample.carrier.partition(PAYLOAD)
    if not sep or PAYLOAD in after:
        raise ValueError(f"{sample.id}: the carrier must hold the payload marker exactly once")
    if sample.json:
        content = str(json.loads(sample.text)["messages"][-1]["content"])
        start = content.find(sample.payload)
        if start < 0:
            raise ValueError(f"{sample.id}: the payload is not in the last message")
        return content, start, start + len(sample.payload)
    text = sample.text
    return text, len(before), len(text) - len(after)


def split_points(rng: random.Random, start: int, end: int) -> list[int]:
    """1 to 3 distinct cut offsets, each strictly inside ``[start, end)``."""
    inside = range(start + 1, end)
    if not inside:
        return []
    return sorted(rng.sample(inside, min(rng.randint(1, 3), len(inside))))


def _chat_event(delta: dict[str, str], finish: str | None = None) -> bytes:
    doc = {
        "id": "chatcmpl-eval",
        "object": "chat.completion.chunk",
        "model": "eval",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(doc, ensure_ascii=False).encode() + b"\n\n"


def _plain_event(text: str) -> bytes:
    return ("\n".join(f"data: {line}" for line in text.split("\n")) + "\n\n").encode()


def sse_events(pieces: Sequence[str], chat: bool) -> list[bytes]:
    if chat:
        return [
            _chat_event({"role": "assistant", "content": ""}),
            *(_chat_event({"content": p}) for p in pieces),
            _chat_event({}, "stop"),
            b"data: [DONE]\n\n",
        ]
    return [*(_plain_event(p) for p in pieces), b"data: [DONE]\n\n"]


def _chunks(rng: random.Random, events: Sequence[bytes]) -> tuple[bytes, ...]:
    """One chunk per event, with one extra cut at a random byte offset of the stream."""
    stream = b"".join(events)
    cuts = {0, len(stream)}
    pos = 0
    for ev in events:
        pos += len(ev)
        cuts.add(pos)
    cuts.add(rng.randrange(1, len(stream)))
    bounds = sorted(cuts)
    return tuple(stream[a:b] for a, b in itertools.pairwise(bounds))


def build_cases(samples: Sequence[Sample], seed: int) -> list[HttpCase]:
    """The gzip and SSE variants of every positive sample, deterministically for ``seed``."""
    rng = random.Random(seed ^ 0x477)
    cases: list[HttpCase] = []
    for sample in samples:
        if sample.label == "benign" or not sample.payload:
            continue
        body = gzip.compress(sample.text.encode("utf-8", "surrogatepass"), mtime=0)
        cases.append(HttpCase(with_payload(sample, sample.payload, GZIP), (body,)))
    for name, chat in ((SSE_CHAT, True), (SSE_PLAIN, False)):
        for sample in samples:
            if sample.label == "benign" or not sample.payload:
                continue
            text, start, end = stream_text(sample)
            cuts = split_points(rng, start, end)
            if not cuts:
                continue
            bounds = [0, *cuts, len(text)]
            pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
            chunks = _chunks(rng, sse_events(pieces, chat))
            cases.append(HttpCase(with_payload(sample, sample.payload, name), chunks))
    return cases


# -- running them ---------------------------------------------------------------------------------
class RecordingPipeline(Pipeline):
    """The server's pipeline, remembering its last request outcome (the servicer turns it into
    a reply that does not name every finding's category)."""

    last: Outcome | None = None

    async def decide(self, ctx: RequestContext, body: bytes | None) -> Outcome:
        outcome = await super().decide(ctx, body)
        self.last = outcome
        return outcome


class RecordingSse(SseRedactor):
    """The servicer's stream redactor, also collecting the categories of the findings it counts
    (:meth:`SseRedactor._count` receives every redaction it sends downstream)."""

    categories: set[str]

    @classmethod
    def replacing(cls, sse: SseRedactor) -> RecordingSse:
        new = cls(sse.redact, hold=sse.hold, context=sse.context)
        new.categories = set()
        return new

    def _count(self, spans: Sequence[TextSpan]) -> None:
        super()._count(spans)
        self.categories.update(c for sp in spans for c in sp.categories)


def _headers(items: dict[str, str]) -> pb.HttpHeaders:
    return pb.HttpHeaders(
        headers=base_pb2.HeaderMap(
            headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in items.items()]
        )
    )


def client_text(stream: bytes) -> str:
    """What a client reads from an SSE stream: chat delta contents, else ``data:`` payloads."""
    parts: list[str] = []
    for block in stream.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = block.decode("utf-8", "replace").split("\n")
        data = "\n".join(ln[5:].removeprefix(" ") for ln in lines if ln.startswith("data:"))
        if not data or data.strip() == "[DONE]":
            continue
        try:
            doc = json.loads(data)
        except ValueError:
            parts.append(data)
            continue
        if isinstance(doc, dict) and isinstance(doc.get("choices"), list):
            content = (doc["choices"][0].get("delta") or {}).get("content")
            parts.append(content if isinstance(content, str) else "")
        else:
            parts.append(data)
    return "".join(parts)


class _Runner:
    def __init__(self, settings: Settings) -> None:
        metrics = Metrics()
        built = build_pipeline(settings, metrics)
        self.pipeline = RecordingPipeline(
            settings, built.traps, built.limiter, metrics, built.redactor
        )
        self.servicer = ExtProcServicer(self.pipeline, settings.identity, metrics)
        self.identity = settings.identity.header

    def _request_headers(self, extra: dict[str, str]) -> pb.ProcessingRequest:
        headers = {
            ":method": "POST",
            ":path": PATH,
            "x-request-id": uuid.uuid4().hex,
            self.identity: f"eval-{uuid.uuid4().hex}",  # one caller per sample: no throttling
            **extra,
        }
        return pb.ProcessingRequest(request_headers=_headers(headers))

    async def request(self, body: bytes) -> HttpResult:
        st = _Stream()
        headers = {
            "content-type": "application/json",
            "content-encoding": "gzip",
            "content-length": str(len(body)),
        }
        await self.servicer._handle(self._request_headers(headers), st)
        self.pipeline.last = None
        msg = pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=True))
        await self.servicer._handle(msg, st)
        outcome = self.pipeline.last
        if outcome is None:
            raise RuntimeError("the servicer did not run the pipeline for a request body")
        cats = {j.finding.category for j in outcome.inspection.verdict.judged}
        return HttpResult(frozenset(cats - {ENTROPY_CATEGORY}), ENTROPY_CATEGORY in cats)

    async def stream(self, chunks: Sequence[bytes]) -> HttpResult:
        st = _Stream()
        await self.servicer._handle(self._request_headers({}), st)
        head = _headers({":status": "200", "content-type": "text/event-stream"})
        reply = await self.servicer._handle(pb.ProcessingRequest(response_headers=head), st)
        if not reply.HasField("mode_override") or st.sse is None:
            raise RuntimeError("the servicer did not stream a text/event-stream response")
        sse = st.sse = RecordingSse.replacing(st.sse)
        out: list[bytes] = []
        for i, chunk in enumerate(chunks):
            body = pb.HttpBody(body=chunk, end_of_stream=i == len(chunks) - 1)
            reply = await self.servicer._handle(pb.ProcessingRequest(response_body=body), st)
            common = reply.response_body.response
            out.append(common.body_mutation.body if common.HasField("body_mutation") else chunk)
        cats = sse.categories - {ENTROPY_CATEGORY}
        return HttpResult(frozenset(cats), False, client_text(b"".join(out)))

    async def run(self, cases: Sequence[HttpCase]) -> dict[str, HttpResult]:
        results: dict[str, HttpResult] = {}
        for case in cases:
            if case.sample.evasion == GZIP:
                results[case.sample.id] = await self.request(case.chunks[0])
            else:
                results[case.sample.id] = await self.stream(case.chunks)
        return results


def run_cases(cases: Sequence[HttpCase], policy: Path) -> dict[str, HttpResult]:
    """Run every case through a fresh in-process servicer built from ``policy``."""
    return asyncio.run(_Runner(load_config(policy)).run(cases))
