"""Detection evaluation: run ``godel scan --jsonl`` over the generated corpus and score it.

    .venv/bin/python eval/run.py [--policy eval/godel-eval.yaml] [--seed 1] [--entropy-counts]
                                 [--write-doc] [--check] [--dump FILE]

The harness only uses the public ``godel scan`` contract (a subprocess; exit 0 clean, 1 found,
2 error; a finding's ``category`` says what was detected), so it measures whatever the configured
rule packs and normaliser do today. Evasions that only exist on the HTTP path (a gzip request
body, a payload split across SSE events) go through the server's own servicer and pipeline in
this process instead (eval/httppath.py). It prints a markdown report: per category precision, recall
and false-positive rates, recall per evasion, and the targets with PASS/FAIL. ``--check`` exits 1
if a target fails; ``--write-doc`` rewrites the results section of docs/detection.md.
See docs/detection.md for the scoring rules.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import corpus
import evasions
import httppath
from corpus import Sample

from ext_proc.errors import GodelError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = ROOT / "eval" / "godel-eval.yaml"
DOC = ROOT / "docs" / "detection.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
CATEGORIES = ("secret", "pii", "injection")
ENTROPY = "entropy"
EVASION_TOLERANCE = 0.05


@dataclass(frozen=True, slots=True)
class Target:
    category: str
    min_recall: float
    max_flagged: float
    flagged_on: str  # "benign" or "hard negatives"


TARGETS = (
    Target("secret", 0.97, 0.001, "benign"),
    Target("pii", 0.95, 0.01, "benign"),
    Target("injection", 0.80, 0.02, "hard negatives"),
)


@dataclass(frozen=True, slots=True)
class Result:
    categories: frozenset[str]
    entropy: bool


@dataclass(slots=True)
class Ratio:
    hit: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        self.hit += ok
        self.total += 1

    @property
    def value(self) -> float | None:
        return self.hit / self.total if self.total else None

    def fmt(self, pct: bool = False) -> str:
        v = self.value
        if v is None:
            return "n/a"
        if pct:
            return f"{100 * v:.2f} % ({self.hit}/{self.total})"
        return f"{v:.3f} ({self.hit}/{self.total})"


@dataclass(slots=True)
class Report:
    lines: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, *rows: str) -> None:
        self.lines.extend(rows)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class EvalError(Exception):
    """The harness could not run (godel failed, a file is missing); exit status 2."""


# -- running godel --------------------------------------------------------------------------------
def godel_binary() -> str:
    here = Path(sys.executable).parent / "godel"
    if here.exists():
        return str(here)
    venv = ROOT / ".venv" / "bin" / "godel"
    return str(venv) if venv.exists() else "godel"


MAX_CRASHES = 50


@dataclass(slots=True)
class Crash:
    """A line on which ``godel scan`` died (it then counts as not detected and not flagged)."""

    sample_id: str
    error: str


def _scan_once(
    samples: Sequence[Sample], policy: Path, godel: str, tmp: Path
) -> tuple[dict[str, Result], subprocess.CompletedProcess[str], list[str]]:
    path = tmp / "corpus.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for s in samples:
            fh.write(json.dumps({"id": s.id, "text": s.text}, ensure_ascii=False) + "\n")
    cmd = [godel, "scan", "--jsonl", "--policy", str(policy), str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    results: dict[str, Result] = {}
    for line in proc.stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            break  # a partial last line from a crashed run
        cats = {str(f["category"]) for f in obj["findings"]}
        results[str(obj["id"])] = Result(frozenset(cats - {ENTROPY}), ENTROPY in cats)
    return results, proc, cmd


def scan(
    samples: Sequence[Sample], policy: Path, godel: str
) -> tuple[dict[str, Result], list[Crash]]:
    """Run ``godel scan --jsonl`` over ``samples``: the findings' categories per sample id.

    ``godel scan`` answers line by line, in order. If it dies part-way (an uncaught exception
    also exits 1, like "found something"), the first line without an answer is recorded as a
    crash, and the scan resumes after it, up to :data:`MAX_CRASHES` times.
    """
    results: dict[str, Result] = {}
    crashes: list[Crash] = []
    todo = list(samples)
    with tempfile.TemporaryDirectory(prefix="godel-eval-") as tmp:
        while todo:
            got, proc, cmd = _scan_once(todo, policy, godel, Path(tmp))
            results.update(got)
            if proc.returncode not in (0, 1):
                raise EvalError(
                    f"`{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stderr.strip()}"
                )
            rest = [s for s in todo if s.id not in results]
            if not rest:
                break
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            crashes.append(Crash(rest[0].id, last))
            if len(crashes) > MAX_CRASHES:
                raise EvalError(f"godel scan died on more than {MAX_CRASHES} lines; last: {last}")
            todo = rest[1:]
    return results, crashes


def godel_version(godel: str) -> str:
    proc = subprocess.run([godel, "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "godel (unknown version)"


def rule_packs(policy: Path) -> str:
    try:
        from ext_proc.config import load_config

        return ", ".join(load_config(policy).traps.rule_packs)
    except Exception as exc:  # the report still runs against a config we cannot parse here
        return f"(unreadable: {exc.__class__.__name__})"


# -- scoring ----------------------------------------------------------------------------------
def detected(sample: Sample, result: Result, entropy_counts: bool) -> bool:
    """A positive line counts as detected if any finding has its label's category."""
    if sample.label in result.categories:
        return True
    return sample.label == "secret" and entropy_counts and result.entropy


