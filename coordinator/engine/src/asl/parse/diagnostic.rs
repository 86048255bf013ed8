//! Diagnostics in the shape of AWS's `ValidateStateMachineDefinition`, and JSON syntax
//! errors explained with their line and column.

use std::fmt;

use serde_json::Value;

/// Where in the definition a diagnostic points: a JSON-pointer-like path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc(String);

impl Loc {
    pub fn root() -> Loc {
        Loc(String::new())
    }

    pub fn field(&self, name: &str) -> Loc {
        Loc(format!("{}/{}", self.0, name))
    }

    pub fn index(&self, i: usize) -> Loc {
        Loc(format!("{}/{}", self.0, i))
    }

    pub fn as_str(&self) -> &str {
        if self.0.is_empty() { "/" } else { &self.0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// AWS's diagnostic codes where one exists (`SCHEMA_VALIDATION_FAILED`,
    /// `INVALID_JSON_DESCRIPTION`), plus mapfleet's own more specific ones.
    pub code: &'static str,
    pub message: String,
    pub location: Option<String>,
}

impl Diagnostic {
    pub fn new(code: &'static str, loc: &Loc, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            location: Some(loc.as_str().to_string()),
        }
    }

    pub fn schema(loc: &Loc, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new("SCHEMA_VALIDATION_FAILED", loc, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{}: {} at {}", self.code, self.message, loc),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

/// The definition was rejected; every diagnostic found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid state machine definition: {}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; "))]
pub struct InvalidDefinition(pub Vec<Diagnostic>);

/// Parses JSON text, explaining syntax errors with line and column, and comments clearly.
pub fn parse_json_text(text: &str) -> Result<Value, Diagnostic> {
    if text.trim().is_empty() {
        return Err(Diagnostic {
            severity: Severity::Error,
            code: "SCHEMA_VALIDATION_FAILED",
            message: "Definition must be a valid JSON object".into(),
            location: None,
        });
    }
    serde_json::from_str::<Value>(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let message = match comment_at(text, line, column) {
            Some(kind) => format!(
                "JSON does not allow comments: found a {kind} comment at line {line}, column {column}. \
                 Remove it (the workshop's skeleton marks where to paste states with a `//` comment)"
            ),
            None => format!("{e}"),
        };
        Diagnostic {
            severity: Severity::Error,
            code: "INVALID_JSON_DESCRIPTION",
            message,
            location: Some(format!("line {line}, column {column}")),
        }
    })
}

/// If the syntax error sits on a `//` or `/*` comment, says which kind.
fn comment_at(text: &str, line: usize, column: usize) -> Option<&'static str> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let chars: Vec<char> = l.chars().collect();
    // serde_json reports the column of the offending character (1-based) or just past it.
    for start in [column.saturating_sub(1), column.saturating_sub(2), column] {
        if start + 1 < chars.len() + 1 && chars.get(start) == Some(&'/') {
            match chars.get(start + 1) {
                Some('/') => return Some("`//`"),
                Some('*') => return Some("`/* */`"),
                _ => {}
            }
        }
    }
    None
}
