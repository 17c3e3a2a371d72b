"""Typed stub for the native module built from ``native_traps/`` (Rust, PyO3).

Scans take ``bytes`` and report byte offsets (end exclusive). The GIL is
released while a scan runs, and every regex runs in linear time.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Final, final

__all__ = [
    "EntropyFinding",
    "EntropyTrap",
    "Finding",
    "ParameterError",
    "RegexTrap",
    "RuleError",
    "TrapError",
    "scan_all",
]

__version__: Final[str]

class TrapError(Exception):
    """Base class of every error raised by this module."""

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

@final
class RegexTrap:
    """Compiled regex rules with an Aho-Corasick keyword prefilter.

    Each rule mapping has the keys ``id``, ``category``, ``severity``,
    ``pattern`` and optionally ``keywords`` (``list[str]``), ``validator``
    (``"luhn"`` or ``None``) and ``case_insensitive`` (``bool``). Unknown keys
    raise :class:`RuleError`.
    """

    def __new__(cls, rules: Sequence[Mapping[str, Any]]) -> RegexTrap: ...
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
    """Shannon-entropy detector for random-looking tokens (starter thresholds)."""

    def __new__(
        cls,
        min_length: int = 20,
        hex_threshold: float = 3.0,
        base64_threshold: float = 4.5,
        alnum_threshold: float = 4.0,
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
