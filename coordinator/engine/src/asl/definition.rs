//! The validated form of a state machine definition.
//!
//! Everything here was checked by [`super::parse`]: state names are resolved to indices,
//! paths, templates and intrinsics are pre-parsed, and field combinations AWS rejects cannot
//! be represented. The engine only ever sees this form.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use super::choice::ChoiceRule;
use super::distributed::{ItemReaderSpec, ResultWriterSpec};
use super::intrinsics::Intrinsic;
use super::jsonata::{JExpr, JTemplate};
use super::path::{Path, ReferencePath};
use super::retry::{Catcher, Retrier};
use super::template::Template;

/// The query language of a definition or a state (`QueryLanguage`; JSONPath by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLanguage {
    JsonPath,
    JsonAta,
}

/// A whole definition.
#[derive(Debug)]
pub struct StateMachine {
    pub comment: Option<String>,
    pub version: Option<String>,
    pub query_language: QueryLanguage,
    /// Execution-wide `TimeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// The top-level `States` block.
    pub root: Arc<Graph>,
    /// Every graph in the definition (root, Parallel branches, Map processors), indexed by
    /// [`GraphId`], so a cursor can name the graph it runs in with a small number.
    pub graphs: Vec<Arc<Graph>>,
}

/// Identifies one `States` block inside a definition: 0 is the root.
pub type GraphId = usize;

/// Identifies a state inside its graph.
pub type StateId = usize;

/// One `StartAt` + `States` block: the top level, a Parallel branch or a Map processor.
#[derive(Debug)]
pub struct Graph {
    pub id: GraphId,
    pub start_at: StateId,
    pub states: Vec<State>,
    pub by_name: HashMap<String, StateId>,
}

impl Graph {
    pub fn state(&self, id: StateId) -> &State {
        &self.states[id]
    }
}

/// Where a state goes when it completes normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Next(StateId),
    End,
}

/// A value given either literally or through a `...Path` field.
#[derive(Debug, Clone)]
pub enum Dynamic<T> {
    Literal(T),
    Path(Path),
    /// A JSONata state's `{% ... %}` value.
    Expr(JExpr),
}

/// The source of a Fail state's `Error` or `Cause`.
#[derive(Debug, Clone)]
pub enum TextSource {
    Literal(String),
    Path(Path),
    Intrinsic(Intrinsic),
    /// A JSONata state's `{% ... %}` value.
    Expr(JExpr),
}

/// The fields shared by several state types. Which ones a state may carry is checked at
/// parse time; absent ones hold their AWS defaults here.
#[derive(Debug, Clone)]
pub struct Common {
    /// `InputPath`: `None` is an explicit `null` (the effective input becomes `{}`).
    pub input_path: Option<Path>,
    /// `OutputPath`: `None` is an explicit `null` (the output becomes `{}`).
    pub output_path: Option<Path>,
    /// `ResultPath`: `None` is an explicit `null` (the result is discarded).
    pub result_path: Option<ReferencePath>,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    pub assign: Option<Template>,
    pub transition: Transition,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
    /// Whether any expression of this state reads the context object (`$$`): the engine
    /// builds the context only for those states.
    pub uses_context: bool,
    /// Whether one of them may read `$$.Execution.Input` (or the whole context): only then
    /// does the context carry a copy of the execution input, which can be large.
    pub uses_execution_input: bool,
    /// Which members of `$$` its expressions read (JSONPath states; a JSONata state's
    /// `$states.context` counts as all of them).
    pub context_parts: ContextParts,
    /// The JSONata fields of a state whose query language is JSONata; `None` for JSONPath
    /// states (whose path fields above then apply; in a JSONata state they hold `$`).
    pub jsonata: Option<Box<JsonataFields>>,
}

/// A set of the context object's top-level members (`$$.Execution`, `$$.State`,
/// `$$.StateMachine`, `$$.Task`, `$$.Map`), found in a state's text when it is parsed: a
/// Map's ItemSelector that reads only `$$.Map.Item` gets a context of that member alone
/// for each item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContextParts(u8);

impl ContextParts {
    pub const NONE: ContextParts = ContextParts(0);
    pub const EXECUTION: ContextParts = ContextParts(1);
    pub const STATE: ContextParts = ContextParts(2);
    pub const STATE_MACHINE: ContextParts = ContextParts(4);
    pub const TASK: ContextParts = ContextParts(8);
    pub const MAP: ContextParts = ContextParts(16);
    pub const ALL: ContextParts = ContextParts(31);

    /// Both sets.
    pub const fn with(self, other: ContextParts) -> ContextParts {
        ContextParts(self.0 | other.0)
    }

    /// Whether every member of `other` is in this set.
    pub const fn has(self, other: ContextParts) -> bool {
        self.0 & other.0 == other.0
    }

