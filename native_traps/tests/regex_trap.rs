//! Integration tests for `RegexTrap`.

mod common;

use std::time::{Duration, Instant};

use _native_traps::{Finding, RegexTrap, RuleSpec, Severity, TrapError, Validator};

fn aws_rule() -> RuleSpec {
    RuleSpec::new("aws", "secret", Severity::Critical, "AKIA[0-9A-Z]{16}").with_keywords(["akia"])
}

fn span(f: &Finding) -> (usize, usize) {
    (f.start, f.end)
}

#[test]
fn aws_key_found_with_byte_span_inside_json_after_multibyte_text() {
    let trap = RegexTrap::compile(vec![aws_rule()]).unwrap();
    let body = r#"{"messages":[{"role":"user","content":"Grüße aus Köln 🚀 — key AKIAIOSFODNN7EXAMPLE ok"}]}"#;
    let data = body.as_bytes();
    let found = trap.scan(data);
    assert_eq!(found.len(), 1, "{found:?}");
    let expected_start = body.find("AKIA").unwrap();
    // The offsets are bytes, not characters: the prefix holds multi-byte text.
    assert!(body[..expected_start].chars().count() < expected_start);
    assert_eq!(span(&found[0]), (expected_start, expected_start + 20));
    assert_eq!(&data[found[0].start..found[0].end], b"AKIAIOSFODNN7EXAMPLE");
    assert_eq!(found[0].rule_index, 0);

    let rule = trap.rule(0).unwrap();
    assert_eq!(rule.id, "aws");
    assert_eq!(rule.category, "secret");
    assert_eq!(rule.severity, Severity::Critical);
    assert_eq!(rule.severity.weight(), 5);
}

#[test]
fn prefilter_skips_rules_whose_keyword_is_absent() {
    let trap = RegexTrap::compile(vec![
        aws_rule(),
        // Would match "ab" everywhere, but only runs when "zebra" occurs.
        RuleSpec::new("keyed", "test", Severity::Notice, "ab").with_keywords(["zebra"]),
        // No keywords: always runs.
        RuleSpec::new("always", "test", Severity::Notice, "ab"),
    ])
    .unwrap();

    let data = b"xx ab yy";
    assert_eq!(trap.candidate_rules(data), vec![2]);
    let found = trap.scan(data);
    assert_eq!(
        found,
        vec![Finding {
            rule_index: 2,
            start: 3,
            end: 5
        }]
    );

    // Keyword present in another case: rule 1 runs too (ASCII case-insensitive).
    let data = b"ZeBrA ab";
    assert_eq!(trap.candidate_rules(data), vec![1, 2]);
    let found = trap.scan(data);
    assert_eq!(
        found,
        vec![
            Finding {
                rule_index: 1,
                start: 6,
                end: 8
            },
            Finding {
                rule_index: 2,
                start: 6,
                end: 8
            },
        ]
    );
}

#[test]
fn keyword_match_is_case_insensitive_but_pattern_is_not_unless_asked() {
    let trap = RegexTrap::compile(vec![
        aws_rule(),
        RuleSpec::new("ci", "test", Severity::Notice, "secret=[a-z]+")
            .with_keywords(["SECRET"])
            .with_case_insensitive(true),
    ])
    .unwrap();
    // Lowercase key id: the keyword hits, the case-sensitive pattern does not.
    assert!(trap.scan(b"akiaiosfodnn7example").is_empty());
    let found = trap.scan(b"SeCrEt=ABC");
    assert_eq!(
        found,
        vec![Finding {
            rule_index: 1,
            start: 0,
            end: 10
        }]
    );
}

#[test]
fn luhn_validator_filters_matches() {
    let trap = RegexTrap::compile(vec![RuleSpec::new(
        "card",
        "pii",
        Severity::Error,
        r"[0-9](?:[ -]?[0-9]){12,18}",
    )
    .with_validator(Validator::Luhn)])
    .unwrap();
    let good = b"pay with 4111 1111 1111 1111 today";
    let found = trap.scan(good);
    assert_eq!(found.len(), 1);
    assert_eq!(&good[found[0].start..found[0].end], b"4111 1111 1111 1111");
    assert!(trap.scan(b"pay with 4111 1111 1111 1112 today").is_empty());
}

