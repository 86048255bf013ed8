//! Driving the pure engine: feed events to cursors, carry out the actions they return.
//!
//! One [`Processor`] logic serves both modes. What differs is behind the [`Backend`] seam:
//! where Map items, iteration results and live children are kept, how a step reaches a
//! worker, where timers and history go. Embedded mode keeps all of it in memory
//! (`coordinator::embedded`); the fleet keeps it in Redis and RabbitMQ (`coordinator::fleet`).

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::asl::error::StatesError;
use crate::engine::Engine;
use crate::engine::cursor::{Action, Cursor, CursorEvent, CursorId, Phase};
use crate::engine::history::Event;
use crate::engine::run::{Ending, Tx};
use crate::entropy::Entropy;
use crate::ids::{IdMap, IdSet};

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Aborted => "ABORTED",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "RUNNING" => Status::Running,
            "SUCCEEDED" => Status::Succeeded,
            "FAILED" => Status::Failed,
            "TIMED_OUT" => Status::TimedOut,
            "ABORTED" => Status::Aborted,
            _ => return None,
        })
    }
}

/// A Task step to hand to a worker.
#[derive(Debug, Clone)]
pub struct StepRequest {
    pub cursor: CursorId,
    pub seq: u64,
    pub attempt: u32,
    pub resource: String,
    pub input: Value,
    pub timeout: Option<Duration>,
    pub heartbeat: Option<Duration>,
    /// A `.waitForTaskToken` step's token: a backend that checks answers keeps its secret.
    pub callback: Option<crate::engine::cursor::Callback>,
}

/// Errors of a backend (a store or broker that failed). The processor stops at the first
/// one; nothing it did is committed, so the same events can be processed again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// Resolves a map run's plan again ([`Engine::map_run_plan`]) when a backend needs it.
pub type PlanSource<'a> =
    dyn Fn() -> Option<Result<crate::maprun::MapRunPlan, StatesError>> + Send + Sync + 'a;

/// Where a processor keeps what is not in the cursors, and how its effects leave it.
#[async_trait::async_trait]
pub trait Backend: Send {
    /// A cursor that is not in the processor's cache yet (None: it does not exist).
    async fn load_cursor(&mut self, id: &str) -> Result<Option<Cursor>, BackendError>;
    /// Keeps a Map's items (its children's raw inputs), addressed by index.
    async fn store_items(&mut self, map: &str, items: Vec<Value>) -> Result<(), BackendError>;
    /// Items `from..to` of a Map.
    async fn items(
        &mut self,
        map: &str,
        from: usize,
        to: usize,
    ) -> Result<Vec<Value>, BackendError>;
    /// Keeps child `index`'s output. Returns false when it was already stored (a replay).
    async fn store_result(
        &mut self,
        parent: &str,
        index: usize,
        output: Option<Value>,
    ) -> Result<bool, BackendError>;
    /// The outputs of children `0..count`, in order (null where a child failed).
    async fn results(&mut self, parent: &str, count: usize) -> Result<Vec<Value>, BackendError>;
    /// Forgets a parent's items, results and live children.
    async fn drop_children(&mut self, parent: &str) -> Result<(), BackendError>;
    /// Notes children as running under `parent`.
    async fn add_live(&mut self, parent: &str, children: &[CursorId]) -> Result<(), BackendError>;
    /// Notes a child as no longer running.
    async fn remove_live(&mut self, parent: &str, child: &str) -> Result<(), BackendError>;
    /// The running children of `parent`.
    async fn live(&mut self, parent: &str) -> Result<Vec<CursorId>, BackendError>;
    /// Hands a step to a worker (may be buffered until [`Backend::commit`]).
    fn publish(&mut self, step: StepRequest);
    /// Arranges for `TimerFired { seq }` to reach `cursor` at `at`.
    fn schedule(&mut self, cursor: &str, seq: u64, at: DateTime<Utc>);
    /// Appends a history event.
    fn record(&mut self, event: Event);

