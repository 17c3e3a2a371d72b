"""SseRedactor: secrets split across chunks and events are redacted before any part leaves."""

from __future__ import annotations

import json
import random
import string

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


# -- leaks found by the evaluation (eval/httppath.py, sse-split and sse-split-plain) -------------
def plain(data: str) -> bytes:
    return "".join(f"data: {line}\n" for line in data.split("\n")).encode() + b"\n"


def client_text(out: bytes) -> str:
    """What a client reads: chat delta contents, else the data payloads, concatenated."""
    parts: list[str] = []
    for block in out.decode().split("\n\n")[:-1]:
        data = "\n".join(ln[6:] for ln in block.split("\n") if ln.startswith("data: "))
        if data.startswith("{"):
            parts.append(json.loads(data)["choices"][0]["delta"].get("content", ""))
        elif data != "[DONE]":
            parts.append(data)
    return "".join(parts)


# A fabricated 191-character Atlassian token (ATATT3 + 185 random characters): longer than the
# old 128-character hold.
ATLASSIAN = (
    "ATATT3PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA-2O76UMFxFkM-R5Kjp1vRt_1fjORS-6ilI8ihN5KXSc7"
    "Tvo-hBKqFYY-kv5ZJr3J1TWDtkwtDDb_xHKas1VOqg6YYZYn9ZhyiA4uoRgnatmUdjAWtGSU8po_799NksnRH9ucAU"
    "sdMlHUvTCQCy"
)
WEBHOOK = (
    "https://discord.com/api/webhooks/695860515039528947/"
    "W2vvDVXt85YPpC2c4n1jKZ5OEAceE_qaYODmjMRv52qHmK7cUal8kjMgUWV2myydV0Vq"
)


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_secret_split_across_plain_data_events(pipeline: Pipeline, chunk: int) -> None:
    stream = plain("my key is AKIAIOSF") + plain("ODNN7EXAMPLF ok") + b"data: [DONE]\n\n"
    redactor = SseRedactor(pipeline.redact_text)
    out = run(redactor, stream, chunk)
    assert "AKIAIOSF" not in out.decode()
    assert "ODNN7EXAMPLF" not in out.decode()
    assert client_text(out) == "my key is [REDACTED:aws-access-key] ok"
    assert redactor.findings == 1
    assert out.endswith(b"data: [DONE]\n\n")


def test_plain_events_keep_their_own_text_and_fields(pipeline: Pipeline) -> None:
    stream = b"event: log\nid: 1\ndata: build started\n\n" + b"event: log\ndata: step one\n\n"
    out = run(SseRedactor(pipeline.redact_text), stream, 10_000)
    assert out == stream  # nothing to redact: byte for byte, each event with its own text


@pytest.mark.parametrize("piece", [5, 40, 97])
def test_token_longer_than_the_old_hold_split_across_chat_events(
    pipeline: Pipeline, piece: int
) -> None:
    reply = f"JIRA_API_TOKEN={ATLASSIAN} is the one for staging."
    stream = b"".join(event(reply[i : i + piece]) for i in range(0, len(reply), piece))
    stream += event(None, "stop") + b"data: [DONE]\n\n"
    redactor = SseRedactor(pipeline.redact_text)
    out = run(redactor, stream, 64)
    assert ATLASSIAN[:12] not in out.decode()
    assert ATLASSIAN[-12:] not in out.decode()
    assert text_of(out) == "JIRA_API_TOKEN=[REDACTED:atlassian-api-token] is the one for staging."
    assert redactor.forced == 0


def test_context_before_the_reported_span_is_kept_for_the_scan(pipeline: Pipeline) -> None:
    """discord-webhook reports only the token after the URL: the URL must still be scanned."""
    reply = f"Our CI logs show {WEBHOOK} right before the timeout."
    stream = event(reply) + event(None, "stop") + b"data: [DONE]\n\n"
    for hold in (32, 128, 1024):
        redactor = SseRedactor(pipeline.redact_text, hold=hold)
        out = run(redactor, stream, 10_000)
        assert WEBHOOK[-20:] not in out.decode(), hold
        assert "[REDACTED:discord-webhook]" in text_of(out), hold
        assert redactor.findings == 1


