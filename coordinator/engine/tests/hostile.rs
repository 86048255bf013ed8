//! Hostile definitions, execution inputs and step outcomes against the engine: each is
//! refused with an error that names the culprit, or runs to an end, in bounded memory and
//! without a panic. One test per row of `docs/HOSTILE-INPUT.md` that the engine owns.
//!
//! Whole executions run through [`mapfleet_engine::scripted`] (the real processor, in
//! memory). Memory is measured by a counting allocator over this test binary's threads.

use std::sync::Arc;

use mapfleet_engine::asl::error::StatesError;
use mapfleet_engine::asl::parse::{parse_definition, parse_json_text};
use mapfleet_engine::driver::{Status, StepRequest};
use mapfleet_engine::engine::run::EngineOptions;
use mapfleet_engine::scripted::{self, Limits, Outcome, ScriptedResult};
use serde_json::{Value, json};

mod peak_memory;
use peak_memory::peak_bytes;

const MIB: usize = 1 << 20;

fn run_text(
    text: &str,
    input: Value,
    answer: &mut dyn FnMut(&StepRequest) -> Outcome,
) -> ScriptedResult {
    let def = parse_definition(text).expect("a valid definition");
    scripted::run(
        Arc::new(def),
        input,
        EngineOptions::default(),
        &Limits::default(),
        false,
        answer,
    )
}

fn echo(step: &StepRequest) -> Outcome {
    Ok(step.input.clone())
}

/// `depth` Parallel states, each the only state of its parent's only branch.
fn nested_parallel(depth: usize) -> String {
    // Built as text: a serde_json::Value this deep could not be dropped without recursion.
    let mut text =
        String::from(r#"{"StartAt":"Leaf","States":{"Leaf":{"Type":"Pass","End":true}}}"#);
    for _ in 0..depth {
        text = format!(
            r#"{{"StartAt":"P","States":{{"P":{{"Type":"Parallel","End":true,"Branches":[{text}]}}}}}}"#
        );
    }
    text
}

/// `depth` Map states, each the only state of its parent's ItemProcessor.
fn nested_map_text(depth: usize) -> String {
    // Built as text: a serde_json::Value this deep could not be dropped without recursion.
    let mut text =
        String::from(r#"{"StartAt":"Leaf","States":{"Leaf":{"Type":"Pass","End":true}}}"#);
    for _ in 0..depth {
        text = format!(
            r#"{{"StartAt":"M","States":{{"M":{{"Type":"Map","End":true,"ItemsPath":"$.xs","ItemProcessor":{text}}}}}}}"#
        );
    }
    text
}

#[test]
fn deeply_nested_parallel_and_map_are_refused_by_nesting_or_run() {
    // Too deep for JSON text at all: refused by the JSON reader's nesting limit with a
    // position, before any state is built (no stack overflow, no huge tree).
    for text in [nested_parallel(500), nested_map_text(500)] {
        let (err, peak) = peak_bytes(|| parse_definition(&text).expect_err("refused"));
        let message = err.to_string();
        assert!(message.contains("recursion limit"), "{message}");
        assert!(peak < 4 * MIB, "peak {peak} B");
    }
    // As deep as JSON text allows: it runs to the end.
    let r = run_text(&nested_parallel(20), json!({"x": 1}), &mut echo);
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    let mut expected = json!({"x": 1});
    for _ in 0..20 {
        expected = json!([expected]);
    }
    assert_eq!(r.output.unwrap(), expected);
}

/// A chain of `n` Pass states.
fn chain(n: usize) -> String {
    let mut states = serde_json::Map::new();
    for i in 0..n {
        let s = if i + 1 < n {
            json!({"Type": "Pass", "Next": format!("S{}", i + 1)})
        } else {
            json!({"Type": "Pass", "End": true})
        };
        states.insert(format!("S{i}"), s);
    }
    json!({"StartAt": "S0", "States": states}).to_string()
}

#[test]
fn ten_thousand_states_run_and_fifteen_thousand_reach_the_history_cap() {
    let (r, peak) = peak_bytes(|| run_text(&chain(10_000), json!({"k": "v"}), &mut echo));
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(r.event_count, 20_002);
    // The parsed definition dominates; the run itself adds little (no history kept).
    assert!(peak < 64 * MIB, "peak {peak} B");
    // 30,000 events in one cursor: over AWS's 25,000, so it fails as AWS does.
    let r = run_text(&chain(15_000), json!({}), &mut echo);
    assert_eq!(r.status, Status::Failed);
    let e = r.error.unwrap();
    assert_eq!(e.error, "States.Runtime");
    assert!(
        e.cause.contains("maximum number of history events (25000)"),
        "{}",
        e.cause
    );
}

#[test]
fn a_choice_of_fifteen_thousand_rules_picks_the_last_and_a_deep_not_is_refused() {
    let n = 15_000;
    let rules: Vec<Value> = (0..n)
        .map(|i| json!({"Variable": "$.n", "NumericEquals": i, "Next": if i + 1 == n { "Hit" } else { "Miss" }}))
        .collect();
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": rules, "Default": "Miss"},
        "Hit": {"Type": "Succeed"},
        "Miss": {"Type": "Fail", "Error": "Missed"}}})
    .to_string();
    assert!(def.len() < 1 << 20, "{}", def.len());
    let r = run_text(&def, json!({"n": n - 1}), &mut echo);
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    // Not(Not(...)) nested past what JSON text allows: refused with a position.
    let mut rule = String::from(r#"{"Variable":"$.n","IsPresent":true}"#);
    for _ in 0..400 {
        rule = format!(r#"{{"Not":{rule}}}"#);
    }
    let text = format!(
        r#"{{"StartAt":"C","States":{{"C":{{"Type":"Choice","Choices":[{{"And":[{rule}],"Next":"Hit"}}]}},"Hit":{{"Type":"Succeed"}}}}}}"#
    );
    let message = parse_definition(&text).expect_err("refused").to_string();
    assert!(message.contains("recursion limit"), "{message}");
}

#[test]
fn regex_heavy_expressions_end_with_a_result_or_a_clear_error() {
    // JSONata's regexes run on a linear-time engine: the classic catastrophic pattern on a
    // long non-matching string ends at once, and a pattern too large to compile is an
    // evaluation error naming the state.
    let long = "a".repeat(50_000) + "!";
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "R", "States": {
        "R": {"Type": "Pass", "End": true,
              "Output": {"m": "{% $contains($states.input.s, /^(a+)+$/) %}"}}}});
    let r = run_text(&def.to_string(), json!({"s": long}), &mut echo);
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(r.output.unwrap(), json!({"m": false}));

    let def = json!({"QueryLanguage": "JSONata", "StartAt": "Huge", "States": {
        "Huge": {"Type": "Pass", "End": true,
                 "Output": {"m": "{% $contains($states.input.s, /((a{100}){100}){100}/) %}"}}}});
    let r = match parse_definition(&def.to_string()) {
        // Refused when the definition is checked: the message names the state.
        Err(e) => {
            assert!(e.to_string().contains("Huge"), "{e}");
            return;
        }
        Ok(d) => scripted::run(
            Arc::new(d),
            json!({"s": "aaa"}),
            EngineOptions::default(),
            &Limits::default(),
            false,
            &mut echo,
        ),
    };
    assert_eq!(r.status, Status::Failed, "{:?}", r.output);
    let e = r.error.unwrap();
    assert_eq!(e.error, "States.QueryEvaluationError", "{}", e.cause);
    assert!(e.cause.contains("'Huge'"), "{}", e.cause);

    // A JSONPath filter with a regex: evaluated by a linear-time engine as well.
    let def = json!({"StartAt": "F", "States": {"F": {"Type": "Pass", "End": true,
        "Parameters": {"hits.$": "$.xs[?(@.s =~ /^(a+)+$/)]"}}}});
    let xs: Vec<Value> = (0..100).map(|_| json!({"s": long.clone()})).collect();
    let r = run_text(&def.to_string(), json!({"xs": xs}), &mut echo);
    // 5 MB of input is over the payload limit: refused at the state's output, named.
    assert_eq!(r.status, Status::Failed, "{:?}", r.output);
}

