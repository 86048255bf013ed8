//! The harness of the engine's semantics tests: a few utility tasks (worker [`Task`]s, run by
//! the worker's task policy in both modes), a [`Mode`] seam (embedded mode here, the fleet
//! in [`fleet`], on the in-process fleet of [`in_process`]) and a runner for the data-driven fixtures under
//! `tests/fixtures/engine/<concept>/`.
//!
//! # Utility resources
//! - `arn:mapfleet:task:::echo`: returns its input.
//! - `arn:mapfleet:task:::sleep`: waits `ms` milliseconds (tokio time), returns its input.
//! - `arn:mapfleet:task:::fail`: fails with `error` (default `TestError`) and `cause`.
//! - `arn:mapfleet:task:::flaky`: per `key`, fails its first `failures` calls with `error`,
//!   then returns its input; or, given `errors`, fails call n with `errors[n]` when that is a
//!   string (a `null` or a call past the end succeeds).
//! - `arn:mapfleet:task:::count`: waits `ms` (default 1000) and records how many calls were
//!   in flight at once, for MaxConcurrency.
//! - `arn:mapfleet:task:::panic`: panics (a task that crashes).
//!
//! # Fixture format
//! `{comment, definition, input?, expected: {status, output?, error?, cause?, cause_contains?},
//! events?, history?, event_checks?, event_counts?, max_concurrency_seen?, calls?,
//! not_on_fleet?}`:
//! - `events`: the exact list of history event types.
//! - `history`: the exact history as `"id previousEventId Type"` lines (AWS's tree shape);
//!   `_` stands for any value (where mapfleet is known to differ from AWS: see the ignored
//!   tests in `tests/engine.rs`).
//! - `event_checks`: objects matched as subsets of the events (GetExecutionHistory shape)
//!   with the same `id`; JSON text in the events is compared as JSON.
//! - `event_counts`: how many events of some types (for concurrent runs, whose order may vary).
//! - `max_concurrency_seen`: the most `count` calls in flight at once.
//! - `calls`: how many task calls the executor received in all.
//! - `not_on_fleet`: why the fixture runs in embedded mode only (it pins an absolute
//!   wall-clock time).
//!
//! Every fixture runs as execution `engine-test` of state machine `EngineTests`, started at
//! `2024-01-01T00:00:00Z`; under paused tokio time, `$$.State.EnteredTime` after a 10 s Wait
//! is exactly `2024-01-01T00:00:10.000Z`.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod fleet;
pub mod in_process;
#[allow(unused_imports)] // the fault tests' broker proxy and Redis of their own
pub use mapfleet_testbed::{proxy, redis_server};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordinator::asl::error::StatesError;
use coordinator::asl::parse::parse_definition_value;
use coordinator::embedded::{EmbeddedOptions, run_execution};
use coordinator::engine::ExecutionInfo;
use mapfleet::tasks::RegistryExecutor;
use serde::Deserialize;
use serde_json::{Value, json};
use worker::task::{Registry, Task, TaskFailure};

/// A coordinator's map runs over the local buckets under `data` (as `mapfleet coordinator
/// --data-dir` has them).
pub fn local_buckets(data: &Path) -> coordinator::fleet::maprun::MapRunStore {
    coordinator::fleet::maprun::MapRunStore::new(Arc::new(mapfleet::buckets::StoreBuckets(
        Arc::new(worker::store::LocalStore::new(data.join("buckets"))),
    )))
}

pub const ECHO: &str = "arn:mapfleet:task:::echo";
pub const SLEEP: &str = "arn:mapfleet:task:::sleep";
pub const FAIL: &str = "arn:mapfleet:task:::fail";
pub const FLAKY: &str = "arn:mapfleet:task:::flaky";
pub const COUNT: &str = "arn:mapfleet:task:::count";
pub const PANIC: &str = "arn:mapfleet:task:::panic";
const SERVED: &[&str] = &[ECHO, SLEEP, FAIL, FLAKY, COUNT, PANIC];

/// The state machine and execution every fixture runs as, so expected outputs can quote
/// `$$.Execution.Id`, `$$.StateMachine.Name` and times.
pub const MACHINE_NAME: &str = "EngineTests";
pub const EXECUTION_NAME: &str = "engine-test";
pub const START_TIME: &str = "2024-01-01T00:00:00Z";

/// The utility tasks' shared state; one per execution, so its counters are per run.
#[derive(Default)]
pub struct TestExecutor {
    flaky_calls: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    calls: AtomicUsize,
}