    /// Opens a Distributed Map's run over its ItemReader ([`crate::maprun::OpenRun`] does
    /// the work over an object store): `Ok(n)`, its child count, or the Map's error
    /// (`States.ItemReaderFailed`, `States.ResultWriterFailed`). From then on
    /// [`Backend::items`] hands out the run's children's inputs. A backend without an object
    /// store fails the Map, never hangs it.
    async fn open_map_run(
        &mut self,
        map: &str,
        plan: crate::maprun::MapRunPlan,
    ) -> Result<Result<usize, StatesError>, BackendError> {
        let _ = (map, plan);
        Ok(Err(StatesError::new(
            crate::asl::error::names::ITEM_READER_FAILED,
            "A Distributed Map with an ItemReader runs in embedded mode only for now (mapfleet run without --redis)",
        )))
    }

    /// Inputs of children `from..to` of a Distributed Map, which may be a map run over an
    /// ItemReader. `plan` resolves that run's plan again (`None`: the Map has no such run),
    /// for a backend that keeps its runs outside this process and must reopen a run's
    /// reader (the fleet, after another coordinator opened it); it is called only then.
    async fn map_run_items(
        &mut self,
        map: &str,
        from: usize,
        to: usize,
        plan: &PlanSource<'_>,
    ) -> Result<Vec<Value>, BackendError> {
        let _ = plan;
        self.items(map, from, to).await
    }

    /// A child of a map run ended (before [`Backend::store_result`]): its record goes to the
    /// run's result files.
    async fn child_ended(
        &mut self,
        parent: &str,
        index: usize,
        result: &Result<Value, StatesError>,
        at: DateTime<Utc>,
    ) -> Result<(), BackendError> {
        let _ = (parent, index, result, at);
        Ok(())
    }

    /// Ends `map`'s run, if it has one: the result files and manifest are written. `Some`:
    /// the Map's result (or why writing failed) when a ResultWriter took the results;
    /// `None`: no run, or its results are the backend's as for an inline Map.
    async fn close_map_run(
        &mut self,
        map: &str,
    ) -> Result<Option<Result<Value, StatesError>>, BackendError> {
        let _ = map;
        Ok(None)
    }

    /// The root's Map or Parallel failed (or the execution was stopped) while it ran
    /// children: keep which of them succeeded, and their outputs, for a redrive (called
    /// before [`Backend::drop_children`]), noting the state entry (`...StateEntered` id)
    /// they belong to. A backend that cannot redrive keeps nothing.
    async fn keep_for_redrive(&mut self, parent: &str, entered: u64) -> Result<(), BackendError> {
        let _ = (parent, entered);
        Ok(())
    }

    /// For a redriven root's Map or Parallel: which of children `from..to` of the state
    /// entry `entered` succeeded before the redrive (`Some(output)`, `Null` when a
    /// ResultWriter took it) and are not run again. A kept child counts as succeeded again
    /// in its map run. `None` for each: run it.
    async fn kept(
        &mut self,
        parent: &str,
        entered: u64,
        from: usize,
        to: usize,
    ) -> Result<Vec<Option<Value>>, BackendError> {
        let _ = (parent, entered);
        Ok(vec![None; to - from])
    }
}

/// Feeds events to cursors until none is left, carrying out the actions they return.
pub struct Processor {
    pub engine: Engine,
    /// Boxed: a cursor moves in and out of the map for every event it takes.
    cursors: IdMap<Box<Cursor>>,
    /// Whether to track changed and removed cursors for [`Processor::take_changes`] (a
    /// backend that persists cursors needs it; the in-memory one does not).
    track_changes: bool,
    /// Cursors changed since the last [`Processor::take_changes`].
    dirty: IdSet,
    /// Cursors finished or aborted since the last [`Processor::take_changes`].
    removed: IdSet,
    queue: VecDeque<(CursorId, CursorEvent)>,
    pub next_event_id: u64,
    /// State transitions made (each `...StateEntered`).
    pub transitions: u64,
    /// Events fed to cursors so far (by [`Processor::run`] and [`Processor::run_some`]).
    pub events_fed: u64,
    /// Set when the execution ended.
    pub ended: Option<(Status, Result<Value, StatesError>)>,
    /// The root cursor as it stood when the execution ended other than SUCCEEDED: where a
    /// redrive resumes ([`Processor::redrive`]).
    pub ended_root: Option<Cursor>,
    /// Where every [`Tx`]'s randomness comes from.
    entropy: Entropy,
}

