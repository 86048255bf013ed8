//! The engine's semantics suite: data-driven fixtures per concept (see `common` for the
//! format) and a few end-to-end checks written in Rust, all under paused tokio time, so
//! Waits, retries and timeouts take no real time.

mod common;

use std::sync::Arc;

use common::{Embedded, Mode, TestExecutor};
use serde_json::{Value, json};

/// One `#[tokio::test]` per concept directory, so failures are reported per concept.
macro_rules! concepts {
    ($($concept:ident),* $(,)?) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $concept() {
                common::run_concept(&Embedded, stringify!($concept)).await;
            }
        )*

        #[test]
        fn every_fixture_directory_has_a_test() {
            let tested = [$(stringify!($concept)),*];
            for dir in common::concepts() {
                assert!(tested.contains(&dir.as_str()), "fixtures/engine/{dir} has no test: add it to concepts!");
            }
        }
    };
}

concepts!(
    dataflow, context, task, retry, catch, timeout, wait, fail, choice, parallel, map, map_events,
    tolerated, batcher, execution, task_ends, jsonata
);

/// The workshop's dynamic-input definition, its Lambda ARNs replaced by utility resources:
/// FaceDetection and CheckFaceDuplicate are `flaky` (each item says which call fails with
/// which error), the others `echo`, and Thumbnail `sleep`s so that the first item finishes
/// last. Checks the Map, both Catch paths, the Parallel and the result order end to end.
#[tokio::test(start_paused = true)]
async fn workshop_dynamic_input_end_to_end() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engine/tests/fixtures/workshop/ImageProcessingStateMachine-DynamicInput.json"
    );
    let mut def: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("workshop definition"))
            .expect("JSON");
    let map = &mut def["States"]["DynamicParallelProcessing"];
    // The items tell `flaky` how to behave and `sleep` how long to take.
    map["Parameters"]["key.$"] = json!("$$.Map.Item.Value.s3Key");
    map["Parameters"]["errors.$"] = json!("$$.Map.Item.Value.errors");
    map["Parameters"]["ms.$"] = json!("$$.Map.Item.Value.ms");
    let states = &mut map["Iterator"]["States"];
    let resource = |name: &str| match name {
        "FaceDetection" | "CheckFaceDuplicate" => common::FLAKY,
        "Thumbnail" => common::SLEEP,
        _ => common::ECHO,
    };
    let mut replaced = 0;
    for (name, state) in states.as_object_mut().expect("states").iter_mut() {
        if state.get("Resource").is_some() {
            state["Resource"] = json!(resource(name));
            replaced += 1;
        }
        for branch in state
            .get_mut("Branches")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for (name, inner) in branch["States"]
                .as_object_mut()
                .expect("branch states")
                .iter_mut()
            {
                inner["Resource"] = json!(resource(name));
                replaced += 1;
            }
        }
    }
    assert_eq!(replaced, 6, "the workshop definition has six Lambda tasks");

    let input = json!({"s3Bucket": "rides", "images": [
        {"userId": "a", "s3Key": "a.jpg", "errors": [], "ms": 500},
        {"userId": "b", "s3Key": "b.jpg", "errors": ["PhotoDoesNotMeetRequirementError"], "ms": 0},
        {"userId": "c", "s3Key": "c.jpg", "errors": [null, "FaceAlreadyExistsError"], "ms": 0},
        {"userId": "d", "s3Key": "d.jpg", "errors": [], "ms": 10},
    ]});
    let executor = Arc::new(TestExecutor::default());
    let got = Embedded
        .run(&def, input.clone(), executor.clone())
        .await
        .expect("the workshop definition is valid");

    let item_input = |i: usize| {
        let item = &input["images"][i];
        json!({"userId": item["userId"], "s3Bucket": "rides", "s3Key": item["s3Key"], "key": item["s3Key"], "errors": item["errors"], "ms": item["ms"]})
    };
    let processed = |i: usize| {
        let mut detected = item_input(i);
        detected["detectedFaceDetails"] = item_input(i);
        let mut out = detected.clone();
        out["parallelResult"] = json!([detected, detected]);
        out
    };
    let notified = |mut caught: Value, error: &str, call: usize| {
        caught["errorInfo"] = json!({"Error": error, "Cause": format!("flaky call {call}")});
        let mut out = caught.clone();
        out["errorInfo"] = caught;
        out
    };
    let mut c_detected = item_input(2);
    c_detected["detectedFaceDetails"] = item_input(2);
    let mut expected = input.clone();
    expected["results"] = json!([
        processed(0),
        notified(item_input(1), "PhotoDoesNotMeetRequirementError", 0),
        notified(c_detected, "FaceAlreadyExistsError", 1),
        processed(3),
    ]);
    assert_eq!(got.status, "SUCCEEDED", "{got:?}");
    assert_eq!(got.output, Some(expected));
    // a and d: five tasks each; b: FaceDetection and the notification; c: those and
    // CheckFaceDuplicate.
    assert_eq!(executor.calls(), 15);
    let types = got.event_types();
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!(count("MapIterationSucceeded"), 4);
    assert_eq!(count("TaskFailed"), 2);
    assert_eq!(count("ParallelStateEntered"), 2);
    assert_eq!(count("ExecutionSucceeded"), 1);
}