impl TestExecutor {
    /// The most `count` calls that were in flight at the same time.
    pub fn max_concurrency_seen(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every call received, whatever the resource.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn millis(input: &Value, default: u64) -> Duration {
    Duration::from_millis(input.get("ms").and_then(Value::as_u64).unwrap_or(default))
}

fn text(input: &Value, field: &str, default: &str) -> String {
    match input.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => default.to_string(),
    }
}

/// One utility resource as a worker task, served from a fixture's [`TestExecutor`].
struct Served {
    name: &'static str,
    executor: Arc<TestExecutor>,
}

#[async_trait::async_trait]
impl Task for Served {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        let resource = worker::task::resource_arn(self.name);
        self.executor
            .call(&resource, input)
            .await
            .map_err(|e| TaskFailure::fatal(e.error, e.cause))
    }
}

impl TestExecutor {
    /// The utility tasks as a worker registry: what both modes run, through the worker's
    /// task policy (deadlines, panics, unknown resources named the same way).
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut registry = Registry::new();
        for resource in SERVED {
            let name = resource
                .strip_prefix(worker::task::RESOURCE_PREFIX)
                .expect("utility resources are mapfleet task ARNs");
            registry.register(Arc::new(Served {
                name,
                executor: self.clone(),
            }));
        }
        registry
    }

    async fn call(&self, resource: &str, input: Value) -> Result<Value, StatesError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match resource {
            ECHO => Ok(input),
            SLEEP => {
                tokio::time::sleep(millis(&input, 0)).await;
                Ok(input)
            }
            FAIL => Err(StatesError::new(
                text(&input, "error", "TestError"),
                text(&input, "cause", ""),
            )),
            FLAKY => {
                let key = text(&input, "key", "");
                let call = {
                    let mut counts = self.flaky_calls.lock().expect("flaky counters");
                    let n = counts.entry(key).or_default();
                    *n += 1;
                    *n - 1
                };
                let error = match input.get("errors").and_then(Value::as_array) {
                    Some(errors) => errors
                        .get(call)
                        .and_then(|e| e.as_str().map(str::to_string)),
                    None => {
                        let failures = input.get("failures").and_then(Value::as_u64).unwrap_or(0);
                        ((call as u64) < failures).then(|| text(&input, "error", "FlakyError"))
                    }
                };
                match error {
                    Some(error) => Err(StatesError::new(error, format!("flaky call {call}"))),
                    None => Ok(input),
                }
            }
            COUNT => {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(millis(&input, 1000)).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(input)
            }
            PANIC => panic!("the panic task panicked, as asked"),
            other => Err(StatesError::new(
                "States.Runtime",
                format!("TestExecutor does not serve {other}"),
            )),
        }
    }
}

/// How an execution ended, in the shape of DescribeExecution plus GetExecutionHistory, so
/// any mode can produce it.
#[derive(Debug, Clone)]
pub struct Ended {
    /// SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// GetExecutionHistory's `events`, in id order.
    pub events: Vec<Value>,
}

impl Ended {
    /// From an ended execution's status, output, error and history.
    pub fn of(
        status: coordinator::driver::Status,
        output: Option<Value>,
        error: Option<StatesError>,
        events: &[coordinator::engine::history::Event],
    ) -> Ended {
        Ended {
            status: status.as_str().to_string(),
            output,
            cause: error.as_ref().map(|e| e.cause.clone()),
            error: error.map(|e| e.error),
            events: events.iter().map(|e| e.to_aws_json()).collect(),
        }
    }

