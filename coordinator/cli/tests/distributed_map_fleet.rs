//! Distributed Maps on the fleet, against the real RabbitMQ and Redis on 127.0.0.1: the
//! fixtures of `tests/fixtures/distributed/` (the checks of embedded mode's
//! `distributed_map.rs`, each item's record exactly once in the result files) run by the
//! `mapfleet` binary with fleet flags, against a coordinator and a worker in this process.
//! The coordinator reads the items from, and writes the result files to, the fixture's
//! local buckets, as `mapfleet coordinator --data-dir` does; and `mapfleet coordinator
//! --s3-endpoint` does both through S3 (the worker's in-process S3-compatible server).

#[path = "../../../worker/tests/aws_support/mod.rs"]
mod aws_support;
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

/// A `mapfleet coordinator` process, killed when dropped.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mapfleet coordinator --s3-endpoint` (the real binary) on a fleet whose worker runs in this
/// process: a Distributed Map over an S3 Inventory manifest (its data file gzip'd) read from
/// an S3-compatible server, its result files written there, each item's record exactly once;
/// nothing goes to the coordinator's local buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_reads_items_and_writes_results_through_s3() {
    common::in_process::log_to_file("mapfleet-dmap-fleet");
    let dir = tempfile::tempdir().unwrap();
    let s3 = aws_support::start_s3(&dir.path().join("s3")).await;
    let store = worker::store::S3Store::new(&aws_support::sdk_config().await, Some(&s3.url));
    use worker::store::ObjectStore;
    for bucket in ["inventory", "results"] {
        store.create_bucket(bucket).await.unwrap();
    }
    let rows: String = (0..30)
        .map(|i| format!("\"rides\",\"photos/{i:03}.jpg\",\"{}\"\n", 1000 + i))
        .collect();
    store
        .put(
            "inventory",
            "rides/daily/data/part-1.csv.gz",
            distributed::gzip(rows.as_bytes()),
            "application/gzip",
        )
        .await
        .unwrap();
    let manifest = json!({"sourceBucket": "rides", "destinationBucket": "arn:aws:s3:::inventory",
        "version": "2016-11-30", "fileFormat": "CSV", "fileSchema": "Bucket, Key, Size",
        "files": [{"key": "rides/daily/data/part-1.csv.gz", "size": 1, "MD5checksum": "0"}]});
    store
        .put(
            "inventory",
            "rides/daily/manifest.json",
            manifest.to_string().into_bytes(),
            "application/json",
        )
        .await
        .unwrap();

    let prefix = shared::testkit::unique_prefix("dmap-s3");
    let (amqp, redis) = (shared::testkit::amqp_url(), shared::testkit::redis_url());
    let fleet = config(&["--prefix", &prefix, "--amqp", &amqp, "--redis", &redis]);
    let running = InProcessFleet::start_with(
        fleet,
        Services {
            coordinators: 0,
            worker_tag: "dmap-s3",
            ..Services::one_each(8)
        },
    )
    .await
    .unwrap();
    let data = dir.path().join("coordinator-data");
    let log = std::fs::File::create(dir.path().join("coordinator.log")).unwrap();
    let coordinator = Spawned(
        std::process::Command::new(distributed::MAPFLEET)
            .args([
                "coordinator",
                "--prefix",
                &prefix,
                "--amqp",
                &amqp,
                "--redis",
                &redis,
            ])
            .args(["--s3-endpoint", &s3.url])
            .arg("--data-dir")
            .arg(&data)
            .env("AWS_ACCESS_KEY_ID", aws_support::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", aws_support::SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env_remove("MAPFLEET_OBJECT_STORE")
            .env("MAPFLEET_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let def = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "MaxConcurrency": 8,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "MANIFEST"},
            "Parameters": {"Bucket": "inventory", "Key.$": "$.manifest"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Echo", "States": {"Echo": {"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "End": true}}},
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "results", "Prefix": "inventory"}},
        "End": true}}});
    let def_path = dir.path().join("def.json");
    std::fs::write(&def_path, def.to_string()).unwrap();
    let input_path = dir.path().join("input.json");
    std::fs::write(
        &input_path,
        json!({"manifest": "rides/daily/manifest.json"}).to_string(),
    )
    .unwrap();
    let args: Vec<String> = vec![
        "run".into(),
        def_path.to_str().unwrap().into(),
        "--input".into(),
        input_path.to_str().unwrap().into(),
        "--describe".into(),
        "--redis".into(),
        redis.clone(),
        "--amqp".into(),
        amqp.clone(),
        "--prefix".into(),
        prefix.clone(),
    ];
    let described = tokio::task::block_in_place(|| mapfleet(&args));
    drop(coordinator);
    running.stop().await;
    shared::testkit::teardown(&amqp, &redis, &prefix)
        .await
        .unwrap();
    let d = described.unwrap();
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let output: serde_json::Value = serde_json::from_str(d["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        output["ResultWriterDetails"]["Bucket"], "results",
        "{output}"
    );
    let manifest_key = output["ResultWriterDetails"]["Key"].as_str().unwrap();
    let manifest = store.get("results", manifest_key, 1 << 20).await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let mut keys = Vec::new();
    for file in manifest["ResultFiles"]["SUCCEEDED"].as_array().unwrap() {
        let text = store
            .get("results", file["Key"].as_str().unwrap(), 1 << 24)
            .await
            .unwrap();
        assert_eq!(file["Size"], json!(text.bytes.len()), "{manifest}");
        let records: Vec<serde_json::Value> = serde_json::from_slice(&text.bytes).unwrap();
        for r in records {
            assert_eq!(r["Status"], "SUCCEEDED", "{r}");
            let input: serde_json::Value =
                serde_json::from_str(r["Input"].as_str().unwrap()).unwrap();
            assert_eq!(input["Bucket"], "rides", "{r}");
            keys.push(input["Key"].as_str().unwrap().to_string());
        }
    }
    keys.sort();
    let expected: Vec<String> = (0..30).map(|i| format!("photos/{i:03}.jpg")).collect();
    assert_eq!(keys, expected, "each item's record exactly once");
    assert!(
        manifest["ResultFiles"]["FAILED"]
            .as_array()
            .is_none_or(|f| f.is_empty()),
        "{manifest}"
    );
    assert!(
        !data.join("buckets").exists(),
        "nothing in the local buckets"
    );
}