/// The cursors a batch of processing changed and removed.
pub struct Changes {
    pub changed: Vec<Cursor>,
    pub removed: Vec<CursorId>,
}

impl Processor {
    /// `seed` seeds every random draw of this processor (retry jitter, `States.UUID`): pass
    /// fresh randomness in production, a constant in tests that want to replay.
    pub fn new(engine: Engine, next_event_id: u64, track_changes: bool, seed: u64) -> Processor {
        Processor {
            entropy: Entropy::new(seed),
            engine,
            track_changes,
            cursors: IdMap::default(),
            dirty: IdSet::default(),
            removed: IdSet::default(),
            queue: VecDeque::new(),
            next_event_id,
            transitions: 0,
            events_fed: 0,
            ended: None,
            ended_root: None,
        }
    }

    /// Creates the root cursor (writing `ExecutionStarted`) and queues its `Enter`.
    pub fn start(&mut self, backend: &mut dyn Backend, now: DateTime<Utc>) {
        let mut next = self.next_event_id;
        let mut tx =
            Tx::new(now, self.entropy.next_f64(), &mut next).with_options(&self.engine.options);
        let root = self.engine.start(&mut tx);
        let actions = tx.actions;
        self.next_event_id = next;
        self.put(Box::new(root));
        for a in actions {
            if let Action::History(e) = a {
                backend.record(e);
            }
        }
        self.queue.push_back((String::new(), CursorEvent::Enter));
    }

    /// Resumes an ended execution from `root` (the [`Processor::ended_root`] its end left),
    /// writing `ExecutionRedriven` with `count`, and queues its `Enter`.
    pub fn redrive(
        &mut self,
        backend: &mut dyn Backend,
        mut root: Cursor,
        count: u32,
        now: DateTime<Utc>,
    ) {
        let mut next = self.next_event_id;
        let mut tx =
            Tx::new(now, self.entropy.next_f64(), &mut next).with_options(&self.engine.options);
        self.engine.redrive(&mut root, count, &mut tx);
        let actions = tx.actions;
        self.next_event_id = next;
        self.ended = None;
        self.ended_root = None;
        self.put(Box::new(root));
        for a in actions {
            if let Action::History(e) = a {
                backend.record(e);
            }
        }
        self.queue.push_back((String::new(), CursorEvent::Enter));
    }

    /// The root cursor as it stands between events (`None` once the execution ended, or
    /// while a backend that persists cursors has it out of the cache).
    pub fn root(&self) -> Option<&Cursor> {
        self.cursors.get("").map(|c| &**c)
    }

    /// Whether a cursor in the processor's cache waits for a `.waitForTaskToken` answer
    /// (embedded mode, whose cache holds every cursor, keeps running for it).
    pub fn awaits_callback(&self) -> bool {
        self.cursors
            .values()
            .any(|c| matches!(&c.phase, Phase::Task(w) if w.callback))
    }

    /// A cursor in the processor's cache, as it stands between events.
    pub fn cursor_in_cache(&self, id: &str) -> Option<&Cursor> {
        self.cursors.get(id).map(|c| &**c)
    }

    /// Whether events are waiting to be processed.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Queues an event for a cursor.
    pub fn push(&mut self, cursor: CursorId, event: CursorEvent) {
        self.queue.push_back((cursor, event));
    }

    fn put(&mut self, cursor: Box<Cursor>) {
        self.put_as(cursor.id.clone(), cursor);
    }

    /// [`Processor::put`] with a copy of the cursor's id the caller already has.
    fn put_as(&mut self, id: CursorId, cursor: Box<Cursor>) {
        if self.track_changes {
            self.dirty.insert(id.clone());
            self.removed.remove(&id);
        }
        self.cursors.insert(id, cursor);
    }

    fn remove(&mut self, id: &str) -> Option<Box<Cursor>> {
        if self.track_changes {
            self.dirty.remove(id);
            self.removed.insert(id.to_string());
        }
        self.cursors.remove(id)
    }

    async fn cursor(
        &mut self,
        backend: &mut dyn Backend,
        id: &str,
    ) -> Result<Option<Box<Cursor>>, BackendError> {
        if let Some(c) = self.cursors.remove(id) {
            return Ok(Some(c));
        }
        if self.removed.contains(id) {
            return Ok(None);
        }
        Ok(backend.load_cursor(id).await?.map(Box::new))
    }

