//! The 18 intrinsic functions (`States.Format(...)`, ...): parser and evaluator.
//! CONTRACT STUB: replaced by the real implementation.

use serde_json::Value;

use super::error::StatesError;
use super::scope::Scope;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IntrinsicSyntaxError(pub String);

/// A pre-parsed intrinsic function call.
#[derive(Debug, Clone)]
pub struct Intrinsic {
    text: String,
}

impl Intrinsic {
    /// Is this string an intrinsic call (starts with `States.` and a name followed by `(`)?
    pub fn looks_like(text: &str) -> bool {
        text.trim_start().starts_with("States.")
    }

    pub fn parse(text: &str) -> Result<Intrinsic, IntrinsicSyntaxError> {
        Ok(Intrinsic { text: text.to_string() })
    }

    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, StatesError> {
        let _ = scope;
        Err(StatesError::intrinsic(format!("{} not implemented", self.text)))
    }
}
