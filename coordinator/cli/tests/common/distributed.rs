//! The Distributed Map fixtures of `tests/fixtures/distributed/`, run through the `mapfleet`
//! binary: in embedded mode (`distributed_map.rs`) and on the fleet
//! (`distributed_map_fleet.rs`, the same binary with fleet flags).
//!
//! Each fixture is
//! `{comment, objects?, generate?, buckets?, definition, input?, expected: {status, output?,
//! error?, cause_contains?}, events?, event_counts?, files?}`:
//! - `objects`: `"bucket/key"` to the object's text, written before the run (gzip'd when the
//!   key ends in `.gz`, as an S3 Inventory writes its data files); `generate`:
//!   `"bucket/key"` to `{format: "jsonl"|"csv", count, fail_every?}`, a generated object
//!   whose item `i` is `{"id": i, "fail": bool}` (failing every `fail_every`-th item).
//! - `buckets`: buckets to create empty.
//! - `output`: matched as a subset (objects by field, arrays whole); `"<map-run-arn>"`
//!   stands for the run's ARN and `"<manifest-key>"` for `<prefix>/<run id>/manifest.json`.
//! - `events`: the exact list of history event types; `event_counts`: counts of some types.
//! - `files`: what the ResultWriter wrote: `{prefix, manifest: {SUCCEEDED, FAILED}` (how
//!   many files), `SUCCEEDED`/`FAILED`: how many records in all, `records`: records matched
//!   as subsets, found by their `Input`'s `id`}.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value, json};

pub const MAPFLEET: &str = env!("CARGO_BIN_EXE_mapfleet");

/// The fixtures, sorted.
pub fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/distributed");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
}

/// `expected` is a subset of `actual`: objects field by field, everything else equal.
fn subset(expected: &Value, actual: &Value, vars: &Map<String, Value>) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|x| subset(v, x, vars))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(x, y)| subset(x, y, vars))
        }
        (Value::String(s), _) if s.starts_with('<') && s.ends_with('>') && vars.contains_key(s) => {
            &vars[s] == actual
        }
        _ => expected == actual,
    }
}

pub fn write_object(data: &Path, path: &str, bytes: &[u8]) {
    let file = data.join("buckets").join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, bytes).unwrap();
}

/// `bytes` gzip'd.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

pub fn generate(spec: &Value) -> String {
    let count = spec["count"].as_u64().unwrap();
    let every = spec["fail_every"].as_u64().unwrap_or(0);
    let fails = |i: u64| every > 0 && i % every == every - 1;
    match spec["format"].as_str().unwrap() {
        "jsonl" => (0..count)
            .map(|i| format!("{}\n", json!({"id": i, "fail": fails(i)})))
            .collect(),
        "csv" => {
            let rows: String = (0..count).map(|i| format!("{i},{}\n", fails(i))).collect();
            format!("id,fail\n{rows}")
        }
        other => panic!("unknown format {other}"),
    }
}

