//! What the console shows of a run, read off its history: which states each cursor went
//! through and how each ended (the graph's colours, an iteration's path), and the Map
//! iterations with their status and times (the Map run page).
//!
//! Pure functions over the engine's [`Event`]s, which carry the cursor that wrote them
//! (`""` for the root, `/3` for item 3 of a top-level Map, `/3/1` for branch 1 of a Parallel
//! inside it), so nothing here walks `previousEventId` chains.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use coordinator::engine::history::{Event, EventType};
use serde::Serialize;
use serde_json::Value;

/// How one visit of a state ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    Running,
    Succeeded,
    /// It failed and a `Catch` moved on to another state.
    Caught,
    Failed,
    Aborted,
}

/// One visit of a state by one cursor.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    pub cursor: String,
    pub status: StepStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Failed attempts that a `Retry` tried again.
    pub retries: u32,
    pub entered: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exited: Option<DateTime<Utc>>,
}

fn failure(t: &EventType) -> bool {
    use EventType::*;
    matches!(
        t,
        TaskFailed
            | TaskTimedOut
            | ActivityFailed
            | ActivityTimedOut
            | ActivityScheduleFailed
            | LambdaFunctionFailed
            | LambdaFunctionTimedOut
            | MapStateFailed
            | ParallelStateFailed
            | MapRunFailed
            | EvaluationFailed
            | ExecutionFailed
            | ExecutionTimedOut
    )
}

fn attempt_succeeded(t: &EventType) -> bool {
    matches!(
        t,
        EventType::TaskSucceeded
            | EventType::ActivitySucceeded
            | EventType::LambdaFunctionSucceeded
    )
}

fn aborted(t: &EventType) -> bool {
    use EventType::*;
    matches!(
        t,
        ExecutionAborted
            | MapStateAborted
            | ParallelStateAborted
            | WaitStateAborted
            | TaskStateAborted
            | MapIterationAborted
    )
}

fn text(details: &Value, field: &str) -> Option<String> {
    details
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Every state visit of the events, in the order they were entered. A visit still open at
/// the end is `Failed` when it saw an error, `Aborted` when it was aborted, else `Running`.
pub fn steps<'e>(events: impl IntoIterator<Item = &'e Event>) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    // The open visit of each cursor, as an index into `steps`.
    let mut open: HashMap<String, usize> = HashMap::new();
    let close = |s: &mut Step, at: DateTime<Utc>| {
        s.status = if s.error.is_some() {
            StepStatus::Caught
        } else {
            StepStatus::Succeeded
        };
        s.exited = Some(at);
    };
    for e in events {
        match e.event_type {
            EventType::StateEntered(_) => {
                if let Some(i) = open.remove(&e.cursor) {
                    // The previous state never said it exited: a Catch moved on from it.
                    close(&mut steps[i], e.timestamp);
                }
                open.insert(e.cursor.clone(), steps.len());
                steps.push(Step {
                    name: text(&e.details, "name").unwrap_or_default(),
                    cursor: e.cursor.clone(),
                    status: StepStatus::Running,
                    error: None,
                    cause: None,
                    retries: 0,
                    entered: e.timestamp,
                    exited: None,
                });
            }
            EventType::StateExited(_) => {
                if let Some(i) = open.remove(&e.cursor) {
                    close(&mut steps[i], e.timestamp);
                }
            }
            ref t if failure(t) => {
                if let Some(&i) = open.get(&e.cursor) {
                    let s = &mut steps[i];
                    if s.error.is_some() {
                        s.retries += 1;
                    }
                    s.error = text(&e.details, "error").or(Some("States.Failed".into()));
                    s.cause = text(&e.details, "cause");
                }
            }
            ref t if attempt_succeeded(t) => {
                if let Some(&i) = open.get(&e.cursor) {
                    let s = &mut steps[i];
                    if s.error.take().is_some() {
                        s.retries += 1;
                        s.cause = None;
                    }
                }
            }
            ref t if aborted(t) => {
                if let Some(&i) = open.get(&e.cursor) {
                    steps[i].status = StepStatus::Aborted;
                }
            }
            _ => {}
        }
    }
    for i in open.into_values() {
        let s = &mut steps[i];
        if s.error.is_some() {
            s.status = StepStatus::Failed;
        }
    }
    steps
}

