//! The Redis keys coordinators and workers both name, and the scripts on them that make
//! outcomes apply once and timers fire from any coordinator. The coordinator's own keys
//! (cursors, inbox, outbox, a Map's items and results, ...) are in
//! `coordinator/src/fleet/keys.rs`; the photo stores' in `worker/src/redis_keys.rs`.
//!
//! # Keys
//! Every key of one execution carries the execution ARN as a hash tag (`{arn}`), so a
//! Redis Cluster keeps them in one slot and a script may touch several of them.
//!
//! | key | type | holds | TTL |
//! |---|---|---|---|
//! | `P:def:ID` | string | a definition (JSON) | [`Ttls::definition`] |
//! | `P:{ARN}:exec` | hash | execution status, input, output | [`Ttls::execution`] |
//! | `P:{ARN}:cursor:CURSOR` | hash | the step a cursor awaits: `seq`, `attempt`, `phase` (`awaiting`, `applied`), `outcome`, `applied_ms`; deleted by the coordinator's commit that removes the cursor (a finished Map child leaves none behind), so an outcome for it then is a [`Applied::Duplicate`] | [`Ttls::execution`] |
//! | `P:{ARN}:history` | list | history events (JSON), in order | [`Ttls::execution`] |
//! | `P:timers` | sorted set | timer member → due time (Unix ms) | none: it is a queue |
//!
//! Every write refreshes its key's TTL, so an execution's data lives for the TTL after its
//! last activity. Run Redis with `maxmemory-policy noeviction`: evicting fan-in state would
//! silently lose progress.
//!
//! # Scripts (each one atomic)
//! - [`FleetStore::await_steps`]: marks cursors as awaiting exactly one step id (seq,
//!   attempt) each, before the steps are published. [`crate::inbox::apply_to_inbox`] then
//!   applies an outcome only if its cursor awaits exactly that step; a duplicate, stale or
//!   late outcome is [`Applied::Duplicate`].
//! - [`FleetStore::claim_due_timers`]: takes due timers under a lease, so any coordinator may
//!   fire them and a crashed one's timers fire again after the lease.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::{AsyncCommands, Script};

use crate::metrics;
use crate::redis_conn::RedisConn;
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

    pub fn history(&self, arn: &str) -> String {
        format!("{}:{{{arn}}}:history", self.prefix)
    }

    pub fn timers(&self) -> String {
        format!("{}:timers", self.prefix)
    }

    /// The activities of `mapfleet serve` (CreateActivity): name → record.
    pub fn activities(&self) -> String {
        format!("{}:sfn:activities", self.prefix)
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

/// What applying an outcome did ([`crate::inbox::apply_to_inbox`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// First outcome for the step the cursor awaits: recorded, the cursor is now `applied`.
    Applied,
    /// The cursor does not await this (seq, attempt): a redelivered duplicate, an outcome of
    /// a superseded attempt, or one for a cursor that is gone. Ack it and drop it.
    Duplicate,
}

/// A due timer taken by [`FleetStore::claim_due_timers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTimer {
    pub member: String,
    /// The lease's end (Unix ms): pass it back to [`FleetStore::complete_timer`].
    pub lease_until_ms: u64,
}

const AWAIT_STEPS: &str = r#"
-- KEYS: cursor hashes; ARGV: ttl seconds, then (seq, attempt) per key
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'seq', ARGV[2 * i], 'attempt', ARGV[2 * i + 1], 'phase', 'awaiting')
  redis.call('HDEL', key, 'outcome', 'applied_ms')
  redis.call('EXPIRE', key, ARGV[1])
end
return #KEYS
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
    await_steps: Script::new(AWAIT_STEPS),
    claim_timers: Script::new(CLAIM_TIMERS),
    complete_timer: Script::new(COMPLETE_TIMER),
});

struct Scripts {
    await_steps: Script,
    claim_timers: Script,
    complete_timer: Script,
}

/// Sets tags on a tagged resource (a state machine of `mapfleet serve`, an activity) only
/// while it exists, and at most ARGV[2] of them in all. KEYS[1]: the hash of the resources
/// by name, KEYS[2]: the resource's tags hash; ARGV[1]: its name, then key, value pairs.
/// Returns the count after, or -1 (no such resource) or -2 (too many).
pub const TAG_IF_OWNER_EXISTS: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
local n = redis.call('HLEN', KEYS[2])
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then n = n + 1 end
end
if n > tonumber(ARGV[2]) then return -2 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return n
";

/// Most keys one batched script call (e.g. [`FleetStore::await_steps`]) should touch: bounds
/// one call's run time in Redis.
pub const BATCH: usize = 1000;

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// [`connect_with`] without TLS files (`rediss://` then trusts the system's CAs).
pub async fn connect(url: &str) -> Result<RedisConn, redis::RedisError> {
    connect_with(url, &TlsFiles::default()).await
}

