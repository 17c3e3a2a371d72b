//! Rule declarations: what a regex rule looks like before compilation.

use std::fmt;
use std::str::FromStr;

use crate::error::TrapError;

/// How bad a finding is, using the OWASP Core Rule Set severity levels and
/// their default anomaly-score weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Weight 5.
    Critical,
    /// Weight 4.
    Error,
    /// Weight 3.
    Warning,
    /// Weight 2.
    Notice,
}

impl Severity {
    /// Every severity, most severe first.
    pub const ALL: [Self; 4] = [Self::Critical, Self::Error, Self::Warning, Self::Notice];

    /// Anomaly-score weight (OWASP CRS defaults: 5/4/3/2).
    pub const fn weight(self) -> u32 {
        match self {
            Self::Critical => 5,
            Self::Error => 4,
            Self::Warning => 3,
            Self::Notice => 2,
        }
    }

    /// The lowercase name used in rule files and exposed to Python.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Notice => "notice",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = UnknownName;

    /// Parses the exact lowercase names `critical`, `error`, `warning`, `notice`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|sev| sev.as_str() == s)
            .ok_or_else(|| UnknownName::new("severity", s, "critical, error, warning, notice"))
    }
}

/// A check run on the matched bytes after the regex matched, to drop
/// structurally-plausible but invalid candidates.
///
/// New validators are added as variants here plus an arm in
/// [`Validator::accepts`] and [`Validator::as_str`]; the enum is
/// `non_exhaustive` so that adding one is not a breaking change. Every check
/// is pure and allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Validator {
    /// Luhn (mod 10) checksum used by payment card numbers. Accepts 13 to 19
    /// ASCII digits; spaces and dashes are ignored; any other byte rejects.
    Luhn,
    /// ISO 13616 IBAN: a known country code, the length registered for that
    /// country, and the ISO 7064 mod-97 check equal to 1. Spaces are ignored;
    /// letters may be in either case.
    Iban,
    /// US Social Security number: 9 digits (spaces and dashes ignored), area
    /// not 000, 666 or 900-999, group not 00, serial not 0000, and not one of
    /// the publicly burned numbers (078-05-1120, 219-09-9999).
    UsSsn,
    /// Payment card number: Luhn plus the issuer (IIN) range and the lengths
    /// that issuer uses (Visa, Mastercard, Amex, Discover, JCB, Union Pay,
    /// Diners Club). Spaces and dashes are ignored.
    IinCard,
    /// E.164 telephone number: `+`, then 8 to 15 digits, the first not 0;
    /// spaces, dashes, dots and parentheses are allowed between digits.
    E164,
    /// Dotted-quad IPv4 address: four octets 0-255, no leading zeros.
    Ipv4,
    /// IPv6 address in any textual form `std::net::Ipv6Addr` parses.
    Ipv6,
}

impl Validator {
    /// Every validator.
    pub const ALL: [Self; 7] = [
        Self::Luhn,
        Self::Iban,
        Self::UsSsn,
        Self::IinCard,
        Self::E164,
        Self::Ipv4,
        Self::Ipv6,
    ];

    /// The lowercase name used in rule files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Luhn => "luhn",
            Self::Iban => "iban",
            Self::UsSsn => "us_ssn",
            Self::IinCard => "iin_card",
            Self::E164 => "e164",
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
        }
    }

    /// Whether `candidate` (the matched bytes) passes the check.
    pub fn accepts(self, candidate: &[u8]) -> bool {
        match self {
            Self::Luhn => luhn_valid(candidate),
            Self::Iban => iban_valid(candidate),
            Self::UsSsn => us_ssn_valid(candidate),
            Self::IinCard => iin_card_valid(candidate),
            Self::E164 => e164_valid(candidate),
            Self::Ipv4 => ipv4_valid(candidate),
            Self::Ipv6 => ipv6_valid(candidate),
        }
    }
}

impl fmt::Display for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Validator {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                UnknownName::new(
                    "validator",
                    s,
                    "luhn, iban, us_ssn, iin_card, e164, ipv4, ipv6",
                )
            })
    }
}

/// Luhn checksum over the digits of `candidate`, ignoring spaces and dashes.
fn luhn_valid(candidate: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut digits = 0usize;
    // Walk from the right: every second digit (starting with the one left of
    // the check digit) is doubled, and 9 is subtracted when that exceeds 9.
    for &b in candidate.iter().rev() {
        match b {
            b'0'..=b'9' => {
                let mut d = u32::from(b - b'0');
                if digits % 2 == 1 {
                    d *= 2;
                    if d > 9 {
                        d -= 9;
                    }
                }
                sum += d;
                digits += 1;
                if digits > 19 {
                    return false;
                }
            }
            b' ' | b'-' => {}
            _ => return false,
        }
    }
    (13..=19).contains(&digits) && sum.is_multiple_of(10)
}

