//! `.waitForTaskToken` Tasks: the integration runs with `$$.Task.Token`, its result only
//! submits the task, and the token's answer (or a deadline) ends it.

use super::*;
use crate::engine::token::{self, TokenKey};

const CALLBACK: &str = "arn:mapfleet:task:::echo.waitForTaskToken";

fn callback_task(extra: Value) -> Value {
    let mut spec = json!({
        "Resource": CALLBACK,
        "Parameters": {"item.$": "$", "token.$": "$$.Task.Token"}
    });
    spec.as_object_mut()
        .expect("object")
        .extend(extra.as_object().expect("object").clone());
    one_task(spec)
}

/// The published step's resource, input and callback token.
fn published(actions: &[Action]) -> (String, Value, String) {
    actions
        .iter()
        .find_map(|a| match a {
            Action::PublishStep {
                resource,
                input,
                callback: Some(c),
                ..
            } => Some((resource.clone(), input.clone(), c.token.clone())),
            _ => None,
        })
        .expect("a callback step published")
}

#[test]
fn the_integration_submits_and_the_answer_succeeds() {
    let mut b = Bench::new(callback_task(json!({})));
    b.engine.options.token_key = TokenKey::new([7; 32]);
    let (mut root, actions) = b.start(json!({"i": 1}));
    let seq = published_seq(&actions);
    let (resource, input, token) = published(&actions);
    assert_eq!(resource, "arn:mapfleet:task:::echo", "the integration runs");
    assert_eq!(
        input["token"],
        token.as_str(),
        "$$.Task.Token is the step's token"
    );
    let decoded = token::decode(&token).expect("a token");
    assert_eq!(decoded.step.execution, b.engine.info.execution_arn);
    assert_eq!((decoded.step.cursor.as_str(), decoded.step.seq), ("", seq));
    assert!(token::same_secret(
        &decoded.secret,
        &token::expected_secret(&TokenKey::new([7; 32]), &decoded.step)
    ));
    assert_eq!(
        timer_at(&actions),
        None,
        "no deadline: it waits as long as it takes"
    );

    // The integration's result is not the state's.
    let actions = b.apply(
        &mut root,
        CursorEvent::StepSucceeded {
            seq,
            output: json!({"sent": true}),
        },
    );
    assert!(actions.is_empty(), "{actions:?}");
    assert!(matches!(root.phase, Phase::Task(_)));
    let actions = b.apply(
        &mut root,
        CursorEvent::TaskAnswered {
            seq,
            result: Ok(json!({"answer": 42})),
        },
    );
    let (result, _, _) = finished(&actions).expect("the execution ends");
    assert_eq!(result.as_ref().ok(), Some(&json!({"answer": 42})));
    assert_eq!(
        b.types(),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted",
            "TaskSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(b.history[2].details["resourceType"], "mapfleet");
    assert_eq!(b.history[2].details["resource"], "echo.waitForTaskToken");
    assert_eq!(
        b.history[4].details,
        json!({"resourceType": "mapfleet", "resource": "echo.waitForTaskToken", "output": {"sent": true}})
    );
}

#[test]
fn an_answer_before_the_integration_returns_ends_the_task_and_the_late_result_is_dropped() {
    let mut b = Bench::new(callback_task(json!({})));
    let (mut root, actions) = b.start(json!({}));
    let seq = published_seq(&actions);
    let actions = b.apply(
        &mut root,
        CursorEvent::TaskAnswered {
            seq,
            result: Ok(json!("early")),
        },
    );
    assert!(finished(&actions).is_some());
    let late = b.apply(
        &mut root,
        CursorEvent::StepSucceeded {
            seq,
            output: json!({}),
        },
    );
    assert!(late.is_empty(), "{late:?}");
    assert!(!b.types().contains(&"TaskSubmitted".to_string()));
}

#[test]
fn a_failure_answer_is_caught_and_an_integration_failure_fails_the_task() {
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": CALLBACK, "End": true,
              "Parameters": {"token.$": "$$.Task.Token"},
              "Catch": [{"ErrorEquals": ["Rejected"], "Next": "C"}]},
        "C": {"Type": "Pass", "End": true}}});
    let mut b = Bench::new(def.clone());
    let (mut root, actions) = b.start(json!({}));
    let seq = published_seq(&actions);
    b.apply(
        &mut root,
        CursorEvent::StepSucceeded {
            seq,
            output: json!({}),
        },
    );
    let actions = b.apply(
        &mut root,
        CursorEvent::TaskAnswered {
            seq,
            result: Err(StatesError::new("Rejected", "no")),
        },
    );
    let (result, _, _) = finished(&actions).expect("caught, then ends");
    assert_eq!(
        result.as_ref().ok().map(|v| v["Error"].clone()),
        Some(json!("Rejected"))
    );
    assert!(b.types().contains(&"TaskFailed".to_string()));

    // The integration itself failing fails the task, as for any Task.
    let mut b = Bench::new(def);
    let (mut root, actions) = b.start(json!({}));
    let seq = published_seq(&actions);
    let actions = b.apply(
        &mut root,
        CursorEvent::StepFailed {
            seq,
            error: StatesError::new("Boom", "the integration failed"),
        },
    );
    let (result, _, _) = finished(&actions).expect("uncaught: the execution fails");
    assert_eq!(result.as_ref().map_err(|e| e.error.as_str()), Err("Boom"));
    // An answer for that step now is stale.
    let stale = b.apply(
        &mut root,
        CursorEvent::TaskAnswered {
            seq,
            result: Ok(json!({})),
        },
    );
    assert!(stale.is_empty());
}

