//! [`RedisBackend`]: the [`Backend`] of the fleet. Reads go to Redis; writes are buffered and
//! committed in one `MULTI` with the cursors and the consumed inbox entries, so a batch of
//! processing either happens completely or not at all.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde_json::Value;
use shared::redis_conn::RedisConn;

use super::keys::FleetKeys;
use super::maprun::{MapRunStore, RunState};
use super::outbox::OutboxStep;
use super::record::field;
use super::{stored, timer_member};
use crate::asl::error::StatesError;
use crate::driver::{Backend, BackendError, Changes, PlanSource, StepRequest};
use crate::engine::cursor::{Cursor, CursorId, Phase};
use crate::engine::history::{Event, EventType};
use crate::maprun::MapRunPlan;

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

/// A child-output field: JSON text, or this marker for a child that failed.
const FAILED: &str = "!failed";

/// Buffered writes of one batch.
#[derive(Default)]
pub struct Pending {
    items: HashMap<CursorId, Vec<Value>>,
    results: HashMap<CursorId, HashMap<usize, Option<Value>>>,
    live_add: HashMap<CursorId, HashSet<CursorId>>,
    live_remove: HashMap<CursorId, HashSet<CursorId>>,
    /// Parents whose items, results, live sets and map runs are deleted before the writes
    /// above.
    pub(super) dropped: HashSet<CursorId>,
    pub steps: Vec<StepRequest>,
    pub timers: Vec<(String, i64)>,
    pub history: Vec<Event>,
    /// Children of the root's Map or Parallel that succeeded in this batch (the `done` bits).
    pub(super) done: Vec<usize>,
    /// The root's children were dropped after a failure: what to keep for a redrive (the
    /// `done` bits and results of this batch not written yet).
    pub(super) keep: Option<super::redrive::Keep>,
    /// Steps whose outcome this batch consumed (cursor, seq): their re-drive and timeout
    /// timers are removed with the commit, instead of waiting out `--redrive-after-secs` in
    /// the fleet's timers (one per step a Map ran in the last ten minutes otherwise).
    pub(super) settled: Vec<(CursorId, u64)>,
}

/// The fleet's backend for one batch of one execution.
pub struct RedisBackend {
    pub conn: RedisConn,
    pub keys: FleetKeys,
    pub arn: String,
    /// Re-drive a step whose outcome has not arrived after this long (0: never).
    pub redrive_after_ms: i64,
    pub pending: Pending,
    /// Reads done ahead of need; valid for the whole batch, because nothing else writes an
    /// execution's keys while its lease is held and this batch's writes are buffered.
    read: ReadCache,
    /// Cursors known to be what Redis holds (the coordinator's cache from its previous
    /// batch); taken by [`Backend::load_cursor`].
    pub parsed: HashMap<CursorId, Cursor>,
    /// Cursor id → the run whose values Redis keeps apart for it ([`super::stored`]), for
    /// the cursors known to have them: they are not written again, and are deleted when
    /// the cursor leaves its children phases or is removed. Every cursor is loaded before
    /// it changes, and loading notes its run, so none is missed.
    pub split_runs: HashMap<CursorId, u64>,
    /// The object store and readers of map runs ([`super::maprun`]).
    pub map_runs: MapRunStore,
    /// The map runs this batch read or changed, by Map cursor (None: it has none).
    pub(super) runs: HashMap<CursorId, Option<RunState>>,
    /// Map runs' DescribeMapRun facts to store, by map run ARN (a run's start and end).
    pub(super) run_summaries: Vec<(String, String)>,
    /// The lease this batch runs under (token, length), renewed during long reads.
    pub lease: Option<(String, std::time::Duration)>,
}

/// Items read ahead of [`Backend::items`]: a Map starts its next iterations one or a few at a
/// time as earlier ones finish, so one `HMGET` serves many calls.
const ITEMS_READ_AHEAD: usize = 1024;

/// What a batch read from Redis ahead of need (see [`RedisBackend::prefetch`]).
#[derive(Default)]
struct ReadCache {
    /// Cursor id → its stored JSON (None: not stored).
    cursors: HashMap<CursorId, Option<String>>,
    /// (parent, index) → whether the child's result is stored.
    results: HashMap<(CursorId, usize), bool>,
    /// Map → index → stored item (JSON).
    items: HashMap<CursorId, HashMap<usize, String>>,
}

