//! The Redis key schema and the Lua scripts that make the fleet exactly-once.
//!
//! # Keys
//! Every key of one execution carries the execution ARN as a hash tag (`{arn}`), so a
//! Redis Cluster keeps them in one slot and a script may touch several of them.
//!
//! | key | type | holds | TTL |
//! |---|---|---|---|
//! | `P:def:ID` | string | a definition (JSON) | [`Ttls::definition`] |
//! | `P:{ARN}:exec` | hash | execution status, input, output | [`Ttls::execution`] |
//! | `P:{ARN}:cursor:CURSOR` | hash | `seq`, `attempt`, `phase`, `outcome`, engine fields | [`Ttls::execution`] |
//! | `P:{ARN}:map:RUN:meta` | hash | `total`, `remaining`, `status`, `reduced` | [`Ttls::execution`] |
//! | `P:{ARN}:map:RUN:results` | hash | item index → result (JSON) | [`Ttls::execution`] |
//! | `P:{ARN}:history` | list | history events (JSON), in order | [`Ttls::execution`] |
//! | `P:timers` | sorted set | timer member → due time (Unix ms) | none: it is a queue |
//!
//! Every write refreshes its key's TTL, so an execution's data lives for the TTL after its
//! last activity. Run Redis with `maxmemory-policy noeviction`: evicting fan-in state would
//! silently lose progress.
//!
//! # Scripts (each one atomic)
//! - [`FleetStore::apply_outcome`]: applies an outcome only if the cursor is awaiting exactly
//!   that (seq, attempt); a duplicate, stale or late outcome returns [`Applied::Duplicate`].
//!   [`FleetStore::await_steps`] marks many cursors (one script call) as
//!   [`FleetStore::await_step`] marks one.
//! - [`FleetStore::store_iteration_result`]: stores result `i` once and decrements
//!   `remaining` once; exactly one call sees `remaining == 0` with `stored == true`.
//! - [`FleetStore::claim_due_timers`]: takes due timers under a lease, so any coordinator may
//!   fire them and a crashed one's timers fire again after the lease.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use crate::messages::StepId;
use crate::metrics;
use crate::tls::{TlsError, TlsFiles};

/// Key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn definition(&self, id: &str) -> String {
        format!("{}:def:{id}", self.prefix)
    }

    pub fn execution(&self, arn: &str) -> String {
        format!("{}:{{{arn}}}:exec", self.prefix)
    }

    pub fn cursor(&self, arn: &str, cursor: &str) -> String {
        format!("{}:{{{arn}}}:cursor:{cursor}", self.prefix)
    }

    pub fn map_meta(&self, arn: &str, map_run: &str) -> String {
        format!("{}:{{{arn}}}:map:{map_run}:meta", self.prefix)
    }

    pub fn map_results(&self, arn: &str, map_run: &str) -> String {
        format!("{}:{{{arn}}}:map:{map_run}:results", self.prefix)
    }

    pub fn history(&self, arn: &str) -> String {
        format!("{}:{{{arn}}}:history", self.prefix)
    }

    pub fn timers(&self) -> String {
        format!("{}:timers", self.prefix)
    }
}

/// How long data lives after its last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttls {
    pub definition: Duration,
    pub execution: Duration,
}

impl Default for Ttls {
    fn default() -> Self {
        Self {
            definition: Duration::from_secs(30 * 24 * 3600),
            execution: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected script reply: {0}")]
    Reply(String),
}

/// What [`FleetStore::apply_outcome`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// First outcome for the step the cursor awaits: recorded, the cursor is now `applied`.
    Applied,
    /// The cursor does not await this (seq, attempt): a redelivered duplicate, an outcome of
    /// a superseded attempt, or one for a cursor that is gone. Ack it and drop it.
    Duplicate,
}

/// What [`FleetStore::store_iteration_result`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// This call stored the result (false: it was already there).
    pub stored: bool,
    /// Iterations still without a result after this call.
    pub remaining: i64,
}

impl Stored {
    /// True for exactly one call per map run: the one that stored the last result.
    pub fn completed_now(&self) -> bool {
        self.stored && self.remaining == 0
    }
}

/// A due timer taken by [`FleetStore::claim_due_timers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTimer {
    pub member: String,
    /// The lease's end (Unix ms): pass it back to [`FleetStore::complete_timer`].
    pub lease_until_ms: u64,
}

const AWAIT_STEP: &str = r#"
-- KEYS[1] cursor hash; ARGV: seq, attempt, ttl seconds
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'attempt', ARGV[2], 'phase', 'awaiting')
redis.call('HDEL', KEYS[1], 'outcome', 'applied_ms')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"#;

