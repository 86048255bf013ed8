//! What each state type does with each event.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::sync::Arc;

use super::context::{ExecutionInfo, StateFacts, context_object};
use super::cursor::*;
use super::dataflow;
use super::history::{Event, EventType, StateType, object};
use crate::asl::choice::RuleCondition;
use crate::asl::definition::*;
use crate::asl::error::{StatesError, names};
use crate::asl::path::Path;
use crate::asl::retry::error_matches;
use crate::asl::scope::Scope;
use crate::entropy::Entropy;

mod children;
mod distributed;
mod query;
mod task;

/// Everything one `apply` call needs from outside: the time, a random number for jitter,
/// the execution's event-id counter, and where actions go.
pub struct Tx<'a> {
    pub now: DateTime<Utc>,
    /// A number in [0, 1) for retry jitter.
    pub random: f64,
    /// What expressions draw from (`States.UUID`, `States.MathRandom`), seeded from `random`.
    pub entropy: Entropy,
    next_event_id: &'a mut u64,
    pub actions: Vec<Action>,
    /// Whether history events are written ([`EngineOptions::history`]): off, events still
    /// take their ids (runtime errors quote them) but their details are never built.
    pub history: bool,
    /// State transitions made (each `...StateEntered` of this history), counted with history
    /// off too.
    pub transitions: u64,
}

impl<'a> Tx<'a> {
    pub fn new(now: DateTime<Utc>, random: f64, next_event_id: &'a mut u64) -> Self {
        Tx {
            now,
            random,
            entropy: Entropy::new(random.to_bits()),
            next_event_id,
            actions: Vec::new(),
            history: true,
            transitions: 0,
        }
    }

    /// [`Tx::new`] for an engine with these options.
    pub fn with_options(self, options: &EngineOptions) -> Self {
        Tx {
            history: options.history,
            ..self
        }
    }

    /// Appends a history event for `cursor` and returns its id.
    fn record(&mut self, cursor: &mut Cursor, event_type: EventType, details: Value) -> u64 {
        self.record_with(cursor, event_type, || details)
    }

    /// [`Tx::record`] with details built only when history is written: most of a Map
    /// item's events carry a copy of a state's input or output.
    fn record_with(
        &mut self,
        cursor: &mut Cursor,
        event_type: EventType,
        details: impl FnOnce() -> Value,
    ) -> u64 {
        // Counted for quiet cursors too: a Distributed Map's child is a child execution with
        // a history (and AWS's cap) of its own, even though its events are not kept here.
        cursor.events += 1;
        if cursor.quiet {
            return cursor.last_event;
        }
        if matches!(event_type, EventType::StateEntered(_)) {
            self.transitions += 1;
        }
        let id = *self.next_event_id;
        *self.next_event_id += 1;
        let previous_event_id = cursor.last_event;
        cursor.last_event = id;
        if self.history {
            self.actions.push(Action::History(Event {
                id,
                previous_event_id,
                event_type,
                timestamp: self.now,
                details: details(),
                cursor: cursor.id.clone(),
            }));
        }
        id
    }
}

/// Options of the engine that are not part of the definition.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The most children (Map iterations) one Map state runs at once when its definition says
    /// `MaxConcurrency: 0`: a fleet-wide cap that keeps memory flat for huge batches.
    pub max_children_in_flight: usize,
    /// The largest state input or output, in bytes (AWS: 256 KiB); 0 turns the check off.
    pub payload_limit: usize,
    /// The most history events one cursor may write (0: no cap): past it the execution
    /// fails with `States.Runtime` (see [`MAX_HISTORY_EVENTS`] for how this counts).
    pub max_history_events: u64,
    /// Whether the engine writes history events (`Action::History`). The fleet keeps every
    /// execution's history; embedded mode without `--history` (and without a host that
    /// keeps it) turns this off, and the engine then never builds the events' details.
    /// Event ids are counted all the same.
    pub history: bool,
    /// What `.waitForTaskToken` tokens' secrets are derived under: drivers draw it from
    /// the OS when they start ([`super::token`]).
    pub token_key: super::token::TokenKey,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_children_in_flight: 1000,
            payload_limit: super::PAYLOAD_LIMIT_BYTES,
            max_history_events: MAX_HISTORY_EVENTS,
            history: true,
            token_key: super::token::TokenKey::default(),
        }
    }
}

/// The default history cap: AWS's 25,000 events, counted per cursor. AWS counts one
/// execution's whole history, inline Map iterations and Parallel branches included, and
/// fails the execution at event 25,000 unless that event is `ExecutionSucceeded`; an inline
/// Map of a few thousand items is already over it there. mapfleet runs inline Maps of
/// hundreds of thousands of items on the fleet, so it counts the events of each cursor on
/// its own (the root, each Parallel branch, each Map iteration): a definition without Map or
/// Parallel states fails where AWS does, and a loop, which always runs within one cursor,
/// is stopped however many items its Map has. A Distributed Map's child execution fails
/// alone, as a failed item, like AWS's child executions, which have their own 25,000.
pub const MAX_HISTORY_EVENTS: u64 = 25_000;