impl RedisBackend {
    /// Notes that this batch consumed the outcome of step `seq` of `cursor` (see
    /// [`Pending::settled`]).
    pub fn settled(&mut self, cursor: &str, seq: u64) {
        self.pending.settled.push((cursor.to_string(), seq));
    }

    pub fn new(
        conn: RedisConn,
        keys: FleetKeys,
        arn: String,
        redrive_after_ms: i64,
    ) -> RedisBackend {
        RedisBackend {
            conn,
            keys,
            arn,
            redrive_after_ms,
            pending: Pending::default(),
            read: ReadCache::default(),
            parsed: HashMap::new(),
            split_runs: HashMap::new(),
            map_runs: MapRunStore::default(),
            runs: HashMap::new(),
            run_summaries: Vec::new(),
            lease: None,
        }
    }

    /// Reads ahead what processing events for `cursors` will read: the cursors, their
    /// parents, and whether each child's result is stored already. Two round trips in all
    /// instead of a few per event; later reads of the same things come from memory.
    pub async fn prefetch(&mut self, cursors: &[&str]) -> Result<(), BackendError> {
        let key = self.keys.cursors(&self.arn);
        let mut wanted: Vec<&str> = cursors
            .iter()
            .copied()
            .filter(|c| !self.read.cursors.contains_key(*c) && !self.parsed.contains_key(*c))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut links: Vec<(CursorId, usize)> = cursors
            .iter()
            .filter_map(|c| {
                self.parsed
                    .get(*c)?
                    .parent
                    .as_ref()
                    .map(|l| (l.id.clone(), l.index))
            })
            .collect();
        let texts: Vec<Option<String>> = if wanted.is_empty() {
            Vec::new()
        } else {
            redis::cmd("HMGET")
                .arg(&key)
                .arg(&wanted)
                .query_async(&mut self.conn)
                .await
                .map_err(err)?
        };
        for (id, text) in wanted.iter().zip(texts) {
            // Parsed once here (for the parent link) and handed to `load_cursor` as is; an
            // unreadable one stays text, for `load_cursor` to report.
            if let Some(t) = &text
                && let Ok(c) = serde_json::from_str::<Cursor>(t)
            {
                if let Some(link) = &c.parent {
                    links.push((link.id.clone(), link.index));
                }
                self.parsed.insert(id.to_string(), c);
                continue;
            }
            self.read.cursors.insert(id.to_string(), text);
        }
        let mut parents: Vec<&str> = links
            .iter()
            .map(|(p, _)| p.as_str())
            .filter(|p| !self.read.cursors.contains_key(*p) && !self.parsed.contains_key(*p))
            .collect();
        parents.sort_unstable();
        parents.dedup();
        let checks: Vec<&(CursorId, usize)> = links
            .iter()
            .filter(|l| !self.read.results.contains_key(*l))
            .collect();
        if parents.is_empty() && checks.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        if !parents.is_empty() {
            pipe.cmd("HMGET").arg(&key).arg(&parents);
        }
        for (parent, index) in &checks {
            pipe.cmd("HEXISTS")
                .arg(self.keys.results(&self.arn, parent))
                .arg(*index);
        }
        let mut replies: Vec<redis::Value> = pipe.query_async(&mut self.conn).await.map_err(err)?;
        if replies.len() != usize::from(!parents.is_empty()) + checks.len() {
            return Err(err("unexpected reply count while reading ahead"));
        }
        let exists = replies.split_off(usize::from(!parents.is_empty()));
        if let Some(parent_texts) = replies.pop() {
            let parent_texts: Vec<Option<String>> =
                redis::from_redis_value(parent_texts).map_err(err)?;
            for (id, text) in parents.iter().zip(parent_texts) {
                self.read.cursors.insert(id.to_string(), text);
            }
        }
        for (link, exists) in checks.into_iter().zip(exists) {
            let exists: bool = redis::from_redis_value(exists).map_err(err)?;
            self.read.results.insert(link.clone(), exists);
        }
        Ok(())
    }

