//! Cursors, the events a driver feeds them and the actions they ask for.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::history::Event;
use crate::asl::definition::{GraphId, StateId};
use crate::asl::error::StatesError;

/// Names a cursor within its execution: `""` for the root, then `/<index>` per level, e.g.
/// `/3` for item 3 of a top-level Map, `/3/1` for branch 1 of a Parallel inside it.
pub type CursorId = String;

/// The id of the child at `index` under `parent`.
pub fn child_id(parent: &str, index: usize) -> CursorId {
    // Written by hand rather than with `format!`: one id per Map item.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = index;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = std::str::from_utf8(&digits[at..]).expect("ASCII digits");
    let mut id = String::with_capacity(parent.len() + 1 + digits.len());
    id.push_str(parent);
    id.push('/');
    id.push_str(digits);
    id
}

/// Where a cursor stands within its graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cursor {
    pub id: CursorId,
    /// The Map iteration or Parallel branch this cursor is, within its parent.
    pub parent: Option<ParentLink>,
    pub graph: GraphId,
    pub state: StateId,
    /// The raw input of the current state.
    pub input: Value,
    /// Workflow variables visible to this cursor (`Assign`).
    pub vars: Map<String, Value>,
    /// Bumped whenever the cursor starts waiting on something (a step, a timer), so a late
    /// outcome or timer of an earlier wait is recognised and dropped.
    pub seq: u64,
    /// Retry counters of the current state, one per retrier.
    pub retries: Vec<u32>,
    pub entered_at: DateTime<Utc>,
    pub phase: Phase,
    /// The id of this cursor's latest history event (the `previousEventId` of its next one).
    pub last_event: u64,
    /// The id of the current state's `...StateEntered` event (quoted in runtime errors).
    pub entered_event: u64,
    /// Writes no history: a Distributed Map's child runs as a child execution, whose events
    /// are not part of the parent's history.
    #[serde(default)]
    pub quiet: bool,
    /// History events this cursor wrote (counted for a quiet cursor too): the history cap
    /// ([`super::run::EngineOptions::max_history_events`]) is checked against it.
    #[serde(default)]
    pub events: u64,
    /// Set on the root cursor by a redrive ([`super::Engine::redrive`]): the state it
    /// resumed at skips the children that succeeded before (see [`Cursor::redriven_entry`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive: Option<RedriveMark>,
}

/// What a redrive left on the root cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveMark {
    /// The execution's redrive count (1 for the first redrive).
    pub count: u32,
    /// The id of the `ExecutionRedriven` event.
    pub resume_event: u64,
    /// The `...StateEntered` event id of the failed state's run that the redrive resumes:
    /// a Distributed Map's run keeps the map run ARN derived from it.
    pub entered_event: u64,
}

impl Cursor {
    /// The redrive this cursor's current state entry resumes, if it is the entry right after
    /// the `ExecutionRedriven` event (a later state, or the same state entered again, runs
    /// as usual).
    pub fn redriven_entry(&self) -> Option<&RedriveMark> {
        self.redrive
            .as_ref()
            .filter(|m| self.entered_event == m.resume_event + 1)
    }
}

/// How a child cursor hangs under its parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParentLink {
    pub id: CursorId,
    pub index: usize,
    pub kind: ChildKind,
    /// The parent's Map or Parallel state name (MapIteration events carry it); empty when
    /// the engine writes no history ([`super::run::EngineOptions::history`]).
    pub state_name: String,
}

/// What a cursor is doing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Phase {
    /// About to enter `state` with `input`.
    Ready,
    /// A Task step is out; waiting for its outcome (or its timeout timer).
    Task(TaskWait),
    /// A Wait state waiting for its timer; `output` is what it will pass on.
    Wait { output: Value },
    /// Waiting out the backoff before a retry.
    Backoff(RetryAgain),
    /// A Map or Parallel waiting for its children.
    Children(Box<Children>),
    /// Waiting for the driver to hand back the ordered results of all children.
    Collecting(Box<Children>),
    /// A child failed the state: waiting for the others to be stopped (`ChildrenAborted`).
    Aborting(Box<Children>),
    /// Finished; nothing more will happen to this cursor.
    Done,
}