    /// What changed since the last call (for a backend that persists cursors). The changed
    /// cursors are moved out, not copied (a waiting Map's input can be large): the
    /// processor forgets them, so call this once processing is over, before the backend
    /// persists them.
    pub fn take_changes(&mut self) -> Changes {
        let changed = self
            .dirty
            .drain()
            .filter_map(|id| self.cursors.remove(&id).map(|c| *c))
            .collect();
        let removed = self.removed.drain().collect();
        Changes { changed, removed }
    }

    /// Processes queued events, and the events they cause, until none is left or the
    /// execution ended. Ends: a looping definition reaches the history cap
    /// ([`crate::engine::run::EngineOptions::max_history_events`]); with the cap off, use
    /// [`Processor::run_some`] and check for timeouts and stops between calls.
    pub async fn run(
        &mut self,
        backend: &mut dyn Backend,
        now: impl Fn() -> DateTime<Utc>,
    ) -> Result<(), BackendError> {
        self.run_some(backend, now, usize::MAX).await.map(|_| ())
    }

    /// [`Processor::run`], for at most `budget` events: returns whether events are still
    /// queued, so that a driver can check its clock (TimeoutSeconds) and its other inputs
    /// between calls however long a chain of flow states runs.
    pub async fn run_some(
        &mut self,
        backend: &mut dyn Backend,
        now: impl Fn() -> DateTime<Utc>,
        budget: usize,
    ) -> Result<bool, BackendError> {
        let mut done = 0usize;
        while let Some((id, event)) = self.queue.pop_front() {
            if self.ended.is_some() {
                self.queue.clear();
                break;
            }
            if done == budget {
                self.queue.push_front((id, event));
                break;
            }
            done += 1;
            self.events_fed += 1;
            // The cursor is changed where it lies in the cache (two hash lookups and a key
            // copy fewer per event than taking it out and putting it back).
            if !self.cursors.contains_key(&id) {
                let Some(cursor) = self.cursor(backend, &id).await? else {
                    continue; // finished or aborted: late events are dropped
                };
                self.cursors.insert(id.clone(), cursor);
            }
            let Some(cursor) = self.cursors.get_mut(&id) else {
                continue;
            };
            let mut next = self.next_event_id;
            let mut tx = Tx::new(now(), self.entropy.next_f64(), &mut next)
                .with_options(&self.engine.options);
            self.engine.apply(cursor, event, &mut tx);
            self.transitions += tx.transitions;
            let actions = tx.actions;
            self.next_event_id = next;
            if self.track_changes {
                self.removed.remove(&id);
                self.dirty.insert(id);
            }
            self.carry_out(backend, actions, &now).await?;
        }
        if self.ended.is_some() {
            self.queue.clear();
        }
        Ok(!self.queue.is_empty())
    }

    async fn carry_out(
        &mut self,
        backend: &mut dyn Backend,
        actions: Vec<Action>,
        now: &impl Fn() -> DateTime<Utc>,
    ) -> Result<(), BackendError> {
        for action in actions {
            match action {
                Action::History(e) => backend.record(e),
                Action::PublishStep {
                    cursor,
                    seq,
                    attempt,
                    resource,
                    input,
                    timeout,
                    heartbeat,
                    callback,
                } => {
                    backend.publish(StepRequest {
                        cursor,
                        seq,
                        attempt,
                        resource,
                        input,
                        timeout,
                        heartbeat,
                        callback,
                    });
                }
                Action::ScheduleTimer { cursor, seq, at } => backend.schedule(&cursor, seq, at),
                Action::StoreItems { cursor, items } => backend.store_items(&cursor, items).await?,
                Action::StartChildren { cursor, from, to } => {
                    self.start_children(backend, &cursor, from, to, now).await?
                }
                Action::AbortChildren { cursor } => {
                    self.abort_children(backend, &cursor, now).await?
                }
                Action::OpenMapRun { cursor, plan } => {
                    let result = backend.open_map_run(&cursor, *plan).await?;
                    self.queue
                        .push_back((cursor, CursorEvent::MapRunOpened { result }));
                }
                Action::CollectResults { cursor, count } => {
                    let event = match backend.close_map_run(&cursor).await? {
                        Some(result) => CursorEvent::MapRunClosed { result },
                        None => CursorEvent::Results {
                            results: backend.results(&cursor, count).await?,
                        },
                    };
                    backend.drop_children(&cursor).await?;
                    self.queue.push_back((cursor, event));
                }
                Action::Continue { cursor } => {
                    self.queue.push_back((cursor, CursorEvent::Enter));
                }
                Action::FailExecution { error } => {
                    self.end(backend, error, Ending::Failed, now).await?;
                    // Nothing after the execution's end.
                    return Ok(());
                }
                Action::Finished {
                    cursor,
                    result,
                    last_event,
                    finished_event,
                } => {
                    self.finished(backend, cursor, result, last_event, finished_event, now())
                        .await?
                }
            }
        }
        Ok(())
    }

