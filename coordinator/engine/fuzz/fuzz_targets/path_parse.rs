//! Arbitrary text as a query path and as a reference path: parsing and evaluating must
//! never panic, whatever the text.
#![no_main]

use mapfleet_engine::asl::path::{Path, ReferencePath};
use mapfleet_engine::asl::scope::Scope;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (input, context, vars) = (common::input(), common::context(), common::vars());
    let entropy = mapfleet_engine::entropy::Entropy::new(0);
    let scope = Scope { input: &input, context: &context, vars: &vars, entropy: &entropy };
    if let Ok(path) = Path::parse(text) {
        let _ = path.eval(&scope);
        let _ = path.find(&scope);
        let _ = path.normalized();
    }
    if let Ok(reference) = ReferencePath::parse(text) {
        let _ = reference.get(&input);
        let _ = reference.set(input.clone(), json!({"r": 1}));
        let _ = reference.set(json!("scalar"), json!(1));
    }
});
