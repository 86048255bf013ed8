//! The AWS-recorded conformance cases (`tests/conformance/dev-cases.jsonl`), run in-process
//! through the embedded engine with the selection and comparison rules of
//! `tests/conformance/run_conformance.py`. Prints the pass figures and fails when one drops
//! below its floor in `tests/conformance/floor.json`.
//!
//! A test binary of its own (`harness = false`) so the figures are printed on every run.
//! `cargo test -p mapfleet --test conformance -- -v` lists every failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use coordinator::asl::parse::parse_definition;
use coordinator::embedded::{EmbeddedOptions, NoTasks, run_execution};
use coordinator::engine::ExecutionInfo;
use mapfleet::cli::describe;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

/// What one case produced, in the shape the runner compares.
struct Got {
    status: String,
    output: Option<Value>,
    error: Option<String>,
    events: Vec<String>,
}

async fn run_case(case: &Value) -> Got {
    let rejected = |why: String| Got {
        status: "REJECTED_AT_CREATE".into(),
        output: None,
        error: Some(why),
        events: Vec::new(),
    };
    let def = match parse_definition(case["definition"].as_str().unwrap_or_default()) {
        Ok(d) => Arc::new(d),
        Err(e) => return rejected(e.to_string()),
    };
    let input: Value = match serde_json::from_str(case["input"].as_str().unwrap_or("{}")) {
        Ok(v) => v,
        Err(e) => return rejected(e.to_string()),
    };
    let info = ExecutionInfo::new("Conformance", "case", input, chrono::Utc::now());
    let result = run_execution(def, info, Arc::new(NoTasks), EmbeddedOptions::default()).await;
    let doc = describe(&result);
    Got {
        status: doc["status"].as_str().unwrap_or_default().to_string(),
        output: doc["output"]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok()),
        error: doc["error"].as_str().map(str::to_string),
        events: result.events.iter().map(|e| e.event_type.name()).collect(),
    }
}

/// `<anything>` placeholders of the recorded snapshots, and the bare tokens they also use.
fn mask_parts(s: &str) -> Option<Vec<&str>> {
    if matches!(s, "timestamp" | "date" | "time" | "snf_role_arn") {
        return Some(vec!["", ""]);
    }
    let mut parts = Vec::new();
    let mut rest = s;
    let mut found = false;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        let inner = &after[..close];
        if !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c))
        {
            parts.push(&rest[..open]);
            rest = &after[close + 1..];
            found = true;
        } else {
            parts.push(&rest[..open + 1]);
            rest = after;
        }
    }
    parts.push(rest);
    found.then_some(parts)
}

fn matches_mask(parts: &[&str], got: &str) -> bool {
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !got.starts_with(first) || got.len() < first.len() + last.len() || !got.ends_with(last) {
        return false;
    }
    let mut rest = &got[first.len()..got.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn json_equal(exp: &Value, got: &Value) -> bool {
    if let (Value::String(e), Value::String(g)) = (exp, got)
        && let Some(parts) = mask_parts(e)
    {
        return matches_mask(&parts, g);
    }
    match (exp, got) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| json_equal(v, w)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_equal(x, y))
        }
        _ => exp == got,
    }
}

/// The runner's default selection, narrowed to one query language (`*`: any) and, with
/// `vars_only`, to the cases that use variables (`Assign`).
fn selected(case: &Value, query_language: &str, map_only: bool, vars_only: bool) -> bool {
    let flag = |k: &str| case[k].as_bool().unwrap_or(false);
    let features = &case["features"];
    case["kind"] == "execution"
        && flag("aws_validated")
        && flag("pure")
        && flag("runnable")
        && flag("deterministic")
        && (query_language == "*" || features["query_language"] == query_language)
        && (!vars_only || features["variables"] == true)
        && (!map_only
            || features["state_types"]
                .as_array()
                .is_some_and(|t| t.iter().any(|s| s == "Map")))
}

fn compare(case: &Value, got: &Got, with_events: bool) -> Result<(), String> {
    let exp = &case["expected"];
    if exp["status"].as_str() != Some(got.status.as_str()) {
        return Err(format!(
            "status {} != {} ({:?})",
            got.status, exp["status"], got.error
        ));
    }
    match got.status.as_str() {
        "SUCCEEDED" => {
            let output = got.output.clone().unwrap_or(Value::Null);
            if !json_equal(&exp["output"], &output) {
                return Err(format!(
                    "output differs\n     expected: {}\n     got     : {output}",
                    exp["output"]
                ));
            }
        }
        "FAILED" if exp["error"].as_str() != got.error.as_deref() => {
            return Err(format!("error {:?} != {}", got.error, exp["error"]));
        }
        _ => {}
    }
    if with_events && let Some(expected) = case["expected_events"].as_array() {
        let types: Vec<&str> = expected.iter().filter_map(|e| e["type"].as_str()).collect();
        if types != got.events {
            return Err(format!(
                "event types differ\n     expected: {types:?}\n     got     : {:?}",
                got.events
            ));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let verbose = std::env::args().any(|a| a == "-v" || a == "--verbose");
    let text = std::fs::read_to_string(dir().join("dev-cases.jsonl"))
        .expect("the conformance cases are in the repository");
    let cases: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON case"))
        .collect();
    let floors: Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("floor.json")).expect("floor.json exists"),
    )
    .expect("floor.json is JSON");
    // Paused time: Wait states and timeouts in the cases take no real time.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    // (name in floor.json, query language, Map cases only, compare event types, variables only)
    let selections = [
        ("jsonpath", "JSONPath", false, false, false),
        ("jsonpath_map_only", "JSONPath", true, false, false),
        ("jsonpath_event_types", "JSONPath", false, true, false),
        ("jsonata", "JSONata", false, false, false),
        ("jsonata_event_types", "JSONata", false, true, false),
        ("mixed", "mixed", false, false, false),
        ("variables", "*", false, false, true),
    ];
    let mut ok = true;
    for (name, language, map_only, with_events, vars_only) in selections {
        let (mut passed, mut failed) = (0u64, 0u64);
        let chosen: Vec<&Value> = cases
            .iter()
            .filter(|c| selected(c, language, map_only, vars_only))
            .collect();
        for case in &chosen {
            let got = rt.block_on(run_case(case));
            match compare(case, &got, with_events) {
                Ok(()) => passed += 1,
                Err(why) => {
                    failed += 1;
                    if verbose {
                        println!("FAIL {}: {why}", case["id"].as_str().unwrap_or("?"));
                    }
                }
            }
        }
        let floor = floors[name].as_u64().unwrap_or(0);
        let skipped = cases.len() - chosen.len();
        println!("{name}: {passed} passed, {failed} failed, {skipped} skipped (floor {floor})");
        if passed < floor {
            println!(
                "{name}: below the floor of {floor} passing cases (run with `-- -v` to list failures)"
            );
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
