"""Generate native_traps/src/text_model.rs: a letter-bigram model of English prose.

The AVX-512 keyword filter anchors each keyword on its four consecutive bytes least likely to
occur in ordinary text. A byte-frequency model rates word starts such as ``cont`` or ``syst`` as
rare as ``ntac``, yet they begin a large share of all words; a bigram model knows better. The
training text is the project's own documentation (README.md and docs/) and a short sample of
chat prompts, JSON chat bodies and code written for this purpose (``text_model_sample.txt``: the
docs alone are technical prose, where words such as "you" are rare), so nothing is downloaded and
nothing is fitted to the benchmark corpus. Any table gives the same findings; it only moves
where the filter spends its time. The docs keep changing, so a rerun gives a slightly different
table: the committed one was made at commit 5339167, and the bench figures of ADR 0012's
addendum were measured with it. Regenerate when the sample or the model changes, not for every
docs edit.

    .venv/bin/python scripts/gen_text_model.py > native_traps/src/text_model.rs
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = 29  # a-z, whitespace, digit, anything else
SPACE, DIGIT, OTHER = 26, 27, 28


def symbol(b: int) -> int:
    c = b | 0x20 if 0x41 <= b <= 0x5A else b
    if 0x61 <= c <= 0x7A:
        return c - 0x61
    if c in b" \t\r\n":
        return SPACE
    if 0x30 <= c <= 0x39:
        return DIGIT
    return OTHER


# The chat sample is small; its counts weigh as much as about 60 KB of docs.
SAMPLE_WEIGHT = 20


def training_text() -> list[tuple[bytes, int]]:
    """(text, weight) pairs."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    sample = Path(__file__).with_name("text_model_sample.txt")
    return [
        (b"\n".join(f.read_bytes() for f in docs), 1),
        (sample.read_bytes(), SAMPLE_WEIGHT),
    ]


def main() -> int:
    parts = training_text()
    counts = [[1] * SYMBOLS for _ in range(SYMBOLS)]  # add-one smoothing
    first = [1] * SYMBOLS
    for text, weight in parts:
        prev = SPACE
        for b in text:
            s = symbol(b)
            counts[prev][s] += weight
            first[s] += weight
            prev = s
    total = sum(first)
    # Costs in quarter bits (-4 log2 p), capped to fit a u8.
    unigram = [min(255, round(-4 * math.log2(n / total))) for n in first]
    bigram = []
    for row in counts:
        row_total = sum(row)
        bigram.append([min(255, round(-4 * math.log2(n / row_total))) for n in row])
    out = sys.stdout
    out.write("//! A letter-bigram model of English prose (generated; do not edit).\n")
    out.write("//!\n")
    size = sum(len(text) for text, _ in parts)
    out.write(f"//! Made by `scripts/gen_text_model.py` from {size:,} bytes: the project's\n")
    out.write("//! documentation and a sample of chat text. Symbols: `a`-`z` (either case),\n")
    out.write("//! whitespace, digits, anything else. Costs are in quarter bits,\n")
    out.write("//! `-4 log2 p`, so a higher cost means rarer. Used only to choose where\n")
    out.write("//! the AVX-512 keyword filter anchors each keyword: findings never\n")
    out.write("//! depend on it.\n\n")
    out.write(f"/// Symbols in the model.\npub(crate) const SYMBOLS: usize = {SYMBOLS};\n\n")
    out.write("/// Cost of each symbol on its own.\n")
    out.write("#[rustfmt::skip]\n")
    out.write(f"pub(crate) const UNIGRAM: [u8; SYMBOLS] = {unigram};\n\n")
    out.write("/// `BIGRAM[a][b]`: cost of symbol `b` right after symbol `a`.\n")
    out.write("#[rustfmt::skip]\n")
    out.write("pub(crate) const BIGRAM: [[u8; SYMBOLS]; SYMBOLS] = [\n")
    for row in bigram:
        out.write("    [" + ", ".join(f"{v:2d}" for v in row) + "],\n")
    out.write("];\n\n")
    out.write(
        """/// The model's symbol for byte `b`.
pub(crate) const fn symbol(b: u8) -> usize {
    match b.to_ascii_lowercase() {
        c @ b'a'..=b'z' => (c - b'a') as usize,
        b' ' | b'\\t' | b'\\r' | b'\\n' => 26,
        b'0'..=b'9' => 27,
        _ => 28,
    }
}

/// Estimated cost (rarity) of `bytes` occurring at a given position of
/// English prose, in quarter bits: the first byte's own cost plus each next
/// byte's cost after its predecessor.
pub(crate) fn cost(bytes: &[u8]) -> u32 {
    let mut iter = bytes.iter().map(|&b| symbol(b));
    let Some(mut prev) = iter.next() else {
        return 0;
    };
    let mut total = u32::from(UNIGRAM[prev]);
    for next in iter {
        total += u32::from(BIGRAM[prev][next]);
        prev = next;
    }
    total
}
"""
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
