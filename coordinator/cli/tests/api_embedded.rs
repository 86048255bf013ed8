//! `mapfleet serve` in embedded mode (no `--redis`): the built binary over a temporary data
//! dir, driven by the real `aws` CLI and boto3 through the same scenarios as on the fleet
//! (`tests/api/mod.rs`), plus the workshop's photo batch on the real face models, and what a
//! `kill -9` and a restart keep.

mod api;
mod common;
#[path = "common/models.rs"]
mod models;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use api::{
    Aws, KEY_ID, MAPFLEET, RIDER_PHOTOS, SECRET, Serve, create, start, wait_for_status, write,
};

fn keys() -> String {
    format!("{KEY_ID}:{SECRET}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_cli_and_boto3_drive_state_machines_and_executions_embedded() {
    let data = tempfile::tempdir().expect("temp dir");
    let keys = keys();
    // Debug logging: every request is logged, and no key or signature may show.
    let serve = Serve::embedded(
        data.path(),
        &[],
        &[
            ("MAPFLEET_API_KEYS", &keys),
            ("MAPFLEET_LOG", "debug"),
            ("NO_COLOR", "1"),
        ],
    );
    let result = tokio::time::timeout(Duration::from_secs(420), api::scenario(&serve.url)).await;
    let log = serve.log();
    drop(serve);
    assert!(log.contains("embedded mode"), "{log}");
    assert!(log.contains("request served"), "debug logging is on: {log}");
    for secret in [SECRET, "Signature=", "AWS4-HMAC-SHA256", KEY_ID] {
        assert!(!log.contains(secret), "the log shows {secret:?}");
    }
    result.expect("the scenario took over 7 minutes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_badly_signed_requests_are_refused_embedded() {
    let data = tempfile::tempdir().expect("temp dir");
    api::auth_scenario(&["--data-dir", data.path().to_str().unwrap()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_cli_updates_tags_and_map_runs_embedded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("buckets/out")).unwrap();
    let keys = keys();
    let serve = Serve::embedded(&data, &[], &[("MAPFLEET_API_KEYS", &keys)]);
    let result = tokio::time::timeout(
        Duration::from_secs(300),
        api::updates_tags_and_map_runs(&serve.url, dir.path(), &data),
    )
    .await;
    drop(serve);
    result.expect("the scenario took over 5 minutes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redrive_execution_embedded() {
    let data = tempfile::tempdir().expect("temp dir");
    let keys = keys();
    let serve = Serve::embedded(data.path(), &[], &[("MAPFLEET_API_KEYS", &keys)]);
    let result = tokio::time::timeout(
        Duration::from_secs(300),
        api::redrive_after_stop(&serve.url),
    )
    .await;
    drop(serve);
    result.expect("the redrive scenario took over 5 minutes");
}

/// The AWS-recorded conformance cases through boto3 and `serve` in embedded mode: the same
/// bar as on the fleet ([`api::check_conformance`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_cases_pass_through_boto3_and_the_api_embedded() {
    let data = tempfile::tempdir().expect("temp dir");
    let keys = keys();
    let serve = Serve::embedded(data.path(), &[], &[("MAPFLEET_API_KEYS", &keys)]);
    let out = api::run_conformance(&serve.url).await;
    drop(serve);
    api::check_conformance(&out);
}

/// The workshop's batch (the DynamicInput machine over `batch-input.json`) on the real face
/// models and photos, run by `serve` itself with the worker's photo tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_workshop_batch_runs_in_serve() {
    let data = tempfile::tempdir().expect("temp dir");
    let models = models::models_dir();
    let photos: Vec<String> =
        std::fs::read_dir(models::repo().join("examples/rider-photos/photos"))
            .unwrap()
            .map(|e| e.unwrap().path().to_string_lossy().into_owned())
            .filter(|p| p.ends_with(".jpg"))
            .collect();
    let out = Command::new(MAPFLEET)
        .args(["objects", "put", "mapfleet-rider-photos"])
        .args(&photos)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .expect("run mapfleet objects put");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = keys();
    let models = models.to_string_lossy().into_owned();
    let serve = Serve::embedded(
        data.path(),
        &[],
        &[
            ("MAPFLEET_API_KEYS", &keys),
            ("MAPFLEET_MODELS_DIR", &models),
        ],
    );
    let aws = Aws::new(&serve.url);
    let photos_def = format!(
        "file://{}",
        Path::new(RIDER_PHOTOS).canonicalize().unwrap().display()
    );
    let machine = aws.ok(&create("RiderPhotos", &photos_def)).await["stateMachineArn"]
        .as_str()
        .unwrap()
        .to_string();
    let input =
        std::fs::read_to_string(models::repo().join("examples/rider-photos/batch-input.json"))
            .unwrap();
    let started = Instant::now();
    let arn = aws.ok(&start(&machine, "batch-1", &input)).await["executionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let done = wait_for_status(&aws, &arn, "SUCCEEDED").await;
    eprintln!("the batch took {:?} through serve", started.elapsed());
    let output: Value = serde_json::from_str(done["output"].as_str().unwrap()).unwrap();
    let results = output["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 5, "{output}");
    assert_eq!(
        results[1]["errorInfo"]["messageToSend"]["message"],
        json!("Face is wearing sunglasses"),
        "{output}"
    );
    let accepted = results
        .iter()
        .filter(|r| r["parallelResult"].is_array())
        .count();
    assert_eq!(accepted, 1, "exactly one happy face is accepted: {output}");
    // Its history, in pages of 5, is the whole one; the execution is listed.
    let all = aws
        .ok(&["get-execution-history", "--execution-arn", &arn])
        .await;
    let paged = aws
        .ok(&[
            "get-execution-history",
            "--execution-arn",
            &arn,
            "--page-size",
            "5",
        ])
        .await;
    assert_eq!(all["events"], paged["events"]);
    assert!(all["events"].as_array().unwrap().len() > 30);
    let listed = aws
        .ok(&["list-executions", "--state-machine-arn", &machine])
        .await;
    assert_eq!(listed["executions"][0]["status"], "SUCCEEDED", "{listed}");
}

/// A `kill -9` of serve keeps what it acknowledged: the machine, a succeeded execution and
/// its history, an execution answered a moment before; the ones it ran are FAILED
/// `Mapfleet.ServeRestarted` after the restart, and a redrive resumes one at the state it
/// was in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_keeps_what_serve_acknowledged() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = keys();
    let env = [("MAPFLEET_API_KEYS", keys.as_str())];
    let mut serve = Serve::embedded(data.path(), &[], &env);
    let aws = Aws::new(&serve.url);
    let def = json!({"StartAt": "Which", "States": {
        "Which": {"Type": "Choice", "Choices": [{"Variable": "$.long", "BooleanEquals": true, "Next": "Hold"}], "Default": "Done"},
        "Hold": {"Type": "Wait", "Seconds": 600, "Next": "Done"},
        "Done": {"Type": "Pass", "End": true}}});
    let file = write(dir.path(), "restart.json", &def);
    let machine = aws.ok(&create("Restart", &file)).await["stateMachineArn"]
        .as_str()
        .unwrap()
        .to_string();
    let long = aws.ok(&start(&machine, "long", r#"{"long":true}"#)).await["executionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let short = aws.ok(&start(&machine, "short", r#"{"long":false}"#)).await["executionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let succeeded = wait_for_status(&aws, &short, "SUCCEEDED").await;
    let history = aws
        .ok(&["get-execution-history", "--execution-arn", &short])
        .await;
    // The long one waits at Hold.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = aws
            .ok(&["get-execution-history", "--execution-arn", &long])
            .await;
        if h["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "WaitStateEntered")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the long one never waits: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One more, killed right after its answer.
    let acked = aws.ok(&start(&machine, "acked", r#"{"long":true}"#)).await["executionArn"]
        .as_str()
        .unwrap()
        .to_string();
    serve.child.kill().expect("kill -9 serve");
    serve.child.wait().unwrap();
    drop(serve);

    let serve = Serve::embedded(data.path(), &[], &env);
    assert!(
        serve
            .log()
            .contains("2 execution(s) were running when serve last stopped"),
        "{}",
        serve.log()
    );
    let aws = Aws::new(&serve.url);
    let described = aws
        .ok(&["describe-state-machine", "--state-machine-arn", &machine])
        .await;
    assert_eq!(described["name"], "Restart");
    let again = aws
        .ok(&["describe-execution", "--execution-arn", &short])
        .await;
    assert_eq!(again, succeeded, "the succeeded execution as it was");
    assert_eq!(
        aws.ok(&["get-execution-history", "--execution-arn", &short])
            .await,
        history
    );
    for arn in [&long, &acked] {
        let d = aws
            .ok(&["describe-execution", "--execution-arn", arn])
            .await;
        assert_eq!(
            (d["status"].as_str(), d["error"].as_str()),
            (Some("FAILED"), Some("Mapfleet.ServeRestarted")),
            "{d}"
        );
        assert!(
            d["cause"].as_str().unwrap().contains("serve stopped"),
            "{d}"
        );
        assert_eq!(d["redriveStatus"], "REDRIVABLE", "{d}");
        let events = aws
            .ok(&["get-execution-history", "--execution-arn", arn])
            .await["events"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(events[0]["type"], "ExecutionStarted", "{events:?}");
        let last = events.last().unwrap();
        assert_eq!(last["type"], "ExecutionFailed", "{events:?}");
        assert_eq!(
            last["executionFailedEventDetails"]["error"],
            "Mapfleet.ServeRestarted"
        );
        let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());
    }
    let listed = aws
        .ok(&["list-executions", "--state-machine-arn", &machine])
        .await;
    assert_eq!(
        listed["executions"].as_array().unwrap().len(),
        3,
        "{listed}"
    );
    let failed = aws
        .ok(&[
            "list-executions",
            "--state-machine-arn",
            &machine,
            "--status-filter",
            "FAILED",
        ])
        .await;
    assert_eq!(
        failed["executions"].as_array().unwrap().len(),
        2,
        "{failed}"
    );

    // The long one resumes where it stood: at Hold.
    let before = aws
        .ok(&["get-execution-history", "--execution-arn", &long])
        .await["events"]
        .as_array()
        .unwrap()
        .len();
    aws.ok(&["redrive-execution", "--execution-arn", &long])
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = aws
            .ok(&["get-execution-history", "--execution-arn", &long])
            .await["events"]
            .as_array()
            .unwrap()
            .clone();
        if events.len() >= before + 2 {
            break events;
        }
        assert!(Instant::now() < deadline, "no redrive: {events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(events[before]["type"], "ExecutionRedriven", "{events:?}");
    assert_eq!(events[before + 1]["type"], "WaitStateEntered", "{events:?}");
    assert_eq!(
        events[before + 1]["stateEnteredEventDetails"]["name"],
        "Hold"
    );
    aws.ok(&["stop-execution", "--execution-arn", &long]).await;
    assert_eq!(
        aws.ok(&["describe-execution", "--execution-arn", &long])
            .await["status"],
        "ABORTED",
        "StopExecution answers once the execution is ABORTED"
    );
}

/// EXPRESS machines in embedded mode: StartSyncExecution runs in `serve`'s process, and
/// the same scenario as on the fleet holds (`api::express_scenario`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn express_machines_and_start_sync_execution_embedded() {
    let data = tempfile::tempdir().expect("temp dir");
    let keys = keys();
    let serve = Serve::embedded(data.path(), &[], &[("MAPFLEET_API_KEYS", &keys)]);
    let result =
        tokio::time::timeout(Duration::from_secs(240), api::express_scenario(&serve.url)).await;
    drop(serve);
    result.expect("the scenario took over 4 minutes");
}

/// TestState in embedded mode, an unmocked Task included: it runs in `serve`'s process
/// with the built-in tasks (`api::test_state_scenario`, as on the fleet).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_state_embedded() {
    let data = tempfile::tempdir().expect("temp dir");
    let keys = keys();
    let serve = Serve::embedded(data.path(), &[], &[("MAPFLEET_API_KEYS", &keys)]);
    let result = tokio::time::timeout(
        Duration::from_secs(240),
        api::test_state_scenario(&serve.url),
    )
    .await;
    drop(serve);
    result.expect("the scenario took over 4 minutes");
}
