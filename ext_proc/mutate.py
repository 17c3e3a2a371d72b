"""Body mutation: replace findings' byte spans and keep JSON bodies valid JSON.

Spans are replaced in the original bytes, so everything outside them is byte-for-byte what the
client sent. Replacement text contains only characters that are safe inside a JSON string. If a
span crossed JSON structure (a quote or an escape) and the splice broke a body that was valid
JSON, the body is redacted value by value instead: each string is rescanned and rewritten, and
the document is re-serialised.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Literal

from ext_proc.traps import Finding

__all__ = ["RedactionOperator", "is_json", "redact"]

RedactionOperator = Literal["label", "mask"]
Scanner = Callable[[bytes], Sequence[Finding]]


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


def _replacement(finding: Finding, length: int, operator: RedactionOperator) -> bytes:
    if operator == "mask":
        return b"*" * max(length, 1)
    return f"[REDACTED:{finding.rule}]".encode("ascii")


def splice(body: bytes, findings: Sequence[Finding], operator: RedactionOperator) -> bytes:
    """Replace each span (overlapping spans merged; the first finding names the label)."""
    if not findings:
        return body
    ordered = sorted(findings, key=lambda f: (f.start, -f.end))
    parts: list[bytes] = []
    pos = 0
    i = 0
    while i < len(ordered):
        first = ordered[i]
        start, end = first.start, first.end
        i += 1
        while i < len(ordered) and ordered[i].start < end:
            end = max(end, ordered[i].end)
            i += 1
        if start < pos:  # defensive: never emit bytes twice
            start = pos
        parts.append(body[pos:start])
        parts.append(_replacement(first, end - start, operator))
        pos = end
    parts.append(body[pos:])
    return b"".join(parts)


def _redact_value(value: object, scan: Scanner, wanted: set[str], op: RedactionOperator) -> object:
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        hits = [f for f in scan(raw) if f.rule in wanted]
        if not hits:
            return value
        return splice(raw, hits, op).decode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return [_redact_value(v, scan, wanted, op) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v, scan, wanted, op) for k, v in value.items()}
    return value


def redact(
    body: bytes,
    findings: Sequence[Finding],
    operator: RedactionOperator,
    scan: Scanner,
) -> bytes:
    """Redact ``findings`` from ``body``; a JSON body stays valid JSON.

    ``scan`` is used only on the fallback path, to find the same rules inside each JSON string.
    """
    out = splice(body, findings, operator)
    if not is_json(body) or is_json(out):
        return out
    wanted = {f.rule for f in findings}
    doc = json.loads(body)
    fixed = _redact_value(doc, scan, wanted, operator)
    return json.dumps(fixed, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
