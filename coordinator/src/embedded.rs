//! Embedded mode: the engine driven in one process, with an in-process task executor, an
//! in-memory cursor store and an in-process timer wheel.
//!
//! This is the same engine the fleet drives; only the seams differ. Time comes from tokio's
//! clock (so tests can pause it), randomness from the thread RNG.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::asl::definition::StateMachine;
use crate::asl::error::{StatesError, names};
use crate::engine::cursor::{Action, Cursor, CursorEvent, CursorId};
use crate::engine::history::Event;
use crate::engine::run::{EngineOptions, Tx};
use crate::engine::{Engine, ExecutionInfo};

/// Runs Task steps. The embedded default runs the worker's tasks in-process; tests plug in
/// their own.
#[async_trait::async_trait]
pub trait TaskExecutor: Send + Sync {
    /// Whether some task serves this resource ARN.
    fn serves(&self, resource: &str) -> bool;

    /// Every resource served, for error messages.
    fn resources(&self) -> Vec<String>;

    /// Runs the task; an `Err` is the task's error name and cause.
    async fn execute(&self, resource: &str, input: Value) -> Result<Value, StatesError>;
}

/// An executor that serves nothing: every Task fails with a clear error.
pub struct NoTasks;

#[async_trait::async_trait]
impl TaskExecutor for NoTasks {
    fn serves(&self, _: &str) -> bool {
        false
    }

    fn resources(&self) -> Vec<String> {
        Vec::new()
    }

    async fn execute(&self, resource: &str, _: Value) -> Result<Value, StatesError> {
        Err(unserved(resource, &[]))
    }
}

/// The error of a Task whose resource no worker serves: `States.Runtime`, so no Catch
/// swallows a misconfiguration and the execution fails instead of waiting forever.
pub fn unserved(resource: &str, served: &[String]) -> StatesError {
    let served = if served.is_empty() { "none".to_string() } else { served.join(", ") };
    StatesError::runtime(format!(
        "No worker serves the resource '{resource}'. Resources served here: {served}. \
         Replace the ARN with one of them (see `mapfleet resources`) or run a worker that serves it."
    ))
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Aborted => "ABORTED",
        }
    }
}

/// The result of one execution, with its whole history.
#[derive(Debug, Clone)]
pub struct ExecutionResult {
    pub info: ExecutionInfo,
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<StatesError>,
    pub stop_date: DateTime<Utc>,
    pub events: Vec<Event>,
    /// State transitions made (each `...StateEntered`), for throughput figures.
    pub transitions: u64,
}

/// Knobs of an embedded run.
#[derive(Clone)]
pub struct EmbeddedOptions {
    pub engine: EngineOptions,
    /// Keep the full history (the CLI's `--history`); off for benchmarks.
    pub keep_history: bool,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions { engine: EngineOptions::default(), keep_history: true }
    }
}

/// A timer entry: due time, then insertion order so equal times fire in order.
type TimerKey = Reverse<(DateTime<Utc>, u64, CursorId, u64)>;

struct Driver {
    engine: Engine,
    executor: Arc<dyn TaskExecutor>,
    opts: EmbeddedOptions,
    cursors: HashMap<CursorId, Cursor>,
    items: HashMap<CursorId, Vec<Value>>,
    results: HashMap<CursorId, Vec<Value>>,
    queue: VecDeque<(CursorId, CursorEvent)>,
    timers: BinaryHeap<TimerKey>,
    timer_order: u64,
    tasks: JoinSet<(CursorId, u64, Result<Value, StatesError>)>,
    next_event_id: u64,
    events: Vec<Event>,
    transitions: u64,
    outcome: Option<(Status, Result<Value, StatesError>)>,
    wall_base: DateTime<Utc>,
    clock_base: Instant,
}

