//! `mapfleet coordinator`: consumes outcomes and dead letters, fires timers, and advances
//! ready executions. Stateless: run as many as you like, kill any of them at any time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_lite::StreamExt;
use redis::AsyncCommands;
use serde_json::Value;
use shared::amqp::{Publisher, PublisherOptions};
use shared::config::FleetConfig;
use shared::inbox::{Delivery, apply_to_inbox};
use shared::lapin::options::BasicAckOptions;
use shared::messages::{StepId, StepMessage, StepResult, decode_outcomes, decode_steps};
use shared::redis_conn::RedisConn;
use shared::redis_schema::{Applied, FleetStore};
use shared::supervise::Chain;
use shared::topology::Topology;
use tokio::sync::{Notify, Semaphore};

use super::backend::{Commit, Committed, RedisBackend};
use super::keys::FleetKeys;
use super::outbox::OutboxStep;
use super::record::{ExecutionRecord, RecordError, field};
use super::{InboxEvent, parse_timer};
use crate::asl::definition::StateMachine;
use crate::asl::error::StatesError;
use crate::driver::{Backend, Changes, Processor, Status, StepRequest};
use crate::engine::cursor::{Cursor, CursorEvent, CursorId, Phase};
use crate::engine::run::EngineOptions;
use crate::engine::{Engine, ExecutionInfo};

mod error;
mod intake;
mod lease;
mod observe;
pub use observe::redis_memory;
mod recovery;

use error::Doing;
pub use error::Error;
pub use lease::LeaseLost;

/// Knobs of a coordinator.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub engine: EngineOptions,
    /// Inbox entries processed per batch of one execution.
    pub batch: usize,
    /// How long a coordinator may hold an execution before another takes it over.
    pub lease: Duration,
    /// Executions advanced at once by this coordinator.
    pub parallel: usize,
    /// Publish a step again when its outcome has not come back after this long.
    pub redrive_after: Duration,
    /// How long an execution's data stays in Redis after its last change.
    pub ttl: Duration,
    /// How long a step for a resource no live worker serves may wait for one before it fails.
    pub unserved_grace: Duration,
    /// Most steps of one resource published as one message (1 = one message per step).
    /// Batching divides the broker's work per step; a worker acks a batch once all its steps
    /// are done, and a batch delivered again is split into single steps, so dead-lettering
    /// stays per step. A worker's prefetch counts messages, so it may hold up to prefetch x
    /// this many steps (no more than its slots run at once): keep it small.
    pub step_batch: usize,
    /// Expected task time one step message may carry ([`super::batching`]): a resource's
    /// batches shrink as its tasks get dearer, down to one step for tasks slower than this.
    /// Zero: always `step_batch`.
    pub step_batch_budget: Duration,
    /// The object store Distributed Maps with an ItemReader read from and write their
    /// results to (none by default: such Maps then fail with `States.ItemReaderFailed`).
    pub map_runs: super::maprun::MapRunStore,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            engine: EngineOptions {
                token_key: crate::embedded::os_token_key(),
                ..EngineOptions::default()
            },
            batch: 1024,
            // Short, and renewed after every batch: a killed coordinator's executions are
            // taken over within seconds.
            lease: Duration::from_secs(5),
            parallel: 4,
            redrive_after: Duration::from_secs(600),
            ttl: Duration::from_secs(7 * 24 * 3600),
            unserved_grace: Duration::from_secs(30),
            step_batch: 16,
            step_batch_budget: Duration::from_millis(10),
            map_runs: Default::default(),
        }
    }
}

/// Renews a lease held with `token` (false: it is no longer held); for long reads inside a
/// batch ([`super::maprun`]).
pub(crate) async fn renew_lease(
    conn: &mut RedisConn,
    keys: &FleetKeys,
    arn: &str,
    token: &str,
    lease: Duration,
) -> redis::RedisResult<bool> {
    lease::renew(conn, keys, arn, token, lease).await
}

/// A commit that did not happen, as the error that ends the execution's task here (its
/// batch is dropped; the inbox still holds its events for the next holder).
fn committed(arn: &str, done: Committed) -> Result<(), Error> {
    match done {
        Committed::Yes => Ok(()),
        Committed::LeaseLost => Err(LeaseLost {
            execution: arn.to_string(),
            what: "committing a batch (the batch is dropped; the next holder redoes it)",
        }
        .into()),
        Committed::Stale => Err(LeaseLost {
            execution: arn.to_string(),
            what: "committing a batch: the execution went back to an earlier commit \
                   (Redis lost its last writes?); the batch is dropped and redone",
        }
        .into()),
    }
}

/// Executions whose parsed facts a coordinator keeps (the cache is emptied when full).
const INFO_CACHE_SIZE: usize = 1024;

/// Outcome messages a coordinator applies at once (their Redis round trips overlap).
const OUTCOME_DELIVERIES_AT_ONCE: usize = 16;

