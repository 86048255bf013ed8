//! The user's side of the fleet: submit an execution, follow it, describe it, read its
//! history, stop it. Talks to Redis only; coordinators do the rest.
//!
//! Reads (waiting, describing, history) ride out a Redis outage: the execution carries on
//! without the client, so a read that fails for want of Redis (a dropped connection, a
//! refused one, a time-out, Redis still loading its data) is tried again after a pause that
//! grows from 200 ms to 5 s, with a note on stderr each time, for up to
//! [`FleetClient::patience`]. Writes (submit, stop) are not retried: they are not
//! idempotent, and their caller sees the error.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redis::{AsyncCommands, RedisResult, RetryMethod};
use sha2::Digest;
use shared::redis_conn::RedisConn;

use super::InboxEvent;
use super::keys::FleetKeys;
use super::record::{ExecutionRecord, RecordError, field};
use super::service::enqueue;
use crate::asl::definition::StateMachine;
use crate::asl::error::StatesError;
use crate::driver::Status;
use crate::embedded::ExecutionResult;
use crate::engine::ExecutionInfo;
use crate::engine::history::Event;

/// The first pause before a failed read is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(200);
/// The longest pause between tries.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long reads keep trying by default.
const DEFAULT_PATIENCE: Duration = Duration::from_secs(300);

