//! Embedded mode: the engine driven in one process. Steps run as in-process tasks, cursors,
//! items and results live in memory, timers in a heap.
//!
//! This is the same [`Processor`] the fleet uses; only the [`Backend`] differs. Time comes
//! from tokio's clock (so tests can pause it), randomness from the thread RNG.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::asl::definition::StateMachine;
use crate::asl::error::{StatesError, names};
pub use crate::driver::Status;
use crate::driver::{Backend, BackendError, Processor, StepRequest};
use crate::engine::cursor::{Cursor, CursorEvent, CursorId};
use crate::engine::history::Event;
use crate::engine::run::EngineOptions;
use crate::engine::{Engine, ExecutionInfo};
use crate::maprun::{Buckets, MapRunPlan, OpenRun};
use mapfleet_engine::memory_children::MemoryChildren;

/// Runs Task steps. The embedded default runs the worker's tasks in-process through the
/// worker's task policy (`worker::policy`, wired in the `mapfleet` CLI crate), so a step ends
/// with the same error names as on the fleet.
#[async_trait::async_trait]
pub trait TaskExecutor: Send + Sync {
    /// Whether some task serves this resource ARN.
    fn serves(&self, resource: &str) -> bool;

    /// Every resource served, for error messages.
    fn resources(&self) -> Vec<String>;

    /// Runs the task within `budget` (the state's TimeoutSeconds; `None`: none); an `Err` is
    /// the step's error name and cause. Should not panic (a panic is caught here as a last
    /// resort and named like the worker names one).
    async fn execute(
        &self,
        resource: &str,
        input: Value,
        budget: Option<Duration>,
    ) -> Result<Value, StatesError>;
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

    async fn execute(
        &self,
        resource: &str,
        _: Value,
        _: Option<Duration>,
    ) -> Result<Value, StatesError> {
        Err(StatesError::unserved(resource, &[] as &[&str]))
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
    /// Most Task steps running at once; 0 for no limit (the default here, so that tests
    /// measure a Map's own MaxConcurrency). A step waits for a slot before its task starts,
    /// so a Map's waiting items hold no task memory (no photo read or decoded) yet. The CLI
    /// sets [`default_task_slots`].
    pub task_slots: usize,
    /// Where Distributed Maps read their items and write their results (the CLI hands in
    /// the worker's store over `<data-dir>/buckets`); without it such a Map fails with
    /// `States.ItemReaderFailed`.
    pub buckets: Option<Arc<dyn Buckets>>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            engine: EngineOptions::default(),
            keep_history: true,
            task_slots: 0,
            buckets: None,
        }
    }
}

/// Task slots for `mapfleet run` in this process: twice the CPU cores, at least 8 (a fleet
/// worker's default).
pub fn default_task_slots() -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (2 * cores).max(8)
}

/// A timer entry: due time, then insertion order so equal times fire in order.
type TimerKey = Reverse<(DateTime<Utc>, u64, CursorId, u64)>;

type StepOutcome = (CursorId, u64, Result<Value, StatesError>);

/// Everything in memory: the in-process seams of embedded mode.
struct MemoryBackend {
    executor: Arc<dyn TaskExecutor>,
    /// Task slots, when limited.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    keep_history: bool,
    children: MemoryChildren,
    timers: BinaryHeap<TimerKey>,
    timer_order: u64,
    tasks: JoinSet<StepOutcome>,
    /// Steps that failed before running (no task serves them), delivered next round.
    refused: Vec<StepOutcome>,
    events: Vec<Event>,
    buckets: Option<Arc<dyn Buckets>>,
    /// Distributed Maps' runs in progress, by Map cursor.
    map_runs: HashMap<CursorId, OpenRun>,
    clock: Clock,
}

