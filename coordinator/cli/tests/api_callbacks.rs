//! `.waitForTaskToken` Tasks through `mapfleet serve`, on the fleet and embedded, driven by a
//! boto3 client (`tests/api/callback_client.py`): a Map of 8 items whose Task waits for its
//! token, read from GetExecutionHistory and answered with SendTaskSuccess; one item's
//! SendTaskFailure is caught by a Catch, one's first token is left to time out with
//! States.HeartbeatTimeout and retried, one sends heartbeats past HeartbeatSeconds; a token
//! answered twice, a stale, a forged and a spent token get AWS's errors. The fleet's Map
//! uses `lambda:invoke.waitForTaskToken` (FunctionName `echo`), the embedded one the
//! mapfleet task's own form; a restart of embedded serve ends a waiting token.

mod api;
mod common;
#[path = "api/fleet.rs"]
mod fleet;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use api::*;
use common::TestExecutor;
use fleet::Fleet;

const CLIENT: &str = "tests/api/callback_client.py";
const ITEMS: usize = 8;
const REJECT: usize = 1;
const STALL: usize = 2;
const BEAT: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_answers_task_tokens_of_a_map_on_the_fleet() {
    let prefix = shared::testkit::unique_prefix("api-callbacks");
    let fleet = Fleet::start(&prefix, Arc::new(TestExecutor::default())).await;
    let keys = format!("{KEY_ID}:{SECRET}");
    let serve = Serve::fleet(
        &prefix,
        &[],
        &[("MAPFLEET_API_KEYS", &keys), ("NO_COLOR", "1")],
    );
    let url = serve.url.clone();
    let result = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::spawn(async move { scenario(&url, Form::Lambda).await }),
    )
    .await;
    drop(serve);
    fleet.stop(&prefix).await;
    match result.expect("the scenario took over 4 minutes") {
        Ok(()) => {}
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_answers_task_tokens_of_a_map_embedded() {
    let data = tempfile::tempdir().expect("temp dir");
    let keys = format!("{KEY_ID}:{SECRET}");
    let serve = Serve::embedded(
        data.path(),
        &[],
        &[("MAPFLEET_API_KEYS", &keys), ("NO_COLOR", "1")],
    );
    let result =
        tokio::time::timeout(Duration::from_secs(240), scenario(&serve.url, Form::Task)).await;
    drop(serve);
    result.expect("the scenario took over 4 minutes");
}

/// The events of `arn`'s history of type `kind`.
async fn events(aws: &Aws, arn: &str, kind: &str) -> Vec<Value> {
    let h = aws
        .ok(&["get-execution-history", "--execution-arn", arn])
        .await;
    h["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == kind)
        .cloned()
        .collect()
}

/// How the Task names its integration.
#[derive(Clone, Copy)]
enum Form {
    /// `arn:mapfleet:task:::echo.waitForTaskToken`.
    Task,
    /// `arn:aws:states:::lambda:invoke.waitForTaskToken`, FunctionName `echo`.
    Lambda,
}

impl Form {
    /// The Task's Resource and Parameters giving the integration `{"i": ..., "token": ...}`,
    /// and its (resourceType, resource) in history.
    fn task(self) -> (Value, Value, (&'static str, &'static str)) {
        let payload = json!({"i.$": "$.i", "token.$": "$$.Task.Token"});
        match self {
            Form::Task => (
                json!("arn:mapfleet:task:::echo.waitForTaskToken"),
                payload,
                ("mapfleet", "echo.waitForTaskToken"),
            ),
            Form::Lambda => (
                json!("arn:aws:states:::lambda:invoke.waitForTaskToken"),
                json!({
                    "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:echo",
                    "Payload": payload
                }),
                ("lambda", "invoke.waitForTaskToken"),
            ),
        }
    }
}

async fn scenario(url: &str, form: Form) {
    let aws = Aws::new(url);
    let dir = tempfile::tempdir().expect("temp dir");
    let (resource, parameters, (resource_type, resource_name)) = form.task();
    let map = json!({
        "StartAt": "Each",
        "States": {"Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "StartAt": "Ask",
                "States": {
                    "Ask": {
                        "Type": "Task",
                        "Resource": resource,
                        "Parameters": parameters,
                        "HeartbeatSeconds": 3,
                        "TimeoutSeconds": 120,
                        "Retry": [{
                            "ErrorEquals": ["States.HeartbeatTimeout"],
                            "IntervalSeconds": 1,
                            "MaxAttempts": 2
                        }],
                        "Catch": [{
                            "ErrorEquals": ["Callback.Rejected"],
                            "ResultPath": "$.error",
                            "Next": "Rejected"
                        }],
                        "End": true
                    },
                    "Rejected": {"Type": "Pass", "End": true}
                }
            },
            "End": true
        }}
    });
    let machine = aws
        .ok(&create(
            "Callbacks",
            &write(dir.path(), "callbacks.json", &map),
        ))
        .await["stateMachineArn"]
        .as_str()
        .expect("stateMachineArn")
        .to_string();
    let mut cmd = tokio::process::Command::new(client("python3"));
    cmd.arg(Path::new(CLIENT)).args([
        url,
        &machine,
        &ITEMS.to_string(),
        &REJECT.to_string(),
        &STALL.to_string(),
        &BEAT.to_string(),
    ]);
    aws.env(&mut cmd);
    let out = cmd.output().await.expect("run the boto3 client");
    assert!(
        out.status.success(),
        "the boto3 client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the client's report");
    assert_eq!(seen["status"], "SUCCEEDED", "{seen}");
    assert_eq!(
        seen["tokens"][STALL.to_string()],
        2,
        "a new token for the retry: {seen}"
    );
    assert_eq!(
        seen["tokens"][BEAT.to_string()],
        1,
        "heartbeats kept it: {seen}"
    );
    for (what, code) in [
        ("answered_again", "TaskTimedOut"),
        ("stalled_success", "TaskTimedOut"),
        ("stalled_heartbeat", "TaskTimedOut"),
        ("forged", "InvalidToken"),
        ("garbage", "InvalidToken"),
        ("after_end", "TaskTimedOut"),
    ] {
        assert_eq!(seen[what], code, "{what}: {seen}");
    }
    let exec = seen["execution"].as_str().expect("execution").to_string();
    let d = aws
        .ok(&["describe-execution", "--execution-arn", &exec])
        .await;
    let output: Value = serde_json::from_str(d["output"].as_str().expect("output")).unwrap();
    let want: Vec<Value> = (0..ITEMS)
        .map(|i| {
            if i == REJECT {
                json!({"i": i, "error": {"Error": "Callback.Rejected", "Cause": "no"}})
            } else {
                json!({"i": i, "square": i * i})
            }
        })
        .collect();
    assert_eq!(output, json!(want), "the answers, in item order");

    let scheduled = events(&aws, &exec, "TaskScheduled").await;
    assert_eq!(scheduled.len(), ITEMS + 1, "one retry");
    let details = &scheduled[0]["taskScheduledEventDetails"];
    assert_eq!(
        (
            &details["resourceType"],
            &details["resource"],
            &details["heartbeatInSeconds"]
        ),
        (&json!(resource_type), &json!(resource_name), &json!(3)),
        "{details}"
    );
    assert_eq!(events(&aws, &exec, "TaskStarted").await.len(), ITEMS + 1);
    let submitted = events(&aws, &exec, "TaskSubmitted").await;
    assert!(!submitted.is_empty(), "the integration's results show");
    let out = &submitted[0]["taskSubmittedEventDetails"];
    assert_eq!(out["resource"], resource_name, "{out}");
    if let Form::Lambda = form {
        let lambda = out["output"].as_str().unwrap_or_default();
        assert!(
            lambda.contains("\"StatusCode\":200"),
            "Lambda's response: {out}"
        );
    }
    assert_eq!(
        events(&aws, &exec, "TaskSucceeded").await.len(),
        ITEMS - 1,
        "all but the rejected one"
    );
    let failed = events(&aws, &exec, "TaskFailed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        failed[0]["taskFailedEventDetails"]["error"],
        "Callback.Rejected"
    );
    let timed_out = events(&aws, &exec, "TaskTimedOut").await;
    assert_eq!(timed_out.len(), 1, "{timed_out:?}");
    assert_eq!(
        timed_out[0]["taskTimedOutEventDetails"]["error"],
        "States.HeartbeatTimeout"
    );
}