impl Driver {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.clock_base);
        self.wall_base + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }

    fn tx_parts(&mut self) -> (DateTime<Utc>, f64) {
        (self.now(), rand::random::<f64>())
    }

    /// Applies one event to one cursor and carries out what it asks for.
    fn step(&mut self, id: CursorId, event: CursorEvent) {
        let Some(mut cursor) = self.cursors.remove(&id) else {
            return; // finished or aborted: late events are dropped
        };
        let (now, random) = self.tx_parts();
        let mut next = self.next_event_id;
        let mut tx = Tx::new(now, random, &mut next);
        self.engine.apply(&mut cursor, event, &mut tx);
        let actions = tx.actions;
        self.next_event_id = next;
        self.cursors.insert(id, cursor);
        self.carry_out(actions);
    }

    fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::History(e) => {
                    if matches!(e.event_type, crate::engine::EventType::StateEntered(_)) {
                        self.transitions += 1;
                    }
                    if self.opts.keep_history {
                        self.events.push(e);
                    }
                }
                Action::PublishStep { cursor, seq, resource, input, .. } => {
                    if !self.executor.serves(&resource) {
                        let error = unserved(&resource, &self.executor.resources());
                        self.queue.push_back((cursor, CursorEvent::StepFailed { seq, error }));
                        continue;
                    }
                    let executor = self.executor.clone();
                    self.tasks.spawn(async move {
                        // The task runs in a task of its own so that a panic in it becomes
                        // this step's failure instead of a step that never ends.
                        let run = tokio::spawn(async move { executor.execute(&resource, input).await });
                        let result = run.await.unwrap_or_else(|e| {
                            Err(StatesError::new(names::TASK_FAILED, format!("The task crashed: {e}")))
                        });
                        (cursor, seq, result)
                    });
                }
                Action::ScheduleTimer { cursor, seq, at } => {
                    self.timer_order += 1;
                    self.timers.push(Reverse((at, self.timer_order, cursor, seq)));
                }
                Action::StoreItems { cursor, items } => {
                    self.results.insert(cursor.clone(), vec![Value::Null; items.len()]);
                    self.items.insert(cursor, items);
                }
                Action::StartChildren { cursor, from, to } => self.start_children(&cursor, from, to),
                Action::AbortChildren { cursor } => self.abort_children(&cursor),
                Action::CollectResults { cursor, count } => {
                    let mut results = self.results.remove(&cursor).unwrap_or_default();
                    results.resize(count, Value::Null);
                    self.items.remove(&cursor);
                    self.queue.push_back((cursor, CursorEvent::Results { results }));
                }
                Action::Finished { cursor, result, last_event } => self.finished(cursor, result, last_event),
            }
        }
    }

    fn start_children(&mut self, parent_id: &str, from: usize, to: usize) {
        let Some(parent) = self.cursors.remove(parent_id) else { return };
        let (now, random) = self.tx_parts();
        let mut next = self.next_event_id;
        let mut tx = Tx::new(now, random, &mut next);
        let mut spawned = Vec::with_capacity(to - from);
        for index in from..to {
            let item = self.items.get(parent_id).and_then(|items| items.get(index)).cloned();
            let child = self.engine.spawn_child(&parent, index, item, &mut tx);
            spawned.push(child);
        }
        let actions = tx.actions;
        self.next_event_id = next;
        self.cursors.insert(parent_id.to_string(), parent);
        for child in spawned {
            let ready = matches!(child.phase, crate::engine::Phase::Ready);
            let id = child.id.clone();
            self.cursors.insert(id.clone(), child);
            if ready {
                self.queue.push_back((id, CursorEvent::Enter));
            }
        }
        self.carry_out(actions);
    }

    fn abort_children(&mut self, parent_id: &str) {
        let prefix = format!("{parent_id}/");
        let mut doomed: Vec<CursorId> = self.cursors.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
        // Deepest first, so inner aborts are written before outer ones.
        doomed.sort_by_key(|k| Reverse(k.matches('/').count()));
        let mut all = Vec::new();
        for id in doomed {
            let Some(mut cursor) = self.cursors.remove(&id) else { continue };
            let (now, random) = self.tx_parts();
            let mut next = self.next_event_id;
            let mut tx = Tx::new(now, random, &mut next);
            self.engine.apply(&mut cursor, CursorEvent::Abort, &mut tx);
            // Children of the aborted cursors are already being removed here.
            all.extend(tx.actions.into_iter().filter(|a| matches!(a, Action::History(_))));
            self.next_event_id = next;
            self.items.remove(&id);
            self.results.remove(&id);
        }
        self.items.remove(parent_id);
        self.results.remove(parent_id);
        self.carry_out(all);
    }

    fn finished(&mut self, id: CursorId, result: Result<Value, StatesError>, last_event: u64) {
        let Some(cursor) = self.cursors.remove(&id) else { return };
        match cursor.parent {
            None => {
                let status = if result.is_ok() { Status::Succeeded } else { Status::Failed };
                self.outcome = Some((status, result));
            }
            Some(link) => {
                let result = match result {
                    Ok(output) => {
                        if let Some(slot) = self.results.entry(link.id.clone()).or_default().get_mut(link.index) {
                            *slot = output;
                        } else {
                            let r = self.results.entry(link.id.clone()).or_default();
                            r.resize(link.index + 1, Value::Null);
                            r[link.index] = output;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                self.queue.push_back((link.id, CursorEvent::ChildFinished { index: link.index, result, last_event }));
            }
        }
    }

    /// Ends the execution from outside (timeout).
    fn stop(&mut self, error: StatesError, timed_out: bool) {
        let Some(mut root) = self.cursors.remove("") else { return };
        let (now, random) = self.tx_parts();
        let mut next = self.next_event_id;
        let mut tx = Tx::new(now, random, &mut next);
        self.engine.stop_execution(&mut root, error.clone(), timed_out, &mut tx);
        let actions = tx.actions;
        self.next_event_id = next;
        self.abort_children("");
        self.carry_out(actions);
        self.tasks.abort_all();
        let status = if timed_out { Status::TimedOut } else { Status::Aborted };
        self.outcome = Some((status, Err(error)));
    }
}

/// Runs one execution to its end in this process.
pub async fn run_execution(def: Arc<StateMachine>, info: ExecutionInfo, executor: Arc<dyn TaskExecutor>, opts: EmbeddedOptions) -> ExecutionResult {
    let timeout = def.timeout_seconds;
    let mut engine = Engine::new(def, info);
    engine.options = opts.engine.clone();
    let wall_base = engine.info.start_time;
    let mut d = Driver {
        engine,
        executor,
        opts,
        cursors: HashMap::new(),
        items: HashMap::new(),
        results: HashMap::new(),
        queue: VecDeque::new(),
        timers: BinaryHeap::new(),
        timer_order: 0,
        tasks: JoinSet::new(),
        next_event_id: 1,
        events: Vec::new(),
        transitions: 0,
        outcome: None,
        wall_base,
        clock_base: Instant::now(),
    };
    let deadline = timeout.map(|s| d.clock_base + std::time::Duration::from_secs(s));
    {
        let (now, random) = d.tx_parts();
        let mut next = d.next_event_id;
        let mut tx = Tx::new(now, random, &mut next);
        let root = d.engine.start(&mut tx);
        let actions = tx.actions;
        d.next_event_id = next;
        d.cursors.insert(String::new(), root);
        d.carry_out(actions);
        d.queue.push_back((String::new(), CursorEvent::Enter));
    }
    while d.outcome.is_none() {
        while let Some((id, event)) = d.queue.pop_front() {
            d.step(id, event);
            if d.outcome.is_some() {
                break;
            }
        }
        if d.outcome.is_some() {
            break;
        }
        // Fire every timer that is due.
        let now = d.now();
        let mut fired = false;
        while let Some(Reverse((at, _, _, _))) = d.timers.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, _, cursor, seq)) = d.timers.pop().expect("peeked");
            d.queue.push_back((cursor, CursorEvent::TimerFired { seq }));
            fired = true;
        }
        if fired {
            continue;
        }
        if d.tasks.is_empty() && d.timers.is_empty() {
            let e = StatesError::runtime("The execution stopped making progress: no task, timer or event is pending");
            d.stop(e, false);
            break;
        }
        let next_timer = d.timers.peek().map(|Reverse((at, ..))| {
            let wait = (*at - now).to_std().unwrap_or_default();
            Instant::now() + wait
        });
        let wake = match (next_timer, deadline) {
            (Some(t), Some(dl)) => Some(t.min(dl)),
            (t, dl) => t.or(dl),
        };
        tokio::select! {
            joined = d.tasks.join_next(), if !d.tasks.is_empty() => {
                if let Some(Ok((cursor, seq, result))) = joined {
                    let event = match result {
                        Ok(output) => CursorEvent::StepSucceeded { seq, output },
                        Err(error) => CursorEvent::StepFailed { seq, error },
                    };
                    d.queue.push_back((cursor, event));
                }
            }
            _ = sleep_until_opt(wake) => {}
        }
        if deadline.is_some_and(|dl| Instant::now() >= dl) && d.outcome.is_none() {
            let e = StatesError::new(names::TIMEOUT, "The execution exceeded its TimeoutSeconds.");
            d.stop(e, true);
        }
    }
    let (status, result) = d.outcome.take().expect("the loop ends with an outcome");
    let (output, error) = match result {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    ExecutionResult {
        info: (*d.engine.info).clone(),
        status,
        output,
        error,
        stop_date: d.now(),
        events: d.events,
        transitions: d.transitions,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
