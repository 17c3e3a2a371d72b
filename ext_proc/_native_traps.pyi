"""Typed stub for the native module built from ``native_traps/`` (Rust, PyO3).

Scans take ``bytes`` and report byte offsets (end exclusive). The GIL is
released while a scan runs, and every regex runs in linear time.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, final

__all__ = [
    "FILTER_TUNING_ROUNDS",
    "DecodeError",
    "EntropyFinding",
    "EntropyTrap",
    "Finding",
    "InternalError",
    "Normalizer",
    "ParameterError",
    "RegexTrap",
    "RuleError",
    "ScanResult",
    "TrapError",
    "ViewEntropyFinding",
    "decompress",
    "keyword_coverage",
    "scan_all",
]

__version__: Final[str]
FILTER_TUNING_ROUNDS: Final[int]
"""Times the AVX-512 keyword filter rebuilds itself from the first 3 MiB it scans."""

class TrapError(Exception):
    """Base class of every error raised by this module."""

class InternalError(TrapError):
    """A bug in the native code (a Rust panic) stopped the call; the input is
    not at fault and the module stays usable."""

class RuleError(TrapError):
    """A regex rule is invalid (field, unknown key, duplicate id, pattern)."""

class ParameterError(TrapError, ValueError):
    """An ``EntropyTrap`` parameter is out of range."""

@final
class Finding:
    """One regex-rule match."""

    @property
    def rule_id(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def severity(self) -> str:
        """``"critical"``, ``"error"``, ``"warning"`` or ``"notice"``."""
    @property
    def weight(self) -> int:
        """Anomaly-score weight of the severity: 5, 4, 3 or 2."""
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def view(self) -> str:
        """``raw`` for :meth:`RegexTrap.scan`; for :meth:`Normalizer.scan` the view the match
        was made in (``json``, ``unescaped``, ``canonical``, ``leet``, ``decoded1``, ...)."""

@final
class RegexTrap:
    """Compiled regex rules with a keyword prefilter (AVX-512 Teddy, bucketed shift-or or
    Aho-Corasick).

    Each rule mapping has the keys ``id``, ``category``, ``severity``,
    ``pattern`` and optionally ``keywords`` (``list[str]``), ``validator``
    (``"luhn"``, ``"iban"``, ``"us_ssn"``, ``"iin_card"``, ``"e164"``,
    ``"ipv4"``, ``"ipv6"`` or ``None``), ``case_insensitive`` (``bool``),
    ``min_entropy`` (``float``, bits per byte in (0, 8]: a match whose reported
    span has less Shannon entropy is dropped) and ``stopwords``
    (``list[str]``: a match whose reported span contains one, ASCII
    case-insensitively, is dropped) and ``batch`` (``str``, ``[a-z0-9_]+``:
    when two or more rules of a batch are candidates, one pass of their
    combined automaton first decides which of them run). Unknown keys raise
    :class:`RuleError`.

    ``simd=False`` keeps the scalar filters; ``tune=False`` stops the AVX-512 filter from
    rebuilding itself from the first 3 MiB it scans (see ``filter_rebuilds``).
    """

    def __new__(
        cls, rules: Sequence[Mapping[str, Any]], *, simd: bool = True, tune: bool = True
    ) -> RegexTrap: ...
    @property
    def prefilter(self) -> str:
        """Stage-1 keyword search in use: ``"avx512-teddy"`` (only where the CPU has AVX-512
        VBMI and ``simd`` is true), ``"shift-or"``, ``"aho-corasick"`` or ``"none"``."""
    @property
    def filter_rebuilds(self) -> int:
        """Times the AVX-512 filter has rebuilt itself from the traffic it scanned (0 to
        :data:`FILTER_TUNING_ROUNDS`; always 0 with ``tune=False`` or another filter). Findings
        never depend on it."""
    def scan(self, data: bytes) -> list[Finding]:
        """Findings sorted by (start, end, rule order); the GIL is released."""
    @property
    def rule_ids(self) -> list[str]: ...
    def __len__(self) -> int: ...

@final
class EntropyFinding:
    """One high-entropy token."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def bits_per_char(self) -> float: ...
    @property
    def charset(self) -> str:
        """``"hex"``, ``"base64"`` or ``"alnum"``."""