/// The most states one `apply` walks through without waiting (Pass, Choice and other
/// states that finish at once). Past it the cursor yields ([`Action::Continue`]): the
/// driver goes round its loop (timeouts, stops, other cursors) before the chain goes on,
/// and the actions one `apply` buffers stay bounded.
pub const FLOW_STEPS_PER_APPLY: usize = 100;

/// The error an execution fails with when a cursor reaches the history cap.
pub fn history_cap_error(cap: u64, state: &str, cursor: &str) -> StatesError {
    let within = if cursor.is_empty() {
        String::new()
    } else {
        format!(" in Map iteration or Parallel branch {cursor}")
    };
    StatesError::runtime(format!(
        "The execution reached the maximum number of history events ({cap}) at state '{state}'{within}: a loop that never ends, or more events than one execution may write (--max-history-events, MAPFLEET_MAX_HISTORY_EVENTS)."
    ))
}

/// How an execution is ended from outside the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A user's StopExecution: `ExecutionAborted`.
    Aborted,
    /// TimeoutSeconds: `ExecutionTimedOut`.
    TimedOut,
    /// The history cap: `ExecutionFailed`.
    Failed,
}

/// The engine for one execution: an immutable definition and the execution's facts.
#[derive(Clone)]
pub struct Engine {
    pub def: Arc<StateMachine>,
    pub info: Arc<ExecutionInfo>,
    pub options: EngineOptions,
}

/// How a state ended its own work, before Retry/Catch and transitions.
enum StateEnd {
    /// The state's result, before ResultSelector/ResultPath/OutputPath.
    Result(Value),
    Error(StatesError),
}

impl Engine {
    pub fn new(def: Arc<StateMachine>, info: ExecutionInfo) -> Engine {
        Engine {
            def,
            info: Arc::new(info),
            options: EngineOptions::default(),
        }
    }

    fn graph(&self, id: GraphId) -> &Graph {
        &self.def.graphs[id]
    }

    fn state(&self, cursor: &Cursor) -> &State {
        self.graph(cursor.graph).state(cursor.state)
    }

    /// Creates the root cursor and writes `ExecutionStarted`. Feed it `Enter` next.
    pub fn start(&self, tx: &mut Tx<'_>) -> Cursor {
        let mut root = Cursor {
            id: String::new(),
            parent: None,
            graph: self.def.root.id,
            state: self.def.root.start_at,
            input: self.info.input.clone(),
            vars: Map::new(),
            seq: 0,
            retries: Vec::new(),
            entered_at: tx.now,
            phase: Phase::Ready,
            last_event: 0,
            entered_event: 0,
            quiet: false,
            events: 0,
            redrive: None,
        };
        tx.record_with(&mut root, EventType::ExecutionStarted, || {
            object([
                ("input", self.info.input.clone()),
                ("roleArn", Value::String(self.info.role_arn.clone())),
            ])
        });
        // AWS points the first state's entry at 0, not at ExecutionStarted.
        root.last_event = 0;
        root
    }

    /// Resumes an ended execution (`RedriveExecution`) from `root`, the root cursor as it
    /// was when the execution ended: at the state it stood in, with that state's input and
    /// the variables it saw, its retry counters reset. Writes `ExecutionRedriven`; feed the
    /// cursor `Enter` next. Its new children get ids of their own (its `seq` is the event's
    /// id, above every earlier wait's), and the Map or Parallel it resumes at skips the
    /// children the driver kept ([`Cursor::redriven_entry`]).
    pub fn redrive(&self, root: &mut Cursor, count: u32, tx: &mut Tx<'_>) {
        let entered_event = root.entered_event;
        root.phase = Phase::Ready;
        root.retries.clear();
        root.entered_at = tx.now;
        let id = tx.record(
            root,
            EventType::ExecutionRedriven,
            json!({ "redriveCount": count }),
        );
        root.seq = id;
        root.redrive = Some(RedriveMark {
            count,
            resume_event: id,
            entered_event,
        });
    }

