//! The execution engine: `apply(cursor, event) -> actions`. Pure: no IO, no async runtime,
//! no clock (time arrives with each event), no randomness (callers pass it in).
//!
//! An execution is a tree of **cursors**. The root cursor walks the top-level `States`;
//! every Parallel branch and every Map iteration is a child cursor. A cursor is small (its
//! position, its current input, retry counters) so a driver can keep millions of them in
//! Redis, or a few in memory. The engine never reaches from one cursor into another: what
//! crosses between them (a child finished, the results of all children) travels as actions
//! the driver carries out and events it feeds back. Map items and iteration results are kept
//! by the driver for the same reason: a Map over a million items keeps a parent cursor of
//! constant size.
//!
//! # Layout
//! - [`cursor`]: cursors, events in, actions out.
//! - [`history`]: history records with AWS's event types and details.
//! - [`context`]: execution facts and the context object (`$$`).
//! - [`dataflow`]: InputPath, Parameters, ResultSelector, ResultPath, OutputPath, Assign.
//! - [`run`]: what each state type does with each event.

pub mod context;
pub mod cursor;
pub mod dataflow;
pub mod history;
pub mod run;
#[cfg(test)]
mod tests;

pub use context::ExecutionInfo;
pub use cursor::{Action, ChildKind, Cursor, CursorEvent, CursorId, Phase};
pub use history::{Event, EventType};
pub use run::Engine;

/// The payload limit of Step Functions: 256 KiB per state input or output.
pub const PAYLOAD_LIMIT_BYTES: usize = 262_144;