/// The rider-photo workflow of `examples/rider-photos` with its photo tasks replaced by
/// utility resources (as in the workshop test above): FaceDetection and CheckFaceDuplicate
/// `flaky`, Thumbnail `sleep`, the others `echo`; the items say how each behaves.
fn photo_workflow_on_utility_tasks(file: &str) -> Value {
    let path = format!(
        "{}/../../examples/rider-photos/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut def: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("example definition"))
            .expect("JSON");
    let map = &mut def["States"]["DynamicParallelProcessing"];
    if map.get("ItemSelector").is_some() {
        let selector = &mut map["ItemSelector"];
        selector["key"] = json!("{% $states.context.Map.Item.Value.s3Key %}");
        selector["errors"] = json!("{% $states.context.Map.Item.Value.errors %}");
        selector["ms"] = json!("{% $states.context.Map.Item.Value.ms %}");
    } else {
        let selector = &mut map["Parameters"];
        selector["key.$"] = json!("$$.Map.Item.Value.s3Key");
        selector["errors.$"] = json!("$$.Map.Item.Value.errors");
        selector["ms.$"] = json!("$$.Map.Item.Value.ms");
    }
    let processor = if map.get("Iterator").is_some() {
        "Iterator"
    } else {
        "ItemProcessor"
    };
    let resource = |name: &str| match name {
        "FaceDetection" | "CheckFaceDuplicate" => common::FLAKY,
        "Thumbnail" => common::SLEEP,
        _ => common::ECHO,
    };
    let mut replaced = 0;
    for (name, state) in map[processor]["States"]
        .as_object_mut()
        .expect("states")
        .iter_mut()
    {
        if state.get("Resource").is_some() {
            state["Resource"] = json!(resource(name));
            replaced += 1;
        }
        for branch in state
            .get_mut("Branches")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for (name, inner) in branch["States"]
                .as_object_mut()
                .expect("branch states")
                .iter_mut()
            {
                inner["Resource"] = json!(resource(name));
                replaced += 1;
            }
        }
    }
    assert_eq!(replaced, 6, "the rider-photo workflow has six tasks");
    def
}

/// The JSONata version of the rider-photo workflow gives the JSONPath version's outcomes:
/// the same output for processed, rejected and duplicate photos, the same task calls and
/// the same sequence of history events.
#[tokio::test(start_paused = true)]
async fn rider_photos_jsonata_matches_jsonpath() {
    let input = json!({"s3Bucket": "rides", "images": [
        {"userId": "a", "s3Key": "a.jpg", "errors": [], "ms": 500},
        {"userId": "b", "s3Key": "b.jpg", "errors": ["PhotoDoesNotMeetRequirementError"], "ms": 0},
        {"userId": "c", "s3Key": "c.jpg", "errors": [null, "FaceAlreadyExistsError"], "ms": 0},
        {"userId": "d", "s3Key": "d.jpg", "errors": [], "ms": 10},
    ]});
    let mut runs = Vec::new();
    for file in [
        "ImageProcessingStateMachine-DynamicInput.json",
        "ImageProcessingStateMachine-DynamicInput-JSONata.json",
    ] {
        let def = photo_workflow_on_utility_tasks(file);
        let executor = Arc::new(TestExecutor::default());
        let got = Embedded
            .run(&def, input.clone(), executor.clone())
            .await
            .unwrap_or_else(|e| panic!("{file} is valid: {e}"));
        assert_eq!(got.status, "SUCCEEDED", "{file}: {got:?}");
        runs.push((file, got, executor.calls()));
    }
    let (_, path_run, path_calls) = &runs[0];
    let (_, ata_run, ata_calls) = &runs[1];
    assert_eq!(ata_run.output, path_run.output);
    assert_eq!(ata_calls, path_calls);
    assert_eq!(*path_calls, 15);
    assert_eq!(ata_run.event_types(), path_run.event_types());
    let results = &ata_run.output.as_ref().expect("output")["results"];
    assert_eq!(
        results[0]["parallelResult"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        results[1]["errorInfo"]["errorInfo"]["Error"],
        "PhotoDoesNotMeetRequirementError"
    );
    assert_eq!(
        results[2]["errorInfo"]["errorInfo"]["Error"],
        "FaceAlreadyExistsError"
    );
    assert_eq!(results[3]["userId"], "d");
}

/// A Task whose resource nobody serves fails the execution at once (no hang, even with a
/// Retry on everything) and the error names the resource.
#[tokio::test(start_paused = true)]
async fn unserved_resource_fails_and_names_the_resource() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:nobody",
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}], "End": true}}});
    let executor = Arc::new(TestExecutor::default());
    let run = Embedded.run(&def, json!({}), executor.clone());
    let got = tokio::time::timeout(std::time::Duration::from_secs(3600), run)
        .await
        .expect("no hang")
        .expect("valid");
    assert_eq!(got.status, "FAILED");
    assert!(
        got.cause
            .as_deref()
            .unwrap_or("")
            .contains("arn:aws:lambda:us-east-1:123456789012:function:nobody"),
        "{got:?}"
    );
    assert!(
        got.cause.as_deref().unwrap_or("").contains(common::ECHO),
        "lists what is served: {got:?}"
    );
    assert_eq!(executor.calls(), 0);
}