@final
class EntropyTrap:
    """Shannon-entropy detector for random-looking tokens.

    A token is flagged when its entropy reaches ``min(cap, factor * E[H](length, charset))``;
    the thresholds are the caps for long tokens (docs/entropy-calibration.md).
    """

    def __new__(
        cls,
        min_length: int = 20,
        hex_threshold: float = 3.6,
        base64_threshold: float = 4.9,
        alnum_threshold: float = 4.9,
    ) -> EntropyTrap: ...
    def scan(self, data: bytes) -> list[EntropyFinding]:
        """Findings in input order; the GIL is released."""
    @property
    def min_length(self) -> int: ...
    @property
    def hex_threshold(self) -> float: ...
    @property
    def base64_threshold(self) -> float: ...
    @property
    def alnum_threshold(self) -> float: ...

def scan_all(
    regex: RegexTrap, entropy: EntropyTrap | None, data: bytes
) -> tuple[list[Finding], list[EntropyFinding]]:
    """Run both traps over ``data`` in one release of the GIL."""

def keyword_coverage(
    rule_id: str,
    pattern: str,
    keywords: list[str],
    *,
    case_insensitive: bool = False,
    left_out: bytes | None = None,
    skip_lookalikes: bool = True,
) -> tuple[Literal["covered", "gap", "unknown"], bytes | None]:
    """Whether every string ``pattern`` can match holds one of ``keywords`` (ASCII
    case-insensitive; a space in a keyword stands for any run of white space; ``\\b`` first
    for a word start), leaving out strings with a byte of ``left_out`` and, with
    ``skip_lookalikes``, those with the Unicode case-fold lookalikes U+017F and U+212A.
    ``("gap", body)`` gives a short body that the pattern matches without a keyword;
    ``("unknown", None)`` means the search gave up.
    Raises ``RuleError`` for an invalid pattern or empty keywords."""

def _panic_for_tests() -> None:
    """Panic in native code; raises ``InternalError`` (a test hook)."""

# --- Normalised views (native_traps/src/normalize, py_normalize.rs) ---

class DecodeError(TrapError):
    """A body could not be decoded: corrupt data, unknown encoding, or a
    size/ratio bound exceeded."""

@final
class ViewEntropyFinding:
    """One high-entropy token from the raw or a decoded view, in original offsets."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def bits_per_char(self) -> float: ...
    @property
    def charset(self) -> str:
        """``"hex"``, ``"base64"`` or ``"alnum"``."""
    @property
    def view(self) -> str: ...

@final
class ScanResult:
    """Findings of one :meth:`Normalizer.scan`."""

    @property
    def findings(self) -> list[Finding]:
        """Sorted by (start, end); one per rule id and original span."""
    @property
    def entropy(self) -> list[ViewEntropyFinding]:
        """Sorted by (start, end); one per original span."""
    @property
    def limits_hit(self) -> list[str]:
        """Bounds that stopped normalisation: ``decoded_bytes``, ``depth``, ``expansion``."""

@final
class Normalizer:
    """Builds normalised views of a body and scans them in one native call."""

    def __new__(
        cls,
        max_depth: int = 2,
        max_decoded_bytes: int = 1048576,
        min_blob_len: int = 16,
        max_decompressed_bytes: int = 16777216,
        max_ratio: float = 100.0,
        min_text_blob_len: int = 12,
    ) -> Normalizer: ...
    def views(
        self, data: bytes, regex: RegexTrap | None = None, leet: RegexTrap | None = None
    ) -> list[tuple[str, bytes]]:
        """Every view as (name, bytes), raw first (tests and debugging); with the traps `scan`
        would get, the leet view last when `scan` would build it."""
    def scan(
        self,
        regex: RegexTrap,
        leet: RegexTrap | None,
        entropy: EntropyTrap | None,
        data: bytes,
    ) -> ScanResult:
        """Normalise ``data`` and run the traps over its views; the GIL is released once."""
    def decompress(self, data: bytes, encoding: str) -> bytes:
        """Decompress within this normaliser's bounds; raises :class:`DecodeError`."""
    @property
    def max_depth(self) -> int: ...
    @property
    def max_decoded_bytes(self) -> int: ...
    @property
    def min_blob_len(self) -> int: ...
    @property
    def min_text_blob_len(self) -> int: ...
    @property
    def max_decompressed_bytes(self) -> int: ...
    @property
    def max_ratio(self) -> float: ...

def decompress(
    data: bytes, encoding: str, max_bytes: int = 16777216, max_ratio: float = 100.0
) -> bytes:
    """Decompress a gzip/deflate/br body; raises :class:`DecodeError` past a bound."""
