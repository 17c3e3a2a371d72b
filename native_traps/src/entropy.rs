//! Shannon-entropy detector for random-looking tokens.
//!
//! Secrets such as API keys, session tokens and digests are long runs of
//! characters drawn near-uniformly from a small alphabet, so their per-byte
//! Shannon entropy is close to `log2(alphabet size)`; natural-language words,
//! identifiers and repeated characters score much lower.
//!
//! # Algorithm
//! 1. Candidate tokens are maximal runs of bytes in `[A-Za-z0-9+/=_-]` whose
//!    length is at least `min_length`.
//! 2. Runs longer than [`MAX_TOKEN_LEN`] (4096) bytes are **skipped**, not
//!    split: in chat and API payloads such runs are almost always encoded
//!    attachments (base64 images, audio, files) whose pieces would all score as
//!    "random" and bury real findings; credentials are far shorter. Known
//!    formats hidden inside such blobs remain the job of the regex rules.
//! 3. Word-like tokens are skipped (see [`looks_like_words`]), as are
//!    UUID-shaped tokens (`8-4-4-4-12` hex: identifiers, not secrets) and
//!    tokens without any letter (numbers, dates, `=====` rulers).
//! 4. The remaining token is classified ([`Charset`]) and its entropy in bits
//!    per byte is compared with a length-aware threshold:
//!    `min(threshold(charset), 0.85 * log2(min(len, alphabet_size)))`. The
//!    second term matters for short tokens, whose entropy cannot reach the
//!    alphabet's maximum even when perfectly random (20 distinct symbols give
//!    at most `log2(20) = 4.32` bits).
//!
//! The default thresholds are **starter values** chosen from the theoretical
//! maxima (hex 4.0, base64 6.0, alphanumeric 5.95 bits/char) and a handful of
//! hand-made samples; they are to be calibrated later against real traffic.

use crate::error::TrapError;

/// Longest run (in bytes) that is evaluated; longer runs are skipped.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Smallest accepted `min_length`: below this, entropy says nothing useful.
pub const MIN_LENGTH_FLOOR: usize = 8;

/// Default `min_length` (starter value).
pub const DEFAULT_MIN_LENGTH: usize = 20;

/// Fraction of the maximum possible entropy `log2(min(len, alphabet))` a
/// token must reach when that is below the configured threshold.
pub const SHORT_TOKEN_FACTOR: f64 = 0.85;

/// Per-charset entropy thresholds in bits per character.
///
/// The [`Default`] values (hex 3.0, base64 4.5, alnum 4.0) are starter
/// values, not calibrated ones; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntropyThresholds {
    /// For tokens made only of `[0-9a-fA-F]` (maximum 4.0 bits/char).
    pub hex: f64,
    /// For base64 / base64url-looking tokens (maximum 6.0 bits/char).
    pub base64: f64,
    /// For everything else, i.e. mostly alphanumeric (maximum ~5.95).
    pub alnum: f64,
}

impl Default for EntropyThresholds {
    fn default() -> Self {
        Self {
            hex: 3.0,
            base64: 4.5,
            alnum: 4.0,
        }
    }
}

/// Alphabet a token was classified into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// Only `[0-9a-fA-F]`.
    Hex,
    /// Contains `+` or `/` or ends in `=`, or mixes upper case, lower case
    /// and digits with `-`/`_` (base64url).
    Base64,
    /// Anything else.
    Alnum,
}

impl Charset {
    /// `"hex"`, `"base64"` or `"alnum"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hex => "hex",
            Self::Base64 => "base64",
            Self::Alnum => "alnum",
        }
    }

    /// Number of distinct symbols in the alphabet.
    pub const fn alphabet_size(self) -> usize {
        match self {
            Self::Hex => 16,
            Self::Base64 => 64,
            Self::Alnum => 62,
        }
    }
}

impl std::fmt::Display for Charset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token whose entropy reached its threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntropyFinding {
    /// Inclusive start byte offset.
    pub start: usize,
    /// Exclusive end byte offset.
    pub end: usize,
    /// Shannon entropy of the token's bytes, bits per character.
    pub bits_per_char: f64,
    /// Alphabet the token was classified into.
    pub charset: Charset,
}

/// Immutable entropy detector; `scan` takes `&self` and allocates only the
/// result vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntropyTrap {
    min_length: usize,
    thresholds: EntropyThresholds,
}

