//! Redrive on the fleet (`RedriveExecution`, `mapfleet redrive`): an execution that ended
//! FAILED, ABORTED or TIMED_OUT runs again, under the same ARN, from the state it ended in.
//!
//! ```text
//! the end's commit ─▶ P:{ARN}:redrive = the root cursor as it stood (state, input, variables)
//! the root's Map/Parallel fails or is stopped ─▶ kept:done = its done bits (a bit per child
//!         that succeeded), kept:results = its results (inline Map, Parallel, a map run
//!         without ResultWriter)
//! client (one script on the execution hash): not SUCCEEDED nor RUNNING, a root kept ─▶
//!         status RUNNING, redrive_count + 1, redrive_date, info with the new count,
//!         inbox ← RedriveExecution{count}
//! coordinator (under the lease, like any inbox event) ─▶ Processor::redrive: the root from
//!         P:{ARN}:redrive, ExecutionRedriven, Enter ─▶ the state runs again; a Map or
//!         Parallel skips the children kept:done names (each finishes at once with its
//!         kept output, and counts as succeeded in its map run)
//! ```
//!
//! A Distributed Map's run keeps its ARN (`MapRunRedriven`); its DescribeMapRun facts keep
//! their start date and gain `redriveCount`/`redriveDate`; with a ResultWriter, the result
//! files of the children that succeeded before stay and the manifest lists them with the new
//! ones. Only the root's Map or Parallel keeps its children: a Map nested in an iteration
//! that failed runs that iteration again whole.

use std::collections::HashMap;

use chrono::Utc;
use redis::AsyncCommands;
use serde_json::Value;

use super::InboxEvent;
use super::backend::{Commit, RedisBackend};
use super::client::{ClientError, FleetClient};
use super::record::field;
use super::service::flag_ready;
use crate::driver::{BackendError, Status};
use crate::engine::ExecutionInfo;
use crate::engine::cursor::Cursor;

/// What a batch keeps of the root's dropped children for a redrive: the state entry they
/// belong to, this batch's `done` bits and results not written yet.
pub(super) type Keep = (u64, Vec<usize>, HashMap<usize, Option<Value>>);

/// The field of `kept:results` naming the state entry (its `...StateEntered` id) whose
/// children are kept.
const ENTERED: &str = "entered";

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

/// What a redrive request did.
#[derive(Debug, Clone, PartialEq)]
pub struct Redriven {
    /// The execution's redrive count after it.
    pub count: u32,
    /// When the redrive happened (the first call's, for a repeated client token).
    pub date: chrono::DateTime<Utc>,
    /// How many children of the Map or Parallel the execution failed in succeeded before and
    /// are kept (0 when it failed elsewhere).
    pub kept_children: u64,
    /// A repeated `clientToken`: nothing was done again.
    pub repeated: bool,
}

/// Checks and marks the execution for a redrive atomically. KEYS: the execution hash, the
/// kept root, the inbox. ARGV: the info with the new count, the date, the client token,
/// the expected current count, the inbox event. Returns `{outcome, detail}`.
const REDRIVE: &str = r#"
local f = redis.call('HMGET', KEYS[1], 'status', 'redrive_token', 'redrive_date', 'redrive_count')
if not f[1] then return {'gone', ''} end
if ARGV[3] ~= '' and f[2] == ARGV[3] then return {'same', f[3] or ''} end
if f[1] == 'SUCCEEDED' or f[1] == 'RUNNING' then return {'status', f[1]} end
if (f[4] or '0') ~= ARGV[4] then return {'raced', ''} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'nothing', f[1]} end
redis.call('HSET', KEYS[1], 'status', 'RUNNING', 'info', ARGV[1], 'redrive_count', tostring(tonumber(ARGV[4]) + 1),
  'redrive_date', ARGV[2], 'redrive_token', ARGV[3])
redis.call('HDEL', KEYS[1], 'stop_date', 'output', 'error', 'cause')
redis.call('RPUSH', KEYS[3], ARGV[5])
return {'ok', ''}
"#;

/// Why an execution cannot be redriven: AWS's ExecutionNotRedrivable messages.
fn not_redrivable(arn: &str, status: &str) -> ClientError {
    let _ = arn;
    ClientError::NotRedrivable(format!("Execution is {status} and cannot be redriven"))
}

