//! Two-stage parsing: JSON text → raw serde types → the validated [`StateMachine`].
//!
//! Diagnostics follow AWS's `ValidateStateMachineDefinition`: a code, a message and the
//! location of the offending field (`/States/FaceDetection/Next`). Every problem found is
//! reported, not only the first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::choice::{self, ChoiceRule};
use super::definition::*;
use super::error::names;
use super::intrinsics::Intrinsic;
use super::path::{Path, ReferencePath};
use super::retry::{Catcher, Jitter, Retrier};
use super::template::Template;

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

/// Parses and validates a definition from its JSON text.
pub fn parse_definition(text: &str) -> Result<StateMachine, InvalidDefinition> {
    let value = parse_json_text(text).map_err(|d| InvalidDefinition(vec![d]))?;
    parse_definition_value(&value)
}

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

/// The top level of a definition, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
struct RawMachine {
    Comment: Option<Value>,
    StartAt: Option<Value>,
    States: Option<Value>,
    Version: Option<Value>,
    TimeoutSeconds: Option<Value>,
    QueryLanguage: Option<Value>,
}

/// A state as written: every field any state type may carry. Which fields a given type
/// allows is checked in [`Builder::state`].
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
struct RawState {
    Type: Option<Value>,
    Comment: Option<Value>,
    QueryLanguage: Option<Value>,
    Next: Option<Value>,
    End: Option<Value>,
    // Read from the JSON object instead (see `Builder::state`): named for the field check.
    #[allow(dead_code)]
    InputPath: Option<Value>,
    #[allow(dead_code)]
    OutputPath: Option<Value>,
    #[allow(dead_code)]
    ResultPath: Option<Value>,
    Parameters: Option<Value>,
    ResultSelector: Option<Value>,
    Result: Option<Value>,
    Assign: Option<Value>,
    Retry: Option<Value>,
    Catch: Option<Value>,
    // Task
    Resource: Option<Value>,
    TimeoutSeconds: Option<Value>,
    TimeoutSecondsPath: Option<Value>,
    HeartbeatSeconds: Option<Value>,
    HeartbeatSecondsPath: Option<Value>,
    Credentials: Option<Value>,
    // Choice
    Choices: Option<Value>,
    Default: Option<Value>,
    // Wait
    Seconds: Option<Value>,
    SecondsPath: Option<Value>,
    Timestamp: Option<Value>,
    TimestampPath: Option<Value>,
    // Fail
    Error: Option<Value>,
    ErrorPath: Option<Value>,
    Cause: Option<Value>,
    CausePath: Option<Value>,
    // Parallel
    Branches: Option<Value>,
    // Map
    Iterator: Option<Value>,
    ItemProcessor: Option<Value>,
    ItemsPath: Option<Value>,
    ItemSelector: Option<Value>,
    MaxConcurrency: Option<Value>,
    MaxConcurrencyPath: Option<Value>,
    ToleratedFailurePercentage: Option<Value>,
    ToleratedFailurePercentagePath: Option<Value>,
    ToleratedFailureCount: Option<Value>,
    ToleratedFailureCountPath: Option<Value>,
    ItemBatcher: Option<Value>,
    ItemReader: Option<Value>,
    ResultWriter: Option<Value>,
    Label: Option<Value>,
    // JSONata-only fields: named so the error can say what is wrong with them, never read.
    #[allow(dead_code)]
    Arguments: Option<Value>,
    #[allow(dead_code)]
    Output: Option<Value>,
    #[allow(dead_code)]
    Items: Option<Value>,
}

/// Fields each state type accepts besides `Type`, `Comment` and `QueryLanguage`.
fn allowed_fields(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "Pass" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "Result",
            "Assign",
        ],
        "Task" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Assign",
            "Retry",
            "Catch",
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
        ],
        "Choice" => &["InputPath", "OutputPath", "Choices", "Default", "Assign"],
        "Wait" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
            "Assign",
        ],
        "Succeed" => &["InputPath", "OutputPath"],
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Assign",
            "Retry",
            "Catch",
            "Branches",
        ],
        "Map" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Assign",
            "Retry",
            "Catch",
            "Iterator",
            "ItemProcessor",
            "ItemsPath",
            "ItemSelector",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ItemBatcher",
            "ItemReader",
            "ResultWriter",
            "Label",
        ],
        _ => &[],
    }
}

