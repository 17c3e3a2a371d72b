"""Scan a server-sent-event stream chunk by chunk, with state carried across chunks.

Envoy hands Godel a ``text/event-stream`` response in arbitrary chunks (STREAMED mode); each chunk
must be answered with the bytes to send on. A secret can be split across chunks, and in an LLM
stream across events: ``{"delta": {"content": "AKIAIOSF"}}`` then ``{"delta": {"content":
"ODNN7EXAMPLE"}}``. :class:`SseRedactor` therefore

* reassembles complete events (a trailing partial event waits for the next chunk);
* follows the text the client will read: for OpenAI-style ``chat.completion.chunk`` events the
  concatenated ``choices[0].delta.content``, otherwise the concatenated ``data:`` payloads;
* holds back the last ``hold`` characters of that text (and any finding that reaches into them)
  until more text arrives, so a secret is seen whole before any of it leaves; the held text moves
  into the next event's content, so every event stays valid JSON and the client's concatenated
  text is unchanged except for the redactions;
* flushes what is held before a finishing event (``finish_reason``, ``[DONE]``) and at the end of
  the stream.

The cost is latency: the client sees the last ``hold`` characters one event later.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SseRedactor", "TextRedactor"]

TextRedactor = Callable[[str], tuple[str, list[tuple[int, int]], int]]
"""Redact findings in a text: returns the text with complete findings replaced, the character
spans (start, end) of findings in the *input*, and how many findings there were."""

_SEP = b"\n\n"


def _split_events(buf: bytes) -> tuple[list[bytes], bytes]:
    """Complete events (each with its blank-line terminator) and the incomplete rest."""
    buf = buf.replace(b"\r\n", b"\n")
    events: list[bytes] = []
    start = 0
    while (end := buf.find(_SEP, start)) != -1:
        events.append(buf[start : end + 2])
        start = end + 2
    return events, buf[start:]


@dataclass
class _Event:
    raw: bytes
    doc: dict[str, Any] | None = None  # parsed chat.completion.chunk, when it is one
    data: str | None = None  # the data payload of any other event

    @property
    def finishing(self) -> bool:
        if self.data is not None and self.data.strip() == "[DONE]":
            return True
        if self.doc is None:
            return False
        choices = self.doc.get("choices") or [{}]
        return bool(choices[0].get("finish_reason"))

    @property
    def content(self) -> str | None:
        if self.doc is None:
            return None
        choices = self.doc.get("choices")
        if not choices or not isinstance(choices[0], dict):
            return None
        delta = choices[0].get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
        return text if isinstance(text, str) else None


def _parse(raw: bytes) -> _Event:
    lines = raw.decode("utf-8", "replace").split("\n")
    data_lines = [ln[5:].removeprefix(" ") for ln in lines if ln.startswith("data:")]
    if not data_lines:
        return _Event(raw)
    data = "\n".join(data_lines)
    try:
        doc = json.loads(data)
    except ValueError:
        return _Event(raw, data=data)
    if isinstance(doc, dict) and isinstance(doc.get("choices"), list):
        return _Event(raw, doc=doc)
    return _Event(raw, data=data)


def _with_content(template: dict[str, Any], text: str) -> bytes:
    doc = json.loads(json.dumps(template))
    doc["choices"][0].setdefault("delta", {})["content"] = text
    try:
        payload = json.dumps(doc, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate sent as a \ud800 escape: keep it escaped
        payload = json.dumps(doc).encode()
    return b"data: " + payload + _SEP


@dataclass
class SseRedactor:
    """Stateful redactor for one SSE response stream (see the module docstring)."""

    redact: TextRedactor
    hold: int = 128
    findings: int = 0
    _pending: bytes = b""
    _carry: str = ""
    _template: dict[str, Any] | None = None
    _chat: bool | None = field(default=None)

    def _release(self, text: str, final: bool) -> str:
        """Redact ``text``; return what may leave now and keep the rest as carry."""
        redacted, spans, count = self.redact(text)
        cut = len(text) if final else max(0, len(text) - self.hold)
        for start, end in spans:
            if start < cut < end:
                cut = start  # never let part of a finding out
        if cut == len(text):
            self.findings += count
            self._carry = ""
            return redacted
        # Redact only the releasable prefix; findings inside it are complete.
        head, _, head_count = self.redact(text[:cut])
        self.findings += head_count
        self._carry = text[cut:]
        return head

    def _flush_chat(self) -> bytes:
        if not self._carry or self._template is None:
            return b""
        return _with_content(self._template, self._release(self._carry, final=True))

    def feed(self, chunk: bytes, end_of_stream: bool) -> bytes:
        """Bytes to send downstream in place of ``chunk``."""
        events, self._pending = _split_events(self._pending + chunk)
        if end_of_stream and self._pending:
            events.append(self._pending + (b"" if self._pending.endswith(b"\n") else b"\n") + b"\n")
            self._pending = b""
        out: list[bytes] = []
        for raw in events:
            ev = _parse(raw)
            content = ev.content
            if content is not None:
                assert ev.doc is not None
                self._template = ev.doc
                text = self._release(self._carry + content, final=ev.finishing)
                if text or ev.finishing:
                    out.append(_with_content(ev.doc, text))
                continue
            if ev.finishing or ev.data is not None:
                out.append(self._flush_chat())
            if ev.data is not None and not ev.finishing:
                # A non-chat event: scan its payload with the carried text of earlier ones.
                out.append(self._release_plain(raw, ev.data))
                continue
            out.append(raw)
        if end_of_stream:
            out.append(self._flush_chat())
        return b"".join(out)

    def _release_plain(self, raw: bytes, data: str) -> bytes:
        redacted, _, count = self.redact(data)
        if not count:
            return raw
        self.findings += count
        lines = [f"data: {line}" for line in redacted.split("\n")]
        return ("\n".join(lines)).encode() + _SEP