/// Up to 19 card digits collected from `candidate` (spaces and dashes
/// skipped), or `None` when another byte occurs or there are more than 19.
fn card_digits(candidate: &[u8]) -> Option<([u8; 19], usize)> {
    let mut out = [0u8; 19];
    let mut len = 0usize;
    for &b in candidate {
        match b {
            b'0'..=b'9' => {
                if len == out.len() {
                    return None;
                }
                out[len] = b - b'0';
                len += 1;
            }
            b' ' | b'-' => {}
            _ => return None,
        }
    }
    Some((out, len))
}

/// The number formed by the first `n` digits.
fn prefix_value(digits: &[u8], n: usize) -> u32 {
    digits[..n]
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
}

/// Whether the issuer identified by the leading digits issues cards of `len`
/// digits. Ranges are the public IIN allocations of the major networks.
fn iin_accepts_length(digits: &[u8], len: usize) -> bool {
    let p1 = prefix_value(digits, 1);
    let p2 = prefix_value(digits, 2);
    let p3 = prefix_value(digits, 3);
    let p4 = prefix_value(digits, 4);
    // Visa
    if p1 == 4 {
        return matches!(len, 13 | 16 | 19);
    }
    // Mastercard: 51-55 and the 2-series 2221-2720.
    if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) {
        return len == 16;
    }
    // American Express
    if p2 == 34 || p2 == 37 {
        return len == 15;
    }
    // Discover: 6011, 644-649, 65.
    if p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 {
        return (16..=19).contains(&len);
    }
    // JCB: 3528-3589.
    if (3528..=3589).contains(&p4) {
        return (16..=19).contains(&len);
    }
    // China Union Pay
    if p2 == 62 {
        return (16..=19).contains(&len);
    }
    // Diners Club: 36, 38 (and 39), 300-305.
    if p2 == 36 || p2 == 38 || p2 == 39 || (300..=305).contains(&p3) {
        return (14..=19).contains(&len);
    }
    false
}

/// Luhn plus issuer range and length.
fn iin_card_valid(candidate: &[u8]) -> bool {
    let Some((digits, len)) = card_digits(candidate) else {
        return false;
    };
    (13..=19).contains(&len) && iin_accepts_length(&digits, len) && luhn_valid(candidate)
}

/// IBAN length registered per country (ISO 13616 registry), sorted by code
/// for binary search.
const IBAN_LENGTHS: [([u8; 2], u8); 88] = [
    (*b"AD", 24),
    (*b"AE", 23),
    (*b"AL", 28),
    (*b"AT", 20),
    (*b"AZ", 28),
    (*b"BA", 20),
    (*b"BE", 16),
    (*b"BG", 22),
    (*b"BH", 22),
    (*b"BI", 27),
    (*b"BR", 29),
    (*b"BY", 28),
    (*b"CH", 21),
    (*b"CR", 22),
    (*b"CY", 28),
    (*b"CZ", 24),
    (*b"DE", 22),
    (*b"DJ", 27),
    (*b"DK", 18),
    (*b"DO", 28),
    (*b"EE", 20),
    (*b"EG", 29),
    (*b"ES", 24),
    (*b"FI", 18),
    (*b"FK", 18),
    (*b"FO", 18),
    (*b"FR", 27),
    (*b"GB", 22),
    (*b"GE", 22),
    (*b"GI", 23),
    (*b"GL", 18),
    (*b"GR", 27),
    (*b"GT", 28),
    (*b"HN", 28),
    (*b"HR", 21),
    (*b"HU", 28),
    (*b"IE", 22),
    (*b"IL", 23),
    (*b"IQ", 23),
    (*b"IS", 26),
    (*b"IT", 27),
    (*b"JO", 30),
    (*b"KW", 30),
    (*b"KZ", 20),
    (*b"LB", 28),
    (*b"LC", 32),
    (*b"LI", 21),
    (*b"LT", 20),
    (*b"LU", 20),
    (*b"LV", 21),
    (*b"LY", 25),
    (*b"MC", 27),
    (*b"MD", 24),
    (*b"ME", 22),
    (*b"MK", 19),
    (*b"MN", 20),
    (*b"MR", 27),
    (*b"MT", 31),
    (*b"MU", 30),
    (*b"NI", 28),
    (*b"NL", 18),
    (*b"NO", 15),
    (*b"OM", 23),
    (*b"PK", 24),
    (*b"PL", 28),
    (*b"PS", 29),
    (*b"PT", 25),
    (*b"QA", 29),
    (*b"RO", 24),
    (*b"RS", 22),
    (*b"RU", 33),
    (*b"SA", 24),
    (*b"SC", 31),
    (*b"SD", 18),
    (*b"SE", 24),
    (*b"SI", 19),
    (*b"SK", 24),
    (*b"SM", 27),
    (*b"SO", 23),
    (*b"ST", 25),
    (*b"SV", 28),
    (*b"TL", 23),
    (*b"TN", 24),
    (*b"TR", 26),
    (*b"UA", 29),
    (*b"VA", 22),
    (*b"VG", 24),
    (*b"XK", 20),
];

