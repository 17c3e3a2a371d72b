//! Any bytes through `Views::build` + `scan_views` with a small rule set:
//! no panic, findings inside the body, sorted, no duplicate (rule, span);
//! and a rule whose keyword has a space (any run of white space) finds on
//! the raw bytes exactly what the same rule without keywords finds.
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
        let rules = vec![
            RuleSpec::new("aws", "secret", Severity::Critical, r"\bAKIA[A-Z2-7]{16}\b")
                .with_keywords(["akia"]),
            RuleSpec::new("digits", "test", Severity::Notice, r"[0-9]{4}"),
            injection.clone(),
            phrase_rule(),
        ];
        (
            RegexTrap::compile(rules).expect("rules compile"),
            RegexTrap::compile(vec![injection]).expect("rule compiles"),
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
    assert_eq!(spans(regex.scan(data), 3), spans(unkeyed().scan(data), 0));
});
