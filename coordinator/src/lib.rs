//! mapfleet coordinator: interprets Amazon States Language definitions.
//!
//! # Layout
//! - [`asl`]: the definition model (two-stage parse and validation), JSONPath and reference
//!   paths, payload templates, intrinsic functions, Choice rules, Retry/Catch, error names.
//!   Pure: no IO, no async runtime.
//! - [`engine`]: `apply(state, event) -> actions`, the pure execution engine, and the history
//!   it writes (AWS event types and details).
//! - [`driver`]: the [`driver::Processor`] that feeds events to cursors and carries out
//!   their actions, over a small [`driver::Backend`] seam.
//! - [`embedded`]: the in-memory backend and loop used by `mapfleet run` without a fleet.
//! - [`cli`]: the `mapfleet` command line (`validate`, `run`).

pub mod asl;
pub mod cli;
pub mod driver;
pub mod embedded;
pub mod engine;