#[test]
fn heartbeats_move_the_heartbeat_deadline_and_silence_times_out() {
    let def = callback_task(json!({"TimeoutSeconds": 100, "HeartbeatSeconds": 10}));
    let mut b = Bench::new(def);
    let (mut root, actions) = b.start(json!({}));
    let seq = published_seq(&actions);
    // Started at once: the heartbeat deadline comes first.
    assert_eq!(
        timer_at(&actions),
        Some((seq, b.now + Duration::seconds(10)))
    );
    b.now += Duration::seconds(8);
    assert!(
        b.apply(&mut root, CursorEvent::StepHeartbeat { seq })
            .is_empty()
    );
    b.now += Duration::seconds(2);
    let actions = b.apply(&mut root, CursorEvent::TimerFired { seq });
    assert_eq!(
        timer_at(&actions),
        Some((seq, b.now + Duration::seconds(8))),
        "set again for the moved deadline"
    );
    b.now += Duration::seconds(8);
    let actions = b.apply(&mut root, CursorEvent::TimerFired { seq });
    let (result, _, _) = finished(&actions).expect("timed out");
    assert_eq!(
        result.as_ref().map_err(|e| e.error.as_str()),
        Err("States.HeartbeatTimeout")
    );
    assert_eq!(b.types()[4], "TaskTimedOut");
    // The answer after the timeout changes nothing.
    let stale = b.apply(
        &mut root,
        CursorEvent::TaskAnswered {
            seq,
            result: Ok(json!({})),
        },
    );
    assert!(stale.is_empty());
}

#[test]
fn a_timeout_is_retried_with_a_new_token() {
    let def = callback_task(json!({"TimeoutSeconds": 5,
        "Retry": [{"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 1, "MaxAttempts": 1}]}));
    let mut b = Bench::new(def);
    let (mut root, actions) = b.start(json!({}));
    let seq = published_seq(&actions);
    let (_, _, first) = published(&actions);
    b.now += Duration::seconds(5);
    let actions = b.apply(&mut root, CursorEvent::TimerFired { seq });
    let (backoff, _) = timer_at(&actions).expect("a backoff timer");
    b.now += Duration::seconds(1);
    let actions = b.apply(&mut root, CursorEvent::TimerFired { seq: backoff });
    let again = published_seq(&actions);
    let (_, input, second) = published(&actions);
    assert_ne!(first, second, "each attempt has its own token");
    assert_eq!(input["token"], second.as_str());
    assert_eq!(token::decode(&second).unwrap().step.attempt, 2);
    let actions = b.apply(
        &mut root,
        CursorEvent::TaskAnswered {
            seq: again,
            result: Ok(json!("done")),
        },
    );
    assert!(finished(&actions).is_some_and(|(r, _, _)| r.as_ref().ok() == Some(&json!("done"))));
}

#[test]
fn only_callback_tasks_see_a_token() {
    let def = one_task(json!({"Parameters": {"t.$": "$$.Task"}}));
    let mut b = Bench::new(def);
    let (_, actions) = b.start(json!({}));
    // `$$.Task` does not exist for a plain Task: the path fails the state, as on AWS.
    assert!(
        finished(&actions).is_some_and(|(r, _, _)| r.is_err()),
        "{actions:?}"
    );
}

#[test]
fn lambda_invoke_wait_for_task_token_runs_the_functions_task_on_its_payload() {
    let def = one_task(json!({
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {
            "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:notify",
            "Payload": {"token.$": "$$.Task.Token"}
        }
    }));
    let mut b = Bench::new(def);
    let (mut root, actions) = b.start(json!({}));
    let seq = published_seq(&actions);
    let (resource, input, token) = published(&actions);
    assert_eq!(resource, "arn:mapfleet:task:::notify");
    assert_eq!(input, json!({ "token": token }));
    b.apply(
        &mut root,
        CursorEvent::StepSucceeded {
            seq,
            output: json!("sent"),
        },
    );
    let submitted = &b.history.last().expect("an event");
    assert_eq!(submitted.event_type, EventType::TaskSubmitted);
    assert_eq!(
        submitted.details,
        json!({"resourceType": "lambda", "resource": "invoke.waitForTaskToken",
               "output": {"ExecutedVersion": "$LATEST", "Payload": "sent", "StatusCode": 200}})
    );
    let actions = b.apply(
        &mut root,
        CursorEvent::TaskAnswered {
            seq,
            result: Ok(json!({"done": 1})),
        },
    );
    let (result, _, _) = finished(&actions).expect("ends");
    assert_eq!(result.as_ref().ok(), Some(&json!({"done": 1})));
}
