//! `mapfleet serve` on the fleet, driven by the real `aws` CLI and boto3: a coordinator and a
//! worker (the harness's utility tasks) run in this process on a fresh prefix of the real
//! RabbitMQ and Redis on 127.0.0.1; `mapfleet serve` runs as the built binary on that prefix.
//! The scenarios and clients are shared with embedded mode's test (`tests/api/mod.rs`).

mod api;
mod common;
#[path = "api/fleet.rs"]
mod fleet;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::fleet::service::ServiceOptions;
use serde_json::{Value, json};

use api::{
    Aws, KEY_ID, ROLE, SECRET, Serve, client, create, redrive_twice_with_one_token, start,
    wait_for_status, write,
};
use common::{ECHO, TestExecutor};
use fleet::Fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_cli_and_boto3_drive_state_machines_and_executions_on_the_fleet() {
    let prefix = shared::testkit::unique_prefix("api-fleet");
    let fleet = Fleet::start(&prefix, Arc::new(TestExecutor::default())).await;
    let keys = format!("{KEY_ID}:{SECRET}");
    // Debug logging: every request is logged, and no key or signature may show.
    let serve = Serve::fleet(
        &prefix,
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
    assert!(log.contains("request served"), "debug logging is on: {log}");
    for secret in [SECRET, "Signature=", "AWS4-HMAC-SHA256", KEY_ID] {
        assert!(!log.contains(secret), "the log shows {secret:?}");
    }
    fleet.stop(&prefix).await;
    result.expect("the scenario took over 7 minutes");
}

/// Only requests signed by a configured key pass ([`api::auth_scenario`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_badly_signed_requests_are_refused() {
    let prefix = shared::testkit::unique_prefix("api-auth");
    let redis = shared::testkit::redis_url();
    api::auth_scenario(&["--redis", &redis, "--prefix", &prefix]).await;
    shared::testkit::teardown(&shared::testkit::amqp_url(), &redis, &prefix)
        .await
        .ok();
}

/// The AWS-recorded conformance cases, run through boto3 against `mapfleet serve` on the
/// fleet (`tests/api/boto3_conformance_adapter.py` with the shared runner): the API must give
/// what the CLI gives. The default selection (every AWS-validated, deterministic case with no
/// service integration) must all pass, and with `--events` the history's event types must
/// match at least as often as the embedded run's floors in `tests/conformance/floor.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_cases_pass_through_boto3_and_the_api() {
    let prefix = shared::testkit::unique_prefix("api-conformance");
    let fleet = Fleet::start(&prefix, Arc::new(TestExecutor::default())).await;
    let keys = format!("{KEY_ID}:{SECRET}");
    let serve = Serve::fleet(&prefix, &[], &[("MAPFLEET_API_KEYS", &keys)]);
    let out = api::run_conformance(&serve.url).await;
    drop(serve);
    fleet.stop(&prefix).await;
    api::check_conformance(&out);
}

/// UpdateStateMachine and DescribeStateMachineForExecution; tags (at creation and on their
/// own); ListMapRuns, DescribeMapRun, ListExecutions with `mapRunArn`; and UpdateMapRun
/// changing a running Distributed Map's limits: from MaxConcurrency 1 the coordinator starts
/// the waiting children at once, and a tolerated failure count given while it runs lets two
/// failing children pass (without it the first one fails the Map). Each with one error case.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_cli_updates_tags_and_map_runs_on_the_fleet() {
    let prefix = shared::testkit::unique_prefix("api-maprun");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("buckets/out")).unwrap();
    let opts = ServiceOptions {
        map_runs: common::local_buckets(&data),
        ..ServiceOptions::default()
    };
    let fleet = Fleet::start_opts(&prefix, Arc::new(TestExecutor::default()), opts).await;
    let keys = format!("{KEY_ID}:{SECRET}");
    let serve = Serve::fleet(
        &prefix,
        &["--data-dir", data.to_str().unwrap()],
        &[("MAPFLEET_API_KEYS", &keys)],
    );
    let result = tokio::time::timeout(
        Duration::from_secs(300),
        api::updates_tags_and_map_runs(&serve.url, dir.path(), &data),
    )
    .await;
    drop(serve);
    fleet.stop(&prefix).await;
    result.expect("the scenario took over 5 minutes");
}