def test_keyword_released_before_its_value_still_redacts_the_value(pipeline: Pipeline) -> None:
    """The keyword has left when the value arrives; the scan window still holds it."""
    value = "Rk3pQ9vTz7Lm2XwN8bYc4HdJ6sFg1AeU5oKiP0qV"  # fabricated
    redactor = SseRedactor(pipeline.redact_text)
    first = redactor.feed(event("aws_secret_access_key = "), False)
    assert text_of(first) == "aws_secret_access_key = "
    rest = redactor.feed(event(value[:10]) + event(value[10:] + " ok") + event(None, "stop"), True)
    assert value[:6] not in rest.decode()
    assert text_of(first + rest) == "aws_secret_access_key = [REDACTED:aws-secret-access-key] ok"
    assert redactor.findings == 1


def test_spaced_card_number_is_held_until_its_last_group(pipeline: Pipeline) -> None:
    redactor = SseRedactor(pipeline.redact_text)
    first = redactor.feed(event("card 4111 1111 "), False)
    assert "4111" not in text_of(first)
    rest = redactor.feed(event("1111 1111 thanks. ") + event(None, "stop"), True)
    assert text_of(first + rest) == "card [REDACTED:pii-payment-card] thanks. "


@pytest.mark.parametrize(
    "chunk_text",
    ["The quarterly report ", "is ready.\n", "Numbers follow: 12 and 14. ", "Deutsch: äöü ß "],
)
def test_clean_text_flows_when_a_chunk_ends_a_token(pipeline: Pipeline, chunk_text: str) -> None:
    redactor = SseRedactor(pipeline.redact_text)
    assert text_of(redactor.feed(event(chunk_text), False)) == chunk_text
    redactor = SseRedactor(pipeline.redact_text)
    assert redactor.feed(plain(chunk_text), False) == plain(chunk_text)


def test_unfinished_token_is_held_then_released(pipeline: Pipeline) -> None:
    redactor = SseRedactor(pipeline.redact_text)
    assert text_of(redactor.feed(event("hello wor"), False)) == "hello "
    assert text_of(redactor.feed(event("ld and more"), False)) == "world and "
    assert text_of(redactor.feed(event(None, "stop"), True)) == "more"


def test_hold_cap_bounds_what_is_held_and_is_counted(pipeline: Pipeline) -> None:
    redactor = SseRedactor(pipeline.redact_text, hold=64)
    blob = "x" * 300
    out = b"".join(redactor.feed(event(blob[i : i + 10]), False) for i in range(0, 300, 10))
    assert len(text_of(out)) >= 300 - 64
    assert redactor.forced > 0
    out += redactor.feed(event(None, "stop"), True)
    assert text_of(out) == blob


def test_anthropic_text_deltas_are_followed(pipeline: Pipeline) -> None:
    def delta(text: str) -> bytes:
        doc = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }
        return b"event: content_block_delta\ndata: " + json.dumps(doc).encode() + b"\n\n"

    stop = b'event: content_block_stop\ndata: {"type": "content_block_stop", "index": 0}\n\n'
    stream = delta("my key is AKIAIOSF") + delta("ODNN7EXAMPLF ok") + stop
    out = run(SseRedactor(pipeline.redact_text), stream, 10_000)
    texts = [
        json.loads(line[6:])["delta"]["text"]
        for line in out.decode().split("\n")
        if line.startswith("data: ") and "content_block_delta" in line
    ]
    assert "".join(texts) == "my key is [REDACTED:aws-access-key] ok"
    assert out.endswith(stop)


def test_private_key_block_is_held_until_its_footer(pipeline: Pipeline) -> None:
    """The header matches alone; the body joins the finding only when the footer arrives."""
    rng = random.Random(5)  # noqa: S311 - fabricated test data
    alphabet = string.ascii_letters + string.digits + "+/"
    lines = ["".join(rng.choice(alphabet) for _ in range(64)) for _ in range(25)]  # fabricated
    key = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END RSA PRIVATE KEY-----"
    reply = f"Here it is:\n{key}\nKeep it safe."
    stream = b"".join(event(reply[i : i + 9]) for i in range(0, len(reply), 9))
    redactor = SseRedactor(pipeline.redact_text)
    out = run(redactor, stream + event(None, "stop"), 100)
    assert not any(line[:16] in out.decode() for line in lines)
    assert text_of(out) == "Here it is:\n[REDACTED:private-key-block]\nKeep it safe."
    assert redactor.forced == 0