/// Parses and validates an already-decoded definition.
pub fn parse_definition_value(value: &Value) -> Result<StateMachine, InvalidDefinition> {
    let mut b = Builder {
        diags: Vec::new(),
        graphs: Vec::new(),
        labels: HashSet::new(),
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
    if query_language == QueryLanguage::JsonAta {
        b.diags.push(Diagnostic::new(
            "UNSUPPORTED_FEATURE",
            &root_loc.field("QueryLanguage"),
            "QueryLanguage 'JSONata' is not supported yet: mapfleet runs JSONPath definitions",
        ));
    }
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
    text.match_indices("$$").any(|(i, _)| {
        let rest = &text[i + 2..];
        !SMALL.iter().any(|p| rest.starts_with(p))
    })
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
        let allowed = allowed_fields(&type_name);
        if allowed.is_empty() {
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
            Some(Value::String(s)) if s == "JSONata" => {
                self.diags.push(Diagnostic::new(
                    "UNSUPPORTED_FEATURE",
                    &loc.field("QueryLanguage"),
                    "QueryLanguage 'JSONata' is not supported yet: mapfleet runs JSONPath definitions",
                ));
                QueryLanguage::JsonAta
            }
            Some(_) => {
                self.err(
                    &loc.field("QueryLanguage"),
                    "QueryLanguage must be 'JSONPath' or 'JSONata'",
                );
                ql
            }
        };
        let _ = state_ql;
        if let Some(map) = raw_value.as_object() {
            for key in map.keys() {
                if matches!(key.as_str(), "Type" | "Comment" | "QueryLanguage") {
                    continue;
                }
                if !allowed.contains(&key.as_str()) {
                    let why = if matches!(key.as_str(), "Arguments" | "Output" | "Items") {
                        format!("Field '{key}' is only supported with QueryLanguage JSONata")
                    } else {
                        format!("Field '{key}' is not supported by a {type_name} state")
                    };
                    self.err(&loc.field(key), why);
                }
            }
        }
        let comment = self.string_opt(raw.Comment.as_ref(), &loc.field("Comment"));
        let raw_text = raw_value.to_string();
        let uses_context = raw_text.contains("$$");
        let uses_execution_input = context_reads_input(&raw_text);
        let terminal = matches!(type_name.as_str(), "Choice" | "Succeed" | "Fail");
        let transition = if terminal {
            Transition::End
        } else {
            self.transition(raw.Next.as_ref(), raw.End.as_ref(), loc, names)
        };
        // serde reads an explicit `null` as an absent field; these three fields give `null` a
        // meaning of its own, so they are read from the JSON object itself.
        let nullable = |field: &str| raw_value.get(field);
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
            assign: self.template_field(raw.Assign.as_ref(), "Assign", loc),
            transition,
            retry: self.retriers(raw.Retry.as_ref(), loc),
            catch: self.catchers(raw.Catch.as_ref(), loc, names),
            uses_context,
            uses_execution_input,
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
            let cond = choice::parse_condition(rule, &rl, true, &mut self.diags);
            let next = match rule.get("Next") {
                Some(n) => self.resolve(n, &rl.field("Next"), names),
                None => {
                    self.err(&rl, "These fields are required: [Next]");
                    None
                }
            };
            let assign = self.template_field(rule.get("Assign"), "Assign", &rl);
            match (cond, next) {
                (Some(condition), Some(next)) => choices.push(ChoiceRule {
                    condition,
                    next,
                    assign,
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
            (Some(Value::String(s)), None) => Some(TextSource::Literal(s.clone())),
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

    fn error_equals(&mut self, obj: &Map<String, Value>, loc: &Loc) -> Option<Vec<String>> {
        let field_loc = loc.field("ErrorEquals");
        let Some(list) = obj
            .get("ErrorEquals")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
        else {
            self.err(
                &field_loc,
                "'ErrorEquals' must be a non-empty array of error names",
            );
            return None;
        };
        let mut names_out = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            match v.as_str() {
                Some(s) => {
                    if s.starts_with("States.") && !names::PREDEFINED.contains(&s) {
                        self.err(
                            &field_loc.index(i),
                            format!("'{s}' is not a predefined error name"),
                        );
                    }
                    names_out.push(s.to_string());
                }
                None => self.err(&field_loc.index(i), "Error names must be strings"),
            }
        }
        if names_out.iter().any(|n| n == names::ALL) && names_out.len() > 1 {
            self.err(
                &field_loc,
                "'States.ALL' must appear alone in 'ErrorEquals'",
            );
        }
        Some(names_out)
    }

    /// `States.ALL` may only appear in the last retrier/catcher.
    fn check_all_is_last(&mut self, lists: &[Vec<String>], loc: &Loc) {
        for (i, l) in lists.iter().enumerate() {
            if i + 1 < lists.len() && l.iter().any(|n| n == names::ALL) {
                self.err(
                    &loc.index(i),
                    "'States.ALL' must only appear in the last element",
                );
            }
        }
    }

    fn retriers(&mut self, v: Option<&Value>, loc: &Loc) -> Vec<Retrier> {
        let Some(v) = v else { return Vec::new() };
        let rl = loc.field("Retry");
        let Some(list) = v.as_array() else {
            self.err(&rl, "'Retry' must be an array");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let il = rl.index(i);
            let Some(obj) = item.as_object() else {
                self.err(&il, "A retrier must be a JSON object");
                continue;
            };
            for key in obj.keys() {
                if !matches!(
                    key.as_str(),
                    "ErrorEquals"
                        | "IntervalSeconds"
                        | "MaxAttempts"
                        | "BackoffRate"
                        | "MaxDelaySeconds"
                        | "JitterStrategy"
                        | "Comment"
                ) {
                    self.err(
                        &il.field(key),
                        format!("Field '{key}' is not supported in a retrier"),
                    );
                }
            }
            let Some(error_equals) = self.error_equals(obj, &il) else {
                continue;
            };
            let mut r = Retrier {
                error_equals,
                ..Default::default()
            };
            if let Some(x) = obj.get("IntervalSeconds") {
                match x.as_u64().filter(|n| (1..=99_999_999).contains(n)) {
                    Some(n) => r.interval_seconds = n,
                    None => self.err(
                        &il.field("IntervalSeconds"),
                        "'IntervalSeconds' must be a positive integer",
                    ),
                }
            }
            if let Some(x) = obj.get("MaxAttempts") {
                match x.as_u64().filter(|n| *n <= 99_999_999) {
                    Some(n) => r.max_attempts = n,
                    None => self.err(
                        &il.field("MaxAttempts"),
                        "'MaxAttempts' must be a non-negative integer",
                    ),
                }
            }
            if let Some(x) = obj.get("BackoffRate") {
                match x.as_f64().filter(|n| *n >= 1.0) {
                    Some(n) => r.backoff_rate = n,
                    None => self.err(
                        &il.field("BackoffRate"),
                        "'BackoffRate' must be a number greater than or equal to 1.0",
                    ),
                }
            }
            if let Some(x) = obj.get("MaxDelaySeconds") {
                match x.as_u64().filter(|n| (1..31_622_400).contains(n)) {
                    Some(n) => r.max_delay_seconds = Some(n),
                    None => self.err(
                        &il.field("MaxDelaySeconds"),
                        "'MaxDelaySeconds' must be a positive integer below 31622400",
                    ),
                }
            }
            if let Some(x) = obj.get("JitterStrategy") {
                match x.as_str() {
                    Some("FULL") => r.jitter = Jitter::Full,
                    Some("NONE") => r.jitter = Jitter::None,
                    _ => self.err(
                        &il.field("JitterStrategy"),
                        "'JitterStrategy' must be 'FULL' or 'NONE'",
                    ),
                }
            }
            out.push(r);
        }
        let lists: Vec<Vec<String>> = out.iter().map(|r| r.error_equals.clone()).collect();
        self.check_all_is_last(&lists, &rl);
        out
    }

    fn catchers(
        &mut self,
        v: Option<&Value>,
        loc: &Loc,
        names_map: &HashMap<String, StateId>,
    ) -> Vec<Catcher> {
        let Some(v) = v else { return Vec::new() };
        let cl = loc.field("Catch");
        let Some(list) = v.as_array() else {
            self.err(&cl, "'Catch' must be an array");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let il = cl.index(i);
            let Some(obj) = item.as_object() else {
                self.err(&il, "A catcher must be a JSON object");
                continue;
            };
            for key in obj.keys() {
                if !matches!(
                    key.as_str(),
                    "ErrorEquals" | "Next" | "ResultPath" | "Assign" | "Comment"
                ) {
                    self.err(
                        &il.field(key),
                        format!("Field '{key}' is not supported in a catcher"),
                    );
                }
            }
            let error_equals = self.error_equals(obj, &il);
            let next = match obj.get("Next") {
                Some(n) => self.resolve(n, &il.field("Next"), names_map),
                None => {
                    self.err(&il, "These fields are required: [Next]");
                    None
                }
            };
            let result_path = self.reference_path_field(obj.get("ResultPath"), "ResultPath", &il);
            let assign = self.template_field(obj.get("Assign"), "Assign", &il);
            if let (Some(error_equals), Some(next)) = (error_equals, next) {
                out.push(Catcher {
                    error_equals,
                    next,
                    result_path,
                    assign,
                });
            }
        }
        let lists: Vec<Vec<String>> = out.iter().map(|c| c.error_equals.clone()).collect();
        self.check_all_is_last(&lists, &cl);
        out
    }

    fn map(&mut self, raw: &RawState, loc: &Loc, ql: QueryLanguage) -> Option<MapSpec> {
        let (proc_field, processor) = match (raw.Iterator.as_ref(), raw.ItemProcessor.as_ref()) {
            (Some(_), Some(_)) => {
                self.err(loc, "Only one of 'Iterator' or 'ItemProcessor' may be set");
                return None;
            }
            (Some(p), None) => ("Iterator", p),
            (None, Some(p)) => ("ItemProcessor", p),
            (None, None) => {
                self.err(loc, "These fields are required: [ItemProcessor]");
                return None;
            }
        };
        let pl = loc.field(proc_field);
        let Some(pobj) = processor.as_object() else {
            self.err(&pl, format!("'{proc_field}' must be a JSON object"));
            return None;
        };
        let mut mode = ProcessorMode::Inline;
        let mut execution_type = None;
        for key in pobj.keys() {
            // AWS accepts ProcessorConfig under the legacy Iterator name too.
            let ok = matches!(
                key.as_str(),
                "StartAt" | "States" | "Comment" | "ProcessorConfig"
            );
            if !ok {
                self.err(
                    &pl.field(key),
                    format!("Field '{key}' is not supported in '{proc_field}'"),
                );
            }
        }
        if let Some(cfg) = pobj.get("ProcessorConfig") {
            let cl = pl.field("ProcessorConfig");
            match cfg.as_object() {
                Some(c) => {
                    for (k, v) in c {
                        match k.as_str() {
                            "Mode" => match v.as_str() {
                                Some("INLINE") => mode = ProcessorMode::Inline,
                                Some("DISTRIBUTED") => mode = ProcessorMode::Distributed,
                                _ => self.err(
                                    &cl.field("Mode"),
                                    "'Mode' must be 'INLINE' or 'DISTRIBUTED'",
                                ),
                            },
                            "ExecutionType" => match v.as_str() {
                                Some(t @ ("STANDARD" | "EXPRESS")) => {
                                    execution_type = Some(t.to_string())
                                }
                                _ => self.err(
                                    &cl.field("ExecutionType"),
                                    "'ExecutionType' must be 'STANDARD' or 'EXPRESS'",
                                ),
                            },
                            _ => self.err(
                                &cl.field(k),
                                format!("Field '{k}' is not supported in 'ProcessorConfig'"),
                            ),
                        }
                    }
                }
                None => self.err(&cl, "'ProcessorConfig' must be a JSON object"),
            }
        }
        if mode == ProcessorMode::Distributed && execution_type.is_none() {
            self.err(
                &pl.field("ProcessorConfig"),
                "A DISTRIBUTED processor needs an 'ExecutionType' (STANDARD or EXPRESS)",
            );
        }
        let processor = self.graph(pobj.get("StartAt"), pobj.get("States"), &pl, ql)?;
        let item_selector = match (raw.ItemSelector.as_ref(), raw.Parameters.as_ref()) {
            (Some(_), Some(_)) => {
                self.err(loc, "Only one of 'ItemSelector' or 'Parameters' may be set (Parameters is the legacy name of ItemSelector)");
                None
            }
            (Some(v), None) => self.template_field(Some(v), "ItemSelector", loc),
            (None, Some(v)) => self.template_field(Some(v), "Parameters", loc),
            (None, None) => None,
        };
        let items_path = match raw.ItemsPath.as_ref() {
            None => None,
            Some(v) => Some(self.path_string(v, "ItemsPath", loc)?),
        };
        if raw.ItemReader.is_some() && raw.ItemsPath.is_some() {
            self.err(loc, "Only one of 'ItemReader' or 'ItemsPath' may be set");
        }
        let max_concurrency = self
            .dynamic_u64(
                raw.MaxConcurrency.as_ref(),
                raw.MaxConcurrencyPath.as_ref(),
                "MaxConcurrency",
                loc,
                true,
            )?
            .unwrap_or(Dynamic::Literal(0));
        let tolerated_failure_count = self.dynamic_u64(
            raw.ToleratedFailureCount.as_ref(),
            raw.ToleratedFailureCountPath.as_ref(),
            "ToleratedFailureCount",
            loc,
            true,
        )?;
        let tolerated_failure_percentage = match (
            raw.ToleratedFailurePercentage.as_ref(),
            raw.ToleratedFailurePercentagePath.as_ref(),
        ) {
            (Some(_), Some(_)) => {
                self.err(loc, "Only one of 'ToleratedFailurePercentage' or 'ToleratedFailurePercentagePath' may be set");
                return None;
            }
            (Some(v), None) => match v.as_f64().filter(|p| (0.0..=100.0).contains(p)) {
                Some(p) => Some(Dynamic::Literal(p)),
                None => {
                    self.err(
                        &loc.field("ToleratedFailurePercentage"),
                        "'ToleratedFailurePercentage' must be a number between 0 and 100",
                    );
                    return None;
                }
            },
            (None, Some(p)) => Some(Dynamic::Path(self.path_string(
                p,
                "ToleratedFailurePercentagePath",
                loc,
            )?)),
            (None, None) => None,
        };
        let item_batcher = match raw.ItemBatcher.as_ref() {
            None => None,
            Some(v) => Some(self.item_batcher(v, &loc.field("ItemBatcher"))?),
        };
        for (field, value) in [
            ("ItemReader", &raw.ItemReader),
            ("ResultWriter", &raw.ResultWriter),
        ] {
            if let Some(v) = value
                && !v.is_object()
            {
                self.err(
                    &loc.field(field),
                    format!("'{field}' must be a JSON object"),
                );
            }
        }
        let label = match raw.Label.as_ref() {
            None => None,
            Some(Value::String(l)) => {
                if l.chars().count() > 40 {
                    self.err(&loc.field("Label"), "Label cannot exceed 40 characters");
                }
                if let Some(bad) = l.chars().find(|c| {
                    c.is_control()
                        || c.is_whitespace()
                        || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(*c)
                        || ('\u{7f}'..='\u{9f}').contains(c)
                }) {
                    self.err(
                        &loc.field("Label"),
                        format!("Label contains invalid character: {bad:?}"),
                    );
                }
                if !self.labels.insert(l.clone()) {
                    self.err(
                        &loc.field("Label"),
                        format!("Label '{l}' is not unique in the definition"),
                    );
                }
                Some(l.clone())
            }
            Some(_) => {
                self.err(&loc.field("Label"), "'Label' must be a string");
                None
            }
        };
        Some(MapSpec {
            items_path,
            item_selector,
            processor,
            mode,
            execution_type,
            max_concurrency,
            tolerated_failure_percentage,
            tolerated_failure_count,
            item_batcher,
            item_reader: raw.ItemReader.clone(),
            result_writer: raw.ResultWriter.clone(),
            label,
        })
    }

    fn item_batcher(&mut self, v: &Value, loc: &Loc) -> Option<ItemBatcher> {
        let Some(obj) = v.as_object() else {
            self.err(loc, "'ItemBatcher' must be a JSON object");
            return None;
        };
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "MaxItemsPerBatch"
                    | "MaxItemsPerBatchPath"
                    | "MaxInputBytesPerBatch"
                    | "MaxInputBytesPerBatchPath"
                    | "BatchInput"
            ) {
                self.err(
                    &loc.field(key),
                    format!("Field '{key}' is not supported in 'ItemBatcher'"),
                );
            }
        }
        let max_items_per_batch = self.dynamic_u64(
            obj.get("MaxItemsPerBatch"),
            obj.get("MaxItemsPerBatchPath"),
            "MaxItemsPerBatch",
            loc,
            false,
        )?;
        let max_input_bytes_per_batch = self.dynamic_u64(
            obj.get("MaxInputBytesPerBatch"),
            obj.get("MaxInputBytesPerBatchPath"),
            "MaxInputBytesPerBatch",
            loc,
            false,
        )?;
        if max_items_per_batch.is_none() && max_input_bytes_per_batch.is_none() {
            self.err(loc, "'ItemBatcher' needs 'MaxItemsPerBatch' or 'MaxInputBytesPerBatch' (or their Path forms)");
        }
        let batch_input = self.template_field(obj.get("BatchInput"), "BatchInput", loc);
        Some(ItemBatcher {
            max_items_per_batch,
            max_input_bytes_per_batch,
            batch_input,
        })
    }
}

#[cfg(test)]
mod tests;
