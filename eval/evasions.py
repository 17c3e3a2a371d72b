"""Evasion transforms for positive samples.

Each transform rewrites the *payload* of a :class:`corpus.Sample` (the secret, the PII value or
the injection sentence) and leaves the carrier as it is, so the label still holds: a gateway that
decodes or canonicalises what it scans should find the same thing. Transforms that would not change
a payload (homoglyphs of a digits-only card number) yield nothing, so they do not inflate recall.
``gzip`` and ``sse-split`` need the HTTP path (a Content-Encoding, a stream of events); they are
built and run by :mod:`httppath`.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from dataclasses import dataclass

from corpus import Sample, with_payload

__all__ = ["EVASIONS", "Evasion", "apply_all", "apply_evasion"]

ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060")
# Latin letter -> visually identical Cyrillic or Greek letter.
HOMOGLYPHS = {
    "a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "x": "\u0445",
    "y": "\u0443", "i": "\u0456", "s": "\u0455", "j": "\u0458",
    "A": "\u0391", "B": "\u0392", "C": "\u0421", "E": "\u0395", "H": "\u0397", "I": "\u0399",
    "K": "\u039a", "M": "\u039c", "N": "\u039d", "O": "\u039f", "P": "\u03a1", "T": "\u03a4",
    "X": "\u03a7", "Y": "\u03a5", "Z": "\u0396",
}  # fmt: skip
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "g": "9", "l": "1"}
# What a space between words becomes under the white-space evasion.
SPACE_RUNS = ("  ", "\t", " \t ", "\u00a0\u00a0", "\u2003")


@dataclass(frozen=True, slots=True)
class Evasion:
    name: str
    description: str
    # None: applies to every category; else the categories it applies to.
    categories: frozenset[str] | None
    transform: Callable[[random.Random, str], str]
    # True when the output is JSON string content already (inserted as is into JSON carriers).
    pre_escaped: bool = False


def _base64(_: random.Random, s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _hex(_: random.Random, s: str) -> str:
    return s.encode().hex()


def _percent(_: random.Random, s: str) -> str:
    # Every byte, not only reserved ones: "AKIA..." would otherwise pass through unchanged.
    return "".join(f"%{b:02X}" for b in s.encode())


def _json_unicode(_: random.Random, s: str) -> str:
    # Every character as \uXXXX (UTF-16 code units, as JSON spells them).
    escaped = json.dumps(s, ensure_ascii=True)[1:-1]
    out = []
    for ch in json.loads('"' + escaped + '"'):
        for unit in ch.encode("utf-16-be").hex(" ", 2).split(" "):
            out.append("\\u" + unit)
    return "".join(out)


def _zero_width(rng: random.Random, s: str) -> str:
    """Insert a zero-width character inside runs of letters/digits, about every 3 characters."""
    out = []
    for i, ch in enumerate(s):
        out.append(ch)
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if ch.isalnum() and nxt.isalnum() and rng.random() < 0.35:
            out.append(rng.choice(ZERO_WIDTH))
    return "".join(out)


def _fullwidth(_: random.Random, s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in s)


def _homoglyph(rng: random.Random, s: str) -> str:
    out = [HOMOGLYPHS[c] if c in HOMOGLYPHS and rng.random() < 0.5 else c for c in s]
    if out == list(s):  # make sure at least one letter is swapped when any can be
        for i, c in enumerate(s):
            if c in HOMOGLYPHS:
                out[i] = HOMOGLYPHS[c]
                break
    return "".join(out)


def _leet(rng: random.Random, s: str) -> str:
    return "".join(LEET[c.lower()] if c.lower() in LEET and rng.random() < 0.6 else c for c in s)


def _white_space(rng: random.Random, s: str) -> str:
    """Every space as a run of other white space (two spaces, a tab, no-break or em spaces)."""
    return "".join(rng.choice(SPACE_RUNS) if c == " " else c for c in s)


EVASIONS: tuple[Evasion, ...] = (
    Evasion("base64", "payload base64-encoded", None, _base64),
    Evasion("hex", "payload as lowercase hex of its UTF-8 bytes", None, _hex),
    Evasion("percent", "every byte of the payload percent-encoded", None, _percent),
    Evasion("json-unicode", "every character as a JSON \\uXXXX escape", None, _json_unicode, True),
    Evasion("zero-width", "ZWSP/ZWNJ/ZWJ/WJ inserted inside words", None, _zero_width),
    Evasion("fullwidth", "ASCII letters and digits as fullwidth forms", None, _fullwidth),
    Evasion("homoglyph", "some Latin letters as Cyrillic/Greek look-alikes", None, _homoglyph),
    Evasion("leetspeak", "letters as digits (a->4, e->3 ...)", frozenset({"injection"}), _leet),
    Evasion(
        "white-space",
        "spaces between words as tabs, double or no-break spaces",
        frozenset({"injection"}),
        _white_space,
    ),
)


def apply_evasion(evasion: Evasion, sample: Sample, rng: random.Random) -> Sample | None:
    """The evaded variant of ``sample``, or None if the evasion does not apply or changes
    nothing."""
    if evasion.categories is not None and sample.label not in evasion.categories:
        return None
    if not sample.payload:
        return None
    new = evasion.transform(rng, sample.payload)
    if new == sample.payload:
        return None
    return with_payload(sample, new, evasion.name, pre_escaped=evasion.pre_escaped)


def apply_all(samples: list[Sample], seed: int) -> list[Sample]:
    """Every applicable evasion of every positive sample, deterministically for ``seed``."""
    rng = random.Random(seed ^ 0x5EED)
    out: list[Sample] = []
    for evasion in EVASIONS:
        for sample in samples:
            if sample.label == "benign":
                continue
            variant = apply_evasion(evasion, sample, rng)
            if variant is not None:
                out.append(variant)
    return out