#[test]
fn named_group_secret_narrows_the_span() {
    let trap = RegexTrap::compile(vec![RuleSpec::new(
        "pw",
        "credential",
        Severity::Warning,
        r#"password\s*[:=]\s*"?(?P<secret>[^\s"]+)"#,
    )
    .with_keywords(["password"])])
    .unwrap();
    let data = br#"{"config":"password = "hunter22" end"}"#;
    let found = trap.scan(data);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(&data[found[0].start..found[0].end], b"hunter22");
}

#[test]
fn secret_group_not_taking_part_falls_back_to_whole_match() {
    let trap = RegexTrap::compile(vec![RuleSpec::new(
        "alt",
        "test",
        Severity::Notice,
        r"token=(?P<secret>[a-z]+)|BEGIN-[0-9]+",
    )])
    .unwrap();
    let data = b"token=abc BEGIN-42";
    let spans: Vec<_> = trap.scan(data).iter().map(span).collect();
    assert_eq!(spans, vec![(6, 9), (10, 18)]);
}

#[test]
fn findings_are_sorted_and_deduplicated() {
    let trap = RegexTrap::compile(vec![
        RuleSpec::new("b", "test", Severity::Notice, "cd"),
        RuleSpec::new("a", "test", Severity::Notice, "ab|cd"),
    ])
    .unwrap();
    let found = trap.scan(b"cd ab cd");
    assert_eq!(
        found,
        vec![
            Finding {
                rule_index: 0,
                start: 0,
                end: 2
            },
            Finding {
                rule_index: 1,
                start: 0,
                end: 2
            },
            Finding {
                rule_index: 1,
                start: 3,
                end: 5
            },
            Finding {
                rule_index: 0,
                start: 6,
                end: 8
            },
            Finding {
                rule_index: 1,
                start: 6,
                end: 8
            },
        ]
    );
}

