"""Body mutation: replace findings' byte spans and keep JSON bodies valid JSON.

Spans are replaced in the original bytes, so everything outside them is byte-for-byte what the
client sent. Replacement text contains only characters that are safe inside a JSON string. If a
span crossed JSON structure (a quote or an escape) and the splice broke a body that was valid
JSON, the body is redacted value by value instead: each string is rescanned and rewritten, and
the document is re-serialised.

Operators: ``label`` writes ``[REDACTED:<rule>]``; ``mask`` writes asterisks of the same byte
length; ``hash`` writes ``[HASH:<rule>:<16 hex>]``, a keyed pseudonym (HMAC-SHA256 under the
redaction key) so the same secret gives the same token across requests without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ext_proc.keys import SecretBytes
from ext_proc.traps import Finding

__all__ = ["RedactionOperator", "Redactor", "is_json", "merged_spans", "redact", "splice"]

RedactionOperator = Literal["label", "mask", "hash"]
Scanner = Callable[[bytes], Sequence[Finding]]


@dataclass(frozen=True, slots=True)
class Redactor:
    operator: RedactionOperator = "label"
    key: SecretBytes | None = None

    def __post_init__(self) -> None:
        if self.operator == "hash" and self.key is None:
            raise ValueError("the hash operator needs a key")

    def replacement(self, finding: Finding, original: bytes) -> bytes:
        if self.operator == "mask":
            return b"*" * max(len(original), 1)
        if self.operator == "hash":
            assert self.key is not None
            digest = hmac.new(self.key.reveal(), original, hashlib.sha256).hexdigest()[:16]
            return f"[HASH:{finding.rule}:{digest}]".encode("ascii")
        return f"[REDACTED:{finding.rule}]".encode("ascii")

    def masking(self) -> Redactor:
        """The length-preserving variant (used when a body must not grow)."""
        return Redactor("mask")


def is_json(body: bytes) -> bool:
    """True when ``body`` is a JSON document (object or array)."""
    head = body.lstrip()[:1]
    if head not in (b"{", b"["):
        return False
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


def _char_bounds(body: bytes, start: int, end: int) -> tuple[int, int]:
    """Widen a byte span to whole UTF-8 characters, so redaction never splits one."""
    while 0 < start < len(body) and 0x80 <= body[start] < 0xC0:
        start -= 1
    while 0 < end < len(body) and 0x80 <= body[end] < 0xC0:
        end += 1
    return start, end


def merged_spans(
    body: bytes, findings: Sequence[Finding]
) -> list[tuple[int, int, tuple[Finding, ...]]]:
    """The byte spans :func:`splice` replaces: widened to whole UTF-8 characters, sorted,
    overlapping ones merged, each with the findings it covers (the first names its label)."""
    spans = sorted(
        ((*_char_bounds(body, f.start, f.end), f) for f in findings),
        key=lambda s: (s[0], -s[1]),
    )
    merged: list[tuple[int, int, tuple[Finding, ...]]] = []
    pos = 0
    i = 0
    while i < len(spans):
        start, end, first = spans[i]
        covered = [first]
        i += 1
        while i < len(spans) and spans[i][0] < end:
            end = max(end, spans[i][1])
            covered.append(spans[i][2])
            i += 1
        start = max(start, pos)  # defensive: never emit bytes twice
        merged.append((start, end, tuple(covered)))
        pos = end
    return merged


def splice(body: bytes, findings: Sequence[Finding], redactor: Redactor) -> bytes:
    """Replace each span (overlapping spans merged; the first finding names the label).

    Spans are widened to whole UTF-8 characters first: a byte-level pattern may end inside a
    multi-byte character, and cutting one would leave invalid UTF-8 behind.
    """
    if not findings:
        return body
    parts: list[bytes] = []
    pos = 0
    for start, end, covered in merged_spans(body, findings):
        parts.append(body[pos:start])
        parts.append(redactor.replacement(covered[0], body[start:end]))
        pos = end
    parts.append(body[pos:])
    return b"".join(parts)


def _redact_value(value: object, scan: Scanner, wanted: set[str], redactor: Redactor) -> object:
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        hits = [f for f in scan(raw) if f.rule in wanted]
        if not hits:
            return value
        return splice(raw, hits, redactor).decode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return [_redact_value(v, scan, wanted, redactor) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v, scan, wanted, redactor) for k, v in value.items()}
    return value


def redact(
    body: bytes,
    findings: Sequence[Finding],
    redactor: Redactor,
    scan: Scanner,
) -> bytes:
    """Redact ``findings`` from ``body``; a JSON body stays valid JSON.

    ``scan`` is used only on the fallback path, to find the same rules inside each JSON string.
    """
    out = splice(body, findings, redactor)
    # Output first: when the spans lay inside strings (the usual case) one parse settles it.
    if is_json(out) or not is_json(body):
        return out
    wanted = {f.rule for f in findings}
    doc = json.loads(body)
    fixed = _redact_value(doc, scan, wanted, redactor)
    return json.dumps(fixed, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