    /// Adds this batch's writes to `pipe` (run atomically by the caller), in an order where a
    /// parent dropped and refilled in the same batch ends up refilled.
    pub fn write_into(&mut self, pipe: &mut Commit, changes: &mut Changes, ttl_secs: i64) {
        let arn = self.arn.clone();
        let p = std::mem::take(&mut self.pending);
        if let Some((entered, done, results)) = &p.keep {
            self.write_keep(pipe, *entered, done, results, ttl_secs);
        }
        for parent in &p.dropped {
            pipe.del(&self.keys.done(&arn, parent));
            pipe.del(&self.keys.items(&arn, parent));
            pipe.del(&self.keys.results(&arn, parent));
            pipe.del(&self.keys.live(&arn, parent));
            pipe.del(&self.keys.map_run(&arn, parent));
            pipe.del(&self.keys.run_records(&arn, parent, 'S'));
            pipe.del(&self.keys.run_records(&arn, parent, 'F'));
        }
        self.write_runs(pipe, ttl_secs);
        if !p.done.is_empty() {
            let key = self.keys.done(&arn, "");
            for i in &p.done {
                pipe.setbit(&key, *i);
            }
            pipe.expire(&key, ttl_secs);
        }
        for (parent, items) in &p.items {
            let key = self.keys.items(&arn, parent);
            for chunk in items.iter().enumerate().collect::<Vec<_>>().chunks(500) {
                let pairs: Vec<(usize, String)> =
                    chunk.iter().map(|(i, v)| (*i, v.to_string())).collect();
                pipe.hset_multiple(&key, &pairs);
            }
            pipe.expire(&key, ttl_secs);
        }
        for (parent, results) in &p.results {
            let key = self.keys.results(&arn, parent);
            let pairs: Vec<(usize, String)> = results
                .iter()
                .map(|(i, v)| {
                    (
                        *i,
                        v.as_ref()
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| FAILED.to_string()),
                    )
                })
                .collect();
            if !pairs.is_empty() {
                pipe.hset_multiple(&key, &pairs);
                pipe.expire(&key, ttl_secs);
            }
        }
        for (parent, children) in &p.live_add {
            let key = self.keys.live(&arn, parent);
            let members: Vec<&String> = children.iter().collect();
            if !members.is_empty() {
                pipe.sadd(&key, &members);
                pipe.expire(&key, ttl_secs);
            }
        }
        for (parent, children) in &p.live_remove {
            let members: Vec<&String> = children.iter().collect();
            if !members.is_empty() {
                pipe.srem(&self.keys.live(&arn, parent), &members);
            }
        }
        let cursors_key = self.keys.cursors(&arn);
        let blobs_key = self.keys.blobs(&arn);
        let mut blobs = Vec::new();
        let mut stale_blobs = Vec::new();
        if !changes.changed.is_empty() {
            let mut pairs: Vec<(String, String)> = Vec::with_capacity(changes.changed.len());
            for c in changes.changed.iter_mut() {
                let known = self.split_runs.get(&c.id).copied();
                let e = stored::encode(c, known);
                match e.run {
                    Some(run) => {
                        self.split_runs.insert(c.id.clone(), run);
                    }
                    None if known.is_some() => {
                        self.split_runs.remove(&c.id);
                        stale_blobs.push(c.id.clone());
                    }
                    None => {}
                }
                if let Some(blob) = e.blob {
                    blobs.push((c.id.clone(), blob));
                }
                pairs.push((c.id.clone(), e.entry));
            }
            pipe.hset_multiple(&cursors_key, &pairs);
        }
        if !changes.removed.is_empty() {
            pipe.hdel(&cursors_key, &changes.removed);
            // A removed cursor's step record goes with it (`shared`'s per-cursor hash): a
            // finished child leaves nothing of its own behind, so a million-child Map's
            // Redis holds its running children only. An outcome that comes for it later
            // finds no step awaited and is dropped as stale, as for any moved-on cursor.
            let step_records: Vec<String> = changes
                .removed
                .iter()
                .map(|id| self.keys.shared.cursor(&arn, id))
                .collect();
            pipe.del_many(&step_records);
            stale_blobs.extend(
                changes
                    .removed
                    .iter()
                    .filter(|id| self.split_runs.remove(*id).is_some())
                    .cloned(),
            );
        }
        if !blobs.is_empty() {
            pipe.hset_multiple(&blobs_key, &blobs);
        }
        if !stale_blobs.is_empty() {
            pipe.hdel(&blobs_key, &stale_blobs);
        }
        pipe.expire(&cursors_key, ttl_secs);
        pipe.expire(&blobs_key, ttl_secs);
        if !p.history.is_empty() {
            let key = self.keys.history(&arn);
            let events: Vec<String> = p
                .history
                .iter()
                .map(|e| serde_json::to_string(e).expect("events serialize"))
                .collect();
            pipe.rpush(&key, &events);
            pipe.expire(&key, ttl_secs);
            let (mut started, mut succeeded, mut failed) = (0i64, 0i64, 0i64);
            for e in &p.history {
                match e.event_type {
                    EventType::MapIterationStarted => started += 1,
                    EventType::MapIterationSucceeded => succeeded += 1,
                    EventType::MapIterationFailed | EventType::MapIterationAborted => failed += 1,
                    _ => {}
                }
            }
            // This process's share of the fleet's iterations in flight (sum it over processes).
            shared::metrics::get()
                .iterations_in_flight
                .add(started - succeeded - failed);
            let exec = self.keys.exec(&arn);
            for (field, n) in [
                (field::ITEMS_STARTED, started),
                (field::ITEMS_SUCCEEDED, succeeded),
                (field::ITEMS_FAILED, failed),
            ] {
                if n > 0 {
                    pipe.hincr(&exec, field, n);
                }
            }
        }
        let timers = self.keys.shared.timers();
        for (member, due) in &p.timers {
            pipe.zadd_timer(&timers, member, *due);
        }
        // A `.waitForTaskToken` step's token is kept with the step, in the same commit: the
        // token is answerable exactly when the step (and the TaskScheduled showing it) is.
        let callbacks: Vec<(String, String)> = p
            .steps
            .iter()
            .filter_map(|s| super::activities::callback_record(&arn, s))
            .flatten()
            .collect();
        if !callbacks.is_empty() {
            let tokens = super::activities::tokens_key(&self.keys, &arn);
            pipe.hset_multiple(&tokens, &callbacks);
            pipe.expire(&tokens, ttl_secs);
        }
        if !p.steps.is_empty() {
            let outbox = self.keys.outbox(&arn);
            let steps: Vec<String> = p
                .steps
                .iter()
                .map(|s| OutboxStep::new(&arn, s).encode())
                .collect();
            pipe.rpush(&outbox, &steps);
            pipe.expire(&outbox, ttl_secs);
            if self.redrive_after_ms > 0 {
                let due = Utc::now().timestamp_millis() + self.redrive_after_ms;
                for s in &p.steps {
                    pipe.zadd_timer(&timers, &timer_member('R', &arn, &s.cursor, s.seq), due);
                }
            }
        }
        // After the additions: a step re-driven in the batch that also took its outcome
        // needs no timer either. A `.waitForTaskToken` step whose integration returned still
        // waits for its token: its deadline timer stays.
        let waiting_for_token: HashSet<(&str, u64)> = changes
            .changed
            .iter()
            .filter(|c| matches!(&c.phase, Phase::Task(w) if w.callback))
            .map(|c| (c.id.as_str(), c.seq))
            .collect();
        for (cursor, seq) in &p.settled {
            for kind in ['R', 'T'] {
                if kind == 'T' && waiting_for_token.contains(&(cursor.as_str(), *seq)) {
                    continue;
                }
                pipe.zrem_timer(&timers, &timer_member(kind, &arn, cursor, *seq));
            }
        }
    }
}

