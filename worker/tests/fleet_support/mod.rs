//! Helpers shared by the `fleet_*` integration tests: a fleet on a prefix of its own, made of
//! the real coordinator (`Coordinator::serve`, in the test process, as `mapfleet-coordinator`
//! runs it) and real `mapfleet-worker` processes. A test submits an execution of a Map
//! definition with `FleetClient`, waits for it, and checks the ordered results and the
//! history. The prefix's queues and keys are deleted at the end.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use coordinator::embedded::ExecutionResult;
use coordinator::engine::ExecutionInfo;
use coordinator::engine::history::Event;
use coordinator::fleet::client::FleetClient;
use coordinator::fleet::service::{Coordinator, ServiceOptions};
use serde_json::{Value, json};
use shared::config::FleetConfig;
use shared::supervise::Shutdown;
use shared::testkit::{WorkerProcess, amqp_url, redis_url, unique_prefix};
use shared::topology::Topology;
use tokio::sync::{Mutex, MutexGuard, oneshot};
use tokio::task::JoinHandle;
use worker::task::resource_arn;

pub mod spawned;

pub const WORKER_BIN: &str = env!("CARGO_BIN_EXE_mapfleet-worker");

/// Bound on every fleet test: a hung broker fails the test instead of hanging CI.
pub const TEST_LIMIT: Duration = Duration::from_secs(240);

/// Bound on one execution.
pub const RUN_LIMIT: Duration = Duration::from_secs(150);

/// One fleet at a time per test binary: each starts several processes (on a 2-core machine
/// side by side they only measure its overload), and the coordinator's metrics, which the
/// tests read, are the process's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A coordinator in this process and the worker processes a test starts, on one prefix.
pub struct Fleet {
    pub topo: Topology,
    pub client: FleetClient,
    stop: Option<oneshot::Sender<()>>,
    service: Option<
        JoinHandle<Result<(), shared::supervise::Error<coordinator::fleet::service::Error>>>,
    >,
    _turn: MutexGuard<'static, ()>,
}

impl Fleet {
    /// A fleet with the coordinator's default options.
    pub async fn start(tag: &str, delivery_limit: u32) -> Fleet {
        Fleet::start_with(tag, delivery_limit, ServiceOptions::default()).await
    }

    pub async fn start_with(tag: &str, delivery_limit: u32, opts: ServiceOptions) -> Fleet {
        let turn = ONE_AT_A_TIME.lock().await;
        let topo = Topology::new(unique_prefix(tag), delivery_limit);
        // Declared once up front rather than by every process at once (see
        // `shared::testkit::declare_prefix`).
        shared::testkit::declare(&amqp_url(), &topo)
            .await
            .expect("RabbitMQ is running");
        let mut fleet = FleetConfig::defaults();
        fleet.amqp_url = amqp_url();
        fleet.redis_url = redis_url();
        fleet.prefix = topo.prefix().to_string();
        fleet.delivery_limit = delivery_limit;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = Shutdown::on(async {
            let _ = stopped.await;
        });
        let service =
            tokio::spawn(async move { Coordinator::serve(&fleet, opts, &shutdown).await });
        let client = FleetClient::connect(&redis_url(), topo.prefix())
            .await
            .expect("Redis is running");
        Fleet {
            topo,
            client,
            stop: Some(stop),
            service: Some(service),
            _turn: turn,
        }
    }

    pub fn worker(&self, extra: &[&str]) -> WorkerProcess {
        worker_for(&self.topo, extra)
    }

    /// Submits an execution of `definition` on `input`; returns its ARN.
    pub async fn submit(&self, definition: &Value, input: Value) -> String {
        let text = definition.to_string();
        let def = coordinator::asl::parse::parse_definition(&text).expect("a valid definition");
        let info = ExecutionInfo::new("fleet", &unique_prefix("run"), input, chrono::Utc::now());
        self.client
            .submit(&text, &def, &info)
            .await
            .expect("submit");
        info.execution_arn
    }

    /// Waits up to [`RUN_LIMIT`] for the execution to end; returns it and its history.
    pub async fn wait(&self, arn: &str) -> (ExecutionResult, Vec<Event>) {
        let ended = tokio::time::timeout(RUN_LIMIT, self.client.wait(arn, None)).await;
        let Ok(ended) = ended else {
            let progress = self.client.progress(arn).await;
            let service_ended = self.service.as_ref().is_none_or(|s| s.is_finished());
            panic!(
                "still RUNNING after {RUN_LIMIT:?} (items started, succeeded, failed: {progress:?}; \
                 coordinator stopped: {service_ended})"
            );
        };
        let ended = ended.expect("the execution can be read");
        let events = self.client.history(arn).await.expect("history");
        (ended, events)
    }

