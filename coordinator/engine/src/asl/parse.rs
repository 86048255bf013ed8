//! Two-stage parsing: JSON text → raw serde types → the validated [`StateMachine`].
//!
//! Diagnostics follow AWS's `ValidateStateMachineDefinition`: a code, a message and the
//! location of the offending field (`/States/FaceDetection/Next`). Every problem found is
//! reported, not only the first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use super::choice::{self, ChoiceRule, RuleCondition};
use super::definition::*;
use super::intrinsics::Intrinsic;
use super::jsonata::{JExpr, JTemplate, expression_text};
use super::path::{Path, ReferencePath};
use super::template::Template;

mod diagnostic;
mod distributed;
mod handlers;
mod map;
mod raw;

pub use diagnostic::{Diagnostic, InvalidDefinition, Loc, Severity, parse_json_text};
use raw::{RawMachine, RawState, allowed_fields};

/// The largest definition accepted, in bytes of JSON text (Step Functions' own limit).
pub const MAX_DEFINITION_BYTES: usize = 1_048_576;

/// Parses and validates a definition from its JSON text.
pub fn parse_definition(text: &str) -> Result<StateMachine, InvalidDefinition> {
    // Checked before parsing: a huge definition costs far more memory parsed than as text.
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(InvalidDefinition(vec![Diagnostic::new(
            "DEFINITION_TOO_LARGE",
            &Loc::root(),
            format!(
                "The definition is {} bytes, over the limit of {MAX_DEFINITION_BYTES} bytes (1 MiB)",
                text.len()
            ),
        )]));
    }
    let value = parse_json_text(text).map_err(|d| InvalidDefinition(vec![d]))?;
    parse_definition_value(&value)
}

/// Parses and validates an already-decoded definition.
pub fn parse_definition_value(value: &Value) -> Result<StateMachine, InvalidDefinition> {
    let mut b = Builder {
        diags: Vec::new(),
        graphs: Vec::new(),
        labels: HashSet::new(),
        jsonata: false,
    };
    let root_loc = Loc::root();
    let Some(obj) = value.as_object() else {
        return Err(InvalidDefinition(vec![Diagnostic::schema(
            &root_loc,
            "Definition must be a valid JSON object",
        )]));
    };
    let raw: RawMachine = match serde_json::from_value(Value::Object(obj.clone())) {
        Ok(r) => r,
        Err(e) => {
            return Err(InvalidDefinition(vec![Diagnostic::schema(
                &root_loc,
                serde_message(&e),
            )]));
        }
    };
    let query_language = match raw.QueryLanguage.as_ref() {
        None => QueryLanguage::JsonPath,
        Some(Value::String(s)) if s == "JSONPath" => QueryLanguage::JsonPath,
        Some(Value::String(s)) if s == "JSONata" => QueryLanguage::JsonAta,
        Some(_) => {
            b.diags.push(Diagnostic::schema(
                &root_loc.field("QueryLanguage"),
                "QueryLanguage must be 'JSONPath' or 'JSONata'",
            ));
            QueryLanguage::JsonPath
        }
    };
    let mut missing = Vec::new();
    if raw.States.is_none() {
        missing.push("States");
    }
    if raw.StartAt.is_none() {
        missing.push("StartAt");
    }
    if !missing.is_empty() {
        b.diags.push(Diagnostic::schema(
            &root_loc,
            format!("These fields are required: [{}]", missing.join(", ")),
        ));
        return Err(InvalidDefinition(b.diags));
    }
    let timeout_seconds = match raw.TimeoutSeconds.as_ref() {
        None => None,
        Some(v) => match v.as_u64().filter(|n| *n > 0 && *n <= 99_999_999) {
            Some(n) => Some(n),
            None => {
                b.diags.push(Diagnostic::schema(
                    &root_loc.field("TimeoutSeconds"),
                    "TimeoutSeconds must be a positive integer",
                ));
                None
            }
        },
    };
    let comment = b.string_opt(raw.Comment.as_ref(), &root_loc.field("Comment"));
    let version = b.string_opt(raw.Version.as_ref(), &root_loc.field("Version"));
    let root_id = b.graph(
        raw.StartAt.as_ref(),
        raw.States.as_ref(),
        &root_loc,
        query_language,
    );
    if b.diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(InvalidDefinition(b.diags));
    }
    let graphs: Vec<Arc<Graph>> = b
        .graphs
        .into_iter()
        .map(|g| Arc::new(g.expect("every graph is built")))
        .collect();
    let Some(root_id) = root_id else {
        return Err(InvalidDefinition(vec![Diagnostic::schema(
            &root_loc,
            "The definition has no valid States",
        )]));
    };
    Ok(StateMachine {
        comment,
        version,
        query_language,
        timeout_seconds,
        root: graphs[root_id].clone(),
        graphs,
    })
}