    /// Applies one event to one cursor. Stale events (an outcome or timer of an earlier wait)
    /// are ignored, which is what makes redelivered messages harmless.
    pub fn apply(&self, cursor: &mut Cursor, event: CursorEvent, tx: &mut Tx<'_>) {
        let phase = std::mem::replace(&mut cursor.phase, Phase::Done);
        let moved = match (phase, event) {
            (Phase::Ready, CursorEvent::Enter) => {
                self.enter(cursor, tx);
                false
            }
            (Phase::Task(wait), CursorEvent::StepSucceeded { seq, output })
                if seq == cursor.seq =>
            {
                self.task_succeeded(cursor, wait, output, tx)
            }
            (Phase::Task(wait), CursorEvent::StepFailed { seq, error }) if seq == cursor.seq => {
                self.task_failed(cursor, wait, error, tx)
            }
            (Phase::Task(wait), CursorEvent::TimerFired { seq }) if seq == cursor.seq => {
                self.task_timer(cursor, wait, tx)
            }
            (Phase::Task(wait), CursorEvent::StepStarted { seq, worker }) if seq == cursor.seq => {
                self.task_started(cursor, wait, &worker, tx);
                false
            }
            (Phase::Task(wait), CursorEvent::StepHeartbeat { seq }) if seq == cursor.seq => {
                self.task_heartbeat(cursor, wait, tx);
                false
            }
            (Phase::Task(wait), CursorEvent::TaskAnswered { seq, result })
                if seq == cursor.seq && wait.callback =>
            {
                self.task_answered(cursor, wait, result, tx)
            }
            (Phase::Wait { output }, CursorEvent::TimerFired { seq }) if seq == cursor.seq => {
                let name = self.state(cursor).name.clone();
                self.exit_and_transition(cursor, &name, output, None, tx)
            }
            (Phase::Backoff(again), CursorEvent::TimerFired { seq }) if seq == cursor.seq => {
                self.retry_now(cursor, again, tx)
            }
            (
                Phase::Children(mut ch),
                CursorEvent::ChildFinished {
                    index,
                    result,
                    last_event,
                    finished_event,
                },
            ) => {
                if last_event > cursor.last_event {
                    cursor.last_event = last_event;
                }
                ch.last_iteration_event = ch.last_iteration_event.max(finished_event);
                self.child_finished(cursor, ch, index, result, tx)
            }
            (Phase::Collecting(ch), CursorEvent::Results { results }) => {
                self.children_collected(cursor, *ch, results, tx)
            }
            (Phase::Children(ch), CursorEvent::MapRunOpened { result }) => {
                self.map_run_opened(cursor, *ch, result, tx)
            }
            (Phase::Collecting(ch), CursorEvent::MapRunClosed { result }) => {
                self.map_run_closed(cursor, *ch, result, tx)
            }
            (Phase::Children(ch), CursorEvent::UpdateLimits(update)) => {
                self.limits_updated(cursor, ch, update, tx);
                false
            }
            (Phase::Aborting(ch), CursorEvent::ChildrenAborted) => {
                self.children_aborted(cursor, *ch, tx)
            }
            (phase, CursorEvent::Abort) => {
                self.abort(cursor, phase, tx);
                false
            }
            (phase, _) => {
                cursor.phase = phase;
                false
            }
        };
        if moved {
            self.enter(cursor, tx);
        }
        // Retries, Catch loops through waits and the like write events without a long
        // chain of flow states: the cap is checked after every event too.
        if !matches!(
            cursor.phase,
            Phase::Done | Phase::Children(_) | Phase::Collecting(_) | Phase::Aborting(_)
        ) && self.over_history_cap(cursor)
        {
            self.history_exhausted(cursor, tx);
        }
    }

    fn over_history_cap(&self, cursor: &Cursor) -> bool {
        let cap = self.options.max_history_events;
        cap > 0 && cursor.events >= cap
    }

    /// A cursor reached the history cap: the execution fails (a Distributed Map's child
    /// execution only fails itself, as an item).
    fn history_exhausted(&self, cursor: &mut Cursor, tx: &mut Tx<'_>) {
        let state = &self.state(cursor).name;
        let error = history_cap_error(self.options.max_history_events, state, &cursor.id);
        // Whatever it waited on (a step, a timer) is stale from now on.
        cursor.seq += 1;
        if cursor.quiet {
            self.finish(cursor, Err(error), tx);
        } else {
            cursor.phase = Phase::Done;
            tx.actions.push(Action::FailExecution { error });
        }
    }

    /// Builds `$$` for the cursor's current state, only when the state reads it.
    fn context(
        &self,
        cursor: &Cursor,
        state: &State,
        map_item: Option<(usize, &Value)>,
        token: Option<&str>,
    ) -> Value {
        if !state.common.uses_context {
            return Value::Null;
        }
        let retry_count = cursor.retries.iter().sum();
        context_object(
            &self.info,
            &StateFacts {
                name: &state.name,
                entered_time: &cursor.entered_at,
                retry_count,
                map_item,
                task_token: token,
            },
            state.common.uses_execution_input,
        )
    }

    /// Prefixes a runtime error's cause the way AWS does.
    fn runtime_cause(&self, cursor: &Cursor, state: &State, e: StatesError) -> StatesError {
        if (e.error == names::RUNTIME || e.error == names::QUERY_EVALUATION_ERROR)
            && !e
                .cause
                .starts_with("An error occurred while executing the state")
        {
            StatesError::new(
                e.error,
                format!(
                    "An error occurred while executing the state '{}' (entered at the event id #{}). {}",
                    state.name, cursor.entered_event, e.cause
                ),
            )
        } else {
            e
        }
    }

