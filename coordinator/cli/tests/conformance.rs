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
use mapfleet::buckets::StoreBuckets;
use mapfleet::cli::describe;
use serde_json::Value;
use worker::store::LocalStore;

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
    // The ItemReader cases' objects (`s3_objects`) go into a fresh data dir's local buckets,
    // as the CLI adapter writes them; every case gets one, so a missing bucket is missing.
    let data = tempfile::tempdir().expect("a temporary data dir");
    for obj in case["s3_objects"].as_array().into_iter().flatten() {
        let path = data
            .path()
            .join("buckets")
            .join(obj["bucket"].as_str().unwrap_or_default())
            .join(obj["key"].as_str().unwrap_or_default());
        std::fs::create_dir_all(path.parent().expect("a bucket dir")).expect("bucket dir");
        std::fs::write(&path, obj["body"].as_str().unwrap_or_default()).expect("object");
    }
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
    let opts = EmbeddedOptions {
        buckets: Some(Arc::new(StoreBuckets(Arc::new(LocalStore::new(
            data.path().join("buckets"),
        ))))),
        ..EmbeddedOptions::default()
    };
    let result = run_execution(def, info, Arc::new(NoTasks), opts).await;
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

/// Which cases a selection takes: the runner's default ones (no service integration), or
/// those `--with-s3` adds (the ones that need S3 alone: Distributed Maps' ItemReader, and
/// `aws-sdk:s3` Tasks, which mapfleet does not serve).
#[derive(Clone, Copy, PartialEq)]
enum Cases {
    Pure,
    S3,
}

/// The runner's selection of `cases`, narrowed to one query language (`*`: any) and, with
/// `vars_only`, to the cases that use variables (`Assign`).
fn selected(
    case: &Value,
    cases: Cases,
    query_language: &str,
    map_only: bool,
    vars_only: bool,
) -> bool {
    let flag = |k: &str| case[k].as_bool().unwrap_or(false);
    let features = &case["features"];
    let s3_only = case["requires"] == serde_json::json!(["s3"]);
    let wanted = match cases {
        Cases::Pure => flag("pure"),
        Cases::S3 => !flag("pure") && s3_only,
    };
    case["kind"] == "execution"
        && flag("aws_validated")
        && wanted
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
    // (name in floor.json, cases, query language, Map cases only, compare event types,
    // variables only)
    let selections = [
        ("jsonpath", Cases::Pure, "JSONPath", false, false, false),
        (
            "jsonpath_map_only",
            Cases::Pure,
            "JSONPath",
            true,
            false,
            false,
        ),
        (
            "jsonpath_event_types",
            Cases::Pure,
            "JSONPath",
            false,
            true,
            false,
        ),
        ("jsonata", Cases::Pure, "JSONata", false, false, false),
        (
            "jsonata_event_types",
            Cases::Pure,
            "JSONata",
            false,
            true,
            false,
        ),
        ("mixed", Cases::Pure, "mixed", false, false, false),
        ("variables", Cases::Pure, "*", false, false, true),
        ("with_s3_map", Cases::S3, "*", true, false, false),
        ("with_s3_map_event_types", Cases::S3, "*", true, true, false),
        ("with_s3_all", Cases::S3, "*", false, false, false),
    ];
    let mut ok = true;
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for (name, which, language, map_only, with_events, vars_only) in selections {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let (mut passed, mut failed) = (0u64, 0u64);
        let chosen: Vec<&Value> = cases
            .iter()
            .filter(|c| selected(c, which, language, map_only, vars_only))
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
