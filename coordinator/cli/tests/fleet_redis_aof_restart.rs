//! Redis restarted twice in the middle of a 2,000-item batch, with AOF on as
//! `deploy/redis/redis.conf` runs it (`appendonly yes`, `appendfsync everysec`): the batch
//! finishes with every item exactly once and its results in order.
//!
//! The test starts a Redis of its own ([`common::redis_server`]: a free port, a temporary
//! directory), two coordinators and two workers in this process
//! ([`common::in_process`], supervised as the binaries are) on the machine's RabbitMQ under a
//! prefix of its own, and a client process, `mapfleet run --redis ... --describe --history`,
//! that submits a Map of 2,000 `echo` items and waits on it. Mid-batch Redis is
//!
//! 1. stopped in order (SIGTERM: it fsyncs its AOF and exits), down for 5 s, started again
//!    from its AOF: no acknowledged write may be missing (the Map's progress counter reads
//!    at least what it read before the stop);
//! 2. killed (SIGKILL), down for 5 s, started again. With `everysec` a killed process loses
//!    nothing it acknowledged either: Redis hands every write to the kernel before it
//!    replies, and only the fsync is once a second, so what a machine crash can lose (about
//!    the last second) is not what `kill -9` loses. `fleet_faults.rs` covers that case by
//!    cutting the AOF's last second off: the coordinators put the lost outcomes back.
//!
//! Every service and the client must carry on by themselves: the coordinators and workers
//! reconnect (none of them may stop), and the waiting client rides out both outages (it once
//! ended with `error: broken pipe`) and prints the execution's exact, ordered output.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::in_process::{self, InProcessFleet, Services, assert_clean_history, config};
use common::redis_server::RedisServer;
use coordinator::engine::ExecutionInfo;
use coordinator::engine::history::EventType;
use coordinator::fleet::client::FleetClient;
use serde_json::{Value, json};
use worker::registry::{RegistryOptions, default_registry};

const MAPFLEET: &str = env!("CARGO_BIN_EXE_mapfleet");
const ITEMS: usize = 2000;
const DOWN_FOR: Duration = Duration::from_secs(5);
const TEST_LIMIT: Duration = Duration::from_secs(600);

