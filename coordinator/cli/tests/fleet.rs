//! The fleet end to end, against the real RabbitMQ and Redis on 127.0.0.1: real coordinator
//! and worker processes, killed with SIGKILL where the test says so. Each test uses its own
//! prefix (queues and keys), deleted when the test ends, and the tests take turns.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The `mapfleet-worker` binary, built next to this test's own binaries by
/// `cargo test --workspace` (or `cargo build -p worker`).
fn worker_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("mapfleet-worker");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p worker` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

const MAPFLEET: &str = env!("CARGO_BIN_EXE_mapfleet");

struct Proc(Child);

impl Proc {
    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Fleet {
    prefix: String,
    dir: tempfile::TempDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// One fleet at a time: each test starts several processes, and on a 2-core machine running
/// them side by side only measures the machine's overload.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Show the end of every process's log (CI keeps only the test output), and keep
            // the files.
            print_log_tails(self.dir.path());
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!("logs kept in {}", dir.keep().display());
        }
        // The processes are gone (tests declare them after the fleet, so they drop first).
        shared::testkit::teardown_prefix(&self.prefix);
    }
}

/// Prints the last lines of each `*.log` in `dir` to stderr.
fn print_log_tails(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        eprintln!(
            "---- last {} lines of {} ----",
            tail.len(),
            log.file_name().unwrap_or_default().to_string_lossy()
        );
        for line in tail {
            eprintln!("{line}");
        }
    }
}

impl Fleet {
    fn new(tag: &str) -> Fleet {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let prefix = format!("mft-{tag}-{}", uuid::Uuid::new_v4().simple());
        // Declared once up front rather than by every process at once (see `declare_prefix`).
        shared::testkit::declare_prefix(&prefix, 5).expect("declare the fleet's queues");
        Fleet {
            prefix,
            dir: tempfile::tempdir().expect("temp dir"),
            _serial: serial,
        }
    }

    fn coordinator(&self) -> Proc {
        self.coordinator_with(&[]).0
    }

    /// A coordinator with extra flags, and the path of its log.
    fn coordinator_with(&self, extra: &[&str]) -> (Proc, PathBuf) {
        let log_path = self
            .dir
            .path()
            .join(format!("coordinator-{}.log", uuid::Uuid::new_v4().simple()));
        let log = std::fs::File::create(&log_path).unwrap();
        let proc = Proc(
            Command::new(MAPFLEET)
                .args([
                    "coordinator",
                    "--prefix",
                    &self.prefix,
                    "--delivery-limit",
                    "5",
                ])
                .args(extra)
                .env("MAPFLEET_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start a coordinator"),
        );
        (proc, log_path)
    }

    fn worker(&self, concurrency: u32) -> Proc {
        let log_path = self
            .dir
            .path()
            .join(format!("worker-{}.log", uuid::Uuid::new_v4().simple()));
        let log = std::fs::File::create(&log_path).unwrap();
        Proc(
            Command::new(worker_bin())
                .args([
                    "--prefix",
                    &self.prefix,
                    "--delivery-limit",
                    "5",
                    "--concurrency",
                    &concurrency.to_string(),
                    "--enable-test-tasks",
                    "--no-photo-tasks",
                ])
                .env("MAPFLEET_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start a worker"),
        )
    }

    fn write(&self, name: &str, v: &Value) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    }

    /// Submits an execution and returns its ARN without waiting.
    fn submit(&self, def: &Value, input: &Value, name: &str) -> String {
        let d = self.write(&format!("{name}-def.json"), def);
        let i = self.write(&format!("{name}-in.json"), input);
        let out = Command::new(MAPFLEET)
            .args([
                "run",
                d.to_str().unwrap(),
                "--input",
                i.to_str().unwrap(),
                "--name",
                name,
                "--detach",
            ])
            .args([
                "--redis",
                "redis://127.0.0.1:6379/",
                "--prefix",
                &self.prefix,
            ])
            .output()
            .expect("mapfleet run");
        assert!(
            out.status.success(),
            "submit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn describe(&self, arn: &str, history: bool) -> Value {
        let mut cmd = Command::new(MAPFLEET);
        cmd.args(["describe", arn, "--prefix", &self.prefix]);
        if history {
            cmd.arg("--history");
        }
        let out = cmd.output().expect("mapfleet describe");
        assert!(
            out.status.success(),
            "describe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("describe prints JSON")
    }

    /// Waits until the execution leaves RUNNING; panics after `limit`.
    fn wait(&self, arn: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let d = self.describe(arn, false);
            if d["status"] != "RUNNING" {
                return self.describe(arn, true);
            }
            assert!(
                started.elapsed() < limit,
                "execution still RUNNING after {limit:?}; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn echo_map(max_concurrency: u64, resource: &str, params: Value) -> Value {
    json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": max_concurrency,
        "ItemProcessor": {"StartAt": "E", "States": {"E": {"Type": "Task", "Resource": resource, "Parameters": params, "End": true}}},
        "End": true}}})
}

fn output(d: &Value) -> Value {
    serde_json::from_str(d["output"].as_str().expect("an output")).unwrap()
}

fn events_of<'a>(d: &'a Value, t: &str) -> Vec<&'a Value> {
    d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == t)
        .collect()
}

/// Every item index succeeded exactly once.
fn assert_each_iteration_once(d: &Value, n: usize) {
    let mut seen = vec![0u32; n];
    for e in events_of(d, "MapIterationSucceeded") {
        seen[e["mapIterationSucceededEventDetails"]["index"]
            .as_u64()
            .unwrap() as usize] += 1;
    }
    let wrong: Vec<(usize, u32)> = seen
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, c)| *c != 1)
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "iterations not succeeded exactly once (index, times): {wrong:?}"
    );
}

#[test]
fn two_thousand_echo_items_in_order() {
    let fleet = Fleet::new("echo");
    let (_c, log) = fleet.coordinator_with(&["--metrics-addr", "127.0.0.1:0"]);
    let _w1 = fleet.worker(16);
    let _w2 = fleet.worker(16);
    let items: Vec<Value> = (0..2000)
        .map(|i| json!({ "i": i, "tag": format!("item-{i}") }))
        .collect();
    let arn = fleet.submit(
        &echo_map(
            0,
            "arn:mapfleet:task:::echo",
            json!({"i.$": "$.i", "tag.$": "$.tag"}),
        ),
        &json!({ "items": items }),
        "echo2k",
    );
    let d = fleet.wait(&arn, Duration::from_secs(120));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(output(&d), Value::Array(items));
    assert_each_iteration_once(&d, 2000);

    // The coordinator's metrics count what it did.
    let text = std::fs::read_to_string(&log).unwrap();
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("metrics on http://"))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address in the log: {text}"));
    let metrics = http_get(addr, "/metrics");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing from {metrics}"))
    };
    assert!(value("mapfleet_steps_published_total ") >= 2000.0);
    assert_eq!(value("mapfleet_iterations_in_flight "), 0.0);
}

/// A plain HTTP/1.0 GET on loopback.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn survives_killed_worker_and_restarted_coordinator() {
    let fleet = Fleet::new("kill");
    let mut coordinator = fleet.coordinator();
    let mut doomed = fleet.worker(16);
    let _w2 = fleet.worker(16);
    let items: Vec<Value> = (0..2000).map(|i| json!({ "i": i })).collect();
    // A little sleep per step keeps work in flight when the processes die.
    let def = echo_map(
        0,
        "arn:mapfleet:task:::sleep",
        json!({"ms": 5, "i.$": "$.i"}),
    );
    let arn = fleet.submit(&def, &json!({ "items": items }), "kill2k");
    let started = Instant::now();
    loop {
        let done = events_of(&fleet.describe(&arn, true), "MapIterationSucceeded").len();
        if done >= 300 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress before the kills ({done} done)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    doomed.kill();
    coordinator.kill();
    std::thread::sleep(Duration::from_millis(500));
    let _restarted = fleet.coordinator();
    let d = fleet.wait(&arn, Duration::from_secs(180));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let expected: Vec<Value> = (0..2000).map(|i| json!({ "ms": 5, "i": i })).collect();
    assert_eq!(output(&d), Value::Array(expected));
    assert_each_iteration_once(&d, 2000);
}

/// A Distributed Map over a JSONL object of 4,000 items with a ResultWriter, on real
/// processes: once its first result file is written, the coordinator is killed with SIGKILL
/// (and a new one started), then a worker. The run SUCCEEDED and its result files hold
/// every item exactly once.
#[test]
fn distributed_map_survives_killed_coordinator_and_worker() {
    const N: usize = 4000;
    let fleet = Fleet::new("dmap-kill");
    let data = fleet.dir.path().join("data");
    let buckets = data.join("buckets");
    std::fs::create_dir_all(buckets.join("items")).unwrap();
    std::fs::create_dir_all(buckets.join("results")).unwrap();
    // ~3 KiB records: a result file (4 MiB) every ~1,300 children, so files are written
    // before, around and after the kills.
    let pad = "x".repeat(1500);
    let lines: String = (0..N)
        .map(|i| format!("{}\n", json!({"id": i, "pad": pad})))
        .collect();
    std::fs::write(buckets.join("items/items.jsonl"), lines).unwrap();
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 64,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSONL"},
            "Parameters": {"Bucket": "items", "Key": "items.jsonl"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "E", "States": {"E": {"Type": "Task", "Resource": "arn:mapfleet:task:::sleep",
                "Parameters": {"ms": 10, "id.$": "$.id", "pad.$": "$.pad"}, "End": true}}},
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "results", "Prefix": "out"}},
        "End": true}}});
    let data_arg = data.to_str().unwrap().to_string();
    let (mut coordinator, _) = fleet.coordinator_with(&["--data-dir", &data_arg]);
    let mut doomed = fleet.worker(16);
    let _w2 = fleet.worker(16);
    let arn = fleet.submit(&def, &json!({}), "dmapkill");
    let first_file = |b: &std::path::Path| -> bool {
        walk(&b.join("results"))
            .iter()
            .any(|p| p.ends_with("SUCCEEDED_0.json"))
    };
    let started = Instant::now();
    while !first_file(&buckets) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no result file before the kills; logs in {}",
            fleet.dir.path().display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    coordinator.kill();
    std::thread::sleep(Duration::from_millis(300));
    let (_restarted, _) = fleet.coordinator_with(&["--data-dir", &data_arg]);
    std::thread::sleep(Duration::from_millis(1500));
    doomed.kill();
    let _w3 = fleet.worker(16);
    let d = fleet.wait(&arn, Duration::from_secs(300));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let out = output(&d);
    let key = out["ResultWriterDetails"]["Key"].as_str().unwrap();
    let results = buckets.join("results");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join(key)).unwrap()).unwrap();
    assert_eq!(manifest["ResultFiles"]["FAILED"], json!([]), "{manifest}");
    let files = manifest["ResultFiles"]["SUCCEEDED"].as_array().unwrap();
    assert!(files.len() >= 3, "{manifest}");
    let mut seen = vec![0u32; N];
    for f in files {
        let path = results.join(f["Key"].as_str().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(f["Size"], json!(text.len()), "{}", path.display());
        for r in serde_json::from_str::<Vec<Value>>(&text).unwrap() {
            assert_eq!(r["Status"], "SUCCEEDED");
            let input: Value = serde_json::from_str(r["Input"].as_str().unwrap()).unwrap();
            seen[input["id"].as_u64().unwrap() as usize] += 1;
        }
    }
    // Files the manifest does not name would be stray writes.
    let written = walk(&results)
        .into_iter()
        .filter(|p| !p.ends_with("manifest.json"))
        .count();
    assert_eq!(written, files.len(), "result files not in the manifest");
    let wrong: Vec<(usize, u32)> = seen
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, c)| *c != 1)
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "items not recorded exactly once (index, times): {wrong:?}"
    );
}

/// Every file under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The broker closes every connection of the coordinator and the worker mid-batch (as a
/// broker restart or a network cut would): both connect again and the batch finishes, every
/// item once and in order.
#[test]
fn broker_closing_every_connection_loses_nothing() {
    if !shared::testkit::rabbitmqctl_usable() {
        eprintln!("skipped: rabbitmqctl cannot reach the broker here");
        return;
    }
    let fleet = Fleet::new("conn");
    let coordinator = fleet.coordinator();
    let worker = fleet.worker(16);
    let items: Vec<Value> = (0..600).map(|i| json!({ "i": i })).collect();
    let def = echo_map(
        0,
        "arn:mapfleet:task:::sleep",
        json!({"ms": 5, "i.$": "$.i"}),
    );
    let arn = fleet.submit(&def, &json!({ "items": items }), "conn600");
    let started = Instant::now();
    while events_of(&fleet.describe(&arn, true), "MapIterationSucceeded").len() < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress before the connections were closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Connection names: `coordinator-PID-...` and `HOST/PID`.
    let closed =
        shared::testkit::force_close_connections(&format!("coordinator-{}-", coordinator.0.id()))
            .unwrap_or(0)
            + shared::testkit::force_close_connections(&format!("/{}\"", worker.0.id()))
                .unwrap_or(0);
    assert!(
        closed >= 2,
        "closed {closed} connections, expected the coordinator's and the worker's"
    );
    let d = fleet.wait(&arn, Duration::from_secs(120));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let expected: Vec<Value> = (0..600).map(|i| json!({ "ms": 5, "i": i })).collect();
    assert_eq!(output(&d), Value::Array(expected));
    assert_each_iteration_once(&d, 600);
}

#[test]
fn nested_maps_with_large_inputs_survive_a_restarted_coordinator() {
    // Every outer iteration is itself a waiting Map whose input (500 numbers) is large
    // enough to be stored apart from its cursor entry (`fleet::stored`), as is the outer
    // Map's. The restarted coordinator has to load those values back: ItemSelector reads
    // the inner Map's effective input for the iterations it starts after the restart
    // (MaxConcurrency keeps most of them for later), and ResultPath merges the results into
    // each Map's raw input.
    let fleet = Fleet::new("nested");
    let mut coordinator = fleet.coordinator();
    let _w = fleet.worker(16);
    let groups: Vec<Value> = (1..=6)
        .map(|g| json!({ "g": g, "xs": (0..500).map(|x| g * 1000 + x).collect::<Vec<_>>() }))
        .collect();
    let def = json!({"StartAt": "Outer", "States": {"Outer": {"Type": "Map", "ItemsPath": "$.groups",
        "MaxConcurrency": 0, "ResultPath": "$.results", "ItemProcessor": {"StartAt": "Inner", "States": {
            "Inner": {"Type": "Map", "ItemsPath": "$.xs", "MaxConcurrency": 20, "ResultPath": "$.out",
                "ItemSelector": {"x.$": "$$.Map.Item.Value", "g.$": "$.g"},
                "ItemProcessor": {"StartAt": "E", "States": {"E": {"Type": "Task",
                    "Resource": "arn:mapfleet:task:::sleep", "Parameters": {"ms": 1, "x.$": "$.x", "g.$": "$.g"},
                    "End": true}}}, "End": true}}}, "End": true}}});
    let input = json!({ "groups": groups });
    let arn = fleet.submit(&def, &input, "nested");
    let started = Instant::now();
    while events_of(&fleet.describe(&arn, true), "MapIterationSucceeded").len() < 300 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress before the kill"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    coordinator.kill();
    std::thread::sleep(Duration::from_millis(500));
    let _restarted = fleet.coordinator();
    let d = fleet.wait(&arn, Duration::from_secs(180));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let results: Vec<Value> = groups
        .iter()
        .map(|group| {
            let g = group["g"].as_u64().unwrap();
            let out: Vec<Value> = (0..500)
                .map(|x| json!({ "ms": 1, "x": g * 1000 + x, "g": g }))
                .collect();
            let mut merged = group.clone();
            merged["out"] = Value::Array(out);
            merged
        })
        .collect();
    let mut expected = input.clone();
    expected["results"] = Value::Array(results);
    assert_eq!(output(&d), expected);
}

/// Workflow variables live in the cursors kept in Redis: a JSONata execution assigns
/// variables, the coordinator is killed while a Map that reads them runs, and the restarted
/// coordinator finishes the Map and the state after it with the same values.
#[test]
fn jsonata_variables_survive_a_restarted_coordinator() {
    let fleet = Fleet::new("vars");
    let mut coordinator = fleet.coordinator();
    let _w = fleet.worker(16);
    let n = 400;
    let items: Vec<Value> = (0..n).map(|i| json!(i)).collect();
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Assign": {"token": "{% $states.input.token %}",
            "n": "{% $count($states.input.items) %}"}, "Next": "M"},
        "M": {"Type": "Map", "Items": "{% $states.input.items %}", "MaxConcurrency": 10,
            "ItemProcessor": {"StartAt": "E", "States": {"E": {"Type": "Task",
                "Resource": "arn:mapfleet:task:::sleep",
                "Arguments": {"ms": 50, "i": "{% $states.input %}", "token": "{% $token %}"},
                "Output": "{% $states.result.token & ':' & $string($states.result.i) %}",
                "End": true}}},
            "Assign": {"count": "{% $count($states.result) %}"}, "Next": "Use"},
        "Use": {"Type": "Pass", "Output": {"token": "{% $token %}", "n": "{% $n %}",
            "count": "{% $count %}", "first": "{% $states.input[0] %}",
            "last": "{% $states.input[-1] %}"}, "End": true}}});
    let arn = fleet.submit(&def, &json!({"token": "t-42", "items": items}), "vars");
    let started = Instant::now();
    while events_of(&fleet.describe(&arn, true), "MapIterationSucceeded").len() < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress before the kill"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // About 1.5 s of the Map is left (300 items, 10 at a time, 50 ms each).
    assert_eq!(fleet.describe(&arn, false)["status"], "RUNNING");
    coordinator.kill();
    std::thread::sleep(Duration::from_millis(500));
    let _restarted = fleet.coordinator();
    let d = fleet.wait(&arn, Duration::from_secs(180));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(
        output(&d),
        json!({"token": "t-42", "n": n, "count": n, "first": "t-42:0",
            "last": format!("t-42:{}", n - 1)})
    );
    assert_each_iteration_once(&d, n as usize);
}

#[test]
fn crashing_step_is_dead_lettered_and_the_batch_goes_on() {
    let fleet = Fleet::new("crash");
    let _c = fleet.coordinator();
    // Workers die on the crash step; keep a few around so the rest of the batch proceeds.
    // One slot each: a worker that dies takes down only the step it was running (steps it
    // had merely prefetched would be redelivered too, and count towards their own limit).
    let mut workers: Vec<Proc> = (0..3).map(|_| fleet.worker(1)).collect();
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "ToleratedFailureCount": 1,
        "ItemProcessor": {"StartAt": "Pick", "States": {
            "Pick": {"Type": "Choice", "Choices": [{"Variable": "$.crash", "BooleanEquals": true, "Next": "Crash"}], "Default": "Echo"},
            "Crash": {"Type": "Task", "Resource": "arn:mapfleet:task:::crash", "End": true},
            "Echo": {"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "End": true}}},
        "End": true}}});
    let items: Vec<Value> = (0..40)
        .map(|i| json!({ "i": i, "crash": i == 7 }))
        .collect();
    let arn = fleet.submit(&def, &json!({ "items": items }), "crash");
    let started = Instant::now();
    let d = loop {
        // Replace crashed workers, as a deployment would.
        for w in workers.iter_mut() {
            if w.0.try_wait().ok().flatten().is_some() {
                *w = fleet.worker(1);
            }
        }
        let d = fleet.describe(&arn, false);
        if d["status"] != "RUNNING" {
            break fleet.describe(&arn, true);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "still running; logs in {}",
            fleet.dir.path().display()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let out = output(&d);
    for (i, v) in out.as_array().unwrap().iter().enumerate() {
        if i == 7 {
            assert_eq!(v, &Value::Null, "the dead-lettered item has no result");
        } else {
            assert_eq!(v, &json!({ "i": i, "crash": false }));
        }
    }
    let failed: Vec<&Value> = events_of(&d, "TaskFailed");
    assert!(
        failed.iter().any(
            |e| e["taskFailedEventDetails"]["error"] == "Mapfleet.StepDeadLettered"
                && e["taskFailedEventDetails"]["cause"]
                    .as_str()
                    .unwrap_or("")
                    .contains("dead-lettered")
        ),
        "no dead-letter failure in {failed:?}"
    );
    assert_eq!(events_of(&d, "MapIterationFailed").len(), 1);
}

/// The largest number of tasks running at once, measured from the history: a task runs
/// between its TaskScheduled and its TaskSucceeded, so the overlap of those intervals bounds
/// what the workers really ran at once.
fn max_overlap(d: &Value) -> usize {
    let mut edges: Vec<(String, i32)> = Vec::new();
    for e in d["events"].as_array().unwrap() {
        match e["type"].as_str() {
            Some("TaskScheduled") => edges.push((e["timestamp"].as_str().unwrap().to_string(), 1)),
            Some("TaskSucceeded" | "TaskFailed" | "TaskTimedOut") => {
                edges.push((e["timestamp"].as_str().unwrap().to_string(), -1))
            }
            _ => {}
        }
    }
    // Ends before starts at equal times: touching intervals do not overlap.
    edges.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}

#[test]
fn max_concurrency_is_never_exceeded_fleet_wide() {
    let fleet = Fleet::new("maxc");
    let _c1 = fleet.coordinator();
    let _c2 = fleet.coordinator();
    let _w1 = fleet.worker(8);
    let _w2 = fleet.worker(8);
    let items: Vec<Value> = (0..40).map(|i| json!(i)).collect();
    let arn = fleet.submit(
        &echo_map(5, "arn:mapfleet:task:::sleep", json!({"ms": 150})),
        &json!({ "items": items }),
        "maxc",
    );
    let d = fleet.wait(&arn, Duration::from_secs(120));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let overlap = max_overlap(&d);
    assert!(
        overlap <= 5,
        "{overlap} tasks overlapped under MaxConcurrency 5"
    );
    assert!(
        overlap >= 3,
        "only {overlap} tasks ever overlapped: the test did not load the fleet"
    );
}

#[test]
fn retry_catch_timeout_and_fail_behave_as_embedded() {
    let fleet = Fleet::new("flow");
    let _c = fleet.coordinator();
    let _w = fleet.worker(4);
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:mapfleet:task:::fail", "Parameters": {"error": "Boom", "cause": "c"},
              "Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 1}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "S"}], "End": true},
        "S": {"Type": "Task", "Resource": "arn:mapfleet:task:::sleep", "Parameters": {"ms": 5000}, "TimeoutSeconds": 1,
              "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timeout", "Next": "F"}], "End": true},
        "F": {"Type": "Fail", "Error": "Done", "CausePath": "$.err.Cause"}}});
    let arn = fleet.submit(&def, &json!({}), "flow");
    let d = fleet.wait(&arn, Duration::from_secs(60));
    assert_eq!(d["status"], "FAILED", "{d}");
    assert_eq!(d["error"], "Done");
    assert_eq!(d["cause"], "c");
    let types: Vec<&str> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "TaskScheduled").count(),
        4,
        "3 tries of T, 1 of S: {types:?}"
    );
    assert!(types.contains(&"TaskTimedOut"), "{types:?}");

    // The same definition in embedded mode gives the same result.
    let dpath = fleet.write("flow-def.json", &def);
    let out = Command::new(MAPFLEET)
        .args(["run", dpath.to_str().unwrap(), "--describe"])
        .output()
        .unwrap();
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&e["status"], &e["error"], &e["cause"]),
        (&d["status"], &d["error"], &d["cause"])
    );
}

#[test]
fn unknown_execution_is_a_clear_error() {
    let fleet = Fleet::new("none");
    let out = Command::new(MAPFLEET)
        .args([
            "describe",
            "arn:aws:states:local:000000000000:execution:x:nope",
            "--prefix",
            &fleet.prefix,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Execution Does Not Exist"));
}

#[test]
fn a_step_no_worker_serves_fails_instead_of_waiting() {
    // No worker runs at all: the step would wait in its queue forever. The coordinator
    // sees no live worker serving the resource and fails the step after the grace.
    let fleet = Fleet::new("unserved");
    let (_c, _log) = fleet.coordinator_with(&["--unserved-grace-secs", "1"]);
    let def = json!({"StartAt": "N", "States": {
        "N": {"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "End": true}}});
    let arn = fleet.submit(&def, &json!({"x": 1}), "unserved");
    let d = fleet.wait(&arn, Duration::from_secs(60));
    assert_eq!(d["status"], "FAILED", "{d}");
    assert_eq!(d["error"], "States.Runtime");
    let cause = d["cause"].as_str().unwrap();
    assert!(
        cause.contains("No worker serves the resource 'arn:mapfleet:task:::echo'"),
        "{cause}"
    );
}

#[test]
fn a_resource_the_workers_do_not_have_fails_the_step() {
    // Workers run, but none serves this resource: the worker that takes the step says so.
    let fleet = Fleet::new("unknown");
    let _c = fleet.coordinator();
    let _w = fleet.worker(2);
    let def = json!({"StartAt": "N", "States": {
        "N": {"Type": "Task", "Resource": "arn:mapfleet:task:::nobody-serves-this", "End": true}}});
    let arn = fleet.submit(&def, &json!({"x": 1}), "unknown");
    let d = fleet.wait(&arn, Duration::from_secs(60));
    assert_eq!(d["status"], "FAILED", "{d}");
    let cause = d["cause"].as_str().unwrap();
    assert!(cause.contains("nobody-serves-this"), "{cause}");
}
