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

/// What a map run keeps in Redis per child, at one moment (see `fleet::keys`).
#[derive(Debug, Default, Clone, Copy)]
struct PerChild {
    /// Step records (`shared`'s `P:{ARN}:cursor:CURSOR` hashes), counted by SCAN.
    step_records: usize,
    /// Entries of the execution's `cursors` hash.
    cursors: usize,
    /// The prefix's timers (re-drive and timeout timers of published steps).
    timers: usize,
    /// Running children's inputs (the Map's `items` hash).
    inputs: usize,
    /// Running children (the Map's `live` set).
    live: usize,
    /// Ended children's records not yet in a result file, both statuses.
    records: usize,
}

impl PerChild {
    async fn read(
        conn: &mut shared::redis_conn::RedisConn,
        keys: &coordinator::fleet::keys::FleetKeys,
        arn: &str,
    ) -> PerChild {
        use redis::AsyncCommands;
        let pattern = format!("{}*", keys.shared.cursor(arn, ""));
        let step_records = {
            let mut iter = conn.scan_match::<_, String>(&pattern).await.unwrap();
            let mut n = 0;
            while let Some(k) = futures_lite::StreamExt::next(&mut iter).await {
                k.unwrap();
                n += 1;
            }
            n
        };
        // The Map is the start state: its cursor is the root's, "".
        let (cursors, timers, inputs, live, succeeded, failed): (
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
        ) = redis::pipe()
            .hlen(keys.cursors(arn))
            .zcard(keys.shared.timers())
            .hlen(keys.items(arn, ""))
            .scard(keys.live(arn, ""))
            .hlen(keys.run_records(arn, "", 'S'))
            .hlen(keys.run_records(arn, "", 'F'))
            .query_async(conn)
            .await
            .unwrap();
        PerChild {
            step_records,
            cursors,
            timers,
            inputs,
            live,
            records: succeeded + failed,
        }
    }

    fn max(self, o: PerChild) -> PerChild {
        PerChild {
            step_records: self.step_records.max(o.step_records),
            cursors: self.cursors.max(o.cursors),
            timers: self.timers.max(o.timers),
            inputs: self.inputs.max(o.inputs),
            live: self.live.max(o.live),
            records: self.records.max(o.records),
        }
    }
}

/// A step some child awaits right now (from its step record), if any.
async fn an_awaited_step(
    conn: &mut shared::redis_conn::RedisConn,
    keys: &coordinator::fleet::keys::FleetKeys,
    arn: &str,
) -> Option<shared::messages::StepId> {
    use redis::AsyncCommands;
    let head = keys.shared.cursor(arn, "");
    let key = {
        let mut iter = conn
            .scan_match::<_, String>(format!("{head}*"))
            .await
            .unwrap();
        futures_lite::StreamExt::next(&mut iter).await?.unwrap()
    };
    let (seq, attempt, phase): (Option<u64>, Option<u32>, Option<String>) = redis::cmd("HMGET")
        .arg(&key)
        .arg(&["seq", "attempt", "phase"])
        .query_async(conn)
        .await
        .unwrap();
    (phase.as_deref() == Some("awaiting")).then_some(())?;
    Some(shared::messages::StepId {
        execution: arn.to_string(),
        cursor: key.strip_prefix(&head)?.to_string(),
        seq: seq?,
        attempt: attempt?,
    })
}

