//! The fleet: executions whose state lives in Redis and whose steps go to workers through
//! RabbitMQ. Any number of coordinators may run; they hold no state of their own.
//!
//! # How an execution moves
//! Everything that happens to an execution (its start, a step outcome, a timer, a stop) is
//! appended to the execution's **inbox** (a Redis list) and the execution is flagged in the
//! **ready** set. A coordinator takes a short **lease** on a ready execution, loads the
//! cursors the inbox events concern, runs them through the same [`Processor`] as embedded
//! mode, and commits everything with one script that first checks the lease is still its
//! own, by its fencing token ([`backend::Commit`], `service/lease.rs`): changed cursors,
//! history, items, results,
//! timers, the consumed inbox entries, and the steps to publish (the **outbox**). Then it
//! publishes the outbox and clears it. A coordinator killed at any point leaves either the
//! inbox (nothing committed: the next lease holder redoes it) or the outbox (committed, not
//! yet published: the next lease holder publishes it); a step published twice is harmless,
//! since outcomes are applied at most once.
//!
//! # Throughput
//! A coordinator publishes one batch's outbox while it processes the next batch (one task at
//! a time publishes an execution's outbox; trimming by count keeps entries appended meanwhile).
//! Outcomes are applied and queued with one script per worker batch
//! (`shared::inbox::apply_to_inbox`). A batch reads what its events concern in a few round
//! trips ([`backend::RedisBackend::prefetch`]), and keeps the cursors it committed, parsed,
//! for the next batch: the execution's `commits` counter (bumped by every commit) tells
//! whether anyone committed in between. A waiting Map keeps its (possibly whole-execution)
//! input out of its cursor's entry ([`stored`]), so the cursor every batch rewrites stays
//! small. `loadtest --scenarios baseline,map-coordinator` measures it.
//!
//! # Layout
//! - [`activities`]: activities (CreateActivity, GetActivityTask, task tokens and
//!   SendTaskSuccess/Failure/Heartbeat) over the fleet's queues and the outcome path.
//! - [`keys`]: the Redis keys this module adds to `shared`'s schema.
//! - [`backend`]: [`backend::RedisBackend`], the [`crate::driver::Backend`] over Redis.
//! - [`maprun`]: Distributed Map runs over an ItemReader (items read from the object store
//!   in chunks, result files written in chunks, compact run state in Redis).
//! - [`map_runs`]: ListMapRuns, DescribeMapRun, UpdateMapRun and a map run's children, for
//!   the CLI and the API.
//! - [`service`]: the coordinator service (`mapfleet coordinator`).
//! - [`stored`]: how a cursor is kept in Redis (a waiting Map's large input apart).
//! - [`client`]: submit, wait with progress, describe, history, stop.
//! - [`redrive`]: RedriveExecution: what an execution's end keeps, and resuming from it.
//! - [`command`]: the coordinator's flags and start-up (`mapfleet-coordinator`, `mapfleet coordinator`).
//!
//! [`Processor`]: crate::driver::Processor

pub mod activities;
pub mod backend;
pub mod batching;
pub mod client;
pub mod command;
pub mod keys;
pub mod map_runs;
pub mod maprun;
pub mod outbox;
pub mod record;
pub mod redrive;
pub mod service;
pub mod stored;
mod unserved;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::asl::error::StatesError;

/// One entry of an execution's inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InboxEvent {
    /// Start the execution (written once by the submitter).
    Start,
    /// A step's outcome, already deduplicated by `shared::inbox::apply_to_inbox` (one script
    /// per worker batch keyed by step id).
    Outcome {
        cursor: String,
        seq: u64,
        result: Result<Value, StatesError>,
    },
    /// A timer of a cursor fired.
    Timer { cursor: String, seq: u64 },
    /// A worker took the cursor's activity step (GetActivityTask, [`activities`]).
    TaskStarted {
        cursor: String,
        seq: u64,
        worker: String,
    },
    /// The worker of the cursor's activity step sent a heartbeat (SendTaskHeartbeat).
    TaskHeartbeat { cursor: String, seq: u64 },
    /// SendTaskSuccess/Failure answered the token of the cursor's `.waitForTaskToken` step
    /// (once: [`activities`] keeps which tokens were answered).
    TaskAnswered {
        cursor: String,
        seq: u64,
        result: Result<Value, StatesError>,
    },
    /// A step's re-drive timer fired: publish it again if the cursor still waits for it.
    Redrive { cursor: String, seq: u64 },
    /// A step was published for a resource no live worker served: fail it if that is still
    /// so (the grace lets workers that start late pick it up).
    Unserved { cursor: String, seq: u64 },
    /// The execution's `TimeoutSeconds` passed.
    Timeout,
    /// A user asked to stop the execution.
    Stop { error: String, cause: String },
    /// A user redrove the ended execution ([`redrive`]): resume it from where it ended.
    RedriveExecution { count: u32 },
    /// A user changed a running map run's limits (UpdateMapRun); `cursor` is its Map's.
    UpdateMapRun {
        cursor: String,
        limits: crate::engine::cursor::LimitsUpdate,
    },
}

/// A timer member in `shared`'s timer set: `T|arn|seq|cursor`, `R|arn|seq|cursor` (re-drive),
/// `U|arn|seq|cursor` (unserved resource check) or `X|arn` (execution timeout).
pub fn timer_member(kind: char, arn: &str, cursor: &str, seq: u64) -> String {
    match kind {
        'X' => format!("X|{arn}"),
        k => format!("{k}|{arn}|{seq}|{cursor}"),
    }
}

/// Parses a timer member back into its execution and inbox event.
pub fn parse_timer(member: &str) -> Option<(String, InboxEvent)> {
    let mut parts = member.splitn(4, '|');
    let kind = parts.next()?;
    let arn = parts.next()?.to_string();
    if kind == "X" {
        return Some((arn, InboxEvent::Timeout));
    }
    let seq: u64 = parts.next()?.parse().ok()?;
    let cursor = parts.next()?.to_string();
    match kind {
        "T" => Some((arn, InboxEvent::Timer { cursor, seq })),
        "R" => Some((arn, InboxEvent::Redrive { cursor, seq })),
        "U" => Some((arn, InboxEvent::Unserved { cursor, seq })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_members_round_trip() {
        // Execution names cannot contain `|`; cursor ids can contain anything but come last.
        let arn = "arn:aws:states:local:000000000000:execution:sm:e1";
        match parse_timer(&timer_member('T', arn, "/3/1", 7)) {
            Some((a, InboxEvent::Timer { cursor, seq })) => {
                assert_eq!((a.as_str(), cursor.as_str(), seq), (arn, "/3/1", 7))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_timer(&timer_member('R', arn, "", 2)),
            Some((_, InboxEvent::Redrive { seq: 2, .. }))
        ));
        assert!(
            matches!(parse_timer(&timer_member('X', arn, "", 0)), Some((a, InboxEvent::Timeout)) if a == arn)
        );
        assert!(parse_timer("Z|a|1|c").is_none());
    }
}
