//! Arbitrary bytes as JSONata in a definition: JSON text is compiled as a whole JSONata
//! template (`{% ... %}` strings anywhere), any other text as one expression. Parsing and
//! evaluating (with `$states`, variables and AWS's functions bound) must never panic, and
//! the evaluator's depth and step limits must end every evaluation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapfleet_engine::asl::jsonata::{JExpr, JScope, JTemplate};
use serde_json::Value;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (input, context, vars) = (common::input(), common::context(), common::vars());
    let entropy = mapfleet_engine::entropy::Entropy::new(0);
    let result = Value::from(vec![1, 2, 3]);
    let scope = JScope {
        input: &input,
        context: &context,
        result: Some(&result),
        error_output: None,
        vars: &vars,
        now_millis: 1_704_067_200_000,
        entropy: &entropy,
    };
    if let Ok(raw) = serde_json::from_slice::<Value>(data) {
        if let Ok(template) = JTemplate::parse(&raw) {
            let _ = template.eval("Output", &scope);
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = JExpr::parse(text) {
        let _ = expr.eval("Output", &scope);
    }
});
