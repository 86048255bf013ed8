//! Arbitrary text as an intrinsic function call: parsing and evaluating must never panic and
//! never allocate without bound.
#![no_main]

use mapfleet_engine::asl::intrinsics::Intrinsic;
use mapfleet_engine::asl::scope::Scope;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (input, context, vars) = (common::input(), common::context(), common::vars());
    let entropy = mapfleet_engine::entropy::Entropy::new(0);
    let scope = Scope { input: &input, context: &context, vars: &vars, entropy: &entropy };
    if let Ok(call) = Intrinsic::parse(text) {
        let _ = call.eval(&scope);
    }
});