    fn enter(&self, cursor: &mut Cursor, tx: &mut Tx<'_>) {
        // Chains of flow states (Pass, Choice, ...) run here in a loop rather than through
        // the driver: one apply call walks as far as it can without waiting, up to
        // FLOW_STEPS_PER_APPLY states, then yields so that a loop cannot hold the driver.
        for _ in 0..FLOW_STEPS_PER_APPLY {
            if self.over_history_cap(cursor) {
                self.history_exhausted(cursor, tx);
                return;
            }
            let state = self.state(cursor);
            cursor.entered_at = tx.now;
            cursor.retries = vec![0; state.common.retry.len()];
            // Not a closure for record_with: it would borrow the cursor that record moves on.
            let details = if tx.history {
                object([
                    ("name", Value::String(state.name.clone())),
                    ("input", cursor.input.clone()),
                ])
            } else {
                Value::Null
            };
            cursor.entered_event = tx.record(
                cursor,
                EventType::StateEntered(StateType::of(state)),
                details,
            );
            if !self.run_state(cursor, tx) {
                return;
            }
        }
        cursor.phase = Phase::Ready;
        tx.actions.push(Action::Continue {
            cursor: cursor.id.clone(),
        });
    }

    /// Does the work of the current state (after its `...StateEntered`). Returns true when
    /// the cursor moved on to a next state that should be entered right away.
    fn run_state(&self, cursor: &mut Cursor, tx: &mut Tx<'_>) -> bool {
        let state = self.state(cursor);
        let ctx = self.context(cursor, state, None, None);
        let end = match &state.kind {
            StateKind::Pass { .. } if state.common.jsonata.is_some() => {
                StateEnd::Result(cursor.input.clone())
            }
            // A Result with the input as the effective input: nothing to evaluate.
            StateKind::Pass {
                result: Some(result),
            } if dataflow::input_is_effective(&state.common) => StateEnd::Result(result.clone()),
            StateKind::Pass { result } => {
                match dataflow::effective_input(
                    &state.common,
                    &cursor.input,
                    &ctx,
                    &cursor.vars,
                    &tx.entropy,
                ) {
                    Ok(effective) => StateEnd::Result(result.clone().unwrap_or(effective)),
                    Err(e) => StateEnd::Error(e),
                }
            }
            StateKind::Task(spec) => return self.start_task(cursor, spec, tx),
            StateKind::Choice { choices, default } => {
                return self.choose(cursor, choices, *default, &ctx, tx);
            }
            StateKind::Wait(spec) => return self.wait(cursor, spec, &ctx, tx),
            StateKind::Succeed => {
                let result = if let Some(j) = self.jsonata_of(state) {
                    self.output_only(&j.output, &self.jscope(cursor, &ctx, tx, None, None))
                } else {
                    dataflow::input_path(
                        &state.common.input_path,
                        &cursor.input,
                        &ctx,
                        &cursor.vars,
                        &tx.entropy,
                    )
                    .and_then(|v| {
                        dataflow::output_path(
                            &state.common.output_path,
                            v,
                            &ctx,
                            &cursor.vars,
                            &tx.entropy,
                        )
                    })
                };
                match result {
                    Ok(output) => {
                        let name = state.name.clone();
                        tx.record(
                            cursor,
                            EventType::StateExited(StateType::Succeed),
                            object([("name", Value::String(name)), ("output", output.clone())]),
                        );
                        self.finish(cursor, Ok(output), tx);
                    }
                    Err(e) => {
                        let e = self.runtime_cause(cursor, state, e);
                        self.evaluation_failed(cursor, &state.name, &e, tx);
                        self.finish(cursor, Err(e), tx)
                    }
                }
                return false;
            }
            StateKind::Fail { error, cause } => {
                let error = self.fail_text(error.as_ref(), "Error", cursor, &ctx, tx);
                let cause = self.fail_text(cause.as_ref(), "Cause", cursor, &ctx, tx);
                let result = match (error, cause) {
                    (Ok(error), Ok(cause)) => {
                        StatesError::new(error.unwrap_or_default(), cause.unwrap_or_default())
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        let e = self.runtime_cause(cursor, state, e);
                        self.evaluation_failed(cursor, &state.name, &e, tx);
                        e
                    }
                };
                self.finish(cursor, Err(result), tx);
                return false;
            }
            StateKind::Parallel { branches } => {
                return self.start_parallel(cursor, branches.len(), &ctx, tx);
            }
            StateKind::Map(spec) => return self.start_map(cursor, spec, &ctx, tx),
        };
        match end {
            StateEnd::Result(result) => self.complete(cursor, result, tx),
            StateEnd::Error(e) => self.handle_error(cursor, e, None, tx),
        }
    }

