//! Distributed Maps on the fleet, against the real RabbitMQ and Redis on 127.0.0.1: the
//! fixtures of `tests/fixtures/distributed/` (the checks of embedded mode's
//! `distributed_map.rs`, each item's record exactly once in the result files) run by the
//! `mapfleet` binary with fleet flags, against a coordinator and a worker in this process.
//! The coordinator reads the items from, and writes the result files to, the fixture's
//! local buckets, as `mapfleet coordinator --data-dir` does.

mod common;
#[path = "common/distributed.rs"]
mod distributed;

use std::path::Path;

use coordinator::fleet::service::ServiceOptions;

use common::in_process::{InProcessFleet, Services, config};
use common::local_buckets;
use serde_json::json;

/// Runs one fixture on a fleet of its own prefix and data dir.
async fn on_the_fleet(path: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let prefix = shared::testkit::unique_prefix("dmap");
    let (amqp, redis) = (shared::testkit::amqp_url(), shared::testkit::redis_url());
    let fleet = config(&["--prefix", &prefix, "--amqp", &amqp, "--redis", &redis]);
    let opts = ServiceOptions {
        map_runs: local_buckets(&data),
        ..ServiceOptions::default()
    };
    let running = InProcessFleet::start_opts(
        fleet,
        Services {
            worker_tag: "dmap-fixtures",
            ..Services::one_each(8)
        },
        opts,
    )
    .await
    .map_err(|e| format!("fleet: {e:#}"))?;
    let extra: Vec<String> = ["--redis", &redis, "--amqp", &amqp, "--prefix", &prefix]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let p = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || distributed::run_fixture(&p, &data, &extra))
        .await
        .unwrap();
    let stopped = running.stop().await;
    shared::testkit::teardown(&amqp, &redis, &prefix)
        .await
        .map_err(|e| format!("teardown: {e}"))?;
    result.map_err(|e| format!("{e}\nservices: {stopped:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_map_fixtures_on_the_fleet() {
    common::in_process::log_to_file("mapfleet-dmap-fleet");
    let paths = distributed::fixtures();
    assert!(paths.len() >= 8, "{} fixtures", paths.len());
    let mut failures = Vec::new();
    for p in &paths {
        if let Err(e) = on_the_fleet(p).await {
            failures.push(format!("{}: {e}", p.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Runs `mapfleet ARGS` and parses its JSON output.
fn mapfleet(args: &[String]) -> Result<serde_json::Value, String> {
    let out = std::process::Command::new(distributed::MAPFLEET)
        .args(args)
        .env_remove("MAPFLEET_REDIS_URL")
        .env_remove("MAPFLEET_AMQP_URL")
        .output()
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "mapfleet {args:?}: no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// ToleratedFailurePercentage 10 on the fleet, with 5% and then 20% of 40 items failing,
/// and the map run seen through `mapfleet map-runs list|describe` and `mapfleet executions
/// list --map-run --status FAILED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerated_failures_and_map_run_commands_on_the_fleet() {
    common::in_process::log_to_file("mapfleet-dmap-fleet");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let prefix = shared::testkit::unique_prefix("dmap-runs");
    let (amqp, redis) = (shared::testkit::amqp_url(), shared::testkit::redis_url());
    let fleet = config(&["--prefix", &prefix, "--amqp", &amqp, "--redis", &redis]);
    let opts = ServiceOptions {
        map_runs: local_buckets(&data),
        ..ServiceOptions::default()
    };
    let running = InProcessFleet::start_opts(
        fleet,
        Services {
            worker_tag: "dmap-runs",
            ..Services::one_each(8)
        },
        opts,
    )
    .await
    .unwrap();
    let fleet_flags: Vec<String> = ["--redis", &redis, "--prefix", &prefix]
        .iter()
        .map(|s| s.to_string())
        .collect();
    std::fs::create_dir_all(data.join("buckets/out")).unwrap();
    let check = |fail_every: u64, name: &str| -> Result<(), String> {
        distributed::write_object(
            &data,
            &format!("in/{name}.jsonl"),
            distributed::generate(
                &json!({"format": "jsonl", "count": 40, "fail_every": fail_every}),
            )
            .as_bytes(),
        );
        let def = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "MaxConcurrency": 4,
            "ToleratedFailurePercentage": 10,
            "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "JSONL"},
                "Parameters": {"Bucket": "in", "Key": format!("{name}.jsonl")}},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Check", "States": {
                    "Check": {"Type": "Choice", "Choices": [{"Variable": "$.fail", "BooleanEquals": true, "Next": "Fail"}], "Default": "Echo"},
                    "Fail": {"Type": "Task", "Resource": "arn:mapfleet:task:::fail", "Parameters": {"error": "ItemFailed", "cause": "failing item"}, "End": true},
                    "Echo": {"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "End": true}}},
            "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {"Bucket": "out", "Prefix": name}},
            "End": true}}});
        let def_path = dir.path().join(format!("{name}.json"));
        std::fs::write(&def_path, def.to_string()).unwrap();
        let mut args: Vec<String> = vec![
            "run".into(),
            def_path.to_str().unwrap().into(),
            "--name".into(),
            name.into(),
            "--describe".into(),
            "--amqp".into(),
            amqp.clone(),
            "--data-dir".into(),
            data.to_str().unwrap().into(),
        ];
        args.extend(fleet_flags.iter().cloned());
        let d = mapfleet(&args)?;
        let failing = 40 / fail_every;
        let exceeded = failing * 100 > 10 * 40;
        let (status, error) = if exceeded {
            ("FAILED", json!("States.ExceedToleratedFailureThreshold"))
        } else {
            ("SUCCEEDED", serde_json::Value::Null)
        };
        if d["status"] != status || (exceeded && d["error"] != error) {
            return Err(format!("{name}: {d}"));
        }
        let arn = d["executionArn"].as_str().unwrap().to_string();
        let mut list = vec!["map-runs".into(), "list".into(), arn.clone()];
        list.extend(fleet_flags.iter().cloned());
        let runs = mapfleet(&list)?;
        let runs = runs["mapRuns"].as_array().cloned().unwrap_or_default();
        if runs.len() != 1 || runs[0]["executionArn"] != json!(arn) {
            return Err(format!("{name}: map runs {runs:?}"));
        }
        let run_arn = runs[0]["mapRunArn"].as_str().unwrap().to_string();
        let mut describe = vec!["map-runs".into(), "describe".into(), run_arn.clone()];
        describe.extend(fleet_flags.iter().cloned());
        let m = mapfleet(&describe)?;
        let c = &m["executionCounts"];
        let ok = m["status"] == status
            && m["maxConcurrency"] == 4
            && m["toleratedFailurePercentage"] == 10.0
            && c["total"] == 40
            && c["failed"].as_u64().unwrap_or(0) >= 1
            && (exceeded || (c["succeeded"] == 40 - failing && c["failed"] == failing))
            && m["itemCounts"] == *c;
        if !ok {
            return Err(format!("{name}: describe {m}"));
        }
        let mut children = vec![
            "executions".into(),
            "list".into(),
            "--map-run".into(),
            run_arn,
            "--status".into(),
            "FAILED".into(),
            "--data-dir".into(),
            data.to_str().unwrap().into(),
        ];
        children.extend(fleet_flags.iter().cloned());
        let e = mapfleet(&children)?;
        let failed = e["executions"].as_array().cloned().unwrap_or_default();
        if failed.len() as u64 != c["failed"].as_u64().unwrap()
            || failed.iter().any(|x| x["status"] != "FAILED")
        {
            return Err(format!("{name}: failed children {e} against {m}"));
        }
        Ok(())
    };
    let within = tokio::task::block_in_place(|| check(20, "five-percent"));
    let exceeded = tokio::task::block_in_place(|| check(5, "twenty-percent"));
    running.stop().await;
    shared::testkit::teardown(&amqp, &redis, &prefix)
        .await
        .unwrap();
    within.unwrap();
    exceeded.unwrap();
}