/// Runs a fixture with `data` as the data dir (its buckets are the ones the coordinator
/// reads); `extra` are more flags of `mapfleet run` (the fleet's).
pub fn run_fixture(path: &Path, data: &Path, extra: &[String]) -> Result<(), String> {
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = data.to_path_buf();
    std::fs::create_dir_all(data.join("buckets")).unwrap();
    for (p, text) in fx["objects"].as_object().into_iter().flatten() {
        let text = text.as_str().unwrap().as_bytes();
        if p.ends_with(".gz") {
            write_object(&data, p, &gzip(text));
        } else {
            write_object(&data, p, text);
        }
    }
    for (p, spec) in fx["generate"].as_object().into_iter().flatten() {
        write_object(&data, p, generate(spec).as_bytes());
    }
    for b in fx["buckets"].as_array().into_iter().flatten() {
        std::fs::create_dir_all(data.join("buckets").join(b.as_str().unwrap())).unwrap();
    }
    let def = dir.path().join("def.json");
    std::fs::write(&def, fx["definition"].to_string()).unwrap();
    let input = dir.path().join("in.json");
    std::fs::write(&input, fx.get("input").unwrap_or(&json!({})).to_string()).unwrap();
    let out = Command::new(MAPFLEET)
        .arg("run")
        .arg(&def)
        .arg("--input")
        .arg(&input)
        .args(["--name", "dmap-test", "--describe", "--history"])
        .arg("--data-dir")
        .arg(&data)
        .args(extra)
        .env_remove("MAPFLEET_REDIS_URL")
        .env_remove("MAPFLEET_AMQP_URL")
        .env_remove("MAPFLEET_MAX_PAYLOAD_BYTES")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("no JSON on stdout ({e}); stderr: {stderr}"))?;
    let events = doc["events"].as_array().cloned().unwrap_or_default();
    let run_arn = events
        .iter()
        .find_map(|e| e["mapRunStartedEventDetails"]["mapRunArn"].as_str())
        .map(str::to_string);
    let mut vars = Map::new();
    if let Some(arn) = &run_arn {
        vars.insert("<map-run-arn>".into(), json!(arn));
    }
    let expected = &fx["expected"];
    let fail = |what: String| Err(format!("{what}\ndescribe: {doc}\nstderr: {stderr}"));
    if doc["status"] != expected["status"] {
        return fail(format!(
            "status {} != {}",
            doc["status"], expected["status"]
        ));
    }
    if let Some(e) = expected.get("error")
        && doc["error"] != *e
    {
        return fail(format!("error {} != {e}", doc["error"]));
    }
    if let Some(c) = expected["cause_contains"].as_str()
        && !doc["cause"].as_str().unwrap_or_default().contains(c)
    {
        return fail(format!("cause does not contain {c:?}"));
    }
    if let Some(files) = fx.get("files") {
        let prefix = files["prefix"].as_str().unwrap();
        let id = run_arn
            .as_deref()
            .and_then(|a| a.rsplit(':').next())
            .unwrap_or("?");
        let folder = if prefix.is_empty() {
            format!("{id}/")
        } else {
            format!("{prefix}/{id}/")
        };
        let bucket = files["bucket"].as_str().unwrap();
        vars.insert(
            "<manifest-key>".into(),
            json!(format!("{folder}manifest.json")),
        );
        let read = |key: &str| -> Result<Value, String> {
            let p = data.join("buckets").join(bucket).join(key);
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            if key.ends_with(".jsonl") {
                Ok(Value::Array(
                    text.lines()
                        .map(|l| serde_json::from_str(l).unwrap())
                        .collect(),
                ))
            } else {
                serde_json::from_str(&text).map_err(|e| format!("{key}: {e}"))
            }
        };
        let manifest = read(&format!("{folder}manifest.json"))?;
        if manifest["MapRunArn"] != json!(run_arn) || manifest["DestinationBucket"] != json!(bucket)
        {
            return fail(format!("manifest {manifest}"));
        }
        let mut records = Vec::new();
        for status in ["SUCCEEDED", "FAILED"] {
            let listed = manifest["ResultFiles"][status]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(n) = files["manifest"][status].as_u64()
                && listed.len() as u64 != n
            {
                return fail(format!(
                    "{status}: {} files, expected {n}: {manifest}",
                    listed.len()
                ));
            }
            let mut count = 0;
            for f in &listed {
                let key = f["Key"].as_str().unwrap();
                let size = std::fs::metadata(data.join("buckets").join(bucket).join(key))
                    .map_err(|e| format!("{key}: {e}"))?
                    .len();
                if f["Size"] != json!(size) {
                    return fail(format!("{key}: size {size}, manifest says {}", f["Size"]));
                }
                let file = read(key)?;
                let file = file.as_array().unwrap();
                count += file.len();
                records.extend(file.iter().cloned());
            }
            if let Some(n) = files[status].as_u64()
                && count as u64 != n
            {
                return fail(format!("{status}: {count} records, expected {n}"));
            }
        }
        // Each item exactly once.
        let mut ids: Vec<String> = records
            .iter()
            .filter_map(|r| r["Input"].as_str())
            .map(str::to_string)
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        if ids.len() != n {
            return fail(format!("{} duplicate records", n - ids.len()));
        }
        for want in files["records"].as_array().into_iter().flatten() {
            let found = records.iter().any(|r| {
                let input: Value = serde_json::from_str(r["Input"].as_str().unwrap_or("null"))
                    .unwrap_or(Value::Null);
                input == want["Input"] && subset(&want["record"], r, &vars)
            });
            if !found {
                return fail(format!("no record matches {want}"));
            }
        }
    }
    if let Some(o) = expected.get("output") {
        let output: Value =
            serde_json::from_str(doc["output"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        if !subset(o, &output, &vars) {
            return fail(format!("output {output} does not match {o}"));
        }
    }
    if let Some(list) = fx["events"].as_array() {
        let types: Vec<Value> = events.iter().map(|e| e["type"].clone()).collect();
        if &types != list {
            return fail(format!("events {types:?}"));
        }
    }
    for (t, n) in fx["event_counts"].as_object().into_iter().flatten() {
        let count = events.iter().filter(|e| e["type"] == json!(t)).count();
        if json!(count) != *n {
            return fail(format!("{count} {t} events, expected {n}"));
        }
    }
    Ok(())
}
