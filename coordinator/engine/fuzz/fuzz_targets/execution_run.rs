//! The whole path: arbitrary bytes become a definition, an execution input and a script of
//! Task outcomes; the definition is parsed and, when valid, run to its end in memory
//! (`mapfleet_engine::scripted`: the real processor, virtual time, no IO). Properties: no
//! panic, every run ends (the history cap or the run's event budget ends a loop), the
//! history's ids ascend, and its last event is the execution's end, matching the status.
//!
//! Layout of an input: `definition 0xFF input 0xFF outcomes`; 0xFF never occurs in UTF-8,
//! so the parts cannot run into each other. A missing input is `{}`; each published step
//! takes the next outcome byte (cycling; none: every step echoes its input).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "execution.rs"]
mod execution;

fuzz_target!(|data: &[u8]| {
    execution::check(data);
});