    pub fn event_types(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// `"id previousEventId Type"` per event, the shape of the `history` fixture field.
    pub fn history_lines(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["id"],
                    e["previousEventId"],
                    e["type"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }
}

/// Runs one execution of a definition; the seam between the fixtures and what runs them.
#[async_trait::async_trait]
pub trait Mode: Sync {
    fn name(&self) -> &'static str;

    /// How far a timestamp may be from the fixture's and still match: none under paused
    /// time; a little on the fleet, whose Waits and retries take real time (its mode
    /// shifts the times it reports as if the execution had started at [`START_TIME`]).
    fn clock_slack(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Runs `definition` on `input` with the utility resources served by `executor`. An
    /// `Err` is a definition the mode rejected before running it.
    async fn run(
        &self,
        definition: &Value,
        input: Value,
        executor: Arc<TestExecutor>,
    ) -> Result<Ended, String>;
}

/// Embedded mode: `coordinator::embedded::run_execution` in this process.
pub struct Embedded;

#[async_trait::async_trait]
impl Mode for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn run(
        &self,
        definition: &Value,
        input: Value,
        executor: Arc<TestExecutor>,
    ) -> Result<Ended, String> {
        let def = parse_definition_value(definition).map_err(|e| e.to_string())?;
        let start = START_TIME.parse().expect("START_TIME is RFC 3339");
        let info = ExecutionInfo::new(MACHINE_NAME, EXECUTION_NAME, input, start);
        let tasks = Arc::new(RegistryExecutor::new(executor.registry()));
        let result = run_execution(Arc::new(def), info, tasks, EmbeddedOptions::default()).await;
        Ok(Ended::of(
            result.status,
            result.output,
            result.error,
            &result.events,
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub comment: String,
    pub definition: Value,
    #[serde(default = "empty_object")]
    pub input: Value,
    pub expected: Expected,
    pub events: Option<Vec<String>>,
    pub history: Option<Vec<String>>,
    pub event_checks: Option<Vec<Value>>,
    pub event_counts: Option<std::collections::BTreeMap<String, usize>>,
    pub max_concurrency_seen: Option<usize>,
    pub calls: Option<usize>,
    /// Why the fixture cannot run on the fleet (it pins wall-clock times the fleet cannot
    /// reproduce); it still runs in embedded mode.
    pub not_on_fleet: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub cause_contains: Option<String>,
}

fn empty_object() -> Value {
    json!({})
}

pub fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/engine")
}

/// The concept directories under the fixtures root.
pub fn concepts() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_root())
        .expect("fixtures root")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn load(path: &Path) -> Result<Fixture, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("not a fixture: {e}"))
}

fn show(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Whether `expected` is a subset of `got`: objects by their expected members, arrays and
/// scalars exactly; a string in `got` holding JSON text is compared as that JSON.
pub fn subset(expected: &Value, got: &Value, slack: Duration) -> bool {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => e
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| subset(v, gv, slack))),
        (Value::Array(e), Value::Array(g)) => {
            e.len() == g.len() && e.iter().zip(g).all(|(a, b)| subset(a, b, slack))
        }
        (e, Value::String(s)) if !e.is_string() => {
            serde_json::from_str::<Value>(s).is_ok_and(|g| subset(e, &g, slack))
        }
        (Value::String(e), Value::String(g)) => e == g || close_times(e, g, slack),
        (e, g) => e == g,
    }
}

/// Whether two JSON values are equal, timestamps within `slack` of each other counting as
/// equal.
pub fn same(expected: &Value, got: &Value, slack: Duration) -> bool {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            e.len() == g.len()
                && e.iter()
                    .all(|(k, v)| g.get(k).is_some_and(|gv| same(v, gv, slack)))
        }
        (Value::Array(e), Value::Array(g)) => {
            e.len() == g.len() && e.iter().zip(g).all(|(a, b)| same(a, b, slack))
        }
        (Value::String(e), Value::String(g)) => e == g || close_times(e, g, slack),
        (e, g) => e == g,
    }
}

/// Both RFC 3339 timestamps, at most `slack` apart (never with no slack).
fn close_times(a: &str, b: &str, slack: Duration) -> bool {
    if slack.is_zero() {
        return false;
    }
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => (a - b).abs().to_std().is_ok_and(|d| d <= slack),
        _ => false,
    }
}

/// `"id prev Type"` against an event's line; a `_` in the expected line matches anything.
fn history_line_matches(expected: &str, got: &str) -> bool {
    let (e, g): (Vec<&str>, Vec<&str>) = (expected.split(' ').collect(), got.split(' ').collect());
    e.len() == g.len() && e.iter().zip(&g).all(|(a, b)| *a == "_" || a == b)
}

