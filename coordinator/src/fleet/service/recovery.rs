//! Putting back what a restarted Redis lost.
//!
//! With `appendfsync everysec` (Redis's default with AOF), a Redis that dies loses the
//! writes of up to its last second or two. Most of the fleet's writes then simply never
//! happened, and the state Redis comes back with is consistent (every script is written to
//! the AOF as one `MULTI`, and a truncated one is dropped whole): a lost commit's inbox
//! events are still in the inbox, a lost outbox trim publishes its steps again (their
//! outcomes are applied once), a lost timer claim fires again. What does not heal itself is
//! an outcome this coordinator applied and then **acked to the broker**: the broker forgot
//! it, Redis forgot it, and its step's cursor waits for it until the re-drive
//! (`--redrive-after-secs`, 10 minutes by default).
//!
//! So a coordinator keeps the outcomes it applied (and the timers it claimed) in a journal
//! in memory until Redis has surely written them to disk, watches Redis's `run_id` (new on
//! every start), and when it changes, applies the journal's outcomes again with the same
//! exactly-once script: an outcome Redis kept is a duplicate and changes nothing, a lost
//! one is applied and queued as it was the first time. Timers it claimed that are still
//! claimed are made due at once. The journal outlives a coordinator restarted by
//! supervision (see [`super::Coordinator::serve`]), since a Redis outage is what restarts
//! it. A coordinator killed together with Redis takes its journal with it: its lost
//! outcomes come back by the re-drive.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::inbox::{Delivery, apply_to_inbox};
use shared::messages::StepId;

use super::*;

/// How long after its write an entry is kept once Redis answered since: well over the
/// second `appendfsync everysec` may lose (and the 2 s an fsync may lag before Redis blocks
/// writes).
const DURABLE_AFTER: Duration = Duration::from_secs(5);

/// Entries kept at most; past it the oldest go (with a warning at recovery).
const MAX_ENTRIES: usize = 200_000;

/// How often Redis's `run_id` is read.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// An outcome applied (and acked), or a timer claimed, recently.
enum Entry {
    Outcome {
        id: StepId,
        outcome: String,
        inbox_entry: String,
    },
    Timer {
        member: String,
        lease_until_ms: u64,
    },
}

#[derive(Default)]
struct Journal {
    entries: VecDeque<(Instant, Entry)>,
    /// Entries dropped for [`MAX_ENTRIES`] since the last recovery.
    dropped: usize,
}

/// Shared by the coordinators one process runs in turn (see the module docs).
#[derive(Default)]
pub struct Recovery {
    run_id: Mutex<Option<String>>,
    journal: Mutex<Journal>,
}

/// What a read of Redis's `run_id` showed.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    First,
    Same,
    Restarted,
}

impl Recovery {
    fn push(&self, entries: impl IntoIterator<Item = Entry>) {
        let now = Instant::now();
        let mut j = self.journal.lock().expect("journal lock");
        for e in entries {
            j.entries.push_back((now, e));
        }
        while j.entries.len() > MAX_ENTRIES {
            j.entries.pop_front();
            j.dropped += 1;
        }
    }

    /// Notes outcomes applied by [`apply_to_inbox`]: (step, outcome, inbox entry).
    pub fn outcomes_applied<'a>(&self, applied: impl IntoIterator<Item = &'a Delivery<'a>>) {
        self.push(applied.into_iter().map(|d| Entry::Outcome {
            id: d.id.clone(),
            outcome: d.outcome.to_string(),
            inbox_entry: d.inbox_entry.to_string(),
        }));
    }

    /// Notes a timer claimed until `lease_until_ms`.
    pub fn timer_claimed(&self, member: &str, lease_until_ms: u64) {
        self.push([Entry::Timer {
            member: member.to_string(),
            lease_until_ms,
        }]);
    }

    fn see(&self, run_id: &str) -> Seen {
        let mut known = self.run_id.lock().expect("run id lock");
        let seen = match known.as_deref() {
            None => Seen::First,
            Some(k) if k == run_id => Seen::Same,
            Some(_) => Seen::Restarted,
        };
        *known = Some(run_id.to_string());
        seen
    }

    /// Redis answered just now with the same run: what was written [`DURABLE_AFTER`] ago
    /// is on its disk.
    fn forget_durable(&self) {
        let Some(horizon) = Instant::now().checked_sub(DURABLE_AFTER) else {
            return;
        };
        let mut j = self.journal.lock().expect("journal lock");
        while j.entries.front().is_some_and(|(at, _)| *at < horizon) {
            j.entries.pop_front();
        }
    }

    /// The outcomes (by execution, in order) and timer claims of the journal, and how many
    /// entries were dropped for room.
    #[allow(clippy::type_complexity)]
    fn snapshot(
        &self,
    ) -> (
        Vec<(String, Vec<(StepId, String, String)>)>,
        Vec<(String, u64)>,
        usize,
    ) {
        let mut j = self.journal.lock().expect("journal lock");
        let mut outcomes: Vec<(String, Vec<(StepId, String, String)>)> = Vec::new();
        let mut timers = Vec::new();
        for (_, e) in &j.entries {
            match e {
                Entry::Outcome {
                    id,
                    outcome,
                    inbox_entry,
                } => {
                    let item = (id.clone(), outcome.clone(), inbox_entry.clone());
                    match outcomes.iter_mut().find(|(arn, _)| *arn == id.execution) {
                        Some((_, list)) => list.push(item),
                        None => outcomes.push((id.execution.clone(), vec![item])),
                    }
                }
                Entry::Timer {
                    member,
                    lease_until_ms,
                } => timers.push((member.clone(), *lease_until_ms)),
            }
        }
        (outcomes, timers, std::mem::take(&mut j.dropped))
    }
}

