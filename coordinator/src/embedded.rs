//! Embedded mode: the engine driven in one process. Steps run as in-process tasks, cursors,
//! items and results live in memory, timers in a heap.
//!
//! This is the same [`Processor`] the fleet uses; only the [`Backend`] differs. Time comes
//! from tokio's clock (so tests can pause it), randomness from the thread RNG.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
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
use crate::engine::cursor::{Cursor, CursorEvent, CursorId, LimitsUpdate, Phase};
use crate::engine::history::Event;
use crate::engine::run::EngineOptions;
use crate::engine::token;
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
            engine: EngineOptions {
                token_key: os_token_key(),
                ..EngineOptions::default()
            },
            keep_history: true,
            task_slots: 0,
            buckets: None,
        }
    }
}

/// A key for `.waitForTaskToken` tokens' secrets ([`crate::engine::token`]), drawn from
/// the OS: each process (each embedded run, each coordinator) has its own.
pub fn os_token_key() -> crate::engine::token::TokenKey {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    crate::engine::token::TokenKey::new(bytes)
}

/// Task slots for `mapfleet run` in this process: twice the CPU cores, at least 8 (a fleet
/// worker's default).
pub fn default_task_slots() -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (2 * cores).max(8)
}

/// What a run in this process tells whoever hosts it while it runs (`mapfleet serve` keeps
/// the history on disk and shows map runs as they go). Every method has a default that does
/// nothing; calls are made on the run's task, between engine steps, so they must be quick.
pub trait RunHooks: Send + Sync {
    /// A history event, in id order (whether or not [`EmbeddedOptions::keep_history`]).
    fn event(&self, event: &Event) {
        let _ = event;
    }
    /// The run is about to wait (for a task, a timer or a [`Control`]): what was handed
    /// over can be flushed. `root` is the root cursor as it stands, where a redrive of this
    /// execution would resume if the process died now.
    fn idle(&self, root: Option<&Cursor>) {
        let _ = root;
    }
    /// A Distributed Map's run over an ItemReader opened with `total` children.
    fn map_run_opened(&self, map: &str, plan: &MapRunPlan, total: usize) {
        let _ = (map, plan, total);
    }
    /// `children` more children of the run under `map` started.
    fn map_run_started(&self, map: &str, children: usize) {
        let _ = (map, children);
    }
    /// A child of the run under `map` ended.
    fn map_run_child_ended(&self, map: &str, succeeded: bool) {
        let _ = (map, succeeded);
    }
    /// The run under `map` ended (`written`: its ResultWriter, if any, wrote its files).
    fn map_run_closed(&self, map: &str, written: bool) {
        let _ = (map, written);
    }
}

/// What a host asks of a running execution.
#[derive(Debug)]
pub enum Control {
    /// StopExecution: the execution ends ABORTED with this error and cause.
    Stop(StatesError),
    /// UpdateMapRun: the Map at cursor `map` takes new limits.
    UpdateLimits { map: CursorId, limits: LimitsUpdate },
    /// SendTaskSuccess, SendTaskFailure or SendTaskHeartbeat with the token of one of this
    /// execution's `.waitForTaskToken` steps: `reply` says whether the run took it.
    Token {
        token: String,
        answer: TokenAnswer,
        reply: tokio::sync::oneshot::Sender<Result<(), TokenRefused>>,
    },
}

/// What the holder of a `.waitForTaskToken` token sent.
#[derive(Debug)]
pub enum TokenAnswer {
    /// SendTaskSuccess (`Ok`) or SendTaskFailure (`Err`).
    Result(Result<Value, StatesError>),
    Heartbeat,
}

/// Why a run refused a token (AWS's `InvalidToken` and `TaskTimedOut`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefused {
    /// Not a token this run handed out.
    Invalid,
    /// Its task is no longer waiting: answered already, timed out, failed or stopped.
    TimedOut,
}

/// Where a redrive resumes: the root cursor as the execution ended (or as it stood when
/// its process died), and the id the next history event takes.
pub struct Resume {
    pub root: Cursor,
    pub next_event_id: u64,
}

/// A run with a host: its hooks, its control channel and, for a redrive, where it resumes
/// (the execution's `redrive_count` is the redrive's count).
pub struct Live {
    pub hooks: Arc<dyn RunHooks>,
    pub control: tokio::sync::mpsc::UnboundedReceiver<Control>,
    pub resume: Option<Resume>,
}