/// A state output over 256 KiB fails with `States.DataLimitExceeded`, which a Catch on
/// `States.ALL` does not catch.
#[tokio::test(start_paused = true)]
async fn payload_limit_is_not_caught_by_states_all() {
    let big = "x".repeat(100_000);
    let catch_all = json!([{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]);
    // A Pass cannot Catch: wrap it in a Parallel that does.
    let pass = json!({"StartAt": "Wrap", "States": {
        "Wrap": {"Type": "Parallel", "Branches": [{"StartAt": "Grow", "States": {
            "Grow": {"Type": "Pass", "Parameters": {"a.$": "$.s", "b.$": "$.s", "c.$": "$.s"}, "End": true}}}],
            "Catch": catch_all, "Next": "Done"},
        "Done": {"Type": "Succeed"}, "Caught": {"Type": "Succeed"}}});
    let task = json!({"StartAt": "Grow", "States": {
        "Grow": {"Type": "Task", "Resource": common::ECHO, "Parameters": {"a.$": "$.s", "b.$": "$.s", "c.$": "$.s"}, "Catch": catch_all, "Next": "Done"},
        "Done": {"Type": "Succeed"}, "Caught": {"Type": "Succeed"}}});
    for (what, def) in [("Pass output", pass), ("Task input", task)] {
        let got = Embedded
            .run(&def, json!({ "s": big }), Arc::new(TestExecutor::default()))
            .await
            .expect("valid");
        assert_eq!(got.status, "FAILED", "{what}: {:?}", got.error);
        assert_eq!(
            got.error.as_deref(),
            Some("States.DataLimitExceeded"),
            "{what}"
        );
        assert!(
            !got.event_types().iter().any(|t| t == "SucceedStateEntered"),
            "{what}: no Catch target runs"
        );
    }
    // Just under the limit is fine.
    let fits = json!({"StartAt": "Grow", "States": {"Grow": {"Type": "Pass", "Parameters": {"a.$": "$.s", "b.$": "$.s"}, "End": true}}});
    let got = Embedded
        .run(
            &fits,
            json!({ "s": big }),
            Arc::new(TestExecutor::default()),
        )
        .await
        .expect("valid");
    assert_eq!(got.status, "SUCCEEDED");
}

/// A task result over 256 KiB fails the Task with `States.DataLimitExceeded` (uncatchable).
#[tokio::test(start_paused = true)]
async fn oversized_task_result_fails_the_task() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": common::ECHO,
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true}, "Caught": {"Type": "Succeed"}}});
    // The input is under the limit; the state output adds nothing, so grow the result by
    // echoing an input that is itself just under the limit and adding a ResultPath copy.
    let mut def = def;
    def["States"]["T"]["ResultPath"] = json!("$.copy");
    let input = json!({ "s": "y".repeat(200_000) });
    let got = Embedded
        .run(&def, input, Arc::new(TestExecutor::default()))
        .await
        .expect("valid");
    assert_eq!(got.status, "FAILED");
    assert_eq!(got.error.as_deref(), Some("States.DataLimitExceeded"));
}

