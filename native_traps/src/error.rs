//! The single error type of the crate.
//!
//! Every variant carries enough context to point an operator at the exact
//! place in the rule file (or constructor call) that is wrong: the rule id and
//! the field for rule problems, the parameter name for entropy settings.

use std::error::Error;
use std::fmt;

/// Why a trap could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrapError {
    /// A rule is malformed: bad or empty id, duplicate id, invalid category,
    /// unknown severity or validator, empty pattern or keyword, unknown or
    /// missing field (the Python binding reports those), …
    InvalidRule {
        /// Id of the offending rule (or a positional placeholder such as
        /// `<rule #3>` when the id itself is missing or unusable).
        rule_id: String,
        /// Name of the field that is wrong (`id`, `severity`, `keywords`, …).
        field: String,
        /// Human-readable explanation.
        reason: String,
    },
    /// A rule's `pattern` does not compile: syntax error, or the compiled
    /// program exceeds the size limit.
    InvalidPattern {
        /// Id of the offending rule.
        rule_id: String,
        /// The compiler's explanation.
        reason: String,
    },
    /// An entropy-trap parameter is out of range.
    InvalidParameter {
        /// Parameter name as spelled in the constructor (`min_length`,
        /// `hex_threshold`, …).
        name: String,
        /// Human-readable explanation.
        reason: String,
    },
}

impl TrapError {
    /// Shorthand for [`TrapError::InvalidRule`].
    pub fn invalid_rule(
        rule_id: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidRule {
            rule_id: rule_id.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`TrapError::InvalidParameter`].
    pub fn invalid_parameter(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidParameter {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// The rule id this error is about, if it is about a rule.
    pub fn rule_id(&self) -> Option<&str> {
        match self {
            Self::InvalidRule { rule_id, .. } | Self::InvalidPattern { rule_id, .. } => {
                Some(rule_id)
            }
            Self::InvalidParameter { .. } => None,
        }
    }

    /// The rule field or parameter name this error is about.
    pub fn field(&self) -> &str {
        match self {
            Self::InvalidRule { field, .. } => field,
            Self::InvalidPattern { .. } => "pattern",
            Self::InvalidParameter { name, .. } => name,
        }
    }
}

impl fmt::Display for TrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRule {
                rule_id,
                field,
                reason,
            } => write!(f, "rule {rule_id:?}: invalid field {field:?}: {reason}"),
            Self::InvalidPattern { rule_id, reason } => {
                write!(f, "rule {rule_id:?}: invalid field \"pattern\": {reason}")
            }
            Self::InvalidParameter { name, reason } => {
                write!(f, "invalid parameter {name:?}: {reason}")
            }
        }
    }
}

impl Error for TrapError {}

#[cfg(test)]
mod tests {
    use super::TrapError;

    #[test]
    fn messages_name_rule_and_field() {
        let e = TrapError::invalid_rule("aws", "severity", "unknown severity \"high\"");
        let msg = e.to_string();
        assert!(msg.contains("\"aws\""), "{msg}");
        assert!(msg.contains("\"severity\""), "{msg}");
        assert_eq!(e.rule_id(), Some("aws"));
        assert_eq!(e.field(), "severity");

        let e = TrapError::InvalidPattern {
            rule_id: "jwt".into(),
            reason: "unclosed group".into(),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("\"jwt\"") && msg.contains("\"pattern\""),
            "{msg}"
        );

        let e = TrapError::invalid_parameter("min_length", "must be >= 8");
        assert_eq!(e.rule_id(), None);
        assert!(e.to_string().contains("\"min_length\""));
    }
}
