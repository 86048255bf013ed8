//! Reference paths (ResultPath): where a state writes its result into its input.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::syntax::{Parser, Root, Selector, push_bracket_name};
use super::{MAX_PATH_LEN, PathSyntaxError, json_kind, truncate};
use crate::asl::error::StatesError;

/// One step of a reference path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RefStep {
    Name(String),
    Index(usize),
}

/// What a [`ReferencePath::set_undoable`] write changed.
#[derive(Debug, PartialEq)]
pub enum SetUndo {
    /// The name was new.
    Inserted,
    /// The value the write replaced.
    Replaced(Value),
}

/// A reference path (ResultPath): names and indices only, no wildcards; `$` is the root.
#[derive(Debug, Clone)]
pub struct ReferencePath {
    text: String,
    steps: Vec<RefStep>,
}

impl ReferencePath {
    pub fn parse(text: &str) -> Result<ReferencePath, PathSyntaxError> {
        if text.len() > MAX_PATH_LEN {
            return Err(PathSyntaxError(format!(
                "The path '{}...' is longer than {MAX_PATH_LEN} characters",
                truncate(text, 40)
            )));
        }
        let mut p = Parser::new(text);
        if p.root()? != Root::Input {
            return Err(PathSyntaxError(format!(
                "The value '{text}' is not a valid reference path: it must start with '$.' or '$['"
            )));
        }
        let mut steps = Vec::new();
        for seg in p.segments()? {
            match seg.selector {
                Selector::Name(n) if !seg.descendant => steps.push(RefStep::Name(n)),
                Selector::Index(i) if !seg.descendant && i >= 0 => {
                    // A non-negative i64 always fits in usize on the 64-bit targets we build for;
                    // anything else is rejected rather than truncated.
                    let i = usize::try_from(i).map_err(|_| not_reference(text))?;
                    steps.push(RefStep::Index(i));
                }
                _ => return Err(not_reference(text)),
            }
        }
        Ok(ReferencePath {
            text: text.to_string(),
            steps,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Is this exactly `$`?
    pub fn is_root(&self) -> bool {
        self.steps.is_empty()
    }

    /// The value at this path, if there is one.
    pub fn get<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        let mut cur = v;
        for step in &self.steps {
            cur = match (step, cur) {
                (RefStep::Name(n), Value::Object(m)) => m.get(n)?,
                (RefStep::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// ResultPath semantics: returns `target` with `value` written at this path, creating
    /// missing objects along the way; `$` replaces the whole target. Writing through a
    /// non-object is `States.Runtime`.
    pub fn set(&self, target: Value, value: Value) -> Result<Value, StatesError> {
        let Some((last, init)) = self.steps.split_last() else {
            return Ok(value);
        };
        let mut root = target;
        let mut cur = &mut root;
        for (depth, step) in init.iter().enumerate() {
            cur = match step {
                RefStep::Name(n) => match cur {
                    Value::Object(m) => m
                        .entry(n.clone())
                        .or_insert_with(|| Value::Object(Map::new())),
                    other => return Err(self.set_error(depth, other)),
                },
                RefStep::Index(i) => {
                    // Checked first with a shared borrow: the error needs to look at `cur`.
                    if cur.get(*i).is_none() || !cur.is_array() {
                        return Err(self.set_error(depth, cur));
                    }
                    match cur.get_mut(*i) {
                        Some(v) => v,
                        None => return Err(self.set_error(depth, &Value::Null)),
                    }
                }
            };
        }
        let depth = init.len();
        match (last, cur) {
            (RefStep::Name(n), Value::Object(m)) => {
                m.insert(n.clone(), value);
            }
            (RefStep::Index(i), Value::Array(a)) if *i < a.len() => a[*i] = value,
            (_, other) => return Err(self.set_error(depth, other)),
        }
        Ok(root)
    }

    /// [`ReferencePath::set`] for a path of one name into an object (`$.results`), written
    /// in place, a write that [`ReferencePath::unset`] takes back: a state whose input must
    /// outlive a failure after the write (for a Retry, a Catch or a redrive) turns its input
    /// into its output rather than copying it. `Err` hands `value` back, `target` untouched,
    /// for [`ReferencePath::set`].
    pub fn set_undoable(&self, target: &mut Value, value: Value) -> Result<SetUndo, Value> {
        match (self.steps.as_slice(), target) {
            ([RefStep::Name(n)], Value::Object(m)) => Ok(match m.insert(n.clone(), value) {
                Some(old) => SetUndo::Replaced(old),
                None => SetUndo::Inserted,
            }),
            _ => Err(value),
        }
    }

    /// Takes back a [`ReferencePath::set_undoable`] write into `target`.
    pub fn unset(&self, target: &mut Value, undo: SetUndo) {
        if let (Value::Object(m), [RefStep::Name(n)]) = (target, self.steps.as_slice()) {
            match undo {
                // It was appended: removing it restores the order too.
                SetUndo::Inserted => {
                    m.shift_remove(n);
                }
                SetUndo::Replaced(old) => {
                    if let Some(v) = m.get_mut(n) {
                        *v = old;
                    }
                }
            }
        }
    }

    /// Cause for a write that has to go through a value that cannot hold the next step.
    fn set_error(&self, depth: usize, found: &Value) -> StatesError {
        let mut at = String::from("$");
        for step in &self.steps[..depth] {
            push_ref_step(&mut at, step);
        }
        let mut want = String::new();
        push_ref_step(&mut want, &self.steps[depth]);
        StatesError::runtime(format!(
            "Invalid path '{}' : Unable to write {want} into {at}, which is {}",
            self.text,
            json_kind(found)
        ))
    }
}

impl std::fmt::Display for ReferencePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn not_reference(text: &str) -> PathSyntaxError {
    PathSyntaxError(format!(
        "The value '{text}' is not a valid reference path: only names and indices are allowed"
    ))
}

fn push_ref_step(out: &mut String, step: &RefStep) {
    match step {
        RefStep::Name(n) => push_bracket_name(out, n),
        RefStep::Index(i) => {
            let _ = write!(out, "[{i}]");
        }
    }
}
