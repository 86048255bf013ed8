//! Memory bounds of `mapfleet run` in this process, against the real binary: an input over
//! the payload limit is refused without being read, a definition over 1 MiB is refused
//! before parsing, and a Map of large photos decodes them within the decode budget.

#[path = "common/models.rs"]
mod models;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image::ImageEncoder as _;
use models::models_dir;
use serde_json::{Value, json};

const MAPFLEET: &str = env!("CARGO_BIN_EXE_mapfleet");
/// `mapfleet`'s exit code for a refused definition or input.
const EXIT_REJECTED: i32 = 2;

fn echo_definition(dir: &Path) -> PathBuf {
    let path = dir.join("echo.json");
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}});
    std::fs::write(&path, def.to_string()).unwrap();
    path
}

#[test]
fn input_over_the_limit_is_refused_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let def = echo_definition(dir.path());

    // 50 MB on stdin: the process stops reading past the limit and says so; the writer
    // gets no further than the limit plus the pipe's buffer.
    let mut child = Command::new(MAPFLEET)
        .arg("run")
        .arg(&def)
        .args(["--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; 64 * 1024];
        let mut written = 0usize;
        // `[` then spaces: valid JSON so far, so only the size can stop it.
        if stdin.write_all(b"[").is_err() {
            return written;
        }
        while written < 50_000_000 {
            match stdin.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break, // the reader is gone: EPIPE
            }
        }
        written
    });
    let out = child.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_REJECTED), "{stderr}");
    assert!(
        stderr.contains("Invalid execution input")
            && stderr.contains("over the limit of 262144 bytes"),
        "{stderr}"
    );
    assert!(
        written < 4 << 20,
        "{written} bytes were taken from stdin before the refusal"
    );

    // A 50 MB file: refused from its size, unread.
    let big = dir.path().join("big.json");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(50_000_000).unwrap();
    let out = Command::new(MAPFLEET)
        .arg("run")
        .arg(&def)
        .arg("--input")
        .arg(&big)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_REJECTED), "{stderr}");
    assert!(
        stderr.contains("the execution input is 50000000 bytes, over the limit of 262144 bytes"),
        "{stderr}"
    );

    // At the limit is fine.
    let ok = dir.path().join("ok.json");
    let text = format!("{{\"pad\": \"{}\"}}", "x".repeat(262_144 - 11));
    assert_eq!(text.len(), 262_144);
    std::fs::write(&ok, &text).unwrap();
    let out = Command::new(MAPFLEET)
        .arg("run")
        .arg(&def)
        .arg("--input")
        .arg(&ok)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A definition of `states` Pass states in a chain.
fn chain(states: usize) -> String {
    let mut map = serde_json::Map::new();
    for i in 0..states {
        let mut s = json!({"Type": "Pass"});
        if i + 1 < states {
            s["Next"] = json!(format!("S{}", i + 1));
        } else {
            s["End"] = json!(true);
        }
        map.insert(format!("S{i}"), s);
    }
    json!({"StartAt": "S0", "States": map}).to_string()
}

#[test]
fn a_definition_over_1_mib_is_refused_before_parsing() {
    let text = chain(60_000);
    assert!(text.len() > 2_000_000, "{}", text.len());
    let err = coordinator::asl::parse::parse_definition(&text).expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("DEFINITION_TOO_LARGE")
            && message.contains(&format!("{} bytes", text.len()))
            && message.contains("1048576 bytes"),
        "{message}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.json");
    std::fs::write(&path, &text).unwrap();
    for args in [vec!["validate"], vec!["run"]] {
        let out = Command::new(MAPFLEET)
            .args(&args)
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_REJECTED), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "the definition is {} bytes, over the limit of 1048576 bytes",
                text.len()
            )),
            "{args:?}: {stderr}"
        );
    }
    // Just under the limit still parses.
    let small = chain(20_000);
    assert!(small.len() < 1_048_576, "{}", small.len());
    coordinator::asl::parse::parse_definition(&small).expect("valid");
}