/// Whether some `$$` reference in a state's JSON text may read the execution input: any
/// reference other than the small, fixed members of the context object.
fn context_reads_input(text: &str) -> bool {
    reads_input_after(text, "$$")
}

/// Whether a JSONata state may read the execution input through `$states.context`, or
/// through `$states` as a whole.
fn states_context_reads_input(text: &str) -> bool {
    let bare = text.match_indices("$states").any(|(i, _)| {
        let rest = &text[i + "$states".len()..];
        !rest.starts_with('.') && !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
    });
    bare || reads_input_after(text, "$states.context")
}

fn reads_input_after(text: &str, prefix: &str) -> bool {
    const SMALL: &[&str] = &[
        ".Map.",
        ".State.",
        ".StateMachine.",
        ".Task.",
        ".Execution.Id",
        ".Execution.Name",
        ".Execution.StartTime",
        ".Execution.RoleArn",
        ".Execution.RedriveCount",
    ];
    text.match_indices(prefix).any(|(i, _)| {
        let rest = &text[i + prefix.len()..];
        !SMALL.iter().any(|p| rest.starts_with(p))
    })
}

/// A variable name AWS would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadVariableName {
    #[error(
        "The variable name '{0}' is invalid: it must be 1 to 80 letters, digits or '_', starting with a letter or '_'"
    )]
    Invalid(String),
    #[error("The variable name 'states' is reserved for $states")]
    Reserved,
}

/// AWS's rules for a variable name: 1 to 80 characters, starting with a letter or `_`,
/// then letters, digits and `_`; `states` is reserved for `$states`.
pub(crate) fn check_variable_name(name: &str) -> Result<(), BadVariableName> {
    let name = name.strip_suffix(".$").unwrap_or(name);
    let mut chars = name.chars();
    let ok_start = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_');
    let ok_rest = chars.all(|c| c.is_alphanumeric() || c == '_');
    if !ok_start || !ok_rest || name.chars().count() > 80 {
        return Err(BadVariableName::Invalid(name.to_string()));
    }
    if name == "states" {
        return Err(BadVariableName::Reserved);
    }
    Ok(())
}

fn serde_message(e: &serde_json::Error) -> String {
    // serde says "unknown field `X`, expected one of ..."; AWS says "Field 'X' is not supported".
    let text = e.to_string();
    if let Some(rest) = text.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        return format!("Field '{}' is not supported", &rest[..end]);
    }
    text
}

struct Builder {
    diags: Vec<Diagnostic>,
    /// Graphs in id order; a slot is reserved before its states are built so nested graphs
    /// get later ids.
    graphs: Vec<Option<Graph>>,
    labels: HashSet<String>,
    /// Whether the state being built is a JSONata state (its `{% ... %}` strings are
    /// expressions). Set by [`Builder::state`] and restored when it returns, so nested
    /// graphs do not leak theirs.
    jsonata: bool,
}

impl Builder {
    fn err(&mut self, loc: &Loc, message: impl Into<String>) {
        self.diags.push(Diagnostic::schema(loc, message));
    }

