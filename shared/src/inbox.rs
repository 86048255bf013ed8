//! Handing step outcomes to the coordinators, atomically.
//!
//! An outcome is applied (only if its cursor awaits exactly that step id, as
//! [`crate::redis_schema::FleetStore::await_steps`] marked it) **and** appended to its execution's inbox in one
//! script. Two separate calls would leave a window where a coordinator that dies between them
//! has marked the outcome applied without queueing it: the redelivered outcome would then be
//! dropped as a duplicate and the step would never complete.
//!
//! The execution's ready flag (a member of the fleet's ready set, which is no execution's
//! key and so lives in another Redis Cluster slot) is set by a command of its own right
//! after the script, whenever the inbox holds anything then, even when every outcome was a
//! duplicate: a coordinator that died between the two leaves its outcomes unacked, and their
//! redelivery, a duplicate, sets the flag.

use std::sync::LazyLock;
use std::time::Instant;

use crate::redis_conn::RedisConn;
use redis::Script;

use crate::messages::StepId;
use crate::metrics;
use crate::redis_schema::{Applied, Keys, StoreError};

const APPLY_TO_INBOX: &str = r#"
-- KEYS[1] the execution's inbox (list), KEYS[2..] cursor hashes
-- ARGV[1] ttl seconds, ARGV[2] now ms,
-- then per cursor hash: seq, attempt, outcome, inbox entry
-- Returns a flag per cursor hash (1 applied), then the inbox's length.
local applied = {}
local pushed = 0
for i = 2, #KEYS do
  local j = 3 + (i - 2) * 4
  local cur = redis.call('HMGET', KEYS[i], 'seq', 'attempt', 'phase')
  if cur[1] == ARGV[j] and cur[2] == ARGV[j + 1] and cur[3] == 'awaiting' then
    redis.call('HSET', KEYS[i], 'phase', 'applied', 'outcome', ARGV[j + 2], 'applied_ms', ARGV[2])
    redis.call('EXPIRE', KEYS[i], ARGV[1])
    redis.call('RPUSH', KEYS[1], ARGV[j + 3])
    pushed = pushed + 1
    applied[i - 1] = 1
  else
    applied[i - 1] = 0
  end
end
if pushed > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
applied[#KEYS] = redis.call('LLEN', KEYS[1])
return applied
"#;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(APPLY_TO_INBOX));

/// One outcome to hand over: its step, the outcome as stored in the cursor hash, and the
/// entry to append to the execution's inbox.
pub struct Delivery<'a> {
    pub id: &'a StepId,
    pub outcome: &'a str,
    pub inbox_entry: &'a str,
}

/// Applies outcomes of **one execution** and queues the applied ones in its inbox (`inbox`)
/// in one script, then flags the execution in the ready set (`ready`) if its inbox holds
/// anything. Returns, in order, whether each was applied or dropped as a duplicate (stale,
/// late or redelivered).
pub async fn apply_to_inbox(
    conn: &mut RedisConn,
    keys: &Keys,
    ttl_secs: u64,
    inbox: &str,
    ready: &str,
    deliveries: &[Delivery<'_>],
) -> Result<Vec<Applied>, StoreError> {
    let Some(first) = deliveries.first() else {
        return Ok(Vec::new());
    };
    let arn = &first.id.execution;
    if deliveries.iter().any(|d| &d.id.execution != arn) {
        return Err(StoreError::Reply(
            "apply_to_inbox takes the outcomes of one execution".into(),
        ));
    }
    let mut inv = SCRIPT.prepare_invoke();
    inv.key(inbox).arg(ttl_secs.max(1)).arg(crate::now_ms());
    for d in deliveries {
        inv.key(keys.cursor(arn, &d.id.cursor))
            .arg(d.id.seq)
            .arg(d.id.attempt)
            .arg(d.outcome)
            .arg(d.inbox_entry);
    }
    let started = Instant::now();
    let flags = inv.invoke_async::<Vec<i64>>(conn).await;
    metrics::get()
        .fleet
        .script_call("apply_to_inbox", started, &flags);
    let mut flags = flags?;
    let queued = flags
        .pop()
        .ok_or_else(|| StoreError::Reply("no inbox length".into()))?;
    if flags.len() != deliveries.len() {
        return Err(StoreError::Reply(format!(
            "{} flags for {} outcomes",
            flags.len(),
            deliveries.len()
        )));
    }
    if queued > 0 {
        let _: () = redis::cmd("ZADD")
            .arg(ready)
            .arg("NX")
            .arg(crate::now_ms())
            .arg(arn)
            .query_async(conn)
            .await?;
    }
    Ok(flags
        .into_iter()
        .map(|f| {
            if f == 1 {
                Applied::Applied
            } else {
                metrics::get().outcome_duplicates.inc();
                Applied::Duplicate
            }
        })
        .collect())
}
