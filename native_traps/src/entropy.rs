//! Shannon-entropy detector for random-looking tokens.
//!
//! Secrets such as API keys, session tokens and digests are runs of
//! characters drawn near-uniformly from a small alphabet, so their per-byte
//! Shannon entropy is close to what a uniform draw of that length would give;
//! natural-language words, identifiers and repeated characters score lower.
//!
//! # Algorithm
//! 1. Candidate tokens are maximal runs of bytes in `[A-Za-z0-9+/=_-]` whose
//!    length is at least `min_length`.
//! 2. Runs longer than [`MAX_TOKEN_LEN`] (4096) bytes are **skipped**, not
//!    split: in chat and API payloads such runs are almost always encoded
//!    attachments (base64 images, audio, files) whose pieces would all score as
//!    "random" and bury real findings; credentials are far shorter. Known
//!    formats hidden inside such blobs remain the job of the regex rules.
//! 3. Tokens with a benign shape are skipped (see [`is_benign_shape`]):
//!    word-like runs ([`looks_like_words`], including camelCase identifiers,
//!    [`is_camel_case`]), UUIDs ([`is_uuid`]), labelled digests such as SRI
//!    strings `sha384-<base64>` ([`is_labeled_digest`]), paths whose segments
//!    are all of those, and base64 that decodes to plain prose
//!    ([`is_encoded_text`]).
//! 4. [`EntropyTrap::scan`] also looks at the bytes around a token: a hex or
//!    base64 value of a digest's length next to a hash word (`commit`,
//!    `sha256:`, `ETag:`, `"hash": ...`; see [`in_hash_context`]) and the
//!    payload of a `;base64,` data URI are skipped.
//! 5. The remaining token is classified ([`Charset`]) and its entropy in bits
//!    per byte is compared with a length-aware threshold:
//!    `min(threshold(charset), factor(charset) * expected_entropy(len, alphabet))`
//!    where [`expected_entropy`] is the mean entropy of `len` uniform draws
//!    from the charset's alphabet. A uniform draw of 20 symbols from 62 has a
//!    mean entropy of only 4.03 bits/char (not `log2 62 = 5.95`), so a fixed
//!    threshold either misses short secrets or floods on long identifiers.
//!
//! Thresholds and filters were calibrated with `bench/entropy_calibration.py`;
//! the figures are in `docs/entropy-calibration.md`.
//!
//! Everything is linear in the input; the only allocation is the result
//! vector.

use crate::error::TrapError;

/// Longest run (in bytes) that is evaluated; longer runs are skipped.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Smallest accepted `min_length`: below this, entropy says nothing useful.
pub const MIN_LENGTH_FLOOR: usize = 8;

/// Default `min_length`.
pub const DEFAULT_MIN_LENGTH: usize = 20;

/// Fractions of the expected entropy of a uniformly random token (same
/// length, same alphabet) a token must reach when that is below the
/// configured per-charset threshold; see [`Charset::expected_entropy_factor`].
/// Calibrated so that at least 95 % of random tokens of length >= 20 clear
/// it in every charset (docs/entropy-calibration.md). Hex needs a lower
/// fraction: with 16 symbols the entropy of a short token spreads wider
/// around its mean.
pub const HEX_EXPECTED_ENTROPY_FACTOR: f64 = 0.90;
/// See [`HEX_EXPECTED_ENTROPY_FACTOR`].
pub const BASE64_EXPECTED_ENTROPY_FACTOR: f64 = 0.93;
/// See [`HEX_EXPECTED_ENTROPY_FACTOR`].
pub const ALNUM_EXPECTED_ENTROPY_FACTOR: f64 = 0.93;