    async fn start_children(
        &mut self,
        backend: &mut dyn Backend,
        parent_id: &str,
        from: usize,
        to: usize,
        now: &impl Fn() -> DateTime<Utc>,
    ) -> Result<(), BackendError> {
        // The parent stays in the cache: its children are spawned from a borrow of it.
        if !self.cursors.contains_key(parent_id) {
            let Some(parent) = self.cursor(backend, parent_id).await? else {
                return Ok(());
            };
            self.put(parent);
        }
        let Some(parent) = self.cursors.get(parent_id) else {
            return Ok(());
        };
        let is_map = matches!(&parent.phase, Phase::Children(ch) if ch.kind == crate::engine::ChildKind::Map);
        let distributed = matches!(&parent.phase, Phase::Children(ch) if ch.distributed);
        let items = if is_map && distributed {
            let engine = &self.engine;
            backend
                .map_run_items(parent_id, from, to, &move || engine.map_run_plan(parent))
                .await?
        } else if is_map {
            backend.items(parent_id, from, to).await?
        } else {
            Vec::new()
        };
        // A redrive runs again only the children that did not succeed before.
        let mut kept = match parent.redriven_entry() {
            Some(m) => backend.kept(parent_id, m.entered_event, from, to).await?,
            None => Vec::new(),
        };
        let mut next = self.next_event_id;
        let mut tx =
            Tx::new(now(), self.entropy.next_f64(), &mut next).with_options(&self.engine.options);
        let mut spawned = Vec::with_capacity(to - from);
        let mut done = Vec::new();
        let mut items = items.into_iter();
        for (offset, index) in (from..to).enumerate() {
            let item = items.next();
            if let Some(output) = kept.get_mut(offset).and_then(Option::take) {
                done.push((index, output));
                continue;
            }
            spawned.push(Box::new(
                self.engine.spawn_child(parent, index, item, &mut tx),
            ));
        }
        // A kept child finishes at once with its earlier output.
        for (index, output) in done {
            if backend.store_result(parent_id, index, Some(output)).await? {
                self.queue.push_back((
                    parent_id.to_string(),
                    CursorEvent::ChildFinished {
                        index,
                        result: Ok(()),
                        last_event: parent.last_event,
                        finished_event: 0,
                    },
                ));
            }
        }
        let actions = tx.actions;
        self.next_event_id = next;
        if self.track_changes {
            self.removed.remove(parent_id);
            self.dirty.insert(parent_id.to_string());
        }
        let ids: Vec<CursorId> = spawned.iter().map(|c| c.id.clone()).collect();
        backend.add_live(parent_id, &ids).await?;
        for (child, id) in spawned.into_iter().zip(ids) {
            if matches!(child.phase, Phase::Ready) {
                self.queue.push_back((id.clone(), CursorEvent::Enter));
            }
            self.put_as(id, child);
        }
        if actions.is_empty() {
            return Ok(());
        }
        Box::pin(self.carry_out(backend, actions, now)).await
    }