/// A child process killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until at least `done` iterations succeeded; returns how many had, or panics
/// after `limit`, or when the client ended first.
async fn wait_progress(
    client: &FleetClient,
    arn: &str,
    done: u64,
    waiting: &mut Proc,
    stderr: &Path,
) -> u64 {
    let started = Instant::now();
    loop {
        if let Ok((_, ok, _)) = client.progress(arn).await
            && ok >= done
        {
            return ok;
        }
        assert!(
            waiting.0.try_wait().unwrap().is_none(),
            "the client ended before {done} iterations succeeded:\n{}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        );
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "fewer than {done} iterations after 180 s; services log: {}",
            in_process::log_to_file("mapfleet-redis-aof").display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stops Redis (SIGTERM, or SIGKILL if `kill`), keeps it down for [`DOWN_FOR`] and starts
/// it again from its AOF, off the async threads.
async fn restart(redis: RedisServer, kill: bool) -> RedisServer {
    tokio::task::spawn_blocking(move || {
        let mut redis = redis;
        if kill {
            redis.kill();
        } else {
            redis.stop();
        }
        std::thread::sleep(DOWN_FOR);
        redis.restart();
        redis
    })
    .await
    .expect("restart Redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_survives_redis_stopped_and_killed_mid_run_with_aof() {
    tokio::time::timeout(TEST_LIMIT, run())
        .await
        .expect("the Redis AOF restart test timed out");
}

async fn run() {
    let log = in_process::log_to_file("mapfleet-redis-aof");
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let url = redis.url();
    let amqp = shared::testkit::amqp_url();
    let prefix = shared::testkit::unique_prefix("mft-aof-restart");
    let running = InProcessFleet::start_with(
        config(&["--prefix", &prefix, "--amqp", &amqp, "--redis", &url]),
        Services {
            coordinators: 2,
            workers: 2,
            worker_slots: 16,
            registry: default_registry(RegistryOptions { test_tasks: false }),
            worker_tag: "aof-restart",
            declare_on: None,
        },
    )
    .await
    .expect("start the fleet");

    // The client submits the Map and waits on it, as a user would.
    let dir = tempfile::tempdir().expect("temp dir");
    let definition = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 64, "End": true,
        "ItemProcessor": {"StartAt": "E", "States": {"E": {
            "Type": "Task", "Resource": "arn:mapfleet:task:::echo",
            "Parameters": {"i.$": "$.i"}, "End": true}}}}}});
    let items: Vec<Value> = (0..ITEMS).map(|i| json!({ "i": i })).collect();
    let (def_path, input_path) = (dir.path().join("def.json"), dir.path().join("input.json"));
    std::fs::write(&def_path, definition.to_string()).unwrap();
    std::fs::write(&input_path, json!({ "items": items }).to_string()).unwrap();
    let (stdout_path, stderr_path) = (dir.path().join("client.out"), dir.path().join("client.err"));
    let name = "aof-restart";
    let mut client = Proc(
        Command::new(MAPFLEET)
            .arg("run")
            .arg(&def_path)
            .arg("--input")
            .arg(&input_path)
            .args(["--name", name, "--describe", "--history"])
            .args(["--prefix", &prefix, "--redis", &url, "--amqp", &amqp])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start the client"),
    );
    // `mapfleet run` names the state machine after the definition's file.
    let arn = ExecutionInfo::new("def", name, json!({}), chrono::Utc::now()).execution_arn;
    let progress = running.client.clone();

    // 1. An orderly stop: nothing acknowledged may be missing afterwards.
    let before = wait_progress(&progress, &arn, 300, &mut client, &stderr_path).await;
    let redis = restart(redis, false).await;
    let after = wait_progress(&progress, &arn, 0, &mut client, &stderr_path).await;
    eprintln!("SIGTERM at {before}+ of {ITEMS} iterations; {after} counted after the restart");
    assert!(
        (before as usize) < ITEMS,
        "the Map finished before Redis was stopped"
    );
    assert!(
        after >= before,
        "the restarted Redis lost acknowledged progress: {after} < {before}"
    );

    // 2. A crash.
    let before = wait_progress(&progress, &arn, after.max(1000), &mut client, &stderr_path).await;
    assert!(
        (before as usize) < ITEMS,
        "the Map finished before Redis could be killed"
    );
    let redis = restart(redis, true).await;
    let after = wait_progress(&progress, &arn, 0, &mut client, &stderr_path).await;
    eprintln!("SIGKILL at {before}+ of {ITEMS} iterations; {after} counted after the restart");

    // The client ends by itself, with the execution's exact, ordered output.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = client.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the client did not finish; services log: {}",
            log.display()
        );
        assert!(
            running.stopped().is_empty(),
            "{} stopped on its own; services log: {}",
            running.stopped().join(", "),
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "the client failed: {status}\n{stderr}");
    // It may name the broken pipe it met while reconnecting, but never ends on it.
    assert!(
        !stderr.contains("error:"),
        "the client reported an error:\n{stderr}"
    );
    assert!(
        stderr.contains("Redis unreachable") && stderr.contains("Redis is back"),
        "the client did not say it was riding out the outages:\n{stderr}"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&stdout_path).unwrap())
        .expect("a DescribeExecution document on stdout");
    assert_eq!(doc["status"], "SUCCEEDED", "{doc}");
    let output: Value = serde_json::from_str(doc["output"].as_str().expect("an output"))
        .expect("the output is JSON");
    assert_eq!(
        output,
        Value::Array((0..ITEMS).map(|i| json!({ "i": i })).collect()),
        "results in item order"
    );

    // Exactly once: unique event ids, each iteration started and succeeded once, one end.
    let events = running.client.history(&arn).await.expect("history");
    assert_clean_history(&events, ITEMS);
    let ends = events
        .iter()
        .filter(|e| e.event_type == EventType::ExecutionSucceeded)
        .count();
    assert_eq!(ends, 1, "the execution succeeded once");
    let (_, succeeded, failed) = running.client.progress(&arn).await.expect("progress");
    assert_eq!(
        (succeeded, failed),
        (ITEMS as u64, 0),
        "iterations counted once each"
    );

    assert!(running.stopped().is_empty(), "a service stopped on its own");
    for (what, result) in running.stop().await {
        assert!(result.is_ok(), "{what}: {result:?}");
    }
    drop(client);
    drop(redis);
    // The queues on the machine's broker (the keys went with the test's Redis).
    let _ = tokio::task::spawn_blocking(move || shared::testkit::teardown_prefix(&prefix)).await;
}
