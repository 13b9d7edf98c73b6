//! The typed error every rule returns: the rule it enforces, a stable machine code, and a
//! human message. The HTTP layer maps it to `{"error": {"code", "message"}}`.

use std::fmt;

/// A rule refused an operation. `rule` is the DOMAIN.md rule ID (or section) that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub rule: &'static str,
    pub code: &'static str,
    pub message: String,
    /// Records the refusal is about (e.g. duplicate candidates), if any.
    pub candidates: Vec<crate::crm::EntityRef>,
}

impl RuleError {
    pub fn new(rule: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        RuleError { rule, code, message: message.into(), candidates: Vec::new() }
    }
    pub fn with_candidates(mut self, c: Vec<crate::crm::EntityRef>) -> Self {
        self.candidates = c;
        self
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.rule, self.message)
    }
}

impl std::error::Error for RuleError {}

/// Shorthand used by the rules.
pub(crate) fn refuse<T>(rule: &'static str, code: &'static str, message: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError::new(rule, code, message))
}

/// Checks a text field against its Dynamics length limit (`String(n)`, counted in chars).
pub fn check_len(field: &'static str, value: Option<&str>, max: usize) -> Result<(), RuleError> {
    match value {
        Some(v) if v.chars().count() > max => {
            refuse("§0", "field_too_long", format!("{field} is longer than {max} characters"))
        }
        _ => Ok(()),
    }
}

/// Checks a required (`Req`/`Sys`) text field is present and not blank.
pub fn require(field: &'static str, value: Option<&str>, rule: &'static str) -> Result<(), RuleError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(()),
        _ => refuse(rule, "required_field", format!("{field} is required")),
    }
}