/// Runs `op` until it succeeds, backing off from 50 ms; gives up (with the last error) once
/// the backoff reaches 30 s.
async fn retrying<T, E, F, Fut>(what: &str, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::error::Error + 'static,
{
    let mut delay = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if delay < Duration::from_secs(30) => {
                tracing::warn!(error = %Chain(&e), "cannot {what} yet, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A task publishing an execution's outbox ([`Coordinator::process_batch`]).
pub type Flush = tokio::task::JoinHandle<Result<(), Error>>;

/// Waits for the task publishing execution `arn`'s outbox.
async fn join(arn: &str, flush: Flush) -> Result<(), Error> {
    flush.await.map_err(|source| Error::TaskStopped {
        task: format!("the task publishing the steps of execution {arn}"),
        source,
    })?
}

/// An execution's cursors as of its n-th commit: (n, cursor id → cursor, cursor id → the
/// run whose values are stored apart, see [`super::stored`]).
type CachedCursors = (u64, HashMap<CursorId, Cursor>, HashMap<CursorId, u64>);

/// What [`Coordinator::load`] found.
enum Loaded {
    /// The inbox is empty.
    Empty,
    /// The execution is not running: its first `entries` inbox entries are late events, to
    /// drop at commit `commits`.
    Late {
        entries: usize,
        commits: u64,
    },
    Batch(Box<Batch>),
}

/// One batch of one execution, from its reading to its commit.
struct Batch {
    /// Inbox entries the batch consumes (the unreadable ones included).
    entries: usize,
    /// The readable ones, until [`Coordinator::apply`] takes them.
    events: Vec<InboxEvent>,
    /// The commit the batch was read at.
    commits: u64,
    /// Whether the execution's start was processed (before or in this batch).
    started: bool,
    processor: Processor,
    backend: RedisBackend,
    times: Times,
}

/// When each stage of a batch ended, from its start (for the debug log).
struct Times {
    clock: std::time::Instant,
    read: Duration,
    ran: Duration,
    prepared: Duration,
    committed: Duration,
}

impl Times {
    /// Times of a batch started at `clock` and read by now.
    fn read_since(clock: std::time::Instant) -> Times {
        Times {
            clock,
            read: clock.elapsed(),
            ran: Duration::ZERO,
            prepared: Duration::ZERO,
            committed: Duration::ZERO,
        }
    }

    fn log(&self, arn: &str, events: usize, publish_wait: Duration) {
        shared::metrics::get()
            .fleet
            .batch_duration
            .observe(self.committed.as_secs_f64());
        tracing::debug!(
            execution = %arn,
            events,
            read_ms = self.read.as_secs_f64() * 1e3,
            run_ms = (self.ran - self.read).as_secs_f64() * 1e3,
            prepare_ms = (self.prepared - self.ran).as_secs_f64() * 1e3,
            commit_ms = (self.committed - self.prepared).as_secs_f64() * 1e3,
            publish_wait_ms = publish_wait.as_secs_f64() * 1e3,
            "processed a batch"
        );
    }
}

/// One coordinator process.
pub struct Coordinator {
    conn: RedisConn,
    keys: FleetKeys,
    store: FleetStore,
    publisher: Publisher,
    amqp: Arc<shared::lapin::Connection>,
    topo: Topology,
    opts: ServiceOptions,
    id: String,
    defs: Mutex<HashMap<String, Arc<StateMachine>>>,
    /// Parsed execution facts by ARN (at most [`INFO_CACHE_SIZE`]).
    infos: Mutex<HashMap<String, Arc<ExecutionInfo>>>,
    /// Per execution being advanced here: the cursors as of its `commits`-th commit.
    /// Dropped when this coordinator lets go of the execution.
    cursor_cache: Mutex<HashMap<String, CachedCursors>>,
    wake: Notify,
    /// One permit per execution this coordinator may advance at once (`opts.parallel`).
    slots: Arc<Semaphore>,
    /// Set on shutdown: executions being advanced stop after their current batch.
    stopping: std::sync::atomic::AtomicBool,
    /// Fencing tokens for the leases this coordinator takes ([`lease`]).
    tokens: lease::Tokens,
    /// The executions a task of this coordinator advances now.
    in_flight: lease::InFlight,
    /// What this coordinator (and its earlier incarnations in this process) needs to put
    /// back what a restarted Redis lost ([`recovery`]).
    recovery: Arc<recovery::Recovery>,
    /// Steps per message by resource, from the task times in the outcomes.
    batching: super::batching::StepBatching,
}

/// Appends events to an execution's inbox and flags it ready: atomically on a single
/// Redis; on a Redis Cluster, where the ready set is in another slot than the inbox, as two
/// commands in that order (a flag set after the append is never cleared before the append
/// is seen: see [`Coordinator::settle`]).
pub async fn enqueue(
    conn: &mut RedisConn,
    keys: &FleetKeys,
    arn: &str,
    events: &[InboxEvent],
) -> redis::RedisResult<()> {
    let encoded: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).expect("inbox events serialize"))
        .collect();
    if conn.is_cluster() {
        let _: () = conn.rpush(keys.inbox(arn), encoded).await?;
        return flag_ready(conn, keys, arn).await;
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.rpush(keys.inbox(arn), encoded).ignore();
    pipe.cmd("ZADD")
        .arg(keys.ready())
        .arg("NX")
        .arg(Utc::now().timestamp_millis())
        .arg(arn)
        .ignore();
    pipe.query_async(conn).await
}

/// Clears an execution's ready flag only when nothing waits in its inbox or outbox, so an
/// event appended concurrently (with its own ZADD) is never stranded (a single Redis; see
/// [`Coordinator::settle`] for a cluster).
const SETTLE: &str = r#"
if redis.call('LLEN', KEYS[1]) == 0 and redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 1
end
return 0
"#;

/// Puts an execution in the ready set (keeping its earlier time if it is there).
pub async fn flag_ready(
    conn: &mut RedisConn,
    keys: &FleetKeys,
    arn: &str,
) -> redis::RedisResult<()> {
    redis::cmd("ZADD")
        .arg(keys.ready())
        .arg("NX")
        .arg(Utc::now().timestamp_millis())
        .arg(arn)
        .query_async(conn)
        .await
}

impl Coordinator {
    /// Connects to Redis and RabbitMQ and declares the topology.
    pub async fn connect(
        fleet: &FleetConfig,
        opts: ServiceOptions,
    ) -> Result<Arc<Coordinator>, Error> {
        Self::connect_with(fleet, opts, Arc::default(), std::future::pending()).await
    }

    /// [`Coordinator::connect`], keeping what Redis may lose in `recovery`, which outlives
    /// this coordinator (see [`Coordinator::serve`]), and abandoned (with
    /// [`shared::amqp::ConnectError::Cancelled`]) when `cancel` resolves while the broker is
    /// being retried.
    async fn connect_with(
        fleet: &FleetConfig,
        opts: ServiceOptions,
        recovery: Arc<recovery::Recovery>,
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<Arc<Coordinator>, Error> {
        let conn = shared::redis_schema::connect_with(&fleet.redis_url, &fleet.redis_tls())
            .await
            .map_err(|source| Error::RedisConnect {
                url: shared::config::redact_url(&fleet.redis_url).to_string(),
                source,
            })?;
        let keys = FleetKeys::new(&fleet.prefix);
        let store = FleetStore::new(conn.clone(), keys.shared.clone(), Default::default());
        let id = format!(
            "coordinator-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let amqp = Arc::new(
            shared::amqp::connect_with(
                &fleet.amqp_url,
                &fleet.amqp_tls(),
                &id,
                fleet.connect_timeout(),
                cancel,
            )
            .await?,
        );
        let topo = fleet.topology();
        let channel = shared::amqp::open_channel(&amqp)
            .await
            .doing(|| "open a channel to declare the queue topology".into())?;
        shared::topology::declare(&channel, &topo)
            .await
            .doing(|| format!("declare the queue topology of prefix {}", topo.prefix()))?;
        let publisher = Publisher::new(
            amqp.clone(),
            PublisherOptions {
                window: fleet.confirm_window,
                ..Default::default()
            },
        )
        .await
        .doing(|| "open the publishing channel".into())?;
        let slots = Arc::new(Semaphore::new(opts.parallel.max(1)));
        let batching = super::batching::StepBatching::new(opts.step_batch, opts.step_batch_budget);
        Ok(Arc::new(Coordinator {
            conn,
            keys,
            store,
            publisher,
            amqp,
            topo,
            opts,
            id: id.clone(),
            defs: Mutex::new(HashMap::new()),
            infos: Mutex::new(HashMap::new()),
            cursor_cache: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            slots,
            stopping: std::sync::atomic::AtomicBool::new(false),
            tokens: lease::Tokens::new(&id),
            in_flight: lease::InFlight::default(),
            recovery,
            batching,
        }))
    }

    /// Connects and runs a coordinator until `shutdown`, connecting afresh after a broker or
    /// Redis failure (see [`shared::supervise`]): coordinators keep nothing Redis does not, so
    /// a new one resumes every execution. What `mapfleet coordinator` runs.
    pub async fn serve(
        fleet: &FleetConfig,
        opts: ServiceOptions,
        shutdown: &shared::supervise::Shutdown,
    ) -> Result<(), shared::supervise::Error<Error>> {
        // Outlives each connection: a Redis outage long enough to end this coordinator (and
        // start a new one) is exactly when Redis may have lost writes to be put back.
        let recovery = Arc::new(recovery::Recovery::default());
        shared::supervise::restart_on_failure("coordinator", shutdown, || {
            let (opts, stop, recovery) = (opts.clone(), shutdown.wait(), recovery.clone());
            async move {
                let mut stop = std::pin::pin!(stop);
                let c = Coordinator::connect_with(fleet, opts, recovery, stop.as_mut()).await?;
                let result = c.clone().run(stop).await;
                c.close().await;
                result
            }
        })
        .await
    }

    /// Closes the broker connection. For a process that goes on after [`Coordinator::run`]
    /// returned (tests): an execution being advanced when `run` stopped may still try to
    /// publish, and an open connection would recover its channel by declaring the topology
    /// again, bringing back queues that were meant to be gone.
    pub async fn close(&self) {
        shared::amqp::close(&self.amqp, "coordinator stopped").await;
    }

    /// Lets the executions being advanced finish their batch and release their leases, so
    /// another coordinator (or this one started again) takes them over at once rather than
    /// after the lease; bounded by the lease, after which others take over anyway.
    async fn let_go(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let all = self.opts.parallel.max(1) as u32;
        if tokio::time::timeout(self.opts.lease, self.slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(id = %self.id, "executions still being advanced when stopping; their leases lapse");
        }
    }

    /// Runs until `shutdown` resolves: outcome and dead-letter consumers, the timer poller and
    /// the ready-execution loop.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), Error> {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.clone().consume_outcomes());
        tasks.spawn(self.clone().consume_dead_letters());
        tasks.spawn(self.clone().fire_timers());
        tasks.spawn(self.clone().advance_ready());
        tasks.spawn(self.clone().watch_redis());
        tasks.spawn(self.clone().observe_fleet());
        tokio::select! {
            _ = shutdown => {
                tracing::info!(id = %self.id, "coordinator stopping");
                tasks.abort_all();
                self.let_go().await;
                Ok(())
            }
            Some(done) = tasks.join_next() => {
                tasks.abort_all();
                self.let_go().await;
                match done {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e),
                    Err(source) => Err(Error::TaskStopped {
                        task: "a coordinator task".into(),
                        source,
                    }),
                }
            }
        }
    }

    async fn advance_ready(self: Arc<Self>) -> Result<(), Error> {
        let slots = self.slots.clone();
        let mut conn = self.conn.clone();
        loop {
            let ready: Vec<String> = match conn.zrange(self.keys.ready(), 0, 63).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read ready executions, retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut took_any = false;
            for arn in ready {
                // Still advanced by a task of ours (perhaps one stalled past its lease): that
                // task has to end before another starts, or two would apply the same events.
                if self.in_flight.contains(&arn) {
                    continue;
                }
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    break;
                };
                let token = self.tokens.next();
                let acquired = lease::acquire(&mut conn, &self.keys, &arn, &token, self.opts.lease)
                    .await
                    .unwrap_or(false);
                if !acquired {
                    continue;
                }
                let Some(guard) = self.in_flight.enter(&arn) else {
                    let _ = lease::release(&mut conn, &self.keys, &arn, &token).await;
                    continue;
                };
                took_any = true;
                let me = self.clone();
                tokio::spawn(async move {
                    me.advance(&arn, &token).await;
                    drop(guard);
                    drop(permit);
                    me.wake.notify_one();
                });
            }
            if !took_any {
                let _ = tokio::time::timeout(Duration::from_millis(20), self.wake.notified()).await;
            }
        }
    }

    /// Advances an execution whose lease `token` holds, batch after batch, until its inbox is
    /// empty, the lease is lost or the coordinator stops; then lets the lease go.
    async fn advance(self: &Arc<Self>, arn: &str, token: &str) {
        // The previous batch's steps, being published while the next batch is processed.
        let mut publishing: Option<Flush> = None;
        loop {
            match self.process_batch(arn, token, &mut publishing).await {
                Ok(true) if self.stopping.load(std::sync::atomic::Ordering::SeqCst) => break,
                Ok(true) => {
                    // Still busy with it: extend the lease, or stop if it was lost.
                    if !self.renew(arn, token).await {
                        break;
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    if let Error::LeaseLost(lost) = &e {
                        observe::lease_lost();
                        tracing::warn!(execution = %arn, %token, "{lost}");
                    } else {
                        tracing::error!(execution = %arn, error = %Chain(&e), "cannot advance the execution; will retry");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    break;
                }
            }
        }
        if let Some(flush) = publishing.take()
            && let Err(e) = join(arn, flush).await
        {
            // Still in the outbox: the next holder of the lease publishes it.
            if let Error::LeaseLost(lost) = &e {
                tracing::warn!(execution = %arn, %token, "{lost}");
            } else {
                tracing::error!(execution = %arn, error = %Chain(&e), "cannot publish steps; will retry");
            }
        }
        self.cursor_cache
            .lock()
            .expect("cursor cache lock")
            .remove(arn);
        let mut conn = self.conn.clone();
        let _ = lease::release(&mut conn, &self.keys, arn, token).await;
    }

    /// Extends this coordinator's lease on an execution; false (and a warning) if `token`
    /// no longer holds it.
    async fn renew(&self, arn: &str, token: &str) -> bool {
        let mut conn = self.conn.clone();
        match lease::renew(&mut conn, &self.keys, arn, token, self.opts.lease).await {
            Ok(true) => true,
            Ok(false) => {
                observe::lease_lost();
                tracing::warn!(execution = %arn, %token, "lost the lease on the execution (a stall outlasted it); another holder advances it");
                false
            }
            Err(e) => {
                tracing::warn!(execution = %arn, error = %e, "cannot renew the lease; letting the execution go");
                false
            }
        }
    }

    /// Definition `id` of execution `arn`, parsed from `text` once and kept.
    fn definition(&self, arn: &str, text: &str, id: &str) -> Result<Arc<StateMachine>, Error> {
        if let Some(d) = self.defs.lock().expect("definition cache lock").get(id) {
            return Ok(d.clone());
        }
        let def = Arc::new(crate::asl::parse::parse_definition(text).map_err(|source| {
            Error::Definition {
                execution: arn.to_string(),
                definition: id.to_string(),
                source,
            }
        })?);
        self.defs
            .lock()
            .expect("definition cache lock")
            .insert(id.to_string(), def.clone());
        Ok(def)
    }

    /// The execution's facts (immutable once submitted), parsed once and kept.
    async fn execution_info(&self, arn: &str) -> Result<Arc<ExecutionInfo>, Error> {
        if let Some(info) = self.infos.lock().expect("info cache lock").get(arn) {
            return Ok(info.clone());
        }
        let mut conn = self.conn.clone();
        let text: Option<String> = conn
            .hget(self.keys.exec(arn), field::INFO)
            .await
            .doing(|| format!("read the info of execution {arn}"))?;
        let text = text.ok_or_else(|| RecordError::Missing {
            execution: arn.to_string(),
            field: field::INFO,
        })?;
        let info: Arc<ExecutionInfo> =
            Arc::new(serde_json::from_str(&text).map_err(|source| Error::Info {
                execution: arn.to_string(),
                source,
            })?);
        let mut infos = self.infos.lock().expect("info cache lock");
        if infos.len() >= INFO_CACHE_SIZE {
            infos.clear();
        }
        infos.insert(arn.to_string(), info.clone());
        Ok(info)
    }

    /// Publishes what the outbox holds, then clears it; both under the lease `token`: a
    /// holder that lost its lease marks no step awaited (that could undo its successor's
    /// marks) and trims nothing its successor may have committed since.
    async fn flush_outbox(&self, arn: &str, token: &str) -> Result<(), Error> {
        self.flush_outbox_counted(arn, token).await.map(|_| ())
    }

    /// [`Coordinator::flush_outbox`], returning how many entries the outbox held.
    async fn flush_outbox_counted(&self, arn: &str, token: &str) -> Result<usize, Error> {
        let mut conn = self.conn.clone();
        let outbox: Vec<String> = conn
            .lrange(self.keys.outbox(arn), 0, -1)
            .await
            .doing(|| format!("read the outbox of execution {arn}"))?;
        if outbox.is_empty() {
            return Ok(0);
        }
        // What this build wrote: an entry that does not decode stops the publish (the outbox
        // is left as it is) rather than sending a step with guessed fields.
        let entries = outbox
            .iter()
            .enumerate()
            .map(|(i, text)| OutboxStep::decode(arn, i, text))
            .collect::<Result<Vec<_>, _>>()?;
        // Every cursor awaits its step before any step is published (one round trip).
        let awaiting: Vec<(&str, u64, u32)> = entries
            .iter()
            .map(|e| (e.step.id.cursor.as_str(), e.step.id.seq, e.step.id.attempt))
            .collect();
        let current = lease::await_steps(
            &mut conn,
            &self.keys,
            arn,
            token,
            self.opts.ttl,
            &outbox,
            &awaiting,
        )
        .await?;
        if !current {
            // Read again and published by the next flush, or by the next holder.
            tracing::warn!(execution = %arn, "the outbox changed under its publisher (Redis lost writes?); not publishing what it held");
            return Ok(outbox.len());
        }
        let now = shared::now_ms();
        let steps: Vec<StepMessage> = entries.into_iter().map(|e| e.publish_at(now)).collect();
        let steps = self.check_served(arn, steps).await?;
        self.publisher
            .publish_step_batches_by(&self.topo, steps, |r| self.batching.cap(r))
            .await
            .map_err(|source| Error::Publish {
                execution: arn.to_string(),
                source,
            })?;
        let trimmed = lease::trim_outbox(&mut conn, &self.keys, arn, token, &outbox)
            .await
            .doing(|| format!("trim the outbox of execution {arn}"))?;
        match trimmed {
            lease::Trimmed::Yes => Ok(outbox.len()),
            lease::Trimmed::LeaseLost => Err(LeaseLost {
                execution: arn.to_string(),
                what: "clearing the outbox it published (its successor publishes it again)",
            }
            .into()),
            lease::Trimmed::Changed => {
                tracing::warn!(execution = %arn, "the outbox changed under its publisher (Redis lost writes?); leaving it to be published again");
                Ok(outbox.len())
            }
        }
    }

    /// Advances one execution by one batch of its inbox. Returns whether more may be waiting.
    ///
    /// The batch's steps are published by a task left in `publishing` (the outbox protocol
    /// holds: they are committed to the outbox first, and trimmed from it once confirmed), so
    /// the next batch is processed while they travel. A batch waits for the previous batch's
    /// publishing before it starts its own, so one task at a time publishes an outbox: with
    /// `publishing` empty (a fresh lease), the batch first publishes what a previous holder
    /// left in the outbox. Every write is fenced by the lease `token`.
    ///
    /// The stages: [`Coordinator::load`] (the record, the inbox, the definition, the
    /// cursors), [`Coordinator::apply`] (the events, through the engine),
    /// [`Coordinator::commit`] (one fenced write), [`Coordinator::keep_cursors`] (this
    /// coordinator's cache) and [`Coordinator::publish`] (the outbox).
    async fn process_batch(
        self: &Arc<Self>,
        arn: &str,
        token: &str,
        publishing: &mut Option<Flush>,
    ) -> Result<bool, Error> {
        let clock = std::time::Instant::now();
        // A fresh lease: what a previous holder left unpublished goes first (a takeover).
        if publishing.is_none() && self.flush_outbox_counted(arn, token).await? > 0 {
            shared::metrics::get().fleet.lease_takeovers.inc();
        }
        let mut batch = match self.load(arn, clock).await? {
            Loaded::Batch(mut batch) => {
                batch.backend.lease = Some((token.to_string(), self.opts.lease));
                *batch
            }
            Loaded::Empty => {
                self.settle(arn, publishing).await?;
                return Ok(false);
            }
            Loaded::Late { entries, commits } => {
                self.drop_late(arn, token, entries, commits).await?;
                return Ok(true);
            }
        };
        self.apply(&mut batch).await?;
        let changes = self.commit(arn, token, &mut batch).await?;
        self.keep_cursors(arn, &mut batch, changes);
        let waited = self.publish(arn, token, publishing).await?;
        batch.times.log(arn, batch.entries, waited);
        Ok(true)
    }

    /// Reads what a batch needs: the execution's record and up to `opts.batch` inbox
    /// entries; for a running execution also its definition and facts (cached), the cursors
    /// this coordinator's last commit left (if still current) and those the events concern.
    async fn load(&self, arn: &str, clock: std::time::Instant) -> Result<Loaded, Error> {
        let mut conn = self.conn.clone();
        // The execution's small fields; its `info` (which holds the execution input, perhaps
        // large) is read and parsed once per execution: it never changes.
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.exec(arn))
            .arg(&ExecutionRecord::FIELDS)
            .query_async(&mut conn)
            .await
            .doing(|| format!("read the record of execution {arn}"))?;
        let exec = ExecutionRecord::from_fields(arn, values)?;
        let raw: Vec<String> = conn
            .lrange(self.keys.inbox(arn), 0, self.opts.batch as isize - 1)
            .await
            .doing(|| format!("read the inbox of execution {arn}"))?;
        if raw.is_empty() {
            return Ok(Loaded::Empty);
        }
        // The commit the batch is read at: its own commit happens only if the execution is
        // still there (see `Commit`).
        let commits = exec.commits;
        if exec.status != Some(Status::Running) {
            // Finished (or unknown) executions ignore late events.
            return Ok(Loaded::Late {
                entries: raw.len(),
                commits,
            });
        }
        let def_id = exec.def.as_ref().ok_or_else(|| RecordError::Missing {
            execution: arn.to_string(),
            field: field::DEF,
        })?;
        let cached = self
            .defs
            .lock()
            .expect("definition cache lock")
            .get(def_id.as_str())
            .cloned();
        let def = match cached {
            Some(d) => d,
            None => {
                let def_text: Option<String> = conn
                    .get(self.keys.definition(def_id))
                    .await
                    .doing(|| format!("read definition {def_id} of execution {arn}"))?;
                let def_text = def_text.ok_or_else(|| Error::DefinitionGone {
                    execution: arn.to_string(),
                    definition: def_id.clone(),
                })?;
                self.definition(arn, &def_text, def_id)?
            }
        };
        if raw
            .iter()
            .any(|t| t.contains(r#""kind":"redrive_execution""#))
        {
            // A redrive wrote the info anew (its redrive count).
            self.infos.lock().expect("info cache lock").remove(arn);
        }
        let info = self.execution_info(arn).await?;
        let engine = Engine {
            def,
            info,
            options: self.opts.engine.clone(),
        };
        let processor = Processor::new(engine, exec.next_event, true, rand::random());
        let mut backend = RedisBackend::new(
            conn.clone(),
            self.keys.clone(),
            arn.to_string(),
            self.opts.redrive_after.as_millis() as i64,
        );
        // The cursors this coordinator's last commit of the execution wrote, if no commit
        // happened since (by anyone): they are what Redis holds, already parsed.
        let cached = self
            .cursor_cache
            .lock()
            .expect("cursor cache lock")
            .remove(arn);
        backend.map_runs = self.opts.map_runs.clone();
        if let Some((at, cursors, split_runs)) = cached
            && at == commits
        {
            backend.parsed = cursors;
            backend.split_runs = split_runs;
        }
        let mut events = Vec::with_capacity(raw.len());
        for text in &raw {
            match serde_json::from_str::<InboxEvent>(text) {
                Ok(e) => events.push(e),
                Err(e) => {
                    tracing::error!(execution = %arn, error = %e, "skipping an unreadable inbox entry")
                }
            }
        }
        // Read the cursors the batch's events concern (and their parents, and whether their
        // results are stored) in two round trips instead of several per event.
        let touched: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                InboxEvent::Outcome { cursor, .. }
                | InboxEvent::Timer { cursor, .. }
                | InboxEvent::TaskStarted { cursor, .. }
                | InboxEvent::TaskHeartbeat { cursor, .. }
                | InboxEvent::TaskAnswered { cursor, .. } => Some(cursor.as_str()),
                _ => None,
            })
            .collect();
        backend
            .prefetch(&touched)
            .await
            .doing(|| format!("read the cursors of execution {arn}"))?;
        Ok(Loaded::Batch(Box::new(Batch {
            entries: raw.len(),
            events,
            commits,
            started: exec.started,
            processor,
            backend,
            times: Times::read_since(clock),
        })))
    }

    /// Nothing left in the inbox: waits for the previous batch's publishing, then clears the
    /// execution's ready flag (unless something arrived meanwhile).
    ///
    /// On a single Redis one script ([`SETTLE`]) does it. On a Redis Cluster the ready set
    /// is not in the execution's slot and no one script may do both: the execution is taken
    /// out of the ready set first, then its inbox and outbox are looked at, and it is put
    /// back if either holds anything. Every producer appends first and flags after
    /// ([`enqueue`], [`shared::inbox::apply_to_inbox`]), so an append the look missed has
    /// flagged the execution again by itself. A coordinator that dies between the removal and
    /// putting it back leaves the execution unflagged until its next outcome or timer (at
    /// the latest its steps' re-drive).
    async fn settle(&self, arn: &str, publishing: &mut Option<Flush>) -> Result<(), Error> {
        if let Some(flush) = publishing.take() {
            join(arn, flush).await?;
        }
        let mut conn = self.conn.clone();
        let clearing = || format!("clear the ready flag of execution {arn}");
        if !conn.is_cluster() {
            let _: i64 = redis::Script::new(SETTLE)
                .key(self.keys.inbox(arn))
                .key(self.keys.outbox(arn))
                .key(self.keys.ready())
                .arg(arn)
                .invoke_async(&mut conn)
                .await
                .doing(clearing)?;
            return Ok(());
        }
        let _: i64 = conn.zrem(self.keys.ready(), arn).await.doing(clearing)?;
        let (inbox, outbox): (u64, u64) = redis::pipe()
            .llen(self.keys.inbox(arn))
            .llen(self.keys.outbox(arn))
            .query_async(&mut conn)
            .await
            .doing(clearing)?;
        if inbox + outbox > 0 {
            flag_ready(&mut conn, &self.keys, arn)
                .await
                .doing(clearing)?;
        }
        Ok(())
    }

    /// Drops the first `entries` inbox entries of an execution that is not running, under
    /// the lease and at the commit they were read at.
    async fn drop_late(
        &self,
        arn: &str,
        token: &str,
        entries: usize,
        commits: u64,
    ) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        let mut drop_late = Commit::default();
        drop_late.ltrim(&self.keys.inbox(arn), entries as i64, -1);
        drop_late.expect_commits(&self.keys.exec(arn), commits);
        let done = drop_late
            .run(&mut conn, &self.keys.lease(arn), token)
            .await
            .doing(|| format!("drop the late events of execution {arn}"))?;
        committed(arn, done)
    }

    /// Feeds the batch's events to the engine and runs it until nothing is left to do.
    async fn apply(&self, batch: &mut Batch) -> Result<(), Error> {
        let now = Utc::now;
        let arn = batch.backend.arn.clone();
        let advancing = || format!("advance execution {arn}");
        let Batch {
            events,
            started,
            processor: p,
            backend,
            ..
        } = batch;
        for event in std::mem::take(events) {
            match event {
                InboxEvent::Start => {
                    if !*started {
                        p.start(backend, now());
                        *started = true;
                    }
                }
                InboxEvent::Outcome {
                    cursor,
                    seq,
                    result,
                } => {
                    backend.settled(&cursor, seq);
                    p.push(
                        cursor,
                        match result {
                            Ok(output) => CursorEvent::StepSucceeded { seq, output },
                            Err(error) => CursorEvent::StepFailed { seq, error },
                        },
                    )
                }
                InboxEvent::Timer { cursor, seq } => {
                    p.push(cursor, CursorEvent::TimerFired { seq })
                }
                InboxEvent::TaskStarted {
                    cursor,
                    seq,
                    worker,
                } => p.push(cursor, CursorEvent::StepStarted { seq, worker }),
                InboxEvent::TaskHeartbeat { cursor, seq } => {
                    p.push(cursor, CursorEvent::StepHeartbeat { seq })
                }
                InboxEvent::TaskAnswered {
                    cursor,
                    seq,
                    result,
                } => {
                    // Its deadline and re-drive timers are done with, as for an outcome.
                    backend.settled(&cursor, seq);
                    p.push(cursor, CursorEvent::TaskAnswered { seq, result })
                }
                InboxEvent::Redrive { cursor, seq } => self.redrive(backend, &cursor, seq).await?,
                InboxEvent::Unserved { cursor, seq } => {
                    if let Some(error) = self.still_unserved(backend, &cursor, seq).await? {
                        p.push(cursor, CursorEvent::StepFailed { seq, error });
                    }
                }
                InboxEvent::Timeout => {
                    p.run(backend, now).await.doing(advancing)?;
                    let e = StatesError::new(
                        crate::asl::error::names::TIMEOUT,
                        "The execution exceeded its TimeoutSeconds.",
                    );
                    p.stop(backend, e, true, now)
                        .await
                        .doing(|| format!("time out execution {arn}"))?;
                }
                InboxEvent::UpdateMapRun { cursor, limits } => {
                    backend
                        .update_run_limits(&cursor, &limits)
                        .await
                        .doing(|| format!("update a map run of execution {arn}"))?;
                    p.push(cursor, CursorEvent::UpdateLimits(limits));
                }
                InboxEvent::Stop { error, cause } => {
                    p.run(backend, now).await.doing(advancing)?;
                    p.stop(backend, StatesError::new(error, cause), false, now)
                        .await
                        .doing(|| format!("stop execution {arn}"))?;
                }
                InboxEvent::RedriveExecution { count } => {
                    let mut conn = self.conn.clone();
                    let root = super::redrive::kept_root(&mut conn, backend)
                        .await
                        .doing(|| format!("read where execution {arn} is redriven from"))?;
                    match root {
                        Some(root) => p.redrive(backend, root, count, now()),
                        None => {
                            // The client checked it was there: it expired since.
                            tracing::warn!(execution = %arn, "nothing to redrive from; the execution fails again");
                            p.ended = Some((
                                Status::Failed,
                                Err(StatesError::runtime(
                                    "The redrive found nothing to resume from: the execution's kept state expired",
                                )),
                            ));
                        }
                    }
                }
            }
        }
        p.run(backend, now).await.doing(advancing)?;
        batch.times.ran = batch.times.clock.elapsed();
        Ok(())
    }

    /// Writes the batch (cursors, stored values, history, timers, outbox, record, consumed
    /// inbox entries) in one commit fenced by the lease `token` and the commit the batch was
    /// read at. Returns the cursor changes it wrote.
    async fn commit(&self, arn: &str, token: &str, batch: &mut Batch) -> Result<Changes, Error> {
        let mut conn = self.conn.clone();
        let p = &mut batch.processor;
        let mut changes = p.take_changes();
        let ttl = self.opts.ttl.as_secs() as i64;
        let exec_key = self.keys.exec(arn);
        let mut commit = Commit::default();
        let tally = observe::Tally::of(arn, &batch.backend.pending.history);
        batch.backend.write_into(&mut commit, &mut changes, ttl);
        ExecutionRecord::write_batch(&mut commit, &exec_key, p.next_event_id, batch.started);
        commit.ltrim(&self.keys.inbox(arn), batch.entries as i64, -1);
        if let Some((status, result)) = &p.ended {
            ExecutionRecord::write_end(
                &mut commit,
                &exec_key,
                *status,
                result,
                &Utc::now().to_rfc3339(),
            );
            commit.del(&self.keys.cursors(arn));
            commit.del(&self.keys.blobs(arn));
            super::redrive::write_end(
                &mut commit,
                &batch.backend,
                *status,
                p.ended_root.as_ref(),
                ttl,
            );
        }
        commit.expire(&exec_key, ttl);
        commit.expect_commits(&exec_key, batch.commits);
        batch.times.prepared = batch.times.clock.elapsed();
        let done = commit
            .run(&mut conn, &self.keys.lease(arn), token)
            .await
            .doing(|| format!("commit a batch of execution {arn}"))?;
        committed(arn, done)?;
        tally.record();
        batch.times.committed = batch.times.clock.elapsed();
        Ok(changes)
    }

    /// Keeps the cursors Redis holds after the batch's commit (those it wrote and those it
    /// did not touch) for the execution's next batch here; nothing once it ended.
    fn keep_cursors(&self, arn: &str, batch: &mut Batch, changes: Changes) {
        if batch.processor.ended.is_some() {
            return;
        }
        let Changes { changed, removed } = changes;
        let mut cursors = std::mem::take(&mut batch.backend.parsed);
        for id in &removed {
            cursors.remove(id);
        }
        cursors.extend(changed.into_iter().map(|c| (c.id.clone(), c)));
        self.cursor_cache.lock().expect("cursor cache lock").insert(
            arn.to_string(),
            (
                batch.commits + 1,
                cursors,
                std::mem::take(&mut batch.backend.split_runs),
            ),
        );
    }

    /// Waits for the previous batch's publishing, then starts publishing the outbox this
    /// batch committed (left in `publishing`). Returns how long it waited.
    async fn publish(
        self: &Arc<Self>,
        arn: &str,
        token: &str,
        publishing: &mut Option<Flush>,
    ) -> Result<Duration, Error> {
        let waiting = std::time::Instant::now();
        if let Some(flush) = publishing.take() {
            join(arn, flush).await?;
        }
        let waited = waiting.elapsed();
        let me = self.clone();
        let (arn_owned, token_owned) = (arn.to_string(), token.to_string());
        *publishing = Some(tokio::spawn(async move {
            me.flush_outbox(&arn_owned, &token_owned).await
        }));
        Ok(waited)
    }

    /// The failure of a step that still waits and whose resource no live worker serves.
    async fn still_unserved(
        &self,
        backend: &mut RedisBackend,
        cursor: &str,
        seq: u64,
    ) -> Result<Option<StatesError>, Error> {
        let Some(c) = backend
            .load_cursor(cursor)
            .await
            .doing(|| format!("read cursor {cursor} of execution {}", backend.arn))?
        else {
            return Ok(None);
        };
        let Phase::Task(wait) = &c.phase else {
            return Ok(None);
        };
        if c.seq != seq {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        let (resource, _) = wait.step();
        let resource = resource.as_str();
        if shared::topology::activity_name(resource).is_some() {
            // An activity's steps wait for its workers; only a missing activity fails them.
            let exists = super::activities::exists(&mut conn, &self.keys, &wait.resource)
                .await
                .doing(|| format!("read whether activity {} exists", wait.resource))?;
            return Ok((!exists).then(|| super::activities::missing(&wait.resource)));
        }
        let served = shared::workers::served(&mut conn, self.keys.shared.prefix())
            .await
            .doing(|| "read which resources the live workers serve".into())?;
        if served.contains(resource) {
            return Ok(None);
        }
        let mut served: Vec<String> = served.into_iter().collect();
        served.sort();
        Ok(Some(StatesError::unserved(resource, &served)))
    }

    /// Schedules an unserved-resource check for the steps whose resource no live worker
    /// serves right now. Returns the steps to publish: all but those of activities that do
    /// not exist, which are failed at once (through the same check) instead of reaching a
    /// worker's queue through the alternate exchange.
    async fn check_served(
        &self,
        arn: &str,
        steps: Vec<StepMessage>,
    ) -> Result<Vec<StepMessage>, Error> {
        let mut conn = self.conn.clone();
        let workers = shared::workers::registry(&mut conn, self.keys.shared.prefix())
            .await
            .doing(|| "read the live workers' registry".into())?;
        let now = Utc::now().timestamp_millis();
        let grace = now + self.opts.unserved_grace.as_millis() as i64;
        let mut publish = Vec::with_capacity(steps.len());
        for step in steps {
            let mut due = grace;
            if workers.live.contains(&step.resource) {
                publish.push(step);
                continue;
            }
            let member = super::timer_member('U', arn, &step.id.cursor, step.id.seq);
            if shared::topology::activity_name(&step.resource).is_some() {
                let exists = super::activities::exists(&mut conn, &self.keys, &step.resource)
                    .await
                    .doing(|| format!("read whether activity {} exists", step.resource))?;
                if exists {
                    publish.push(step);
                    continue;
                }
                due = now;
            } else {
                let lapsed = workers.lapsed.contains(&step.resource);
                super::unserved::report(arn, &step.resource, lapsed);
                publish.push(step);
            }
            let _: () = conn
                .zadd(self.keys.shared.timers(), &member, due)
                .await
                .doing(|| format!("schedule the unserved check {member} of execution {arn}"))?;
        }
        Ok(publish)
    }

    /// A step's outcome is overdue: publish it again if its cursor still waits for it.
    async fn redrive(
        &self,
        backend: &mut RedisBackend,
        cursor: &str,
        seq: u64,
    ) -> Result<(), Error> {
        let Some(c) = backend
            .load_cursor(cursor)
            .await
            .doing(|| format!("read cursor {cursor} of execution {}", backend.arn))?
        else {
            return Ok(());
        };
        if let Phase::Task(wait) = &c.phase
            && c.seq == seq
        {
            tracing::warn!(execution = %backend.arn, cursor, seq, resource = %wait.resource, "re-driving a step whose outcome is overdue");
            let (resource, input) = wait.step();
            backend.publish(StepRequest {
                cursor: cursor.to_string(),
                seq,
                attempt: 1 + c.retries.iter().sum::<u32>(),
                resource,
                input,
                timeout: wait.timeout.map(Duration::from_secs),
                heartbeat: wait.heartbeat.map(Duration::from_secs),
                // Its token was kept when it was first published.
                callback: None,
            });
        }
        Ok(())
    }
}
