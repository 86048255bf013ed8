//! JSONPath (RFC 9535 via `serde_json_path`) and reference paths with AWS's rules.
//!
//! AWS evaluates JSONPath with Jayway JsonPath. We parse the Jayway dialect ourselves into a
//! small list of segments: that tells us whether a path is *definite* (names and indices
//! only, so it yields one value or an error) and gives the `$['a']['b']` form AWS quotes in
//! its errors. Definite paths are walked directly; indefinite ones (wildcards, slices,
//! unions, filters, descendants) are re-serialised as RFC 9535 and handed to
//! `serde_json_path`, compiled once at parse time.

mod reference;
mod syntax;

use std::borrow::Cow;

use serde_json::Value;
use serde_json_path::JsonPath;

use super::error::StatesError;
use super::scope::Scope;
use syntax::{
    Parser, Root, Segment, Selector, push_bracket_name, push_jayway_selector, to_rfc9535,
};

pub use reference::{ReferencePath, SetUndo};

/// Why a path string is not a valid path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathSyntaxError(pub String);

/// Longest path text we accept. Real paths are short; the cap bounds parse work and the
/// recursion inside `serde_json_path` for hostile input.
const MAX_PATH_LEN: usize = 4096;

/// A pre-parsed query path: `$...` (state input), `$$...` (context object) or `$var...`
/// (a variable). Used by InputPath, OutputPath, ItemsPath, `...Path` fields and `"key.$"`.
#[derive(Debug, Clone)]
pub struct Path {
    text: String,
    root: Root,
    segments: Vec<Segment>,
    /// Compiled RFC 9535 query, only for indefinite paths.
    query: Option<JsonPath>,
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, PathSyntaxError> {
        if text.len() > MAX_PATH_LEN {
            return Err(PathSyntaxError(format!(
                "The path '{}...' is longer than {MAX_PATH_LEN} characters",
                truncate(text, 40)
            )));
        }
        let mut p = Parser::new(text);
        let root = p.root()?;
        let segments = p.segments()?;
        let definite = segments.iter().all(Segment::is_definite);
        let query = if definite {
            None
        } else {
            let rfc = to_rfc9535(&segments);
            Some(JsonPath::parse(&rfc).map_err(|e| {
                PathSyntaxError(format!("The path '{text}' is not a valid JSONPath: {e}"))
            })?)
        };
        Ok(Path {
            text: text.to_string(),
            root,
            segments,
            query,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Names and indices only: yields one value (or nothing), never a list of matches.
    pub fn is_definite(&self) -> bool {
        self.query.is_none()
    }

    /// Does this path read the context object (`$$...`)?
    pub fn is_context(&self) -> bool {
        self.root == Root::Context
    }

    /// The variable this path reads (`$name...`), if it is a variable path.
    pub fn variable(&self) -> Option<&str> {
        match &self.root {
            Root::Var(name) => Some(name),
            _ => None,
        }
    }

    /// Is this exactly `$` (the whole input)?
    pub fn is_root(&self) -> bool {
        self.root == Root::Input && self.segments.is_empty()
    }

    /// The value the path's root refers to in `scope` (`None`: an unset variable).
    pub fn root_value<'v>(&self, scope: &Scope<'v>) -> Option<&'v Value> {
        match &self.root {
            Root::Input => Some(scope.input),
            Root::Context => Some(scope.context),
            Root::Var(name) => scope.vars.get(name),
        }
    }

    /// Evaluates as AWS does: a definite path yields its single value, an indefinite one
    /// (wildcard, slice, filter, union, descendant) an array of every match. No match on a
    /// definite path is `States.Runtime` ("Invalid path '...' : No results for path: ...").
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, StatesError> {
        match self.find(scope) {
            Some(v) => Ok(v.into_owned()),
            None => Err(StatesError::runtime(self.no_results_cause())),
        }
    }

    /// Like [`Path::eval`] but borrows where it can, and `None` means "no match" (a definite
    /// path that does not exist, or an unset variable). Choice's `IsPresent` is this.
    pub fn find<'v>(&self, scope: &Scope<'v>) -> Option<Cow<'v, Value>> {
        let root = self.root_value(scope)?;
        match &self.query {
            None => walk_definite(root, &self.segments).map(Cow::Borrowed),
            Some(q) => Some(Cow::Owned(Value::Array(
                q.query(root).all().into_iter().cloned().collect(),
            ))),
        }
    }

    /// What a definite `$$.Map.Item.Index...` or `$$.Map.Item.Value...` path reads, taken
    /// from item `index` (value `item`) of a Map without building the context object:
    /// `Some(None)` when it matches nothing. `None`: the path is not such a path (it reads
    /// another part of `$$`, or is not a context path, or is indefinite).
    pub fn find_map_item<'v>(
        &self,
        index: usize,
        item: &'v Value,
    ) -> Option<Option<Cow<'v, Value>>> {
        let rest = self.map_item_rest()?;
        Some(match rest.split_first() {
            Some((
                Segment {
                    selector: Selector::Name(member),
                    ..
                },
                rest,
            )) if member == "Value" => walk_definite(item, rest).map(Cow::Borrowed),
            // A number has no members or elements.
            Some((
                Segment {
                    selector: Selector::Name(member),
                    ..
                },
                rest,
            )) if member == "Index" => rest.is_empty().then(|| Cow::Owned(Value::from(index))),
            _ => return None,
        })
    }

    /// Whether this path is exactly `$$.Map.Item.Value` (the whole item).
    pub fn is_map_item_value(&self) -> bool {
        matches!(self.map_item_rest(), Some([Segment { selector: Selector::Name(m), .. }]) if m == "Value")
    }

    /// The segments after `$$.Map.Item` of a definite context path under it.
    fn map_item_rest(&self) -> Option<&[Segment]> {
        if self.root != Root::Context || self.query.is_some() {
            return None;
        }
        match self.segments.as_slice() {
            [
                Segment {
                    selector: Selector::Name(map),
                    ..
                },
                Segment {
                    selector: Selector::Name(item),
                    ..
                },
                rest @ ..,
            ] if map == "Map" && item == "Item" => Some(rest),
            _ => None,
        }
    }

    /// AWS's cause text for a definite path with no match.
    pub fn no_results_cause(&self) -> String {
        format!(
            "Invalid path '{}' : No results for path: {}",
            self.text,
            self.normalized()
        )
    }

    /// Jayway's canonical form, as AWS quotes it in errors: `$['a']['b'][0]`.
    pub fn normalized(&self) -> String {
        let mut out = String::from("$");
        if let Root::Var(name) = &self.root {
            push_bracket_name(&mut out, name);
        }
        for seg in &self.segments {
            if seg.descendant {
                out.push_str("..");
            }
            push_jayway_selector(&mut out, &seg.selector);
        }
        out
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Kind of a JSON value, in the words of AWS's Java-flavoured messages.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn walk_definite<'v>(root: &'v Value, segments: &[Segment]) -> Option<&'v Value> {
    let mut cur = root;
    for seg in segments {
        cur = match (&seg.selector, cur) {
            (Selector::Name(n), Value::Object(m)) => m.get(n)?,
            (Selector::Index(i), Value::Array(a)) => {
                let idx = if *i < 0 {
                    // Jayway counts negative indices from the end, like RFC 9535.
                    let back = usize::try_from(i.unsigned_abs()).ok()?;
                    a.len().checked_sub(back)?
                } else {
                    usize::try_from(*i).ok()?
                };
                a.get(idx)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests;