@dataclass(slots=True)
class Scores:
    recall: dict[str, Ratio]
    precision: dict[str, Ratio]
    benign_flagged: dict[str, Ratio]
    hard_flagged: dict[str, Ratio]
    entropy_on_secrets: Ratio
    entropy_on_benign: Ratio
    by_kind: dict[tuple[str, str], Ratio]
    evasion: dict[tuple[str, str], Ratio]
    evasion_base: dict[tuple[str, str], Ratio]


def score(
    plain: Sequence[Sample],
    evaded: Sequence[Sample],
    results: dict[str, Result],
    entropy_counts: bool = False,
) -> Scores:
    """Precision, recall and false-positive rates from ``results`` (pure; see the module doc)."""
    recall = {c: Ratio() for c in CATEGORIES}
    precision = {c: Ratio() for c in CATEGORIES}
    benign_flagged = {c: Ratio() for c in CATEGORIES}
    hard_flagged = {c: Ratio() for c in CATEGORIES}
    by_kind: dict[tuple[str, str], Ratio] = defaultdict(Ratio)
    ent_secret, ent_benign = Ratio(), Ratio()
    plain_hit: dict[str, bool] = {}
    for s in plain:
        r = results[s.id]
        found = set(r.categories)
        if entropy_counts and r.entropy:
            found.add("secret")
        if s.label in CATEGORIES:
            ok = detected(s, r, entropy_counts)
            plain_hit[s.id] = ok
            recall[s.label].add(ok)
            by_kind[(s.label, s.kind)].add(ok)
            if s.label == "secret":
                ent_secret.add(r.entropy)
        else:
            ent_benign.add(r.entropy)
            for c in CATEGORIES:
                benign_flagged[c].add(c in found)
            if s.hard_negative and s.hard_negative_for in CATEGORIES:
                hard_flagged[s.hard_negative_for].add(s.hard_negative_for in found)
        for c in CATEGORIES:
            if c in found:  # a flag for c: true positive if the line is labelled c
                precision[c].add(s.label == c)
    evasion: dict[tuple[str, str], Ratio] = defaultdict(Ratio)
    base: dict[tuple[str, str], Ratio] = defaultdict(Ratio)
    for s in evaded:
        base_id = s.id.rsplit("~", 1)[0]
        evasion[(s.label, s.evasion)].add(detected(s, results[s.id], entropy_counts))
        base[(s.label, s.evasion)].add(plain_hit[base_id])
    return Scores(
        recall,
        precision,
        benign_flagged,
        hard_flagged,
        ent_secret,
        ent_benign,
        dict(by_kind),
        dict(evasion),
        dict(base),
    )