const APPLY_OUTCOME: &str = r#"
-- KEYS[1] cursor hash; ARGV: seq, attempt, outcome, ttl seconds, now ms
local cur = redis.call('HMGET', KEYS[1], 'seq', 'attempt', 'phase')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] or cur[3] ~= 'awaiting' then
  return 0
end
redis.call('HSET', KEYS[1], 'phase', 'applied', 'outcome', ARGV[3], 'applied_ms', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"#;

const AWAIT_STEPS: &str = r#"
-- KEYS: cursor hashes; ARGV: ttl seconds, then (seq, attempt) per key
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'seq', ARGV[2 * i], 'attempt', ARGV[2 * i + 1], 'phase', 'awaiting')
  redis.call('HDEL', key, 'outcome', 'applied_ms')
  redis.call('EXPIRE', key, ARGV[1])
end
return #KEYS
"#;

const INIT_MAP_RUN: &str = r#"
-- KEYS[1] meta hash; ARGV: total, ttl seconds, now ms
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'remaining', ARGV[1], 'status', 'running', 'started_ms', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"#;

const STORE_RESULT: &str = r#"
-- KEYS[1] results hash, KEYS[2] meta hash; ARGV: index, result, ttl seconds
local total = redis.call('HGET', KEYS[2], 'total')
if not total then return redis.error_reply('NOMAPRUN map run is not initialised or expired') end
local i = tonumber(ARGV[1])
if i == nil or i < 0 or i >= tonumber(total) then
  return redis.error_reply('BADINDEX item index ' .. ARGV[1] .. ' outside 0..' .. total)
end
local stored = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
local left
if stored == 1 then
  left = redis.call('HINCRBY', KEYS[2], 'remaining', -1)
  if left == 0 then redis.call('HSET', KEYS[2], 'status', 'complete') end
else
  left = tonumber(redis.call('HGET', KEYS[2], 'remaining'))
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {stored, left}
"#;

const CLAIM_TIMERS: &str = r#"
-- KEYS[1] timers zset; ARGV: now ms, limit, lease ms
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local lease_until = tonumber(ARGV[1]) + tonumber(ARGV[3])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], lease_until, m) end
return due
"#;

const COMPLETE_TIMER: &str = r#"
-- KEYS[1] timers zset; ARGV: member, lease_until ms
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"#;

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    await_step: Script::new(AWAIT_STEP),
    apply_outcome: Script::new(APPLY_OUTCOME),
    await_steps: Script::new(AWAIT_STEPS),
    init_map_run: Script::new(INIT_MAP_RUN),
    store_result: Script::new(STORE_RESULT),
    claim_timers: Script::new(CLAIM_TIMERS),
    complete_timer: Script::new(COMPLETE_TIMER),
});

struct Scripts {
    await_step: Script,
    apply_outcome: Script,
    await_steps: Script,
    init_map_run: Script,
    store_result: Script,
    claim_timers: Script,
    complete_timer: Script,
}

/// Most keys one batched script call (e.g. [`FleetStore::await_steps`]) should touch: bounds
/// one call's run time in Redis.
pub const BATCH: usize = 1000;

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// [`connect_with`] without TLS files (`rediss://` then trusts the system's CAs).
pub async fn connect(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    connect_with(url, &TlsFiles::default()).await
}

/// Connects a [`ConnectionManager`] (multiplexed, reconnecting in the background) with
/// timeouts that suit a busy 2-core box. A command that hit a dropped connection still
/// fails: callers retry, which is safe because every script here is idempotent.
///
/// `rediss://` is TLS with the server's certificate verified, against `tls.ca_file` if set
/// (else the system's CAs), presenting `tls`'s client certificate if set. TLS files with a
/// `redis://` URL are refused rather than ignored.
pub async fn connect_with(
    url: &str,
    tls: &TlsFiles,
) -> Result<ConnectionManager, redis::RedisError> {
    let config_error = |detail: String| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "Redis TLS settings",
            detail,
        ))
    };
    let uses_tls = url.starts_with("rediss://");
    let client = if uses_tls {
        crate::tls::install_crypto_provider();
        let material = tls.load().map_err(|e| config_error(e.to_string()))?;
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: material.identity.map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.into_bytes(),
                    client_key: key.into_bytes(),
                }),
                root_cert: material.ca_pem.map(String::into_bytes),
            },
        )?
    } else if tls.is_set() {
        return Err(config_error(
            TlsError::NotTlsUrl(
                "--redis-ca-file/--redis-cert-file",
                crate::config::redact_url(url),
                "rediss://",
            )
            .to_string(),
        ));
    } else {
        redis::Client::open(url)?
    };
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(6);
    client.get_connection_manager_with_config(config).await
}