/// The registered IBAN length for a two-letter (uppercase) country code.
pub fn iban_length(country: [u8; 2]) -> Option<usize> {
    IBAN_LENGTHS
        .binary_search_by(|(code, _)| code.cmp(&country))
        .ok()
        .map(|i| usize::from(IBAN_LENGTHS[i].1))
}

/// Value of an IBAN character for mod-97 (digits 0-9, letters 10-35).
fn iban_char_value(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'A'..=b'Z' => Some(u32::from(b - b'A') + 10),
        _ => None,
    }
}

fn iban_valid(candidate: &[u8]) -> bool {
    let mut chars = candidate
        .iter()
        .filter(|&&b| b != b' ')
        .map(u8::to_ascii_uppercase);
    let (Some(c0), Some(c1), Some(d0), Some(d1)) =
        (chars.next(), chars.next(), chars.next(), chars.next())
    else {
        return false;
    };
    if !c0.is_ascii_uppercase()
        || !c1.is_ascii_uppercase()
        || !d0.is_ascii_digit()
        || !d1.is_ascii_digit()
    {
        return false;
    }
    let Some(expected) = iban_length([c0, c1]) else {
        return false;
    };
    // The BBAN first, then country code and check digits, as one big number
    // reduced mod 97 digit by digit (letters contribute two digits).
    let mut rem = 0u32;
    let mut push = |v: u32| {
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    };
    let mut len = 4usize;
    for b in chars {
        let Some(v) = iban_char_value(b) else {
            return false;
        };
        len += 1;
        if len > expected {
            return false;
        }
        push(v);
    }
    if len != expected {
        return false;
    }
    for b in [c0, c1, d0, d1] {
        // All four were checked above.
        push(iban_char_value(b).unwrap_or(0));
    }
    rem == 1
}

/// Publicly burned SSNs (printed on a wallet insert, used in an advert).
const BURNED_SSNS: [u32; 2] = [78_051_120, 219_099_999];

fn us_ssn_valid(candidate: &[u8]) -> bool {
    let mut value = 0u32;
    let mut digits = 0usize;
    for &b in candidate {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits > 9 {
                    return false;
                }
                value = value * 10 + u32::from(b - b'0');
            }
            b' ' | b'-' => {}
            _ => return false,
        }
    }
    if digits != 9 {
        return false;
    }
    let area = value / 1_000_000;
    let group = (value / 10_000) % 100;
    let serial = value % 10_000;
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !BURNED_SSNS.contains(&value)
}

fn e164_valid(candidate: &[u8]) -> bool {
    let Some((&b'+', rest)) = candidate.split_first() else {
        return false;
    };
    let mut digits = 0usize;
    for &b in rest {
        match b {
            b'0'..=b'9' => {
                if digits == 0 && b == b'0' {
                    return false;
                }
                digits += 1;
                if digits > 15 {
                    return false;
                }
            }
            b' ' | b'-' | b'.' | b'(' | b')' => {}
            _ => return false,
        }
    }
    digits >= 8
}