# -- report -----------------------------------------------------------------------------------
def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render(
    scores: Scores,
    plain: Sequence[Sample],
    evaded: Sequence[Sample],
    header: Iterable[str],
) -> Report:
    rep = Report()
    n: dict[str, int] = defaultdict(int)
    for s in plain:
        n[s.label] += 1
    hard = sum(s.hard_negative for s in plain)
    http_names = {name for name, _ in httppath.HTTP_EVASIONS}
    http = sum(s.evasion in http_names for s in evaded)
    rep.add(*header)
    rep.add(
        f"Corpus: {len(plain)} plain lines (secret {n['secret']}, pii {n['pii']}, injection "
        f"{n['injection']}, benign {n['benign']} of which {hard} hard negatives) and "
        f"{len(evaded)} evaded variants ({http} of them through the in-process HTTP path).",
        "",
        "### Per category (plain lines)",
        "",
        "| category | recall | precision | benign lines flagged | its hard negatives flagged |",
        "|---|---|---|---|---|",
    )
    for c in CATEGORIES:
        rep.add(
            f"| {c} | {scores.recall[c].fmt()} | {scores.precision[c].fmt()} | "
            f"{scores.benign_flagged[c].fmt(pct=True)} | {scores.hard_flagged[c].fmt(pct=True)} |"
        )
    rep.add(
        f"| entropy (reported only) | secret lines with an entropy finding: "
        f"{scores.entropy_on_secrets.fmt()} | - | {scores.entropy_on_benign.fmt(pct=True)} | - |",
        "",
        "### Recall under evasion",
        "",
        "Each cell: recall on the evaded variants (change against the same lines unevaded).",
        f"{', '.join(n for n, _ in httppath.HTTP_EVASIONS)}: through the ext_proc servicer and "
        "pipeline of `godel serve`, in process (no Envoy); tests/e2e covers the same paths over "
        "HTTP through a real Envoy.",
        "",
    )
    names = [e.name for e in evasions.EVASIONS] + [name for name, _ in httppath.HTTP_EVASIONS]
    rep.add(
        "| category | plain | " + " | ".join(names) + " |",
        "|---" * (2 + len(names)) + "|",
    )
    for c in CATEGORIES:
        cells = []
        for e in names:
            r = scores.evasion.get((c, e))
            b = scores.evasion_base.get((c, e))
            if r is None or b is None or r.value is None or b.value is None:
                cells.append("n/a")
            else:
                cells.append(f"{r.value:.3f} ({100 * (r.value - b.value):+.1f})")
        rep.add(f"| {c} | {_fmt(scores.recall[c].value)} | " + " | ".join(cells) + " |")

    rep.add("", "### Targets", "", "| target | measured | result |", "|---|---|---|")
    for t in TARGETS:
        rec = scores.recall[t.category].value or 0.0
        flagged = (scores.benign_flagged if t.flagged_on == "benign" else scores.hard_flagged)[
            t.category
        ]
        fl = flagged.value or 0.0
        ok_r, ok_f = rec >= t.min_recall, fl <= t.max_flagged
        rep.add(
            f"| {t.category} recall >= {t.min_recall:.2f} | {rec:.3f} | {_verdict(ok_r)} |",
            f"| {t.category}: {t.flagged_on} flagged <= {100 * t.max_flagged:g} % | "
            f"{flagged.fmt(pct=True)} | {_verdict(ok_f)} |",
        )
        if not ok_r:
            rep.failed.append(f"{t.category} recall")
        if not ok_f:
            rep.failed.append(f"{t.category} {t.flagged_on} flagged")
    for c in CATEGORIES:
        worst: tuple[float, str] | None = None
        for e in names:
            r, b = scores.evasion.get((c, e)), scores.evasion_base.get((c, e))
            if r is None or b is None or r.value is None or b.value is None:
                continue
            delta = r.value - b.value
            if worst is None or delta < worst[0]:
                worst = (delta, e)
        if worst is None:
            continue
        ok = worst[0] >= -EVASION_TOLERANCE
        rep.add(
            f"| {c}: recall under every evasion within "
            f"{100 * EVASION_TOLERANCE:g} points of plain | "
            f"worst {worst[1]} {100 * worst[0]:+.1f} points | {_verdict(ok)} |"
        )
        if not ok:
            rep.failed.append(f"{c} evasion")

    rep.add("", "### Kinds not fully detected (plain lines)", "")
    for c in CATEGORIES:
        missed = sorted(
            (r.value or 0.0, kind, r)
            for (cat, kind), r in scores.by_kind.items()
            if cat == c and (r.value or 0.0) < 1.0
        )
        total = sum(1 for (cat, _) in scores.by_kind if cat == c)
        if not missed:
            rep.add(f"- {c}: all {total} kinds fully detected.")
            continue
        items = ", ".join(f"{kind} {r.hit}/{r.total}" for _, kind, r in missed)
        rep.add(f"- {c} ({len(missed)} of {total} kinds): {items}")
    rep.add(
        "",
        f"Targets failed: {len(rep.failed)}"
        + (f" ({', '.join(rep.failed)})" if rep.failed else ""),
    )
    return rep


