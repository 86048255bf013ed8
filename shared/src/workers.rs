//! Which resources the live workers serve: each worker keeps an entry in one Redis hash
//! (`P:workers`, worker id → `{"resources": [...], "until_ms": ...}`), renewed well before it
//! lapses. Coordinators read it to fail, rather than leave waiting, a step that no worker
//! serves. A lapsed entry is kept (ignored) for a while, so that workers which merely could
//! not renew during a Redis outage are told apart from no worker at all.

use std::collections::HashSet;
use std::time::Duration;

use crate::redis_conn::RedisConn;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// The hash of live workers under a prefix.
pub fn workers_key(prefix: &str) -> String {
    format!("{prefix}:workers")
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    resources: Vec<String>,
    until_ms: u64,
}

/// Records (or renews) a worker's resources, valid for `ttl`.
pub async fn register(
    conn: &mut RedisConn,
    prefix: &str,
    worker_id: &str,
    resources: &[String],
    ttl: Duration,
) -> redis::RedisResult<()> {
    let entry = Entry {
        resources: resources.to_vec(),
        until_ms: crate::now_ms() + ttl.as_millis() as u64,
    };
    let text = serde_json::to_string(&entry).expect("entries serialize");
    conn.hset(workers_key(prefix), worker_id, text).await
}

/// Removes a worker's entry (on a clean shutdown).
pub async fn unregister(
    conn: &mut RedisConn,
    prefix: &str,
    worker_id: &str,
) -> redis::RedisResult<()> {
    conn.hdel(workers_key(prefix), worker_id).await
}

/// How long a lapsed entry is kept (ignored, but telling): a worker that could not renew
/// while Redis was unreachable lapses with every other, and "its registration lapsed" is then
/// the truth where "no worker serves this" would raise a false alarm per step.
const LAPSED_KEPT_MS: u64 = 10 * 60 * 1000;

/// What the registry says about the resources.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Every resource some live worker serves.
    pub live: HashSet<String>,
    /// Resources of workers whose entries lapsed recently (they stopped renewing: the worker
    /// stopped, or could not reach Redis).
    pub lapsed: HashSet<String>,
}

/// The registry's view: live resources, and recently lapsed ones. Entries lapsed long ago,
/// or unreadable, are removed.
pub async fn registry(conn: &mut RedisConn, prefix: &str) -> redis::RedisResult<Registry> {
    let key = workers_key(prefix);
    let all: Vec<(String, String)> = conn.hgetall(&key).await?;
    let now = crate::now_ms();
    let mut out = Registry::default();
    let mut gone = Vec::new();
    for (worker, text) in all {
        match serde_json::from_str::<Entry>(&text) {
            Ok(e) if e.until_ms > now => out.live.extend(e.resources),
            Ok(e) if e.until_ms + LAPSED_KEPT_MS > now => out.lapsed.extend(e.resources),
            _ => gone.push(worker),
        }
    }
    if !gone.is_empty() {
        let _: () = conn.hdel(&key, gone).await?;
    }
    Ok(out)
}

/// How many workers are live, and how many of them serve each resource (for the
/// `mapfleet_workers_live` gauges). Reads only; lapsed entries are left to [`registry`].
pub async fn live_counts(
    conn: &mut RedisConn,
    prefix: &str,
) -> redis::RedisResult<(usize, std::collections::HashMap<String, usize>)> {
    let all: Vec<(String, String)> = conn.hgetall(workers_key(prefix)).await?;
    let now = crate::now_ms();
    let mut workers = 0;
    let mut per_resource = std::collections::HashMap::new();
    for (_, text) in all {
        if let Ok(e) = serde_json::from_str::<Entry>(&text)
            && e.until_ms > now
        {
            workers += 1;
            for r in e.resources {
                *per_resource.entry(r).or_insert(0) += 1;
            }
        }
    }
    Ok((workers, per_resource))
}

/// Every resource some live worker serves (lapsed entries are ignored).
pub async fn served(conn: &mut RedisConn, prefix: &str) -> redis::RedisResult<HashSet<String>> {
    Ok(registry(conn, prefix).await?.live)
}

/// Keeps a worker's entry fresh until the returned task is aborted; renews every `ttl / 3`.
pub fn keep_registered(
    mut conn: RedisConn,
    prefix: String,
    worker_id: String,
    resources: Vec<String>,
    ttl: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = register(&mut conn, &prefix, &worker_id, &resources, ttl).await {
                tracing::warn!(error = %e, "cannot register this worker's resources in Redis; retrying");
            }
            tokio::time::sleep(ttl / 3).await;
        }
    })
}
