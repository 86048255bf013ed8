//! Embedded-mode Map throughput: a Map over N items whose processor is two Pass states (the
//! first with Parameters reading the item), `MaxConcurrency: 0`. Reports state transitions
//! per second on one core (a current-thread runtime), with and without keeping the history.
//!
//! `cargo bench -p coordinator --bench map_pass [-- ITEMS]` (default 10,000 items).

use std::sync::Arc;
use std::time::Instant;

use coordinator::asl::parse::parse_definition;
use coordinator::embedded::{EmbeddedOptions, NoTasks, Status, run_execution};
use coordinator::engine::ExecutionInfo;
use serde_json::json;

fn definition() -> String {
    json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 0,
        "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "A", "States": {
            "A": {"Type": "Pass", "Parameters": {"k.$": "$.v.k", "i.$": "$.i"}, "Next": "B"},
            "B": {"Type": "Pass", "ResultPath": "$.done", "Result": true, "End": true}}},
        "ResultPath": "$.results", "End": true}}})
    .to_string()
}

fn main() {
    let items: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let def = Arc::new(parse_definition(&definition()).expect("the benchmark definition is valid"));
    let input = json!({ "items": (0..items).map(|i| json!({ "k": format!("item-{i}") })).collect::<Vec<_>>() });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("embedded Map of Pass states, {items} items, one core (current-thread runtime)");
    for (label, keep_history) in [("history kept", true), ("history off", false)] {
        let mut best = f64::MAX;
        let mut transitions = 0;
        for round in 0..5 {
            let info = ExecutionInfo::new(
                "bench",
                &format!("run-{round}"),
                input.clone(),
                chrono::Utc::now(),
            );
            let mut opts = EmbeddedOptions {
                keep_history,
                ..Default::default()
            };
            // 10,000 results are over AWS's 256 KiB payload limit: lift it for the benchmark.
            opts.engine.payload_limit = 0;
            let started = Instant::now();
            let result = rt.block_on(run_execution(def.clone(), info, Arc::new(NoTasks), opts));
            let secs = started.elapsed().as_secs_f64();
            assert_eq!(result.status, Status::Succeeded);
            assert_eq!(
                result
                    .output
                    .as_ref()
                    .map(|o| o["results"].as_array().map(Vec::len)),
                Some(Some(items))
            );
            transitions = result.transitions;
            best = best.min(secs);
        }
        println!(
            "  {label:13} {transitions} transitions in {:.1} ms (best of 5): {:.0} transitions/s",
            best * 1e3,
            transitions as f64 / best
        );
    }
}
