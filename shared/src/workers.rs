//! Which resources the live workers serve: each worker keeps an entry in one Redis hash
//! (`P:workers`, worker id → `{"resources": [...], "until_ms": ...}`), renewed well before it
//! lapses. Coordinators read it to fail, rather than leave waiting, a step that no worker
//! serves.

use std::collections::HashSet;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
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
    conn: &mut ConnectionManager,
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
    conn: &mut ConnectionManager,
    prefix: &str,
    worker_id: &str,
) -> redis::RedisResult<()> {
    conn.hdel(workers_key(prefix), worker_id).await
}

/// Every resource some live worker serves. Lapsed entries are ignored (and removed).
pub async fn served(
    conn: &mut ConnectionManager,
    prefix: &str,
) -> redis::RedisResult<HashSet<String>> {
    let key = workers_key(prefix);
    let all: Vec<(String, String)> = conn.hgetall(&key).await?;
    let now = crate::now_ms();
    let mut out = HashSet::new();
    let mut lapsed = Vec::new();
    for (worker, text) in all {
        match serde_json::from_str::<Entry>(&text) {
            Ok(e) if e.until_ms > now => out.extend(e.resources),
            _ => lapsed.push(worker),
        }
    }
    if !lapsed.is_empty() {
        let _: () = conn.hdel(&key, lapsed).await?;
    }
    Ok(out)
}

/// Keeps a worker's entry fresh until the returned task is aborted; renews every `ttl / 3`.
pub fn keep_registered(
    mut conn: ConnectionManager,
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
