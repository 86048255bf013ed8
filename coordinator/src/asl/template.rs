//! Payload templates: JSON values whose `"key.$"` fields hold a path or an intrinsic.
//! CONTRACT STUB: replaced by the real implementation.

use serde_json::Value;

use super::error::StatesError;
use super::scope::Scope;

/// Why a template is invalid, with the JSON pointer of the offending field inside the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct TemplateError {
    /// e.g. `/Payload/name.$` relative to the template's root.
    pub pointer: String,
    pub message: String,
}

/// A pre-parsed payload template (Parameters, ItemSelector, ResultSelector, Assign values ...).
#[derive(Debug, Clone)]
pub struct Template {
    raw: Value,
}

impl Template {
    pub fn parse(raw: &Value) -> Result<Template, TemplateError> {
        Ok(Template { raw: raw.clone() })
    }

    /// Builds the payload. A path with no match is `States.Runtime` with AWS's cause text;
    /// a failing intrinsic is `States.IntrinsicFailure`.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, StatesError> {
        let _ = scope;
        Ok(self.raw.clone())
    }
}