/// The commands of one commit, run by one script that first checks that the committing
/// coordinator still holds the execution's lease (its fencing token): a coordinator that
/// stalled past its lease (and whose execution another one took over) can never write a
/// stale batch. With [`Commit::expect_commits`] it also checks that the execution is still
/// at the commit the batch was read at: a Redis that lost its last writes (see "Redis
/// durability" in `docs/ARCHITECTURE.md`) may have gone back under a holder whose lease
/// survived, and a batch computed on the lost state must not land on the older one.
///
/// The timers are the fleet's, not the execution's, and on a Redis Cluster live in another
/// slot: there they are written just before the script, by a command of their own. A
/// commit that then does not happen leaves timers nobody committed; each names its
/// cursor's step (`seq`), and the engine ignores a timer for a step its cursor is not at.
#[derive(Default)]
pub struct Commit {
    cmds: Vec<Vec<String>>,
    /// `ZADD` and `ZREM` commands on the fleet's timers.
    timers: Vec<Vec<String>>,
    /// The execution hash and the `commits` it must hold.
    expected: Option<(String, u64)>,
}

/// What [`Commit::run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Yes,
    /// The token does not hold the lease: nothing written.
    LeaseLost,
    /// The execution is not at the expected commit: nothing written.
    Stale,
}

/// Pairs and members per command: well under Lua's limit on unpacked arguments.
const CHUNK: usize = 400;