impl Default for EntropyTrap {
    /// `min_length` 20 and [`EntropyThresholds::default`].
    fn default() -> Self {
        Self {
            min_length: DEFAULT_MIN_LENGTH,
            thresholds: EntropyThresholds::default(),
        }
    }
}

impl EntropyTrap {
    /// Build a detector.
    ///
    /// # Errors
    /// [`TrapError::InvalidParameter`] when `min_length` is outside
    /// `8..=4096`, or a threshold is not a finite number in `(0, 8]`
    /// (8 bits/char is the maximum entropy of a byte).
    pub fn new(min_length: usize, thresholds: EntropyThresholds) -> Result<Self, TrapError> {
        if !(MIN_LENGTH_FLOOR..=MAX_TOKEN_LEN).contains(&min_length) {
            return Err(TrapError::invalid_parameter(
                "min_length",
                format!("{min_length} is outside {MIN_LENGTH_FLOOR}..={MAX_TOKEN_LEN}"),
            ));
        }
        for (name, value) in [
            ("hex_threshold", thresholds.hex),
            ("base64_threshold", thresholds.base64),
            ("alnum_threshold", thresholds.alnum),
        ] {
            if !(value.is_finite() && value > 0.0 && value <= 8.0) {
                return Err(TrapError::invalid_parameter(
                    name,
                    format!("{value} is not a number of bits per character in (0, 8]"),
                ));
            }
        }
        Ok(Self {
            min_length,
            thresholds,
        })
    }

    /// Shortest token considered.
    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// Configured (not length-adjusted) thresholds.
    pub fn thresholds(&self) -> EntropyThresholds {
        self.thresholds
    }

    /// Effective threshold for a token of `len` bytes classified `charset`:
    /// `min(threshold, 0.85 * log2(min(len, alphabet_size)))`.
    pub fn effective_threshold(&self, charset: Charset, len: usize) -> f64 {
        let configured = match charset {
            Charset::Hex => self.thresholds.hex,
            Charset::Base64 => self.thresholds.base64,
            Charset::Alnum => self.thresholds.alnum,
        };
        let symbols = len.min(charset.alphabet_size()).max(1) as f64;
        configured.min(SHORT_TOKEN_FACTOR * symbols.log2())
    }

    /// Judge one token (the bytes of a single run). Returns the charset and
    /// entropy when it is a finding; the length limits and skip rules apply.
    pub fn assess(&self, token: &[u8]) -> Option<(Charset, f64)> {
        if token.len() < self.min_length
            || token.len() > MAX_TOKEN_LEN
            || !token.iter().all(|&b| is_token_byte(b))
            || looks_like_words(token)
            || is_uuid(token)
        {
            return None;
        }
        let charset = classify(token);
        let bits = shannon_entropy(token);
        (bits >= self.effective_threshold(charset, token.len())).then_some((charset, bits))
    }

    /// Scan `data` (any bytes; need not be UTF-8). Findings are in input
    /// order and never overlap.
    pub fn scan(&self, data: &[u8]) -> Vec<EntropyFinding> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < data.len() {
            if !is_token_byte(data[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < data.len() && is_token_byte(data[i]) {
                i += 1;
            }
            if let Some((charset, bits_per_char)) = self.assess(&data[start..i]) {
                out.push(EntropyFinding {
                    start,
                    end: i,
                    bits_per_char,
                    charset,
                });
            }
        }
        out
    }
}

const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        // `b < 256`, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'_' | b'-');
        b += 1;
    }
    table
};

/// Whether `b` can be part of a candidate token: `[A-Za-z0-9+/=_-]`.
pub fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

/// Shannon entropy of `bytes` in bits per byte (0 for an empty slice).
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    // H = -sum(p log2 p) = log2(n) - sum(c log2 c) / n
    let weighted: f64 = counts
        .iter()
        .filter(|&&c| c > 1)
        .map(|&c| {
            let c = f64::from(c);
            c * c.log2()
        })
        .sum();
    (n.log2() - weighted / n).max(0.0)
}

/// Classify a token into the alphabet it appears to be drawn from.
pub fn classify(token: &[u8]) -> Charset {
    if token.iter().all(u8::is_ascii_hexdigit) {
        return Charset::Hex;
    }
    if token.iter().any(|&b| b == b'+' || b == b'/') || token.last() == Some(&b'=') {
        return Charset::Base64;
    }
    let has = |pred: fn(&u8) -> bool| token.iter().any(pred);
    if has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_lowercase)
        && has(u8::is_ascii_digit)
        && token.iter().any(|&b| b == b'-' || b == b'_')
    {
        return Charset::Base64;
    }
    Charset::Alnum
}

