"""Scan a server-sent-event stream chunk by chunk, with state carried across chunks.

Envoy hands Godel a ``text/event-stream`` response in arbitrary chunks (STREAMED mode); each chunk
must be answered with the bytes to send on. A secret can be split across chunks, and in an LLM
stream across events: ``{"delta": {"content": "AKIAIOSF"}}`` then ``{"delta": {"content":
"ODNN7EXAMPLE"}}``. :class:`SseRedactor` therefore

* reassembles complete events (a trailing partial event waits for the next chunk);
* follows the text the client reads, the concatenation of the events' texts: for OpenAI
  ``chat.completion.chunk`` events ``choices[0].delta.content``, for Anthropic
  ``content_block_delta`` events ``delta.text``, for OpenAI Responses
  ``response.output_text.delta`` events ``delta``, and for any other event whose ``data:``
  payload is not a JSON object or array, the payload itself;
* scans a sliding window of that text: what is still held back plus up to ``context`` characters
  already released before it, so a rule that needs text before the part it reports (a URL before
  a webhook token, ``password:`` before a value) still matches after that text has left. Spans
  wholly in the released part are not acted on again; a span reaching from it into the held part
  has its held part replaced;
* holds back every character that could still become part of a finding: the trailing
  unfinished token (a run of non-whitespace: more of it may arrive), a trailing run of short
  digit/capital groups separated by single spaces (card, IBAN, phone and SSN formats are written
  that way; at most :data:`GROUP_RUN` characters), a private key block whose footer has not
  arrived (from its ``-----BEGIN ... PRIVATE KEY-----`` header, while only key lines follow),
  and any finding reaching into that held part. Text before that flows on with the event that
  brought it;
* never holds more than ``hold`` characters: when an unfinished token grows past it, its start is
  released (a finding already matched in it is released redacted, whole). A secret written as
  one token longer than ``hold`` can therefore leak; each such forced release is counted in
  :attr:`SseRedactor.forced` (``godel_sse_hold_overflows_total``) and logged at debug;
* releases held text at a finishing event (``finish_reason``), before any other data event
  (``[DONE]``, ``content_block_stop``, a JSON event of unknown shape, ...) and at the end of the
  stream.

How released text is framed: in chat, Anthropic and Responses streams the text of a delta may
move into the next delta event of the same kind (every event stays valid JSON; a delta whose
text is all held is dropped; text released at a flush gets an event of its own, a copy of the
last delta with that text). Events keep their own text in plain-text streams, where an event may
be a message of its own: such an event leaves whole once all of its text is releasable, so it
is held until the next event shows where its last token ends; only the ``hold`` cap splits one.
An event passes byte for byte when nothing in it changed. Data events of another kind (JSON of
unknown shape) are scanned on their own and redacted in place; chat events without content pass
unchanged.

The cost is latency: the last token of the text (or, in a plain stream, the last event) reaches
the client one event later. Text is only released when Envoy hands Godel a chunk, so a stream that
stops mid-token without ending delivers that token when the stream ends.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GROUP_RUN", "SseRedactor", "TextRedactor", "TextSpan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TextSpan:
    """One redaction in a text: characters ``[start, end)`` become ``replacement``; the rules
    and categories of the (overlapping) findings it covers."""

    start: int
    end: int
    replacement: str
    rules: tuple[str, ...] = ()
    categories: frozenset[str] = frozenset()


TextRedactor = Callable[[str], tuple[str, Sequence[TextSpan]]]
"""Redact a text: returns the redacted text (a JSON text stays valid JSON) and the redactions,
sorted and disjoint, as character spans of the *input*."""

GROUP_RUN = 64
"""Longest trailing run of spaced digit/capital groups held back (longer than any spaced card,
IBAN or phone number)."""

_SEP = b"\n\n"
# A group of a spaced number: complete (a space after it; ends like a group, not a sentence),
# or the unfinished last token (any prefix of one).
_GROUP = re.compile(r"[0-9A-Z+().\-/]{0,7}[0-9A-Z)]")
_GROUP_PREFIX = re.compile(r"[0-9A-Z+().\-/]{1,8}")
_GAP = frozenset(" \t")

# A private key block: its header is a finding on its own, but the base64 body that follows
# only becomes part of one when the footer arrives (private-key-block matches header through
# footer "when present"). So an open block, a header followed by nothing but body lines so
# far, is held from its header.
_KEY_BEGIN = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"
)
_KEY_BEGIN_PARTIAL = re.compile(r"(?:-----BEGIN|---- BEGIN)[A-Z0-9 ]*-{0,4}\Z")
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|---- END SSH2 ")
_KEY_LINE_BREAK = re.compile(r"\r?\n|\\r\\n|\\n")  # a newline, or one escaped in JSON
_KEY_LINE = re.compile(  # base64, a header field, or the start of the footer
    r'[ \t"]*(?:[A-Za-z0-9+/=]*|[A-Za-z][A-Za-z0-9-]*: [^\n]*|-[-A-Z0-9 ]*)[ \t]*'
)

CHAT, ANTHROPIC, RESPONSES, PLAIN = "chat", "anthropic", "responses", "plain"
_DELTAS = frozenset({CHAT, ANTHROPIC, RESPONSES})  # text may move on to the next delta event


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
    lines: list[str]
    data: str | None = None  # the data payload, when there are data lines
    doc: Any = None  # the parsed JSON payload
    kind: str | None = None  # CHAT, ANTHROPIC, RESPONSES, PLAIN: carries text
    text: str = ""
    finishing: bool = False
    scan_alone: bool = False  # another data event: scanned on its own

    def with_text(self, text: str, copy_of: bool = False) -> bytes:
        """This event carrying ``text``; ``copy_of``: a further event built from it."""
        if self.kind == PLAIN:
            return _with_data(self.lines, text, copy_of)
        doc = copy.deepcopy(self.doc)
        if self.kind == CHAT:
            doc["choices"][0]["delta"]["content"] = text
            if copy_of:
                doc["choices"][0]["finish_reason"] = None
        elif self.kind == ANTHROPIC:
            doc["delta"]["text"] = text
        else:
            doc["delta"] = text
        try:
            payload = json.dumps(doc, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate sent as a \ud800 escape: keep it escaped
            payload = json.dumps(doc).encode()
        return b"data: " + payload + _SEP


def _with_data(lines: list[str], data: str, copy_of: bool = False) -> bytes:
    """An event with the fields of ``lines`` (a copy keeps only ``event:``) and ``data``."""
    out: list[str] = []
    placed = False
    for line in lines:
        if line.startswith("data:"):
            if not placed:
                out.extend(f"data: {part}" for part in data.split("\n"))
                placed = True
        elif not copy_of or line.startswith("event:"):
            out.append(line)
    return "\n".join(out).encode("utf-8", "surrogatepass") + _SEP


def _parse(raw: bytes) -> _Event:
    lines = raw.decode("utf-8", "replace").removesuffix("\n\n").split("\n")
    data_lines = [ln[5:].removeprefix(" ") for ln in lines if ln.startswith("data:")]
    if not data_lines:
        return _Event(raw, lines)
    data = "\n".join(data_lines)
    ev = _Event(raw, lines, data)
    if data.strip() == "[DONE]":
        ev.finishing = True
        return ev
    try:
        doc = json.loads(data)
    except ValueError:
        ev.kind, ev.text = PLAIN, data
        return ev
    ev.doc = doc
    if isinstance(doc, dict) and isinstance(doc.get("choices"), list):
        choices = doc["choices"]
        first = choices[0] if choices and isinstance(choices[0], dict) else {}
        delta = first.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        ev.finishing = bool(first.get("finish_reason"))
        if isinstance(content, str):
            ev.kind, ev.text = CHAT, content
        return ev  # a chat event without content passes unchanged
    if isinstance(doc, dict):
        delta = doc.get("delta")
        kind = doc.get("type")
        if kind == "content_block_delta" and isinstance(delta, dict):
            if isinstance(delta.get("text"), str):
                ev.kind, ev.text = ANTHROPIC, delta["text"]
                return ev
        elif kind == "response.output_text.delta" and isinstance(delta, str):
            ev.kind, ev.text = RESPONSES, delta
            return ev
    if isinstance(doc, (dict, list)):
        ev.scan_alone = True
    else:  # a JSON scalar (a number, a quoted string): text like any other payload
        ev.kind, ev.text = PLAIN, data
    return ev


@dataclass
class _Held:
    """Text of one event not released yet; ``used``: the event itself has been sent (or, for
    a delta, dropped), so what is left goes out in a copy of it."""

    event: _Event
    text: str
    used: bool = False
    moved: bool = False  # a delta that took over the held text of earlier ones


@dataclass
class SseRedactor:
    """Stateful redactor for one SSE response stream (see the module docstring)."""

    redact: TextRedactor
    hold: int = 4096
    context: int = 256
    findings: int = 0  # redactions released so far
    forced: int = 0  # releases the hold cap forced into an unfinished token
    _pending: bytes = b""
    _released: str = ""  # the last released characters of the text, as the upstream sent them
    _held: list[_Held] = field(default_factory=list)

    def feed(self, chunk: bytes, end_of_stream: bool) -> bytes:
        """Bytes to send downstream in place of ``chunk``."""
        events, self._pending = _split_events(self._pending + chunk)
        if end_of_stream and self._pending:
            events.append(self._pending + (b"" if self._pending.endswith(b"\n") else b"\n") + b"\n")
            self._pending = b""
        out: list[bytes] = []
        for raw in events:
            ev = _parse(raw)
            if ev.kind is not None:
                out.append(self._on_text(ev))
            elif ev.data is not None:
                out.append(self._release(final=True))
                out.append(self._scan_alone(ev) if ev.scan_alone else raw)
            else:
                out.append(raw)  # a comment or fields without data: nothing the client reads
        if end_of_stream:
            out.append(self._release(final=True))
        return b"".join(out)

    def _count(self, spans: Sequence[TextSpan]) -> None:
        """Called with the redactions sent downstream (a hook for the evaluation harness)."""
        self.findings += len(spans)

    def _on_text(self, ev: _Event) -> bytes:
        out = b""
        if self._held and self._held[-1].event.kind != ev.kind:
            out = self._release(final=True)
        if ev.kind in _DELTAS and self._held:
            carried = "".join(h.text for h in self._held)
            self._held = [_Held(ev, carried + ev.text, moved=bool(carried))]
        else:
            self._held.append(_Held(ev, ev.text))
        return out + self._release(final=ev.finishing)

    def _scan_alone(self, ev: _Event) -> bytes:
        assert ev.data is not None
        redacted, spans = self.redact(ev.data)
        if not spans:
            return ev.raw
        self._count(spans)
        return _with_data(ev.lines, redacted)

    # -- the held text --------------------------------------------------------------------
    def _release(self, final: bool) -> bytes:
        """Send what may leave now (everything when ``final``); keep the rest held."""
        if not self._held:
            return b""
        held = "".join(h.text for h in self._held)
        window = self._released + held
        base = len(self._released)
        spans = list(self.redact(window)[1]) if held else []
        cut = len(window) if final else self._cut(window, base, spans)
        out: list[bytes] = []
        counted: list[TextSpan] = []
        keep: list[_Held] = []
        pos = base
        for h in self._held:
            start, end = pos, pos + len(h.text)
            pos = end
            ev = h.event
            if start >= cut and not start == end == cut:  # all of it still held
                keep.append(h)  # a delta's event is dropped: its text goes on with a later one
                continue
            upto = min(end, cut)
            piece, hits = _splice(window, base, start, upto, spans)
            counted.extend(hits)
            if upto < end:
                keep.append(_Held(ev, h.text[upto - start :], used=True))
            if not h.used and not h.moved and upto == end and piece == h.text:
                out.append(ev.raw)  # unchanged: byte for byte
            elif piece or (not h.used and (ev.kind == PLAIN or ev.finishing)):
                out.append(ev.with_text(piece, copy_of=h.used))
        self._held = keep
        if final:
            self._released = ""
        else:
            self._released = _tail(window, cut, self.context)
        if counted:
            self._count(counted)
        return b"".join(out)

    def _cut(self, window: str, base: int, spans: Sequence[TextSpan]) -> int:
        """Where the releasable text ends: before anything that may still become a finding."""
        n = len(window)
        cut = _hold_start(window, base)
        block = _open_key_block(window)
        if block is not None and block < cut:
            cut = max(block, base)
        while True:
            before = cut
            for sp in reversed(spans):  # sorted and disjoint: one pass from the end suffices
                if sp.start < cut < sp.end:
                    cut = max(sp.start, base)
            # A plain event leaves whole: hold it from its start.
            pos = base
            for h in self._held:
                end = pos + len(h.text)
                if h.event.kind == PLAIN and not h.used and pos < cut < end:
                    cut = pos
                    break
                pos = end
            if cut == before:
                break
        if n - cut > self.hold:
            forced = n - self.hold
            for sp in spans:  # never part of a finding: a matched one leaves redacted, whole
                if sp.start < forced < sp.end:
                    forced = sp.end
            self.forced += 1
            log.debug(
                "sse hold cap: releasing %d characters of an unfinished token (hold=%d)",
                forced - cut,
                self.hold,
            )
            cut = forced
        return cut


def _splice(
    window: str, base: int, start: int, end: int, spans: Sequence[TextSpan]
) -> tuple[str, list[TextSpan]]:
    """``window[start:end]`` redacted, and the redactions whose replacement it carries.

    A span that began in the released part (before ``base``) is replaced at ``base``; a span
    crossing into this piece from an earlier one is already replaced there.
    """
    parts: list[str] = []
    hits: list[TextSpan] = []
    pos = start
    for sp in spans:
        if sp.end <= start or sp.start >= end or sp.end <= sp.start:
            continue
        lo, hi = max(sp.start, start), min(sp.end, end)
        parts.append(window[pos:lo])
        if start <= max(sp.start, base) < end:
            parts.append(sp.replacement)
            hits.append(sp)
        pos = max(pos, hi)
    parts.append(window[pos:end])
    return "".join(parts), hits


def _tail(window: str, cut: int, size: int) -> str:
    """The released context kept for the next scan: up to ``size`` characters before ``cut``,
    starting at a token boundary when there is one (a cut-off token start matches nothing
    real)."""
    lo = max(0, cut - size)
    text = window[lo:cut]
    if lo > 0 and not window[lo - 1].isspace():
        for i, ch in enumerate(text):
            if ch.isspace():
                return text[i:]
    return text


def _hold_start(window: str, base: int) -> int:
    """Start of the trailing text that may still grow into a finding (``len(window)``: none).

    The unfinished last token, and a trailing run of short digit/capital groups separated by
    a space or two when more groups may follow (``4111 1111 1111``, ``DE89 3704``,
    ``+1 (415) 555``), at most :data:`GROUP_RUN` characters and only if it has a digit.
    """
    n = pos = len(window)
    while pos > base and not window[pos - 1].isspace():
        pos -= 1
    hold = pos
    if hold < n and not _GROUP_PREFIX.fullmatch(window, hold, n):
        return hold  # a word: no group run before it can continue into it
    run = hold
    while True:
        gap = run
        while gap > base and run - gap < 2 and window[gap - 1] in _GAP:
            gap -= 1
        if gap in (run, base) or window[gap - 1].isspace():
            break  # no gap, a newline or a longer gap: the run ends here
        tok = gap
        while tok > base and not window[tok - 1].isspace():
            tok -= 1
        if n - tok > GROUP_RUN or not _GROUP.fullmatch(window, tok, gap):
            break
        run = tok
    if run < hold and any(ch.isdigit() for ch in window[run:n]):
        return run
    return hold


def _open_key_block(window: str) -> int | None:
    """Start of a private key block whose footer has not arrived yet, if the text after its
    header is still nothing but key lines (base64, ``Field: value`` headers)."""
    partial = _KEY_BEGIN_PARTIAL.search(window)
    if partial is not None:
        return partial.start()  # a header still arriving
    begins = list(_KEY_BEGIN.finditer(window))
    if not begins or _KEY_END.search(window, begins[-1].end()):
        return None
    begin = begins[-1]
    lines = _KEY_LINE_BREAK.split(window[begin.end() :])
    if all(_KEY_LINE.fullmatch(line) for line in lines):
        return begin.start()
    return None
