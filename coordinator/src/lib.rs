//! mapfleet coordinator: interprets Amazon States Language definitions.
//!
//! # Layout
//! - [`asl`]: the definition model (two-stage parse and validation), JSONPath and reference
//!   paths, payload templates, intrinsic functions, Choice rules, Retry/Catch, error names.
//!   Pure: no IO, no async runtime.
//! - [`engine`]: `apply(state, event) -> actions`, the pure execution engine, and the history
//!   it writes (AWS event types and details).
//! - [`embedded`]: the in-process driver used by `mapfleet run` without a fleet.
//! - [`cli`]: the `mapfleet` command line (`validate`, `run`).

pub mod asl;
pub mod cli;
pub mod embedded;
pub mod engine;