/// How the visits of one state ended, counted (a state inside a Map has one per iteration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateTally {
    pub running: u64,
    pub succeeded: u64,
    pub caught: u64,
    pub failed: u64,
    pub aborted: u64,
}

impl StateTally {
    fn add(&mut self, s: StepStatus) {
        match s {
            StepStatus::Running => self.running += 1,
            StepStatus::Succeeded => self.succeeded += 1,
            StepStatus::Caught => self.caught += 1,
            StepStatus::Failed => self.failed += 1,
            StepStatus::Aborted => self.aborted += 1,
        }
    }
}

/// The tallies of every state name (state names are unique in a state machine).
pub fn tally(steps: &[Step]) -> BTreeMap<String, StateTally> {
    let mut out: BTreeMap<String, StateTally> = BTreeMap::new();
    for s in steps {
        out.entry(s.name.clone()).or_default().add(s.status);
    }
    out
}

/// An iteration's status, as ListExecutions names a Map Run's child executions'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IterationStatus {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

impl IterationStatus {
    pub fn parse(s: &str) -> Option<IterationStatus> {
        Some(match s {
            "RUNNING" => IterationStatus::Running,
            "SUCCEEDED" => IterationStatus::Succeeded,
            "FAILED" => IterationStatus::Failed,
            "ABORTED" => IterationStatus::Aborted,
            _ => return None,
        })
    }
}

/// One Map iteration.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Iteration {
    pub index: u64,
    pub cursor: String,
    pub status: IterationStatus,
    pub start: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<DateTime<Utc>>,
}

/// One run of a Map state: its cursor's parent and the Map state's name.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapRun {
    /// The cursor of the Map state (whose children the iterations are).
    pub parent: String,
    pub name: String,
    pub iterations: Vec<Iteration>,
}

impl MapRun {
    /// The iterations by status.
    pub fn counts(&self) -> BTreeMap<IterationStatus, u64> {
        let mut out = BTreeMap::new();
        for i in &self.iterations {
            *out.entry(i.status).or_insert(0) += 1;
        }
        out
    }
}

/// The parent of a cursor id (`/3/1` → `/3`, `/3` → ``).
pub fn parent_of(cursor: &str) -> &str {
    cursor.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// Every Map run of the events, in the order they started; iterations sorted by index.
pub fn map_runs<'e>(events: impl IntoIterator<Item = &'e Event>) -> Vec<MapRun> {
    let mut runs: Vec<MapRun> = Vec::new();
    let mut run_of: HashMap<(String, String), usize> = HashMap::new();
    // Iteration cursor → (run, position in its iterations).
    let mut at: HashMap<String, (usize, usize)> = HashMap::new();
    for e in events {
        match e.event_type {
            EventType::MapIterationStarted => {
                let name = text(&e.details, "name").unwrap_or_default();
                let index = e.details.get("index").and_then(Value::as_u64).unwrap_or(0);
                let parent = parent_of(&e.cursor).to_string();
                let r = *run_of
                    .entry((parent.clone(), name.clone()))
                    .or_insert_with(|| {
                        runs.push(MapRun {
                            parent,
                            name,
                            iterations: Vec::new(),
                        });
                        runs.len() - 1
                    });
                at.insert(e.cursor.clone(), (r, runs[r].iterations.len()));
                runs[r].iterations.push(Iteration {
                    index,
                    cursor: e.cursor.clone(),
                    status: IterationStatus::Running,
                    start: e.timestamp,
                    stop: None,
                });
            }
            EventType::MapIterationSucceeded
            | EventType::MapIterationFailed
            | EventType::MapIterationAborted => {
                if let Some(&(r, i)) = at.get(&e.cursor) {
                    let it = &mut runs[r].iterations[i];
                    it.status = match e.event_type {
                        EventType::MapIterationSucceeded => IterationStatus::Succeeded,
                        EventType::MapIterationFailed => IterationStatus::Failed,
                        _ => IterationStatus::Aborted,
                    };
                    it.stop = Some(e.timestamp);
                }
            }
            _ => {}
        }
    }
    for r in &mut runs {
        r.iterations.sort_by_key(|i| i.index);
    }
    runs
}

