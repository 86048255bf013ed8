//! Definitions that loop: they end at the history cap as on AWS, a chain of flow states
//! yields to its driver, and memory stays flat however long a loop runs.
//!
//! Whole executions run through [`mapfleet_engine::scripted`] (the real processor, in
//! memory, virtual time). Memory is measured by a counting allocator over this test
//! binary's threads (each test counts only what its own thread allocates).

use std::sync::Arc;

use mapfleet_engine::asl::parse::parse_definition_value;
use mapfleet_engine::driver::Status;
use mapfleet_engine::engine::cursor::{Action, CursorEvent, Phase};
use mapfleet_engine::engine::history::EventType;
use mapfleet_engine::engine::run::{EngineOptions, FLOW_STEPS_PER_APPLY, MAX_HISTORY_EVENTS, Tx};
use mapfleet_engine::engine::{Engine, ExecutionInfo};
use mapfleet_engine::scripted::{self, Limits, Outcome, ScriptedResult};
use serde_json::{Value, json};

mod peak_memory;
use peak_memory::peak_bytes;

fn run_with(
    definition: Value,
    input: Value,
    options: EngineOptions,
    limits: &Limits,
    keep_history: bool,
    answer: &mut dyn FnMut(&mapfleet_engine::driver::StepRequest) -> Outcome,
) -> ScriptedResult {
    let def = parse_definition_value(&definition).expect("a valid test definition");
    scripted::run(Arc::new(def), input, options, limits, keep_history, answer)
}

fn run(definition: Value) -> ScriptedResult {
    run_with(
        definition,
        json!({}),
        EngineOptions::default(),
        &Limits::default(),
        true,
        &mut |_| Ok(json!({})),
    )
}

fn pass_loop() -> Value {
    json!({
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Next": "B"},
            "B": {"Type": "Pass", "Next": "A"}
        }
    })
}

/// Fails unless the run failed at the history cap, the last event says so, and ids ascend.
fn assert_capped(r: &ScriptedResult, cap: u64) {
    assert_eq!(r.status, Status::Failed, "{:?}", r.error);
    let e = r.error.as_ref().expect("an error");
    assert_eq!(e.error, "States.Runtime");
    assert!(
        e.cause
            .contains(&format!("maximum number of history events ({cap})")),
        "{}",
        e.cause
    );
    assert!(
        !r.stopped_by_limits,
        "the cap ended it, not the test's limits"
    );
    let last = r.events.last().expect("events");
    assert_eq!(last.event_type, EventType::ExecutionFailed);
    assert!(r.events.windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn a_pass_loop_fails_at_the_history_cap() {
    let r = run(pass_loop());
    assert_capped(&r, MAX_HISTORY_EVENTS);
    let cause = &r.error.as_ref().unwrap().cause;
    assert!(cause.contains("at state 'A'") || cause.contains("at state 'B'"));
    // The root's events: at the cap, plus the execution's end.
    assert!(
        (MAX_HISTORY_EVENTS..=MAX_HISTORY_EVENTS + 2).contains(&r.event_count),
        "{} events",
        r.event_count
    );
}

#[test]
fn a_pass_choice_loop_fails_at_the_history_cap() {
    let def = json!({
        "StartAt": "Count",
        "States": {
            "Count": {
                "Type": "Pass",
                "Parameters": {"n.$": "States.MathAdd($.n, 1)"},
                "Next": "Again?"
            },
            "Again?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1000000000, "Next": "Done"}],
                "Default": "Count"
            },
            "Done": {"Type": "Succeed"}
        }
    });
    let r = run_with(
        def,
        json!({"n": 0}),
        EngineOptions::default(),
        &Limits::default(),
        true,
        &mut |_| Ok(json!({})),
    );
    assert_capped(&r, MAX_HISTORY_EVENTS);
}

#[test]
fn the_cap_is_configurable_and_a_run_under_it_succeeds() {
    let options = EngineOptions {
        max_history_events: 100,
        ..Default::default()
    };
    let r = run_with(
        pass_loop(),
        json!({}),
        options.clone(),
        &Limits::default(),
        true,
        &mut |_| Ok(json!({})),
    );
    assert_capped(&r, 100);
    assert!(r.event_count <= 102, "{}", r.event_count);
    // 40 states, 81 events: under a cap of 100.
    let mut states = serde_json::Map::new();
    for i in 0..40 {
        let next = if i == 39 {
            json!({"Type": "Pass", "End": true})
        } else {
            json!({"Type": "Pass", "Next": format!("S{}", i + 1)})
        };
        states.insert(format!("S{i}"), next);
    }
    let chain = json!({"StartAt": "S0", "States": states});
    let r = run_with(
        chain,
        json!({}),
        options,
        &Limits::default(),
        true,
        &mut |_| Ok(json!({})),
    );
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
}

#[test]
fn a_retry_loop_and_a_catch_loop_fail_at_the_history_cap() {
    let retry = json!({
        "StartAt": "T",
        "States": {"T": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true,
            "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 99999999,
                       "IntervalSeconds": 1, "BackoffRate": 1.0}]
        }}
    });
    let catch = json!({
        "StartAt": "T",
        "States": {"T": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true,
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "T"}]
        }}
    });
    for def in [retry, catch] {
        let r = run_with(
            def,
            json!({}),
            EngineOptions::default(),
            &Limits::default(),
            true,
            &mut |_| {
                Err(mapfleet_engine::asl::error::StatesError::new(
                    "Boom", "always",
                ))
            },
        );
        assert_capped(&r, MAX_HISTORY_EVENTS);
        assert!(r.steps > 1000, "{} steps", r.steps);
    }
}

