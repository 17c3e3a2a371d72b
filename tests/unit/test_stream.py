"""SseRedactor: secrets split across chunks and events are redacted before any part leaves."""

from __future__ import annotations

import json

import pytest

from ext_proc.pipeline import Pipeline
from ext_proc.stream import SseRedactor
from tests.conftest import FAKE_AWS_KEY


def event(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    doc = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(doc)}\n\n".encode()


def run(redactor: SseRedactor, stream: bytes, chunk: int) -> bytes:
    out = b""
    for i in range(0, len(stream), chunk):
        out += redactor.feed(stream[i : i + chunk], i + chunk >= len(stream))
    return out


def text_of(out: bytes) -> str:
    lines = [ln[6:] for ln in out.decode().split("\n") if ln.startswith("data: {")]
    return "".join(json.loads(x)["choices"][0]["delta"].get("content", "") for x in lines)


REPLY = f"the key is {FAKE_AWS_KEY}, keep it safe. Mail ops@bank.example if lost."
EXPECTED = "the key is [REDACTED:aws-access-key], keep it safe. Mail [REDACTED:pii-email] if lost."


@pytest.mark.parametrize("piece", [1, 3, 7, 20])
@pytest.mark.parametrize("chunk", [1, 5, 64, 10_000])
def test_split_anywhere_is_still_redacted(pipeline: Pipeline, piece: int, chunk: int) -> None:
    stream = b"".join(event(REPLY[i : i + piece]) for i in range(0, len(REPLY), piece))
    stream += event(None, "stop") + b"data: [DONE]\n\n"
    out = run(SseRedactor(pipeline.redact_text, hold=32), stream, chunk)
    assert text_of(out) == EXPECTED
    assert FAKE_AWS_KEY[:6] not in out.decode()
    assert out.endswith(b"data: [DONE]\n\n")
    # Every emitted event is a complete, valid SSE event.
    for block in out.split(b"\n\n")[:-1]:
        assert block.startswith(b"data: ")


def test_stream_ending_without_done_flushes_held_text(pipeline: Pipeline) -> None:
    stream = event("hello ") + event("world, no secrets here at all")
    out = run(SseRedactor(pipeline.redact_text, hold=64), stream, 10_000)
    assert text_of(out) == "hello world, no secrets here at all"


def test_plain_data_events_are_scanned(pipeline: Pipeline) -> None:
    stream = f"event: log\ndata: token {FAKE_AWS_KEY}\n\n".encode() + b": comment\n\n"
    redactor = SseRedactor(pipeline.redact_text)
    out = run(redactor, stream, 9)
    assert FAKE_AWS_KEY.encode() not in out
    assert b"[REDACTED:aws-access-key]" in out
    assert redactor.findings == 1


def test_clean_stream_passes_text_unchanged(pipeline: Pipeline) -> None:
    words = ["The", " quarterly", " report", " is", " ready."]
    stream = b"".join(event(w) for w in words) + b"data: [DONE]\n\n"
    redactor = SseRedactor(pipeline.redact_text, hold=8)
    assert text_of(run(redactor, stream, 13)) == "The quarterly report is ready."
    assert redactor.findings == 0