#[test]
fn deeply_nested_input_is_refused_by_the_reader_and_a_deep_allowed_one_runs() {
    let text = "[".repeat(100_000) + &"]".repeat(100_000);
    let (err, peak) = peak_bytes(|| serde_json::from_str::<Value>(&text).expect_err("refused"));
    assert!(err.to_string().contains("recursion limit"), "{err}");
    assert!(peak < MIB, "peak {peak} B");
    // The same reader (with its limit) serves definitions.
    assert!(parse_json_text(&text).is_err());
    // 120 levels: inside the limit; paths, templates and the payload check walk it.
    let deep: Value = serde_json::from_str(&("[".repeat(120) + "7" + &"]".repeat(120))).unwrap();
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true,
        "Parameters": {"all.$": "$..*", "copy.$": "$"}}}});
    let r = run_text(&def.to_string(), deep.clone(), &mut echo);
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(r.output.unwrap()["copy"], deep);
}

#[test]
fn an_oversized_or_malformed_step_outcome_fails_its_step_and_the_batch_goes_on() {
    // A Map of 5 items, item 2's step answering 1 MiB (over the 256 KiB payload limit):
    // that iteration fails with States.DataLimitExceeded naming the state, the others
    // succeed, and the Map tolerates one failure.
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
        "ToleratedFailureCount": 1,
        "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke", "End": true}}}}}});
    let mut answer = |step: &StepRequest| -> Outcome {
        match step.input.as_u64() {
            Some(2) => Ok(json!({"blob": "x".repeat(MIB)})),
            // A worker's error with an error name and cause of 100 KB each: carried, not
            // trusted (the history holds what the engine was given).
            Some(4) => Err(StatesError::new("E".repeat(100_000), "c".repeat(100_000))),
            _ => Ok(step.input.clone()),
        }
    };
    let r = run_text(&def.to_string(), json!([0, 1, 2, 3, 4]), &mut answer);
    // Two failures over a tolerance of one: the Map fails, naming why.
    assert_eq!(r.status, Status::Failed, "{:?}", r.output);
    let e = r.error.unwrap();
    assert_eq!(
        e.error, "States.ExceedToleratedFailureThreshold",
        "{}",
        e.cause
    );
    // One failure: tolerated, and the results of the rest are in order.
    let mut answer = |step: &StepRequest| -> Outcome {
        match step.input.as_u64() {
            Some(2) => Ok(json!({"blob": "x".repeat(MIB)})),
            _ => Ok(step.input.clone()),
        }
    };
    let (r, peak) = peak_bytes(|| run_text(&def.to_string(), json!([0, 1, 2, 3, 4]), &mut answer));
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(r.output.unwrap(), json!([0, 1, null, 3, 4]));
    assert!(peak < 8 * MIB, "peak {peak} B");
    // Without tolerance the error names the state and the limit.
    let strict = json!({"StartAt": "T", "States": {"T": {"Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke", "End": true}}});
    let r = run_text(&strict.to_string(), json!(2), &mut answer);
    let e = r.error.unwrap();
    assert_eq!(e.error, "States.DataLimitExceeded");
    assert!(e.cause.contains("'T'"), "{}", e.cause);
}