    async fn abort_children(
        &mut self,
        backend: &mut dyn Backend,
        parent_id: &str,
        now: &impl Fn() -> DateTime<Utc>,
    ) -> Result<(), BackendError> {
        let children = backend.live(parent_id).await?;
        for id in children {
            let Some(mut child) = self.cursor(backend, &id).await? else {
                continue;
            };
            let mut next = self.next_event_id;
            let mut tx = Tx::new(now(), self.entropy.next_f64(), &mut next)
                .with_options(&self.engine.options);
            self.engine.apply(&mut child, CursorEvent::Abort, &mut tx);
            let actions = tx.actions;
            self.next_event_id = next;
            self.remove(&id);
            // The child's events first, then its own children's (which get later ids), so
            // the history is written in id order.
            let mut grandchildren = Vec::new();
            for action in actions {
                match action {
                    Action::History(e) => backend.record(e),
                    Action::AbortChildren { cursor } => grandchildren.push(cursor),
                    _ => {}
                }
            }
            for cursor in grandchildren {
                Box::pin(self.abort_children(backend, &cursor, now)).await?
            }
        }
        // A map run's files are written with what finished (its state fails all the same).
        backend.close_map_run(parent_id).await?;
        if parent_id.is_empty()
            && let Some(root) = self.cursor(backend, parent_id).await?
        {
            let entered = root.entered_event;
            self.cursors.insert(root.id.clone(), root);
            backend.keep_for_redrive(parent_id, entered).await?;
        }
        backend.drop_children(parent_id).await?;
        self.queue
            .push_back((parent_id.to_string(), CursorEvent::ChildrenAborted));
        Ok(())
    }

    async fn finished(
        &mut self,
        backend: &mut dyn Backend,
        id: CursorId,
        result: Result<Value, StatesError>,
        last_event: u64,
        finished_event: u64,
        now: DateTime<Utc>,
    ) -> Result<(), BackendError> {
        let Some(cursor) = self.remove(&id) else {
            return Ok(());
        };
        let cursor = *cursor;
        match cursor.parent {
            None => {
                let status = if result.is_ok() {
                    Status::Succeeded
                } else {
                    self.ended_root = Some(cursor);
                    Status::Failed
                };
                self.ended = Some((status, result));
            }
            Some(link) => {
                backend
                    .child_ended(&link.id, link.index, &result, now)
                    .await?;
                let (output, result) = match result {
                    Ok(v) => (Some(v), Ok(())),
                    Err(e) => (None, Err(e)),
                };
                backend.remove_live(&link.id, &id).await?;
                if backend.store_result(&link.id, link.index, output).await? {
                    self.queue.push_back((
                        link.id,
                        CursorEvent::ChildFinished {
                            index: link.index,
                            result,
                            last_event,
                            finished_event,
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    /// Ends the execution from outside: a user's stop, or the execution timeout.
    pub async fn stop(
        &mut self,
        backend: &mut dyn Backend,
        error: StatesError,
        timed_out: bool,
        now: impl Fn() -> DateTime<Utc>,
    ) -> Result<(), BackendError> {
        let ending = if timed_out {
            Ending::TimedOut
        } else {
            Ending::Aborted
        };
        self.end(backend, error, ending, &now).await
    }

    /// Ends the execution from outside its states: stops every running cursor, then writes
    /// the execution's end.
    async fn end(
        &mut self,
        backend: &mut dyn Backend,
        error: StatesError,
        ending: Ending,
        now: &impl Fn() -> DateTime<Utc>,
    ) -> Result<(), BackendError> {
        if self.ended.is_some() {
            return Ok(());
        }
        // Running children stop first, so their events come before the execution's end.
        Box::pin(self.abort_children(backend, "", now)).await?;
        if let Some(mut root) = self.cursor(backend, "").await? {
            let mut next = self.next_event_id;
            let mut tx = Tx::new(now(), self.entropy.next_f64(), &mut next)
                .with_options(&self.engine.options);
            let at_end = root.clone();
            self.engine
                .stop_execution(&mut root, error.clone(), ending, &mut tx);
            let actions = tx.actions;
            self.next_event_id = next;
            self.remove("");
            self.ended_root = Some(*at_end);
            for action in actions {
                if let Action::History(e) = action {
                    backend.record(e);
                }
            }
        }
        self.queue.clear();
        let status = match ending {
            Ending::TimedOut => Status::TimedOut,
            Ending::Aborted => Status::Aborted,
            Ending::Failed => Status::Failed,
        };
        self.ended = Some((status, Err(error)));
        Ok(())
    }
}