/// Whether a token is made of words rather than random symbols:
///
/// * it contains no ASCII letter (numbers, dates, `====` rulers), or
/// * it has no digit and all its letters share one case (`lowercaseword`,
///   `SCREAMING_CONSTANT`), or
/// * it splits on `+ / = _ -` into segments that are each lowercase,
///   UPPERCASE, Capitalized or all digits (`snake_case_name_2`,
///   `org/3/library/functions`, `Content-Type`).
pub fn looks_like_words(token: &[u8]) -> bool {
    if !token.iter().any(u8::is_ascii_alphabetic) {
        return true;
    }
    let no_digit = !token.iter().any(u8::is_ascii_digit);
    let no_upper = !token.iter().any(u8::is_ascii_uppercase);
    let no_lower = !token.iter().any(u8::is_ascii_lowercase);
    if no_digit && (no_upper || no_lower) {
        return true;
    }
    token
        .split(|b| !b.is_ascii_alphanumeric())
        .all(is_word_segment)
}

fn is_word_segment(seg: &[u8]) -> bool {
    match seg {
        [] => true,
        [first, rest @ ..] => {
            seg.iter().all(u8::is_ascii_digit)
                || seg.iter().all(u8::is_ascii_lowercase)
                || seg.iter().all(u8::is_ascii_uppercase)
                || (first.is_ascii_uppercase() && rest.iter().all(u8::is_ascii_lowercase))
        }
    }
}

/// Whether `token` is shaped like a UUID: `8-4-4-4-12` hex digits.
pub fn is_uuid(token: &[u8]) -> bool {
    token.len() == 36
        && token.iter().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_basics() {
        assert!(shannon_entropy(b"").abs() < f64::EPSILON);
        assert!(shannon_entropy(b"aaaa").abs() < f64::EPSILON);
        assert!((shannon_entropy(b"abab") - 1.0).abs() < 1e-12);
        assert!((shannon_entropy(b"0123456789abcdef") - 4.0).abs() < 1e-12);
    }

    #[test]
    fn classification() {
        assert_eq!(classify(b"deadBEEF0123"), Charset::Hex);
        assert_eq!(classify(b"ab+cd"), Charset::Base64);
        assert_eq!(classify(b"abcd=="), Charset::Base64);
        assert_eq!(classify(b"aB3_x"), Charset::Base64);
        assert_eq!(classify(b"aB3x"), Charset::Alnum);
        assert_eq!(classify(b"ab3_x"), Charset::Alnum);
    }

    #[test]
    fn word_shapes() {
        assert!(looks_like_words(b"aaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(looks_like_words(b"SCREAMING_SNAKE_CASE"));
        assert!(looks_like_words(b"snake_case_identifier_2"));
        assert!(looks_like_words(b"org/3/library/functions"));
        assert!(looks_like_words(b"2024-01-01"));
        assert!(looks_like_words(b"12345678901234567890"));
        assert!(!looks_like_words(b"v1/chat/completions"));
        assert!(!looks_like_words(b"sk_live_4eC39HqLyjWDarjtT1zdp7dc"));
        assert!(is_uuid(b"123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid(b"123e4567-e89b-12d3-a456-42661417400g"));
    }

    #[test]
    fn parameters_are_validated() {
        let t = EntropyThresholds::default();
        assert!(EntropyTrap::new(7, t).is_err());
        assert!(EntropyTrap::new(4097, t).is_err());
        assert_eq!(EntropyTrap::new(20, t), Ok(EntropyTrap::default()));
        let bad = EntropyThresholds {
            base64: f64::NAN,
            ..t
        };
        let err = EntropyTrap::new(20, bad).unwrap_err();
        assert_eq!(err.field(), "base64_threshold");
        let bad = EntropyThresholds { hex: 0.0, ..t };
        assert_eq!(
            EntropyTrap::new(20, bad).unwrap_err().field(),
            "hex_threshold"
        );
    }

    #[test]
    fn effective_threshold_is_length_aware() {
        let trap = EntropyTrap::default();
        // 0.85 * log2(20) = 3.67 < 4.5
        let short = trap.effective_threshold(Charset::Base64, 20);
        assert!((short - 0.85 * 20f64.log2()).abs() < 1e-12);
        assert!((trap.effective_threshold(Charset::Base64, 200) - 4.5).abs() < 1e-12);
        assert!((trap.effective_threshold(Charset::Hex, 40) - 3.0).abs() < 1e-12);
    }
}