/// What to do when a retry's backoff timer fires.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RetryAgain {
    /// Publish the task step again. InputPath and Parameters are evaluated anew (so
    /// `$$.State.RetryCount` counts); `effective_input` is the failed attempt's.
    Task { effective_input: Value },
    /// Run the Map or Parallel state again from its start.
    Rerun,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskWait {
    pub resource: String,
    pub effective_input: Value,
    pub timeout: Option<u64>,
    pub heartbeat: Option<u64>,
    /// An activity's deadlines, kept as times because a heartbeat moves one: a timer that
    /// fires before the earlier of them is set again for it rather than timing the task
    /// out. `timeout_at` runs from the schedule (a task waiting for a worker times out too),
    /// `heartbeat_at` from the start (GetActivityTask) and from every heartbeat since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// A worker took the activity task (ActivityStarted was written).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub started: bool,
    /// A `.waitForTaskToken` Task: its integration's result only submits it (TaskSubmitted);
    /// the state waits for SendTaskSuccess/Failure with its token ([`CursorEvent::TaskAnswered`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub callback: bool,
    /// The callback Task's integration returned (TaskSubmitted was written).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub submitted: bool,
}

impl TaskWait {
    /// The resource the step runs and its input ([`super::token::step_of`]): a
    /// `.waitForTaskToken` Task's integration, `lambda:invoke`'s function as a mapfleet task.
    pub fn step(&self) -> (String, Value) {
        let (resource, input, _) = super::token::step_of(&self.resource, &self.effective_input);
        (resource, input)
    }
}

/// The token of a `.waitForTaskToken` step, for the driver that keeps what answers check.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    /// The token as `$$.Task.Token` shows it.
    pub token: String,
    /// When it was handed out: its `TimeoutSeconds` and first `HeartbeatSeconds` run from then.
    pub issued: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildKind {
    Map,
    Parallel,
}

/// The bookkeeping of a running Map or Parallel state. Constant-size: the items and the
/// children's results are kept by the driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Children {
    pub kind: ChildKind,
    /// The effective input of the state: what `$` means in a Map's ItemSelector, or what
    /// every Parallel branch receives. Null when it is the cursor's input
    /// (`effective_is_input`): read it with [`Children::effective`].
    pub effective_input: Value,
    /// The effective input is the state's input (InputPath `$`), kept once, as the cursor's
    /// input (the state does not change its input while it runs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub effective_is_input: bool,
    pub total: usize,
    /// Children with an index below this have been started.
    pub next: usize,
    pub running: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// 0: no limit.
    pub max_concurrency: usize,
    pub tolerated_count: Option<u64>,
    pub tolerated_percentage: Option<f64>,
    /// Set when the state failed and is waiting for running children to be aborted.
    pub failure: Option<StatesError>,
    /// The id of the `MapStateStarted` / `ParallelStateStarted` event.
    pub started_event: u64,
    /// The stored items are already the children's inputs (ItemSelector and ItemBatcher
    /// were applied when the Map started), rather than raw items.
    pub preselected: bool,
    /// A Distributed Map: children run as child executions (no events in this history) and
    /// the run is reported as a Map Run.
    #[serde(default)]
    pub distributed: bool,
    /// The latest MapIterationSucceeded/Failed event: MapStateSucceeded follows it.
    #[serde(default)]
    pub last_iteration_event: u64,
    /// A map run over an `ItemReader`: the randomness its plan was resolved with, so a
    /// coordinator that did not open the run can resolve the same plan again
    /// ([`crate::engine::Engine::map_run_plan`]).
    #[serde(default)]
    pub run_seed: u64,
}

impl Children {
    /// The state's effective input; `input` is its cursor's input.
    pub fn effective<'a>(&'a self, input: &'a Value) -> &'a Value {
        if self.effective_is_input {
            input
        } else {
            &self.effective_input
        }
    }
}

