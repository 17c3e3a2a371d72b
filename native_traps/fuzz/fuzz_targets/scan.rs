//! Any bytes through `Views::build` + `scan_views` with a small rule set:
//! no panic, findings inside the body, sorted, no duplicate (rule, span).
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;

use _native_traps::normalize::{scan_views, NormalizeOptions, ViewKind, Views};
use _native_traps::{EntropyTrap, RegexTrap, RuleSpec, Severity};
use libfuzzer_sys::fuzz_target;

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
});