/// RedriveExecution through the aws CLI: a run whose Task failed once is redriven and
/// succeeds (ExecutionRedriven in its history, redriveCount 1); a succeeded run is
/// ExecutionNotRedrivable; a repeated client token redrives once. Then the scenario both
/// modes share, a stopped execution redriven ([`api::redrive_after_stop`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redrive_execution_through_the_aws_cli() {
    let prefix = shared::testkit::unique_prefix("api-redrive");
    let fleet = Fleet::start(&prefix, Arc::new(TestExecutor::default())).await;
    let keys = format!("{KEY_ID}:{SECRET}");
    let serve = Serve::fleet(&prefix, &[], &[("MAPFLEET_API_KEYS", &keys)]);
    let result = tokio::time::timeout(Duration::from_secs(300), async {
        redrive_scenario(&serve.url).await;
        api::redrive_after_stop(&serve.url).await;
    })
    .await;
    drop(serve);
    fleet.stop(&prefix).await;
    result.expect("the redrive scenario took over 5 minutes");
}

async fn redrive_scenario(url: &str) {
    let aws = Aws::new(url);
    let dir = tempfile::tempdir().expect("temp dir");
    // The Task fails the first time each key is seen, and succeeds after.
    let def = json!({"StartAt": "First", "States": {
        "First": {"Type": "Pass", "Next": "Work"},
        "Work": {"Type": "Task", "Resource": common::FLAKY,
            "Parameters": {"key.$": "$.key", "failures": 1}, "Next": "Done"},
        "Done": {"Type": "Pass", "End": true}}});
    let file = write(dir.path(), "redrive.json", &def);
    let machine = aws
        .ok(&[
            "create-state-machine",
            "--name",
            "Redrive",
            "--definition",
            &file,
            "--role-arn",
            "arn:aws:iam::000000000000:role/mapfleet-tests",
        ])
        .await["stateMachineArn"]
        .as_str()
        .expect("stateMachineArn")
        .to_string();
    let start = |name: &'static str| {
        let machine = machine.clone();
        let aws = &aws;
        async move {
            let input = json!({ "key": name }).to_string();
            aws.ok(&[
                "start-execution",
                "--state-machine-arn",
                &machine,
                "--name",
                name,
                "--input",
                &input,
            ])
            .await["executionArn"]
                .as_str()
                .expect("executionArn")
                .to_string()
        }
    };
    let arn = start("once").await;
    let failed = wait_for_status(&aws, &arn, "FAILED").await;
    assert_eq!(failed["redriveStatus"], "REDRIVABLE", "{failed}");
    assert_eq!(failed["redriveCount"], 0, "{failed}");
    let redriven = aws
        .ok(&["redrive-execution", "--execution-arn", &arn])
        .await;
    assert!(redriven["redriveDate"].is_number(), "{redriven}");
    let done = wait_for_status(&aws, &arn, "SUCCEEDED").await;
    assert_eq!(done["redriveCount"], 1, "{done}");
    assert_eq!(done["redriveDate"], redriven["redriveDate"], "{done}");
    assert_eq!(done["redriveStatus"], "NOT_REDRIVABLE", "{done}");
    let history = aws
        .ok(&["get-execution-history", "--execution-arn", &arn])
        .await;
    let events = history["events"].as_array().expect("events").clone();
    let at = events
        .iter()
        .position(|e| e["type"] == "ExecutionRedriven")
        .unwrap_or_else(|| panic!("no ExecutionRedriven: {history}"));
    assert_eq!(
        events[at]["executionRedrivenEventDetails"]["redriveCount"],
        1
    );
    assert_eq!(events[at]["id"], json!(at + 1), "ids count on");
    assert_eq!(
        events[at + 1]["type"],
        "TaskStateEntered",
        "resumes at Work"
    );
    // Succeeded: not redrivable, with AWS's message.
    let refused = aws
        .fails(
            &[],
            &["redrive-execution", "--execution-arn", &arn],
            "ExecutionNotRedrivable",
        )
        .await;
    assert!(
        refused.contains("Execution is SUCCEEDED and cannot be redriven"),
        "{refused}"
    );
    // The same client token twice: one redrive, the same date.
    let arn = start("token").await;
    wait_for_status(&aws, &arn, "FAILED").await;
    redrive_twice_with_one_token(&aws, &arn).await;
}

