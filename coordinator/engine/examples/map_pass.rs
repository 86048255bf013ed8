//! The engine's share of the embedded Map benchmark (`loadtest/python-baseline/map_pass_def.py`,
//! `make bench-local-sfn`): a Map over N items whose processor is two Pass states, run by
//! [`mapfleet_engine::scripted`] (the same `Processor` embedded mode uses, over an in-memory
//! backend, history not kept). Cheap to build in release and to run under callgrind:
//!
//! `cargo run -p mapfleet-engine --release --example map_pass [-- ITEMS]` (default 10,000).
//!
//! `map_pass run DEF.json --input IN.json [--max-payload-bytes N]` is a whole-process
//! stand-in for `mapfleet run` (read, parse, run, print the output), which
//! `loadtest/local-sfn/compare.py --mapfleet` accepts: the engine's share of that benchmark
//! without the runtime, the task executor and the CLI around it.

// The allocator of the `mapfleet` binary, so that the figures are its figures.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// The printer of `mapfleet run`, so that the output is written as it writes it.
#[path = "../../cli/src/pretty.rs"]
mod pretty;

use std::sync::Arc;
use std::time::Instant;

use mapfleet_engine::asl::parse::parse_definition;
use mapfleet_engine::driver::Status;
use mapfleet_engine::engine::run::EngineOptions;
use mapfleet_engine::scripted::{Limits, run};
use serde_json::{Value, json};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("run") {
        return run_files(&args[1..]);
    }
    let items: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let def = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 0,
        "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "A", "States": {
            "A": {"Type": "Pass", "Parameters": {"k.$": "$.v.k", "i.$": "$.i"}, "Next": "B"},
            "B": {"Type": "Pass", "ResultPath": "$.done", "Result": true, "End": true}}},
        "ResultPath": "$.results", "End": true}}});
    let def = Arc::new(parse_definition(&def.to_string()).expect("the definition is valid"));
    let input = json!({ "items": (0..items).map(|i| json!({ "k": format!("item-{i}") })).collect::<Vec<_>>() });
    // As compare.py runs `mapfleet run` (`--max-payload-bytes 4194304`): 10,000 results are
    // over AWS's 256 KiB.
    let options = EngineOptions {
        payload_limit: 4 << 20,
        ..EngineOptions::default()
    };
    let limits = Limits {
        max_events: usize::MAX,
        ..Limits::default()
    };
    let started = Instant::now();
    let result = run(def, input, options, &limits, false, &mut |_| {
        Ok(Value::Null)
    });
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(result.status, Status::Succeeded);
    let results = result.output.as_ref().and_then(|o| o["results"].as_array());
    assert_eq!(results.map(Vec::len), Some(items));
    let last = &results.expect("checked")[items - 1];
    assert_eq!(last["k"], json!(format!("item-{}", items - 1)));
    println!(
        "{items} items in {:.1} ms: {:.2} us per item ({} events written)",
        secs * 1e3,
        secs * 1e6 / items as f64,
        result.event_count
    );
}

/// `run DEF --input IN [--max-payload-bytes N]`: reads both files, runs the definition with
/// history off and prints the output as `mapfleet run` does (pretty JSON, its printer).
fn run_files(args: &[String]) {
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let (Some(def_path), Some(input_path)) = (args.first(), flag("--input")) else {
        eprintln!("usage: map_pass run DEF.json --input IN.json [--max-payload-bytes N]");
        std::process::exit(2);
    };
    let limit = flag("--max-payload-bytes").map_or(Ok(262_144), |n| n.parse());
    let read = |path: &str| {
        std::fs::read_to_string(path).unwrap_or_else(|e| {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        })
    };
    let def = match parse_definition(&read(def_path)) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            eprintln!("{def_path}: {e:?}");
            std::process::exit(2);
        }
    };
    let input: Value = match serde_json::from_str(&read(input_path)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{input_path}: {e}");
            std::process::exit(2);
        }
    };
    let options = EngineOptions {
        payload_limit: limit.unwrap_or(262_144),
        ..EngineOptions::default()
    };
    let limits = Limits {
        max_events: usize::MAX,
        ..Limits::default()
    };
    let result = run(def, input, options, &limits, false, &mut |_| {
        Ok(Value::Null)
    });
    match (result.status, result.output) {
        (Status::Succeeded, Some(output)) => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = pretty::write_pretty(&mut stdout, &output)
                .and_then(|()| writeln!(stdout))
                .and_then(|()| stdout.flush());
            // As `mapfleet run` does: the process ends here, the output is not freed.
            std::mem::forget(output);
        }
        (status, _) => {
            eprintln!("{status:?}: {:?}", result.error);
            std::process::exit(1);
        }
    }
}
