//! Activities through `mapfleet serve` on the fleet, with the real `aws` CLI and a boto3
//! activity worker (`tests/api/activity_worker.py`): a Map of 20 items whose Task is an
//! activity, one item's first try left to time out with States.HeartbeatTimeout and retried;
//! SendTaskFailure caught by a Catch; forged and spent tokens; the activity CRUD calls.
//! The harness: the fleet in this process (`api/fleet.rs`), `mapfleet serve` as the binary
//! and the clients (`api/mod.rs`).

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

const WORKER: &str = "tests/api/activity_worker.py";
/// The activities the scenario creates.
const ACTIVITIES: [&str; 3] = ["squares", "failing", "spare"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_boto3_activity_worker_serves_a_map_and_tokens_complete_tasks() {
    let prefix = shared::testkit::unique_prefix("api-activities");
    let fleet = Fleet::start(&prefix, Arc::new(TestExecutor::default())).await;
    let keys = format!("{KEY_ID}:{SECRET}");
    let amqp = shared::testkit::amqp_url();
    let serve = Serve::fleet(
        &prefix,
        &["--amqp", &amqp, "--activity-poll-secs", "2"],
        &[("MAPFLEET_API_KEYS", &keys), ("NO_COLOR", "1")],
    );
    // Run apart, so that a failing check still lets the fleet, its queues and the
    // activities' queues be cleaned up.
    let url = serve.url.clone();
    let result = tokio::time::timeout(
        Duration::from_secs(420),
        tokio::spawn(async move { scenario(&url).await }),
    )
    .await;
    drop(serve);
    delete_activity_queues(&prefix).await;
    fleet.stop(&prefix).await;
    match result.expect("the scenario took over 7 minutes") {
        Ok(()) => {}
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The activities' queues (DeleteActivity deletes them; this is for a scenario that failed
/// before it got there).
async fn delete_activity_queues(prefix: &str) {
    let conn = shared::amqp::connect(
        &shared::testkit::amqp_url(),
        "api-activities-cleanup",
        Duration::from_secs(10),
    )
    .await
    .expect("the broker");
    let channel = shared::amqp::open_channel(&conn).await.expect("a channel");
    let topo = shared::topology::Topology::new(prefix, 1);
    for name in ACTIVITIES {
        if let Err(e) = shared::topology::delete_activity(&channel, &topo, name).await {
            eprintln!("could not delete the queue of activity {name}: {e}");
        }
    }
    shared::amqp::close(&conn, "cleaned up").await;
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

async fn scenario(url: &str) {
    let aws = Aws::new(url);
    let dir = tempfile::tempdir().expect("temp dir");

    // CRUD: idempotent by name, described, listed in pages, deleted.
    let created = aws
        .ok(&[
            "create-activity",
            "--name",
            "squares",
            "--tags",
            "key=team,value=maps",
        ])
        .await;
    let activity = created["activityArn"]
        .as_str()
        .expect("activityArn")
        .to_string();
    assert_eq!(
        activity, "arn:aws:states:local:000000000000:activity:squares",
        "{created}"
    );
    assert!(created["creationDate"].is_number(), "{created}");
    let again = aws
        .ok(&[
            "create-activity",
            "--name",
            "squares",
            "--tags",
            "key=other,value=x",
        ])
        .await;
    assert_eq!(again, created, "CreateActivity is idempotent by name");
    let tags = ["list-tags-for-resource", "--resource-arn", &activity];
    assert_eq!(
        aws.ok(&tags).await["tags"],
        json!([{"key": "team", "value": "maps"}]),
        "the first call's tags stay"
    );
    aws.ok(&[
        "tag-resource",
        "--resource-arn",
        &activity,
        "--tags",
        "key=stage,value=test",
    ])
    .await;
    aws.ok(&[
        "untag-resource",
        "--resource-arn",
        &activity,
        "--tag-keys",
        "team",
    ])
    .await;
    assert_eq!(
        aws.ok(&tags).await["tags"],
        json!([{"key": "stage", "value": "test"}])
    );
    let described = aws
        .ok(&["describe-activity", "--activity-arn", &activity])
        .await;
    assert_eq!(
        (described["name"].as_str(), &described["creationDate"]),
        (Some("squares"), &created["creationDate"]),
        "{described}"
    );
    aws.fails(
        &[],
        &["create-activity", "--name", "bad name"],
        "InvalidName",
    )
    .await;
    for name in ["failing", "spare"] {
        aws.ok(&["create-activity", "--name", name]).await;
    }
    let listed = aws.ok(&["list-activities", "--page-size", "1"]).await;
    let names: Vec<&str> = listed["activities"]
        .as_array()
        .expect("activities")
        .iter()
        .map(|a| a["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["failing", "spare", "squares"],
        "pages of one: {listed}"
    );
    let spare = activity.replace("squares", "spare");
    aws.ok(&["delete-activity", "--activity-arn", &spare]).await;
    aws.fails(
        &[],
        &["describe-activity", "--activity-arn", &spare],
        "ActivityDoesNotExist",
    )
    .await;
    aws.fails(
        &[],
        &["get-activity-task", "--activity-arn", &spare],
        "ActivityDoesNotExist",
    )
    .await;
    aws.fails(
        &[],
        &["list-tags-for-resource", "--resource-arn", &spare],
        "ResourceNotFound",
    )
    .await;
    aws.fails(
        &[],
        &["describe-activity", "--activity-arn", "not-an-arn"],
        "InvalidArn",
    )
    .await;

    // A Map of 20 items over the activity, served by the boto3 worker. Item 7's first try
    // gets no heartbeat: States.HeartbeatTimeout, retried; item 3 beats past the limit.
    let map = json!({
        "StartAt": "Each",
        "States": {"Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "StartAt": "Square",
                "States": {"Square": {
                    "Type": "Task",
                    "Resource": activity,
                    "HeartbeatSeconds": 2,
                    "TimeoutSeconds": 120,
                    "Retry": [{
                        "ErrorEquals": ["States.HeartbeatTimeout"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 2
                    }],
                    "End": true
                }}
            },
            "End": true
        }}
    });
    let machine = aws
        .ok(&create("Squares", &write(dir.path(), "squares.json", &map)))
        .await["stateMachineArn"]
        .as_str()
        .expect("stateMachineArn")
        .to_string();
    let items: Vec<Value> = (0..20).map(|i| json!({ "i": i })).collect();
    let input = json!({ "items": items }).to_string();
    let exec = aws.ok(&start(&machine, "twenty", &input)).await["executionArn"]
        .as_str()
        .expect("executionArn")
        .to_string();
    let mut cmd = tokio::process::Command::new(client("python3"));
    cmd.arg(Path::new(WORKER))
        .args([url, &activity, "20", "7", "3"]);
    aws.env(&mut cmd);
    let out = cmd.output().await.expect("run the boto3 activity worker");
    assert!(
        out.status.success(),
        "the activity worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the worker's report");
    assert_eq!(seen["done"], json!((0..20).collect::<Vec<_>>()), "{seen}");
    assert_eq!(seen["handed"]["7"], 2, "item 7 handed out twice: {seen}");
    assert_eq!(
        seen["handed"]["3"], 1,
        "heartbeats kept item 3 alive: {seen}"
    );
    assert_eq!(
        (
            &seen["stalled_success"],
            &seen["stalled_heartbeat"],
            &seen["answered_again"]
        ),
        (
            &json!("TaskTimedOut"),
            &json!("TaskTimedOut"),
            &json!("TaskTimedOut")
        ),
        "{seen}"
    );
    let d = wait_for_status(&aws, &exec, "SUCCEEDED").await;
    let ran = d["stopDate"].as_f64().unwrap_or(0.0) - d["startDate"].as_f64().unwrap_or(0.0);
    eprintln!(
        "the Map of 20 activity tasks (one retried after its heartbeat timeout) ran in {ran:.1} s"
    );
    let output: Value = serde_json::from_str(d["output"].as_str().expect("output")).unwrap();
    let want: Vec<Value> = (0..20).map(|i| json!({"i": i, "square": i * i})).collect();
    assert_eq!(output, json!(want), "the items' results, in order");
    let timed_out = events(&aws, &exec, "ActivityTimedOut").await;
    assert_eq!(timed_out.len(), 1, "{timed_out:?}");
    assert_eq!(
        timed_out[0]["activityTimedOutEventDetails"]["error"],
        "States.HeartbeatTimeout"
    );
    let started = events(&aws, &exec, "ActivityStarted").await;
    assert_eq!(started.len(), 21, "20 items, one twice");
    assert!(
        started
            .iter()
            .all(|e| e["activityStartedEventDetails"]["workerName"] == "py-worker"),
        "{started:?}"
    );
    let scheduled = events(&aws, &exec, "ActivityScheduled").await;
    assert_eq!(scheduled.len(), 21);
    let details = &scheduled[0]["activityScheduledEventDetails"];
    assert_eq!(
        (
            &details["resource"],
            &details["heartbeatInSeconds"],
            &details["timeoutInSeconds"]
        ),
        (&json!(activity), &json!(2), &json!(120)),
        "{details}"
    );
    assert_eq!(events(&aws, &exec, "ActivitySucceeded").await.len(), 20);

    // SendTaskFailure takes the Catch; the token is spent after; forged tokens are invalid.
    let failing = activity.replace("squares", "failing");
    let caught = json!({
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": failing,
                "Catch": [{"ErrorEquals": ["Custom.Bad"], "ResultPath": "$.error", "Next": "Caught"}],
                "End": true
            },
            "Caught": {"Type": "Pass", "End": true}
        }
    });
    let machine = aws
        .ok(&create(
            "Caught",
            &write(dir.path(), "caught.json", &caught),
        ))
        .await["stateMachineArn"]
        .as_str()
        .expect("stateMachineArn")
        .to_string();
    let exec = aws.ok(&start(&machine, "fails", r#"{"n": 1}"#)).await["executionArn"]
        .as_str()
        .expect("executionArn")
        .to_string();
    let task = aws
        .ok(&[
            "get-activity-task",
            "--activity-arn",
            &failing,
            "--worker-name",
            "cli-worker",
        ])
        .await;
    let token = task["taskToken"].as_str().expect("a task").to_string();
    assert_eq!(
        serde_json::from_str::<Value>(task["input"].as_str().expect("input")).unwrap(),
        json!({"n": 1})
    );
    let (name, secret) = token.split_once('.').expect("the token's form");
    let flipped: String = secret
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let forged = format!("{name}.{flipped}");
    for bad in [forged.as_str(), "not-a-token"] {
        aws.fails(
            &[],
            &[
                "send-task-success",
                "--task-token",
                bad,
                "--task-output",
                "{}",
            ],
            "InvalidToken",
        )
        .await;
    }
    aws.fails(
        &[],
        &[
            "send-task-success",
            "--task-token",
            &token,
            "--task-output",
            "{not json",
        ],
        "InvalidOutput",
    )
    .await;
    aws.ok(&[
        "send-task-failure",
        "--task-token",
        &token,
        "--error",
        "Custom.Bad",
        "--cause",
        "the worker said no",
    ])
    .await;
    aws.fails(
        &[],
        &[
            "send-task-success",
            "--task-token",
            &token,
            "--task-output",
            "{}",
        ],
        "TaskTimedOut",
    )
    .await;
    let d = wait_for_status(&aws, &exec, "SUCCEEDED").await;
    let output: Value = serde_json::from_str(d["output"].as_str().expect("output")).unwrap();
    assert_eq!(
        output,
        json!({"n": 1, "error": {"Error": "Custom.Bad", "Cause": "the worker said no"}})
    );
    let failed = events(&aws, &exec, "ActivityFailed").await;
    assert_eq!(
        failed[0]["activityFailedEventDetails"],
        json!({"error": "Custom.Bad", "cause": "the worker said no"})
    );
    let started = events(&aws, &exec, "ActivityStarted").await;
    assert_eq!(
        started[0]["activityStartedEventDetails"]["workerName"],
        "cli-worker"
    );

    // An activity that does not exist: its step fails before any worker took it.
    let ghost = json!({
        "StartAt": "Work",
        "States": {"Work": {"Type": "Task", "Resource": activity.replace("squares", "ghost"), "End": true}}
    });
    let machine = aws
        .ok(&create("Ghost", &write(dir.path(), "ghost.json", &ghost)))
        .await["stateMachineArn"]
        .as_str()
        .expect("stateMachineArn")
        .to_string();
    let exec = aws.ok(&start(&machine, "ghost", "{}")).await["executionArn"]
        .as_str()
        .expect("executionArn")
        .to_string();
    wait_for_status(&aws, &exec, "FAILED").await;
    let failed = events(&aws, &exec, "ActivityScheduleFailed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        failed[0]["activityScheduleFailedEventDetails"]["error"],
        "States.Runtime"
    );
    let cause = failed[0]["activityScheduleFailedEventDetails"]["cause"]
        .as_str()
        .unwrap_or_default();
    assert!(
        cause.contains(":activity:ghost does not exist"),
        "failed by the coordinator, not by a worker it reached: {cause}"
    );

    // Nothing queued: the long poll ends without a task (after --activity-poll-secs).
    let started = std::time::Instant::now();
    let none = aws
        .ok(&["get-activity-task", "--activity-arn", &failing])
        .await;
    assert!(none.get("taskToken").is_none(), "{none}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "held for the poll"
    );
    for name in ["squares", "failing"] {
        let arn = activity.replace("squares", name);
        aws.ok(&["delete-activity", "--activity-arn", &arn]).await;
    }
    let listed = aws.ok(&["list-activities"]).await;
    assert_eq!(listed["activities"], json!([]), "{listed}");
}
