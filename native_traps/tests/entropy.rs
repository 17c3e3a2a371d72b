//! Integration tests for `EntropyTrap`: filters, calibrated thresholds, limits.

mod common;

use _native_traps::entropy::{
    expected_entropy, in_hash_context, is_benign_shape, is_camel_case, is_data_uri_payload,
    is_encoded_text, is_labeled_digest, looks_like_words, shannon_entropy, MAX_TOKEN_LEN,
};
use _native_traps::{Charset, EntropyThresholds, EntropyTrap, TrapError};

const BASE64_TOKEN: &str = "FLiwv+9gaegOfjzK2a9VXr5zmFfjYZ/DjeXjKiIO";
const SHA1_LIKE: &str = "31b6692e152c08b5e7e64798501a9bd5661f67df";
const SHA256_LIKE: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const MD5_LIKE: &str = "e4d909c290d0fb1ca068ffaddf22cbd0";

/// Minimal LCG (Knuth's MMIX constants) for deterministic pseudo-random tokens.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        // The shifted value has 31 bits, so it fits usize on every target.
        usize::try_from(self.next()).unwrap() % n
    }

    fn token(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
}

const HEX: &[u8] = b"0123456789abcdef";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn finds(trap: &EntropyTrap, text: &str) -> bool {
    !trap.scan(text.as_bytes()).is_empty()
}

#[test]
fn random_base64_token_is_found() {
    let trap = EntropyTrap::default();
    let data = format!(r#"{{"content":"my session is {BASE64_TOKEN} thanks"}}"#);
    let found = trap.scan(data.as_bytes());
    assert_eq!(found.len(), 1, "{found:?}");
    let f = found[0];
    assert_eq!(&data[f.start..f.end], BASE64_TOKEN);
    assert_eq!(f.charset, Charset::Base64);
    assert!((f.bits_per_char - shannon_entropy(BASE64_TOKEN.as_bytes())).abs() < 1e-12);
    assert!(f.bits_per_char >= trap.effective_threshold(Charset::Base64, BASE64_TOKEN.len()));
}

#[test]
fn bare_hex_digest_is_found_as_hex() {
    // Without a hash word nearby a 40-hex value may be a secret (many API
    // keys are hex), so it is reported.
    let trap = EntropyTrap::default();
    let data = format!("token {SHA1_LIKE}\n");
    let found = trap.scan(data.as_bytes());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].charset, Charset::Hex);
    assert_eq!((found[0].start, found[0].end), (6, 46));
}