/// Runs a Map of face-detection over `keys` in embedded mode; returns its output and the
/// process's peak RSS in bytes (VmHWM, read while it runs).
fn run_photo_map(data_dir: &Path, keys: &[String], budget: u64) -> (Value, u64) {
    let def = json!({
        "StartAt": "M",
        "States": {"M": {
            "Type": "Map", "ItemsPath": "$.keys", "MaxConcurrency": 0, "End": true,
            "Iterator": {"StartAt": "D", "States": {
                "D": {
                    "Type": "Task", "Resource": "arn:mapfleet:task:::face-detection",
                    "Parameters": {"userId": "u", "s3Bucket": "big", "s3Key.$": "$"},
                    "Catch": [{"ErrorEquals": ["PhotoDoesNotMeetRequirementError"], "Next": "R"}],
                    "End": true
                },
                "R": {"Type": "Pass", "End": true}
            }}
        }}
    });
    let def_path = data_dir.join("def.json");
    let input_path = data_dir.join("input.json");
    std::fs::write(&def_path, def.to_string()).unwrap();
    std::fs::write(&input_path, json!({ "keys": keys }).to_string()).unwrap();
    let mut child = Command::new(MAPFLEET)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("run")
        .arg(&def_path)
        .arg("--input")
        .arg(&input_path)
        .env("MAPFLEET_MODELS_DIR", models_dir())
        .env("MAPFLEET_DECODE_BUDGET_BYTES", budget.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while child.try_wait().unwrap().is_none() {
        // VmHWM only grows, so any read after the peak shows it.
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(kb) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let output = serde_json::from_slice(&out.stdout).expect("the Map's output");
    (output, peak_kb * 1024)
}

/// A Map of 16 photos of 5000x5000 pixels (75 MB each decoded) in one process: decodes wait
/// for the decode budget, so the peak stays near one run's baseline plus the budget, where
/// decoding them all at once would add over a gigabyte.
#[test]
fn a_map_of_large_photos_decodes_within_the_budget() {
    let data_dir = tempfile::tempdir().unwrap();
    let bucket = data_dir.path().join("buckets/big");
    std::fs::create_dir_all(&bucket).unwrap();
    // Made here, not committed: a black 5000x5000 RGB PNG compresses to a few hundred KB.
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut png,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    )
    .write_image(
        &vec![0u8; 5000 * 5000 * 3],
        5000,
        5000,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    let keys: Vec<String> = (0..16).map(|i| format!("p{i:02}.png")).collect();
    for k in &keys {
        std::fs::write(bucket.join(k), &png).unwrap();
    }
    // Room for two decodes at a time (each is counted at 7 bytes a pixel).
    let budget: u64 = 2 * 7 * 5000 * 5000;
    let (one, baseline) = run_photo_map(data_dir.path(), &keys[..1], budget);
    let (all, peak) = run_photo_map(data_dir.path(), &keys, budget);
    for (output, n) in [(&one, 1), (&all, 16)] {
        let items = output.as_array().expect("an array");
        assert_eq!(items.len(), n);
        for item in items {
            // Decoded in full, then found faceless: not refused unread.
            assert!(
                item["Cause"]
                    .as_str()
                    .is_some_and(|c| c.contains("Detected 0 faces")),
                "{item}"
            );
        }
    }
    let mib = |b: u64| b / (1 << 20);
    eprintln!(
        "peak RSS: one photo {} MiB, 16 photos {} MiB",
        mib(baseline),
        mib(peak)
    );
    // One photo's run already holds one decode; the budget allows one more at once (75 MB),
    // and the slack covers the objects' bytes, allocator caches and the larger Map's state.
    // Unbounded, 16 decodes of 75 MB at once would add 1.1 GB; bounded by the default 8
    // task slots alone, 525 MB.
    let cap = baseline + (300 << 20);
    assert!(
        peak < cap,
        "peak RSS {} MiB over the cap of {} MiB",
        mib(peak),
        mib(cap)
    );
}

/// The benchmark's inline Map (`loadtest/python-baseline/map_pass_def.py`) over `n` items.
fn map_pass(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let def =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/payload/map_pass_def.json");
    let items: Vec<Value> = (0..n)
        .map(|i| json!({ "k": format!("item-{i}") }))
        .collect();
    let input = dir.join("in.json");
    std::fs::write(&input, json!({ "items": items }).to_string()).unwrap();
    (def, input)
}

/// A 10,000-item inline Map's output passes AWS's 256 KiB: `States.DataLimitExceeded` by
/// default, SUCCEEDED once `--max-payload-bytes` (or `MAPFLEET_MAX_PAYLOAD_BYTES`) raises
/// the limit.
#[test]
fn max_payload_bytes_raises_the_inline_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (def, input) = map_pass(dir.path(), 10_000);
    let run = |extra: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(MAPFLEET);
        cmd.arg("run")
            .arg(&def)
            .arg("--input")
            .arg(&input)
            .args(extra);
        cmd.env_remove("MAPFLEET_MAX_PAYLOAD_BYTES");
        if let Some(v) = env {
            cmd.env("MAPFLEET_MAX_PAYLOAD_BYTES", v);
        }
        cmd.output().unwrap()
    };

    let out = run(&[], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: States.DataLimitExceeded"),
        "{stderr}"
    );
    assert!(stderr.contains("(262144)"), "{stderr}");

    for (extra, env) in [
        (&["--max-payload-bytes", "4194304"][..], None),
        (&[][..], Some("4194304")),
    ] {
        let out = run(extra, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let output: Value = serde_json::from_slice(&out.stdout).unwrap();
        let results = output["results"].as_array().unwrap();
        assert_eq!(results.len(), 10_000);
        assert_eq!(
            results[9_999],
            json!({"k": "item-9999", "i": 9999, "done": true})
        );
    }

    // The raised limit also covers the execution input.
    let big = dir.path().join("big.json");
    let text = format!("{{\"pad\": \"{}\"}}", "x".repeat(300_000));
    std::fs::write(&big, &text).unwrap();
    let echo = echo_definition(dir.path());
    let out = Command::new(MAPFLEET)
        .arg("run")
        .arg(&echo)
        .arg("--input")
        .arg(&big)
        .args(["--max-payload-bytes", "1048576"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A payload limit outside 1 KiB..=64 MiB is refused at start, naming the setting, for
/// embedded runs and for the coordinator.
#[test]
fn a_bad_max_payload_bytes_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let def = echo_definition(dir.path());
    for (args, env) in [
        (
            vec!["run", def.to_str().unwrap(), "--max-payload-bytes", "12"],
            None,
        ),
        (vec!["run", def.to_str().unwrap()], Some("lots")),
        (
            vec!["coordinator", "--max-payload-bytes", "100000000"],
            None,
        ),
    ] {
        let mut cmd = Command::new(MAPFLEET);
        cmd.args(&args).env_remove("MAPFLEET_MAX_PAYLOAD_BYTES");
        if let Some(v) = env {
            cmd.env("MAPFLEET_MAX_PAYLOAD_BYTES", v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_REJECTED), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--max-payload-bytes") && stderr.contains("from 1024 to 67108864"),
            "{args:?}: {stderr}"
        );
    }
}

/// Input that is not UTF-8, or nests deeper than the JSON reader allows, is refused before
/// the run starts, saying which and where.
#[test]
fn invalid_utf8_and_deeply_nested_input_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let def = echo_definition(dir.path());
    let bad_utf8 = dir.path().join("latin1.json");
    std::fs::write(&bad_utf8, b"{\"name\": \"caf\xe9\"}").unwrap();
    let deep = dir.path().join("deep.json");
    std::fs::write(&deep, "[".repeat(100_000) + &"]".repeat(100_000)).unwrap();
    for (input, expected) in [
        (&bad_utf8, "is not UTF-8 text".to_string()),
        (
            &deep,
            "recursion limit exceeded at line 1 column 128".to_string(),
        ),
    ] {
        let out = Command::new(MAPFLEET)
            .arg("run")
            .arg(&def)
            .arg("--input")
            .arg(input)
            .args(["--max-payload-bytes", "1048576"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_REJECTED), "{stderr}");
        assert!(
            stderr.contains("Invalid execution input") && stderr.contains(&expected),
            "{input:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
