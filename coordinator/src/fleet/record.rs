//! The execution hash (`P:{ARN}:exec`, see [`super::keys`]): its field names, in one place,
//! and [`ExecutionRecord`], the part of it a coordinator reads for every batch, decoded with
//! an error (never a guessed default) for a value this code did not write.

use std::collections::HashMap;

use serde_json::Value;

use super::backend::Commit;
use crate::asl::error::StatesError;
use crate::driver::Status;

/// The execution hash's fields.
pub mod field {
    /// [`Status`](crate::driver::Status) as text; written first, with `HSETNX`, at submit.
    pub const STATUS: &str = "status";
    /// The definition's id (the SHA-256 of its text, see `FleetKeys::definition`).
    pub const DEF: &str = "def";
    /// The `ExecutionInfo` (JSON): immutable once submitted.
    pub const INFO: &str = "info";
    /// The id of the next history event.
    pub const NEXT_EVENT: &str = "next_event";
    /// "1" once the execution's start was processed, "0" before.
    pub const STARTED: &str = "started";
    /// Submit time, Unix ms.
    pub const START_MS: &str = "start_ms";
    /// Commits so far (absent before the first one): the version fenced commits check.
    pub const COMMITS: &str = "commits";
    /// When the execution ended (RFC 3339).
    pub const STOP_DATE: &str = "stop_date";
    /// The execution's output (JSON), once it succeeded.
    pub const OUTPUT: &str = "output";
    /// The error and cause it failed with.
    pub const ERROR: &str = "error";
    pub const CAUSE: &str = "cause";
    /// How many times the execution was redriven, the latest redrive's date (RFC 3339) and
    /// client token (see [`super::redrive`]).
    pub const REDRIVE_COUNT: &str = "redrive_count";
    pub const REDRIVE_DATE: &str = "redrive_date";
    pub const REDRIVE_TOKEN: &str = "redrive_token";
    /// Map progress counters.
    pub const ITEMS_STARTED: &str = "items_started";
    pub const ITEMS_SUCCEEDED: &str = "items_succeeded";
    pub const ITEMS_FAILED: &str = "items_failed";
}

/// A field of an execution hash that does not hold what this code writes there.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("execution {execution}: field {field:?} is missing")]
    Missing {
        execution: String,
        field: &'static str,
    },
    #[error("execution {execution}: field {field:?} holds {value:?}, which is not {expected}")]
    Unreadable {
        execution: String,
        field: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// What a coordinator reads of an execution for each batch (its `info`, perhaps large, is
/// read once per execution: it never changes).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    /// None: the hash is gone (expired, or never submitted).
    pub status: Option<Status>,
    /// Set for every submitted execution; None only when `status` is.
    pub def: Option<String>,
    pub next_event: u64,
    pub started: bool,
    /// The commit the record was read at (0 before the first).
    pub commits: u64,
}

impl ExecutionRecord {
    /// The fields [`ExecutionRecord::from_fields`] reads, in the order it expects them
    /// (one `HMGET`).
    pub const FIELDS: [&'static str; 5] = [
        field::STATUS,
        field::DEF,
        field::NEXT_EVENT,
        field::STARTED,
        field::COMMITS,
    ];