/// The tokens in `arn`'s TaskScheduled events, in order.
async fn tokens(aws: &Aws, arn: &str) -> Vec<String> {
    events(aws, arn, "TaskScheduled")
        .await
        .iter()
        .map(|e| {
            let p = e["taskScheduledEventDetails"]["parameters"]
                .as_str()
                .expect("parameters");
            let p: Value = serde_json::from_str(p).expect("parameters are JSON");
            p["Payload"]["token"]
                .as_str()
                .or(p["token"].as_str())
                .expect("a token")
                .to_string()
        })
        .collect()
}

/// Waits until `arn` has `n` TaskScheduled events; returns their tokens.
async fn wait_for_tokens(aws: &Aws, arn: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = tokens(aws, arn).await;
        if t.len() >= n {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} tokens never came: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A task waiting for its token when embedded serve is killed: the restart ends its
/// execution FAILED `Mapfleet.ServeRestarted` and its token with it (TaskTimedOut); a
/// redrive runs the Task again with a new token, which completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_of_embedded_serve_ends_waiting_tokens_and_a_redrive_hands_out_new_ones() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = format!("{KEY_ID}:{SECRET}");
    let env = [("MAPFLEET_API_KEYS", keys.as_str())];
    let mut serve = Serve::embedded(data.path(), &[], &env);
    let aws = Aws::new(&serve.url);
    let def = json!({"StartAt": "Ask", "States": {"Ask": {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}},
        "End": true}}});
    let machine = aws
        .ok(&create("Waits", &write(dir.path(), "waits.json", &def)))
        .await["stateMachineArn"]
        .as_str()
        .unwrap()
        .to_string();
    let exec = aws.ok(&start(&machine, "waiting", "{}")).await["executionArn"]
        .as_str()
        .unwrap()
        .to_string();
    let first = wait_for_tokens(&aws, &exec, 1).await.remove(0);
    serve.child.kill().expect("kill -9 serve");
    serve.child.wait().unwrap();
    drop(serve);

    let serve = Serve::embedded(data.path(), &[], &env);
    let aws = Aws::new(&serve.url);
    let d = aws
        .ok(&["describe-execution", "--execution-arn", &exec])
        .await;
    assert_eq!(
        (d["status"].as_str(), d["error"].as_str()),
        (Some("FAILED"), Some("Mapfleet.ServeRestarted")),
        "{d}"
    );
    let answer = |token: &str| {
        [
            "send-task-success".to_string(),
            "--task-token".into(),
            token.to_string(),
            "--task-output".into(),
            r#"{"answered": true}"#.into(),
        ]
    };
    let old = answer(&first);
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    aws.fails(&[], &old, "TaskTimedOut").await;

    aws.ok(&["redrive-execution", "--execution-arn", &exec])
        .await;
    let second = wait_for_tokens(&aws, &exec, 2).await.remove(1);
    assert_ne!(first, second, "a new token");
    aws.fails(&[], &old, "TaskTimedOut").await;
    let new = answer(&second);
    let new: Vec<&str> = new.iter().map(String::as_str).collect();
    aws.ok(&new).await;
    let d = wait_for_status(&aws, &exec, "SUCCEEDED").await;
    assert_eq!(d["output"], r#"{"answered":true}"#, "{d}");
}