/// Per-charset entropy thresholds in bits per character: the ceiling of the
/// length-aware threshold, which is what long tokens must reach.
///
/// Defaults (hex 3.6, base64 4.9, alnum 4.9) are calibrated: about the 1st
/// percentile of the entropy of random 64-character tokens of each charset,
/// see the module docs.
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
            hex: 3.6,
            base64: 4.9,
            alnum: 4.9,
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

    /// Fraction of [`expected_entropy`] a token of this charset must reach
    /// (the length-aware part of the threshold).
    pub const fn expected_entropy_factor(self) -> f64 {
        match self {
            Self::Hex => HEX_EXPECTED_ENTROPY_FACTOR,
            Self::Base64 => BASE64_EXPECTED_ENTROPY_FACTOR,
            Self::Alnum => ALNUM_EXPECTED_ENTROPY_FACTOR,
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
    /// `min(threshold, factor * expected_entropy(len, alphabet_size))` with
    /// the charset's [`Charset::expected_entropy_factor`].
    pub fn effective_threshold(&self, charset: Charset, len: usize) -> f64 {
        let expected = expected_entropy(len, charset.alphabet_size());
        self.configured(charset)
            .min(charset.expected_entropy_factor() * expected)
    }

    fn configured(&self, charset: Charset) -> f64 {
        match charset {
            Charset::Hex => self.thresholds.hex,
            Charset::Base64 => self.thresholds.base64,
            Charset::Alnum => self.thresholds.alnum,
        }
    }

    /// Judge one token (the bytes of a single run) on its own. Returns the
    /// charset and entropy when it is a finding; the length limits and the
    /// shape filters apply, the context filters of [`scan`](Self::scan) do
    /// not (there is no context).
    pub fn assess(&self, token: &[u8]) -> Option<(Charset, f64)> {
        if token.len() < self.min_length
            || token.len() > MAX_TOKEN_LEN
            || !token.iter().all(|&b| is_token_byte(b))
            || is_benign_shape(token)
        {
            return None;
        }
        let charset = classify(token);
        let bits = shannon_entropy(token);
        // The expected-entropy sum is only needed below the configured cap.
        let passes = bits >= self.configured(charset)
            || bits >= self.effective_threshold(charset, token.len());
        passes.then_some((charset, bits))
    }

    /// Scan `data` (any bytes; need not be UTF-8). Findings are in input
    /// order and never overlap.
    pub fn scan(&self, data: &[u8]) -> Vec<EntropyFinding> {
        // Any `min_length` consecutive positions include exactly one
        // position `p` with `p % min_length == min_length - 1`, so a run of
        // at least `min_length` token bytes covers one of them. Only those
        // positions are tested; a token byte there is grown into its whole
        // run. Prose, whose runs are words, is read about one byte in
        // `min_length` (plus the words that land on a tested position).
        let step = self.min_length;
        let mut out = Vec::new();
        let mut p = step - 1;
        while p < data.len() {
            if !is_token_byte(data[p]) {
                p += step;
                continue;
            }
            let mut start = p;
            while start > 0 && is_token_byte(data[start - 1]) {
                start -= 1;
            }
            let mut end = p + 1;
            while end < data.len() && is_token_byte(data[end]) {
                end += 1;
            }
            while p < end {
                p += step;
            }
            self.check_run(data, start, end, &mut out);
        }
        out
    }

    /// Report the run `data[start..end]` of token bytes if it is a
    /// candidate (length, context) that [`EntropyTrap::assess`] accepts.
    fn check_run(&self, data: &[u8], start: usize, end: usize, out: &mut Vec<EntropyFinding>) {
        let len = end - start;
        if len < self.min_length || len > MAX_TOKEN_LEN {
            return;
        }
        if in_hash_context(data, start, end) || is_data_uri_payload(data, start) {
            return;
        }
        if let Some((charset, bits_per_char)) = self.assess(&data[start..end]) {
            out.push(EntropyFinding {
                start,
                end,
                bits_per_char,
                charset,
            });
        }
    }

    /// The plain byte-by-byte form of [`EntropyTrap::scan`], kept for the
    /// tests that check the two agree.
    #[cfg(test)]
    fn scan_every_byte(&self, data: &[u8]) -> Vec<EntropyFinding> {
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
            self.check_run(data, start, i, &mut out);
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

/// Mean Shannon entropy (bits per symbol, as [`shannon_entropy`] measures it)
/// of `len` independent uniform draws from an alphabet of `alphabet` symbols.
///
/// Each symbol's count is `Binomial(len, 1/alphabet)`, so exactly
/// `E[H] = log2(len) - alphabet / len * E[C log2 C]`. It is below
/// `log2(alphabet)` for every finite `len` (about `(alphabet - 1) / (2 len ln 2)`
/// below for long tokens, and at most `log2(len)` for short ones). The sum
/// runs over the binomial's mass only (a few hundred terms at most), so the
/// cost is O(min(len, len / alphabet + 40 sqrt(len / alphabet))).
pub fn expected_entropy(len: usize, alphabet: usize) -> f64 {
    if len < 2 || alphabet < 2 {
        return 0.0;
    }
    let n = len as f64;
    let k = alphabet as f64;
    let p = 1.0 / k;
    let odds = p / (1.0 - p);
    let mean = n * p;
    let stop = mean + 12.0 * mean.sqrt() + 12.0;
    // P(C = 0) = (1 - p)^n: at least 1e-116 for len <= 4096 and alphabet >= 16.
    let mut pmf = (n * (1.0 - p).ln()).exp();
    let mut sum = 0.0;
    let mut c = 0usize;
    while c < len {
        pmf *= (n - c as f64) / (c as f64 + 1.0) * odds;
        c += 1;
        let cf = c as f64;
        sum += pmf * cf * cf.log2();
        if cf > stop {
            break;
        }
    }
    n.log2() - k / n * sum
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

/// Whether a token (one run, no context) has a shape that is not a secret
/// whatever its entropy: [`looks_like_words`], [`is_uuid`],
/// [`is_labeled_digest`], [`is_encoded_text`], or a `/`-separated path whose
/// every segment is one of the first three, a number, or a hex digest right
/// after a segment naming a hash or commit (`commit/<sha>`, `blob/<sha>`).
pub fn is_benign_shape(token: &[u8]) -> bool {
    if is_single_benign(token) || is_encoded_text(token) {
        return true;
    }
    if !token.contains(&b'/') {
        return false;
    }
    let mut prev: &[u8] = &[];
    for seg in token.split(|&b| b == b'/') {
        let ok = seg.is_empty()
            || is_single_benign(seg)
            || (is_digest_hex_len(seg) && (contains_hash_word(prev) || has_word(prev, PATH_WORDS)));
        if !ok {
            return false;
        }
        prev = seg;
    }
    true
}

fn is_single_benign(token: &[u8]) -> bool {
    looks_like_words(token) || is_uuid(token) || is_labeled_digest(token)
}

/// Whether a token is made of words rather than random symbols:
///
/// * it contains no ASCII letter (numbers, dates, `====` rulers), or
/// * it has no digit and all its letters share one case (`lowercaseword`,
///   `SCREAMING_CONSTANT`), or
/// * it splits on `+ / = _ -` into segments that each look like a word:
///   digits; lowercase, UPPERCASE or Capitalized letters, optionally with up
///   to four trailing digits (`v1`, `python3`, `SHA256`); up to four digits
///   then lowercase or UPPERCASE letters (`2fa`, `64BIT`); or camelCase
///   ([`is_camel_case`]).
///   Examples: `snake_case_name_2`, `org/3/library/functions`,
///   `Content-Type`, `v1/chat/completions`, `getUserById_v2`.
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
    if seg.iter().all(u8::is_ascii_digit) {
        return true; // includes the empty segment
    }
    let letters = seg.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let (word, digits) = seg.split_at(letters);
    if letters > 0 && digits.len() <= 4 && digits.iter().all(u8::is_ascii_digit) {
        let plain = match word {
            [first, rest @ ..] => {
                word.iter().all(u8::is_ascii_lowercase)
                    || word.iter().all(u8::is_ascii_uppercase)
                    || (first.is_ascii_uppercase() && rest.iter().all(u8::is_ascii_lowercase))
            }
            [] => false,
        };
        if plain {
            return true;
        }
    }
    let lead = seg.iter().take_while(|b| b.is_ascii_digit()).count();
    let tail = &seg[lead..];
    if (1..=4).contains(&lead)
        && (tail.iter().all(u8::is_ascii_lowercase) || tail.iter().all(u8::is_ascii_uppercase))
    {
        return true;
    }
    is_camel_case(seg)
}

/// Longest acronym hump accepted in camelCase (`XMLHttpRequest`: 3).
const MAX_ACRONYM: usize = 5;
/// Longest capital run accepted before a Capitalized word, where two
/// acronyms may stand together (`IDJSONParser`: 6 before `Parser`).
const MAX_ACRONYM_RUN: usize = 8;
/// Longest digit run accepted after a hump (`sha256Digest`, `UTF8`).
const MAX_CAMEL_DIGITS: usize = 3;

/// Whether `seg` is a camel-case (or Pascal-case) identifier made of word-like
/// humps: `getUserById`, `XMLHttpRequest`, `iPhone`, `sha256Digest`.
///
/// Humps are Capitalized words (a capital and lowercase letters), acronyms
/// (2..=5 capitals, up to 8 before a Capitalized word, or one capital at
/// the end) and, first only, a lowercase
/// word. Digit runs of at most three digits may follow a lowercase letter
/// or an acronym (`UTF8`), at most twice. There must be at least two humps;
/// humps of one or two letters (`Id`, the `i` of `iPhone`) may be at most a
/// third of the humps and acronyms at most a quarter (at least one of each
/// is always allowed); and at least 20 % of the letters of the word humps
/// must be vowels (`aeiouy`). Random mixed-case strings rarely fit all of
/// this: they are full of short humps and capital runs. Measured while
/// calibrating: 0.2 % of random 20..32-character alphanumeric tokens pass,
/// against 95 % of generated identifiers (the rest have several acronyms in
/// a row).
pub fn is_camel_case(seg: &[u8]) -> bool {
    let n = seg.len();
    if n < 4 || !seg[0].is_ascii_alphabetic() || !seg.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (mut humps, mut short, mut acronyms, mut digit_runs) = (0usize, 0usize, 0usize, 0usize);
    let (mut word_letters, mut vowels) = (0usize, 0usize);
    let mut i = 0;
    while i < n {
        let b = seg[i];
        if b.is_ascii_lowercase() {
            if i != 0 {
                return false; // lowercase after digits: `sha256digest`, `a1b2`
            }
            while i < n && seg[i].is_ascii_lowercase() {
                i += 1;
            }
            humps += 1;
            short += usize::from(i <= 2);
            word_letters += i;
            vowels += count_vowels(&seg[..i]);
        } else if b.is_ascii_uppercase() {
            let caps_start = i;
            while i < n && seg[i].is_ascii_uppercase() {
                i += 1;
            }
            let caps = i - caps_start;
            let lows_start = i;
            while i < n && seg[i].is_ascii_lowercase() {
                i += 1;
            }
            let lows = i - lows_start;
            if lows == 0 {
                // Acronym at the end or before digits; a lone capital only at the end.
                if caps > MAX_ACRONYM || (caps == 1 && i != n) {
                    return false;
                }
                acronyms += 1;
                humps += 1;
            } else {
                if caps > 1 {
                    // `HTTPServer`: the last capital starts the word.
                    if caps - 1 > MAX_ACRONYM_RUN {
                        return false;
                    }
                    acronyms += 1;
                    humps += 1;
                }
                humps += 1;
                short += usize::from(lows == 1);
                word_letters += lows + 1;
                vowels += count_vowels(&seg[i - lows - 1..i]);
            }
        } else {
            let after_word = seg[i - 1].is_ascii_lowercase();
            let after_acronym = i >= 2 && seg[i - 2].is_ascii_uppercase();
            if !(after_word || after_acronym) {
                return false; // digits after a lone capital: `aX9`
            }
            let digits_start = i;
            while i < n && seg[i].is_ascii_digit() {
                i += 1;
            }
            digit_runs += 1;
            if i - digits_start > MAX_CAMEL_DIGITS || digit_runs > 2 {
                return false;
            }
        }
    }
    let has_upper = seg.iter().any(u8::is_ascii_uppercase);
    humps >= 2
        && has_upper
        && short <= (humps / 3).max(1)
        && acronyms <= (humps / 4).max(1)
        && vowels * 5 >= word_letters
}

fn count_vowels(letters: &[u8]) -> usize {
    letters
        .iter()
        .filter(|b| {
            matches!(
                b.to_ascii_lowercase(),
                b'a' | b'e' | b'i' | b'o' | b'u' | b'y'
            )
        })
        .count()
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

/// Hash names and their digest sizes in bytes.
const DIGESTS: [(&[u8], usize); 6] = [
    (b"md5", 16),
    (b"sha1", 20),
    (b"sha224", 28),
    (b"sha256", 32),
    (b"sha384", 48),
    (b"sha512", 64),
];

/// Whether `payload` is a digest of `bytes` bytes written in hex or in
/// base64 / base64url (padded or not).
fn is_digest_payload(payload: &[u8], bytes: usize) -> bool {
    let len = payload.len();
    if len == 2 * bytes && payload.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    let unpadded = (4 * bytes).div_ceil(3);
    let padded = 4 * bytes.div_ceil(3);
    let body_len = payload.iter().take_while(|&&b| b != b'=').count();
    (len == unpadded || len == padded)
        && body_len >= unpadded
        && payload[..body_len]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
        && payload[body_len..].iter().all(|&b| b == b'=')
}

/// Whether `token` is `<hash name><- or = or _><digest>`, the digest in hex
/// or base64 with the length that hash produces: Subresource Integrity
/// values (`sha384-oqVuAfXRKap7fdgcCY5uykM6+R9GqQ8K/uxy9rx7HNQlGYl1kPzQho1wx4JwY8wC`),
/// `sha256=<hex>` query parameters, `md5_<hex>`. The name is matched
/// case-insensitively.
pub fn is_labeled_digest(token: &[u8]) -> bool {
    DIGESTS.iter().any(|&(name, bytes)| {
        token.len() > name.len() + 1
            && token[..name.len()].eq_ignore_ascii_case(name)
            && matches!(token[name.len()], b'-' | b'=' | b'_')
            && is_digest_payload(&token[name.len() + 1..], bytes)
    })
}

/// Hex lengths of common digests: MD5, SHA-1, SHA-224, SHA-256, SHA-384,
/// SHA-512.
fn is_digest_hex_len(token: &[u8]) -> bool {
    matches!(token.len(), 32 | 40 | 56 | 64 | 96 | 128) && token.iter().all(u8::is_ascii_hexdigit)
}

/// Whether `token` could be one of [`DIGESTS`] in hex or base64.
fn is_digest_like(token: &[u8]) -> bool {
    DIGESTS
        .iter()
        .any(|&(_, bytes)| is_digest_payload(token, bytes))
}

/// Words that mark the next value as a hash (matched case-insensitively
/// anywhere in the preceding word, so `contentHash`, `x-checksum-sha256`,
/// `commit_id` count).
const HASH_WORDS: [&[u8]; 13] = [
    b"sha",
    b"md5",
    b"commit",
    b"etag",
    b"hash",
    b"digest",
    b"integrity",
    b"checksum",
    b"fingerprint",
    b"revision",
    // Git commands that take a commit: `git cherry-pick <sha>`, `pick <sha>` in a
    // rebase todo list, `git revert <sha>`, `git checkout <sha>`.
    b"pick",
    b"revert",
    b"checkout",
];

/// Path segments after which a hex digest is a git object name.
const PATH_WORDS: [&[u8]; 3] = [b"blob", b"tree", b"objects"];

fn has_word(haystack: &[u8], words: impl IntoIterator<Item = &'static [u8]>) -> bool {
    words.into_iter().any(|w| {
        haystack.len() >= w.len() && haystack.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w))
    })
}

fn contains_hash_word(haystack: &[u8]) -> bool {
    has_word(haystack, HASH_WORDS)
}

/// Longest gap of separators (`": "`, `= '`, `@`) between a hash word and
/// its value.
const MAX_CONTEXT_GAP: usize = 6;
/// How far back the hash word itself is read.
const MAX_CONTEXT_WORD: usize = 40;

/// Whether the token `data[start..end]` is a digest in a context that says
/// so: it has a digest's length in hex or base64 and
///
/// * the word before it (past at most `MAX_CONTEXT_GAP` separator bytes such
///   as `": "`, and a weak-ETag `W/`) contains a hash word: `commit <sha>`,
///   `sha256:<hex>`, `ETag: W/"<hex>"`, `"contentHash": "<hex>"`,
///   `SHA256:<base64>` (SSH fingerprints), `image@sha256:<hex>`; or
/// * it is hex and followed by two spaces or `" *"`, the line format of
///   `sha256sum` and friends.
///
/// Reads at most 48 bytes around the token.
pub fn in_hash_context(data: &[u8], start: usize, end: usize) -> bool {
    let token = &data[start..end];
    if !is_digest_like(token) {
        return false;
    }
    let after = &data[end..data.len().min(end + 2)];
    if is_digest_hex_len(token) && (after == b"  " || after == b" *") {
        return true;
    }
    let mut i = start;
    let gap_floor = start.saturating_sub(MAX_CONTEXT_GAP);
    while i > gap_floor && is_context_separator(data[i - 1]) {
        i -= 1;
    }
    // Weak ETag: `ETag: W/"..."`.
    if i >= 2 && &data[i - 2..i] == b"W/" {
        i -= 2;
        let floor = i.saturating_sub(MAX_CONTEXT_GAP);
        while i > floor && is_context_separator(data[i - 1]) {
            i -= 1;
        }
    }
    let word_end = i;
    let word_floor = i.saturating_sub(MAX_CONTEXT_WORD);
    while i > word_floor
        && (data[i - 1].is_ascii_alphanumeric() || matches!(data[i - 1], b'_' | b'-' | b'.'))
    {
        i -= 1;
    }
    contains_hash_word(&data[i..word_end])
}

fn is_context_separator(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b':' | b'=' | b'"' | b'\'' | b'`' | b'@' | b'(' | b'[' | b'#' | b'\\'
    )
}

/// Whether the token starting at `start` is the payload of a data URI
/// (`data:image/png;base64,<payload>`): encoded file content, scanned in
/// decoded form by the normalisation views, not a credential.
pub fn is_data_uri_payload(data: &[u8], start: usize) -> bool {
    start >= 8 && data[start - 8..start].eq_ignore_ascii_case(b";base64,")
}

/// Whether `token` is base64 (standard or URL alphabet, padding optional)
/// that decodes to plain ASCII prose: only printable characters, tabs and
/// newlines, at least 80 % letters and spaces, and at least one space per
/// 16 decoded bytes. An encoded credential (`user:pass`, a key) has no
/// spaces; random bytes are almost never all printable. Decodes on the fly
/// without allocating.
pub fn is_encoded_text(token: &[u8]) -> bool {
    let body_len = token.iter().take_while(|&&b| b != b'=').count();
    let (body, pad) = token.split_at(body_len);
    if body.len() < 16 || pad.len() > 2 || pad.iter().any(|&b| b != b'=') || body.len() % 4 == 1 {
        return false;
    }
    let (mut total, mut spaces, mut wordish) = (0usize, 0usize, 0usize);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in body {
        let Some(v) = base64_value(c) else {
            return false;
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Masked to 8 bits, so the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let byte = ((acc >> bits) & 0xff) as u8;
            acc &= (1 << bits) - 1;
            total += 1;
            match byte {
                b' ' => {
                    spaces += 1;
                    wordish += 1;
                }
                b'a'..=b'z' | b'A'..=b'Z' => wordish += 1,
                b'\t' | b'\n' | b'\r' | 0x21..=0x7e => {}
                _ => return false,
            }
        }
    }
    total > 0 && spaces * 16 >= total && wordish * 5 >= total * 4
}

fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;

    #[test]
    fn entropy_basics() {
        assert!(shannon_entropy(b"").abs() < f64::EPSILON);
        assert!(shannon_entropy(b"aaaa").abs() < f64::EPSILON);
        assert!((shannon_entropy(b"abab") - 1.0).abs() < 1e-12);
        assert!((shannon_entropy(b"0123456789abcdef") - 4.0).abs() < 1e-12);
    }

    #[test]
    fn expected_entropy_limits() {
        // Two draws from two symbols: H is 1 bit with probability 1/2, else 0.
        assert!((expected_entropy(2, 2) - 0.5).abs() < 1e-12);
        assert!(expected_entropy(1, 16).abs() < f64::EPSILON);
        // Increasing in length, below log2(alphabet), approaching it.
        let mut last = 0.0;
        for len in [8, 16, 20, 32, 64, 256, 4096] {
            let e = expected_entropy(len, 64);
            assert!(e > last && e < 6.0, "{len}: {e}");
            assert!(e <= (len as f64).log2());
            last = e;
        }
        assert!(expected_entropy(4096, 16) > 3.99);
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
        assert!(looks_like_words(b"v1/chat/completions"));
        assert!(looks_like_words(b"enable_2fa_for_python3_users"));
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
        let short = trap.effective_threshold(Charset::Base64, 20);
        let want = BASE64_EXPECTED_ENTROPY_FACTOR * expected_entropy(20, 64);
        assert!((short - want).abs() < 1e-12);
        assert!(short < 4.0);
        let cap = trap.thresholds();
        assert!((trap.effective_threshold(Charset::Base64, 4000) - cap.base64).abs() < 1e-12);
        assert!((trap.effective_threshold(Charset::Alnum, 400) - cap.alnum).abs() < 1e-12);
        // For hex the default cap (3.6 = 0.90 * log2 16) is never below the
        // length-aware part, which approaches it from below.
        let hex = trap.effective_threshold(Charset::Hex, 4096);
        assert!(hex <= cap.hex && hex > 3.59, "{hex}");
    }

    #[test]
    fn sampled_scan_agrees_with_the_byte_by_byte_scan() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut next = move |n: u64| rng.next_u64() % n;
        // Token bytes, with separators often enough to make runs of every
        // length around `min_length`.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-";
        let mut found = 0;
        for min_length in [8, 20, 21, 64] {
            let trap = EntropyTrap::new(min_length, EntropyThresholds::default()).unwrap();
            for len in [0, 1, 7, 8, 19, 20, 21, 63, 64, 65, 500, 5000] {
                for round in 0..20 {
                    let sep_every = 3 + round * 7;
                    let data: Vec<u8> = (0..len)
                        .map(|_| {
                            if next(sep_every) == 0 {
                                b' '
                            } else {
                                alphabet[usize::try_from(next(alphabet.len() as u64)).unwrap()]
                            }
                        })
                        .collect();
                    let a = trap.scan(&data);
                    let b = trap.scan_every_byte(&data);
                    assert_eq!(a.len(), b.len(), "{min_length} {data:?}");
                    for (x, y) in a.iter().zip(&b) {
                        assert_eq!((x.start, x.end, x.charset), (y.start, y.end, y.charset));
                    }
                    found += a.len();
                }
            }
        }
        assert!(found > 100, "the comparison saw real findings: {found}");
    }
}