/// Makes a claimed timer due now, if it is still claimed with that lease (its firing was
/// lost with Redis's last writes, or not: firing twice is harmless, as after a coordinator
/// killed between firing and completing it). KEYS[1] timers; ARGV: member, lease end, now.
const REFIRE: &str = r#"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"#;

/// Redis's `run_id` (`INFO server`): new every time Redis starts. On a cluster, every
/// primary's, sorted and joined: any of them restarting (or a replica taking over) changes
/// it. None while Redis cannot be reached.
async fn run_id(conn: &mut RedisConn) -> Option<String> {
    let infos = conn.info("server").await.ok()?;
    let mut ids: Vec<String> = infos
        .iter()
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("run_id:"))
                .map(|s| s.trim().to_string())
        })
        .collect();
    if ids.is_empty() {
        return None;
    }
    ids.sort_unstable();
    Some(ids.join(","))
}

impl Coordinator {
    /// Watches Redis's `run_id`; when Redis restarted, puts back what this process applied
    /// recently (see the module docs).
    pub(super) async fn watch_redis(self: Arc<Self>) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        // A recovery that failed (Redis went away again) is retried on the next tick.
        let mut pending = false;
        loop {
            if let Some(id) = run_id(&mut conn).await {
                match self.recovery.see(&id) {
                    Seen::Restarted => {
                        tracing::warn!(run_id = %id, "Redis restarted: applying again the outcomes this coordinator applied in its last seconds, in case Redis lost them");
                        pending = true;
                    }
                    Seen::Same if !pending => self.recovery.forget_durable(),
                    _ => {}
                }
                if pending {
                    match self.recover_lost_writes().await {
                        Ok(()) => pending = false,
                        Err(e) => {
                            tracing::warn!(error = %Chain(&e), "cannot put back what Redis may have lost yet, retrying")
                        }
                    }
                }
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    }

    async fn recover_lost_writes(&self) -> Result<(), Error> {
        // Cursors kept from before may be newer than what Redis holds now.
        self.cursor_cache.lock().expect("cursor cache lock").clear();
        let (outcomes, timers, dropped) = self.recovery.snapshot();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "the journal of recent outcomes overflowed: outcomes Redis lost among those come back by the re-drive"
            );
        }
        let ttl = self.opts.ttl.as_secs();
        let ready = self.keys.ready();
        let (mut applied, mut total) = (0usize, 0usize);
        for (arn, list) in &outcomes {
            let inbox = self.keys.inbox(arn);
            let deliveries: Vec<Delivery<'_>> = list
                .iter()
                .map(|(id, outcome, entry)| Delivery {
                    id,
                    outcome,
                    inbox_entry: entry,
                })
                .collect();
            for chunk in deliveries.chunks(shared::redis_schema::BATCH) {
                let mut conn = self.conn.clone();
                let flags =
                    apply_to_inbox(&mut conn, &self.keys.shared, ttl, &inbox, &ready, chunk)
                        .await
                        .doing(|| format!("apply again the outcomes of execution {arn}"))?;
                total += flags.len();
                applied += flags.iter().filter(|f| **f == Applied::Applied).count();
            }
        }
        let mut refired = 0;
        let now = Utc::now().timestamp_millis().max(0) as u64;
        let script = redis::Script::new(REFIRE);
        for (member, lease_until) in &timers {
            let mut conn = self.conn.clone();
            let n: i64 = script
                .key(self.keys.shared.timers())
                .arg(member)
                .arg(*lease_until)
                .arg(now)
                .invoke_async(&mut conn)
                .await
                .doing(|| format!("fire timer {member} again"))?;
            refired += n as usize;
        }
        if applied > 0 || refired > 0 {
            tracing::warn!(
                outcomes = total,
                lost_outcomes = applied,
                timers = timers.len(),
                refired_timers = refired,
                "put back outcomes and timer firings Redis had lost"
            );
        } else {
            tracing::info!(
                outcomes = total,
                timers = timers.len(),
                "Redis restarted without losing this coordinator's recent outcomes"
            );
        }
        if applied > 0 {
            self.wake.notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_id_is_a_restart() {
        let r = Recovery::default();
        assert_eq!(r.see("a"), Seen::First);
        assert_eq!(r.see("a"), Seen::Same);
        assert_eq!(r.see("b"), Seen::Restarted);
        assert_eq!(r.see("b"), Seen::Same);
    }

    #[test]
    fn the_journal_keeps_recent_entries_in_order() {
        let r = Recovery::default();
        let id = |seq| StepId {
            execution: "e".into(),
            cursor: "c".into(),
            seq,
            attempt: 1,
        };
        let (a, b) = (id(1), id(2));
        let ds = [
            Delivery {
                id: &a,
                outcome: "o1",
                inbox_entry: "i1",
            },
            Delivery {
                id: &b,
                outcome: "o2",
                inbox_entry: "i2",
            },
        ];
        r.outcomes_applied(ds.iter());
        r.timer_claimed("T|e|1|c", 9);
        r.forget_durable(); // all of it is recent
        let (outcomes, timers, dropped) = r.snapshot();
        assert_eq!(outcomes.len(), 1);
        let seqs: Vec<u64> = outcomes[0].1.iter().map(|(id, _, _)| id.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(timers, [("T|e|1|c".to_string(), 9)]);
        assert_eq!(dropped, 0);
    }
}