fn ipv4_valid(candidate: &[u8]) -> bool {
    let mut octets = 0usize;
    for part in candidate.split(|&b| b == b'.') {
        octets += 1;
        if octets > 4 || part.is_empty() || part.len() > 3 {
            return false;
        }
        if part.len() > 1 && part[0] == b'0' {
            return false;
        }
        let mut value = 0u32;
        for &b in part {
            if !b.is_ascii_digit() {
                return false;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        if value > 255 {
            return false;
        }
    }
    octets == 4
}

fn ipv6_valid(candidate: &[u8]) -> bool {
    std::str::from_utf8(candidate)
        .ok()
        .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
        .is_some()
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
    let len = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// Error returned when parsing a [`Severity`] or [`Validator`] name fails.
///
/// It does not know which rule it came from; turn it into a
/// [`TrapError::InvalidRule`] with [`UnknownName::into_rule_error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    field: &'static str,
    value: String,
    expected: &'static str,
}

impl UnknownName {
    fn new(field: &'static str, value: &str, expected: &'static str) -> Self {
        Self {
            field,
            value: value.to_owned(),
            expected,
        }
    }

    /// Attach the rule id, naming the field (`severity` or `validator`).
    pub fn into_rule_error(self, rule_id: &str) -> TrapError {
        let reason = self.to_string();
        TrapError::invalid_rule(rule_id, self.field, reason)
    }
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?} (expected one of: {})",
            self.field, self.value, self.expected
        )
    }
}

impl std::error::Error for UnknownName {}

/// The prefix that makes a keyword count only at the start of a word (see
/// [`RuleSpec::keywords`]).
pub const WORD_START: &str = "\\b";

/// One regex rule as declared in a rule file, before compilation.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// Unique id, `[A-Za-z0-9_.-]+`.
    pub id: String,
    /// Free-text category, `[a-z0-9_]+` (e.g. `secret`, `pii`).
    pub category: String,
    /// Severity, which determines the anomaly-score weight.
    pub severity: Severity,
    /// Pattern in `regex` crate syntax. If it has a named group `secret`, the
    /// finding spans that group instead of the whole match.
    pub pattern: String,
    /// Prefilter keywords, matched ASCII-case-insensitively. The regex only
    /// runs when at least one keyword occurs in the input; a rule with no
    /// keywords always runs. A keyword written `\bword` ([`WORD_START`]
    /// then the text) counts only where it starts a word: at the start of
    /// the input or after a byte that is not an ASCII letter, digit or `_`
    /// (so `\bohne` is not found inside `Einwohner`). Use it only when
    /// every match of the pattern has such a byte, or the start, right before
    /// the keyword. A space in a keyword matches any run of white space
    /// (see [`crate::whitespace`]): `stop follow` is found in
    /// `stop\tfollowing`.
    /// Every string the pattern matches should hold a keyword; see
    /// [`crate::keyword_coverage`] for the check.
    pub keywords: Vec<String>,
    /// Optional post-match check on the reported bytes.
    pub validator: Option<Validator>,
    /// Compile the pattern case-insensitively.
    pub case_insensitive: bool,
    /// Optional Shannon-entropy floor in bits per byte, in `(0, 8]`: a match
    /// whose reported span has less entropy is dropped (placeholders such as
    /// `changeme` or `aaaaaaaa`).
    pub min_entropy: Option<f64>,
    /// Substrings (ASCII case-insensitive) that drop a match when its reported
    /// span contains one (`example`, `your_`, `${`, …).
    pub stopwords: Vec<String>,
    /// Optional batch name, `[a-z0-9_]+`. When two or more rules of one batch
    /// would each search an input in full (their digit windows, if any,
    /// cover most of it), one pass of their combined automaton (a
    /// `RegexSet`) first says which of them match at all, and only those run
    /// their own regex. Meant for rules with no rare keyword (digit patterns
    /// such as card numbers or phone numbers). Results are the same with or
    /// without.
    pub batch: Option<String>,
}

