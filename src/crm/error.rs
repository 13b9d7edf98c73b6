//! The typed error every rule returns: the rule it enforces, a stable machine code, and a
//! human message. The HTTP layer maps it to `{"error": {"code", "message"}}`.

use std::fmt;

/// What kind of refusal a rule made: the rule says it, the HTTP layer only maps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No state of the records would accept this request (HTTP 422).
    Invalid,
    /// The records' current state forbids it: a closed record, a duplicate, a started wave
    /// (HTTP 409).
    Conflict,
    /// The caller may not do this to this record: someone else's work (HTTP 403).
    Forbidden,
}

/// A rule refused an operation. `rule` is the DOMAIN.md rule ID (or section) that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub rule: &'static str,
    pub code: &'static str,
    pub kind: Refusal,
    pub message: String,
    /// Records the refusal is about (e.g. duplicate candidates), if any.
    pub candidates: Vec<crate::crm::EntityRef>,
}

impl RuleError {
    /// A request no state would accept.
    pub fn new(rule: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        RuleError { rule, code, kind: Refusal::Invalid, message: message.into(), candidates: Vec::new() }
    }
    /// A request the records' current state forbids.
    pub fn conflict(rule: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        RuleError { kind: Refusal::Conflict, ..RuleError::new(rule, code, message) }
    }
    /// A request this caller may not make of this record.
    pub fn forbidden(rule: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        RuleError { kind: Refusal::Forbidden, ..RuleError::new(rule, code, message) }
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

/// Shorthand for a refusal the records' state makes (409).
pub(crate) fn refuse_conflict<T>(
    rule: &'static str,
    code: &'static str,
    message: impl Into<String>,
) -> Result<T, RuleError> {
    Err(RuleError::conflict(rule, code, message))
}

/// Shorthand for a refusal of this caller (403).
pub(crate) fn refuse_forbidden<T>(
    rule: &'static str,
    code: &'static str,
    message: impl Into<String>,
) -> Result<T, RuleError> {
    Err(RuleError::forbidden(rule, code, message))
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