/// A fleet and `mapfleet serve` on it for one scenario, torn down after (the scenario has
/// `limit` to finish).
async fn with_served_fleet<F, Fut>(name: &str, limit: Duration, scenario: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let prefix = shared::testkit::unique_prefix(name);
    let fleet = Fleet::start(&prefix, Arc::new(TestExecutor::default())).await;
    let keys = format!("{KEY_ID}:{SECRET}");
    let serve = Serve::fleet(&prefix, &[], &[("MAPFLEET_API_KEYS", &keys)]);
    let result = tokio::time::timeout(limit, scenario(serve.url.clone())).await;
    drop(serve);
    fleet.stop(&prefix).await;
    result.expect("the scenario ran out of time");
}

/// An `aws` CLI that sends StartSyncExecution and TestState to the endpoint itself rather
/// than to `sync-<host>` (see the README's API section).
fn aws_without_host_prefix(url: &str) -> Aws {
    let mut aws = Aws::new(url);
    aws.extra_env
        .push(("AWS_DISABLE_HOST_PREFIX_INJECTION".into(), "true".into()));
    aws
}

/// `create-state-machine --type EXPRESS`: the new machine's ARN.
async fn create_express(aws: &Aws, name: &str, definition: &str) -> String {
    let mut args = create(name, definition).to_vec();
    args.extend(["--type", "EXPRESS"]);
    aws.ok(&args).await["stateMachineArn"]
        .as_str()
        .expect("stateMachineArn")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn express_machines_and_start_sync_execution_through_the_aws_cli_and_boto3() {
    with_served_fleet("api-express", Duration::from_secs(240), |url| async move {
        express_scenario(&url).await
    })
    .await;
}

async fn express_scenario(url: &str) {
    let aws = aws_without_host_prefix(url);
    let dir = tempfile::tempdir().expect("temp dir");
    let echo = json!({
        "StartAt": "Echo",
        "States": {
            "Echo": {"Type": "Task", "Resource": ECHO, "ResultPath": "$.echoed", "Next": "Done"},
            "Done": {"Type": "Pass", "End": true}
        }
    });
    let echo_file = write(dir.path(), "echo.json", &echo);
    let machine = create_express(&aws, "Quick", &echo_file).await;
    let described = aws
        .ok(&["describe-state-machine", "--state-machine-arn", &machine])
        .await;
    assert_eq!(described["type"], "EXPRESS");

    // The CLI's own behaviour: without the switch it sends the call to sync-127.0.0.1.
    let plain = Aws::new(url);
    let out = plain
        .run(
            &[],
            &["start-sync-execution", "--state-machine-arn", &machine],
        )
        .await;
    assert!(!out.ok, "sync-127.0.0.1 does not resolve: {}", out.json);
    assert!(
        out.stderr.contains("sync-127.0.0.1"),
        "the CLI names the prefixed host: {}",
        out.stderr
    );

    // StartSyncExecution: the whole run in one answer.
    let done = aws
        .ok(&[
            "start-sync-execution",
            "--state-machine-arn",
            &machine,
            "--name",
            "once",
            "--input",
            r#"{"n": 1}"#,
        ])
        .await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let arn = done["executionArn"].as_str().expect("executionArn");
    assert!(arn.contains(":express:Quick:once:"), "{arn}");
    assert_eq!(done["stateMachineArn"], json!(machine));
    assert_eq!(done["name"], "once");
    let output: Value = serde_json::from_str(done["output"].as_str().unwrap()).unwrap();
    assert_eq!(output, json!({"n": 1, "echoed": {"n": 1}}));
    assert_eq!(done["input"], r#"{"n":1}"#);
    assert_eq!(done["inputDetails"], json!({"included": true}));
    assert!(done["stopDate"].as_f64() >= done["startDate"].as_f64());
    let billed = done["billingDetails"]["billedDurationInMilliseconds"]
        .as_u64()
        .expect("billed duration");
    assert!(billed >= 100 && billed % 100 == 0, "{done}");
    // The same name again: an express name is free at once.
    let again = aws
        .ok(&[
            "start-sync-execution",
            "--state-machine-arn",
            &machine,
            "--name",
            "once",
            "--included-data",
            "METADATA_ONLY",
        ])
        .await;
    assert_eq!(again["status"], "SUCCEEDED");
    assert_ne!(again["executionArn"], done["executionArn"]);
    assert!(
        again.get("output").is_none() && again.get("input").is_none(),
        "{again}"
    );

    // An express execution is not one the API shows, as on AWS.
    for op in [
        "describe-execution",
        "get-execution-history",
        "stop-execution",
    ] {
        let e = aws
            .fails(&[], &[op, "--execution-arn", arn], "InvalidArn")
            .await;
        assert!(
            e.contains("Resource type not valid in this context: express"),
            "{op}: {e}"
        );
    }
    aws.fails(
        &[],
        &["list-executions", "--state-machine-arn", &machine],
        "StateMachineTypeNotSupported",
    )
    .await;

    // StartExecution on an EXPRESS machine starts it (an express ARN) without waiting.
    let started = aws.ok(&start(&machine, "async", "{}")).await;
    assert!(
        started["executionArn"]
            .as_str()
            .unwrap()
            .contains(":express:Quick:async:"),
        "{started}"
    );

    // Failures and the time limit come back as the status, with 200.
    let failing = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Bad", "Cause": "on purpose"}}});
    let failing = create_express(&aws, "Failing", &failing.to_string()).await;
    let failed = aws
        .ok(&["start-sync-execution", "--state-machine-arn", &failing])
        .await;
    assert_eq!(
        (&failed["status"], &failed["error"], &failed["cause"]),
        (&json!("FAILED"), &json!("Bad"), &json!("on purpose")),
        "{failed}"
    );
    assert!(failed.get("output").is_none(), "{failed}");
    let slow = json!({"TimeoutSeconds": 1, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 30, "End": true}}});
    let slow = create_express(&aws, "Slow", &slow.to_string()).await;
    let timed_out = aws
        .ok(&["start-sync-execution", "--state-machine-arn", &slow])
        .await;
    assert_eq!(timed_out["status"], "TIMED_OUT", "{timed_out}");
    assert_eq!(timed_out["error"], "States.Timeout", "{timed_out}");

    // STANDARD machines refuse it; express definitions refuse what express cannot run.
    let standard = aws.ok(&create("Standard", &echo_file)).await["stateMachineArn"]
        .as_str()
        .unwrap()
        .to_string();
    aws.fails(
        &[],
        &["start-sync-execution", "--state-machine-arn", &standard],
        "StateMachineTypeNotSupported",
    )
    .await;
    let callback = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "End": true}}});
    let callback = callback.to_string();
    let mut args = create("Callback", &callback).to_vec();
    args.extend(["--type", "EXPRESS"]);
    let e = aws.fails(&[], &args, "InvalidDefinition").await;
    assert!(
        e.contains("Express state machine does not support '.waitForTaskToken' service integration at /States/T/Resource"),
        "{e}"
    );

    // boto3 with inject_host_prefix=False reaches the endpoint; without it, it cannot.
    let mut cmd = tokio::process::Command::new(client("python3"));
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/boto3_sync.py"))
        .args([url, machine.as_str()]);
    plain.env(&mut cmd);
    let out = cmd
        .output()
        .await
        .expect("run python3 with boto3 (see .ci/api-clients.sh)");
    assert!(
        out.status.success(),
        "boto3 script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    assert_eq!(seen["status"], "SUCCEEDED", "{seen}");
    assert_eq!(seen["output"], json!({"n": 7, "echoed": {"n": 7}}));
    assert_eq!(seen["stop_is_datetime"], true);
    assert_eq!(
        seen["billing"],
        json!(["billedDurationInMilliseconds", "billedMemoryUsedInMB"])
    );
    assert_eq!(
        seen["test_state"],
        json!({"status": "SUCCEEDED", "nextState": "After", "output": r#"{"a":1,"r":{"x":1}}"#})
    );
    assert_eq!(seen["after_result_path"], json!({"a": 1, "r": {"x": 1}}));
    assert!(
        seen["prefixed"]
            .as_str()
            .unwrap()
            .contains("sync-127.0.0.1"),
        "{seen}"
    );
}

/// `aws stepfunctions test-state` with one state's definition.
async fn test_state(aws: &Aws, state: Value, extra: &[&str]) -> Value {
    let text = state.to_string();
    let mut args = vec![
        "test-state",
        "--definition",
        text.as_str(),
        "--role-arn",
        ROLE,
    ];
    args.extend_from_slice(extra);
    aws.ok(&args).await
}

fn json_text(v: &Value) -> Value {
    serde_json::from_str(v.as_str().unwrap_or_else(|| panic!("JSON text: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_state_through_the_aws_cli() {
    with_served_fleet(
        "api-test-state",
        Duration::from_secs(240),
        |url| async move { test_state_scenario(&url).await },
    )
    .await;
}

async fn test_state_scenario(url: &str) {
    let aws = aws_without_host_prefix(url);
    let input = r#"{"order": {"id": 7, "items": [1, 2]}, "keep": true}"#;

    // A Pass at DEBUG: every stage of its data flow.
    let pass = json!({
        "Type": "Pass",
        "InputPath": "$.order",
        "Parameters": {"id.$": "$.id", "count.$": "States.ArrayLength($.items)"},
        "ResultPath": "$.summary",
        "Next": "Ship"
    });
    let r = test_state(
        &aws,
        pass.clone(),
        &["--input", input, "--inspection-level", "DEBUG"],
    )
    .await;
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(r["nextState"], "Ship");
    let d = &r["inspectionData"];
    assert_eq!(
        json_text(&d["input"]),
        serde_json::from_str::<Value>(input).unwrap()
    );
    assert_eq!(
        json_text(&d["afterInputPath"]),
        json!({"id": 7, "items": [1, 2]})
    );
    assert_eq!(
        json_text(&d["afterParameters"]),
        json!({"id": 7, "count": 2})
    );
    assert_eq!(json_text(&d["result"]), json!({"id": 7, "count": 2}));
    assert_eq!(
        json_text(&d["afterResultSelector"]),
        json!({"id": 7, "count": 2})
    );
    let placed = json!({"order": {"id": 7, "items": [1, 2]}, "keep": true, "summary": {"id": 7, "count": 2}});
    assert_eq!(json_text(&d["afterResultPath"]), placed);
    assert_eq!(json_text(&r["output"]), placed);
    // INFO (the default): the outcome only.
    let r = test_state(&aws, pass, &["--input", input]).await;
    assert!(r.get("inspectionData").is_none(), "{r}");

    // Choice: the rule that matches names the next state.
    let choice = json!({
        "Type": "Choice",
        "Choices": [
            {"Variable": "$.order.id", "NumericGreaterThan": 100, "Next": "Big"},
            {"Variable": "$.keep", "BooleanEquals": true, "Next": "Keep"}
        ],
        "Default": "Drop"
    });
    let r = test_state(&aws, choice, &["--input", input]).await;
    assert_eq!(
        (&r["status"], &r["nextState"]),
        (&json!("SUCCEEDED"), &json!("Keep")),
        "{r}"
    );

    // Fail: its error and cause.
    let r = test_state(
        &aws,
        json!({"Type": "Fail", "Error": "Nope", "Cause": "tested"}),
        &[],
    )
    .await;
    assert_eq!(
        (&r["status"], &r["error"], &r["cause"]),
        (&json!("FAILED"), &json!("Nope"), &json!("tested")),
        "{r}"
    );
    assert!(r.get("nextState").is_none(), "{r}");

    // A long Wait does not wait.
    let started = Instant::now();
    let r = test_state(
        &aws,
        json!({"Type": "Wait", "Seconds": 86400, "Next": "Later"}),
        &[],
    )
    .await;
    assert_eq!(
        (&r["status"], &r["nextState"]),
        (&json!("SUCCEEDED"), &json!("Later"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the Wait waited"
    );

    // A Task runs on the fleet's worker.
    let task = json!({"Type": "Task", "Resource": ECHO, "Parameters": {"v.$": "$.order.id"},
        "ResultSelector": {"got.$": "$.v"}, "ResultPath": "$.echo", "End": true});
    let r = test_state(
        &aws,
        task,
        &["--input", input, "--inspection-level", "TRACE"],
    )
    .await;
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(json_text(&r["output"])["echo"], json!({"got": 7}));
    let d = &r["inspectionData"];
    assert_eq!(json_text(&d["afterParameters"]), json!({"v": 7}));
    assert_eq!(json_text(&d["result"]), json!({"v": 7}));
    assert_eq!(json_text(&d["afterResultSelector"]), json!({"got": 7}));
    assert!(
        r.get("nextState").is_none(),
        "an End state has no next state: {r}"
    );

    // A failing Task: RETRIABLE while its retrier has attempts left, then caught.
    let failing = json!({
        "Type": "Task", "Resource": common::FAIL,
        "Parameters": {"error": "Flaky", "cause": "try again"},
        "Retry": [{"ErrorEquals": ["Other"], "MaxAttempts": 5}, {"ErrorEquals": ["Flaky"], "MaxAttempts": 2, "IntervalSeconds": 3}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Recover"}],
        "Next": "Ok"
    });
    let r = test_state(&aws, failing.clone(), &["--inspection-level", "DEBUG"]).await;
    assert_eq!(
        (&r["status"], &r["error"]),
        (&json!("RETRIABLE"), &json!("Flaky")),
        "{r}"
    );
    assert_eq!(
        r["inspectionData"]["errorDetails"],
        json!({"retryIndex": 1, "retryBackoffIntervalSeconds": 3})
    );
    let r = test_state(
        &aws,
        failing,
        &[
            "--state-configuration",
            "retrierRetryCount=2",
            "--input",
            "{}",
            "--inspection-level",
            "DEBUG",
        ],
    )
    .await;
    assert_eq!(
        (&r["status"], &r["nextState"], &r["cause"]),
        (
            &json!("CAUGHT_ERROR"),
            &json!("Recover"),
            &json!("try again")
        ),
        "{r}"
    );
    assert_eq!(
        json_text(&r["output"]),
        json!({"err": {"Error": "Flaky", "Cause": "try again"}})
    );
    assert_eq!(
        r["inspectionData"]["errorDetails"],
        json!({"catchIndex": 0})
    );

    // Variables in and out (JSONata), and a state picked from a whole machine.
    let machine = json!({
        "QueryLanguage": "JSONata",
        "StartAt": "First",
        "States": {
            "First": {"Type": "Pass", "Next": "Sum"},
            "Sum": {"Type": "Pass", "Assign": {"total": "{% $base + $states.input.add %}"}, "Output": "{% {'t': $base} %}", "End": true}
        }
    });
    let text = machine.to_string();
    let r = aws
        .ok(&[
            "test-state",
            "--definition",
            &text,
            "--state-name",
            "Sum",
            "--input",
            r#"{"add": 5}"#,
            "--variables",
            r#"{"base": 10}"#,
            "--inspection-level",
            "DEBUG",
        ])
        .await;
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(json_text(&r["output"]), json!({"t": 10}));
    assert_eq!(
        json_text(&r["inspectionData"]["variables"]),
        json!({"base": 10, "total": 15})
    );

    // Map and Parallel: only mocked, as AWS has it.
    let map = json!({
        "Type": "Map", "ItemsPath": "$.order.items", "ResultPath": "$.each",
        "ItemProcessor": {"StartAt": "E", "States": {"E": {"Type": "Task", "Resource": ECHO, "End": true}}},
        "End": true
    });
    let text = map.to_string();
    aws.fails(
        &[],
        &["test-state", "--definition", &text, "--role-arn", ROLE],
        "ValidationException",
    )
    .await;
    let r = test_state(
        &aws,
        map,
        &["--input", input, "--mock", r#"{"result": "[1, 2]"}"#],
    )
    .await;
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(json_text(&r["output"])["each"], json!([1, 2]));

    // An invalid state: the validator's diagnostics, located inside the state.
    let text = json!({"Type": "Pass", "InputPath": "no path", "Next": 3}).to_string();
    let e = aws
        .fails(
            &[],
            &["test-state", "--definition", &text, "--role-arn", ROLE],
            "InvalidDefinition",
        )
        .await;
    assert!(e.contains("/InputPath") && !e.contains("/States/"), "{e}");
    let e = aws
        .fails(
            &[],
            &[
                "test-state",
                "--definition",
                "{not json",
                "--role-arn",
                ROLE,
            ],
            "InvalidDefinition",
        )
        .await;
    assert!(e.contains("INVALID_JSON_DESCRIPTION"), "{e}");
}