    fn string_opt(&mut self, v: Option<&Value>, loc: &Loc) -> Option<String> {
        match v {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.err(loc, "Expected a string");
                None
            }
        }
    }

    /// Builds one `StartAt` + `States` block and returns its id.
    fn graph(
        &mut self,
        start_at: Option<&Value>,
        states: Option<&Value>,
        loc: &Loc,
        ql: QueryLanguage,
    ) -> Option<GraphId> {
        let id = self.graphs.len();
        self.graphs.push(None);
        let states_loc = loc.field("States");
        let Some(states_obj) = states.and_then(Value::as_object) else {
            self.err(&states_loc, "'States' must be a JSON object");
            return None;
        };
        if states_obj.is_empty() {
            self.err(&states_loc, "'States' must contain at least one state");
            return None;
        }
        let mut by_name = HashMap::new();
        for (i, name) in states_obj.keys().enumerate() {
            if name.is_empty() || name.chars().count() > 80 {
                self.err(
                    &states_loc.field(name),
                    "State names must be 1 to 80 characters long",
                );
            }
            by_name.insert(name.clone(), i);
        }
        let start_loc = loc.field("StartAt");
        let start = match start_at {
            Some(Value::String(s)) => match by_name.get(s) {
                Some(i) => Some(*i),
                None => {
                    self.diags.push(Diagnostic::new(
                        "MISSING_TRANSITION_TARGET",
                        &start_loc,
                        format!("Missing 'Next' target: {s} (StartAt names no state in States)"),
                    ));
                    None
                }
            },
            Some(_) => {
                self.err(&start_loc, "'StartAt' must be a string");
                None
            }
            None => {
                self.err(loc, "These fields are required: [StartAt]");
                None
            }
        };
        let mut built = Vec::with_capacity(states_obj.len());
        for (name, raw) in states_obj {
            let state_loc = states_loc.field(name);
            built.push(self.state(name, raw, &state_loc, &by_name, ql));
        }
        let start = start?;
        let states: Vec<State> = built.into_iter().collect::<Option<Vec<_>>>()?;
        self.check_reachability(&states, start, &states_loc);
        self.graphs[id] = Some(Graph {
            id,
            start_at: start,
            states,
            by_name,
        });
        Some(id)
    }

    fn check_reachability(&mut self, states: &[State], start: StateId, states_loc: &Loc) {
        let mut seen = vec![false; states.len()];
        let mut queue = VecDeque::from([start]);
        seen[start] = true;
        while let Some(i) = queue.pop_front() {
            let s = &states[i];
            let mut next: Vec<StateId> = Vec::new();
            if let Transition::Next(n) = s.common.transition {
                next.push(n);
            }
            next.extend(s.common.catch.iter().map(|c| c.next));
            if let StateKind::Choice { choices, default } = &s.kind {
                next.extend(choices.iter().map(|c| c.next));
                next.extend(default.iter().copied());
            }
            for n in next {
                if !seen[n] {
                    seen[n] = true;
                    queue.push_back(n);
                }
            }
        }
        for (i, s) in states.iter().enumerate() {
            if !seen[i] {
                self.diags.push(Diagnostic::new(
                    "UNREACHABLE_STATE",
                    &states_loc.field(&s.name),
                    format!("State '{}' is not reachable", s.name),
                ));
            }
        }
    }

    fn state(
        &mut self,
        name: &str,
        raw_value: &Value,
        loc: &Loc,
        names: &HashMap<String, StateId>,
        ql: QueryLanguage,
    ) -> Option<State> {
        let outer = self.jsonata;
        let built = self.state_inner(name, raw_value, loc, names, ql);
        self.jsonata = outer;
        built
    }

    fn state_inner(
        &mut self,
        name: &str,
        raw_value: &Value,
        loc: &Loc,
        names: &HashMap<String, StateId>,
        ql: QueryLanguage,
    ) -> Option<State> {
        if !raw_value.is_object() {
            self.err(loc, "A state must be a JSON object");
            return None;
        }
        let raw: RawState = match serde_json::from_value(raw_value.clone()) {
            Ok(r) => r,
            Err(e) => {
                self.err(loc, serde_message(&e));
                return None;
            }
        };
        let type_name = match raw.Type.as_ref() {
            Some(Value::String(t)) => t.clone(),
            Some(_) => {
                self.err(&loc.field("Type"), "'Type' must be a string");
                return None;
            }
            None => {
                self.err(loc, "These fields are required: [Type]");
                return None;
            }
        };
        if allowed_fields(&type_name, QueryLanguage::JsonPath).is_empty() {
            self.err(
                &loc.field("Type"),
                format!("Unknown state type '{type_name}'"),
            );
            return None;
        }
        let state_ql = match raw.QueryLanguage.as_ref() {
            None => ql,
            Some(Value::String(s)) if s == "JSONPath" => {
                if ql == QueryLanguage::JsonAta {
                    self.err(loc, "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine");
                }
                QueryLanguage::JsonPath
            }
            Some(Value::String(s)) if s == "JSONata" => QueryLanguage::JsonAta,
            Some(_) => {
                self.err(
                    &loc.field("QueryLanguage"),
                    "QueryLanguage must be 'JSONPath' or 'JSONata'",
                );
                ql
            }
        };
        let jsonata = state_ql == QueryLanguage::JsonAta;
        self.jsonata = jsonata;
        let allowed = allowed_fields(&type_name, state_ql);
        if let Some(map) = raw_value.as_object() {
            for key in map.keys() {
                if matches!(key.as_str(), "Type" | "Comment" | "QueryLanguage") {
                    continue;
                }
                if !allowed.contains(&key.as_str()) {
                    let other = if jsonata {
                        QueryLanguage::JsonPath
                    } else {
                        QueryLanguage::JsonAta
                    };
                    let why = if allowed_fields(&type_name, other).contains(&key.as_str()) {
                        let (only, here) = if jsonata {
                            ("JSONPath", "JSONata")
                        } else {
                            ("JSONata", "JSONPath")
                        };
                        format!(
                            "The field '{key}' is only supported with QueryLanguage {only}, not in a {here} state"
                        )
                    } else {
                        format!("Field '{key}' is not supported by a {type_name} state")
                    };
                    self.err(&loc.field(key), why);
                }
            }
        }
        let comment = self.string_opt(raw.Comment.as_ref(), &loc.field("Comment"));
        let raw_text = raw_value.to_string();
        let (uses_context, uses_execution_input, context_parts) = if jsonata {
            (
                raw_text.contains("$states"),
                states_context_reads_input(&raw_text),
                ContextParts::ALL,
            )
        } else {
            (
                raw_text.contains("$$"),
                context_reads_input(&raw_text),
                ContextParts::referenced(&raw_text),
            )
        };
        let terminal = matches!(type_name.as_str(), "Choice" | "Succeed" | "Fail");
        let transition = if terminal {
            Transition::End
        } else {
            self.transition(raw.Next.as_ref(), raw.End.as_ref(), loc, names)
        };
        // serde reads an explicit `null` as an absent field; these three fields give `null` a
        // meaning of its own, so they are read from the JSON object itself.
        let nullable = |field: &str| raw_value.get(field);
        let jsonata_fields = jsonata.then(|| {
            Box::new(JsonataFields {
                arguments: self.jtemplate_field(nullable("Arguments"), "Arguments", loc),
                output: self.jtemplate_field(nullable("Output"), "Output", loc),
                assign: self.jtemplate_field(nullable("Assign"), "Assign", loc),
            })
        });
        let assign = if jsonata {
            None
        } else {
            self.template_field(raw.Assign.as_ref(), "Assign", loc)
        };
        let mut common = Common {
            input_path: self.query_path_field(nullable("InputPath"), "InputPath", loc),
            output_path: self.query_path_field(nullable("OutputPath"), "OutputPath", loc),
            result_path: self.reference_path_field(nullable("ResultPath"), "ResultPath", loc),
            parameters: None,
            result_selector: self.template_field(
                raw.ResultSelector.as_ref(),
                "ResultSelector",
                loc,
            ),
            assign,
            transition,
            retry: self.retriers(raw.Retry.as_ref(), loc),
            catch: self.catchers(raw.Catch.as_ref(), loc, names),
            uses_context,
            uses_execution_input,
            context_parts,
            jsonata: jsonata_fields,
        };
        let kind = match type_name.as_str() {
            "Pass" => {
                common.parameters = self.template_field(raw.Parameters.as_ref(), "Parameters", loc);
                StateKind::Pass {
                    result: raw.Result.clone(),
                }
            }
            "Task" => {
                common.parameters = self.template_field(raw.Parameters.as_ref(), "Parameters", loc);
                StateKind::Task(self.task(&raw, loc)?)
            }
            "Choice" => self.choice(&raw, loc, names)?,
            "Wait" => StateKind::Wait(self.wait(&raw, loc)?),
            "Succeed" => StateKind::Succeed,
            "Fail" => StateKind::Fail {
                error: self.text_source(raw.Error.as_ref(), raw.ErrorPath.as_ref(), "Error", loc),
                cause: self.text_source(raw.Cause.as_ref(), raw.CausePath.as_ref(), "Cause", loc),
            },
            "Parallel" => {
                common.parameters = self.template_field(raw.Parameters.as_ref(), "Parameters", loc);
                let branches_loc = loc.field("Branches");
                let Some(list) = raw
                    .Branches
                    .as_ref()
                    .and_then(Value::as_array)
                    .filter(|l| !l.is_empty())
                else {
                    self.err(&branches_loc, "'Branches' must be a non-empty array");
                    return None;
                };
                let mut branches = Vec::new();
                for (i, br) in list.iter().enumerate() {
                    let bl = branches_loc.index(i);
                    let Some(obj) = br.as_object() else {
                        self.err(&bl, "A branch must be a JSON object");
                        continue;
                    };
                    for key in obj.keys() {
                        if !matches!(key.as_str(), "StartAt" | "States" | "Comment") {
                            self.err(
                                &bl.field(key),
                                format!("Field '{key}' is not supported in a branch"),
                            );
                        }
                    }
                    if let Some(g) = self.graph(obj.get("StartAt"), obj.get("States"), &bl, ql) {
                        branches.push(g);
                    }
                }
                StateKind::Parallel { branches }
            }
            "Map" => StateKind::Map(Box::new(self.map(&raw, loc, ql)?)),
            _ => unreachable!("allowed_fields rejected unknown types"),
        };
        Some(State {
            name: name.to_string(),
            comment,
            common,
            kind,
        })
    }

    fn transition(
        &mut self,
        next: Option<&Value>,
        end: Option<&Value>,
        loc: &Loc,
        names: &HashMap<String, StateId>,
    ) -> Transition {
        let is_end = match end {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.err(&loc.field("End"), "'End' must be a boolean");
                false
            }
        };
        match (next, is_end) {
            (Some(_), true) => {
                self.err(loc, "Only one of 'Next' or 'End' may be set");
                Transition::End
            }
            (Some(v), false) => self
                .resolve(v, &loc.field("Next"), names)
                .map(Transition::Next)
                .unwrap_or(Transition::End),
            (None, true) => Transition::End,
            (None, false) => {
                self.diags.push(Diagnostic::new(
                    "MISSING_TRANSITION",
                    loc,
                    "This state must have either 'Next' or 'End': true",
                ));
                Transition::End
            }
        }
    }

    fn resolve(
        &mut self,
        v: &Value,
        loc: &Loc,
        names: &HashMap<String, StateId>,
    ) -> Option<StateId> {
        match v {
            Value::String(s) => match names.get(s) {
                Some(i) => Some(*i),
                None => {
                    self.diags.push(Diagnostic::new(
                        "MISSING_TRANSITION_TARGET",
                        loc,
                        format!("Missing 'Next' target: {s}"),
                    ));
                    None
                }
            },
            _ => {
                self.err(loc, "A transition target must be a state name (string)");
                None
            }
        }
    }

    /// InputPath / OutputPath / ItemsPath: a path, or `null`. Absent means `$`.
    fn query_path_field(&mut self, v: Option<&Value>, field: &str, loc: &Loc) -> Option<Path> {
        match v {
            None => Some(Path::parse("$").expect("`$` is a valid path")),
            Some(Value::Null) => None,
            Some(text @ Value::String(_)) => self.path_string(text, field, loc),
            Some(_) => {
                self.err(
                    &loc.field(field),
                    format!("'{field}' must be a string or null"),
                );
                None
            }
        }
    }

    fn path_string(&mut self, v: &Value, field: &str, loc: &Loc) -> Option<Path> {
        match v.as_str().map(Path::parse) {
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                self.diags.push(Diagnostic::new(
                    "INVALID_JSON_PATH",
                    &loc.field(field),
                    format!("The value for the field '{field}' must be a valid JSONPath: {e}"),
                ));
                None
            }
            None => {
                self.err(&loc.field(field), format!("'{field}' must be a string"));
                None
            }
        }
    }

    fn reference_path_field(
        &mut self,
        v: Option<&Value>,
        field: &str,
        loc: &Loc,
    ) -> Option<ReferencePath> {
        match v {
            None => Some(ReferencePath::parse("$").expect("`$` is a valid reference path")),
            Some(Value::Null) => None,
            Some(Value::String(s)) => {
                match ReferencePath::parse(s) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.diags.push(Diagnostic::new(
                        "INVALID_REFERENCE_PATH",
                        &loc.field(field),
                        format!("The value for the field '{field}' must be a valid Reference Path: {e}"),
                    ));
                        None
                    }
                }
            }
            Some(_) => {
                self.err(
                    &loc.field(field),
                    format!("'{field}' must be a string or null"),
                );
                None
            }
        }
    }

    fn template_field(&mut self, v: Option<&Value>, field: &str, loc: &Loc) -> Option<Template> {
        let v = v?;
        if field != "Assign" && !v.is_object() && !v.is_array() {
            // AWS requires Parameters-like fields to be JSON objects... Arrays and scalars
            // are accepted for Parameters in practice, so only reject non-objects for
            // the selectors that must shape an object.
            if field == "ResultSelector" {
                self.err(
                    &loc.field(field),
                    format!("'{field}' must be a JSON object"),
                );
                return None;
            }
        }
        if field == "Assign" && !v.is_object() {
            self.err(&loc.field(field), "'Assign' must be a JSON object");
            return None;
        }
        match Template::parse(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let message = e.message.clone();
                self.err(&loc.field(field), message);
                None
            }
        }
    }

    /// A JSONata state's template field (`Arguments`, `Output`, `Assign`, `Items`,
    /// `ItemSelector`): any JSON value whose strings may be `{% ... %}` expressions, parsed
    /// now so a syntax error is reported with the state, the field and the position.
    fn jtemplate_field(&mut self, v: Option<&Value>, field: &str, loc: &Loc) -> Option<JTemplate> {
        let v = v?;
        if field == "Assign" {
            let Some(obj) = v.as_object() else {
                self.err(&loc.field(field), "'Assign' must be a JSON object");
                return None;
            };
            for name in obj.keys() {
                if let Err(why) = check_variable_name(name) {
                    self.err(&loc.field(field).field(name), why.to_string());
                }
            }
        }
        match JTemplate::parse(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let mut at = loc.field(field);
                for part in e.pointer.split('/').filter(|p| !p.is_empty()) {
                    at = at.field(part);
                }
                self.diags
                    .push(Diagnostic::new("SCHEMA_VALIDATION_FAILED", &at, e.message));
                None
            }
        }
    }

    /// One `{% ... %}` expression of a field that takes a single value (`Seconds`, `Error`).
    fn jexpr(&mut self, text: &str, field: &str, loc: &Loc) -> Option<JExpr> {
        match JExpr::parse(text) {
            Ok(e) => Some(e),
            Err(e) => {
                self.err(
                    &loc.field(field),
                    format!(
                        "The JSONata expression '{text}' is invalid: {} ({}{})",
                        e.message(),
                        e.code(),
                        e.position()
                            .map(|p| format!(", position {p}"))
                            .unwrap_or_default()
                    ),
                );
                None
            }
        }
    }

    fn positive_int(&mut self, v: &Value, field: &str, loc: &Loc, allow_zero: bool) -> Option<u64> {
        match v.as_u64() {
            Some(n) if allow_zero || n > 0 => Some(n),
            _ => {
                let what = if allow_zero {
                    "a non-negative integer"
                } else {
                    "a positive integer"
                };
                self.err(&loc.field(field), format!("'{field}' must be {what}"));
                None
            }
        }
    }

    fn dynamic_u64(
        &mut self,
        lit: Option<&Value>,
        path: Option<&Value>,
        field: &str,
        loc: &Loc,
        allow_zero: bool,
    ) -> Option<Option<Dynamic<u64>>> {
        match (lit, path) {
            (Some(_), Some(_)) => {
                self.err(
                    loc,
                    format!("Only one of '{field}' or '{field}Path' may be set"),
                );
                None
            }
            (Some(Value::String(s)), None) if self.jsonata && expression_text(s).is_some() => {
                let text = expression_text(s).unwrap_or_default();
                Some(Some(Dynamic::Expr(self.jexpr(text, field, loc)?)))
            }
            (Some(v), None) => Some(Some(Dynamic::Literal(
                self.positive_int(v, field, loc, allow_zero)?,
            ))),
            (None, Some(p)) => Some(Some(Dynamic::Path(self.path_string(
                p,
                &format!("{field}Path"),
                loc,
            )?))),
            (None, None) => Some(None),
        }
    }

    fn task(&mut self, raw: &RawState, loc: &Loc) -> Option<TaskSpec> {
        let resource = match raw.Resource.as_ref() {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => {
                self.err(
                    &loc.field("Resource"),
                    "'Resource' must be a non-empty string (an ARN)",
                );
                return None;
            }
            None => {
                self.err(loc, "These fields are required: [Resource]");
                return None;
            }
        };
        let timeout_seconds = self.dynamic_u64(
            raw.TimeoutSeconds.as_ref(),
            raw.TimeoutSecondsPath.as_ref(),
            "TimeoutSeconds",
            loc,
            false,
        )?;
        let heartbeat_seconds = self.dynamic_u64(
            raw.HeartbeatSeconds.as_ref(),
            raw.HeartbeatSecondsPath.as_ref(),
            "HeartbeatSeconds",
            loc,
            false,
        )?;
        if let (Some(Dynamic::Literal(t)), Some(Dynamic::Literal(h))) =
            (&timeout_seconds, &heartbeat_seconds)
            && h >= t
        {
            self.err(
                &loc.field("HeartbeatSeconds"),
                "'HeartbeatSeconds' must be smaller than 'TimeoutSeconds'",
            );
        }
        if let Some(c) = raw.Credentials.as_ref() {
            let ok = c
                .as_object()
                .is_some_and(|o| o.contains_key("RoleArn") || o.contains_key("RoleArn.$"));
            if !ok {
                self.err(
                    &loc.field("Credentials"),
                    "The field 'RoleArn' is required but was missing",
                );
            }
        }
        Some(TaskSpec {
            resource,
            timeout_seconds,
            heartbeat_seconds,
            credentials: raw.Credentials.clone(),
        })
    }

    fn choice(
        &mut self,
        raw: &RawState,
        loc: &Loc,
        names: &HashMap<String, StateId>,
    ) -> Option<StateKind> {
        let choices_loc = loc.field("Choices");
        let Some(list) = raw
            .Choices
            .as_ref()
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
        else {
            self.err(&choices_loc, "'Choices' must be a non-empty array");
            return None;
        };
        let mut choices = Vec::with_capacity(list.len());
        let mut ok = true;
        for (i, rule) in list.iter().enumerate() {
            let rl = choices_loc.index(i);
            let (cond, jsonata) = if self.jsonata {
                match self.jsonata_rule(rule, &rl) {
                    Some((c, j)) => (Some(c), Some(j)),
                    None => (None, None),
                }
            } else {
                (
                    choice::parse_condition(rule, &rl, true, &mut self.diags)
                        .map(RuleCondition::Path),
                    None,
                )
            };
            let next = match rule.get("Next") {
                Some(n) => self.resolve(n, &rl.field("Next"), names),
                None => {
                    self.err(&rl, "These fields are required: [Next]");
                    None
                }
            };
            let assign = if self.jsonata {
                None
            } else {
                self.template_field(rule.get("Assign"), "Assign", &rl)
            };
            match (cond, next) {
                (Some(condition), Some(next)) => choices.push(ChoiceRule {
                    condition,
                    next,
                    assign,
                    jsonata,
                }),
                _ => ok = false,
            }
        }
        let default = match raw.Default.as_ref() {
            Some(d) => Some(self.resolve(d, &loc.field("Default"), names)?),
            None => None,
        };
        ok.then_some(StateKind::Choice { choices, default })
    }

    /// A JSONata Choice rule: `Condition` (an expression or a boolean), `Next`, and
    /// optionally `Assign` and `Output`.
    fn jsonata_rule(
        &mut self,
        rule: &Value,
        rl: &Loc,
    ) -> Option<(RuleCondition, Box<JsonataFields>)> {
        let Some(obj) = rule.as_object() else {
            self.err(rl, "A Choice rule must be a JSON object");
            return None;
        };
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "Condition" | "Next" | "Assign" | "Output" | "Comment"
            ) {
                self.err(
                    &rl.field(key),
                    format!(
                        "Field '{key}' is not supported in a JSONata Choice rule (use 'Condition')"
                    ),
                );
            }
        }
        let condition = match obj.get("Condition") {
            None => {
                self.err(rl, "These fields are required: [Condition]");
                None
            }
            Some(v @ (Value::Bool(_) | Value::String(_))) => {
                if v.as_str().is_some_and(|s| expression_text(s).is_none()) {
                    self.err(
                        &rl.field("Condition"),
                        "'Condition' must be a JSONata expression ({% ... %}) or a boolean",
                    );
                    None
                } else {
                    self.jtemplate_field(Some(v), "Condition", rl)
                }
            }
            Some(_) => {
                self.err(
                    &rl.field("Condition"),
                    "'Condition' must be a JSONata expression ({% ... %}) or a boolean",
                );
                None
            }
        };
        let fields = Box::new(JsonataFields {
            arguments: None,
            output: self.jtemplate_field(obj.get("Output"), "Output", rl),
            assign: self.jtemplate_field(obj.get("Assign"), "Assign", rl),
        });
        Some((RuleCondition::Jsonata(condition?), fields))
    }

    fn wait(&mut self, raw: &RawState, loc: &Loc) -> Option<WaitSpec> {
        let given: Vec<&str> = [
            ("Seconds", raw.Seconds.is_some()),
            ("SecondsPath", raw.SecondsPath.is_some()),
            ("Timestamp", raw.Timestamp.is_some()),
            ("TimestampPath", raw.TimestampPath.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(n, _)| n)
        .collect();
        if given.len() != 1 {
            self.err(loc, "A Wait state must have exactly one of 'Seconds', 'SecondsPath', 'Timestamp' or 'TimestampPath'");
            return None;
        }
        let expr = |v: &Option<Value>| {
            v.as_ref()
                .and_then(Value::as_str)
                .and_then(expression_text)
                .map(str::to_string)
        };
        if self.jsonata {
            if let Some(text) = expr(&raw.Seconds) {
                return self.jexpr(&text, "Seconds", loc).map(WaitSpec::SecondsExpr);
            }
            if let Some(text) = expr(&raw.Timestamp) {
                return self
                    .jexpr(&text, "Timestamp", loc)
                    .map(WaitSpec::TimestampExpr);
            }
        }
        match given[0] {
            "Seconds" => Some(WaitSpec::Seconds(self.positive_int(
                raw.Seconds.as_ref()?,
                "Seconds",
                loc,
                true,
            )?)),
            "SecondsPath" => Some(WaitSpec::SecondsPath(self.path_string(
                raw.SecondsPath.as_ref()?,
                "SecondsPath",
                loc,
            )?)),
            "Timestamp" => match raw
                .Timestamp
                .as_ref()?
                .as_str()
                .and_then(choice::parse_timestamp)
            {
                Some(ts) => Some(WaitSpec::Timestamp(ts)),
                None => {
                    self.err(
                        &loc.field("Timestamp"),
                        "String does not match RFC3339 timestamp",
                    );
                    None
                }
            },
            _ => Some(WaitSpec::TimestampPath(self.path_string(
                raw.TimestampPath.as_ref()?,
                "TimestampPath",
                loc,
            )?)),
        }
    }

    fn text_source(
        &mut self,
        lit: Option<&Value>,
        path: Option<&Value>,
        field: &str,
        loc: &Loc,
    ) -> Option<TextSource> {
        match (lit, path) {
            (Some(_), Some(_)) => {
                self.err(
                    loc,
                    format!("Only one of '{field}' or '{field}Path' may be set"),
                );
                None
            }
            (Some(Value::String(s)), None) => match expression_text(s).filter(|_| self.jsonata) {
                Some(text) => self.jexpr(text, field, loc).map(TextSource::Expr),
                None => Some(TextSource::Literal(s.clone())),
            },
            (Some(_), None) => {
                self.err(&loc.field(field), format!("'{field}' must be a string"));
                None
            }
            (None, Some(Value::String(s))) => {
                let field_path = format!("{field}Path");
                if Intrinsic::looks_like(s) {
                    match Intrinsic::parse(s) {
                        Ok(i) => Some(TextSource::Intrinsic(i)),
                        Err(e) => {
                            self.err(&loc.field(&field_path), format!("The value for the field '{field_path}' must be a valid JSONPath or a valid intrinsic function call: {e}"));
                            None
                        }
                    }
                } else {
                    self.path_string(&Value::String(s.clone()), &field_path, loc)
                        .map(TextSource::Path)
                }
            }
            (None, Some(_)) => {
                self.err(
                    &loc.field(&format!("{field}Path")),
                    format!("'{field}Path' must be a string"),
                );
                None
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests;