/// KEYS[1] the lease, KEYS[2] the execution hash; ARGV[1] the token, ARGV[2] the expected
/// `commits` ([`field::COMMITS`], spelled out in the script; '' for any), ARGV[3] each
/// command's argument count (JSON); the commands' arguments follow in ARGV[4..], as they
/// are: no JSON escaping of large values on either side.
const COMMIT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and (redis.call('HGET', KEYS[2], 'commits') or '0') ~= ARGV[2] then return -1 end
local at = 4
for _, n in ipairs(cjson.decode(ARGV[3])) do
  redis.call(unpack(ARGV, at, at + n - 1))
  at = at + n
end
return 1
"#;

static COMMIT_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(COMMIT));

impl Commit {
    fn push(&mut self, parts: Vec<String>) {
        self.cmds.push(parts);
    }

    pub fn del(&mut self, key: &str) {
        self.push(vec!["DEL".into(), key.into()]);
    }

    /// Deletes `keys` (of one execution: they share its hash tag), [`CHUNK`] per command.
    pub fn del_many(&mut self, keys: &[String]) {
        for chunk in keys.chunks(CHUNK) {
            let mut c = vec!["DEL".to_string()];
            c.extend(chunk.iter().cloned());
            self.push(c);
        }
    }

    pub fn expire(&mut self, key: &str, secs: i64) {
        self.push(vec!["EXPIRE".into(), key.into(), secs.to_string()]);
    }

    pub fn hset(&mut self, key: &str, field: &str, value: impl ToString) {
        self.push(vec![
            "HSET".into(),
            key.into(),
            field.into(),
            value.to_string(),
        ]);
    }

    pub fn hset_multiple<F: ToString, V: ToString>(&mut self, key: &str, pairs: &[(F, V)]) {
        for chunk in pairs.chunks(CHUNK) {
            let mut c = vec!["HSET".to_string(), key.to_string()];
            for (f, v) in chunk {
                c.push(f.to_string());
                c.push(v.to_string());
            }
            self.push(c);
        }
    }

    pub fn hdel(&mut self, key: &str, fields: &[String]) {
        for chunk in fields.chunks(CHUNK) {
            let mut c = vec!["HDEL".to_string(), key.to_string()];
            c.extend(chunk.iter().cloned());
            self.push(c);
        }
    }

    pub fn hincr(&mut self, key: &str, field: &str, by: i64) {
        self.push(vec![
            "HINCRBY".into(),
            key.into(),
            field.into(),
            by.to_string(),
        ]);
    }

    fn many(&mut self, cmd: &str, key: &str, values: &[impl AsRef<str>]) {
        for chunk in values.chunks(CHUNK) {
            let mut c = vec![cmd.to_string(), key.to_string()];
            c.extend(chunk.iter().map(|v| v.as_ref().to_string()));
            self.push(c);
        }
    }

    pub fn rpush(&mut self, key: &str, values: &[impl AsRef<str>]) {
        self.many("RPUSH", key, values);
    }

    pub fn sadd(&mut self, key: &str, members: &[impl AsRef<str>]) {
        self.many("SADD", key, members);
    }

    pub fn srem(&mut self, key: &str, members: &[impl AsRef<str>]) {
        self.many("SREM", key, members);
    }

    /// Sets bit `bit` of the bitmap at `key`.
    pub fn setbit(&mut self, key: &str, bit: usize) {
        self.push(vec![
            "SETBIT".into(),
            key.into(),
            bit.to_string(),
            "1".into(),
        ]);
    }

    /// Copies `from` to `to` (nothing when `from` does not exist; `to` must not).
    pub fn copy(&mut self, from: &str, to: &str) {
        self.push(vec!["COPY".into(), from.into(), to.into()]);
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.push(vec!["SET".into(), key.into(), value.into()]);
    }

    pub fn zadd(&mut self, key: &str, member: &str, score: i64) {
        self.push(vec![
            "ZADD".into(),
            key.into(),
            score.to_string(),
            member.into(),
        ]);
    }

    /// Removes a timer from the fleet's timers (`key`), see [`Commit`]. On a Redis Cluster
    /// it is removed before the commit: a commit that then fails leaves its inbox events,
    /// the outcomes that made the timer needless, to the next batch.
    pub fn zrem_timer(&mut self, key: &str, member: &str) {
        self.timers
            .push(vec!["ZREM".into(), key.into(), member.into()]);
    }

    /// Schedules a timer in the fleet's timers (`key`), see [`Commit`].
    pub fn zadd_timer(&mut self, key: &str, member: &str, due: i64) {
        self.timers.push(vec![
            "ZADD".into(),
            key.into(),
            due.to_string(),
            member.into(),
        ]);
    }