/// The events of one cursor and its descendants (an iteration's, with its Parallel
/// branches' and nested Maps').
pub fn under<'e>(events: &'e [Event], cursor: &'e str) -> impl Iterator<Item = &'e Event> + 'e {
    events.iter().filter(move |e| {
        e.cursor == cursor
            || (e.cursor.starts_with(cursor) && e.cursor[cursor.len()..].starts_with('/'))
    })
}

/// The events of the iterations named by `cursors` (children of `parent`), in one pass: an
/// event belongs to the iteration whose cursor is its own or its ancestor's under `parent`.
pub fn by_iteration<'e>(
    events: &'e [Event],
    parent: &str,
    cursors: &[&str],
) -> HashMap<String, Vec<&'e Event>> {
    let mut out: HashMap<String, Vec<&'e Event>> = cursors
        .iter()
        .map(|c| (c.to_string(), Vec::new()))
        .collect();
    let head = format!("{parent}/");
    for e in events {
        let Some(rest) = e.cursor.strip_prefix(&head) else {
            continue;
        };
        let own = rest.split('/').next().unwrap_or(rest);
        let key = &e.cursor[..head.len() + own.len()];
        if let Some(v) = out.get_mut(key) {
            v.push(e);
        }
    }
    out
}

/// What an iteration came to, as the workshop reads it: the last error one of its states
/// raised (caught or not), with its cause; `None` when none failed.
pub fn outcome(steps: &[Step]) -> Option<(&str, Option<&str>)> {
    steps
        .iter()
        .rev()
        .find_map(|s| Some((s.error.as_deref()?, s.cause.as_deref())))
}