    fn fail_text(
        &self,
        source: Option<&TextSource>,
        field: &str,
        cursor: &Cursor,
        ctx: &Value,
        tx: &Tx<'_>,
    ) -> Result<Option<String>, StatesError> {
        let scope = Scope {
            input: &cursor.input,
            context: ctx,
            vars: &cursor.vars,
            entropy: &tx.entropy,
        };
        let value = match source {
            None => return Ok(None),
            Some(TextSource::Literal(s)) => return Ok(Some(s.clone())),
            Some(TextSource::Path(p)) => p.eval(&scope)?,
            Some(TextSource::Intrinsic(i)) => i.eval(&scope)?,
            Some(TextSource::Expr(e)) => {
                e.eval(field, &self.jscope(cursor, ctx, tx, None, None))?
            }
        };
        match value {
            Value::String(s) => Ok(Some(s)),
            other => Ok(Some(other.to_string())),
        }
    }

    fn choose(
        &self,
        cursor: &mut Cursor,
        choices: &[crate::asl::choice::ChoiceRule],
        default: Option<StateId>,
        ctx: &Value,
        tx: &mut Tx<'_>,
    ) -> bool {
        let state = self.state(cursor);
        if let Some(j) = self.jsonata_of(state) {
            return self.choose_jsonata(cursor, choices, default, j, ctx, tx);
        }
        let effective = match dataflow::input_path(
            &state.common.input_path,
            &cursor.input,
            ctx,
            &cursor.vars,
            &tx.entropy,
        ) {
            Ok(v) => v,
            Err(e) => {
                let e = self.runtime_cause(cursor, state, e);
                self.finish(cursor, Err(e), tx);
                return false;
            }
        };
        let scope = Scope {
            input: &effective,
            context: ctx,
            vars: &cursor.vars,
            entropy: &tx.entropy,
        };
        let mut target = None;
        for rule in choices {
            let RuleCondition::Path(condition) = &rule.condition else {
                continue;
            };
            match condition.eval(&scope) {
                Ok(true) => {
                    target = Some((rule.next, &rule.assign));
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    let e = self.runtime_cause(cursor, state, e);
                    self.finish(cursor, Err(e), tx);
                    return false;
                }
            }
        }
        let (next, assign) = match (target, default) {
            (Some(t), _) => t,
            (None, Some(d)) => (d, &state.common.assign),
            (None, None) => {
                let e = StatesError::new(
                    names::NO_CHOICE_MATCHED,
                    format!(
                        "No Matches! (no Choice rule of state '{}' matched and it has no Default)",
                        state.name
                    ),
                );
                self.finish(cursor, Err(e), tx);
                return false;
            }
        };
        let processed = dataflow::assign(assign, &effective, ctx, &cursor.vars, &tx.entropy)
            .and_then(|vars| {
                Ok((
                    vars,
                    dataflow::output_path(
                        &state.common.output_path,
                        effective.clone(),
                        ctx,
                        &cursor.vars,
                        &tx.entropy,
                    )?,
                ))
            });
        match processed {
            Ok((vars, output)) => {
                let name = state.name.clone();
                tx.record(
                    cursor,
                    EventType::StateExited(StateType::Choice),
                    exit_details(&name, &output, vars.as_ref()),
                );
                if let Some(vars) = vars {
                    cursor.vars.extend(vars);
                }
                cursor.state = next;
                cursor.input = output;
                cursor.phase = Phase::Ready;
                true
            }
            Err(e) => {
                let e = self.runtime_cause(cursor, state, e);
                self.finish(cursor, Err(e), tx);
                false
            }
        }
    }