/// [`connect_with`], trying again (every second at most) while Redis cannot be reached,
/// until `give_up_after`; a refused login or TLS failure (a certificate that does not
/// verify, a server that does not speak TLS) ends it at once.
pub async fn connect_retrying(
    url: &str,
    tls: &TlsFiles,
    give_up_after: Duration,
) -> Result<ConnectionManager, redis::RedisError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match connect_with(url, tls).await {
            Ok(conn) => return Ok(conn),
            Err(e) if is_permanent(&e, url.starts_with("rediss://")) => return Err(e),
            Err(e) if started.elapsed() + delay >= give_up_after => return Err(e),
            Err(e) => {
                tracing::warn!(url = %crate::config::redact_url(url), error = %e, retry_in = ?delay, "Redis connect failed, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Whether trying again cannot help: a refused login, bad TLS settings, a handshake that
/// failed (rustls reports those as invalid data).
fn is_permanent(e: &redis::RedisError, uses_tls: bool) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig
    ) || (uses_tls && (crate::tls::is_handshake_failure(e) || names_handshake_failure(e)))
}

/// The connection manager hands back a handshake failure as text only (no error chain), in
/// rustls's words.
fn names_handshake_failure(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    [
        "invalid peer certificate",
        "received corrupt message",
        "peer is incompatible",
        "peer misbehaved",
        "received fatal alert",
    ]
    .iter()
    .any(|words| text.contains(words))
}

/// The fleet's Redis state: key names, TTLs and the scripts, on one shared connection.
/// Cheap to clone.
#[derive(Clone)]
pub struct FleetStore {
    conn: ConnectionManager,
    keys: Keys,
    ttls: Ttls,
}

impl FleetStore {
    pub fn new(conn: ConnectionManager, keys: Keys, ttls: Ttls) -> Self {
        Self { conn, keys, ttls }
    }

    /// [`connect`] to `url` and use `prefix` with the default TTLs.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Ok(Self::new(
            connect(url).await?,
            Keys::new(prefix),
            Ttls::default(),
        ))
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn ttls(&self) -> Ttls {
        self.ttls
    }

    /// The connection, for commands this type has no wrapper for.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn timed<T: redis::FromRedisValue>(
        &self,
        name: &'static str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let mut conn = self.conn.clone();
        let out = invocation.invoke_async(&mut conn).await;
        metrics::get()
            .redis_script_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        Ok(out?)
    }

    /// Marks `cursor` as awaiting the outcome of step (`seq`, `attempt`): call it before
    /// publishing the step. The previous outcome (if any) is cleared.
    pub async fn await_step(
        &self,
        arn: &str,
        cursor: &str,
        seq: u64,
        attempt: u32,
    ) -> Result<(), StoreError> {
        let mut inv = SCRIPTS.await_step.prepare_invoke();
        inv.key(self.keys.cursor(arn, cursor))
            .arg(seq)
            .arg(attempt)
            .arg(secs(self.ttls.execution));
        let _: i64 = self.timed("await_step", inv).await?;
        Ok(())
    }

    /// Applies the outcome of step `id` exactly once: only if its cursor awaits exactly that
    /// (seq, attempt). `outcome` (JSON, typically the [`crate::messages::StepResult`]) is
    /// kept in the cursor's `outcome` field, so a coordinator that crashes right after this
    /// call finds it there and finishes the transition.
    pub async fn apply_outcome(&self, id: &StepId, outcome: &str) -> Result<Applied, StoreError> {
        let mut inv = SCRIPTS.apply_outcome.prepare_invoke();
        inv.key(self.keys.cursor(&id.execution, &id.cursor))
            .arg(id.seq)
            .arg(id.attempt)
            .arg(outcome)
            .arg(secs(self.ttls.execution))
            .arg(crate::now_ms());
        let n: i64 = self.timed("apply_outcome", inv).await?;
        Ok(if n == 1 {
            Applied::Applied
        } else {
            metrics::get().outcome_duplicates.inc();
            Applied::Duplicate
        })
    }

    /// [`Self::await_step`] for many steps of one execution, in one script call per
    /// [`BATCH`] steps (one round trip instead of one per step). Each step is marked exactly
    /// as `await_step` marks it.
    pub async fn await_steps(
        &self,
        arn: &str,
        steps: &[(&str, u64, u32)],
    ) -> Result<(), StoreError> {
        for chunk in steps.chunks(BATCH) {
            let mut inv = SCRIPTS.await_steps.prepare_invoke();
            inv.arg(secs(self.ttls.execution));
            for (cursor, seq, attempt) in chunk {
                inv.key(self.keys.cursor(arn, cursor))
                    .arg(*seq)
                    .arg(*attempt);
            }
            let _: i64 = self.timed("await_steps", inv).await?;
        }
        Ok(())
    }

    /// A cursor's fields (`seq`, `attempt`, `phase`, `outcome`, …).
    pub async fn cursor_fields(
        &self,
        arn: &str,
        cursor: &str,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hgetall(self.keys.cursor(arn, cursor)).await?)
    }

    /// Creates the fan-in state of a map run with `total` items (`remaining = total`).
    /// Returns false if it already existed (a restarted coordinator re-entering the Map).
    pub async fn init_map_run(
        &self,
        arn: &str,
        map_run: &str,
        total: u64,
    ) -> Result<bool, StoreError> {
        let mut inv = SCRIPTS.init_map_run.prepare_invoke();
        inv.key(self.keys.map_meta(arn, map_run))
            .arg(total)
            .arg(secs(self.ttls.execution))
            .arg(crate::now_ms());
        let n: i64 = self.timed("init_map_run", inv).await?;
        Ok(n == 1)
    }

    /// Stores the result of item `index` once and counts it once. See [`Stored`].
    pub async fn store_iteration_result(
        &self,
        arn: &str,
        map_run: &str,
        index: u64,
        result: &str,
    ) -> Result<Stored, StoreError> {
        let mut inv = SCRIPTS.store_result.prepare_invoke();
        inv.key(self.keys.map_results(arn, map_run))
            .key(self.keys.map_meta(arn, map_run))
            .arg(index)
            .arg(result)
            .arg(secs(self.ttls.execution));
        let (stored, remaining): (i64, i64) = self.timed("store_result", inv).await?;
        Ok(Stored {
            stored: stored == 1,
            remaining,
        })
    }

    /// Marks the map run reduced; true for exactly one caller. Whoever observes
    /// `remaining == 0` (even through a duplicate) may call it and reduce if it wins, which
    /// covers a coordinator that crashed between the last store and the reduce.
    pub async fn try_mark_reduced(&self, arn: &str, map_run: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let won: bool = conn
            .hset_nx(self.keys.map_meta(arn, map_run), "reduced", crate::now_ms())
            .await?;
        Ok(won)
    }

    /// The results of items `0..total`, in item order (`None` where missing).
    pub async fn read_results(
        &self,
        arn: &str,
        map_run: &str,
        total: u64,
    ) -> Result<Vec<Option<String>>, StoreError> {
        let key = self.keys.map_results(arn, map_run);
        let mut conn = self.conn.clone();
        let mut out = Vec::with_capacity(total as usize);
        let mut start = 0u64;
        while start < total {
            let end = (start + 1000).min(total);
            let fields: Vec<u64> = (start..end).collect();
            let chunk: Vec<Option<String>> = if fields.len() == 1 {
                vec![conn.hget(&key, fields[0]).await?]
            } else {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg(&fields)
                    .query_async(&mut conn)
                    .await?
            };
            out.extend(chunk);
            start = end;
        }
        Ok(out)
    }

    /// The map run's meta fields (`total`, `remaining`, `status`, `reduced`, …).
    pub async fn map_meta(
        &self,
        arn: &str,
        map_run: &str,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hgetall(self.keys.map_meta(arn, map_run)).await?)
    }

    /// Schedules (or moves) timer `member` to fire at `due_ms`. Members must be unique per
    /// firing (e.g. include the cursor and step seq) for leases to work.
    pub async fn schedule_timer(&self, member: &str, due_ms: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.zadd(self.keys.timers(), member, due_ms).await?;
        Ok(())
    }

    /// Atomically takes up to `limit` timers due at `now_ms`, leasing each for `lease`: they
    /// are not handed to anyone else until the lease ends, and fire again then unless
    /// [`Self::complete_timer`] removed them.
    pub async fn claim_due_timers(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedTimer>, StoreError> {
        let lease_ms = lease.as_millis() as u64;
        let mut inv = SCRIPTS.claim_timers.prepare_invoke();
        inv.key(self.keys.timers())
            .arg(now_ms)
            .arg(limit)
            .arg(lease_ms);
        let members: Vec<String> = self.timed("claim_timers", inv).await?;
        Ok(members
            .into_iter()
            .map(|member| ClaimedTimer {
                member,
                lease_until_ms: now_ms + lease_ms,
            })
            .collect())
    }

    /// Removes a fired timer, unless it was rescheduled since it was claimed. Returns
    /// whether it was removed.
    pub async fn complete_timer(&self, timer: &ClaimedTimer) -> Result<bool, StoreError> {
        let mut inv = SCRIPTS.complete_timer.prepare_invoke();
        inv.key(self.keys.timers())
            .arg(&timer.member)
            .arg(timer.lease_until_ms);
        let n: i64 = self.timed("complete_timer", inv).await?;
        Ok(n == 1)
    }

    /// Appends one history event (JSON) to an execution's history.
    pub async fn append_history(&self, arn: &str, event: &str) -> Result<(), StoreError> {
        let key = self.keys.history(arn);
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .rpush(&key, event)
            .ignore()
            .expire(&key, secs(self.ttls.execution) as i64)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// History events `start..=stop` (Redis LRANGE indexes; `-1` is the last).
    pub async fn history(
        &self,
        arn: &str,
        start: isize,
        stop: isize,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.lrange(self.keys.history(arn), start, stop).await?)
    }

    /// Deletes every key of one execution's map run and cursors matching the prefix (tests
    /// and cleanup). Uses SCAN, so it is slow on a big keyspace: not for hot paths.
    pub async fn delete_prefix(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:*", self.keys.prefix);
        let keys: Vec<String> = {
            let mut iter = conn.scan_match::<_, String>(&pattern).await?;
            let mut keys = Vec::new();
            while let Some(k) = futures_lite::StreamExt::next(&mut iter).await {
                keys.push(k?);
            }
            keys
        };
        let mut deleted = 0;
        for chunk in keys.chunks(500) {
            let n: u64 = conn.del(chunk).await?;
            deleted += n;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_execution_hash_tag() {
        let k = Keys::new("p");
        let arn = "arn:aws:states:local:0:execution:sm:e1";
        for key in [
            k.execution(arn),
            k.cursor(arn, "Map/1"),
            k.map_meta(arn, "Map"),
            k.map_results(arn, "Map"),
            k.history(arn),
        ] {
            assert!(
                key.starts_with("p:{arn:aws:states:local:0:execution:sm:e1}:"),
                "{key}"
            );
        }
        assert_eq!(k.timers(), "p:timers");
        assert_eq!(k.definition("abc"), "p:def:abc");
    }

    /// Against the Redis on 127.0.0.1 (as the integration tests): `await_steps` leaves each
    /// cursor exactly as `await_step` does, so `apply_outcome` accepts the awaited step once.
    #[tokio::test]
    async fn await_steps_marks_cursors_as_await_step_does() {
        let prefix = format!("mft-await-{}-{}", std::process::id(), crate::now_ms());
        let store = FleetStore::connect("redis://127.0.0.1:6379/", &prefix)
            .await
            .expect("redis on 127.0.0.1");
        let arn = "arn:aws:states:local:0:execution:sm:e1";
        store.await_step(arn, "one", 4, 2).await.unwrap();
        store
            .await_steps(arn, &[("many/0", 4, 2), ("many/1", 7, 1)])
            .await
            .unwrap();
        let one = store.cursor_fields(arn, "one").await.unwrap();
        let many = store.cursor_fields(arn, "many/0").await.unwrap();
        assert_eq!(one, many);
        let id = |cursor: &str, seq, attempt| StepId {
            execution: arn.into(),
            cursor: cursor.into(),
            seq,
            attempt,
        };
        let apply = |id: StepId| {
            let store = store.clone();
            async move { store.apply_outcome(&id, "{}").await.unwrap() }
        };
        assert_eq!(apply(id("many/1", 7, 1)).await, Applied::Applied);
        assert_eq!(apply(id("many/1", 7, 1)).await, Applied::Duplicate);
        assert_eq!(apply(id("many/0", 4, 1)).await, Applied::Duplicate);
        // Marking again clears the applied outcome.
        store.await_steps(arn, &[("many/1", 8, 1)]).await.unwrap();
        let fields = store.cursor_fields(arn, "many/1").await.unwrap();
        assert!(!fields.contains_key("outcome"));
        assert_eq!(fields.get("phase").map(String::as_str), Some("awaiting"));
        store.delete_prefix().await.unwrap();
    }

    #[test]
    fn completed_now_only_for_the_storing_call() {
        assert!(
            Stored {
                stored: true,
                remaining: 0
            }
            .completed_now()
        );
        assert!(
            !Stored {
                stored: false,
                remaining: 0
            }
            .completed_now()
        );
        assert!(
            !Stored {
                stored: true,
                remaining: 1
            }
            .completed_now()
        );
    }
}
