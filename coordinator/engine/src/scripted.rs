//! A whole execution driven in memory with scripted Task outcomes: no IO, no async runtime,
//! no clock. Time is virtual (it jumps to the next timer), randomness comes from a seed, and
//! every Task step is answered at once by a caller's function.
//!
//! It is the same [`Processor`] the fleet and embedded mode use, over a [`Backend`] that
//! keeps everything in memory, so tests of what a whole definition does (a loop reaching
//! the history cap, hostile definitions and inputs) and the whole-path fuzz target run in
//! microseconds and always end: [`Limits`] stops a run that writes too many events or goes
//! past its virtual deadline, the way a TimeoutSeconds or a user's stop would.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::asl::definition::StateMachine;
use crate::asl::error::{StatesError, names};
use crate::driver::{Backend, BackendError, Processor, Status, StepRequest};
use crate::engine::cursor::{Cursor, CursorEvent, CursorId};
use crate::engine::history::Event;
use crate::engine::run::EngineOptions;
use crate::engine::{Engine, ExecutionInfo};
use crate::memory_children::MemoryChildren;

/// What one step of a scripted run answers: the Task's output or its error.
pub type Outcome = Result<Value, StatesError>;

/// Bounds of a scripted run, so that it ends whatever the definition does.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Events fed to the engine in all (stopped with `States.Timeout` past it).
    pub max_events: usize,
    /// Virtual seconds from the start (the definition's TimeoutSeconds, if smaller, wins).
    pub max_seconds: u64,
    /// Events fed between looks at the deadline and the event budget.
    pub round: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events: 1_000_000,
            max_seconds: 366 * 24 * 3600,
            round: 1000,
        }
    }
}

/// How a scripted run ended.
#[derive(Debug, Clone)]
pub struct ScriptedResult {
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<StatesError>,
    /// Every history event (when kept), in the order written.
    pub events: Vec<Event>,
    /// History events written (kept or not): the next event id less one.
    pub event_count: u64,
    /// Task steps published.
    pub steps: u64,
    /// Events the engine was fed.
    pub fed: u64,
    /// Whether [`Limits`] stopped the run (rather than the execution ending by itself or by
    /// its own TimeoutSeconds).
    pub stopped_by_limits: bool,
}

/// Runs `def` with `input` to its end. `answer` is called once per published step, with
/// the step; `keep_history` keeps the events in the result (off: they are dropped as they
/// are written, as embedded mode does without `--history`).
pub fn run(
    def: Arc<StateMachine>,
    input: Value,
    options: EngineOptions,
    limits: &Limits,
    keep_history: bool,
    answer: &mut dyn FnMut(&StepRequest) -> Outcome,
) -> ScriptedResult {
    let start: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000);
    let timeout = def.timeout_seconds;
    let info = ExecutionInfo::new("Scripted", "scripted", input, start);
    let mut engine = Engine::new(def, info);
    engine.options = options;
    // Events that are not kept are not built either.
    engine.options.history &= keep_history;
    let mut backend = MemoryBackend {
        keep_history,
        ..MemoryBackend::default()
    };
    let mut p = Processor::new(engine, 1, false, 0x5eed);
    let mut now = start;
    let deadline_secs = timeout.map_or(limits.max_seconds, |t| t.min(limits.max_seconds));
    let deadline = start + chrono::Duration::seconds(deadline_secs as i64);
    let mut stopped_by_limits = false;
    p.start(&mut backend, now);
    loop {
        // The memory backend never fails and never waits.
        let more = block_on(p.run_some(&mut backend, || now, limits.round.max(1))).unwrap_or(false);
        let fed = p.events_fed;
        if p.ended.is_some() {
            break;
        }
        if fed >= limits.max_events as u64 {
            stopped_by_limits = true;
            let e = StatesError::new(
                names::TIMEOUT,
                format!("The scripted run fed {fed} events, its limit"),
            );
            let _ = block_on(p.stop(&mut backend, e, true, || now));
            break;
        }
        if more {
            continue;
        }
        // Answer the steps published, in order.
        for step in std::mem::take(&mut backend.published) {
            let event = match answer(&step) {
                Ok(output) => CursorEvent::StepSucceeded {
                    seq: step.seq,
                    output,
                },
                Err(error) => CursorEvent::StepFailed {
                    seq: step.seq,
                    error,
                },
            };
            backend.steps += 1;
            p.push(step.cursor, event);
        }
        if p.has_queued() {
            continue;
        }
        // Nothing to do but wait: jump to the next timer, unless the deadline comes first.
        let Some((&(at, order), _)) = backend.timers.iter().next() else {
            let e = StatesError::runtime(
                "The execution stopped making progress: no task, timer or event is pending",
            );
            let _ = block_on(p.stop(&mut backend, e, false, || now));
            break;
        };
        if at > deadline {
            now = deadline;
            stopped_by_limits = timeout.is_none_or(|t| t > limits.max_seconds);
            let e = StatesError::new(names::TIMEOUT, "The execution exceeded its TimeoutSeconds.");
            let _ = block_on(p.stop(&mut backend, e, true, || now));
            break;
        }
        now = now.max(at);
        let (cursor, seq) = backend.timers.remove(&(at, order)).expect("just seen");
        p.push(cursor, CursorEvent::TimerFired { seq });
    }
    let (status, result) = p
        .ended
        .take()
        .expect("the loop ends with the execution's end");
    let (output, error) = match result {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    ScriptedResult {
        status,
        output,
        error,
        events: backend.events,
        event_count: p.next_event_id - 1,
        steps: backend.steps,
        fed: p.events_fed,
        stopped_by_limits,
    }
}

/// Polls a future that never waits on anything outside (the memory backend's) to its end.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Items, results and live children by parent; published steps and timers until the loop
/// takes them.
#[derive(Default)]
struct MemoryBackend {
    keep_history: bool,
    children: MemoryChildren,
    published: Vec<StepRequest>,
    /// By due time, then order of scheduling.
    timers: BTreeMap<(DateTime<Utc>, u64), (CursorId, u64)>,
    timer_order: u64,
    events: Vec<Event>,
    steps: u64,
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn load_cursor(&mut self, _: &str) -> Result<Option<Cursor>, BackendError> {
        Ok(None) // the processor's cache is the whole store
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
        Ok(self.children.items(map, from, to))
    }

    async fn store_result(
        &mut self,
        parent: &str,
        index: usize,
        output: Option<Value>,
    ) -> Result<bool, BackendError> {
        self.children.store_result(parent, index, output);
        Ok(true)
    }

    async fn results(&mut self, parent: &str, count: usize) -> Result<Vec<Value>, BackendError> {
        Ok(self.children.take_results(parent, count))
    }

    async fn drop_children(&mut self, parent: &str) -> Result<(), BackendError> {
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
        let mut live = self.children.live(parent);
        live.sort(); // deterministic abort order
        Ok(live)
    }

    fn publish(&mut self, step: StepRequest) {
        self.published.push(step);
    }

    fn schedule(&mut self, cursor: &str, seq: u64, at: DateTime<Utc>) {
        self.timer_order += 1;
        self.timers
            .insert((at, self.timer_order), (cursor.to_string(), seq));
    }

    fn record(&mut self, event: Event) {
        if self.keep_history {
            self.events.push(event);
        }
    }
}