/// The run's clock (wall time on tokio's clock, so tests can pause it).
type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn load_cursor(&mut self, _: &str) -> Result<Option<Cursor>, BackendError> {
        // The processor's cache is the whole store in embedded mode.
        Ok(None)
    }

    async fn store_items(&mut self, map: &str, items: Vec<Value>) -> Result<(), BackendError> {
        self.children.store_items(map, items);
        Ok(())
    }

    async fn items(
        &mut self,
        map: &str,
        from: usize,
        to: usize,
    ) -> Result<Vec<Value>, BackendError> {
        if let (Some(run), Some(store)) = (self.map_runs.get_mut(map), self.buckets.as_deref()) {
            let now = (self.clock)();
            return run
                .inputs(store, from, to, now)
                .await
                .map_err(|e| BackendError(format!("{}: {}", e.error, e.cause)));
        }
        Ok(self.children.items(map, from, to))
    }

    async fn store_result(
        &mut self,
        parent: &str,
        index: usize,
        output: Option<Value>,
    ) -> Result<bool, BackendError> {
        if self
            .map_runs
            .get(parent)
            .is_some_and(OpenRun::writes_results)
        {
            return Ok(true); // in the run's result files
        }
        self.children.store_result(parent, index, output);
        Ok(true)
    }

    async fn results(&mut self, parent: &str, count: usize) -> Result<Vec<Value>, BackendError> {
        Ok(self.children.take_results(parent, count))
    }

    async fn drop_children(&mut self, parent: &str) -> Result<(), BackendError> {
        self.map_runs.remove(parent);
        self.children.drop_children(parent);
        Ok(())
    }

    async fn add_live(&mut self, parent: &str, children: &[CursorId]) -> Result<(), BackendError> {
        self.children.add_live(parent, children);
        Ok(())
    }

    async fn remove_live(&mut self, parent: &str, child: &str) -> Result<(), BackendError> {
        self.children.remove_live(parent, child);
        Ok(())
    }

    async fn live(&mut self, parent: &str) -> Result<Vec<CursorId>, BackendError> {
        Ok(self.children.live(parent))
    }

    fn publish(&mut self, step: StepRequest) {
        let StepRequest {
            cursor,
            seq,
            resource,
            input,
            timeout,
            ..
        } = step;
        if !self.executor.serves(&resource) {
            let error = StatesError::unserved(&resource, &self.executor.resources());
            self.refused.push((cursor, seq, Err(error)));
            return;
        }
        let executor = self.executor.clone();
        let slots = self.slots.clone();
        self.tasks.spawn(async move {
            // A slot first (FIFO, so items start in order): a waiting step holds nothing.
            let _slot = match slots {
                Some(s) => Some(s.acquire_owned().await.expect("the slots are never closed")),
                None => None,
            };
            // The task runs in a task of its own so that a panic the executor let through
            // still becomes this step's failure instead of a step that never ends.
            let name = resource.clone();
            let run =
                tokio::spawn(async move { executor.execute(&resource, input, timeout).await });
            let result = run
                .await
                .unwrap_or_else(|e| Err(StatesError::task_panicked(&name, &e.to_string())));
            (cursor, seq, result)
        });
    }

    fn schedule(&mut self, cursor: &str, seq: u64, at: DateTime<Utc>) {
        self.timer_order += 1;
        self.timers
            .push(Reverse((at, self.timer_order, cursor.to_string(), seq)));
    }

    fn record(&mut self, event: Event) {
        if self.keep_history {
            self.events.push(event);
        }
    }

    async fn open_map_run(
        &mut self,
        map: &str,
        plan: MapRunPlan,
    ) -> Result<Result<usize, StatesError>, BackendError> {
        let Some(store) = self.buckets.clone() else {
            return Ok(Err(StatesError::new(
                names::ITEM_READER_FAILED,
                "No object store is configured for this run, so the ItemReader cannot read",
            )));
        };
        Ok(match OpenRun::open(store.as_ref(), plan).await {
            Ok((run, count)) => {
                self.map_runs.insert(map.to_string(), run);
                Ok(count)
            }
            Err(e) => Err(e),
        })
    }

    async fn child_ended(
        &mut self,
        parent: &str,
        index: usize,
        result: &Result<Value, StatesError>,
        at: DateTime<Utc>,
    ) -> Result<(), BackendError> {
        if let (Some(run), Some(store)) = (self.map_runs.get_mut(parent), self.buckets.as_deref()) {
            run.ended(store, index, result, at).await;
        }
        Ok(())
    }

    async fn close_map_run(
        &mut self,
        map: &str,
    ) -> Result<Option<Result<Value, StatesError>>, BackendError> {
        let (Some(run), Some(store)) = (self.map_runs.get_mut(map), self.buckets.as_deref()) else {
            return Ok(None);
        };
        Ok(run.finish(store).await.transpose())
    }
}

fn outcome_event(seq: u64, result: Result<Value, StatesError>) -> CursorEvent {
    match result {
        Ok(output) => CursorEvent::StepSucceeded { seq, output },
        Err(error) => CursorEvent::StepFailed { seq, error },
    }
}