/// Issue 8 (streaming at scale): a Distributed Map of 6,000 items with MaxConcurrency 8 keeps
/// in Redis, while it runs and once it ended, per-child state for its running children only
/// (step records, cursors, timers, inputs, the live set), and ended children's records for
/// one result file at most: a finished child's keys are dropped once its record is
/// committed. Every item's record is in the result files exactly once; DescribeMapRun and
/// ListExecutions with the map run answer from the run's facts and files; and an outcome
/// that comes late for a compacted child (published on the outcomes queue as a worker
/// would) is counted as a duplicate and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_children_leave_nothing_of_their_own_in_redis() {
    use coordinator::driver::Status;
    use coordinator::fleet::maprun::FLUSH_RECORDS;
    use redis::AsyncCommands;
    const ITEMS: usize = 6000;
    const CONCURRENCY: usize = 8;
    common::in_process::log_to_file("mapfleet-dmap-fleet");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let prefix = shared::testkit::unique_prefix("dmap-compact");
    let (amqp, redis_url) = (shared::testkit::amqp_url(), shared::testkit::redis_url());
    let fleet = config(&["--prefix", &prefix, "--amqp", &amqp, "--redis", &redis_url]);
    let topo = fleet.topology();
    let running = InProcessFleet::start_opts(
        fleet,
        Services {
            worker_tag: "dmap-compact",
            ..Services::one_each(CONCURRENCY)
        },
        ServiceOptions {
            map_runs: local_buckets(&data),
            ..ServiceOptions::default()
        },
    )
    .await
    .unwrap();
    let lines: String = (0..ITEMS).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    distributed::write_object(&data, "in/items.jsonl", lines.as_bytes());
    std::fs::create_dir_all(data.join("buckets/out")).unwrap();
    let def = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map",
        "MaxConcurrency": CONCURRENCY,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSONL"},
            "Parameters": {"Bucket": "in", "Key": "items.jsonl"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Echo", "States": {"Echo": {"Type": "Task", "Resource": common::ECHO, "End": true}}},
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "out", "Prefix": "run"},
            "WriterConfig": {"OutputType": "JSONL", "Transformation": "NONE"}},
        "End": true}}});
    let mut conn = shared::redis_schema::connect(&redis_url).await.unwrap();
    let keys = coordinator::fleet::keys::FleetKeys::new(&prefix);
    let arn = running.submit("compact", &def, json!({})).await.unwrap();

    // While it runs.
    let (mut peak, mut samples, mut late) = (PerChild::default(), 0, None);
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while running.client.status(&arn).await.unwrap() == Status::Running {
        assert!(std::time::Instant::now() < limit, "still running: {peak:?}");
        peak = peak.max(PerChild::read(&mut conn, &keys, &arn).await);
        samples += 1;
        if late.is_none() {
            late = an_awaited_step(&mut conn, &keys, &arn).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ended = running
        .wait(&arn, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(ended.status, Status::Succeeded, "{:?}", ended.error);
    // SCAN may see a key deleted and one added while it walks: twice the concurrency.
    let bound = 2 * CONCURRENCY;
    assert!(
        samples >= 5 && peak.live >= 1 && peak.step_records >= 1,
        "the run was seen running ({samples} samples): {peak:?}"
    );
    let per_child = [
        peak.step_records,
        peak.cursors,
        peak.timers,
        peak.inputs,
        peak.live,
    ];
    assert!(
        per_child.iter().all(|n| *n <= bound),
        "per-child state beyond the running children (MaxConcurrency {CONCURRENCY}): {peak:?}"
    );
    assert!(
        peak.records <= FLUSH_RECORDS,
        "more than a result file's records waited: {peak:?}"
    );

    // Once it ended, nothing of any child is left.
    let after = PerChild::read(&mut conn, &keys, &arn).await;
    assert_eq!(
        [
            after.step_records,
            after.cursors,
            after.timers,
            after.inputs,
            after.live,
            after.records
        ],
        [0; 6],
        "{after:?}"
    );
    let history: usize = conn.llen(keys.history(&arn)).await.unwrap();
    assert!(history < 20, "{history} events: children write none");

    // Each item's record exactly once, and the run's views from its facts and files.
    let output = ended.output.clone().unwrap();
    let manifest_key = output["ResultWriterDetails"]["Key"].as_str().unwrap();
    let read = |bucket: &str, key: &str| -> Result<Vec<u8>, String> {
        std::fs::read(data.join("buckets").join(bucket).join(key)).map_err(|e| e.to_string())
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&read("out", manifest_key).unwrap()).unwrap();
    let files = manifest["ResultFiles"]["SUCCEEDED"].as_array().unwrap();
    assert!(
        files.len() >= 2,
        "a file at {FLUSH_RECORDS} records: {manifest}"
    );
    let mut seen = vec![0u32; ITEMS];
    for f in files {
        let text = read("out", f["Key"].as_str().unwrap()).unwrap();
        for line in String::from_utf8(text).unwrap().lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let input: serde_json::Value =
                serde_json::from_str(record["Input"].as_str().unwrap()).unwrap();
            seen[input["i"].as_u64().unwrap() as usize] += 1;
        }
    }
    let wrong: Vec<usize> = (0..ITEMS).filter(|i| seen[*i] != 1).collect();
    assert!(
        wrong.is_empty(),
        "items not recorded exactly once: {wrong:?}"
    );
    let runs = running.client.list_map_runs(&arn).await.unwrap();
    let run_arn = runs[0]["mapRunArn"].as_str().unwrap().to_string();
    let described = running.client.describe_map_run(&run_arn).await.unwrap();
    assert_eq!(described["status"], "SUCCEEDED", "{described}");
    assert_eq!(
        described["executionCounts"]["succeeded"], ITEMS,
        "{described}"
    );
    let children = running
        .client
        .map_run_children(&run_arn, None, read)
        .await
        .unwrap();
    let names: std::collections::HashSet<&str> = children
        .iter()
        .filter(|c| c["status"] == "SUCCEEDED")
        .filter_map(|c| c["executionArn"].as_str())
        .collect();
    assert_eq!(names.len(), ITEMS, "ListExecutions of the map run");

    // A late outcome for a compacted child: counted as a duplicate, nothing changes.
    let late = late.expect("a step awaited while the run ran");
    let duplicates = shared::metrics::get().outcome_duplicates.get();
    let amqp_conn = std::sync::Arc::new(
        shared::amqp::connect(&amqp, "late-outcome", std::time::Duration::from_secs(15))
            .await
            .unwrap(),
    );
    let publisher =
        shared::amqp::Publisher::new(amqp_conn.clone(), shared::amqp::PublisherOptions::default())
            .await
            .unwrap();
    let step = shared::messages::StepMessage::new(late.clone(), common::ECHO, json!({"i": -1}));
    let outcome = shared::messages::OutcomeMessage::for_step(
        &step,
        shared::messages::StepResult::Ok {
            output: json!({"i": -1}),
        },
        "late-worker",
        shared::messages::Timings::default(),
    );
    publisher.publish_outcome(&topo, &outcome).await.unwrap();
    let counted = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while shared::metrics::get().outcome_duplicates.get() == duplicates {
        assert!(
            std::time::Instant::now() < counted,
            "the late outcome of {late:?} was not counted as a duplicate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let again = running.client.describe(&arn, true).await.unwrap();
    assert_eq!(again.status, Status::Succeeded);
    assert_eq!(
        again.events.len(),
        history,
        "the late outcome wrote no event"
    );
    let left = PerChild::read(&mut conn, &keys, &arn).await;
    assert_eq!(left.step_records, 0, "no child resurrected: {left:?}");
    let inbox: usize = conn.llen(keys.inbox(&arn)).await.unwrap();
    assert_eq!(inbox, 0, "nothing queued for the ended execution");
    let _ = amqp_conn.close(200, "done".into()).await;
    running.stop().await;
    shared::testkit::teardown(&amqp, &redis_url, &prefix)
        .await
        .unwrap();
}
