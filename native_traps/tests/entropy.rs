//! Integration tests for `EntropyTrap`.

mod common;

use _native_traps::entropy::{shannon_entropy, MAX_TOKEN_LEN};
use _native_traps::{Charset, EntropyThresholds, EntropyTrap, TrapError};

const BASE64_TOKEN: &str = "FLiwv+9gaegOfjzK2a9VXr5zmFfjYZ/DjeXjKiIO";
const SHA1_LIKE: &str = "31b6692e152c08b5e7e64798501a9bd5661f67df";

#[test]
fn random_base64_token_is_found() {
    let trap = EntropyTrap::default();
    let data = format!(r#"{{"content":"my session is {BASE64_TOKEN} thanks"}}"#);
    let found = trap.scan(data.as_bytes());
    assert_eq!(found.len(), 1, "{found:?}");
    let f = found[0];
    assert_eq!(&data[f.start..f.end], BASE64_TOKEN);
    assert_eq!(f.charset, Charset::Base64);
    assert!(f.bits_per_char >= 4.5, "{}", f.bits_per_char);
    assert!((f.bits_per_char - shannon_entropy(BASE64_TOKEN.as_bytes())).abs() < 1e-12);
}

#[test]
fn sha1_like_hex_is_found_as_hex() {
    let trap = EntropyTrap::default();
    let data = format!("commit {SHA1_LIKE}\n");
    let found = trap.scan(data.as_bytes());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].charset, Charset::Hex);
    assert_eq!((found[0].start, found[0].end), (7, 47));
    assert!(found[0].bits_per_char >= 3.0);
}

#[test]
fn benign_text_is_not_found() {
    let trap = EntropyTrap::default();
    for benign in [
        "The quick brown fox jumps over the lazy dog while the committee reviews the \
         internationalization guidelines and responsibilities thoroughly.",
        "123e4567-e89b-12d3-a456-426614174000",
        "request id 9f0c1b2e-3d4a-4b5c-8d7e-6f5a4b3c2d1e done",
        "aaaaaaaaaaaaaaaaaaaaaaaa",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "internationalization_configuration_manager",
        "SCREAMING_SNAKE_CASE_CONSTANT_NAME",
        "see https://docs.python.org/3/library/functions.html",
        "timestamp 17000000000000000000000 and date 2024-01-01T00:00:00Z",
        "Content-Type: application/x-www-form-urlencoded",
        "==========================================",
    ] {
        let found = trap.scan(benign.as_bytes());
        assert!(found.is_empty(), "{benign:?}: {found:?}");
    }
}

#[test]
fn clean_chat_body_has_no_findings_and_dirty_one_has_the_token() {
    let trap = EntropyTrap::default();
    let clean = common::clean_chat_body();
    assert_eq!(trap.scan(&clean), vec![]);
    let dirty = common::dirty_chat_body();
    let found = trap.scan(&dirty);
    let tokens: Vec<&[u8]> = found.iter().map(|f| &dirty[f.start..f.end]).collect();
    assert!(tokens.contains(&BASE64_TOKEN.as_bytes()), "{found:?}");
}

#[test]
fn short_random_token_qualifies_through_the_length_aware_threshold() {
    // 20 random alphanumerics cannot reach 4.0 bits/char reliably (log2(20)
    // is 4.32), but clear 0.85 * log2(20) = 3.67.
    let trap = EntropyTrap::default();
    let token = "q7Xv2LmR9tKp4WzB8nYc";
    assert_eq!(token.len(), 20);
    let found = trap.scan(token.as_bytes());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].charset, Charset::Alnum);
    assert!(found[0].bits_per_char < 4.5);
}

#[test]
fn min_length_and_token_cap() {
    let trap = EntropyTrap::default();
    // 19 random characters: below min_length.
    assert!(trap.scan(&BASE64_TOKEN.as_bytes()[..19]).is_empty());
    let custom = EntropyTrap::new(40, EntropyThresholds::default()).unwrap();
    assert_eq!(custom.scan(BASE64_TOKEN.as_bytes()).len(), 1);
    let custom = EntropyTrap::new(41, EntropyThresholds::default()).unwrap();
    assert!(custom.scan(BASE64_TOKEN.as_bytes()).is_empty());

    // A run longer than MAX_TOKEN_LEN is skipped as a whole (encoded blob).
    let blob: String = BASE64_TOKEN.repeat(MAX_TOKEN_LEN / BASE64_TOKEN.len() + 1);
    assert!(blob.len() > MAX_TOKEN_LEN);
    assert!(trap.scan(blob.as_bytes()).is_empty());
    // ...while a separator makes the pieces separate candidates.
    let split = format!("{BASE64_TOKEN} {BASE64_TOKEN}");
    assert_eq!(trap.scan(split.as_bytes()).len(), 2);
}

#[test]
fn invalid_utf8_and_binary_do_not_panic() {
    let trap = EntropyTrap::default();
    let mut data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    data.extend_from_slice(BASE64_TOKEN.as_bytes());
    data.push(0xff);
    let found = trap.scan(&data);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].end, data.len() - 1);
}

#[test]
fn invalid_parameters_are_rejected() {
    let t = EntropyThresholds::default();
    for (min_length, thresholds, name) in [
        (0, t, "min_length"),
        (5000, t, "min_length"),
        (20, EntropyThresholds { hex: -1.0, ..t }, "hex_threshold"),
        (
            20,
            EntropyThresholds {
                base64: f64::INFINITY,
                ..t
            },
            "base64_threshold",
        ),
        (20, EntropyThresholds { alnum: 8.5, ..t }, "alnum_threshold"),
    ] {
        match EntropyTrap::new(min_length, thresholds) {
            Err(TrapError::InvalidParameter { name: got, .. }) => assert_eq!(got, name),
            other => panic!("expected InvalidParameter({name}), got {other:?}"),
        }
    }
    let trap = EntropyTrap::default();
    assert_eq!(trap.min_length(), 20);
    assert_eq!(
        trap.thresholds(),
        EntropyThresholds {
            hex: 3.0,
            base64: 4.5,
            alnum: 4.0
        }
    );
}