/// How a run with a host ended.
pub struct LiveEnd {
    pub result: ExecutionResult,
    /// The root cursor where the execution ended other than SUCCEEDED: where a redrive
    /// resumes.
    pub ended_root: Option<Cursor>,
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
    hooks: Option<Arc<dyn RunHooks>>,
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
            let inputs = run
                .inputs(store, from, to, now)
                .await
                .map_err(|e| BackendError(format!("{}: {}", e.error, e.cause)))?;
            if let Some(h) = &self.hooks {
                h.map_run_started(map, inputs.len());
            }
            return Ok(inputs);
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
        if let Some(h) = &self.hooks {
            h.event(&event);
        }
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
        let seen = self.hooks.is_some().then(|| plan.clone());
        Ok(match OpenRun::open(store.as_ref(), plan).await {
            Ok((run, count)) => {
                if let (Some(h), Some(plan)) = (&self.hooks, &seen) {
                    h.map_run_opened(map, plan, count);
                }
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
            if let Some(h) = &self.hooks {
                h.map_run_child_ended(parent, result.is_ok());
            }
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
        let finished = run.finish(store).await;
        if let Some(h) = &self.hooks {
            h.map_run_closed(map, finished.is_ok());
        }
        Ok(finished.transpose())
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
    drive(def, info, executor, opts, None).await.result
}

/// Runs one execution to its end in this process for a host (`mapfleet serve`): its
/// events and map runs reach `live.hooks`, `live.control` stops it or changes a map run's
/// limits, and `live.resume` makes it a redrive.
pub async fn run_live(
    def: Arc<StateMachine>,
    info: ExecutionInfo,
    executor: Arc<dyn TaskExecutor>,
    opts: EmbeddedOptions,
    live: Live,
) -> LiveEnd {
    drive(def, info, executor, opts, Some(live)).await
}

async fn drive(
    def: Arc<StateMachine>,
    info: ExecutionInfo,
    executor: Arc<dyn TaskExecutor>,
    opts: EmbeddedOptions,
    live: Option<Live>,
) -> LiveEnd {
    let (hooks, mut control, resume) = match live {
        Some(l) => (Some(l.hooks), Some(l.control), l.resume),
        None => (None, None, None),
    };
    let timeout = def.timeout_seconds;
    let mut engine = Engine::new(def, info);
    engine.options = opts.engine.clone();
    // Without `--history` and without a host that sees the events, none is built.
    engine.options.history &= opts.keep_history || hooks.is_some();
    // A redrive's clock starts now, not at the execution's first start.
    let wall_base = if resume.is_some() {
        Utc::now()
    } else {
        engine.info.start_time
    };
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
        hooks: hooks.clone(),
    };
    let redrive_count = engine.info.redrive_count;
    // The (cursor, seq) of the callback tokens answered but not yet applied.
    let mut answered: HashSet<(CursorId, u64)> = HashSet::new();
    let mut p = match resume {
        Some(Resume {
            root,
            next_event_id,
        }) => {
            let mut p = Processor::new(engine, next_event_id, false, rand::random());
            p.redrive(&mut backend, root, redrive_count, now());
            p
        }
        None => {
            let mut p = Processor::new(engine, 1, false, rand::random());
            p.start(&mut backend, now());
            p
        }
    };
    loop {
        // What the host asked for since the last look (a stop ends the run here).
        while let Some(c) = control.as_mut().and_then(|c| c.try_recv().ok()) {
            match c {
                Control::Stop(e) => {
                    let _ = p.run_some(&mut backend, now, EVENTS_PER_ROUND).await;
                    let _ = p.stop(&mut backend, e, false, now).await;
                    backend.tasks.abort_all();
                }
                Control::UpdateLimits { map, limits } => {
                    p.push(map, CursorEvent::UpdateLimits(limits))
                }
                Control::Token {
                    token,
                    answer,
                    reply,
                } => {
                    let taken = take_token(&mut p, &mut answered, &token, answer, now());
                    let _ = reply.send(taken);
                }
            }
        }
        if p.ended.is_some() {
            break;
        }
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
            let waits_for_token = p.awaits_callback();
            if !(waits_for_token && control.is_some()) {
                let e = StatesError::runtime(if waits_for_token {
                    "The execution stopped making progress: a .waitForTaskToken task waits for \
                     its token, which only a host such as mapfleet serve can answer \
                     (SendTaskSuccess)"
                } else {
                    "The execution stopped making progress: no task, timer or event is pending"
                });
                let _ = p.stop(&mut backend, e, false, now).await;
                break;
            }
        }
        let next_timer = backend
            .timers
            .peek()
            .map(|Reverse((at, ..))| Instant::now() + (*at - current).to_std().unwrap_or_default());
        let wake = match (next_timer, deadline) {
            (Some(t), Some(dl)) => Some(t.min(dl)),
            (t, dl) => t.or(dl),
        };
        if let Some(h) = &hooks {
            h.idle(p.root());
        }
        let controlled = control.is_some();
        tokio::select! {
            joined = backend.tasks.join_next(), if !backend.tasks.is_empty() => {
                if let Some(Ok((cursor, seq, result))) = joined {
                    p.push(cursor, outcome_event(seq, result));
                }
            }
            asked = recv_opt(control.as_mut()), if controlled => {
                match asked {
                    // Seen at the top of the loop.
                    Some(Control::Stop(e)) => {
                        let _ = p.stop(&mut backend, e, false, now).await;
                        backend.tasks.abort_all();
                        break;
                    }
                    Some(Control::UpdateLimits { map, limits }) => {
                        p.push(map, CursorEvent::UpdateLimits(limits));
                    }
                    Some(Control::Token { token, answer, reply }) => {
                        let taken = take_token(&mut p, &mut answered, &token, answer, now());
                        let _ = reply.send(taken);
                    }
                    // The host is gone: run on without it.
                    None => control = None,
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
    if let Some(h) = &hooks {
        h.idle(None);
    }
    let ended_root = p.ended_root.take();
    let transitions = p.transitions;
    let result = ExecutionResult {
        // The engine's own, not a copy (it holds the execution input).
        info: Arc::unwrap_or_clone(p.engine.info),
        status,
        output,
        error,
        stop_date: now(),
        events: backend.events,
        transitions,
    };
    LiveEnd { result, ended_root }
}

/// Checks a `.waitForTaskToken` token against the run (its secret under the run's key, its
/// step still awaited within its deadlines, not answered yet) and feeds the answer in.
fn take_token(
    p: &mut Processor,
    answered: &mut HashSet<(CursorId, u64)>,
    text: &str,
    answer: TokenAnswer,
    now: DateTime<Utc>,
) -> Result<(), TokenRefused> {
    let decoded = token::decode(text).ok_or(TokenRefused::Invalid)?;
    let step = &decoded.step;
    let expected = token::expected_secret(&p.engine.options.token_key, step);
    if step.execution != p.engine.info.execution_arn
        || !token::same_secret(&decoded.secret, &expected)
    {
        return Err(TokenRefused::Invalid);
    }
    let cursor = p
        .cursor_in_cache(&step.cursor)
        .ok_or(TokenRefused::TimedOut)?;
    let Phase::Task(wait) = &cursor.phase else {
        return Err(TokenRefused::TimedOut);
    };
    let passed = |at: Option<DateTime<Utc>>| at.is_some_and(|t| now >= t);
    if !wait.callback
        || cursor.seq != step.seq
        || 1 + cursor.retries.iter().sum::<u32>() != step.attempt
        || passed(wait.timeout_at)
        || passed(wait.heartbeat_at)
        || answered.contains(&(step.cursor.clone(), step.seq))
    {
        return Err(TokenRefused::TimedOut);
    }
    let (id, seq) = (step.cursor.clone(), step.seq);
    match answer {
        TokenAnswer::Result(result) => {
            if answered.len() >= 1024 {
                // Forget the answers applied since (their cursors moved on).
                answered.retain(|(c, s)| p.cursor_in_cache(c).is_some_and(|c| c.seq == *s));
            }
            answered.insert((id.clone(), seq));
            p.push(id, CursorEvent::TaskAnswered { seq, result });
        }
        TokenAnswer::Heartbeat => p.push(id, CursorEvent::StepHeartbeat { seq }),
    }
    Ok(())
}

async fn recv_opt(
    c: Option<&mut tokio::sync::mpsc::UnboundedReceiver<Control>>,
) -> Option<Control> {
    match c {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