/// Why a client call failed; each names the execution (or the Redis URL) it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to Redis at {url}")]
    Connect {
        /// Without its password.
        url: String,
        #[source]
        source: redis::RedisError,
    },
    /// A read that kept failing for want of Redis for [`FleetClient::patience`].
    #[error("{doing}: Redis could not be reached for {secs}s")]
    Unreachable {
        doing: String,
        secs: u64,
        #[source]
        source: redis::RedisError,
    },
    #[error("{doing}")]
    Redis {
        doing: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("Execution Already Exists: '{0}'")]
    AlreadyExists(String),
    #[error("Execution Does Not Exist: '{0}'")]
    DoesNotExist(String),
    /// AWS's ExecutionNotRedrivable, with its message.
    #[error("{0}")]
    NotRedrivable(String),
    #[error("execution {0} disappeared from Redis")]
    Disappeared(String),
    #[error("execution {execution}: {what} is unreadable")]
    Unreadable {
        execution: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Names the client call a Redis error happened in.
fn doing<T>(result: RedisResult<T>, doing: impl FnOnce() -> String) -> Result<T, ClientError> {
    result.map_err(|source| ClientError::Redis {
        doing: doing(),
        source,
    })
}

/// A connection to a fleet's Redis, for clients.
#[derive(Clone)]
pub struct FleetClient {
    pub conn: RedisConn,
    pub keys: FleetKeys,
    /// How long a read keeps trying while Redis cannot be reached (default 5 minutes).
    pub patience: Duration,
}

impl FleetClient {
    pub async fn connect(redis_url: &str, prefix: &str) -> Result<FleetClient, ClientError> {
        let conn = shared::redis_schema::connect(redis_url)
            .await
            .map_err(|source| ClientError::Connect {
                url: shared::config::redact_url(redis_url).to_string(),
                source,
            })?;
        Ok(FleetClient {
            conn,
            keys: FleetKeys::new(prefix),
            patience: DEFAULT_PATIENCE,
        })
    }

    /// Runs a Redis read, trying again while Redis cannot be reached (see the module docs).
    pub(super) async fn read<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut(RedisConn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let mut failing_since: Option<Instant> = None;
        let mut pause = RETRY_FIRST;
        let mut tries = 0u32;
        loop {
            match op(self.conn.clone()).await {
                Ok(v) => {
                    if let Some(since) = failing_since {
                        eprintln!(
                            "mapfleet: Redis is back after {:.1}s; carrying on",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(v);
                }
                Err(e) if !matches!(e.retry_method(), RetryMethod::NoRetry) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.patience {
                        return Err(ClientError::Unreachable {
                            doing: what.to_string(),
                            secs: self.patience.as_secs(),
                            source: e,
                        });
                    }
                    tries += 1;
                    eprintln!(
                        "mapfleet: Redis unreachable while {what} ({e}); the execution carries \
                         on without us; reconnecting in {:.1}s (try {tries})",
                        pause.as_secs_f64()
                    );
                    tracing::debug!(error = %e, tries, "a client read failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
                Err(e) => return doing(Err(e), || what.to_string()),
            }
        }
    }

    /// Stores the definition and the execution, and queues its start.
    pub async fn submit(
        &self,
        definition_text: &str,
        def: &StateMachine,
        info: &ExecutionInfo,
    ) -> Result<(), ClientError> {
        let mut conn = self.conn.clone();
        let arn = &info.execution_arn;
        let submitting = || format!("submitting execution {arn}");
        let def_id = definition_id(definition_text);
        let exec_key = self.keys.exec(arn);
        let created: bool = doing(
            conn.hset_nx(&exec_key, field::STATUS, Status::Running.as_str())
                .await,
            submitting,
        )?;
        if !created {
            return Err(ClientError::AlreadyExists(arn.clone()));
        }
        let info_text = serde_json::to_string(info).map_err(|source| ClientError::Unreadable {
            execution: arn.clone(),
            what: "info",
            source,
        })?;
        let start_ms = info.start_time.timestamp_millis();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(self.keys.definition(&def_id), definition_text)
            .ignore()
            .hset_multiple(
                &exec_key,
                &ExecutionRecord::submitted(&def_id, info_text, start_ms),
            )
            .ignore()
            .zadd(self.keys.executions(), &info.execution_arn, start_ms)
            .ignore();
        if let Some(t) = def.timeout_seconds {
            let due = start_ms + (t as i64) * 1000;
            pipe.zadd(
                self.keys.shared.timers(),
                super::timer_member('X', &info.execution_arn, "", 0),
                due,
            )
            .ignore();
        }
        if conn.is_cluster() {
            // The keys are in several slots: one command each. Nothing runs the execution
            // before its start is queued, last.
            for cmd in pipe.cmd_iter() {
                let _: () = doing(cmd.query_async(&mut conn).await, submitting)?;
            }
        } else {
            let _: () = doing(pipe.query_async(&mut conn).await, submitting)?;
        }
        doing(
            enqueue(&mut conn, &self.keys, arn, &[InboxEvent::Start]).await,
            submitting,
        )
    }

    /// Asks the coordinators to stop an execution (ExecutionAborted).
    pub async fn stop(&self, arn: &str, error: &str, cause: &str) -> Result<(), ClientError> {
        let mut conn = self.conn.clone();
        let stopping = || format!("stopping execution {arn}");
        let exists: bool = doing(conn.exists(self.keys.exec(arn)).await, stopping)?;
        if !exists {
            return Err(ClientError::DoesNotExist(arn.to_string()));
        }
        let stop = InboxEvent::Stop {
            error: error.into(),
            cause: cause.into(),
        };
        doing(enqueue(&mut conn, &self.keys, arn, &[stop]).await, stopping)
    }

    /// The definition an execution runs (as submitted, byte for byte) and its id
    /// ([`definition_id`]).
    pub async fn execution_definition(&self, arn: &str) -> Result<(String, String), ClientError> {
        let key = self.keys.exec(arn);
        let id: Option<String> = self
            .read(
                &format!("reading the definition of execution {arn}"),
                |mut c| {
                    let key = &key;
                    async move { c.hget(key, field::DEF).await }
                },
            )
            .await?;
        let id = id.ok_or_else(|| ClientError::DoesNotExist(arn.to_string()))?;
        let def_key = self.keys.definition(&id);
        let text: Option<String> = self
            .read(
                &format!("reading the definition of execution {arn}"),
                |mut c| {
                    let key = &def_key;
                    async move { c.get(key).await }
                },
            )
            .await?;
        let text = text.ok_or_else(|| RecordError::Missing {
            execution: arn.to_string(),
            field: field::DEF,
        })?;
        Ok((id, text))
    }

    /// The execution as it stands, with its history when `with_history`.
    pub async fn describe(
        &self,
        arn: &str,
        with_history: bool,
    ) -> Result<ExecutionResult, ClientError> {
        let key = self.keys.exec(arn);
        let exec: HashMap<String, String> = self
            .read(&format!("describing execution {arn}"), |mut c| {
                let key = &key;
                async move { c.hgetall(key).await }
            })
            .await?;
        if exec.is_empty() {
            return Err(ClientError::DoesNotExist(arn.to_string()));
        }
        let info = exec.get(field::INFO).ok_or_else(|| RecordError::Missing {
            execution: arn.to_string(),
            field: field::INFO,
        })?;
        let info: ExecutionInfo =
            serde_json::from_str(info).map_err(|source| ClientError::Unreadable {
                execution: arn.to_string(),
                what: "info",
                source,
            })?;
        let status = exec
            .get(field::STATUS)
            .and_then(|s| Status::parse(s))
            .unwrap_or(Status::Running);
        let output = exec
            .get(field::OUTPUT)
            .and_then(|o| serde_json::from_str(o).ok());
        let error = exec.get(field::ERROR).map(|e| {
            StatesError::new(
                e.clone(),
                exec.get(field::CAUSE).cloned().unwrap_or_default(),
            )
        });
        let stop_date = exec
            .get(field::STOP_DATE)
            .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(Utc::now);
        let events = if with_history {
            self.history(arn).await?
        } else {
            Vec::new()
        };
        Ok(ExecutionResult {
            info,
            status,
            output,
            error,
            stop_date,
            events,
            transitions: 0,
        })
    }

    /// The execution's history events, in order.
    pub async fn history(&self, arn: &str) -> Result<Vec<Event>, ClientError> {
        let key = self.keys.history(arn);
        let raw: Vec<String> = self
            .read(
                &format!("reading the history of execution {arn}"),
                |mut c| {
                    let key = &key;
                    async move { c.lrange(key, 0, -1).await }
                },
            )
            .await?;
        raw.iter()
            .map(|t| {
                serde_json::from_str(t).map_err(|source| ClientError::Unreadable {
                    execution: arn.to_string(),
                    what: "a history event",
                    source,
                })
            })
            .collect()
    }

    /// The execution's status alone (one `HGET`: cheap enough to poll).
    pub async fn status(&self, arn: &str) -> Result<Status, ClientError> {
        let status = self.read_status(arn).await?;
        status
            .as_deref()
            .and_then(Status::parse)
            .ok_or_else(|| ClientError::DoesNotExist(arn.to_string()))
    }

    /// The execution hash's `status` field, read with retries.
    async fn read_status(&self, arn: &str) -> Result<Option<String>, ClientError> {
        let key = self.keys.exec(arn);
        self.read(&format!("waiting for execution {arn}"), |mut c| {
            let key = &key;
            async move { c.hget(key, field::STATUS).await }
        })
        .await
    }

    /// Map progress counters: (items started, succeeded, failed).
    pub async fn progress(&self, arn: &str) -> Result<(u64, u64, u64), ClientError> {
        let key = self.keys.exec(arn);
        let v: Vec<Option<u64>> = self
            .read(
                &format!("reading the progress of execution {arn}"),
                |mut c| {
                    let key = &key;
                    async move {
                        redis::cmd("HMGET")
                            .arg(key)
                            .arg(&[
                                field::ITEMS_STARTED,
                                field::ITEMS_SUCCEEDED,
                                field::ITEMS_FAILED,
                            ])
                            .query_async(&mut c)
                            .await
                    }
                },
            )
            .await?;
        Ok((v[0].unwrap_or(0), v[1].unwrap_or(0), v[2].unwrap_or(0)))
    }

    /// Waits for the execution to end, drawing a progress line on stderr when it is a
    /// terminal and the execution runs a Map.
    pub async fn wait(
        &self,
        arn: &str,
        total_items: Option<usize>,
    ) -> Result<ExecutionResult, ClientError> {
        let show = std::io::stderr().is_terminal();
        let started = Instant::now();
        let mut drawn = false;
        loop {
            let status = self.read_status(arn).await?;
            let status = status
                .as_deref()
                .and_then(Status::parse)
                .ok_or_else(|| ClientError::Disappeared(arn.to_string()))?;
            if status != Status::Running {
                if drawn {
                    eprintln!();
                }
                return self.describe(arn, false).await;
            }
            if show {
                let (s, ok, failed) = self.progress(arn).await?;
                if s > 0 {
                    draw_progress(s, ok, failed, total_items, started.elapsed());
                    drawn = true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn draw_progress(started: u64, ok: u64, failed: u64, total: Option<usize>, elapsed: Duration) {
    let done = ok + failed;
    let in_flight = started.saturating_sub(done);
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let (bar, eta) = match total {
        Some(t) if t > 0 => {
            let frac = (done as f64 / t as f64).min(1.0);
            let width = 30;
            let filled = (frac * width as f64) as usize;
            let eta = if rate > 0.0 {
                format!("{:.0}s", (t as f64 - done as f64).max(0.0) / rate)
            } else {
                "?".into()
            };
            (
                format!(
                    "[{}{}] {done}/{t}",
                    "#".repeat(filled),
                    " ".repeat(width - filled)
                ),
                eta,
            )
        }
        _ => (format!("{done} items"), "?".into()),
    };
    eprint!(
        "\r{bar}  ok {ok}  failed {failed}  in flight {in_flight}  {rate:.0} items/s  ETA {eta}   "
    );
    let _ = std::io::stderr().flush();
}

/// A definition's id on the fleet: the SHA-256 of its text, in hex.
pub fn definition_id(text: &str) -> String {
    hex(&sha2::Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
