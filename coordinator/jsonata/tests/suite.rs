//! Runs the JSONata reference implementation's language-neutral test suite
//! (`tests/suite/`, see its NOTICE.md) and ratchets the result: the pass count may not fall
//! below `FLOOR`, and the cases that fail must be exactly those in `known_failures.txt`
//! (a fixed case must be taken off that list). Cases using `$eval`, which Step Functions
//! leaves out, are excluded and counted apart.
//!
//! `JSONATA_SUITE_WRITE_KNOWN=1 cargo test -p mapfleet-jsonata --test suite` rewrites the
//! list from the current failures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mapfleet_jsonata::{Environment, Expression};
use serde_json::Value as Json;

/// Passing cases at the last ratchet; raise it when more pass.
const FLOOR: usize = 1672;

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suite")
}

struct Case {
    id: String,
    group: String,
    dir: PathBuf,
    case: Json,
}

fn cases() -> Vec<Case> {
    let mut out = vec![];
    let mut groups: Vec<_> = std::fs::read_dir(suite_dir().join("groups"))
        .expect("suite groups")
        .map(|e| e.expect("dir entry").path())
        .collect();
    groups.sort();
    for g in groups {
        let group = g.file_name().unwrap().to_string_lossy().to_string();
        let mut files: Vec<_> = std::fs::read_dir(&g)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for f in files {
            let stem = f.file_stem().unwrap().to_string_lossy().to_string();
            // A case JSON can hold a lone UTF-16 surrogate, which no Rust string can:
            // such a case runs as an unrunnable one (and fails).
            let v: Json = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
                .unwrap_or_else(|e| serde_json::json!({"unreadable": e.to_string()}));
            match v {
                Json::Array(items) => {
                    for (i, c) in items.into_iter().enumerate() {
                        out.push(Case {
                            id: format!("{group}/{stem}[{i}]"),
                            group: group.clone(),
                            dir: g.clone(),
                            case: c,
                        });
                    }
                }
                c => out.push(Case {
                    id: format!("{group}/{stem}"),
                    group: group.clone(),
                    dir: g.clone(),
                    case: c,
                }),
            }
        }
    }
    out
}

/// Number-tolerant, order-insensitive-for-objects JSON equality (`deep.equal`).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn same_unordered(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && {
                let mut used = vec![false; y.len()];
                x.iter().all(|v| {
                    if let Some(i) = (0..y.len()).find(|&i| !used[i] && same(v, &y[i])) {
                        used[i] = true;
                        true
                    } else {
                        false
                    }
                })
            }
        }
        _ => same(a, b),
    }
}

