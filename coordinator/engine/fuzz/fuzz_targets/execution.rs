//! The property of the `execution_run` target, apart from libFuzzer so that its
//! regression inputs replay as plain tests too (`mapfleet-engine`'s `tests/fuzz_regressions.rs`
//! includes this file).

use std::sync::Arc;

use mapfleet_engine::asl::error::StatesError;
use mapfleet_engine::asl::parse::parse_definition;
use mapfleet_engine::driver::Status;
use mapfleet_engine::engine::history::EventType;
use mapfleet_engine::engine::run::EngineOptions;
use mapfleet_engine::scripted::{self, Limits};
use serde_json::{Value, json};

/// Error names a scripted step may fail with: the ones Retry and Catch rules name most.
const ERRORS: &[&str] = &[
    "States.TaskFailed",
    "States.Timeout",
    "States.Permissions",
    "Lambda.ServiceException",
    "CustomError",
];

pub fn check(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == 0xFF);
    let Some(Ok(text)) = parts.next().map(std::str::from_utf8) else {
        return;
    };
    let Ok(def) = parse_definition(text) else {
        return;
    };
    let input = parts
        .next()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .unwrap_or_else(|| json!({}));
    let script: Vec<u8> = parts.next().unwrap_or_default().to_vec();
    let mut turn = 0usize;
    let mut answer = |step: &mapfleet_engine::driver::StepRequest| {
        let b = if script.is_empty() {
            0
        } else {
            script[turn % script.len()]
        };
        turn += 1;
        match b % 4 {
            0 => Ok(step.input.clone()),
            1 => Ok(json!({ "n": b, "ok": true, "list": [b, turn] })),
            _ => {
                let name = ERRORS[usize::from(b / 4) % ERRORS.len()];
                Err(StatesError::new(name, format!("scripted failure {turn}")))
            }
        }
    };
    let limits = Limits {
        max_events: 20_000,
        round: 100,
        ..Limits::default()
    };
    let options = EngineOptions {
        // Small enough that loops end fast under the fuzzer, large enough for real flows.
        max_history_events: 2_000,
        max_children_in_flight: 50,
        ..EngineOptions::default()
    };
    let r = scripted::run(Arc::new(def), input, options, &limits, true, &mut answer);
    assert_ne!(r.status, Status::Running, "the run ended");
    assert!(
        r.fed <= limits.max_events as u64 + limits.round as u64,
        "fed {} events",
        r.fed
    );
    assert!(
        r.events.windows(2).all(|w| w[0].id < w[1].id),
        "history ids ascend"
    );
    let last = r.events.last().expect("ExecutionStarted at least");
    let expected = match r.status {
        Status::Succeeded => EventType::ExecutionSucceeded,
        Status::Failed => EventType::ExecutionFailed,
        Status::TimedOut => EventType::ExecutionTimedOut,
        Status::Aborted => EventType::ExecutionAborted,
        Status::Running => unreachable!(),
    };
    assert_eq!(
        last.event_type, expected,
        "the last event ends the execution"
    );
    assert_eq!(r.output.is_some(), r.status == Status::Succeeded);
}
