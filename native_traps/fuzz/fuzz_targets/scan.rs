//! Any bytes through `Views::build` + `scan_views` with a small rule set:
//! no panic, findings inside the body, sorted, no duplicate (rule, span);
//! a rule whose keyword has a space (any run of white space) finds on the
//! raw bytes exactly what the same rule without keywords finds; and the
//! leet view, scanned only when the gate lets it (`leet_gate.rs`), yields
//! every finding that scanning it always would.
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;

use _native_traps::normalize::{scan_views, NormalizeOptions, ViewKind, Views};
use _native_traps::{EntropyTrap, Finding, RegexTrap, RuleSpec, Severity};
use libfuzzer_sys::fuzz_target;

fn phrase_rule() -> RuleSpec {
    RuleSpec::new(
        "phrase",
        "injection",
        Severity::Error,
        r"(?i)\bstop\s+follow(?:ing)?\s+(?:the\s+)?rules",
    )
    .with_keywords(["stop follow"])
}

fn unkeyed() -> &'static RegexTrap {
    static TRAP: OnceLock<RegexTrap> = OnceLock::new();
    TRAP.get_or_init(|| {
        RegexTrap::compile(vec![phrase_rule().with_keywords(Vec::<String>::new())])
            .expect("rule compiles")
    })
}

fn traps() -> &'static (RegexTrap, RegexTrap, EntropyTrap) {
    static TRAPS: OnceLock<(RegexTrap, RegexTrap, EntropyTrap)> = OnceLock::new();
    TRAPS.get_or_init(|| {
        let injection = RuleSpec::new(
            "ignore",
            "injection",
            Severity::Critical,
            r"\bignore\s+(?:all\s+)?previous\s+instructions\b",
        )
        .with_keywords(["ignore"])
        .with_case_insensitive(true);
        // Keywords of several words, cut at spaces and an apostrophe.
        let leet_rules = [
            injection,
            RuleSpec::new(
                "prompt-is",
                "injection",
                Severity::Error,
                r"(?i)\bsystem\s+prompt\s+is\b",
            )
            .with_keywords(["system prompt is"]),
            RuleSpec::new(
                "act-as",
                "injection",
                Severity::Error,
                r"(?i)\bact\s+as\s+dan\b",
            )
            .with_keywords(["act as"]),
            RuleSpec::new(
                "dont",
                "injection",
                Severity::Error,
                r"(?i)\bdon't\s+follow\b",
            )
            .with_keywords(["n't follow"]),
        ];
        let mut rules = vec![
            RuleSpec::new("aws", "secret", Severity::Critical, r"\bAKIA[A-Z2-7]{16}\b")
                .with_keywords(["akia"]),
            RuleSpec::new("digits", "test", Severity::Notice, r"[0-9]{4}"),
            phrase_rule(),
        ];
        rules.extend(leet_rules.iter().cloned());
        (
            RegexTrap::compile(rules).expect("rules compile"),
            RegexTrap::compile(leet_rules.to_vec()).expect("rules compile"),
            EntropyTrap::default(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (regex, leet, entropy) = traps();
    let views = Views::build(data, &NormalizeOptions::default());
    let result = scan_views(regex, Some(leet), Some(entropy), &views);
    let mut seen = HashSet::new();
    let mut last = (0, 0);
    for f in &result.findings {
        assert!(f.start < f.end && f.end <= data.len(), "{f:?}");
        assert!((f.start, f.end) >= last, "unsorted");
        last = (f.start, f.end);
        assert!(
            seen.insert((f.view == ViewKind::Leet, f.rule_index, f.start, f.end)),
            "duplicate {f:?}"
        );
    }
    for e in &result.entropy {
        assert!(e.start < e.end && e.end <= data.len(), "{e:?}");
    }
    let spans = |found: Vec<Finding>, rule: usize| -> Vec<(usize, usize)> {
        found
            .into_iter()
            .filter(|f| f.rule_index == rule)
            .map(|f| (f.start, f.end))
            .collect()
    };
    assert_eq!(spans(regex.scan(data), 2), spans(unkeyed().scan(data), 0));
    // The gate: what the leet trap finds in the leet view, scanned always.
    let always: HashSet<(usize, usize, usize)> = views
        .leet_view()
        .map(|view| {
            leet.scan(&view.bytes)
                .into_iter()
                .filter_map(|f| {
                    view.map_span(f.start, f.end)
                        .map(|(s, e)| (f.rule_index, s, e))
                })
                .collect()
        })
        .unwrap_or_default();
    let gated: HashSet<(usize, usize, usize)> = result
        .findings
        .iter()
        .filter(|f| f.view == ViewKind::Leet)
        .map(|f| (f.rule_index, f.start, f.end))
        .collect();
    assert_eq!(gated, always, "the leet gate kept the view from a match");
});