#[test]
fn hashes_in_known_contexts_are_skipped() {
    let trap = EntropyTrap::default();
    let b64_digest = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
    for text in [
        format!("commit {SHA1_LIKE}\nAuthor: someone"),
        format!("Merge commit '{SHA1_LIKE}' into main"),
        format!("This reverts commit {SHA1_LIKE}."),
        format!("FROM python@sha256:{SHA256_LIKE}"),
        format!("digest: sha256:{SHA256_LIKE}"),
        format!("ETag: \"{MD5_LIKE}\""),
        format!("etag: W/\"{SHA1_LIKE}\""),
        format!(r#"{{"hash": "{SHA256_LIKE}"}}"#),
        format!(r#"{{"contentHash":"{MD5_LIKE}"}}"#),
        format!("checksum = '{SHA1_LIKE}'"),
        format!("x-checksum-sha256: {SHA256_LIKE}"),
        format!("md5 {MD5_LIKE}"),
        format!("{SHA256_LIKE}  release-1.2.tar.gz"),
        format!("{MD5_LIKE} *setup.exe"),
        format!(r#"{{"digest": "{b64_digest}"}}"#),
        format!("256 SHA256:{} host (ED25519)", &b64_digest[..43]),
        format!("revision: {SHA1_LIKE}"),
    ] {
        assert!(trap.scan(text.as_bytes()).is_empty(), "{text:?}");
    }
}

#[test]
fn hash_context_needs_a_digest_length_and_a_near_word() {
    let trap = EntropyTrap::default();
    // 36 hex digits is no common digest length.
    let odd = &format!("{SHA1_LIKE}{MD5_LIKE}")[..36];
    assert!(finds(&trap, &format!("commit {odd}")));
    // The hash word is too far away (beyond the separator gap).
    assert!(finds(&trap, &format!("sha1 is what:       {SHA1_LIKE}")));
    // A word that merely precedes is not enough.
    assert!(finds(&trap, &format!("password: {SHA1_LIKE}")));
    // A single space after the digest is not the checksum-file format.
    assert!(finds(&trap, &format!("{SHA1_LIKE} file")));

    // Git commands that take a commit id.
    for command in ["git cherry-pick", "pick", "git revert", "git checkout"] {
        assert!(
            !finds(&trap, &format!("{command} {SHA1_LIKE}")),
            "{command}"
        );
    }

    let data = format!("commit {SHA1_LIKE}");
    assert!(in_hash_context(data.as_bytes(), 7, data.len()));
    assert!(!in_hash_context(data.as_bytes(), 0, 6));
}

#[test]
fn labeled_digests_and_sri_are_skipped() {
    let trap = EntropyTrap::default();
    let sri384 = "sha384-oqVuAfXRKap7fdgcCY5uykM6+R9GqQ8K/uxy9rx7HNQlGYl1kPzQho1wx4JwY8wC";
    let sri256 = "sha256-n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
    let sri512 = "sha512-Q2bFTOhEALkN8hOms2FKTDLy7eugP2zFZ1T8LCvX42Fp3WoNr3bjZSAHeOsHrbV1Fu9/A0EzCinRE7Af1ofPrw==";
    for token in [sri384, sri256, sri512] {
        assert!(is_labeled_digest(token.as_bytes()), "{token}");
        let html = format!(r#"<script src="/a.js" integrity="{token}" crossorigin></script>"#);
        assert!(trap.scan(html.as_bytes()).is_empty(), "{html}");
    }
    for token in [
        format!("sha256={SHA256_LIKE}"),
        format!("SHA1-{SHA1_LIKE}"),
        format!("md5_{MD5_LIKE}"),
    ] {
        assert!(is_labeled_digest(token.as_bytes()), "{token}");
        assert!(!finds(&trap, &format!("?{token}&x=1")), "{token}");
    }
    // The payload length must match the named hash.
    assert!(!is_labeled_digest(format!("sha256-{SHA1_LIKE}").as_bytes()));
    assert!(!is_labeled_digest(
        b"sha384-n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="
    ));
    assert!(!is_labeled_digest(format!("shaX-{SHA1_LIKE}").as_bytes()));
    // A random token after a digest-looking label is still judged.
    let fake = format!("sha384-{BASE64_TOKEN}");
    assert!(finds(&trap, &fake));
}

#[test]
fn camel_case_identifiers_are_skipped() {
    for ident in [
        "getUserAccountSettingsHandler",
        "XMLHttpRequestFactoryBuilder",
        "parseHTTPResponseStatusCode",
        "iPhoneApplicationDelegate",
        "sha256DigestCalculatorFactory",
        "convertUTF8StringToBase64Url",
        "AbstractSingletonProxyFactoryBean",
        "userIdToSessionTokenMapping",
        "shippingSettingBlockDraftView",
        "engineBuildIDJSONMethodHandler",
    ] {
        assert!(is_camel_case(ident.as_bytes()), "{ident}");
        assert!(looks_like_words(ident.as_bytes()), "{ident}");
        let trap = EntropyTrap::default();
        assert!(!finds(&trap, &format!("call {ident}() now")), "{ident}");
    }
    // Random mixed-case strings (some with letters only) are not camelCase.
    for random in [
        "FXIpeUcfikk6InrWvMG1",
        "aNQafAh04YcmpYLAkhCk",
        "lzTogpvvQpYRDVExFPXQ",
        "dHpvEZKVFZk630Jg4PWX",
        "q7Xv2LmR9tKp4WzB8nYc",
        "ab",
        "sha256digestValue",
    ] {
        assert!(!is_camel_case(random.as_bytes()), "{random}");
    }
}

#[test]
fn word_shapes_and_paths_are_skipped() {
    let trap = EntropyTrap::default();
    for benign in [
        "The quick brown fox jumps over the lazy dog while the committee reviews the \
         internationalization guidelines and responsibilities thoroughly.",
        "123e4567-e89b-12d3-a456-426614174000",
        "request id 9F0C1B2E-3D4A-4B5C-8D7E-6F5A4B3C2D1E done",
        "aaaaaaaaaaaaaaaaaaaaaaaa",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "internationalization_configuration_manager",
        "SCREAMING_SNAKE_CASE_CONSTANT_NAME",
        "enable_python3_support_for_2fa_users_64BIT",
        "see https://docs.python.org/3/library/functions.html",
        "timestamp 17000000000000000000000 and date 2024-01-01T00:00:00Z",
        "Content-Type: application/x-www-form-urlencoded",
        "==========================================",
        "GET /api/v2/orders/184467440/lineItems/returnRequests HTTP/1.1",
        "GET /v1/accounts/123e4567-e89b-12d3-a456-426614174000/paymentMethods",
        "/usr/local/lib/python3/site-packages/requests/adapters",
        "https://github.com/octocat/hello-world/commit/31b6692e152c08b5e7e64798501a9bd5661f67df",
        "https://github.com/octocat/hello-world/blob/31b6692e152c08b5e7e64798501a9bd5661f67df/README",
        "foldershippingSwitchdebugTargetPoolupload",
    ] {
        let found = trap.scan(benign.as_bytes());
        assert!(found.is_empty(), "{benign:?}: {found:?}");
    }
    // A path segment that is random is judged with the rest.
    let path = format!(
        "/api/v1/keys/{}/rotate",
        &BASE64_TOKEN.replace(['+', '/'], "x")
    );
    assert!(!is_benign_shape(path.as_bytes()));
    assert!(finds(&trap, &path));
    // A hex digest in a path only after a commit/blob/tree segment.
    assert!(!is_benign_shape(format!("/files/{SHA1_LIKE}").as_bytes()));
}

#[test]
fn base64_of_prose_is_skipped_and_of_a_credential_is_not() {
    let trap = EntropyTrap::default();
    // "Please check why my parcel from last week has not arrived yet."
    let prose =
        "UGxlYXNlIGNoZWNrIHdoeSBteSBwYXJjZWwgZnJvbSBsYXN0IHdlZWsgaGFzIG5vdCBhcnJpdmVkIHlldC4=";
    assert!(is_encoded_text(prose.as_bytes()));
    assert!(!finds(&trap, &format!("decode this: {prose}")));
    // Same without padding and in the URL alphabet.
    let unpadded = prose.trim_end_matches('=');
    assert!(is_encoded_text(unpadded.as_bytes()));
    // "admin:Xk9#pQ2!vL7@wZ4$" (a credential: no spaces) is judged on entropy.
    let cred = "YWRtaW46WGs5I3BRMiF2TDdAd1o0JA==";
    assert!(!is_encoded_text(cred.as_bytes()));
    assert!(finds(&trap, &format!("Authorization: Basic {cred}")));
    // Random bytes are not printable text.
    assert!(!is_encoded_text(BASE64_TOKEN.as_bytes()));
    // Malformed base64 (a length of 4n + 1) is not decoded.
    assert!(!is_encoded_text(&prose.as_bytes()[..41]));
}

#[test]
fn data_uri_payloads_are_skipped() {
    let trap = EntropyTrap::default();
    let data = format!("<img src=\"data:image/png;base64,{BASE64_TOKEN}\">");
    assert!(trap.scan(data.as_bytes()).is_empty());
    let start = data.find(BASE64_TOKEN).unwrap();
    assert!(is_data_uri_payload(data.as_bytes(), start));
    assert!(!is_data_uri_payload(data.as_bytes(), start - 1));
    assert!(!is_data_uri_payload(b"base64", 3));
}

#[test]
fn expected_entropy_matches_the_calibration_figures() {
    // Values printed by bench/entropy_calibration.py (exact binomial sums).
    for (len, alphabet, want) in [
        (20, 16, 3.362),
        (40, 16, 3.697),
        (64, 16, 3.820),
        (20, 64, 4.042),
        (32, 64, 4.559),
        (64, 64, 5.182),
        (20, 62, 4.033),
        (64, 62, 5.160),
    ] {
        let got = expected_entropy(len, alphabet);
        assert!(
            (got - want).abs() < 0.0006,
            "E[H]({len}, {alphabet}) = {got}, want {want}"
        );
    }
}

#[test]
fn calibrated_thresholds_find_random_tokens() {
    // The calibration target: >= 95 % of uniform random tokens of length >= 20
    // in every charset, measured here on a fixed pseudo-random sample.
    let trap = EntropyTrap::default();
    let mut rng = Lcg(0x5eed_2026_1129);
    for (name, alphabet) in [
        ("hex", HEX),
        ("base64", BASE64),
        ("base64url", BASE64URL),
        ("alnum", ALNUM),
    ] {
        for len in [20, 24, 32, 40, 64] {
            let n = 400;
            let hits = (0..n)
                .filter(|_| finds(&trap, &format!("key {} end", rng.token(alphabet, len))))
                .count();
            assert!(hits * 100 >= n * 95, "{name}/{len}: {hits}/{n}");
        }
    }
}

const WORDS: [&str; 32] = [
    "account", "billing", "cache", "client", "config", "content", "customer", "default", "device",
    "event", "factory", "handler", "image", "index", "manager", "message", "method", "order",
    "parser", "payment", "policy", "profile", "provider", "request", "response", "session",
    "setting", "shipping", "status", "token", "update", "value",
];

fn capitalize(word: &str) -> String {
    let mut out = word.to_owned();
    out[..1].make_ascii_uppercase();
    out
}

#[test]
fn calibrated_thresholds_spare_benign_kinds() {
    // The calibration target: <= 1 % of each benign kind flagged.
    let trap = EntropyTrap::default();
    let mut rng = Lcg(42);
    let n = 400;
    let mut kinds: Vec<(&str, Vec<String>)> = Vec::new();
    let words = |rng: &mut Lcg, k: usize| -> Vec<&str> {
        (0..k).map(|_| WORDS[rng.below(WORDS.len())]).collect()
    };
    let camel: Vec<String> = (0..n)
        .map(|i| {
            let w = words(&mut rng, 2 + i % 4);
            let mut s = w[0].to_owned();
            for x in &w[1..] {
                s.push_str(&capitalize(x));
            }
            format!("call {s}() now")
        })
        .collect();
    kinds.push(("camelCase", camel));
    let snake: Vec<String> = (0..n)
        .map(|i| format!("set {} = 1", words(&mut rng, 2 + i % 5).join("_")))
        .collect();
    kinds.push(("snake_case", snake));
    let paths: Vec<String> = (0..n)
        .map(|i| {
            let w = words(&mut rng, 3);
            format!(
                "GET /api/v{}/{}s/{}/{} HTTP/1.1",
                1 + i % 3,
                w[0],
                1000 + i * 7919,
                w[1]
            )
        })
        .collect();
    kinds.push(("url path", paths));
    let commits: Vec<String> = (0..n)
        .map(|_| format!("commit {}", rng.token(HEX, 40)))
        .collect();
    kinds.push(("git commit", commits));
    let digests: Vec<String> = (0..n)
        .map(|_| format!("image@sha256:{}", rng.token(HEX, 64)))
        .collect();
    kinds.push(("sha256 digest", digests));
    let uuids: Vec<String> = (0..n)
        .map(|_| {
            let h = rng.token(HEX, 32);
            format!(
                "id {}-{}-4{}-a{}-{}",
                &h[..8],
                &h[8..12],
                &h[13..16],
                &h[17..20],
                &h[20..]
            )
        })
        .collect();
    kinds.push(("uuid", uuids));
    let run_together: Vec<String> = (0..n)
        .map(|i| words(&mut rng, 3 + i % 4).concat())
        .collect();
    kinds.push(("words run together", run_together));

    for (kind, samples) in &kinds {
        let flagged: Vec<&String> = samples.iter().filter(|s| finds(&trap, s)).collect();
        assert!(
            flagged.len() * 100 <= samples.len(),
            "{kind}: {} of {} flagged, e.g. {:?}",
            flagged.len(),
            samples.len(),
            flagged.first()
        );
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
    // 20 random alphanumerics cannot reach the 4.9 cap (log2(20) is 4.32),
    // but clear 0.93 * E[H](20, 62) = 3.75.
    let trap = EntropyTrap::default();
    let token = "q7Xv2LmR9tKp4WzB8nYc";
    assert_eq!(token.len(), 20);
    let found = trap.scan(token.as_bytes());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].charset, Charset::Alnum);
    assert!(found[0].bits_per_char < trap.thresholds().alnum);
    let threshold = trap.effective_threshold(Charset::Alnum, 20);
    assert!((threshold - 0.93 * expected_entropy(20, 62)).abs() < 1e-12);
    // A low-entropy token of the same length does not.
    assert!(trap.scan(b"abababababXYXYXYXY12").is_empty());
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
    // Context checks at the very start and end of the input.
    assert_eq!(trap.scan(SHA1_LIKE.as_bytes()).len(), 1);
    assert_eq!(trap.scan(format!("  {SHA1_LIKE} ").as_bytes()).len(), 1);
    // A hash word alone at the very start, with nothing before it.
    assert!(trap.scan(format!("sha1:{SHA1_LIKE}").as_bytes()).is_empty());
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
            hex: 3.6,
            base64: 4.9,
            alnum: 4.9
        }
    );
}
