//! Redrive on the fleet (`mapfleet redrive`), against the real RabbitMQ and Redis on
//! 127.0.0.1: a Distributed Map over its tolerated failures, an inline Map and a plain Task
//! fail while a switch of the test's worker task is on; the switch goes off, the execution
//! is redriven and succeeds, and the task's own count of runs shows that only the children
//! (or the state) that had not succeeded ran again.

mod common;
#[path = "common/distributed.rs"]
mod distributed;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use coordinator::fleet::service::ServiceOptions;
use serde_json::{Value, json};
use worker::task::{Task, TaskFailure};
use worker::{RegistryOptions, default_registry};

use common::in_process::{InProcessFleet, Services, config};

/// `arn:mapfleet:task:::switch`: fails an input with `"fail": true` while `failing` is on,
/// returns its input otherwise; counts its runs.
struct Switch {
    failing: Arc<AtomicBool>,
    runs: Arc<AtomicUsize>,
}

#[async_trait]
impl Task for Switch {
    fn name(&self) -> &'static str {
        "switch"
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if input["fail"] == true && self.failing.load(Ordering::SeqCst) {
            return Err(TaskFailure::fatal("ItemFailed", "failing item"));
        }
        Ok(input)
    }
}

/// A fleet of one coordinator (map runs over the local buckets under `data`) and one worker
/// serving the built-in tasks and `switch`.
struct Rig {
    running: InProcessFleet,
    failing: Arc<AtomicBool>,
    runs: Arc<AtomicUsize>,
    prefix: String,
    amqp: String,
    redis: String,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn start(tag: &'static str) -> Rig {
        common::in_process::log_to_file("mapfleet-redrive-fleet");
        let dir = tempfile::tempdir().unwrap();
        let prefix = shared::testkit::unique_prefix(tag);
        let (amqp, redis) = (shared::testkit::amqp_url(), shared::testkit::redis_url());
        let failing = Arc::new(AtomicBool::new(true));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut registry = default_registry(RegistryOptions { test_tasks: false });
        registry.register(Arc::new(Switch {
            failing: failing.clone(),
            runs: runs.clone(),
        }));
        let opts = ServiceOptions {
            map_runs: common::local_buckets(&dir.path().join("data")),
            ..ServiceOptions::default()
        };
        let running = InProcessFleet::start_opts(
            config(&["--prefix", &prefix, "--amqp", &amqp, "--redis", &redis]),
            Services {
                registry,
                worker_tag: tag,
                ..Services::one_each(8)
            },
            opts,
        )
        .await
        .unwrap();
        Rig {
            running,
            failing,
            runs,
            prefix,
            amqp,
            redis,
            dir,
        }
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `mapfleet ARGS` with the fleet's flags: its stdout as JSON, and its stderr.
    fn mapfleet(&self, args: &[&str]) -> (Value, String) {
        let out = std::process::Command::new(distributed::MAPFLEET)
            .args(args)
            .args(["--redis", &self.redis, "--prefix", &self.prefix])
            .env_remove("MAPFLEET_REDIS_URL")
            .env_remove("MAPFLEET_AMQP_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (doc, stderr)
    }

    /// `mapfleet run DEF --describe` on the fleet, with `input`.
    fn run(&self, name: &str, def: &Value, input: &Value) -> Value {
        let def_path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&def_path, def.to_string()).unwrap();
        let input_path = self.dir.path().join(format!("{name}.input.json"));
        std::fs::write(&input_path, input.to_string()).unwrap();
        let data = self.data();
        let (doc, stderr) = self.mapfleet(&[
            "run",
            def_path.to_str().unwrap(),
            "--input",
            input_path.to_str().unwrap(),
            "--name",
            name,
            "--describe",
            "--amqp",
            &self.amqp,
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert!(doc.is_object(), "mapfleet run {name}: {stderr}");
        doc
    }

    /// The switch goes off and the run count starts again from 0.
    fn heal(&self) {
        self.failing.store(false, Ordering::SeqCst);
        self.runs.store(0, Ordering::SeqCst);
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    async fn history(&self, arn: &str) -> Vec<Value> {
        let (doc, stderr) = self.mapfleet(&["history", arn]);
        doc["events"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("history of {arn}: {stderr}"))
    }

    async fn stop(self) {
        self.running.stop().await;
        shared::testkit::teardown(&self.amqp, &self.redis, &self.prefix)
            .await
            .unwrap();
    }
}

/// The events of `events` from the `ExecutionRedriven` one on (the redrive's), and before.
fn split_at_redrive(events: &[Value]) -> (&[Value], &[Value]) {
    let at = events
        .iter()
        .position(|e| e["type"] == "ExecutionRedriven")
        .expect("an ExecutionRedriven event");
    events.split_at(at)
}

fn count(events: &[Value], t: &str) -> usize {
    events.iter().filter(|e| e["type"] == t).count()
}

/// Event ids count on across the redrive, with no gap and no repeat.
fn ids_contiguous(events: &[Value]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["id"], json!(i + 1), "event {i}: {e}");
    }
}

/// ToleratedFailurePercentage 10 over 40 items, 20% failing: FAILED with
/// States.ExceedToleratedFailureThreshold; redriven once the items stop failing, it
/// succeeds, and only the children that had not succeeded ran again (the worker's count,
/// the count `mapfleet redrive` prints, the map run's counts and its result files agree).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_map_over_its_tolerated_failures_is_redriven() {
    let rig = Rig::start("redrive-dmap").await;
    let data = rig.data();
    std::fs::create_dir_all(data.join("buckets/out")).unwrap();
    distributed::write_object(
        &data,
        "in/items.jsonl",
        distributed::generate(&json!({"format": "jsonl", "count": 40, "fail_every": 5})).as_bytes(),
    );
    let def = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "MaxConcurrency": 4,
        "ToleratedFailurePercentage": 10,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSONL"},
            "Parameters": {"Bucket": "in", "Key": "items.jsonl"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Work", "States": {
                "Work": {"Type": "Task", "Resource": "arn:mapfleet:task:::switch", "End": true}}},
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "out", "Prefix": "results"}},
        "End": true}}});
    let first = tokio::task::block_in_place(|| rig.run("dmap", &def, &json!({})));
    let arn = first["executionArn"].as_str().unwrap().to_string();
    let checks = tokio::task::block_in_place(|| -> Result<(), String> {
        let d = &first;
        if d["status"] != "FAILED" || d["error"] != "States.ExceedToleratedFailureThreshold" {
            return Err(format!("first run: {d}"));
        }
        if d["redriveStatus"] != "REDRIVABLE" || d["redriveCount"] != 0 {
            return Err(format!("first run's redrive members: {d}"));
        }
        let (runs, _) = rig.mapfleet(&["map-runs", "list", &arn]);
        let run_arn = runs["mapRuns"][0]["mapRunArn"]
            .as_str()
            .ok_or(format!("map runs: {runs}"))?
            .to_string();
        let (before, _) = rig.mapfleet(&["map-runs", "describe", &run_arn]);
        let kept = before["executionCounts"]["succeeded"].as_u64().unwrap() as usize;
        if before["status"] != "FAILED" || kept == 0 || kept >= 40 {
            return Err(format!("map run before the redrive: {before}"));
        }
        rig.heal();
        let (r, stderr) = rig.mapfleet(&["redrive", &arn]);
        let again = 40 - kept;
        if r["status"] != "SUCCEEDED" || r["redriveCount"] != 1 || r["redriveDate"].is_null() {
            return Err(format!("redrive: {r}\n{stderr}"));
        }
        if rig.runs() != again {
            return Err(format!(
                "{} children ran again, {again} expected ({kept} kept)",
                rig.runs()
            ));
        }
        let shown = format!("{again} of 40 children ran again ({kept} kept)");
        if !stderr.contains(&shown) {
            return Err(format!("mapfleet redrive did not say {shown:?}: {stderr}"));
        }
        let (after, _) = rig.mapfleet(&["map-runs", "describe", &run_arn]);
        let c = &after["executionCounts"];
        if after["status"] != "SUCCEEDED"
            || after["redriveCount"] != 1
            || after["redriveDate"].is_null()
            || after["startDate"] != before["startDate"]
            || c["succeeded"] != 40
            || c["failed"] != 0
            || c["total"] != 40
            || c["resultsWritten"] != 40
        {
            return Err(format!("map run after the redrive: {after}"));
        }
        // The manifest lists the kept children's files with the new ones: each item once.
        let (children, stderr) = rig.mapfleet(&[
            "executions",
            "list",
            "--map-run",
            &run_arn,
            "--status",
            "SUCCEEDED",
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        let listed = children["executions"].as_array().map_or(0, Vec::len);
        if listed != 40 {
            return Err(format!("{listed} SUCCEEDED children listed: {stderr}"));
        }
        Ok(())
    });
    let events = rig.history(&arn).await;
    rig.stop().await;
    checks.unwrap();
    ids_contiguous(&events);
    let (_, redriven) = split_at_redrive(&events);
    assert_eq!(
        redriven[0]["executionRedrivenEventDetails"]["redriveCount"],
        1
    );
    assert_eq!(count(redriven, "MapRunRedriven"), 1, "{redriven:?}");
    assert_eq!(count(redriven, "MapRunStarted"), 0, "{redriven:?}");
    assert_eq!(count(redriven, "ExecutionSucceeded"), 1);
}

/// An inline Map whose fourth item fails: redriven, it resumes at the Map with the input it
/// had; only the iterations that had not succeeded run again, the others keep their results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_map_is_redriven_with_only_its_failed_iterations() {
    let rig = Rig::start("redrive-map").await;
    let def = json!({"StartAt": "Prepare", "States": {
        "Prepare": {"Type": "Pass", "Assign": {"tag": "kept"}, "Next": "Fan"},
        "Fan": {"Type": "Map", "MaxConcurrency": 2, "ItemsPath": "$.items",
            "ItemSelector": {"id.$": "$$.Map.Item.Value.id", "fail.$": "$$.Map.Item.Value.fail",
                "tag.$": "$tag"},
            "ItemProcessor": {"StartAt": "Work", "States": {
                "Work": {"Type": "Task", "Resource": "arn:mapfleet:task:::switch", "End": true}}},
            "Next": "Done"},
        "Done": {"Type": "Pass", "End": true}}});
    let items: Vec<Value> = (0..10).map(|i| json!({"id": i, "fail": i == 3})).collect();
    let checks = tokio::task::block_in_place(|| -> Result<(String, usize, usize), String> {
        let d = rig.run("inline", &def, &json!({"items": items}));
        if d["status"] != "FAILED" || d["error"] != "ItemFailed" {
            return Err(format!("first run: {d}"));
        }
        let arn = d["executionArn"].as_str().unwrap().to_string();
        rig.heal();
        let (r, stderr) = rig.mapfleet(&["redrive", &arn]);
        if r["status"] != "SUCCEEDED" || r["redriveCount"] != 1 {
            return Err(format!("redrive: {r}\n{stderr}"));
        }
        let output: Value = serde_json::from_str(r["output"].as_str().unwrap()).unwrap();
        let expected: Vec<Value> = (0..10)
            .map(|i| json!({"id": i, "fail": i == 3, "tag": "kept"}))
            .collect();
        if output != json!(expected) {
            return Err(format!("output {output}"));
        }
        Ok((arn, rig.runs(), 0))
    });
    let (arn, runs_again, _) = checks.unwrap_or_else(|e| panic!("{e}"));
    let events = rig.history(&arn).await;
    let redo = tokio::task::block_in_place(|| rig.mapfleet(&["redrive", &arn]));
    rig.stop().await;
    ids_contiguous(&events);
    let (before, redriven) = split_at_redrive(&events);
    let succeeded = count(before, "MapIterationSucceeded");
    assert!((1..10).contains(&succeeded), "{succeeded} succeeded first");
    // The redrive resumed at the Map (not at Prepare), and ran the others only.
    assert_eq!(redriven[1]["type"], "MapStateEntered", "{redriven:?}");
    assert_eq!(
        count(redriven, "PassStateEntered"),
        1,
        "only Done: {redriven:?}"
    );
    assert_eq!(count(redriven, "MapIterationStarted"), 10 - succeeded);
    assert_eq!(runs_again, 10 - succeeded);
    // A succeeded execution is not redrivable.
    assert!(
        redo.1
            .contains("Execution is SUCCEEDED and cannot be redriven"),
        "{}",
        redo.1
    );
}

