"""Load rule packs and run the native traps over a body.

This is the only module that imports :mod:`ext_proc._native_traps`. It turns YAML rule packs into
a compiled :class:`RegexTrap`, builds the :class:`EntropyTrap`, and returns findings from both as
one list of :class:`Finding` with byte spans into the scanned bytes. Native errors become
:class:`~ext_proc.errors.RulePackError` here, so nothing above sees the native exception tree.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ext_proc import _native_traps as native
from ext_proc.config import TrapSettings
from ext_proc.errors import BodyDecodeError, RulePackError

__all__ = [
    "Finding",
    "RulePack",
    "TrapSet",
    "check_keyword_coverage",
    "keyword_coverage",
    "load_rule_pack",
]

_NATIVE_KEYS = (
    "id",
    "category",
    "severity",
    "pattern",
    "keywords",
    "validator",
    "case_insensitive",
    "min_entropy",
    "stopwords",
    "batch",
)
_DOC_KEYS = ("description", "examples")
ENTROPY_CATEGORY = "entropy"
LIMITS_CATEGORY = "limits"
LEET_CATEGORY = "injection"
OVERFLOW_CATEGORY = "overflow"
ENTROPY_SEVERITY = "notice"
ENTROPY_WEIGHT = 2


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a trap found: which trap and rule, its category and severity, and where.

    ``start`` and ``end`` are byte offsets into the scanned body (end exclusive).
    """

    trap: str
    rule: str
    category: str
    severity: str
    weight: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class RulePack:
    """A parsed rule pack: its name, the rules as the native engine takes them, and examples."""

    name: str
    source: str
    rules: tuple[dict[str, Any], ...]
    examples: Mapping[str, Mapping[str, tuple[str, ...]]]


def too_many_findings(size: int) -> Finding:
    """The single finding a body with more than ``traps.max_findings`` matches gets: it spans
    the whole body, so a request is blocked and a response is replaced, never half-redacted."""
    return Finding("limit", "too-many-findings", OVERFLOW_CATEGORY, "critical", 5, 0, size)


def _read_pack_text(spec: str) -> tuple[str, str]:
    if spec.startswith("builtin:"):
        name = spec.removeprefix("builtin:")
        if not name.isidentifier():
            raise RulePackError(f"{spec}: not a valid built-in pack name")
        ref = resources.files("ext_proc") / "rules" / f"{name}.yaml"
        try:
            return ref.read_text(encoding="utf-8"), spec
        except FileNotFoundError:
            raise RulePackError(f"{spec}: no such built-in rule pack") from None
    path = Path(spec)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise RulePackError(f"{path}: cannot read rule pack ({exc.__class__.__name__})") from None