    pub fn ltrim(&mut self, key: &str, start: i64, stop: i64) {
        self.push(vec![
            "LTRIM".into(),
            key.into(),
            start.to_string(),
            stop.to_string(),
        ]);
    }

    /// Commits only if the execution hash `exec_key` still counts `commits` commits.
    pub fn expect_commits(&mut self, exec_key: &str, commits: u64) {
        self.expected = Some((exec_key.to_string(), commits));
    }

    /// Runs every command atomically if `token` holds `lease_key` (and the execution is at
    /// the expected commit); nothing is written otherwise.
    pub async fn run(
        mut self,
        conn: &mut RedisConn,
        lease_key: &str,
        token: &str,
    ) -> redis::RedisResult<Committed> {
        let timers = std::mem::take(&mut self.timers);
        if conn.is_cluster() {
            if !timers.is_empty() {
                let mut pipe = redis::pipe();
                for t in &timers {
                    pipe.cmd(&t[0]).arg(&t[1..]).ignore();
                }
                let _: () = pipe.query_async(conn).await?;
            }
        } else {
            self.cmds.extend(timers);
        }
        let counts: Vec<usize> = self.cmds.iter().map(Vec::len).collect();
        let (exec_key, expected) = match &self.expected {
            Some((key, n)) => (key.as_str(), n.to_string()),
            None => (lease_key, String::new()),
        };
        let mut inv = COMMIT_SCRIPT.key(lease_key);
        inv.key(exec_key)
            .arg(token)
            .arg(expected)
            .arg(serde_json::to_string(&counts).expect("counts serialize"));
        for c in &self.cmds {
            inv.arg(c);
        }
        let started = std::time::Instant::now();
        let n = inv.invoke_async::<i64>(conn).await;
        shared::metrics::get()
            .fleet
            .script_call("commit", started, &n);
        Ok(match n? {
            1 => Committed::Yes,
            0 => Committed::LeaseLost,
            _ => Committed::Stale,
        })
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn load_cursor(&mut self, id: &str) -> Result<Option<Cursor>, BackendError> {
        if let Some(c) = self.parsed.remove(id) {
            return Ok(Some(c));
        }
        let text: Option<String> = match self.read.cursors.get(id) {
            Some(t) => t.clone(),
            None => self
                .conn
                .hget(self.keys.cursors(&self.arn), id)
                .await
                .map_err(err)?,
        };
        let Some(text) = text else { return Ok(None) };
        let unreadable = |e: stored::StoredError| err(format!("cursor {id:?} is unreadable: {e}"));
        let (mut cursor, run) = stored::decode(&text).map_err(unreadable)?;
        if let Some(run) = run {
            let blob: Option<String> = self
                .conn
                .hget(self.keys.blobs(&self.arn), id)
                .await
                .map_err(err)?;
            stored::fill(&mut cursor, run, blob.as_deref()).map_err(unreadable)?;
            self.split_runs.insert(id.to_string(), run);
        }
        Ok(Some(cursor))
    }

    async fn store_items(&mut self, map: &str, items: Vec<Value>) -> Result<(), BackendError> {
        self.pending.results.remove(map);
        self.pending.items.insert(map.to_string(), items);
        Ok(())
    }

    async fn items(
        &mut self,
        map: &str,
        from: usize,
        to: usize,
    ) -> Result<Vec<Value>, BackendError> {
        if let Some(items) = self.pending.items.get(map) {
            return Ok(items[from.min(items.len())..to.min(items.len())].to_vec());
        }
        if to <= from {
            return Ok(Vec::new());
        }
        let cached = self
            .read
            .items
            .get(map)
            .is_some_and(|c| (from..to).all(|i| c.contains_key(&i)));
        if !cached {
            // Read this range and the next ones (items are written once, with the Map).
            let fields: Vec<usize> = (from..to.max(from + ITEMS_READ_AHEAD)).collect();
            let key = self.keys.items(&self.arn, map);
            let raw: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&key)
                .arg(&fields)
                .query_async(&mut self.conn)
                .await
                .map_err(err)?;
            let cache = self.read.items.entry(map.to_string()).or_default();
            for (i, t) in fields.into_iter().zip(raw) {
                if let Some(t) = t {
                    cache.insert(i, t);
                }
            }
        }
        let cache = self.read.items.get(map);
        (from..to)
            .map(|i| match cache.and_then(|c| c.get(&i)) {
                Some(t) => serde_json::from_str(t).map_err(err),
                None => Err(err(format!(
                    "item of Map {map:?} is missing from the store"
                ))),
            })
            .collect()
    }