/// Connects a [`RedisConn`] (multiplexed, reconnecting in the background) with timeouts that
/// suit a busy 2-core box: a single server, or a Redis Cluster for a
/// `redis+cluster://`/`rediss+cluster://` URL ([`crate::redis_conn`]). A command that hit a dropped connection still
/// fails: callers retry, which is safe because every script here is idempotent.
///
/// `rediss://` is TLS with the server's certificate verified, against `tls.ca_file` if set
/// (else the system's CAs), presenting `tls`'s client certificate if set. TLS files with a
/// `redis://` URL are refused rather than ignored.
pub async fn connect_with(url: &str, tls: &TlsFiles) -> Result<RedisConn, redis::RedisError> {
    let config_error = |detail: String| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "Redis TLS settings",
            detail,
        ))
    };
    let uses_tls = url.starts_with("rediss://") || url.starts_with("rediss+cluster://");
    let certificates = || -> Result<redis::TlsCertificates, redis::RedisError> {
        crate::tls::install_crypto_provider();
        let material = tls.load().map_err(|e| config_error(e.to_string()))?;
        Ok(redis::TlsCertificates {
            client_tls: material.identity.map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.into_bytes(),
                client_key: key.into_bytes(),
            }),
            root_cert: material.ca_pem.map(String::into_bytes),
        })
    };
    if !uses_tls && tls.is_set() {
        return Err(config_error(
            TlsError::NotTlsUrl(
                "--redis-ca-file/--redis-cert-file",
                crate::config::redact_url(url),
                "rediss://",
            )
            .to_string(),
        ));
    }
    if let Some(seeds) = crate::redis_conn::cluster_seeds(url) {
        let mut builder = redis::cluster::ClusterClient::builder(seeds)
            .connection_timeout(Duration::from_secs(5))
            .response_timeout(Duration::from_secs(10))
            .retries(6);
        if uses_tls {
            builder = builder.certs(certificates()?);
        }
        let conn = builder.build()?.get_async_connection().await?;
        return Ok(RedisConn::Cluster(conn));
    }
    let client = if uses_tls {
        redis::Client::build_with_tls(url, certificates()?)?
    } else {
        redis::Client::open(url)?
    };
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(6);
    Ok(RedisConn::Single(
        client.get_connection_manager_with_config(config).await?,
    ))
}

/// [`connect_with`], trying again (every second at most) while Redis cannot be reached,
/// until `give_up_after`; a refused login or TLS failure (a certificate that does not
/// verify, a server that does not speak TLS) ends it at once.
pub async fn connect_retrying(
    url: &str,
    tls: &TlsFiles,
    give_up_after: Duration,
) -> Result<RedisConn, redis::RedisError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match connect_with(url, tls).await {
            Ok(conn) => return Ok(conn),
            Err(e) if is_permanent(&e, url.starts_with("rediss")) => return Err(e),
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
    is_refused(e)
        || (uses_tls && (crate::tls::is_handshake_failure(e) || names_handshake_failure(e)))
}

/// Whether Redis refused the login (a wrong password or user, a disabled user) or the client
/// settings are wrong: no retry can cure either.
pub fn is_refused(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig
    )
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
    conn: RedisConn,
    keys: Keys,
    ttls: Ttls,
}

impl FleetStore {
    pub fn new(conn: RedisConn, keys: Keys, ttls: Ttls) -> Self {
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
    pub fn conn(&self) -> RedisConn {
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
        metrics::get().fleet.script_call(name, started, &out);
        Ok(out?)
    }

    /// Marks each cursor as awaiting the outcome of its step (`seq`, `attempt`), clearing the
    /// previous outcome: call it before publishing the steps. One script call per [`BATCH`]
    /// steps of one execution.
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

    /// Deletes every key under the prefix (tests and cleanup). Uses SCAN, so it is slow on a big keyspace: not for hot paths.
    /// The names of the activities created under this prefix (each has a queue of its own
    /// on the broker).
    pub async fn activity_names(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hkeys(self.keys.activities()).await?)
    }

    pub async fn delete_prefix(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        if conn.is_cluster() {
            // SCAN walks one node of a cluster: it would leave the others' keys behind.
            return Err(StoreError::Reply(
                "deleting a prefix by SCAN needs a single Redis, not a cluster".into(),
            ));
        }
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
        for key in [k.execution(arn), k.cursor(arn, "Map/1"), k.history(arn)] {
            assert!(
                key.starts_with("p:{arn:aws:states:local:0:execution:sm:e1}:"),
                "{key}"
            );
        }
        assert_eq!(k.timers(), "p:timers");
        assert_eq!(k.definition("abc"), "p:def:abc");
    }

    /// Against the Redis on 127.0.0.1 (as the integration tests): `await_steps` marks each
    /// cursor as awaiting exactly its step, and marking again clears the applied outcome.
    #[tokio::test]
    async fn await_steps_marks_each_cursor_and_clears_its_outcome() {
        let prefix = format!("mft-await-{}-{}", std::process::id(), crate::now_ms());
        let store = FleetStore::connect("redis://127.0.0.1:6379/", &prefix)
            .await
            .expect("redis on 127.0.0.1");
        let arn = "arn:aws:states:local:0:execution:sm:e1";
        store
            .await_steps(arn, &[("many/0", 4, 2), ("many/1", 7, 1)])
            .await
            .unwrap();
        let fields = |cursor: &'static str| {
            let (mut conn, key) = (store.conn(), store.keys().cursor(arn, cursor));
            async move {
                let f: std::collections::HashMap<String, String> = conn.hgetall(key).await.unwrap();
                f
            }
        };
        let first = fields("many/0").await;
        assert_eq!(first["seq"], "4");
        assert_eq!(first["attempt"], "2");
        assert_eq!(first["phase"], "awaiting");
        let _: () = store
            .conn()
            .hset_multiple(
                store.keys().cursor(arn, "many/1"),
                &[("phase", "applied"), ("outcome", "{}"), ("applied_ms", "1")],
            )
            .await
            .unwrap();
        store.await_steps(arn, &[("many/1", 8, 1)]).await.unwrap();
        let again = fields("many/1").await;
        assert!(!again.contains_key("outcome"), "{again:?}");
        assert!(!again.contains_key("applied_ms"), "{again:?}");
        assert_eq!(again["seq"], "8");
        assert_eq!(again["phase"], "awaiting");
        store.delete_prefix().await.unwrap();
    }
}