def load_rule_pack(spec: str) -> RulePack:
    """Read and structurally check one rule pack (``builtin:<name>`` or a file path)."""
    text, source = _read_pack_text(spec)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulePackError(f"{source}: invalid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise RulePackError(f"{source}: expected a mapping with a 'rules' list")
    rules: list[dict[str, Any]] = []
    examples: dict[str, dict[str, tuple[str, ...]]] = {}
    for index, raw in enumerate(data["rules"]):
        if not isinstance(raw, dict):
            raise RulePackError(f"{source}: rules[{index}]: expected a mapping")
        rule_id = raw.get("id", f"rules[{index}]")
        unknown = set(raw) - set(_NATIVE_KEYS) - set(_DOC_KEYS)
        if unknown:
            raise RulePackError(f"{source}: rule {rule_id}: unknown key(s) {sorted(unknown)}")
        rules.append({k: raw[k] for k in _NATIVE_KEYS if k in raw and raw[k] is not None})
        ex = raw.get("examples") or {}
        if not isinstance(ex, dict):
            raise RulePackError(f"{source}: rule {rule_id}: examples must be a mapping")
        examples[str(rule_id)] = {
            kind: tuple(str(s) for s in ex.get(kind) or ()) for kind in ("match", "no_match")
        }
    name = str(data.get("name") or source)
    return RulePack(name=name, source=source, rules=tuple(rules), examples=examples)


# Bytes the leetspeak view folds to letters: an injection rule's matches that hold them are left
# to that view, which the same rules scan (see the keyword coverage check below).
_LEET_BYTES = b"0134579@$"


@functools.lru_cache(maxsize=4096)
def _coverage(
    rule_id: str,
    pattern: str,
    keywords: tuple[str, ...],
    case_insensitive: bool,
    left_out: bytes,
    skip_lookalikes: bool,
) -> tuple[str, bytes | None]:
    return native.keyword_coverage(
        rule_id,
        pattern,
        list(keywords),
        case_insensitive=case_insensitive,
        left_out=left_out,
        skip_lookalikes=skip_lookalikes,
    )


def keyword_coverage(
    rule: Mapping[str, Any], *, normalized: bool = True
) -> tuple[str, bytes | None]:
    """The native coverage verdict for one rule with keywords (see
    :func:`check_keyword_coverage`): ``("covered" | "gap" | "unknown", example)``."""
    left_out = _LEET_BYTES if normalized and rule.get("category") == LEET_CATEGORY else b""
    return _coverage(
        str(rule["id"]),
        str(rule["pattern"]),
        tuple(rule.get("keywords") or ()),
        bool(rule.get("case_insensitive")),
        left_out,
        normalized,
    )


def check_keyword_coverage(pack: RulePack, *, normalized: bool = True) -> None:
    """Raise :class:`RulePackError` when a rule's keywords miss some of its matches.

    A rule's regex runs only on bodies where one of its keywords occurs, so a match without a
    keyword would pass unseen. The native check searches the pattern for such a match and the
    error shows a short one, so the author sees which keyword to add. Matches that
    hold the lookalike letters U+017F or U+212A (the canonical view turns them into ``s`` and
    ``k``) or, for injection rules, leetspeak digits (the leet view folds them) are left out when
    ``normalized`` (the views exist). A pattern too large to search completes silently: the
    check is a help, not a gate.
    """
    for rule in pack.rules:
        if not rule.get("keywords"):
            continue
        try:
            status, example = keyword_coverage(rule, normalized=normalized)
        except native.TrapError as exc:
            raise RulePackError(f"{pack.source}: {exc}") from None
        if status == "gap" and example is not None:
            shown = example.decode("utf-8", "backslashreplace")
            raise RulePackError(
                f"{pack.source}: rule {rule['id']}: keywords: the pattern matches {shown!r}, "
                "which holds none of them, so such a match would never be searched for; add a "
                "keyword that every match holds (a space in a keyword stands for any run of "
                "white space)"
            )


class TrapSet:
    """The compiled traps of one process: a regex rule set and, optionally, the entropy trap."""

    def __init__(self, packs: Sequence[RulePack], settings: TrapSettings) -> None:
        rules = [rule for pack in packs for rule in pack.rules]
        sources = ", ".join(pack.source for pack in packs)
        try:
            self._regex = native.RegexTrap(rules, simd=settings.simd, tune=settings.tune_filter)
        except native.TrapError as exc:
            raise RulePackError(f"{sources}: {exc}") from None
        # The built-in packs are checked by the test suite; a file pack at every load.
        for pack in packs:
            if not pack.source.startswith("builtin:"):
                check_keyword_coverage(pack, normalized=settings.normalize.enabled)
        ent = settings.entropy
        self._entropy: native.EntropyTrap | None = None
        if ent.enabled:
            try:
                self._entropy = native.EntropyTrap(
                    min_length=ent.min_length,
                    hex_threshold=ent.hex_threshold,
                    base64_threshold=ent.base64_threshold,
                    alnum_threshold=ent.alnum_threshold,
                )
            except native.TrapError as exc:
                raise RulePackError(f"traps.entropy: {exc}") from None
        norm = settings.normalize
        self._normalizer: native.Normalizer | None = None
        self._leet: native.RegexTrap | None = None
        if norm.enabled:
            self._normalizer = native.Normalizer(
                max_depth=norm.max_depth,
                max_decoded_bytes=norm.max_decoded_bytes,
                min_blob_len=norm.min_blob_len,
                min_text_blob_len=norm.min_text_blob_len,
                max_decompressed_bytes=norm.max_decompressed_bytes,
                max_ratio=norm.max_ratio,
            )
            # The leetspeak view folds digits into letters: only injection phrases are looked
            # for there (a secret's digits are not leetspeak).
            injection = [r for r in rules if r.get("category") == LEET_CATEGORY]
            if injection:
                self._leet = native.RegexTrap(
                    injection, simd=settings.simd, tune=settings.tune_filter
                )
        self._decompress_limits = (norm.max_decompressed_bytes, norm.max_ratio)
        self.max_findings = settings.max_findings
        self.packs = tuple(packs)

    @classmethod
    def from_settings(cls, settings: TrapSettings) -> TrapSet:
        return cls([load_rule_pack(spec) for spec in settings.rule_packs], settings)

    @property
    def rule_ids(self) -> list[str]:
        return self._regex.rule_ids

    def __len__(self) -> int:
        return len(self._regex)

    @property
    def prefilter(self) -> str:
        """The keyword search the main trap uses (``avx512-teddy``, ``shift-or``, ...)."""
        return self._regex.prefilter

    @property
    def filter_rebuilds(self) -> int:
        """Times the main trap's AVX-512 filter has rebuilt itself from the traffic (0 to
        ``FILTER_TUNING_ROUNDS``)."""
        return self._regex.filter_rebuilds

    @property
    def decompress_limits(self) -> tuple[int, float]:
        """The decompression bounds: most bytes out, and most output per input byte."""
        return self._decompress_limits

    def decompress(self, data: bytes, encoding: str) -> bytes:
        """Decode a Content-Encoding (gzip, deflate, br) within the configured bounds.

        Raises :class:`BodyDecodeError` on corrupt data or a bound exceeded (zip bombs).
        """
        max_bytes, max_ratio = self._decompress_limits
        try:
            return native.decompress(data, encoding, max_bytes=max_bytes, max_ratio=max_ratio)
        except native.TrapError as exc:
            raise BodyDecodeError(str(exc)) from None

    def views(self, data: bytes) -> list[tuple[str, bytes]]:
        """The normalised views a scan of ``data`` uses, as (name, bytes), raw first.

        For inspection and tests: the leet view is listed only when the scan would build it
        (a keyword of an injection rule could occur in it). Only raw without normalisation.
        """
        if self._normalizer is None:
            return [("raw", data)]
        return self._normalizer.views(data, self._regex, self._leet)

    def scan(self, data: bytes) -> list[Finding]:
        """Run every trap over ``data`` and its normalised views (one native call).

        Findings are sorted by position; spans are offsets into ``data`` even when the match
        was made in a decoded or folded view. A normalisation bound that was hit is reported
        as a zero-width finding of category ``limits`` (rule ``normalize-limit-<bound>``).
        """
        regex_hits: Sequence[native.Finding]
        entropy_hits: Sequence[native.EntropyFinding | native.ViewEntropyFinding]
        if self._normalizer is None:
            regex_hits, entropy_hits = native.scan_all(self._regex, self._entropy, data)
            limits: list[str] = []
        else:
            result = self._normalizer.scan(self._regex, self._leet, self._entropy, data)
            regex_hits, entropy_hits, limits = result.findings, result.entropy, result.limits_hit
        if len(regex_hits) > self.max_findings:
            # Each finding costs Python work; a body stuffed with matches is refused whole.
            return [too_many_findings(len(data))]
        found = [
            Finding("regex", f.rule_id, f.category, f.severity, f.weight, f.start, f.end)
            for f in regex_hits
        ]
        found.extend(
            Finding("normalize", f"normalize-limit-{name}", LIMITS_CATEGORY, "warning", 3, 0, 0)
            for name in limits
        )
        if entropy_hits:
            found.extend(_entropy_findings(entropy_hits, found))
            found.sort(key=lambda f: (f.start, f.end))
        return found


def _entropy_findings(
    hits: Iterable[native.EntropyFinding | native.ViewEntropyFinding],
    regex_found: Sequence[Finding],
) -> list[Finding]:
    """Entropy hits that overlap no regex finding (a named secret beats 'random').

    Linear after sorting: regex spans are merged into disjoint intervals and each hit is
    looked up by bisection, so a body full of findings costs no quadratic work.
    """
    merged: list[list[int]] = []
    for f in sorted(regex_found, key=lambda f: f.start):
        if merged and f.start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], f.end)
        else:
            merged.append([f.start, f.end])
    starts = [m[0] for m in merged]
    out = []
    for hit in hits:
        i = bisect.bisect_left(starts, hit.end) - 1  # last interval starting before hit.end
        if i >= 0 and merged[i][1] > hit.start:
            continue
        out.append(
            Finding(
                "entropy",
                f"entropy-{hit.charset}",
                ENTROPY_CATEGORY,
                ENTROPY_SEVERITY,
                ENTROPY_WEIGHT,
                hit.start,
                hit.end,
            )
        )
    return out