fn short(s: String) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// `Ok(())` when the case passes, else why not.
fn run(c: &Case) -> Result<(), String> {
    let case = &c.case;
    if let Some(why) = case.get("unreadable") {
        return Err(format!("case file unreadable: {why}"));
    }
    let expr = match (case.get("expr"), case.get("expr-file")) {
        (Some(Json::String(e)), _) => e.clone(),
        (_, Some(Json::String(f))) => {
            std::fs::read_to_string(c.dir.join(f)).map_err(|e| e.to_string())?
        }
        _ => return Err("no expression".into()),
    };
    let input: Option<Json> = match (case.get("data"), case.get("dataset")) {
        (Some(d), _) => Some(d.clone()),
        (None, Some(Json::String(ds))) => {
            let p = suite_dir().join("datasets").join(format!("{ds}.json"));
            Some(serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        }
        _ => None,
    };
    let mut env = Environment::new(1_500_000_000_000, 7);
    env.max_depth = 10_000;
    env.deadline = Some(Instant::now() + Duration::from_secs(20));
    if let Some(Json::Number(d)) = case.get("depth") {
        env.max_depth = d.as_u64().unwrap_or(10_000) as usize;
    }
    if let Some(Json::Number(t)) = case.get("timelimit") {
        env.deadline = Some(Instant::now() + Duration::from_millis(t.as_u64().unwrap_or(1000)));
    }
    if let Some(Json::Object(b)) = case.get("bindings") {
        env.bindings = b.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    let result = Expression::parse(&expr).and_then(|e| e.evaluate(input.as_ref(), &mut env));
    let expected_code = case.get("code").and_then(|c| c.as_str()).or_else(|| {
        case.get("error")
            .and_then(|e| e.get("code"))
            .and_then(|c| c.as_str())
    });
    if let Some(code) = expected_code {
        return match result {
            Err(e) if e.code() == code => Ok(()),
            Err(e) => Err(format!("expected {code}, got {}", e.code())),
            Ok(v) => Err(short(format!(
                "expected {code}, got result {}",
                v.map(|v| v.to_string()).unwrap_or("undefined".into())
            ))),
        };
    }
    if case
        .get("undefinedResult")
        .is_some_and(|u| u == &Json::Bool(true))
    {
        return match result {
            Ok(None) => Ok(()),
            Ok(Some(v)) => Err(short(format!("expected undefined, got {v}"))),
            Err(e) => Err(short(format!(
                "expected undefined, got error {}: {}",
                e.code(),
                e.message()
            ))),
        };
    }
    let Some(expected) = case.get("result") else {
        return Err("case has no expectation".into());
    };
    let unordered = case
        .get("unordered")
        .is_some_and(|u| u == &Json::Bool(true));
    match result {
        Ok(Some(v))
            if if unordered {
                same_unordered(&v, expected)
            } else {
                same(&v, expected)
            } =>
        {
            Ok(())
        }
        Ok(v) => Err(short(format!(
            "expected {expected}, got {}",
            v.map(|v| v.to_string()).unwrap_or("undefined".into())
        ))),
        Err(e) => Err(short(format!(
            "expected {expected}, got error {}: {}",
            e.code(),
            e.message()
        ))),
    }
}

fn known_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/known_failures.txt")
}

fn read_known() -> BTreeMap<String, String> {
    std::fs::read_to_string(known_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((id, reason)) => (id.to_string(), reason.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

#[test]
fn reference_suite() {
    // The reference implementation runs on JavaScript's deep stack; give the suite one too
    // (the limits on ordinary stacks are covered by the crate's unit tests).
    let handle = std::thread::Builder::new()
        .stack_size(512 * 1024 * 1024)
        .spawn(run_suite)
        .unwrap();
    handle.join().unwrap();
}

fn run_suite() {
    let all = cases();
    let mut passed = 0;
    let mut excluded = 0;
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut per_group: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for c in &all {
        let entry = per_group.entry(c.group.clone()).or_default();
        let expr = c.case.get("expr").and_then(|e| e.as_str()).unwrap_or("");
        if expr.contains("$eval") {
            excluded += 1;
            entry.2 += 1;
            continue;
        }
        let outcome =
            std::panic::catch_unwind(|| run(c)).unwrap_or_else(|_| Err("panicked".into()));
        match outcome {
            Ok(()) => {
                passed += 1;
                entry.0 += 1;
            }
            Err(why) => {
                entry.1 += 1;
                failures.insert(c.id.clone(), why);
            }
        }
    }
    let failed = failures.len();
    println!(
        "JSONata reference suite: {passed} passed, {failed} failed, {excluded} excluded ($eval)"
    );
    println!(
        "pass rate of the non-$eval cases: {:.2}%",
        100.0 * passed as f64 / (passed + failed) as f64
    );
    for (g, (p, f, e)) in &per_group {
        if *f > 0 || *e > 0 {
            println!("  {g}: {p} passed, {f} failed, {e} excluded");
        }
    }
    if std::env::var("JSONATA_SUITE_WRITE_KNOWN").is_ok() {
        let mut text = String::from(
            "# Reference-suite cases that still fail: case id, then why (see tests/suite.rs).\n",
        );
        let known = read_known();
        for (id, why) in &failures {
            let reason = known.get(id).cloned().unwrap_or_else(|| why.clone());
            text.push_str(&format!("{id} {reason}\n"));
        }
        std::fs::write(known_path(), text).unwrap();
    }
    let known = read_known();
    let failing: BTreeSet<&String> = failures.keys().collect();
    let listed: BTreeSet<&String> = known.keys().collect();
    let new_failures: Vec<_> = failing.difference(&listed).collect();
    let fixed: Vec<_> = listed.difference(&failing).collect();
    for id in &new_failures {
        println!("NEW FAILURE {id}: {}", failures[**id]);
    }
    for id in &fixed {
        println!("FIXED (remove from known_failures.txt) {id}");
    }
    assert!(
        passed >= FLOOR,
        "{passed} passed, below the floor of {FLOOR}"
    );
    assert!(
        new_failures.is_empty() && fixed.is_empty(),
        "known_failures.txt is out of date: {} new failures, {} fixed",
        new_failures.len(),
        fixed.len()
    );
}