/// Events the loop feeds the engine between looks at the clock and the running tasks.
const EVENTS_PER_ROUND: usize = 1000;

/// Runs one execution to its end in this process.
pub async fn run_execution(
    def: Arc<StateMachine>,
    info: ExecutionInfo,
    executor: Arc<dyn TaskExecutor>,
    opts: EmbeddedOptions,
) -> ExecutionResult {
    let timeout = def.timeout_seconds;
    let mut engine = Engine::new(def, info);
    engine.options = opts.engine.clone();
    let wall_base = engine.info.start_time;
    let clock_base = Instant::now();
    let now = move || {
        wall_base
            + chrono::Duration::from_std(Instant::now().saturating_duration_since(clock_base))
                .unwrap_or_default()
    };
    let deadline = timeout.map(|s| clock_base + std::time::Duration::from_secs(s));
    let clock: Clock = Arc::new(now);
    let mut backend = MemoryBackend {
        executor,
        slots: (opts.task_slots > 0)
            .then(|| Arc::new(tokio::sync::Semaphore::new(opts.task_slots))),
        keep_history: opts.keep_history,
        children: MemoryChildren::default(),
        timers: BinaryHeap::new(),
        timer_order: 0,
        tasks: JoinSet::new(),
        refused: Vec::new(),
        events: Vec::new(),
        buckets: opts.buckets.clone(),
        map_runs: HashMap::new(),
        clock,
    };
    let mut p = Processor::new(engine, 1, false, rand::random());
    p.start(&mut backend, now());
    loop {
        // The memory backend cannot fail.
        let more = p
            .run_some(&mut backend, now, EVENTS_PER_ROUND)
            .await
            .unwrap_or(false);
        if p.ended.is_some() {
            break;
        }
        if more {
            // A long chain of flow states (or a loop of them, with the history cap off):
            // check the deadline and let the runtime breathe before going on.
            if deadline.is_some_and(|dl| Instant::now() >= dl) {
                let e =
                    StatesError::new(names::TIMEOUT, "The execution exceeded its TimeoutSeconds.");
                let _ = p.stop(&mut backend, e, true, now).await;
                backend.tasks.abort_all();
                break;
            }
            tokio::task::yield_now().await;
            continue;
        }
        for (cursor, seq, result) in std::mem::take(&mut backend.refused) {
            p.push(cursor, outcome_event(seq, result));
        }
        let current = now();
        let mut fired = false;
        while let Some(Reverse((at, ..))) = backend.timers.peek() {
            if *at > current {
                break;
            }
            let Reverse((_, _, cursor, seq)) = backend.timers.pop().expect("peeked");
            p.push(cursor, CursorEvent::TimerFired { seq });
            fired = true;
        }
        if fired {
            continue;
        }
        if backend.tasks.is_empty() && backend.timers.is_empty() {
            if p.has_queued() {
                continue;
            }
            let e = StatesError::runtime(
                "The execution stopped making progress: no task, timer or event is pending",
            );
            let _ = p.stop(&mut backend, e, false, now).await;
            break;
        }
        let next_timer = backend
            .timers
            .peek()
            .map(|Reverse((at, ..))| Instant::now() + (*at - current).to_std().unwrap_or_default());
        let wake = match (next_timer, deadline) {
            (Some(t), Some(dl)) => Some(t.min(dl)),
            (t, dl) => t.or(dl),
        };
        tokio::select! {
            joined = backend.tasks.join_next(), if !backend.tasks.is_empty() => {
                if let Some(Ok((cursor, seq, result))) = joined {
                    p.push(cursor, outcome_event(seq, result));
                }
            }
            _ = sleep_until_opt(wake) => {}
        }
        if deadline.is_some_and(|dl| Instant::now() >= dl) {
            let e = StatesError::new(names::TIMEOUT, "The execution exceeded its TimeoutSeconds.");
            let _ = p.stop(&mut backend, e, true, now).await;
            backend.tasks.abort_all();
            break;
        }
    }
    let (status, result) = p
        .ended
        .take()
        .expect("the loop ends with the execution's end");
    let (output, error) = match result {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    ExecutionResult {
        info: (*p.engine.info).clone(),
        status,
        output,
        error,
        stop_date: now(),
        events: backend.events,
        transitions: p.transitions,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