/// Something that happened to a cursor.
#[derive(Debug, Clone)]
pub enum CursorEvent {
    /// Enter the current state (a fresh cursor, or after a transition).
    Enter,
    /// The step published with this `seq` succeeded.
    StepSucceeded { seq: u64, output: Value },
    /// The step published with this `seq` failed.
    StepFailed { seq: u64, error: StatesError },
    /// The timer scheduled with this `seq` fired.
    TimerFired { seq: u64 },
    /// A worker took the activity task published with this `seq` (GetActivityTask).
    StepStarted { seq: u64, worker: String },
    /// The worker of the activity task published with this `seq` sent a heartbeat (or the
    /// holder of a `.waitForTaskToken` step's token did).
    StepHeartbeat { seq: u64 },
    /// SendTaskSuccess (`Ok`) or SendTaskFailure (`Err`) with the token of the
    /// `.waitForTaskToken` step published with this `seq`.
    TaskAnswered {
        seq: u64,
        result: Result<Value, StatesError>,
    },
    /// Child `index` finished (its output, if any, went to the driver's result store).
    /// `last_event` is the child's last history event, which the parent's next event follows.
    /// `finished_event` is its MapIterationSucceeded/Failed event (0 for a Parallel branch).
    ChildFinished {
        index: usize,
        result: Result<(), StatesError>,
        last_event: u64,
        finished_event: u64,
    },
    /// The driver's answer to [`Action::CollectResults`]: every child's output, in order.
    Results { results: Vec<Value> },
    /// The parent (or the user) stops this cursor.
    Abort,
    /// The driver stopped every running child, as [`Action::AbortChildren`] asked.
    ChildrenAborted,
    /// The driver's answer to [`Action::OpenMapRun`]: how many children the run has
    /// (items, or batches of them), or why its items could not be read.
    MapRunOpened { result: Result<usize, StatesError> },
    /// The driver's answer to [`Action::CollectResults`] for a map run whose ResultWriter
    /// took the results: the Map's result (the run's ARN and the manifest's place), or why
    /// the results could not be written.
    MapRunClosed { result: Result<Value, StatesError> },
    /// A user changed a running Map's limits (UpdateMapRun): each given value replaces the
    /// state's own. More room starts more children at once; a tolerance now exceeded fails
    /// the Map as a failing child would.
    UpdateLimits(LimitsUpdate),
}

/// UpdateMapRun's new limits; `None` keeps the current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitsUpdate {
    /// 0: no limit.
    pub max_concurrency: Option<u64>,
    pub tolerated_count: Option<u64>,
    pub tolerated_percentage: Option<f64>,
}

/// Something the driver must do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Append to the execution history.
    History(Event),
    /// Run a Task: publish a step for a worker.
    PublishStep {
        cursor: CursorId,
        seq: u64,
        /// 1 for the first try, then 2, 3, ... for retries.
        attempt: u32,
        resource: String,
        input: Value,
        timeout: Option<Duration>,
        heartbeat: Option<Duration>,
        /// A `.waitForTaskToken` step's token.
        callback: Option<Callback>,
    },
    /// Feed `TimerFired { seq }` to the cursor at `at`.
    ScheduleTimer {
        cursor: CursorId,
        seq: u64,
        at: DateTime<Utc>,
    },
    /// Keep a Map's items; `StartChildren` refers to them by index.
    StoreItems { cursor: CursorId, items: Vec<Value> },
    /// Open a Distributed Map's run over its ItemReader (and ResultWriter), then feed
    /// `MapRunOpened` to `cursor`. `StartChildren` then takes the children's inputs from the
    /// run, in order, and `CollectResults` closes it.
    OpenMapRun {
        cursor: CursorId,
        plan: Box<crate::maprun::MapRunPlan>,
    },
    /// Create children `from..to` of `cursor` (via [`super::Engine::spawn_child`]) and enter them.
    StartChildren {
        cursor: CursorId,
        from: usize,
        to: usize,
    },
    /// Stop every running child of `cursor` (feed them `Abort`), dropping their outcomes and
    /// results, then feed `ChildrenAborted` to `cursor`.
    AbortChildren { cursor: CursorId },
    /// Hand `Results` with the outputs of children `0..count` back to `cursor`.
    CollectResults { cursor: CursorId, count: usize },
    /// The cursor walked [`super::run::FLOW_STEPS_PER_APPLY`] flow states (Pass, Choice, ...)
    /// in one `apply` without waiting on anything: it stays `Ready` and the driver feeds it
    /// `Enter` again after the events already queued. This is the yield point that keeps a
    /// looping definition from holding the driver (and its timeout checks) forever.
    Continue { cursor: CursorId },
    /// The whole execution fails with `error` (the history cap was reached): the driver
    /// stops every running cursor, as for a user's stop, and ends the execution FAILED.
    FailExecution { error: StatesError },
    /// The cursor is done. For the root cursor this ends the execution; for a child, the
    /// driver keeps `Ok` output as result `index` and tells the parent `ChildFinished`.
    Finished {
        cursor: CursorId,
        result: Result<Value, StatesError>,
        last_event: u64,
        finished_event: u64,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn child_ids() {
        for (parent, index) in [
            ("", 0),
            ("", 7),
            ("/3", 10),
            ("/3/1", 12345),
            ("", usize::MAX),
        ] {
            assert_eq!(super::child_id(parent, index), format!("{parent}/{index}"));
        }
    }
}