impl RuleSpec {
    /// A rule with no keywords, no validator, case-sensitive.
    pub fn new(
        id: impl Into<String>,
        category: impl Into<String>,
        severity: Severity,
        pattern: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            category: category.into(),
            severity,
            pattern: pattern.into(),
            keywords: Vec::new(),
            validator: None,
            case_insensitive: false,
            min_entropy: None,
            stopwords: Vec::new(),
            batch: None,
        }
    }

    /// Builder: set the prefilter keywords.
    #[must_use]
    pub fn with_keywords<I, S>(mut self, keywords: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keywords = keywords.into_iter().map(Into::into).collect();
        self
    }

    /// Builder: set the validator.
    #[must_use]
    pub fn with_validator(mut self, validator: Validator) -> Self {
        self.validator = Some(validator);
        self
    }

    /// Builder: set case-insensitive matching.
    #[must_use]
    pub fn with_case_insensitive(mut self, yes: bool) -> Self {
        self.case_insensitive = yes;
        self
    }

    /// Builder: set the entropy floor (bits per byte of the reported span).
    #[must_use]
    pub fn with_min_entropy(mut self, bits: f64) -> Self {
        self.min_entropy = Some(bits);
        self
    }

    /// Builder: set the stopwords.
    #[must_use]
    pub fn with_stopwords<I, S>(mut self, stopwords: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.stopwords = stopwords.into_iter().map(Into::into).collect();
        self
    }

    /// Builder: put the rule in a batch (see [`RuleSpec::batch`]).
    #[must_use]
    pub fn with_batch(mut self, batch: impl Into<String>) -> Self {
        self.batch = Some(batch.into());
        self
    }

    /// Whether the reported span reaches [`RuleSpec::min_entropy`] (always
    /// true without a floor).
    pub fn entropy_ok(&self, span: &[u8]) -> bool {
        self.min_entropy
            .is_none_or(|floor| shannon_entropy(span) >= floor)
    }

    /// Check everything that can be checked without compiling the pattern.
    ///
    /// # Errors
    /// [`TrapError::InvalidRule`] naming the first offending field.
    pub fn validate(&self) -> Result<(), TrapError> {
        check_id(&self.id)?;
        if self.category.is_empty() {
            return Err(TrapError::invalid_rule(
                &self.id,
                "category",
                "must not be empty",
            ));
        }
        if !self
            .category
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(TrapError::invalid_rule(
                &self.id,
                "category",
                format!(
                    "{:?} must match [a-z0-9_]+ (lowercase ASCII, digits, underscore)",
                    self.category
                ),
            ));
        }
        if self.pattern.is_empty() {
            return Err(TrapError::invalid_rule(
                &self.id,
                "pattern",
                "must not be empty",
            ));
        }
        if let Some(pos) = self
            .keywords
            .iter()
            .position(|k| k.is_empty() || k.as_str() == WORD_START)
        {
            return Err(TrapError::invalid_rule(
                &self.id,
                "keywords",
                format!(
                    "keyword #{pos} is empty (an empty keyword would match every input; \\b needs text after it)"
                ),
            ));
        }
        if let Some((pos, _)) = self.keywords.iter().enumerate().find(|(_, k)| {
            let text = k.strip_prefix(WORD_START).unwrap_or(k);
            text.starts_with(' ')
                || text.ends_with(' ')
                || text.contains("  ")
                || text.chars().any(|c| c != ' ' && c.is_whitespace())
        }) {
            return Err(TrapError::invalid_rule(
                &self.id,
                "keywords",
                format!(
                    "keyword #{pos}: a space in a keyword matches any run of white space, so write words apart by single spaces, with none at either end and no tab or line break"
                ),
            ));
        }
        if let Some(batch) = &self.batch {
            if batch.is_empty()
                || !batch
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(TrapError::invalid_rule(
                    &self.id,
                    "batch",
                    format!(
                        "{batch:?} must match [a-z0-9_]+ (lowercase ASCII, digits, underscore)"
                    ),
                ));
            }
        }
        if let Some(bits) = self.min_entropy {
            if !(bits.is_finite() && bits > 0.0 && bits <= 8.0) {
                return Err(TrapError::invalid_rule(
                    &self.id,
                    "min_entropy",
                    format!("{bits} is out of range (bits per byte, 0 < min_entropy <= 8)"),
                ));
            }
        }
        if let Some(pos) = self.stopwords.iter().position(String::is_empty) {
            return Err(TrapError::invalid_rule(
                &self.id,
                "stopwords",
                format!("stopword #{pos} is empty (an empty stopword would drop every match)"),
            ));
        }
        Ok(())
    }
}