    fn wait(&self, cursor: &mut Cursor, spec: &WaitSpec, ctx: &Value, tx: &mut Tx<'_>) -> bool {
        let state = self.state(cursor);
        if let Some(j) = self.jsonata_of(state) {
            return self.wait_jsonata(cursor, spec, j, ctx, tx);
        }
        let result = dataflow::input_path(&state.common.input_path, &cursor.input, ctx, &cursor.vars, &tx.entropy).and_then(|effective| {
            let scope = Scope { input: &effective, context: ctx, vars: &cursor.vars, entropy: &tx.entropy };
            let due = match spec {
                WaitSpec::Seconds(s) => tx.now + chrono::Duration::seconds(*s as i64),
                WaitSpec::Timestamp(ts) => ts.with_timezone(&Utc),
                WaitSpec::SecondsPath(p) => {
                    let v = p.eval(&scope)?;
                    let secs = wait_seconds(&v, p.as_str())?;
                    tx.now + chrono::Duration::seconds(secs)
                }
                WaitSpec::SecondsExpr(_) | WaitSpec::TimestampExpr(_) => {
                    return Err(StatesError::runtime("A JSONata expression in a JSONPath Wait state"));
                }
                WaitSpec::TimestampPath(p) => {
                    let v = p.eval(&scope)?;
                    match v.as_str().and_then(crate::asl::choice::parse_timestamp) {
                        Some(ts) => ts.with_timezone(&Utc),
                        None => {
                            return Err(StatesError::runtime(format!(
                                "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {}",
                                p.as_str(),
                                v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
                            )));
                        }
                    }
                }
            };
            let output = dataflow::output_path(&state.common.output_path, effective.clone(), ctx, &cursor.vars, &tx.entropy)?;
            let vars = dataflow::assign(&state.common.assign, &effective, ctx, &cursor.vars, &tx.entropy)?;
            Ok((due, output, vars))
        });
        match result {
            Ok((due, output, vars)) => {
                if let Some(vars) = vars {
                    cursor.vars.extend(vars);
                }
                cursor.seq += 1;
                tx.actions.push(Action::ScheduleTimer {
                    cursor: cursor.id.clone(),
                    seq: cursor.seq,
                    at: due,
                });
                cursor.phase = Phase::Wait { output };
            }
            Err(e) => {
                let e = self.runtime_cause(cursor, state, e);
                self.finish(cursor, Err(e), tx);
            }
        }
        false
    }

    /// ResultSelector → Assign → ResultPath → OutputPath, then the transition. Used by Pass,
    /// Task, Parallel and Map when their work produced `result`.
    fn complete(&self, cursor: &mut Cursor, result: Value, tx: &mut Tx<'_>) -> bool {
        let state = self.state(cursor);
        let ctx = self.context(cursor, state, None, None);
        if let Some(j) = self.jsonata_of(state) {
            let processed = (|| {
                let scope = self.jscope(cursor, &ctx, tx, Some(&result), None);
                let p =
                    self.produce(j.assign.as_ref(), j.output.as_ref(), &scope, result.clone())?;
                dataflow::check_result_size(&p.output, &state.name, self.options.payload_limit)?;
                Ok::<_, StatesError>(p)
            })();
            return match processed {
                Ok(p) => self.exit_and_transition(cursor, &state.name, p.output, p.assigned, tx),
                Err(e) => self.handle_error(cursor, e, None, tx),
            };
        }
        // The state's input is moved into its output rather than copied when nothing can
        // look at it again: not a Retry or Catch, and not a redrive (which resumes the root
        // cursor with the input of the state it failed in).
        let taken_input = (cursor.parent.is_some()
            && state.common.retry.is_empty()
            && state.common.catch.is_empty())
        .then(|| std::mem::take(&mut cursor.input));
        // Otherwise, for the common `"ResultPath": "$.name"` with the output the whole
        // result (a Map's results at the top level, whose input holds all its items), the
        // input is moved into the output all the same and given back if the output is too
        // large.
        let undoable = match &state.common.result_path {
            Some(p)
                if taken_input.is_none()
                    && state.common.output_path.as_ref().is_some_and(Path::is_root) =>
            {
                Some(p)
            }
            _ => None,
        };
        let processed = (|| {
            let selected =
                dataflow::select_result(&state.common, result, &ctx, &cursor.vars, &tx.entropy)?;
            let vars = dataflow::assign(
                &state.common.assign,
                &selected,
                &ctx,
                &cursor.vars,
                &tx.entropy,
            )?;
            if let Some(vars) = &vars {
                self.check_assigned(vars)?;
            }
            let selected = match undoable {
                Some(path) => match path.set_undoable(&mut cursor.input, selected) {
                    Ok(undo) => {
                        return match dataflow::check_result_size(
                            &cursor.input,
                            &state.name,
                            self.options.payload_limit,
                        ) {
                            Ok(()) => Ok((vars, std::mem::take(&mut cursor.input))),
                            Err(e) => {
                                path.unset(&mut cursor.input, undo);
                                Err(e)
                            }
                        };
                    }
                    Err(selected) => selected,
                },
                None => selected,
            };
            let combined = match taken_input {
                Some(input) => {
                    dataflow::result_path_into(&state.common.result_path, input, selected)?
                }
                None => dataflow::result_path(&state.common.result_path, &cursor.input, selected)?,
            };
            let output = dataflow::output_path(
                &state.common.output_path,
                combined,
                &ctx,
                &cursor.vars,
                &tx.entropy,
            )?;
            dataflow::check_result_size(&output, &state.name, self.options.payload_limit)?;
            Ok::<_, StatesError>((vars, output))
        })();
        match processed {
            Ok((vars, output)) => self.exit_and_transition(cursor, &state.name, output, vars, tx),
            Err(e) => self.handle_error(cursor, e, None, tx),
        }
    }