/// Compares an outcome with a fixture's expectations; one line per difference.
pub fn compare(f: &Fixture, got: &Ended, executor: &TestExecutor, slack: Duration) -> Vec<String> {
    let mut diffs = Vec::new();
    let e = &f.expected;
    if e.status != got.status {
        diffs.push(format!("status: expected {}, got {}", e.status, got.status));
    }
    if let Some(output) = &e.output
        && !got.output.as_ref().is_some_and(|g| same(output, g, slack))
    {
        diffs.push(format!(
            "output: expected {}, got {}",
            show(output),
            show(&got.output)
        ));
    }
    if e.error.is_some() && e.error != got.error {
        diffs.push(format!(
            "error: expected {:?}, got {:?}",
            e.error, got.error
        ));
    }
    if e.cause.is_some() && e.cause != got.cause {
        diffs.push(format!(
            "cause: expected {:?}, got {:?}",
            e.cause, got.cause
        ));
    }
    if let Some(part) = &e.cause_contains
        && !got.cause.as_deref().unwrap_or("").contains(part.as_str())
    {
        diffs.push(format!(
            "cause: expected it to contain {part:?}, got {:?}",
            got.cause
        ));
    }
    if let Some(types) = &f.events {
        let got_types = got.event_types();
        if *types != got_types {
            diffs.push(format!(
                "events:\n    expected {}\n    got      {}",
                show(types),
                show(&got_types)
            ));
        }
    }
    if let Some(lines) = &f.history {
        let got_lines = got.history_lines();
        if lines.len() != got_lines.len()
            || lines
                .iter()
                .zip(&got_lines)
                .any(|(e, g)| !history_line_matches(e, g))
        {
            diffs.push(format!(
                "history:\n    expected {}\n    got      {}",
                show(lines),
                show(&got_lines)
            ));
        }
    }
    for check in f.event_checks.iter().flatten() {
        let event = got.events.iter().find(|ev| ev.get("id") == check.get("id"));
        match event {
            Some(ev) if subset(check, ev, slack) => {}
            Some(ev) => diffs.push(format!(
                "event {}: expected {}, got {}",
                check["id"],
                show(check),
                show(ev)
            )),
            None => diffs.push(format!("event {}: no such event", check["id"])),
        }
    }
    for (event_type, n) in f.event_counts.iter().flatten() {
        let seen = got
            .events
            .iter()
            .filter(|ev| ev["type"] == event_type.as_str())
            .count();
        if seen != *n {
            diffs.push(format!(
                "events of type {event_type}: expected {n}, got {seen}"
            ));
        }
    }
    if let Some(n) = f.max_concurrency_seen
        && n != executor.max_concurrency_seen()
    {
        diffs.push(format!(
            "max_concurrency_seen: expected {n}, got {}",
            executor.max_concurrency_seen()
        ));
    }
    if let Some(n) = f.calls
        && n != executor.calls()
    {
        diffs.push(format!("calls: expected {n}, got {}", executor.calls()));
    }
    diffs
}

/// How a fixture that did not fail went.
pub enum Ran {
    Passed,
    /// Not run on this mode, for the fixture's stated reason.
    Skipped(String),
}

/// Runs one fixture file on `mode`; `Err` holds the differences, ready to print.
pub async fn run_fixture<M: Mode>(mode: &M, path: &Path) -> Result<Ran, String> {
    let f = load(path)?;
    if mode.name() == "fleet"
        && let Some(why) = &f.not_on_fleet
    {
        return Ok(Ran::Skipped(why.clone()));
    }
    let executor = Arc::new(TestExecutor::default());
    let got = mode
        .run(&f.definition, f.input.clone(), executor.clone())
        .await?;
    let diffs = compare(&f, &got, &executor, mode.clock_slack());
    if diffs.is_empty() {
        return Ok(Ran::Passed);
    }
    Err(format!(
        "{}\n  {}\n  (got status {}, output {}, error {:?}, cause {:?}, events {})",
        f.comment,
        diffs.join("\n  "),
        got.status,
        show(&got.output),
        got.error,
        got.cause,
        show(&got.event_types())
    ))
}

/// Runs every fixture of one concept directory and panics naming each one that fails.
pub async fn run_concept<M: Mode>(mode: &M, concept: &str) {
    let dir = fixtures_root().join(concept);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixture directory {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    let mut failures = Vec::new();
    let mut skipped = 0;
    for path in &paths {
        let name = format!(
            "{concept}/{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        match run_fixture(mode, path).await {
            Ok(Ran::Passed) => {}
            Ok(Ran::Skipped(why)) => {
                skipped += 1;
                println!("skipped on {}: {name}: {why}", mode.name());
            }
            Err(why) => failures.push(format!("FAIL {name}: {why}")),
        }
    }
    println!(
        "engine fixtures [{}] {concept}: {} passed, {} failed, {skipped} not for this mode",
        mode.name(),
        paths.len() - failures.len() - skipped,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}
