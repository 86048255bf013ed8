//! Arbitrary text as an intrinsic function call: parsing and evaluating must never panic and
//! never allocate without bound.
#![no_main]

use coordinator::asl::intrinsics::Intrinsic;
use coordinator::asl::scope::Scope;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (input, context, vars) = (common::input(), common::context(), common::vars());
    let scope = Scope { input: &input, context: &context, vars: &vars };
    if let Ok(call) = Intrinsic::parse(text) {
        let _ = call.eval(&scope);
    }
});