    /// Decodes the values of [`ExecutionRecord::FIELDS`] (in that order) read from
    /// execution `arn`'s hash. A missing hash (no status) is a record without status; a
    /// submitted execution must hold its definition, next event id and started flag.
    pub fn from_fields(
        arn: &str,
        values: Vec<Option<String>>,
    ) -> Result<ExecutionRecord, RecordError> {
        let mut by_name: HashMap<&'static str, String> = Self::FIELDS
            .iter()
            .zip(values)
            .filter_map(|(f, v)| Some((*f, v?)))
            .collect();
        let unreadable =
            |field: &'static str, value: String, expected: &'static str| RecordError::Unreadable {
                execution: arn.to_string(),
                field,
                value,
                expected,
            };
        let missing = |field: &'static str| RecordError::Missing {
            execution: arn.to_string(),
            field,
        };
        let number = |field: &'static str, value: String| {
            value
                .parse::<u64>()
                .map_err(|_| unreadable(field, value, "a count"))
        };
        // No commit yet: the field appears with the first (HINCRBY).
        let commits = match by_name.remove(field::COMMITS) {
            Some(v) => number(field::COMMITS, v)?,
            None => 0,
        };
        let Some(status) = by_name.remove(field::STATUS) else {
            return Ok(ExecutionRecord {
                status: None,
                def: None,
                next_event: 1,
                started: false,
                commits,
            });
        };
        let status = Status::parse(&status)
            .ok_or_else(|| unreadable(field::STATUS, status.clone(), "a status"))?;
        let def = by_name
            .remove(field::DEF)
            .ok_or_else(|| missing(field::DEF))?;
        let next_event = number(
            field::NEXT_EVENT,
            by_name
                .remove(field::NEXT_EVENT)
                .ok_or_else(|| missing(field::NEXT_EVENT))?,
        )?;
        let started = match by_name
            .remove(field::STARTED)
            .ok_or_else(|| missing(field::STARTED))?
            .as_str()
        {
            "1" => true,
            "0" => false,
            other => return Err(unreadable(field::STARTED, other.to_string(), "0 or 1")),
        };
        Ok(ExecutionRecord {
            status: Some(status),
            def: Some(def),
            next_event,
            started,
            commits,
        })
    }

    /// The fields a submit writes (after `status`, which it sets first to claim the ARN).
    pub fn submitted(
        def_id: &str,
        info_json: String,
        start_ms: i64,
    ) -> [(&'static str, String); 5] {
        [
            (field::DEF, def_id.to_string()),
            (field::INFO, info_json),
            (field::NEXT_EVENT, "1".to_string()),
            (field::STARTED, "0".to_string()),
            (field::START_MS, start_ms.to_string()),
        ]
    }

    /// Adds a batch's record writes to `commit`: one more commit, the next event id, the
    /// started flag once set.
    pub fn write_batch(commit: &mut Commit, exec_key: &str, next_event: u64, started: bool) {
        commit.hincr(exec_key, field::COMMITS, 1);
        commit.hset(exec_key, field::NEXT_EVENT, next_event);
        if started {
            commit.hset(exec_key, field::STARTED, "1");
        }
    }

    /// Adds the writes of an execution's end to `commit`.
    pub fn write_end(
        commit: &mut Commit,
        exec_key: &str,
        status: Status,
        result: &Result<Value, StatesError>,
        stop_date: &str,
    ) {
        commit.hset(exec_key, field::STATUS, status.as_str());
        commit.hset(exec_key, field::STOP_DATE, stop_date);
        match result {
            Ok(output) => commit.hset(exec_key, field::OUTPUT, output),
            Err(e) => {
                commit.hset(exec_key, field::ERROR, &e.error);
                commit.hset(exec_key, field::CAUSE, &e.cause);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: [Option<&str>; 5]) -> Vec<Option<String>> {
        v.iter().map(|v| v.map(String::from)).collect()
    }

    #[test]
    fn a_running_record_decodes() {
        let r = ExecutionRecord::from_fields(
            "arn:x",
            values([
                Some("RUNNING"),
                Some("abc"),
                Some("7"),
                Some("1"),
                Some("3"),
            ]),
        )
        .unwrap();
        assert_eq!(r.status, Some(Status::Running));
        assert_eq!(r.def.as_deref(), Some("abc"));
        assert_eq!((r.next_event, r.started, r.commits), (7, true, 3));
    }

    #[test]
    fn a_fresh_record_has_no_commits_and_a_gone_one_no_status() {
        let r = ExecutionRecord::from_fields(
            "arn:x",
            values([Some("RUNNING"), Some("abc"), Some("1"), Some("0"), None]),
        )
        .unwrap();
        assert_eq!((r.started, r.commits), (false, 0));
        let gone = ExecutionRecord::from_fields("arn:x", values([None; 5])).unwrap();
        assert_eq!(gone.status, None);
    }

    #[test]
    fn what_this_code_did_not_write_is_an_error_naming_the_field() {
        let e = ExecutionRecord::from_fields(
            "arn:x",
            values([
                Some("RUNNING"),
                Some("abc"),
                Some("1"),
                Some("0"),
                Some("many"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("arn:x") && e.contains("commits") && e.contains("many"),
            "{e}"
        );
        let e = ExecutionRecord::from_fields(
            "arn:x",
            values([Some("RUNNING"), None, Some("1"), Some("0"), None]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"def\" is missing"), "{e}");
        let e = ExecutionRecord::from_fields(
            "arn:x",
            values([Some("RUNNING"), Some("abc"), Some("1"), Some("yes"), None]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("started"), "{e}");
    }
}