/// An iteration's input (its first state's) and output (its last state's), read off the
/// cursor's own StateEntered / StateExited events.
pub fn io_of(events: &[Event], cursor: &str) -> (Option<Value>, Option<Value>) {
    let mut input = None;
    let mut output = None;
    for e in events.iter().filter(|e| e.cursor == cursor) {
        match e.event_type {
            EventType::StateEntered(_) if input.is_none() => {
                input = e.details.get("input").cloned();
            }
            EventType::StateExited(_) => output = e.details.get("output").cloned(),
            _ => {}
        }
    }
    (input, output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coordinator::engine::history::StateType;
    use serde_json::json;

    struct H {
        events: Vec<Event>,
    }

    impl H {
        fn add(&mut self, cursor: &str, t: EventType, details: Value) -> &mut Self {
            let id = self.events.len() as u64 + 1;
            self.events.push(Event {
                id,
                previous_event_id: id - 1,
                event_type: t,
                timestamp: DateTime::from_timestamp(1_700_000_000 + id as i64, 0).unwrap(),
                details,
                cursor: cursor.into(),
            });
            self
        }
    }

    /// The workshop's duplicate-face iteration: CheckFaceDuplicate fails with
    /// FaceAlreadyExistsError, its Catch goes on to PhotoDoesNotMeetRequirement.
    fn duplicate_face() -> Vec<Event> {
        use EventType::*;
        let mut h = H { events: Vec::new() };
        h.add("", StateEntered(StateType::Map), json!({"name": "Photos"}))
            .add("", MapStateStarted, json!({"length": 2}))
            .add("/0", MapIterationStarted, json!({"index": 0, "name": "Photos"}))
            .add("/1", MapIterationStarted, json!({"index": 1, "name": "Photos"}))
            .add("/1", StateEntered(StateType::Task), json!({"name": "FaceDetection", "input": {"userId": "user_e"}}))
            .add("/0", StateEntered(StateType::Task), json!({"name": "FaceDetection", "input": {"userId": "user_a"}}))
            .add("/1", TaskFailed, json!({"error": "States.Timeout", "cause": "slow"}))
            .add("/1", TaskSucceeded, json!({}))
            .add("/1", StateExited(StateType::Task), json!({"name": "FaceDetection", "output": {}}))
            .add("/1", StateEntered(StateType::Task), json!({"name": "CheckFaceDuplicate"}))
            .add("/1", TaskFailed, json!({"error": "FaceAlreadyExistsError", "cause": "Face in the picture is already in the system."}))
            .add("/1", StateEntered(StateType::Task), json!({"name": "PhotoDoesNotMeetRequirement"}))
            .add("/1", StateExited(StateType::Task), json!({"name": "PhotoDoesNotMeetRequirement", "output": {"done": 1}}))
            .add("/1", MapIterationSucceeded, json!({"index": 1, "name": "Photos"}))
            .add("/0", TaskFailed, json!({"error": "Boom"}))
            .add("/0", MapIterationFailed, json!({"index": 0, "name": "Photos"}));
        h.events
    }

    #[test]
    fn a_caught_failure_and_a_retried_one_are_told_apart() {
        let events = duplicate_face();
        let path: Vec<(String, StepStatus, Option<String>, u32)> = steps(under(&events, "/1"))
            .into_iter()
            .map(|s| (s.name, s.status, s.error, s.retries))
            .collect();
        assert_eq!(
            path,
            vec![
                ("FaceDetection".into(), StepStatus::Succeeded, None, 1),
                (
                    "CheckFaceDuplicate".into(),
                    StepStatus::Caught,
                    Some("FaceAlreadyExistsError".into()),
                    0
                ),
                (
                    "PhotoDoesNotMeetRequirement".into(),
                    StepStatus::Succeeded,
                    None,
                    0
                ),
            ]
        );
        let all = steps(&events);
        let t = tally(&all);
        assert_eq!(t["FaceDetection"].succeeded, 1);
        assert_eq!(t["FaceDetection"].failed, 1, "iteration 0 failed in it");
        assert_eq!(t["Photos"].running, 1);
    }

    #[test]
    fn map_runs_list_iterations_by_index_with_status_and_times() {
        let events = duplicate_face();
        let runs = map_runs(&events);
        assert_eq!(runs.len(), 1);
        let r = &runs[0];
        assert_eq!((r.parent.as_str(), r.name.as_str()), ("", "Photos"));
        let got: Vec<(u64, IterationStatus)> =
            r.iterations.iter().map(|i| (i.index, i.status)).collect();
        assert_eq!(
            got,
            vec![
                (0, IterationStatus::Failed),
                (1, IterationStatus::Succeeded)
            ]
        );
        assert!(r.iterations[1].stop.unwrap() > r.iterations[1].start);
        assert_eq!(r.counts()[&IterationStatus::Failed], 1);
        let (input, output) = io_of(&events, "/1");
        assert_eq!(input.unwrap()["userId"], "user_e");
        assert_eq!(output.unwrap()["done"], 1);
    }

    #[test]
    fn iterations_get_their_own_events_and_outcome() {
        let events = duplicate_face();
        let groups = by_iteration(&events, "", &["/0", "/1"]);
        assert_eq!(groups["/1"].len(), 10);
        let path = steps(groups["/1"].iter().copied());
        assert_eq!(
            outcome(&path),
            Some((
                "FaceAlreadyExistsError",
                Some("Face in the picture is already in the system.")
            ))
        );
        let clean = steps(under(&events, "/1").take(5));
        assert_eq!(outcome(&clean), None);
    }

    #[test]
    fn under_takes_a_cursor_and_its_descendants_only() {
        let mut h = H { events: Vec::new() };
        for c in ["/1", "/1/0", "/10", "/1/1/2", "/2"] {
            h.add(c, EventType::TaskStarted, json!({}));
        }
        let got: Vec<&str> = under(&h.events, "/1").map(|e| e.cursor.as_str()).collect();
        assert_eq!(got, vec!["/1", "/1/0", "/1/1/2"]);
        assert_eq!(parent_of("/3/1"), "/3");
        assert_eq!(parent_of("/3"), "");
    }
}
