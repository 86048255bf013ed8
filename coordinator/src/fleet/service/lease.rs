//! Fenced leases on executions, and the writes a lease holder makes outside its commit.
//!
//! A lease is a Redis string (`P:{ARN}:lease`, PX) whose value is a **fencing token**: the
//! coordinator's id and a number this process never hands out twice. Every acquisition gets
//! a new token, and every write that must come from the current holder (renew, release, the
//! commit, marking steps awaited, trimming the outbox) runs in a script that first checks
//! the token. A task that stalled past its lease (a broker stall blocking its publishing, a
//! long pause) therefore writes nothing once anyone, this same coordinator included, took
//! the execution again: with the coordinator id alone as the value, a coordinator that
//! re-acquired an execution its own stalled task still advanced had two tasks passing every
//! check, and both applied the same inbox events.
//!
//! Besides, a coordinator never starts a second task for an execution it is still
//! advancing ([`InFlight`]): the stalled task has to end first.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::Script;
use shared::redis_conn::RedisConn;

use super::super::keys::FleetKeys;

/// The lease expired (and perhaps someone else took it) before this write: the write did
/// not happen. Not a failure of the execution: its next holder carries on.
#[derive(Debug, thiserror::Error)]
#[error("lost the lease on execution {execution} before {what}; its next holder advances it")]
pub struct LeaseLost {
    pub execution: String,
    pub what: &'static str,
}

/// Hands out fencing tokens: `COORDINATOR-ID#N`, N counting up within the process. The id
/// carries a random part, so tokens of different processes never meet either.
pub struct Tokens {
    id: String,
    next: AtomicU64,
}

impl Tokens {
    pub fn new(id: &str) -> Tokens {
        Tokens {
            id: id.to_string(),
            next: AtomicU64::new(1),
        }
    }

