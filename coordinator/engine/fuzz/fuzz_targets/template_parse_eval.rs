//! Arbitrary bytes as a payload template: JSON text is compiled as a whole template, anything
//! else becomes the value of a `"field.$"` key. Compiling and evaluating must never panic.
#![no_main]

use mapfleet_engine::asl::scope::Scope;
use mapfleet_engine::asl::template::Template;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let raw: Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(_) => match std::str::from_utf8(data) {
            Ok(text) => json!({"field.$": text, "nested": [{"inner.$": text}]}),
            Err(_) => return,
        },
    };
    let (input, context, vars) = (common::input(), common::context(), common::vars());
    let entropy = mapfleet_engine::entropy::Entropy::new(0);
    let scope = Scope { input: &input, context: &context, vars: &vars, entropy: &entropy };
    if let Ok(template) = Template::parse(&raw) {
        let _ = template.eval(&scope);
    }
});