#[test]
fn invalid_regex_is_invalid_pattern_naming_the_rule() {
    let err = RegexTrap::compile(vec![
        aws_rule(),
        RuleSpec::new("broken-rule", "test", Severity::Notice, "(unclosed"),
    ])
    .unwrap_err();
    match &err {
        TrapError::InvalidPattern { rule_id, .. } => assert_eq!(rule_id, "broken-rule"),
        other => panic!("expected InvalidPattern, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("broken-rule") && msg.contains("pattern"),
        "{msg}"
    );
}

#[test]
fn oversized_regex_hits_the_size_limit() {
    // Bounded repetition of a Unicode class explodes the compiled program.
    let err = RegexTrap::compile(vec![RuleSpec::new(
        "huge",
        "test",
        Severity::Notice,
        r"\w{5000}",
    )])
    .unwrap_err();
    assert!(
        matches!(err, TrapError::InvalidPattern { ref rule_id, .. } if rule_id == "huge"),
        "{err}"
    );
}

#[test]
fn duplicate_id_is_invalid_rule_naming_the_id_field() {
    let err = RegexTrap::compile(vec![aws_rule(), aws_rule()]).unwrap_err();
    match &err {
        TrapError::InvalidRule { rule_id, field, .. } => {
            assert_eq!(rule_id, "aws");
            assert_eq!(field, "id");
        }
        other => panic!("expected InvalidRule, got {other:?}"),
    }
    assert!(err.to_string().contains("duplicate"));
}

#[test]
fn bad_severity_is_invalid_rule_naming_the_severity_field() {
    let err = "severe"
        .parse::<Severity>()
        .unwrap_err()
        .into_rule_error("my-rule");
    match &err {
        TrapError::InvalidRule { rule_id, field, .. } => {
            assert_eq!(rule_id, "my-rule");
            assert_eq!(field, "severity");
        }
        other => panic!("expected InvalidRule, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("my-rule") && msg.contains("severity") && msg.contains("severe"),
        "{msg}"
    );
}

#[test]
fn other_malformed_rules_name_their_field() {
    let cases = [
        (RuleSpec::new("", "c", Severity::Notice, "x"), "id"),
        (
            RuleSpec::new("white space", "c", Severity::Notice, "x"),
            "id",
        ),
        (
            RuleSpec::new("r", "Secret", Severity::Notice, "x"),
            "category",
        ),
        (RuleSpec::new("r", "", Severity::Notice, "x"), "category"),
        (RuleSpec::new("r", "c", Severity::Notice, ""), "pattern"),
        (
            RuleSpec::new("r", "c", Severity::Notice, "x").with_keywords([""]),
            "keywords",
        ),
    ];
    for (spec, field) in cases {
        let err = RegexTrap::compile(vec![spec.clone()]).unwrap_err();
        assert_eq!(err.field(), field, "{spec:?}: {err}");
        assert!(matches!(err, TrapError::InvalidRule { .. }), "{err}");
    }
    let err = "crc32"
        .parse::<Validator>()
        .unwrap_err()
        .into_rule_error("r");
    assert_eq!(err.field(), "validator");
}

#[test]
fn invalid_utf8_input_does_not_panic() {
    let trap = RegexTrap::compile(vec![
        aws_rule(),
        RuleSpec::new("word", "test", Severity::Notice, r"\w+é"),
        RuleSpec::new("any", "test", Severity::Notice, r"(?s).X"),
    ])
    .unwrap();
    let mut data = vec![0xff, 0xfe, b'A', 0xc3, b'X', 0x80];
    data.extend_from_slice(b"AKIAIOSFODNN7EXAMPLE");
    data.extend_from_slice(&[0xe2, 0x82, b'X', 0xed, 0xa0, 0x80]);
    let found = trap.scan(&data);
    assert!(
        found
            .iter()
            .any(|f| f.rule_index == 0 && f.start == 6 && f.end == 26),
        "{found:?}"
    );
    for f in &found {
        assert!(f.start < f.end && f.end <= data.len());
    }
    // Every byte value, in every position.
    let all: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let _ = trap.scan(&all);
}

#[test]
fn pathological_input_completes_in_linear_time() {
    // `(a+)+b` takes exponential time in a backtracking engine on a run of
    // 'a's with no 'b'; the `regex` crate stays linear.
    let trap = RegexTrap::compile(vec![
        RuleSpec::new("nested", "test", Severity::Notice, r"(a+)+b"),
        RuleSpec::new("alt", "test", Severity::Notice, r"(a|aa)+c"),
        RuleSpec::new("poly", "test", Severity::Notice, r"a*a*a*a*a*d"),
    ])
    .unwrap();
    let data = vec![b'a'; 100_000];
    let started = Instant::now();
    assert!(trap.scan(&data).is_empty());
    let elapsed = started.elapsed();
    // Generous bound for unoptimized builds on a slow CI machine.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}

#[test]
fn empty_trap_and_empty_input() {
    let trap = RegexTrap::compile(Vec::new()).unwrap();
    assert!(trap.is_empty());
    assert!(trap.scan(b"anything").is_empty());
    let trap = RegexTrap::compile(vec![aws_rule()]).unwrap();
    assert_eq!(trap.len(), 1);
    assert!(trap.scan(b"").is_empty());
}

#[test]
fn starter_rules_on_chat_bodies() {
    let trap = RegexTrap::compile(common::starter_rules()).unwrap();
    let clean = common::clean_chat_body();
    assert!((3500..=4600).contains(&clean.len()), "{}", clean.len());
    assert_eq!(
        trap.scan(&clean),
        vec![],
        "clean body must have no findings"
    );

    let dirty = common::dirty_chat_body();
    let found = trap.scan(&dirty);
    let ids: Vec<&str> = found
        .iter()
        .map(|f| trap.rule(f.rule_index).unwrap().id.as_str())
        .collect();
    for id in [
        "aws-access-key-id",
        "github-token",
        "payment-card-number",
        "email-address",
        "injection-ignore-instructions",
        "injection-reveal-system-prompt",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let card = found
        .iter()
        .find(|f| trap.rule(f.rule_index).unwrap().id == "payment-card-number")
        .unwrap();
    assert_eq!(&dirty[card.start..card.end], b"4111 1111 1111 1111");
}