    /// The members that the `$$` references in a JSONPath state's text read: any
    /// reference other than `$$.<member>` followed by `.`, `[` or the reference's end (the
    /// whole `$$`, `$$.*`, `$$..x`, `$$['Map']`, a name it does not know) reads them all.
    pub fn referenced(text: &str) -> ContextParts {
        const MEMBERS: &[(&str, ContextParts)] = &[
            ("Execution", ContextParts::EXECUTION),
            ("StateMachine", ContextParts::STATE_MACHINE),
            ("State", ContextParts::STATE),
            ("Task", ContextParts::TASK),
            ("Map", ContextParts::MAP),
        ];
        let mut parts = ContextParts::NONE;
        for (i, _) in text.match_indices("$$") {
            let rest = &text[i + 2..];
            let member = rest.strip_prefix('.').and_then(|rest| {
                MEMBERS.iter().find_map(|(name, part)| {
                    let after = rest.strip_prefix(name)?;
                    let ends = after.chars().next().is_none_or(|c| !is_name_char(c));
                    ends.then_some(*part)
                })
            });
            parts = parts.with(member.unwrap_or(ContextParts::ALL));
        }
        parts
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// What a JSONata state (or Choice rule, or catcher) carries instead of InputPath,
/// Parameters, ResultSelector, ResultPath and OutputPath.
#[derive(Debug, Clone, Default)]
pub struct JsonataFields {
    /// `Arguments`: the Task's or Parallel's input (default: the state input).
    pub arguments: Option<JTemplate>,
    /// `Output`: the state output (default: the result, or the input for states without
    /// one; a catcher's default is the error output).
    pub output: Option<JTemplate>,
    /// `Assign`: variables set from `$states.input`/`result`/`errorOutput`.
    pub assign: Option<JTemplate>,
}

impl Common {
    pub fn query_language(&self) -> QueryLanguage {
        if self.jsonata.is_some() {
            QueryLanguage::JsonAta
        } else {
            QueryLanguage::JsonPath
        }
    }
}

/// One state, validated.
#[derive(Debug, Clone)]
pub struct State {
    pub name: String,
    pub comment: Option<String>,
    pub common: Common,
    pub kind: StateKind,
}

impl State {
    /// AWS's type name: `Pass`, `Task`, ...
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            StateKind::Pass { .. } => "Pass",
            StateKind::Task(_) => "Task",
            StateKind::Choice { .. } => "Choice",
            StateKind::Wait(_) => "Wait",
            StateKind::Succeed => "Succeed",
            StateKind::Fail { .. } => "Fail",
            StateKind::Parallel { .. } => "Parallel",
            StateKind::Map(_) => "Map",
        }
    }
}

#[derive(Debug, Clone)]
pub enum StateKind {
    Pass {
        result: Option<Value>,
    },
    Task(TaskSpec),
    Choice {
        choices: Vec<ChoiceRule>,
        default: Option<StateId>,
    },
    Wait(WaitSpec),
    Succeed,
    Fail {
        error: Option<TextSource>,
        cause: Option<TextSource>,
    },
    Parallel {
        branches: Vec<GraphId>,
    },
    Map(Box<MapSpec>),
}

#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub resource: String,
    pub timeout_seconds: Option<Dynamic<u64>>,
    pub heartbeat_seconds: Option<Dynamic<u64>>,
    pub credentials: Option<Value>,
}

#[derive(Debug, Clone)]
pub enum WaitSpec {
    Seconds(u64),
    SecondsPath(Path),
    Timestamp(DateTime<FixedOffset>),
    TimestampPath(Path),
    /// JSONata: `Seconds: "{% ... %}"`.
    SecondsExpr(JExpr),
    /// JSONata: `Timestamp: "{% ... %}"`.
    TimestampExpr(JExpr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessorMode {
    Inline,
    Distributed,
}

#[derive(Debug, Clone)]
pub struct ItemBatcher {
    pub max_items_per_batch: Option<Dynamic<u64>>,
    pub max_input_bytes_per_batch: Option<Dynamic<u64>>,
    pub batch_input: Option<AnyTemplate>,
}

/// A template field in its state's query language: a JSONPath payload template
/// (`Parameters`, `"key.$"` fields) or a JSONata one (`Arguments`, `{% ... %}` strings).
#[derive(Debug, Clone)]
pub enum AnyTemplate {
    Path(Template),
    Jsonata(JTemplate),
}

#[derive(Debug, Clone)]
pub struct MapSpec {
    pub items_path: Option<Path>,
    /// `ItemSelector` or the legacy `Parameters` of a Map (never both).
    pub item_selector: Option<Template>,
    pub processor: GraphId,
    pub mode: ProcessorMode,
    /// `ExecutionType` of a distributed processor (`STANDARD` or `EXPRESS`).
    pub execution_type: Option<String>,
    /// 0 means no user limit.
    pub max_concurrency: Dynamic<u64>,
    pub tolerated_failure_percentage: Option<Dynamic<f64>>,
    pub tolerated_failure_count: Option<Dynamic<u64>>,
    pub item_batcher: Option<ItemBatcher>,
    /// A Distributed Map's `ItemReader` (its items come from an object store, not the input).
    pub item_reader: Option<ItemReaderSpec>,
    /// A Distributed Map's `ResultWriter` (its results go to an object store).
    pub result_writer: Option<ResultWriterSpec>,
    pub label: Option<String>,
    /// JSONata: `Items` (default: the state input, which must be an array) and
    /// `ItemSelector` with `$states.context.Map.Item`. `None` in a JSONPath Map.
    pub jsonata: Option<Box<MapJsonata>>,
}

#[derive(Debug, Clone, Default)]
pub struct MapJsonata {
    pub items: Option<JTemplate>,
    pub item_selector: Option<JTemplate>,
}
