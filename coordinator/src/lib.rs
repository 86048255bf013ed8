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
//! - [`fleet`]: the Redis backend, the coordinator service and the fleet client.
//! - [`tasks`]: the worker's tasks as an in-process executor for embedded mode.
//! - [`cli`]: the `mapfleet` command line.

pub mod asl;
pub mod cli;
pub mod driver;
pub mod embedded;
pub mod engine;
pub mod fleet;
pub mod tasks;