/// When an iteration fails, the other iterations are aborted before the Map fails, so
/// their `TaskStateAborted` and `MapIterationAborted` come (by id too) before
/// `MapStateFailed`, as AWS writes them (ids 25-31 before `MapStateFailed` 32 in the
/// recorded `test_service_lambda_map_timeout` case). The history stays in id order.
#[tokio::test(start_paused = true)]
async fn history_ids_ascend_through_aborts() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": common::SLEEP, "Next": "Bad"}, "Bad": {"Type": "Fail", "Error": "E"}}},
        "ItemSelector": {"ms.$": "$$.Map.Item.Value"}}}});
    let got = Embedded
        .run(&def, json!([5000, 0]), Arc::new(TestExecutor::default()))
        .await
        .expect("valid");
    let ids: Vec<u64> = got
        .events
        .iter()
        .map(|e| e["id"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "{:?}",
        got.history_lines()
    );
}

/// Known bug (not fixed: the stop goes through `driver.rs`, outside the engine). When the
/// execution times out during a Map, `ExecutionTimedOut` gets its id before the aborted
/// iterations' events, which are listed before it: the history's last event does not have
/// the highest id.
#[tokio::test(start_paused = true)]
async fn history_ids_ascend_when_the_execution_times_out() {
    let def = json!({"TimeoutSeconds": 2, "StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "ItemSelector": {"ms": 100000},
        "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": common::SLEEP, "End": true}}}}}});
    let got = Embedded
        .run(&def, json!([1, 2]), Arc::new(TestExecutor::default()))
        .await
        .expect("valid");
    assert_eq!(got.status, "TIMED_OUT");
    let ids: Vec<u64> = got
        .events
        .iter()
        .map(|e| e["id"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "{:?}",
        got.history_lines()
    );
}

/// Known deviation (not fixed: `ChildFinished` would need to carry the id of the
/// iteration's `MapIterationSucceeded` as well as its last inner event, a change to the
/// driver protocol). AWS points both `MapStateSucceeded` and `MapStateExited` at the last
/// `MapIterationSucceeded` (recorded: `17 16 MapIterationSucceeded`, `18 17
/// MapStateSucceeded`, `19 17 MapStateExited`); mapfleet points `MapStateSucceeded` at the
/// last iteration's inner event and `MapStateExited` at `MapStateSucceeded`.
#[tokio::test(start_paused = true)]
async fn map_state_succeeded_follows_the_last_iteration() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 1, "End": true,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}});
    let got = Embedded
        .run(&def, json!([1]), Arc::new(TestExecutor::default()))
        .await
        .expect("valid");
    let lines = got.history_lines();
    assert_eq!(
        lines[6..9],
        [
            "7 6 MapIterationSucceeded",
            "8 7 MapStateSucceeded",
            "9 7 MapStateExited"
        ],
        "{lines:?}"
    );
}

/// A loop of flow states in this process: with the history cap off, the execution's
/// TimeoutSeconds still ends it (the run loop yields between rounds of events and checks
/// the deadline, in real time here: a busy loop never lets paused time advance); with the
/// default cap it fails with `States.Runtime` at 25,000 events, as on AWS.
#[tokio::test]
async fn a_flow_state_loop_ends_by_its_timeout_or_the_history_cap() {
    use coordinator::embedded::{EmbeddedOptions, run_execution};
    use coordinator::engine::ExecutionInfo;
    let def = json!({"TimeoutSeconds": 1, "StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "B"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": true, "Next": "End"}], "Default": "A"},
        "End": {"Type": "Succeed"}}});
    let def = Arc::new(coordinator::asl::parse::parse_definition_value(&def).unwrap());
    let info = || ExecutionInfo::new("Loop", "loop", json!({}), chrono::Utc::now());
    let tasks = Arc::new(coordinator::embedded::NoTasks);
    let mut off = EmbeddedOptions {
        keep_history: false,
        ..Default::default()
    };
    off.engine.max_history_events = 0;
    let timed_out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        run_execution(def.clone(), info(), tasks.clone(), off),
    )
    .await
    .expect("the execution's own timeout ends the loop");
    assert_eq!(timed_out.status.as_str(), "TIMED_OUT");
    assert!(timed_out.transitions > 1000, "{}", timed_out.transitions);

    let capped = run_execution(def, info(), tasks, EmbeddedOptions::default()).await;
    assert_eq!(capped.status.as_str(), "FAILED");
    let error = capped.error.expect("an error");
    assert_eq!(error.error, "States.Runtime");
    assert!(
        error
            .cause
            .contains("maximum number of history events (25000)"),
        "{}",
        error.cause
    );
    assert_eq!(
        capped.events.last().map(|e| e.event_type.name()).as_deref(),
        Some("ExecutionFailed")
    );
}