impl FleetClient {
    /// Redrives an execution that ended FAILED, ABORTED or TIMED_OUT: the coordinators
    /// resume it from the state it ended in. `client_token` makes a repeated call return
    /// the first call's answer.
    pub async fn redrive(
        &self,
        arn: &str,
        client_token: Option<&str>,
    ) -> Result<Redriven, ClientError> {
        let mut conn = self.conn.clone();
        let redriving = || format!("redriving execution {arn}");
        let key = self.keys.exec(arn);
        let (info, count): (Option<String>, Option<u32>) = redis::cmd("HMGET")
            .arg(&key)
            .arg(&[field::INFO, field::REDRIVE_COUNT])
            .query_async(&mut conn)
            .await
            .map_err(|source| ClientError::Redis {
                doing: redriving(),
                source,
            })?;
        let info = info.ok_or_else(|| ClientError::DoesNotExist(arn.to_string()))?;
        let mut info: ExecutionInfo =
            serde_json::from_str(&info).map_err(|source| ClientError::Unreadable {
                execution: arn.to_string(),
                what: "info",
                source,
            })?;
        let count = count.unwrap_or(0);
        let now = Utc::now();
        info.redrive_count = count + 1;
        info.redrive_date = Some(now);
        let info_text = serde_json::to_string(&info).map_err(|source| ClientError::Unreadable {
            execution: arn.to_string(),
            what: "info",
            source,
        })?;
        let event = serde_json::to_string(&InboxEvent::RedriveExecution { count: count + 1 })
            .expect("inbox events serialize");
        let (outcome, detail): (String, String) = redis::Script::new(REDRIVE)
            .key(&key)
            .key(self.keys.redrive(arn))
            .key(self.keys.inbox(arn))
            .arg(info_text)
            .arg(now.to_rfc3339())
            .arg(client_token.unwrap_or(""))
            .arg(count)
            .arg(event)
            .invoke_async(&mut conn)
            .await
            .map_err(|source| ClientError::Redis {
                doing: redriving(),
                source,
            })?;
        match outcome.as_str() {
            "ok" => {}
            "gone" => return Err(ClientError::DoesNotExist(arn.to_string())),
            "status" => return Err(not_redrivable(arn, &detail)),
            "raced" => {
                return Err(ClientError::NotRedrivable(format!(
                    "Execution {arn} is being redriven by another request"
                )));
            }
            "nothing" => {
                return Err(ClientError::NotRedrivable(format!(
                    "Execution {arn} is {detail} but what a redrive resumes from is no longer kept (it expires with the execution's other state)"
                )));
            }
            "same" => {
                let date = chrono::DateTime::parse_from_rfc3339(&detail)
                    .map(|d| d.with_timezone(&Utc))
                    .unwrap_or(now);
                return Ok(Redriven {
                    count,
                    date,
                    kept_children: 0,
                    repeated: true,
                });
            }
            other => {
                return Err(ClientError::NotRedrivable(format!(
                    "Execution {arn}: unexpected redrive outcome {other}"
                )));
            }
        }
        flag_ready(&mut conn, &self.keys, arn)
            .await
            .map_err(|source| ClientError::Redis {
                doing: redriving(),
                source,
            })?;
        let kept_children: u64 = conn
            .bitcount(self.keys.kept(arn, "done"))
            .await
            .unwrap_or(0);
        Ok(Redriven {
            count: count + 1,
            date: now,
            kept_children,
            repeated: false,
        })
    }
}

/// The root cursor a redrive resumes from, as the execution's end kept it.
pub(super) async fn kept_root(
    conn: &mut shared::redis_conn::RedisConn,
    backend: &RedisBackend,
) -> Result<Option<Cursor>, BackendError> {
    let text: Option<String> = conn
        .get(backend.keys.redrive(&backend.arn))
        .await
        .map_err(err)?;
    text.map(|t| serde_json::from_str(&t).map_err(err))
        .transpose()
}

/// The end's writes for a redrive: the root cursor kept (not SUCCEEDED), or forgotten.
pub(super) fn write_end(
    commit: &mut Commit,
    backend: &RedisBackend,
    status: Status,
    root: Option<&Cursor>,
    ttl_secs: i64,
) {
    let key = backend.keys.redrive(&backend.arn);
    match root {
        Some(root) if status != Status::Succeeded => {
            commit.set(
                &key,
                &serde_json::to_string(root).expect("cursors serialize"),
            );
            commit.expire(&key, ttl_secs);
        }
        _ => {
            commit.del(&key);
            commit.del(&backend.keys.kept(&backend.arn, "done"));
            commit.del(&backend.keys.kept(&backend.arn, "results"));
        }
    }
}