/// Ids are `[A-Za-z0-9_.-]+`.
fn check_id(id: &str) -> Result<(), TrapError> {
    if id.is_empty() {
        return Err(TrapError::invalid_rule("", "id", "must not be empty"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(TrapError::invalid_rule(
            id,
            "id",
            "must match [A-Za-z0-9_.-]+",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_names_and_weights() {
        for sev in Severity::ALL {
            assert_eq!(sev.as_str().parse::<Severity>(), Ok(sev));
        }
        assert_eq!(Severity::Critical.weight(), 5);
        assert_eq!(Severity::Error.weight(), 4);
        assert_eq!(Severity::Warning.weight(), 3);
        assert_eq!(Severity::Notice.weight(), 2);
        assert!("Critical".parse::<Severity>().is_err());
        let err = "high"
            .parse::<Severity>()
            .unwrap_err()
            .into_rule_error("r1");
        assert_eq!(err.field(), "severity");
        assert_eq!(err.rule_id(), Some("r1"));
    }

    #[test]
    fn validator_names() {
        assert_eq!("luhn".parse::<Validator>(), Ok(Validator::Luhn));
        for v in Validator::ALL {
            assert_eq!(v.as_str().parse::<Validator>(), Ok(v));
        }
        let err = "crc32"
            .parse::<Validator>()
            .unwrap_err()
            .into_rule_error("r");
        assert_eq!(err.field(), "validator");
    }

    #[test]
    fn luhn() {
        let ok = |s: &str| Validator::Luhn.accepts(s.as_bytes());
        assert!(ok("4111 1111 1111 1111"));
        assert!(ok("4111-1111-1111-1111"));
        assert!(ok("4111111111111111"));
        assert!(ok("378282246310005")); // 15-digit Amex test number
        assert!(!ok("4111 1111 1111 1112"));
        assert!(!ok("4111x1111 1111 1111"));
        assert!(!ok("0000 0000 0000")); // 12 digits: too short
        assert!(!ok("00000000000000000000")); // 20 digits: too long
        assert!(!ok(""));
    }

    #[test]
    fn iban_table_is_sorted_and_plausible() {
        assert!(IBAN_LENGTHS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(IBAN_LENGTHS.iter().all(|(_, n)| (15..=34).contains(n)));
        assert_eq!(iban_length(*b"DE"), Some(22));
        assert_eq!(iban_length(*b"US"), None);
    }

    #[test]
    fn entropy_floor_and_fields() {
        assert!(shannon_entropy(b"").abs() < f64::EPSILON);
        assert!(shannon_entropy(b"aaaa").abs() < f64::EPSILON);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-12);
        let r = RuleSpec::new("r", "c", Severity::Notice, "x").with_min_entropy(3.0);
        assert!(!r.entropy_ok(b"changeme"));
        assert!(r.entropy_ok(b"Zx9#kQ2!vB7m"));
        assert_eq!(r.validate(), Ok(()));
        for bad in [0.0, -1.0, 8.5, f64::NAN, f64::INFINITY] {
            let r = RuleSpec::new("r", "c", Severity::Notice, "x").with_min_entropy(bad);
            assert_eq!(r.validate().unwrap_err().field(), "min_entropy");
        }
        let r = RuleSpec::new("r", "c", Severity::Notice, "x").with_stopwords(["ok", ""]);
        assert_eq!(r.validate().unwrap_err().field(), "stopwords");
        let r = RuleSpec::new("r", "c", Severity::Notice, "x").with_batch("Digits");
        assert_eq!(r.validate().unwrap_err().field(), "batch");
        let r = RuleSpec::new("r", "c", Severity::Notice, "x").with_batch("");
        assert_eq!(r.validate().unwrap_err().field(), "batch");
        let r = RuleSpec::new("r", "c", Severity::Notice, "x").with_batch("numbers_2");
        assert!(r.validate().is_ok());
    }

    #[test]
    fn validate_fields() {
        let base = RuleSpec::new("a.b-c_1", "secret_2", Severity::Notice, "x");
        assert_eq!(base.validate(), Ok(()));

        let mut r = base.clone();
        r.id = String::new();
        assert_eq!(r.validate().unwrap_err().field(), "id");
        r.id = "bad id".into();
        assert_eq!(r.validate().unwrap_err().field(), "id");

        let mut r = base.clone();
        r.category = "Secret".into();
        assert_eq!(r.validate().unwrap_err().field(), "category");
        r.category = String::new();
        assert_eq!(r.validate().unwrap_err().field(), "category");

        let mut r = base.clone();
        r.pattern = String::new();
        assert_eq!(r.validate().unwrap_err().field(), "pattern");

        let r = base.clone().with_keywords(["ok", ""]);
        assert_eq!(r.validate().unwrap_err().field(), "keywords");
        let r = base.clone().with_keywords(["ok", "\\b"]);
        assert_eq!(r.validate().unwrap_err().field(), "keywords");
        // Words apart by single spaces only.
        for bad in [
            " ok",
            "ok ",
            "stop  follow",
            "stop\tfollow",
            "\\b stop",
            "a\u{a0}b",
        ] {
            let r = base.clone().with_keywords([bad]);
            assert_eq!(r.validate().unwrap_err().field(), "keywords", "{bad:?}");
        }
        assert!(base
            .with_keywords(["stop follow", "\\bno longer"])
            .validate()
            .is_ok());
    }
}