#[test]
fn a_looping_map_iteration_fails_the_execution_and_names_itself() {
    let def = json!({
        "StartAt": "M",
        "States": {"M": {
            "Type": "Map", "End": true,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "A",
                "States": {
                    "A": {"Type": "Choice",
                          "Choices": [{"Variable": "$", "NumericEquals": 1, "Next": "A"}],
                          "Default": "Done"},
                    "Done": {"Type": "Succeed"}
                }
            }
        }}
    });
    let r = run_with(
        def,
        json!([0, 1, 2]),
        EngineOptions::default(),
        &Limits::default(),
        true,
        &mut |_| Ok(json!({})),
    );
    assert_capped(&r, MAX_HISTORY_EVENTS);
    assert!(
        r.error
            .as_ref()
            .unwrap()
            .cause
            .contains("iteration or Parallel branch /1"),
        "{}",
        r.error.as_ref().unwrap().cause
    );
}

#[test]
fn an_inline_map_over_many_items_is_not_capped_as_a_whole() {
    // 10,000 items of 4 events each: AWS would fail this execution (its cap counts the
    // whole history); mapfleet counts per cursor, so big inline Maps keep working.
    let def = json!({
        "StartAt": "M",
        "States": {"M": {
            "Type": "Map", "End": true,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "P",
                "States": {"P": {"Type": "Pass", "End": true}}
            }
        }}
    });
    let items: Vec<Value> = (0..10_000).map(|i| json!(i)).collect();
    let r = run_with(
        def,
        Value::Array(items),
        EngineOptions {
            payload_limit: 0,
            ..Default::default()
        },
        &Limits::default(),
        false,
        &mut |_| Ok(json!({})),
    );
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert!(r.event_count > 40_000, "{}", r.event_count);
    assert_eq!(r.output.unwrap().as_array().unwrap().len(), 10_000);
}

#[test]
fn one_apply_walks_a_bounded_number_of_states_then_yields() {
    let def = parse_definition_value(&pass_loop()).unwrap();
    let now: chrono::DateTime<chrono::Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
    let engine = Engine::new(
        Arc::new(def),
        ExecutionInfo::new("Loop", "loop", json!({}), now),
    );
    let mut next = 1;
    let mut tx = Tx::new(now, 0.5, &mut next);
    let mut root = engine.start(&mut tx);
    let mut tx = Tx::new(now, 0.5, &mut next);
    engine.apply(&mut root, CursorEvent::Enter, &mut tx);
    let histories = tx
        .actions
        .iter()
        .filter(|a| matches!(a, Action::History(_)))
        .count();
    // Entered and exited once per state walked, then the yield.
    assert_eq!(histories, 2 * FLOW_STEPS_PER_APPLY);
    assert!(matches!(tx.actions.last(), Some(Action::Continue { cursor }) if cursor.is_empty()));
    assert!(matches!(root.phase, Phase::Ready));
}

#[test]
fn a_loop_with_the_cap_off_is_stopped_by_its_driver_in_flat_memory() {
    let off = EngineOptions {
        max_history_events: 0,
        ..Default::default()
    };
    let limits = |max_events| Limits {
        max_events,
        round: 50,
        ..Default::default()
    };
    let (short, short_peak) = peak_bytes(|| {
        run_with(
            pass_loop(),
            json!({"some": "input"}),
            off.clone(),
            &limits(200),
            false,
            &mut |_| Ok(json!({})),
        )
    });
    let (long, long_peak) = peak_bytes(|| {
        run_with(
            pass_loop(),
            json!({"some": "input"}),
            off.clone(),
            &limits(4_000),
            false,
            &mut |_| Ok(json!({})),
        )
    });
    eprintln!(
        "peak {short_peak} B after {} events, {long_peak} B after {}",
        short.event_count, long.event_count
    );
    for r in [&short, &long] {
        assert_eq!(r.status, Status::TimedOut);
        assert!(r.stopped_by_limits);
    }
    // 20 times the rounds, 20 times the events: the same memory (the engine used to keep
    // ~3 KB per round of buffered history actions within one never-ending apply call).
    assert!(long.event_count > 10 * short.event_count);
    assert!(
        long_peak <= short_peak + 64 * 1024,
        "peak {long_peak} B after {} events vs {short_peak} B after {}",
        long.event_count,
        short.event_count
    );
    assert!(long_peak < 1 << 20, "peak {long_peak} B");
}
