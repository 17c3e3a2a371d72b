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
/// New validators (IBAN mod-97, US SSN area rules, …) are added as variants
/// here plus an arm in [`Validator::accepts`] and [`Validator::as_str`];
/// the enum is `non_exhaustive` so that adding one is not a breaking change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Validator {
    /// Luhn (mod 10) checksum used by payment card numbers. Accepts 13 to 19
    /// ASCII digits; spaces and dashes are ignored; any other byte rejects.
    Luhn,
}

impl Validator {
    /// Every validator.
    pub const ALL: [Self; 1] = [Self::Luhn];

    /// The lowercase name used in rule files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Luhn => "luhn",
        }
    }

    /// Whether `candidate` (the matched bytes) passes the check.
    pub fn accepts(self, candidate: &[u8]) -> bool {
        match self {
            Self::Luhn => luhn_valid(candidate),
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
            .ok_or_else(|| UnknownName::new("validator", s, "luhn"))
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
    (13..=19).contains(&digits) && sum % 10 == 0
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

/// One regex rule as declared in a rule file, before compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// keywords always runs.
    pub keywords: Vec<String>,
    /// Optional post-match check on the reported bytes.
    pub validator: Option<Validator>,
    /// Compile the pattern case-insensitively.
    pub case_insensitive: bool,
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
        if let Some(pos) = self.keywords.iter().position(String::is_empty) {
            return Err(TrapError::invalid_rule(
                &self.id,
                "keywords",
                format!("keyword #{pos} is empty (an empty keyword would match every input)"),
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
        let err = "iban"
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

        let r = base.with_keywords(["ok", ""]);
        assert_eq!(r.validate().unwrap_err().field(), "keywords");
    }
}