    /// Map progress: (items started, succeeded, failed).
    pub async fn progress(&self, arn: &str) -> (u64, u64, u64) {
        self.client.progress(arn).await.expect("progress")
    }

    /// Stops the coordinator and deletes the prefix's queues and keys. Call it after the
    /// test's workers are gone.
    pub async fn finish(mut self) {
        self.stop_coordinator().await;
        shared::testkit::teardown(&amqp_url(), &redis_url(), self.topo.prefix())
            .await
            .expect("teardown");
    }

    async fn stop_coordinator(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(service) = self.service.take() {
            service
                .await
                .expect("the coordinator did not panic")
                .expect("the coordinator stopped cleanly");
        }
    }
}

impl Drop for Fleet {
    /// A test that failed before [`Fleet::finish`] still leaves nothing behind.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(service) = self.service.take() {
            let prefix = self.topo.prefix().to_string();
            // Off this runtime (teardown_prefix blocks on one of its own), and only once the
            // coordinator closed its connection, or a while: an open one would recover its
            // channels by declaring the queues again.
            let _ = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(15);
                while !service.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                service.abort();
                shared::testkit::teardown_prefix(&prefix);
            })
            .join();
        }
    }
}

pub fn worker_for(topo: &Topology, extra: &[&str]) -> WorkerProcess {
    WorkerProcess::spawn(
        Path::new(WORKER_BIN),
        &amqp_url(),
        &redis_url(),
        topo,
        extra,
    )
    .expect("spawn mapfleet-worker")
}

/// A Map over `$.items` (MaxConcurrency 0) whose iterations each run one Task on the
/// `resource` task with `task` merged into the Task state (e.g. `TimeoutSeconds`). A task's
/// error is caught: the iteration's result is then the error output, `{"Error", "Cause"}`.
pub fn map_of(resource: &str, task: Value) -> Value {
    let mut run = json!({
        "Type": "Task",
        "Resource": resource_arn(resource),
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
        "End": true
    });
    if let (Some(run), Value::Object(extra)) = (run.as_object_mut(), task) {
        run.extend(extra);
    }
    json!({
        "StartAt": "Map",
        "States": {
            "Map": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 0,
                "ItemProcessor": {
                    "StartAt": "Run",
                    "States": {"Run": run, "Caught": {"Type": "Pass", "End": true}}
                },
                "End": true
            }
        }
    })
}

/// `n` distinct items, for `echo`.
pub fn echo_items(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({ "index": i, "name": format!("item-{i}"), "tags": [i % 7, "x"] }))
        .collect()
}

/// The Map's ordered results of a SUCCEEDED execution.
pub fn results(ended: &ExecutionResult) -> Vec<Value> {
    assert_eq!(
        ended.status.as_str(),
        "SUCCEEDED",
        "the execution ended with {:?}",
        ended.error
    );
    match ended.output.clone() {
        Some(Value::Array(results)) => results,
        other => panic!("the Map's output is not an array: {other:?}"),
    }
}

/// The history of a Map over `n` items: event ids unique and contiguous from 1, and every
/// iteration started exactly once and succeeded exactly once.
pub fn assert_each_iteration_once(events: &[Event], n: usize) {
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert!(ids == expected, "event ids are not 1..={}", events.len());
    if let Err(e) = coordinator::engine::history::check_exactly_once(events, n) {
        panic!("{e}");
    }
}

/// Outcomes the coordinator in this process dropped as duplicates so far (redelivered or
/// stale). Tests take turns, so the difference over a test is that test's.
pub fn duplicates() -> u64 {
    shared::metrics::get().outcome_duplicates.get()
}

/// A free port on loopback for a worker's `--metrics-addr`: bind, read it, release it.
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// A worker's `/metrics` text.
pub async fn scrape(addr: &str) -> String {
    let addr = addr.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).expect("metrics endpoint is up");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    })
    .await
    .unwrap()
}

/// The value of `metric` (its full name with labels, as printed) in `/metrics` text; 0 if
/// absent.
pub fn metric(text: &str, metric: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