    async fn store_result(
        &mut self,
        parent: &str,
        index: usize,
        output: Option<Value>,
    ) -> Result<bool, BackendError> {
        // A map run's outputs go to its result files and are not kept (a million of them
        // must not pile up in Redis). Storing was only the guard against a replay, and a
        // child ends once: its cursor is removed in the same commit.
        if self.run_writes(parent).await? {
            return Ok(true);
        }
        let buffered = self.pending.results.entry(parent.to_string()).or_default();
        if buffered.contains_key(&index) {
            return Ok(false);
        }
        if !self.pending.dropped.contains(parent) {
            let exists: bool = match self.read.results.get(&(parent.to_string(), index)) {
                Some(e) => *e,
                None => self
                    .conn
                    .hexists(self.keys.results(&self.arn, parent), index)
                    .await
                    .map_err(err)?,
            };
            if exists {
                return Ok(false);
            }
        }
        self.pending
            .results
            .entry(parent.to_string())
            .or_default()
            .insert(index, output);
        Ok(true)
    }

    async fn results(&mut self, parent: &str, count: usize) -> Result<Vec<Value>, BackendError> {
        let mut out = vec![Value::Null; count];
        if !self.pending.dropped.contains(parent) {
            let key = self.keys.results(&self.arn, parent);
            let mut start = 0;
            while start < count {
                let end = (start + 1000).min(count);
                let fields: Vec<usize> = (start..end).collect();
                let raw: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(&key)
                    .arg(&fields)
                    .query_async(&mut self.conn)
                    .await
                    .map_err(err)?;
                for (i, t) in raw.into_iter().enumerate() {
                    if let Some(t) = t.filter(|t| t != FAILED) {
                        out[start + i] = serde_json::from_str(&t).map_err(err)?;
                    }
                }
                start = end;
            }
        }
        if let Some(buffered) = self.pending.results.get(parent) {
            for (i, v) in buffered {
                if let (Some(slot), Some(v)) = (out.get_mut(*i), v) {
                    *slot = v.clone();
                }
            }
        }
        Ok(out)
    }

    async fn drop_children(&mut self, parent: &str) -> Result<(), BackendError> {
        if parent.is_empty() {
            self.pending.done.clear();
        }
        self.pending.dropped.insert(parent.to_string());
        self.pending.items.remove(parent);
        self.pending.results.remove(parent);
        self.pending.live_add.remove(parent);
        self.pending.live_remove.remove(parent);
        self.drop_run(parent);
        Ok(())
    }

    async fn add_live(&mut self, parent: &str, children: &[CursorId]) -> Result<(), BackendError> {
        let add = self.pending.live_add.entry(parent.to_string()).or_default();
        add.extend(children.iter().cloned());
        if let Some(remove) = self.pending.live_remove.get_mut(parent) {
            for c in children {
                remove.remove(c);
            }
        }
        Ok(())
    }

    async fn remove_live(&mut self, parent: &str, child: &str) -> Result<(), BackendError> {
        if let Some(add) = self.pending.live_add.get_mut(parent) {
            add.remove(child);
        }
        self.pending
            .live_remove
            .entry(parent.to_string())
            .or_default()
            .insert(child.to_string());
        Ok(())
    }

    async fn live(&mut self, parent: &str) -> Result<Vec<CursorId>, BackendError> {
        let mut set: HashSet<CursorId> = if self.pending.dropped.contains(parent) {
            HashSet::new()
        } else {
            self.conn
                .smembers(self.keys.live(&self.arn, parent))
                .await
                .map_err(err)?
        };
        if let Some(add) = self.pending.live_add.get(parent) {
            set.extend(add.iter().cloned());
        }
        if let Some(remove) = self.pending.live_remove.get(parent) {
            set.retain(|c| !remove.contains(c));
        }
        Ok(set.into_iter().collect())
    }

    fn publish(&mut self, step: StepRequest) {
        self.pending.steps.push(step);
    }

    fn schedule(&mut self, cursor: &str, seq: u64, at: DateTime<Utc>) {
        self.pending.timers.push((
            timer_member('T', &self.arn, cursor, seq),
            at.timestamp_millis(),
        ));
    }

    fn record(&mut self, event: Event) {
        self.pending.history.push(event);
    }

    async fn open_map_run(
        &mut self,
        map: &str,
        plan: MapRunPlan,
    ) -> Result<Result<usize, StatesError>, BackendError> {
        self.open_run(map, plan).await
    }