impl RedisBackend {
    /// The root's children were dropped after a failure: its `done` bits and results
    /// (those in Redis and this batch's) become the kept ones, replacing earlier ones.
    pub(super) fn write_keep(
        &self,
        pipe: &mut Commit,
        entered: u64,
        done: &[usize],
        results: &HashMap<usize, Option<Value>>,
        ttl_secs: i64,
    ) {
        let (done_key, results_key) = (
            self.keys.done(&self.arn, ""),
            self.keys.results(&self.arn, ""),
        );
        let (kept_done, kept_results) = (
            self.keys.kept(&self.arn, "done"),
            self.keys.kept(&self.arn, "results"),
        );
        pipe.del(&kept_done);
        pipe.del(&kept_results);
        for i in done {
            pipe.setbit(&done_key, *i);
        }
        pipe.copy(&done_key, &kept_done);
        pipe.copy(&results_key, &kept_results);
        let outputs: Vec<(usize, String)> = results
            .iter()
            .filter_map(|(i, v)| v.as_ref().map(|v| (*i, v.to_string())))
            .collect();
        if !outputs.is_empty() {
            pipe.hset_multiple(&kept_results, &outputs);
        }
        pipe.hset(&kept_results, ENTERED, entered);
        pipe.expire(&kept_done, ttl_secs);
        pipe.expire(&kept_results, ttl_secs);
    }

    /// Which of the root's children `from..to` succeeded before the redrive, with their
    /// outputs (`Null` when a ResultWriter took them). Kept ones count as succeeded in this
    /// run (its `done` bits, its map run's counters).
    pub(super) async fn kept_children(
        &mut self,
        parent: &str,
        entered: u64,
        from: usize,
        to: usize,
    ) -> Result<Vec<Option<Value>>, BackendError> {
        let mut out = vec![None; to - from];
        if !parent.is_empty() || from >= to {
            return Ok(out);
        }
        let kept_for: Option<u64> = self
            .conn
            .hget(self.keys.kept(&self.arn, "results"), ENTERED)
            .await
            .map_err(err)?;
        if kept_for != Some(entered) {
            // Kept for another state's run (or nothing kept): every child runs.
            return Ok(out);
        }
        let done_key = self.keys.kept(&self.arn, "done");
        let mut pipe = redis::pipe();
        for i in from..to {
            pipe.getbit(&done_key, i);
        }
        let bits: Vec<bool> = pipe.query_async(&mut self.conn).await.map_err(err)?;
        let kept: Vec<usize> = (from..to).filter(|i| bits[i - from]).collect();
        if kept.is_empty() {
            return Ok(out);
        }
        let outputs: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.kept(&self.arn, "results"))
            .arg(&kept)
            .query_async(&mut self.conn)
            .await
            .map_err(err)?;
        for (i, text) in kept.iter().zip(outputs) {
            let output = match text {
                Some(t) => serde_json::from_str(&t).map_err(err)?,
                None => Value::Null,
            };
            out[i - from] = Some(output);
            self.pending.done.push(*i);
            self.run_child_kept(parent, *i).await?;
        }
        Ok(out)
    }
}

/// DescribeExecution's redrive members for an execution in `status`: `redriveCount`,
/// `redriveStatus` and, when not redrivable, `redriveStatusReason` (AWS's text). The caller
/// adds `redriveDate` (`info.redrive_date`) in its own time format.
pub fn describe_members(status: Status, info: &ExecutionInfo) -> Vec<(&'static str, Value)> {
    use serde_json::json;
    let mut out = vec![("redriveCount", json!(info.redrive_count))];
    match status {
        Status::Failed | Status::Aborted | Status::TimedOut => {
            out.push(("redriveStatus", json!("REDRIVABLE")));
        }
        Status::Succeeded | Status::Running => {
            out.push(("redriveStatus", json!("NOT_REDRIVABLE")));
            out.push((
                "redriveStatusReason",
                json!(format!(
                    "Execution is {} and cannot be redriven",
                    status.as_str()
                )),
            ));
        }
    }
    out
}
