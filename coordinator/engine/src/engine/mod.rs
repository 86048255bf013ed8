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
//! - [`token`]: task tokens of `.waitForTaskToken` Tasks.

pub mod context;
pub mod cursor;
pub mod dataflow;
pub mod history;
pub mod run;
#[cfg(test)]
mod tests;
pub mod token;

pub use context::ExecutionInfo;
pub use cursor::{Action, ChildKind, Cursor, CursorEvent, CursorId, Phase};
pub use history::{Event, EventType};
pub use run::Engine;

/// The payload limit of Step Functions: 256 KiB per state input or output.
pub const PAYLOAD_LIMIT_BYTES: usize = 262_144;

/// The smallest payload limit a deployment may set (`--max-payload-bytes`).
pub const MIN_PAYLOAD_LIMIT_BYTES: usize = 1024;

/// The largest payload limit a deployment may set: 64 MiB keeps a state input, which on the
/// fleet travels in one broker message and one Redis value, well under RabbitMQ's default
/// message size limit (128 MiB) and Redis's 512 MiB strings.
pub const MAX_PAYLOAD_LIMIT_BYTES: usize = 64 << 20;

/// A payload limit outside [`MIN_PAYLOAD_LIMIT_BYTES`]..=[`MAX_PAYLOAD_LIMIT_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the payload limit must be a whole number of bytes from {MIN_PAYLOAD_LIMIT_BYTES} to {MAX_PAYLOAD_LIMIT_BYTES} (64 MiB); AWS's is {PAYLOAD_LIMIT_BYTES} (256 KiB), got {given:?}"
)]
pub struct PayloadLimitError {
    pub given: String,
}

/// Reads a payload limit setting (`--max-payload-bytes`, `MAPFLEET_MAX_PAYLOAD_BYTES`): a
/// whole number of bytes within the allowed range. 0 (no limit) is not offered to users.
pub fn parse_payload_limit(text: &str) -> Result<usize, PayloadLimitError> {
    let refuse = || PayloadLimitError {
        given: text.to_string(),
    };
    let n: usize = text.trim().parse().map_err(|_| refuse())?;
    if !(MIN_PAYLOAD_LIMIT_BYTES..=MAX_PAYLOAD_LIMIT_BYTES).contains(&n) {
        return Err(refuse());
    }
    Ok(n)
}

#[cfg(test)]
mod payload_limit_tests {
    use super::*;

    #[test]
    fn payload_limits_are_checked() {
        assert_eq!(parse_payload_limit("4194304"), Ok(4_194_304));
        assert_eq!(parse_payload_limit(" 262144 "), Ok(PAYLOAD_LIMIT_BYTES));
        assert_eq!(parse_payload_limit("1024"), Ok(1024));
        assert_eq!(parse_payload_limit("67108864"), Ok(MAX_PAYLOAD_LIMIT_BYTES));
        for bad in [
            "",
            "0",
            "1023",
            "67108865",
            "-5",
            "4MiB",
            "1e6",
            "99999999999999999999999",
        ] {
            let e = parse_payload_limit(bad).unwrap_err();
            assert_eq!(e.given, bad);
            assert!(e.to_string().contains("from 1024 to 67108864"), "{e}");
        }
    }
}