    async fn map_run_items(
        &mut self,
        map: &str,
        from: usize,
        to: usize,
        plan: &PlanSource<'_>,
    ) -> Result<Vec<Value>, BackendError> {
        match self.run_items(map, from, to, plan).await? {
            Some(inputs) => Ok(inputs),
            None => self.items(map, from, to).await,
        }
    }

    async fn child_ended(
        &mut self,
        parent: &str,
        index: usize,
        result: &Result<Value, StatesError>,
        at: DateTime<Utc>,
    ) -> Result<(), BackendError> {
        if parent.is_empty() && result.is_ok() {
            self.pending.done.push(index);
        }
        self.run_child_ended(parent, index, result, at).await
    }

    async fn keep_for_redrive(&mut self, parent: &str, entered: u64) -> Result<(), BackendError> {
        let done = std::mem::take(&mut self.pending.done);
        let results = self
            .pending
            .results
            .get(parent)
            .cloned()
            .unwrap_or_default();
        self.pending.keep = Some((entered, done, results));
        Ok(())
    }

    async fn kept(
        &mut self,
        parent: &str,
        entered: u64,
        from: usize,
        to: usize,
    ) -> Result<Vec<Option<Value>>, BackendError> {
        self.kept_children(parent, entered, from, to).await
    }

    async fn close_map_run(
        &mut self,
        map: &str,
    ) -> Result<Option<Result<Value, StatesError>>, BackendError> {
        self.close_run(map).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the Redis on 127.0.0.1 (as the fleet tests): values travel as plain script
    /// arguments, so quotes, newlines and non-ASCII text must arrive byte for byte; and a
    /// coordinator without the lease writes nothing.
    #[tokio::test]
    async fn commit_writes_values_as_they_are_and_only_under_the_lease() {
        let mut conn = shared::redis_schema::connect("redis://127.0.0.1:6379/")
            .await
            .expect("redis on 127.0.0.1");
        let p = format!("mft-commit-{}", uuid::Uuid::new_v4().simple());
        let (lease, hash, list) = (
            format!("{p}:lease"),
            format!("{p}:hash"),
            format!("{p}:list"),
        );
        let _: () = conn.set(&lease, "me").await.unwrap();
        let odd = "{\"a\": \"quote \\\" and\nnewline\", \"b\": \"héllo 🚀\"}";
        let mut c = Commit::default();
        c.hset(&hash, "odd", odd);
        c.hset_multiple(
            &hash,
            &(0..1000).map(|i| (i, format!("v{i}"))).collect::<Vec<_>>(),
        );
        c.rpush(&list, &["x", "", "y z"]);
        c.expire(&list, 60);
        assert_eq!(
            c.run(&mut conn, &lease, "me").await.unwrap(),
            Committed::Yes
        );
        let got: String = conn.hget(&hash, "odd").await.unwrap();
        assert_eq!(got, odd);
        let n: usize = conn.hlen(&hash).await.unwrap();
        assert_eq!(n, 1001);
        let items: Vec<String> = conn.lrange(&list, 0, -1).await.unwrap();
        assert_eq!(items, ["x", "", "y z"]);

        let mut c = Commit::default();
        c.hset(&hash, "odd", "overwritten");
        assert_eq!(
            c.run(&mut conn, &lease, "someone else").await.unwrap(),
            Committed::LeaseLost
        );
        let got: String = conn.hget(&hash, "odd").await.unwrap();
        assert_eq!(got, odd);
        assert_eq!(
            Commit::default()
                .run(&mut conn, &lease, "me")
                .await
                .unwrap(),
            Committed::Yes
        );
        // A batch read at another commit than the execution's writes nothing.
        let _: () = conn.hset(&hash, field::COMMITS, 7).await.unwrap();
        let mut c = Commit::default();
        c.hset(&hash, "odd", "stale");
        c.expect_commits(&hash, 6);
        assert_eq!(
            c.run(&mut conn, &lease, "me").await.unwrap(),
            Committed::Stale
        );
        let got: String = conn.hget(&hash, "odd").await.unwrap();
        assert_eq!(got, odd);
        let mut c = Commit::default();
        c.expect_commits(&hash, 7);
        assert_eq!(
            c.run(&mut conn, &lease, "me").await.unwrap(),
            Committed::Yes
        );
        let _: () = conn.del(&[&lease, &hash, &list]).await.unwrap();
    }
}
