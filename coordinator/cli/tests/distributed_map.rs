//! Distributed Maps in embedded mode, end to end through the `mapfleet` binary: items read
//! from objects in the local buckets (`<data-dir>/buckets`), results written by the
//! ResultWriter, the Map Run's events and errors. The fixtures and their checks are in
//! `common/distributed.rs` (also run on the fleet by `distributed_map_fleet.rs`).

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
