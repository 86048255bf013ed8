//! Distributed Maps in embedded mode, end to end through the `mapfleet` binary: items read
//! from objects in the local buckets (`<data-dir>/buckets`), results written by the
//! ResultWriter, the Map Run's events and errors. The fixtures and their checks are in
//! `common/distributed.rs` (also run on the fleet by `distributed_map_fleet.rs`).

#[path = "../../../worker/tests/aws_support/mod.rs"]
mod aws_support;
#[path = "common/distributed.rs"]
mod distributed;
#[path = "common/models.rs"]
mod models;

use std::path::Path;
use std::process::Command;

use distributed::{MAPFLEET, fixtures, run_fixture};
use serde_json::{Value, json};

#[test]
fn distributed_map_fixtures() {
    let paths = fixtures();
    assert!(paths.len() >= 8, "{} fixtures", paths.len());
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| {
            let dir = tempfile::tempdir().unwrap();
            run_fixture(p, &dir.path().join("data"), &[])
                .err()
                .map(|e| format!("{}: {e}", p.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `mapfleet demo --distributed`: the workshop's batch as a Distributed Map over a CSV
/// manifest, embedded; every photo is a child execution with its record in the results
/// bucket, and of the two photos of one face exactly one is accepted.
#[test]
fn rider_photo_demo_as_a_distributed_map() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(models::models_dir(), data.join("models")).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rider-photos");
    let out = Command::new(MAPFLEET)
        .args(["demo", "--distributed", "--examples"])
        .arg(&examples)
        .arg("--data-dir")
        .arg(&data)
        .env_remove("MAPFLEET_REDIS_URL")
        .env_remove("MAPFLEET_AMQP_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    let details = &output["results"]["ResultWriterDetails"];
    assert_eq!(
        details["Bucket"],
        json!("mapfleet-rider-results"),
        "{output}"
    );
    let results = data.join("buckets/mapfleet-rider-results");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(results.join(details["Key"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["ResultFiles"]["FAILED"], json!([]), "{manifest}");
    let files = manifest["ResultFiles"]["SUCCEEDED"].as_array().unwrap();
    let mut outcome = std::collections::BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(results.join(f["Key"].as_str().unwrap())).unwrap();
        for r in serde_json::from_str::<Vec<Value>>(&text).unwrap() {
            let out: Value = serde_json::from_str(r["Output"].as_str().unwrap()).unwrap();
            // A rejected photo's notification: `errorInfo.messageToSend.title` is the error.
            let error = out["errorInfo"]["messageToSend"]["title"]
                .as_str()
                .unwrap_or("accepted")
                .to_string();
            outcome.insert(out["userId"].as_str().unwrap().to_string(), error);
        }
    }
    assert_eq!(outcome.len(), 5, "{outcome:?}");
    for user in ["user_b", "user_c", "user_d"] {
        assert_eq!(
            outcome[user], "PhotoDoesNotMeetRequirementError",
            "{outcome:?}"
        );
    }
    let mut same_face = [outcome["user_a"].as_str(), outcome["user_e"].as_str()];
    same_face.sort();
    assert_eq!(
        same_face,
        ["FaceAlreadyExistsError", "accepted"],
        "{outcome:?}"
    );
}

/// `mapfleet run --s3-endpoint` in this process (the real binary, no fleet): a Distributed Map
/// reads its JSONL items from an S3-compatible server (the worker's in-process one) and
/// writes its result files there, each item's record exactly once; nothing goes to the data
/// dir's local buckets. A missing items object is `States.ItemReaderFailed` naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_reads_items_and_writes_results_through_s3() {
    use worker::store::ObjectStore;
    let dir = tempfile::tempdir().unwrap();
    let s3 = aws_support::start_s3(&dir.path().join("s3")).await;
    let store = worker::store::S3Store::new(&aws_support::sdk_config().await, Some(&s3.url));
    for bucket in ["items", "results"] {
        store.create_bucket(bucket).await.unwrap();
    }
    let lines: String = (0..50).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    store
        .put(
            "items",
            "in/items.jsonl",
            lines.into_bytes(),
            "application/jsonl",
        )
        .await
        .unwrap();
    let def = |key: &str| {
        json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "MaxConcurrency": 8,
            "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "JSONL"},
                "Parameters": {"Bucket": "items", "Key": key}},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                "StartAt": "Echo", "States": {"Echo": {"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "End": true}}},
            "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {"Bucket": "results", "Prefix": "embedded"}},
            "End": true}}})
    };
    let data = dir.path().join("data");
    let run = |key: &str| -> Value {
        let def_path = dir.path().join("def.json");
        std::fs::write(&def_path, def(key).to_string()).unwrap();
        let out = Command::new(MAPFLEET)
            .arg("run")
            .arg(&def_path)
            .arg("--describe")
            .arg("--data-dir")
            .arg(&data)
            .args(["--s3-endpoint", &s3.url])
            .env("AWS_ACCESS_KEY_ID", aws_support::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", aws_support::SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env_remove("MAPFLEET_OBJECT_STORE")
            .env_remove("MAPFLEET_REDIS_URL")
            .env_remove("MAPFLEET_AMQP_URL")
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "mapfleet run: no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let d = tokio::task::block_in_place(|| run("in/items.jsonl"));
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    let output: Value = serde_json::from_str(d["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        output["ResultWriterDetails"]["Bucket"], "results",
        "{output}"
    );
    let manifest_key = output["ResultWriterDetails"]["Key"].as_str().unwrap();
    let manifest = store.get("results", manifest_key, 1 << 20).await.unwrap();
    let manifest: Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let mut seen = Vec::new();
    for file in manifest["ResultFiles"]["SUCCEEDED"].as_array().unwrap() {
        let text = store
            .get("results", file["Key"].as_str().unwrap(), 1 << 24)
            .await
            .unwrap();
        assert_eq!(file["Size"], json!(text.bytes.len()), "{manifest}");
        let records: Vec<Value> = serde_json::from_slice(&text.bytes).unwrap();
        for r in records {
            assert_eq!(r["Status"], "SUCCEEDED", "{r}");
            let input: Value = serde_json::from_str(r["Input"].as_str().unwrap()).unwrap();
            seen.push(input["i"].as_u64().unwrap());
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..50).collect::<Vec<u64>>(),
        "each item's record exactly once"
    );
    assert!(
        !data.join("buckets/results").exists() && !data.join("buckets/items").exists(),
        "nothing in the local buckets"
    );

    let missing = tokio::task::block_in_place(|| run("in/missing.jsonl"));
    assert_eq!(missing["status"], "FAILED", "{missing}");
    assert_eq!(missing["error"], "States.ItemReaderFailed", "{missing}");
    assert!(
        missing["cause"]
            .as_str()
            .is_some_and(|c| c.contains("missing.jsonl")),
        "{missing}"
    );
}