    /// Writes `...StateExited` and follows `Next` (true: enter it now) or ends the cursor.
    fn exit_and_transition(
        &self,
        cursor: &mut Cursor,
        name: &str,
        output: Value,
        assigned: Option<Map<String, Value>>,
        tx: &mut Tx<'_>,
    ) -> bool {
        let state = self.state(cursor);
        tx.record_with(cursor, EventType::StateExited(StateType::of(state)), || {
            exit_details(name, &output, assigned.as_ref())
        });
        if let Some(vars) = assigned {
            cursor.vars.extend(vars);
        }
        match state.common.transition {
            Transition::Next(next) => {
                cursor.state = next;
                cursor.input = output;
                cursor.phase = Phase::Ready;
                true
            }
            Transition::End => {
                self.finish(cursor, Ok(output), tx);
                false
            }
        }
    }

    /// Retry, then Catch, then fail the cursor. `retry_with` is what a retry re-runs (a
    /// Task's effective input); `None` re-runs the whole state.
    fn handle_error(
        &self,
        cursor: &mut Cursor,
        error: StatesError,
        retry_with: Option<RetryAgain>,
        tx: &mut Tx<'_>,
    ) -> bool {
        self.handle_error_then(cursor, error, retry_with, &[], tx)
    }

    /// [`Self::handle_error`], writing `give_up` events (e.g. `MapStateFailed`) once it is
    /// clear the state will not be retried.
    fn handle_error_then(
        &self,
        cursor: &mut Cursor,
        error: StatesError,
        retry_with: Option<RetryAgain>,
        give_up: &[(EventType, Value)],
        tx: &mut Tx<'_>,
    ) -> bool {
        let state = self.state(cursor);
        let error = self.runtime_cause(cursor, state, error);
        if let Some(i) = state
            .common
            .retry
            .iter()
            .position(|r| error_matches(&r.error_equals, &error.error))
        {
            let retrier = &state.common.retry[i];
            let count = cursor.retries[i];
            if u64::from(count) < retrier.max_attempts {
                cursor.retries[i] += 1;
                let delay = retrier.delay(count, tx.random);
                cursor.seq += 1;
                let at = tx.now
                    + chrono::Duration::from_std(delay)
                        .unwrap_or_else(|_| chrono::Duration::days(366));
                tx.actions.push(Action::ScheduleTimer {
                    cursor: cursor.id.clone(),
                    seq: cursor.seq,
                    at,
                });
                cursor.phase = Phase::Backoff(retry_with.unwrap_or(RetryAgain::Rerun));
                return false;
            }
        }
        if state.common.jsonata.is_some() {
            let name = state.name.clone();
            self.evaluation_failed(cursor, &name, &error, tx);
        }
        for (event_type, details) in give_up {
            tx.record(cursor, *event_type, details.clone());
        }
        if let Some(catcher) = state
            .common
            .catch
            .iter()
            .find(|c| error_matches(&c.error_equals, &error.error))
        {
            let error_output = json!({ "Error": error.error, "Cause": error.cause });
            let ctx = self.context(cursor, state, None, None);
            let processed = if let Some(cj) = catcher.jsonata.as_deref() {
                let scope = self.jscope(cursor, &ctx, tx, None, Some(&error_output));
                self.produce(
                    cj.assign.as_ref(),
                    cj.output.as_ref(),
                    &scope,
                    error_output.clone(),
                )
                .map(|p| (p.assigned, p.output))
            } else {
                dataflow::assign(
                    &catcher.assign,
                    &error_output,
                    &ctx,
                    &cursor.vars,
                    &tx.entropy,
                )
                .and_then(|vars| {
                    Ok((
                        vars,
                        dataflow::result_path(&catcher.result_path, &cursor.input, error_output)?,
                    ))
                })
            };
            match processed {
                Ok((vars, output)) => {
                    let name = state.name.clone();
                    tx.record(
                        cursor,
                        EventType::StateExited(StateType::of(state)),
                        exit_details(&name, &output, vars.as_ref()),
                    );
                    if let Some(vars) = vars {
                        cursor.vars.extend(vars);
                    }
                    cursor.state = catcher.next;
                    cursor.input = output;
                    cursor.phase = Phase::Ready;
                    return true;
                }
                Err(e) => {
                    self.finish(cursor, Err(e), tx);
                    return false;
                }
            }
        }
        self.finish(cursor, Err(error), tx);
        false
    }

    fn retry_now(&self, cursor: &mut Cursor, again: RetryAgain, tx: &mut Tx<'_>) -> bool {
        match again {
            // InputPath and Parameters are evaluated again: `$$.State.RetryCount` counts.
            RetryAgain::Task { .. } => {
                let StateKind::Task(spec) = &self.state(cursor).kind else {
                    return false;
                };
                self.start_task(cursor, spec, tx)
            }
            RetryAgain::Rerun => self.run_state(cursor, tx),
        }
    }

