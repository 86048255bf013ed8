//! JSONPath (RFC 9535 via `serde_json_path`) and reference paths with AWS's rules.
//! CONTRACT STUB: replaced by the real implementation.

use serde_json::Value;

use super::error::StatesError;
use super::scope::Scope;

/// Why a path string is not a valid path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathSyntaxError(pub String);

/// A pre-parsed query path: `$...` (state input), `$$...` (context object) or `$var...`
/// (a variable). Used by InputPath, OutputPath, ItemsPath, `...Path` fields and `"key.$"`.
#[derive(Debug, Clone)]
pub struct Path {
    text: String,
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, PathSyntaxError> {
        Ok(Path { text: text.to_string() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Evaluates as AWS does: a definite path yields its single value, an indefinite one
    /// (wildcard, slice, filter, union, descendant) an array of every match. No match on a
    /// definite path is `States.Runtime` ("Invalid path '...' : No results for path: ...").
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, StatesError> {
        let _ = scope;
        Err(StatesError::runtime(format!("path {} not implemented", self.text)))
    }
}

/// A reference path (ResultPath): names and indices only, no wildcards; `$` is the root.
#[derive(Debug, Clone)]
pub struct ReferencePath {
    text: String,
}

impl ReferencePath {
    pub fn parse(text: &str) -> Result<ReferencePath, PathSyntaxError> {
        Ok(ReferencePath { text: text.to_string() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// ResultPath semantics: returns `target` with `value` written at this path, creating
    /// missing objects along the way; `$` replaces the whole target. Writing through a
    /// non-object is `States.Runtime`.
    pub fn set(&self, target: Value, value: Value) -> Result<Value, StatesError> {
        let _ = (target, value);
        Err(StatesError::runtime("reference path not implemented"))
    }
}