/// A plain Task that failed: the redrive resumes at it (the states before it do not run
/// again) and the task runs once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_redriven_from_that_task() {
    let rig = Rig::start("redrive-task").await;
    let def = json!({"StartAt": "First", "States": {
        "First": {"Type": "Pass", "Result": {"fail": true, "n": 1}, "Next": "Work"},
        "Work": {"Type": "Task", "Resource": "arn:mapfleet:task:::switch", "Next": "Done"},
        "Done": {"Type": "Pass", "End": true}}});
    let (arn, r, stderr, runs) = tokio::task::block_in_place(|| {
        let d = rig.run("task", &def, &json!({}));
        assert_eq!(d["status"], "FAILED", "{d}");
        let arn = d["executionArn"].as_str().unwrap().to_string();
        rig.heal();
        let (r, stderr) = rig.mapfleet(&["redrive", &arn]);
        (arn, r, stderr, rig.runs())
    });
    let events = rig.history(&arn).await;
    let missing = tokio::task::block_in_place(|| {
        rig.mapfleet(&[
            "redrive",
            "arn:aws:states:local:000000000000:execution:task:nope",
        ])
    });
    rig.stop().await;
    assert_eq!(r["status"], "SUCCEEDED", "{r}\n{stderr}");
    assert_eq!(
        r["output"],
        json!(json!({"fail": true, "n": 1}).to_string())
    );
    assert_eq!(runs, 1);
    ids_contiguous(&events);
    let (_, redriven) = split_at_redrive(&events);
    assert_eq!(redriven[1]["type"], "TaskStateEntered", "{redriven:?}");
    assert_eq!(redriven[1]["stateEnteredEventDetails"]["name"], "Work");
    assert_eq!(count(redriven, "PassStateEntered"), 1, "only Done");
    // An execution the fleet does not know: embedded runs are not kept, and it says so.
    assert!(
        missing.1.contains("Execution Does Not Exist") && missing.1.contains("embedded"),
        "{}",
        missing.1
    );
}