def write_doc(text: str, doc: Path = DOC) -> None:
    content = doc.read_text(encoding="utf-8")
    try:
        head, rest = content.split(START, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise EvalError(f"{doc} lacks the {START} / {END} markers") from None
    doc.write_text(f"{head}{START}\n{text}{END}{tail}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="godel config to scan with")
    p.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    p.add_argument(
        "--entropy-counts",
        action="store_true",
        help="count an entropy finding on a secret line as a secret detection",
    )
    p.add_argument("--write-doc", action="store_true", help="rewrite docs/detection.md results")
    p.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    p.add_argument("--dump", type=Path, help="also write the labelled corpus as JSONL here")
    p.add_argument("--godel", default=None, help="godel executable (default: the venv's)")
    args = p.parse_args(argv)

    started = time.monotonic()
    plain = corpus.build_corpus(args.seed)
    offline = evasions.apply_all(plain, args.seed)
    everything = [*plain, *offline]
    cases = httppath.build_cases(plain, args.seed)
    evaded = [*offline, *(c.sample for c in cases)]
    if args.dump:
        with args.dump.open("w", encoding="utf-8") as fh:
            for s in everything:
                rec = {**s.record(), "evasion": s.evasion}
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            for c in cases:  # the line as scanned plain, and the ext_proc body chunks
                chunks = [ch.decode("utf-8", "replace") for ch in c.chunks]
                rec = {**c.sample.record(), "evasion": c.sample.evasion}
                if c.sample.evasion != httppath.GZIP:
                    rec["chunks"] = chunks
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    godel = args.godel or godel_binary()
    try:
        results, crashes = scan(everything, args.policy, godel)
        http_started = time.monotonic()
        for sid, r in httppath.run_cases(cases, args.policy).items():
            results[sid] = Result(r.categories, r.entropy)
        http_seconds = time.monotonic() - http_started
    except (EvalError, OSError, subprocess.TimeoutExpired, GodelError) as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 2
    for crash in crashes:
        results[crash.sample_id] = Result(frozenset(), False)
    scores = score(plain, evaded, results, args.entropy_counts)
    resolved = args.policy.resolve()
    policy = str(resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved)
    header = [
        f"Policy `{policy}` (rule packs: {rule_packs(args.policy)}), seed {args.seed}, "
        f"{godel_version(godel)}, {dt.datetime.now(dt.UTC):%Y-%m-%d}. Entropy findings "
        + ("count" if args.entropy_counts else "do not count")
        + " as secret detections.",
        "",
    ]
    if crashes:
        header += [
            f"**`godel scan` crashed on {len(crashes)} line(s)**; they count as not detected. "
            f"First: `{crashes[0].sample_id}`: {crashes[0].error}",
            "",
        ]
    report = render(scores, plain, evaded, header)
    text = report.text()
    sys.stdout.write(text)
    print(
        f"(eval: {len(everything)} lines through godel scan and {len(cases)} through the "
        f"in-process HTTP path ({http_seconds:.1f} s) in {time.monotonic() - started:.1f} s)",
        file=sys.stderr,
    )
    if args.write_doc:
        try:
            write_doc(text)
        except (EvalError, OSError) as exc:
            print(f"eval: {exc}", file=sys.stderr)
            return 2
    if args.check and report.failed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
