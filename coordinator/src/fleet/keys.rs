//! The Redis keys the coordinator's fleet driver uses, on top of `shared`'s schema
//! (`shared::redis_schema::Keys`: execution hash, per-step cursor hash, history, timers).
//! Every per-execution key carries the ARN as a hash tag, like `shared`'s.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{ARN}:cursors` | hash | cursor id → engine cursor (JSON) |
//! | `P:{ARN}:inbox` | list | [`super::InboxEvent`]s not processed yet |
//! | `P:{ARN}:outbox` | list | [`super::outbox::OutboxStep`]s (a step message and its timeout) committed, not yet published |
//! | `P:{ARN}:lease` | string | the fencing token of the lease holder: coordinator id `#` number (PX) |
//! | `P:{ARN}:items:CURSOR` | hash | a Map's items, index → JSON |
//! | `P:{ARN}:results:CURSOR` | hash | a Map's or Parallel's child outputs, index → JSON |
//! | `P:{ARN}:live:CURSOR` | set | the running children of a Map or Parallel |
//! | `P:{ARN}:maprun:CURSOR` | hash | a map run over an ItemReader, compact: `arn`, `total`, `format` (its ResultWriter's [`crate::maprun::ResultFormat`], JSON), per status `S`/`F`: `summary` (DescribeMapRun's facts at the start, JSON), `started`/`succeeded`/`failed` children, `n:S` records waiting, `bytes:S` their size, `files:S` files written, `file:S:N` file N's size; `failure` (a result file that could not be written) |
//! | `P:{ARN}:records:CURSOR:S` | hash | a map run's ended children not yet in a result file, by status (`S`ucceeded/`F`ailed): index → the record's text |
//!
//! A map run with a ResultWriter keeps its running children's inputs and start times in its
//! `items` hash (index → `{"i": input, "t": ms}`), removed as each child ends. Everything
//! else a child has of its own (its `cursors` entry, its `live` member, `shared`'s step record
//! `P:{ARN}:cursor:CURSOR`, its step's re-drive and timeout timers) goes in the commit that
//! ends it too: Redis holds the running children, not the finished ones ("Finished children
//! are compacted" in `docs/ARCHITECTURE.md`).
//! | `P:{ARN}:done:CURSOR` | bitmap | the root's Map or Parallel: bit i set when child i succeeded (a redrive keeps those) |
//! | `P:{ARN}:kept:done`, `P:{ARN}:kept:results` | bitmap, hash | the root's last failed or stopped Map or Parallel: its `done` bits and `results`, for a redrive |
//! | `P:{ARN}:redrive` | string | the root cursor as it stood when the execution ended other than SUCCEEDED (JSON): where a redrive resumes |
//! | `P:{ARN}:mapruns` | hash | the execution's map runs: map run ARN → DescribeMapRun's facts (JSON), kept after the run ends |
//! | `P:mapruns` | hash | map run ARN → its execution's ARN (DescribeMapRun finds the run by it) |
//! | `P:ready` | sorted set | executions with inbox or outbox entries → since (ms) |
//! | `P:executions` | sorted set | every execution ARN → start time (ms) |
//!
//! The execution hash (`shared`'s `P:{ARN}:exec`) gains `next_event`, `started`, the Map
//! progress counters `items_started` / `items_succeeded` / `items_failed`, and `commits`: the
//! number of batches committed, which a coordinator compares with its own count to know whether
//! the cursors it kept from its last batch are still what Redis holds. Its field names live
//! in [`super::record::field`]; [`super::record::ExecutionRecord`] is what a batch reads of it.

use shared::redis_schema::Keys;

/// Key names for one fleet prefix.
#[derive(Debug, Clone)]
pub struct FleetKeys {
    pub shared: Keys,
}

impl FleetKeys {
    pub fn new(prefix: &str) -> FleetKeys {
        FleetKeys {
            shared: Keys::new(prefix),
        }
    }

    fn p(&self) -> &str {
        self.shared.prefix()
    }

    pub fn exec(&self, arn: &str) -> String {
        self.shared.execution(arn)
    }

    pub fn history(&self, arn: &str) -> String {
        self.shared.history(arn)
    }

    pub fn definition(&self, id: &str) -> String {
        self.shared.definition(id)
    }

    pub fn cursors(&self, arn: &str) -> String {
        format!("{}:{{{arn}}}:cursors", self.p())
    }

    /// The large values of waiting Map and Parallel cursors, by cursor id (see
    /// [`super::stored`]).
    pub fn blobs(&self, arn: &str) -> String {
        format!("{}:{{{arn}}}:blobs", self.p())
    }

    pub fn inbox(&self, arn: &str) -> String {
        format!("{}:{{{arn}}}:inbox", self.p())
    }

    pub fn outbox(&self, arn: &str) -> String {
        format!("{}:{{{arn}}}:outbox", self.p())
    }

    pub fn lease(&self, arn: &str) -> String {
        format!("{}:{{{arn}}}:lease", self.p())
    }

    pub fn items(&self, arn: &str, cursor: &str) -> String {
        format!("{}:{{{arn}}}:items:{cursor}", self.p())
    }

    pub fn results(&self, arn: &str, cursor: &str) -> String {
        format!("{}:{{{arn}}}:results:{cursor}", self.p())
    }

    pub fn live(&self, arn: &str, cursor: &str) -> String {
        format!("{}:{{{arn}}}:live:{cursor}", self.p())
    }

    pub fn map_run(&self, arn: &str, cursor: &str) -> String {
        format!("{}:{{{arn}}}:maprun:{cursor}", self.p())
    }

    /// `status`: `S` (succeeded) or `F` (failed).
    pub fn run_records(&self, arn: &str, cursor: &str, status: char) -> String {
        format!("{}:{{{arn}}}:records:{cursor}:{status}", self.p())
    }

    /// Which children of a Map or Parallel succeeded (kept for the root's only).
    pub fn done(&self, arn: &str, cursor: &str) -> String {
        format!("{}:{{{arn}}}:done:{cursor}", self.p())
    }

    /// `what`: `done` or `results`, of the root's last failed Map or Parallel.
    pub fn kept(&self, arn: &str, what: &str) -> String {
        format!("{}:{{{arn}}}:kept:{what}", self.p())
    }

    /// The root cursor a redrive resumes from.
    pub fn redrive(&self, arn: &str) -> String {
        format!("{}:{{{arn}}}:redrive", self.p())
    }

    pub fn map_runs(&self, arn: &str) -> String {
        format!("{}:{{{arn}}}:mapruns", self.p())
    }

    pub fn map_run_index(&self) -> String {
        format!("{}:mapruns", self.p())
    }

    pub fn ready(&self) -> String {
        format!("{}:ready", self.p())
    }

    pub fn executions(&self) -> String {
        format!("{}:executions", self.p())
    }
}
