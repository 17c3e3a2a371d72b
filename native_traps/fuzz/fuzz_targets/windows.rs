//! Differential: digit windows against a search of the whole body. The
//! patterns of the built-in `pii`, `secrets` and `injection` packs (no
//! keywords and no validators, so every rule runs and raw matches are
//! compared; the digit-shaped ones search windows), with and without their
//! batches, scan the input; the findings must be exactly those of each
//! rule's `regex::bytes::Regex` over the whole input (the engine before
//! windows).
#![no_main]

use std::sync::OnceLock;

use _native_traps::{Finding, RegexTrap, RuleSpec, Severity};
use libfuzzer_sys::fuzz_target;
use regex::bytes::{Regex, RegexBuilder};

/// The packs' rules, read from their `- id:`, `pattern:` (single-quoted),
/// `case_insensitive:` and `batch:` lines.
fn pack_rules() -> Vec<RuleSpec> {
    let yaml = [
        include_str!("../../../ext_proc/rules/pii.yaml"),
        include_str!("../../../ext_proc/rules/secrets.yaml"),
        include_str!("../../../ext_proc/rules/injection.yaml"),
    ]
    .join("\n");
    let mut rules: Vec<RuleSpec> = Vec::new();
    for line in yaml.lines().map(str::trim) {
        if let Some(id) = line.strip_prefix("- id: ") {
            rules.push(RuleSpec::new(id, "builtin", Severity::Notice, ""));
        } else if let Some(pattern) = line.strip_prefix("pattern: ") {
            let inner = &pattern[1..pattern.len() - 1];
            rules.last_mut().expect("a rule").pattern = inner.replace("''", "'");
        } else if line == "case_insensitive: true" {
            rules.last_mut().expect("a rule").case_insensitive = true;
        } else if let Some(batch) = line.strip_prefix("batch: ") {
            rules.last_mut().expect("a rule").batch = Some(batch.to_owned());
        }
    }
    rules
}

struct Case {
    trap: RegexTrap,
    regexes: Vec<Regex>,
}

fn cases() -> &'static [Case; 2] {
    static CASES: OnceLock<[Case; 2]> = OnceLock::new();
    CASES.get_or_init(|| {
        let batched = pack_rules();
        let unbatched = batched
            .iter()
            .cloned()
            .map(|r| RuleSpec { batch: None, ..r })
            .collect();
        [batched, unbatched].map(|rules: Vec<RuleSpec>| {
            let regexes = rules
                .iter()
                .map(|r| {
                    RegexBuilder::new(&r.pattern)
                        .case_insensitive(r.case_insensitive)
                        .build()
                        .expect("pattern")
                })
                .collect();
            Case {
                trap: RegexTrap::compile(rules).expect("built-in packs"),
                regexes,
            }
        })
    })
}

fuzz_target!(|data: &[u8]| {
    for case in cases() {
        let mut expected = Vec::new();
        for index in case.trap.candidate_rules(data) {
            let regex = &case.regexes[index];
            let group = regex.capture_names().position(|n| n == Some("secret"));
            for caps in regex.captures_iter(data) {
                let m = group.and_then(|g| caps.get(g)).or_else(|| caps.get(0));
                let m = m.expect("group 0 always matches");
                if m.start() < m.end() {
                    expected.push(Finding {
                        rule_index: index,
                        start: m.start(),
                        end: m.end(),
                    });
                }
            }
        }
        expected.sort_unstable_by_key(|f| (f.start, f.end, f.rule_index));
        expected.dedup();
        assert_eq!(case.trap.scan(data), expected);
    }
});