    pub fn next(&self) -> String {
        format!("{}#{}", self.id, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// The executions this coordinator is advancing (one task each), so its ready loop never
/// starts a second task for one of them.
#[derive(Default, Clone)]
pub struct InFlight(Arc<Mutex<HashSet<String>>>);

/// Marks an execution as advanced here until dropped.
pub struct InFlightGuard {
    set: InFlight,
    arn: String,
}

impl InFlight {
    /// Marks `arn`, unless it is marked already.
    pub fn enter(&self, arn: &str) -> Option<InFlightGuard> {
        let mut set = self.0.lock().expect("in-flight lock");
        if !set.insert(arn.to_string()) {
            return None;
        }
        Some(InFlightGuard {
            set: self.clone(),
            arn: arn.to_string(),
        })
    }

    pub fn contains(&self, arn: &str) -> bool {
        self.0.lock().expect("in-flight lock").contains(arn)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.set.0.lock().expect("in-flight lock").remove(&self.arn);
    }
}

/// Releases a lease only if this token still holds it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Extends a lease only if this token still holds it.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

/// Marks cursors as awaiting their steps (exactly as `shared`'s `await_steps`), if this token
/// holds the lease and the outbox still starts with the entries being published (first and
/// last compared, as [`TRIM_OUTBOX`] does). A holder that lost its lease could otherwise mark
/// a cursor back to a step its successor has moved past, and a Redis that lost its last
/// writes may have lost the commit of these very steps: either way the outcome of the step
/// the cursor really waits for would then be dropped as stale. KEYS[1] the lease, KEYS[2]
/// the outbox, KEYS[3..] cursor hashes; ARGV: token, ttl seconds, entry count, first entry,
/// last entry, then (seq, attempt) per cursor.
const AWAIT_STEPS: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[3])
if redis.call('LINDEX', KEYS[2], 0) ~= ARGV[4] or redis.call('LINDEX', KEYS[2], n - 1) ~= ARGV[5] then
  return -2
end
for i = 3, #KEYS do
  redis.call('HSET', KEYS[i], 'seq', ARGV[2 * i], 'attempt', ARGV[2 * i + 1], 'phase', 'awaiting')
  redis.call('HDEL', KEYS[i], 'outcome', 'applied_ms')
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return #KEYS - 2
"#;

/// Removes the first ARGV[2] entries of the outbox once they are published, if this token
/// holds the lease and they are still the entries that were published (first and last
/// compared): a holder that lost its lease mid-publish must not trim what its successor
/// committed since (those steps would never be published). KEYS[1] the lease, KEYS[2] the
/// outbox; ARGV: token, count, first entry, last entry.
const TRIM_OUTBOX: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
if redis.call('LINDEX', KEYS[2], 0) ~= ARGV[3] or redis.call('LINDEX', KEYS[2], n - 1) ~= ARGV[4] then
  return -1
end
redis.call('LTRIM', KEYS[2], n, -1)
return 1
"#;

static SCRIPTS: LazyLock<[Script; 4]> = LazyLock::new(|| {
    [
        Script::new(RELEASE),
        Script::new(RENEW),
        Script::new(AWAIT_STEPS),
        Script::new(TRIM_OUTBOX),
    ]
});

/// Cursors per [`await_steps`] script call.
const AWAIT_CHUNK: usize = shared::redis_schema::BATCH;

/// Takes the lease on `arn` for `token` if nobody holds it.
pub async fn acquire(
    conn: &mut RedisConn,
    keys: &FleetKeys,
    arn: &str,
    token: &str,
    lease: Duration,
) -> redis::RedisResult<bool> {
    let set: Option<String> = redis::cmd("SET")
        .arg(keys.lease(arn))
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(lease.as_millis() as u64)
        .query_async(conn)
        .await?;
    Ok(set.is_some())
}

/// Extends the lease; false if `token` no longer holds it.
pub async fn renew(
    conn: &mut RedisConn,
    keys: &FleetKeys,
    arn: &str,
    token: &str,
    lease: Duration,
) -> redis::RedisResult<bool> {
    let n: i64 = SCRIPTS[1]
        .key(keys.lease(arn))
        .arg(token)
        .arg(lease.as_millis() as u64)
        .invoke_async(conn)
        .await?;
    Ok(n == 1)
}

/// Gives the lease up, if `token` still holds it.
pub async fn release(
    conn: &mut RedisConn,
    keys: &FleetKeys,
    arn: &str,
    token: &str,
) -> redis::RedisResult<()> {
    let _: i64 = SCRIPTS[0]
        .key(keys.lease(arn))
        .arg(token)
        .invoke_async(conn)
        .await?;
    Ok(())
}

/// Marks the cursors of `steps` (cursor, seq, attempt) as awaiting them, under the lease
/// and only while the outbox starts with `published` (the entries `steps` come from).
/// False (nothing marked) if the outbox changed: the steps must not be published.
pub async fn await_steps(
    conn: &mut RedisConn,
    keys: &FleetKeys,
    arn: &str,
    token: &str,
    ttl: Duration,
    published: &[String],
    steps: &[(&str, u64, u32)],
) -> Result<bool, super::Error> {
    let (Some(first), Some(last)) = (published.first(), published.last()) else {
        return Ok(true);
    };
    for chunk in steps.chunks(AWAIT_CHUNK) {
        let mut inv = SCRIPTS[2].prepare_invoke();
        inv.key(keys.lease(arn))
            .key(keys.outbox(arn))
            .arg(token)
            .arg(ttl.as_secs().max(1))
            .arg(published.len())
            .arg(first)
            .arg(last);
        for (cursor, seq, attempt) in chunk {
            inv.key(keys.shared.cursor(arn, cursor))
                .arg(*seq)
                .arg(*attempt);
        }
        let n: i64 = inv
            .invoke_async(conn)
            .await
            .map_err(|source| super::Error::Redis {
                doing: format!("mark the steps of execution {arn} awaited"),
                source,
            })?;
        match n {
            -1 => {
                return Err(LeaseLost {
                    execution: arn.to_string(),
                    what: "publishing its steps",
                }
                .into());
            }
            -2 => return Ok(false),
            _ => {}
        }
    }
    Ok(true)
}

/// What [`trim_outbox`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Trimmed {
    Yes,
    /// The lease is gone: the entries stay for the next holder (who publishes them again:
    /// harmless, outcomes are applied once).
    LeaseLost,
    /// The outbox no longer starts with what was published (Redis lost writes, see the
    /// durability notes in `docs/ARCHITECTURE.md`): left as it is, to be published again.
    Changed,
}

/// Trims the `published` entries from the head of the outbox, under the lease.
pub async fn trim_outbox(
    conn: &mut RedisConn,
    keys: &FleetKeys,
    arn: &str,
    token: &str,
    published: &[String],
) -> redis::RedisResult<Trimmed> {
    let (Some(first), Some(last)) = (published.first(), published.last()) else {
        return Ok(Trimmed::Yes);
    };
    let n: i64 = SCRIPTS[3]
        .key(keys.lease(arn))
        .key(keys.outbox(arn))
        .arg(token)
        .arg(published.len())
        .arg(first)
        .arg(last)
        .invoke_async(conn)
        .await?;
    Ok(match n {
        1 => Trimmed::Yes,
        0 => Trimmed::LeaseLost,
        _ => Trimmed::Changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::AsyncCommands;

    #[test]
    fn tokens_are_never_handed_out_twice() {
        let t = Tokens::new("c-1");
        let (a, b) = (t.next(), t.next());
        assert_ne!(a, b);
        assert!(a.starts_with("c-1#"));
    }

    #[test]
    fn an_execution_is_in_flight_once() {
        let set = InFlight::default();
        let guard = set.enter("e").expect("first");
        assert!(set.enter("e").is_none());
        assert!(set.contains("e"));
        drop(guard);
        assert!(!set.contains("e"));
        assert!(set.enter("e").is_some());
    }

    /// Against the Redis on 127.0.0.1 (as the other fleet tests): a second acquisition's
    /// token fences the first one's renew, release, await and trim.
    #[tokio::test]
    async fn a_stale_token_writes_nothing() {
        let mut conn = shared::redis_schema::connect("redis://127.0.0.1:6379/")
            .await
            .expect("redis on 127.0.0.1");
        let keys = FleetKeys::new(&shared::testkit::unique_prefix("mft-lease"));
        let arn = "arn:aws:states:local:000000000000:execution:sm:e";
        let tokens = Tokens::new("c");
        let lease = Duration::from_millis(200);
        let old = tokens.next();
        assert!(acquire(&mut conn, &keys, arn, &old, lease).await.unwrap());
        let _: () = conn.rpush(keys.outbox(arn), &["s1", "s2"]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let new = tokens.next();
        assert!(
            acquire(&mut conn, &keys, arn, &new, Duration::from_secs(5))
                .await
                .unwrap()
        );
        // The successor published s1, s2 and committed s3.
        let _: () = conn.rpush(keys.outbox(arn), &["s3"]).await.unwrap();
        let published = vec!["s1".to_string(), "s2".to_string()];
        assert!(!renew(&mut conn, &keys, arn, &old, lease).await.unwrap());
        assert_eq!(
            trim_outbox(&mut conn, &keys, arn, &old, &published)
                .await
                .unwrap(),
            Trimmed::LeaseLost
        );
        let err = await_steps(
            &mut conn,
            &keys,
            arn,
            &old,
            lease,
            &published,
            &[("c", 1, 1)],
        )
        .await
        .unwrap_err();
        assert!(matches!(err, super::super::Error::LeaseLost(_)), "{err}");
        release(&mut conn, &keys, arn, &old).await.unwrap();
        assert!(renew(&mut conn, &keys, arn, &new, lease).await.unwrap());
        assert_eq!(
            trim_outbox(&mut conn, &keys, arn, &new, &published)
                .await
                .unwrap(),
            Trimmed::Yes
        );
        let left: Vec<String> = conn.lrange(keys.outbox(arn), 0, -1).await.unwrap();
        assert_eq!(left, ["s3"]);
        // Entries that are not the published ones are never trimmed.
        assert_eq!(
            trim_outbox(&mut conn, &keys, arn, &new, &published)
                .await
                .unwrap(),
            Trimmed::Changed
        );
        // The holder marks the steps of what the outbox holds awaited, and no others.
        let cursor = keys.shared.cursor(arn, "c");
        let s3 = vec!["s3".to_string()];
        assert!(
            !await_steps(
                &mut conn,
                &keys,
                arn,
                &new,
                lease,
                &published,
                &[("c", 1, 1)]
            )
            .await
            .unwrap()
        );
        assert!(
            await_steps(&mut conn, &keys, arn, &new, lease, &s3, &[("c", 2, 1)])
                .await
                .unwrap()
        );
        let (seq, phase): (String, String) = redis::cmd("HMGET")
            .arg(&cursor)
            .arg(&["seq", "phase"])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!((seq.as_str(), phase.as_str()), ("2", "awaiting"));
        release(&mut conn, &keys, arn, &new).await.unwrap();
        let held: Option<String> = conn.get(keys.lease(arn)).await.unwrap();
        assert!(held.is_none());
        let _: () = conn
            .del(&[keys.outbox(arn), cursor, keys.lease(arn)])
            .await
            .unwrap();
    }
}
