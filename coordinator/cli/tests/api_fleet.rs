//! `mapfleet serve` on the fleet, driven by the real `aws` CLI and boto3: a coordinator and a
//! worker (the harness's utility tasks) run in this process on a fresh prefix of the real
//! RabbitMQ and Redis on 127.0.0.1; `mapfleet serve` runs as the built binary on that prefix.
//! The scenarios and clients are shared with embedded mode's test (`tests/api/mod.rs`).

mod api;
mod common;
#[path = "api/fleet.rs"]
mod fleet;

use std::sync::Arc;
use std::time::Duration;

use coordinator::fleet::service::ServiceOptions;
use serde_json::json;

use api::{Aws, KEY_ID, SECRET, Serve, redrive_twice_with_one_token, wait_for_status, write};
use common::TestExecutor;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn express_machines_and_start_sync_execution_through_the_aws_cli_and_boto3() {
    with_served_fleet("api-express", Duration::from_secs(240), |url| async move {
        api::express_scenario(&url).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_state_through_the_aws_cli() {
    with_served_fleet(
        "api-test-state",
        Duration::from_secs(240),
        |url| async move { api::test_state_scenario(&url).await },
    )
    .await;
}
