//! mapfleet's pure core: the Amazon States Language and the execution engine.
//!
//! Nothing in this crate does IO, owns a clock or draws randomness: its dependencies are
//! serde, chrono and a few hashing and encoding crates, so that invariant is enforced by the
//! build, not by review. The coordinator (fleet and embedded mode) and the fuzz targets build
//! on it.
//!
//! # Layout
//! - [`asl`]: the definition model (two-stage parse and validation), JSONPath and reference
//!   paths, payload templates, intrinsic functions, Choice rules, Retry/Catch, error names.
//! - [`engine`]: `apply(cursor, event) -> actions`, the execution engine, and the history it
//!   writes (AWS event types and details).
//! - [`driver`]: the [`driver::Processor`] that feeds events to cursors and carries out
//!   their actions over the [`driver::Backend`] seam; what differs between embedded mode and
//!   the fleet lives behind that seam, in the `coordinator` crate.
//! - [`entropy`]: the caller-seeded randomness (retry jitter, `States.UUID`, `States.MathRandom`).
//! - [`ids`]: maps keyed by cursor ids, with a fast hash.
//! - [`maprun`]: a Distributed Map's run over an object store (ItemReader, ResultWriter).
//! - [`memory_children`]: a Map's or Parallel's children held in memory, for the in-memory
//!   backends (embedded mode's and `scripted`'s).
//! - [`scripted`]: a whole execution driven in memory with scripted Task outcomes and
//!   virtual time, for tests and the whole-path fuzz target.

pub mod asl;
pub mod driver;
pub mod engine;
pub mod entropy;
pub mod ids;
pub mod maprun;
pub mod memory_children;
pub mod scripted;