    /// Ends a cursor: the execution for the root, an iteration or branch otherwise.
    fn finish(&self, cursor: &mut Cursor, result: Result<Value, StatesError>, tx: &mut Tx<'_>) {
        cursor.phase = Phase::Done;
        // The parent's next event follows the child's last inner event, as in AWS's
        // histories; a Map's MapStateSucceeded follows the last MapIteration event instead.
        let last_event = cursor.last_event;
        let mut finished_event = 0;
        match &cursor.parent {
            None => match &result {
                Ok(output) => {
                    tx.record_with(cursor, EventType::ExecutionSucceeded, || {
                        object([("output", output.clone())])
                    });
                }
                Err(e) => {
                    tx.record(cursor, EventType::ExecutionFailed, error_details(e));
                }
            },
            Some(link) if link.kind == ChildKind::Map => {
                let details = if tx.history {
                    iteration_details(link.index, &link.state_name)
                } else {
                    Value::Null
                };
                let t = if result.is_ok() {
                    EventType::MapIterationSucceeded
                } else {
                    EventType::MapIterationFailed
                };
                finished_event = tx.record(cursor, t, details);
            }
            Some(_) => {}
        }
        tx.actions.push(Action::Finished {
            cursor: cursor.id.clone(),
            result,
            last_event,
            finished_event,
        });
    }

    /// Stops a cursor on its parent's (or the user's) request.
    fn abort(&self, cursor: &mut Cursor, phase: Phase, tx: &mut Tx<'_>) {
        match phase {
            Phase::Done => {
                cursor.phase = Phase::Done;
                return;
            }
            Phase::Task(_) => {
                tx.record(cursor, EventType::TaskStateAborted, Value::Null);
            }
            Phase::Wait { .. } => {
                tx.record(cursor, EventType::WaitStateAborted, Value::Null);
            }
            Phase::Children(ch) | Phase::Collecting(ch) | Phase::Aborting(ch) => {
                let t = if ch.kind == ChildKind::Map {
                    EventType::MapStateAborted
                } else {
                    EventType::ParallelStateAborted
                };
                tx.record(cursor, t, Value::Null);
                tx.actions.push(Action::AbortChildren {
                    cursor: cursor.id.clone(),
                });
            }
            Phase::Ready | Phase::Backoff(_) => {}
        }
        if let Some(link) = cursor.parent.clone()
            && link.kind == ChildKind::Map
        {
            tx.record(
                cursor,
                EventType::MapIterationAborted,
                json!({ "index": link.index, "name": link.state_name }),
            );
        }
        cursor.phase = Phase::Done;
    }

    /// Ends the whole execution from outside the state machine: a user's stop, the
    /// execution timeout, the history cap. The driver stops the root's running children
    /// first (their abort events precede the execution's end).
    pub fn stop_execution(
        &self,
        root: &mut Cursor,
        error: StatesError,
        ending: Ending,
        tx: &mut Tx<'_>,
    ) {
        root.phase = Phase::Done;
        let t = match ending {
            Ending::TimedOut => EventType::ExecutionTimedOut,
            Ending::Aborted => EventType::ExecutionAborted,
            Ending::Failed => EventType::ExecutionFailed,
        };
        tx.record(root, t, error_details(&error));
    }
}

/// A `...StateExited` event's details: the name, the output and, as AWS records them, the
/// variables the state assigned.
fn exit_details(name: &str, output: &Value, assigned: Option<&Map<String, Value>>) -> Value {
    let mut details = object([
        ("name", Value::String(name.to_string())),
        ("output", output.clone()),
    ]);
    if let Some(vars) = assigned {
        details["assignedVariables"] = Value::Object(vars.clone());
    }
    details
}

/// A `MapIteration...` event's details.
pub(super) fn iteration_details(index: usize, name: &str) -> Value {
    object([
        ("index", Value::from(index)),
        ("name", Value::String(name.to_string())),
    ])
}

/// `{error, cause}` details, leaving out empty ones as AWS does for a bare Fail state.
fn error_details(e: &StatesError) -> Value {
    let mut m = Map::new();
    if !e.error.is_empty() {
        m.insert("error".into(), json!(e.error));
    }
    if !e.cause.is_empty() {
        m.insert("cause".into(), json!(e.cause));
    }
    Value::Object(m)
}

/// A `SecondsPath` value: a non-negative integer.
fn wait_seconds(v: &Value, path: &str) -> Result<i64, StatesError> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if i < 0 {
                    return Err(StatesError::runtime(format!(
                        "The SecondsPath parameter references a negative value: {path} == {i}"
                    )));
                }
                return Ok(i.min(31_622_400));
            }
            if n.as_u64().is_some() {
                return Ok(31_622_400);
            }
            Err(StatesError::runtime(format!(
                "The SecondsPath parameter cannot be parsed as a long value: {path} == {n}"
            )))
        }
        other => Err(StatesError::runtime(format!(
            "The SecondsPath parameter cannot be parsed as a long value: {path} == {other}"
        ))),
    }
}
