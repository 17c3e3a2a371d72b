"""The Python face of ext_proc._native_traps: exception tree, one-call scan, GIL release."""

from __future__ import annotations

import threading

import pytest

from ext_proc import _native_traps as native

RULES = [
    {
        "id": "aws",
        "category": "secret",
        "severity": "critical",
        "pattern": r"AKIA[A-Z2-7]{16}",
        "keywords": ["akia"],
    },
]


def test_exception_tree() -> None:
    assert issubclass(native.RuleError, native.TrapError)
    assert issubclass(native.ParameterError, native.TrapError)
    assert issubclass(native.ParameterError, ValueError)
    with pytest.raises(native.RuleError, match="severity"):
        native.RegexTrap([{**RULES[0], "severity": "high"}])
    with pytest.raises(native.ParameterError, match="min_length"):
        native.EntropyTrap(min_length=-1)


def test_a_native_panic_is_an_ordinary_exception() -> None:
    # A Rust panic would otherwise reach Python as pyo3's PanicException, a
    # BaseException that the servicer's `except Exception` lets through.
    assert issubclass(native.InternalError, native.TrapError)
    with pytest.raises(native.InternalError, match="internal error in the native traps"):
        native._panic_for_tests()
    # The module is still usable afterwards.
    found = native.RegexTrap(RULES).scan(b"key AKIAIOSFODNN7EXAMPLE")
    assert [f.rule_id for f in found] == [RULES[0]["id"]]


def test_scan_all_equals_the_separate_scans() -> None:
    regex, entropy = native.RegexTrap(RULES), native.EntropyTrap()
    data = b"id AKIAIOSFODNN7EXAMPLE token aB3xK9mQ2pL7vR4tW8zY1cF6hJ0nS5dG end"
    found, high = native.scan_all(regex, entropy, data)
    assert [(f.rule_id, f.start, f.end) for f in found] == [
        (f.rule_id, f.start, f.end) for f in regex.scan(data)
    ]
    assert [(h.start, h.end) for h in high] == [(h.start, h.end) for h in entropy.scan(data)]
    assert native.scan_all(regex, None, data)[1] == []


def test_scan_releases_the_gil() -> None:
    """While a long scan runs in a thread, the main thread keeps executing Python code."""
    entropy = native.EntropyTrap()
    data = b"Zx9Qm2Lp7Vr4Tw8Yc1Fh6Jn0Sd5Gk3B " * 1_500_000  # 48 MB of candidate tokens
    started, done = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        native.scan_all(native.RegexTrap(RULES), entropy, data)
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    ticks = 0
    while not done.is_set():
        ticks += 1
    worker.join()
    # Holding the GIL, the scan would leave this thread a handful of iterations at most.
    assert ticks > 100_000, f"main thread starved during the scan ({ticks} iterations)"


def test_keyword_coverage_finds_a_match_without_a_keyword() -> None:
    assert native.keyword_coverage("r", r"ghp_[A-Za-z0-9]{36}", ["ghp_"]) == ("covered", None)
    status, example = native.keyword_coverage("r", r"(?i)ign(?:ore|oring) rules", ["nore"])
    assert status == "gap"
    assert example is not None
    assert example.strip() == b"ignoring rules"
    # A space in a keyword covers any run of white space; other bytes between the words not.
    assert native.keyword_coverage("r", r"stop\s+now", ["stop now"])[0] == "covered"
    assert native.keyword_coverage("r", r"stop[\s-]now", ["stop now"]) == ("gap", b"stop-now")
    # Bytes left out (for injection rules, the leetspeak digits the leet view folds).
    assert native.keyword_coverage("r", r"f[o0]rget", ["forget"])[0] == "gap"
    assert native.keyword_coverage("r", r"f[o0]rget", ["forget"], left_out=b"0")[0] == "covered"


def test_keyword_coverage_rejects_a_bad_rule() -> None:
    with pytest.raises(native.RuleError, match="pattern"):
        native.keyword_coverage("r", "(unclosed", ["x"])
    with pytest.raises(native.RuleError, match="keywords"):
        native.keyword_coverage("r", "x", [])
