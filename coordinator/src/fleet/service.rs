//! `mapfleet coordinator`: consumes outcomes and dead letters, fires timers, and advances
//! ready executions. Stateless: run as many as you like, kill any of them at any time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use futures_lite::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde_json::Value;
use shared::amqp::{Publisher, PublisherOptions};
use shared::config::FleetConfig;
use shared::lapin::options::BasicAckOptions;
use shared::messages::{StepId, StepMessage, StepResult, decode_outcomes};
use shared::redis_schema::{Applied, FleetStore};
use shared::topology::Topology;
use tokio::sync::{Notify, Semaphore};

use super::backend::{Commit, RedisBackend};
use super::keys::FleetKeys;
use super::{InboxEvent, parse_timer};
use crate::asl::definition::StateMachine;
use crate::asl::error::StatesError;
use crate::driver::{Backend, Processor, Status, StepRequest};
use crate::engine::cursor::{CursorEvent, Phase};
use crate::engine::run::EngineOptions;
use crate::engine::{Engine, ExecutionInfo};

/// The error name of a step the broker gave up on (its worker crashed on every delivery).
pub const DEAD_LETTERED: &str = "Mapfleet.StepDeadLettered";

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
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            engine: EngineOptions::default(),
            batch: 512,
            // Short, and renewed after every batch: a killed coordinator's executions are
            // taken over within seconds.
            lease: Duration::from_secs(5),
            parallel: 4,
            redrive_after: Duration::from_secs(600),
            ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Releases a lease only if this coordinator still holds it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Extends a lease only if this coordinator still holds it.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

/// Clears an execution's ready flag only when nothing waits in its inbox or outbox, so an
/// event appended concurrently (with its own ZADD) is never stranded.
const SETTLE: &str = r#"
if redis.call('LLEN', KEYS[1]) == 0 and redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 1
end
return 0
"#;

/// One coordinator process.
pub struct Coordinator {
    conn: ConnectionManager,
    keys: FleetKeys,
    store: FleetStore,
    publisher: Publisher,
    amqp: Arc<shared::lapin::Connection>,
    topo: Topology,
    opts: ServiceOptions,
    id: String,
    defs: Mutex<HashMap<String, Arc<StateMachine>>>,
    wake: Notify,
}

/// Appends events to an execution's inbox and flags it ready, atomically.
pub async fn enqueue(conn: &mut ConnectionManager, keys: &FleetKeys, arn: &str, events: &[InboxEvent]) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    let encoded: Vec<String> = events.iter().map(|e| serde_json::to_string(e).expect("inbox events serialize")).collect();
    pipe.rpush(keys.inbox(arn), encoded).ignore();
    pipe.cmd("ZADD").arg(keys.ready()).arg("NX").arg(Utc::now().timestamp_millis()).arg(arn).ignore();
    pipe.query_async(conn).await
}

impl Coordinator {
    /// Connects to Redis and RabbitMQ and declares the topology.
    pub async fn connect(fleet: &FleetConfig, opts: ServiceOptions) -> anyhow::Result<Arc<Coordinator>> {
        let conn = shared::redis_schema::connect(&fleet.redis_url)
            .await
            .with_context(|| format!("cannot connect to Redis at {}", shared::config::redact_url(&fleet.redis_url)))?;
        let keys = FleetKeys::new(&fleet.prefix);
        let store = FleetStore::new(conn.clone(), keys.shared.clone(), Default::default());
        let id = format!("coordinator-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let amqp = Arc::new(shared::amqp::connect(&fleet.amqp_url, &id, fleet.connect_timeout()).await?);
        let topo = fleet.topology();
        let channel = amqp.create_channel().await?;
        shared::topology::declare(&channel, &topo).await.context("cannot declare the queue topology")?;
        let publisher = Publisher::new(amqp.clone(), PublisherOptions { window: fleet.confirm_window, ..Default::default() }).await?;
        Ok(Arc::new(Coordinator {
            conn,
            keys,
            store,
            publisher,
            amqp,
            topo,
            opts,
            id,
            defs: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        }))
    }

    /// Runs until `shutdown` resolves: outcome and dead-letter consumers, the timer poller and
    /// the ready-execution loop.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.clone().consume_outcomes());
        tasks.spawn(self.clone().consume_dead_letters());
        tasks.spawn(self.clone().fire_timers());
        tasks.spawn(self.clone().advance_ready());
        tokio::select! {
            _ = shutdown => {
                tracing::info!(id = %self.id, "coordinator stopping");
                tasks.abort_all();
                Ok(())
            }
            Some(done) = tasks.join_next() => {
                tasks.abort_all();
                match done {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(anyhow::anyhow!("a coordinator task stopped: {e}")),
                }
            }
        }
    }

    async fn consume_outcomes(self: Arc<Self>) -> anyhow::Result<()> {
        let (channel, mut consumer) =
            shared::amqp::consume(&self.amqp, &self.topo.outcomes_queue(), &format!("{}-outcomes", self.id), 512).await?;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            match decode_outcomes(&delivery.data) {
                Ok(outcomes) => {
                    for o in outcomes {
                        let result = match o.result {
                            StepResult::Ok { output } => Ok(output),
                            StepResult::Err { error, cause } => Err(StatesError::new(error, cause)),
                        };
                        self.deliver(&o.id, result).await?;
                    }
                }
                Err(e) => tracing::error!(error = %e, "dropping an unreadable outcome message"),
            }
            delivery.ack(BasicAckOptions::default()).await?;
        }
        drop(channel);
        anyhow::bail!("the outcomes consumer was cancelled by the broker")
    }

    /// Applies an outcome exactly once (the `shared` script) and hands it to its execution.
    async fn deliver(&self, id: &StepId, result: Result<Value, StatesError>) -> anyhow::Result<()> {
        let text = serde_json::to_string(&result).expect("outcomes serialize");
        let mut delay = Duration::from_millis(50);
        loop {
            let attempt = async {
                if self.store.apply_outcome(id, &text).await? == Applied::Applied {
                    let mut conn = self.conn.clone();
                    let event = InboxEvent::Outcome { cursor: id.cursor.clone(), seq: id.seq, result: result.clone() };
                    enqueue(&mut conn, &self.keys, &id.execution, &[event]).await?;
                }
                Ok::<_, anyhow::Error>(())
            };
            match attempt.await {
                Ok(()) => break,
                Err(e) if delay < Duration::from_secs(30) => {
                    tracing::warn!(error = %e, "cannot apply an outcome yet, retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    async fn consume_dead_letters(self: Arc<Self>) -> anyhow::Result<()> {
        let (channel, mut consumer) =
            shared::amqp::consume(&self.amqp, &self.topo.dead_letter_queue(), &format!("{}-dead", self.id), 16).await?;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            match StepMessage::decode(&delivery.data) {
                Ok(step) => {
                    let info = shared::topology::DeadLetterInfo::from_headers(delivery.properties.headers().as_ref());
                    let cause = format!(
                        "The step for resource '{}' was dead-lettered by the broker ({}, queue {}): its worker failed on \
                         every one of the {} deliveries allowed.",
                        step.resource,
                        info.reason.as_deref().unwrap_or("unknown reason"),
                        info.queue.as_deref().unwrap_or("unknown"),
                        self.topo.delivery_limit()
                    );
                    tracing::error!(execution = %step.id.execution, cursor = %step.id.cursor, "{cause}");
                    self.deliver(&step.id, Err(StatesError::new(DEAD_LETTERED, cause))).await?;
                }
                Err(e) => tracing::error!(error = %e, "dropping an unreadable dead letter"),
            }
            delivery.ack(BasicAckOptions::default()).await?;
        }
        drop(channel);
        anyhow::bail!("the dead-letter consumer was cancelled by the broker")
    }

    async fn fire_timers(self: Arc<Self>) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        loop {
            let now = Utc::now().timestamp_millis().max(0) as u64;
            match self.store.claim_due_timers(now, 256, Duration::from_secs(30)).await {
                Ok(due) if !due.is_empty() => {
                    for timer in due {
                        if let Some((arn, event)) = parse_timer(&timer.member) {
                            enqueue(&mut conn, &self.keys, &arn, &[event]).await?;
                        }
                        self.store.complete_timer(&timer).await?;
                    }
                    self.wake.notify_one();
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot claim timers, retrying"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn advance_ready(self: Arc<Self>) -> anyhow::Result<()> {
        let slots = Arc::new(Semaphore::new(self.opts.parallel.max(1)));
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
                let Ok(permit) = slots.clone().try_acquire_owned() else { break };
                let lease: Option<String> = redis::cmd("SET")
                    .arg(self.keys.lease(&arn))
                    .arg(&self.id)
                    .arg("NX")
                    .arg("PX")
                    .arg(self.opts.lease.as_millis() as u64)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(None);
                if lease.is_none() {
                    continue;
                }
                took_any = true;
                let me = self.clone();
                tokio::spawn(async move {
                    loop {
                        match me.process(&arn).await {
                            Ok(true) => {
                                // Still busy with it: extend the lease, or stop if it was lost.
                                if !me.renew(&arn).await {
                                    break;
                                }
                            }
                            Ok(false) => break,
                            Err(e) => {
                                tracing::error!(execution = %arn, error = %format!("{e:#}"), "cannot advance the execution; will retry");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                break;
                            }
                        }
                    }
                    let mut conn = me.conn.clone();
                    let _: Result<i64, _> =
                        redis::Script::new(RELEASE).key(me.keys.lease(&arn)).arg(&me.id).invoke_async(&mut conn).await;
                    drop(permit);
                    me.wake.notify_one();
                });
            }
            if !took_any {
                let _ = tokio::time::timeout(Duration::from_millis(20), self.wake.notified()).await;
            }
        }
    }

    /// Extends this coordinator's lease on an execution; false if it no longer holds it.
    async fn renew(&self, arn: &str) -> bool {
        let mut conn = self.conn.clone();
        let renewed: Result<i64, _> = redis::Script::new(RENEW)
            .key(self.keys.lease(arn))
            .arg(&self.id)
            .arg(self.opts.lease.as_millis() as u64)
            .invoke_async(&mut conn)
            .await;
        matches!(renewed, Ok(1))
    }

    fn definition(&self, text: &str, id: &str) -> anyhow::Result<Arc<StateMachine>> {
        if let Some(d) = self.defs.lock().expect("definition cache lock").get(id) {
            return Ok(d.clone());
        }
        let def = Arc::new(crate::asl::parse::parse_definition(text)?);
        self.defs.lock().expect("definition cache lock").insert(id.to_string(), def.clone());
        Ok(def)
    }

    /// Publishes what the outbox holds, then clears it.
    async fn flush_outbox(&self, arn: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let outbox: Vec<String> = conn.lrange(self.keys.outbox(arn), 0, -1).await?;
        if outbox.is_empty() {
            return Ok(());
        }
        let now = shared::now_ms();
        let mut steps = Vec::with_capacity(outbox.len());
        for text in &outbox {
            let v: Value = serde_json::from_str(text)?;
            let id = StepId {
                execution: arn.to_string(),
                cursor: v["cursor"].as_str().unwrap_or_default().to_string(),
                seq: v["seq"].as_u64().unwrap_or(0),
                attempt: v["attempt"].as_u64().unwrap_or(1) as u32,
            };
            self.store.await_step(arn, &id.cursor, id.seq, id.attempt).await?;
            let mut step = StepMessage::new(id, v["resource"].as_str().unwrap_or_default(), v["input"].clone());
            step.deadline_ms = v["timeout_ms"].as_u64().map(|t| now + t);
            step.heartbeat_seconds = v["heartbeat_s"].as_u64().map(|h| h as u32);
            steps.push(step);
        }
        self.publisher.publish_steps(&self.topo, steps).await.context("cannot publish steps")?;
        let _: () = conn.ltrim(self.keys.outbox(arn), outbox.len() as isize, -1).await?;
        Ok(())
    }

    /// Advances one execution by one batch of its inbox. Returns whether more may be waiting.
    pub async fn process(&self, arn: &str) -> anyhow::Result<bool> {
        let mut conn = self.conn.clone();
        self.flush_outbox(arn).await?;
        let exec: HashMap<String, String> = conn.hgetall(self.keys.exec(arn)).await?;
        let inbox_key = self.keys.inbox(arn);
        let raw: Vec<String> = conn.lrange(&inbox_key, 0, self.opts.batch as isize - 1).await?;
        if raw.is_empty() {
            let _: i64 = redis::Script::new(SETTLE)
                .key(&inbox_key)
                .key(self.keys.outbox(arn))
                .key(self.keys.ready())
                .arg(arn)
                .invoke_async(&mut conn)
                .await?;
            return Ok(false);
        }
        let status = exec.get("status").and_then(|s| Status::parse(s));
        if status != Some(Status::Running) {
            // Finished (or unknown) executions ignore late events.
            let _: () = conn.ltrim(&inbox_key, raw.len() as isize, -1).await?;
            return Ok(true);
        }
        let def_id = exec.get("def").context("execution without a definition id")?;
        let def_text: String = conn.get(self.keys.definition(def_id)).await.context("the execution's definition is gone")?;
        let def = self.definition(&def_text, def_id)?;
        let info: ExecutionInfo = serde_json::from_str(exec.get("info").context("execution without info")?)?;
        let next_event: u64 = exec.get("next_event").and_then(|s| s.parse().ok()).unwrap_or(1);
        let mut started = exec.get("started").map(String::as_str) == Some("1");
        let mut engine = Engine::new(def, info);
        engine.options = self.opts.engine.clone();
        let mut p = Processor::new(engine, next_event, true);
        let mut backend = RedisBackend::new(conn.clone(), self.keys.clone(), arn.to_string(), self.opts.redrive_after.as_millis() as i64);
        let now = Utc::now;
        for text in &raw {
            let event: InboxEvent = match serde_json::from_str(text) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(execution = %arn, error = %e, "skipping an unreadable inbox entry");
                    continue;
                }
            };
            match event {
                InboxEvent::Start => {
                    if !started {
                        p.start(&mut backend, now());
                        started = true;
                    }
                }
                InboxEvent::Outcome { cursor, seq, result } => p.push(
                    cursor,
                    match result {
                        Ok(output) => CursorEvent::StepSucceeded { seq, output },
                        Err(error) => CursorEvent::StepFailed { seq, error },
                    },
                ),
                InboxEvent::Timer { cursor, seq } => p.push(cursor, CursorEvent::TimerFired { seq }),
                InboxEvent::Redrive { cursor, seq } => self.redrive(&mut backend, &cursor, seq).await?,
                InboxEvent::Timeout => {
                    p.run(&mut backend, now).await?;
                    let e = StatesError::new(crate::asl::error::names::TIMEOUT, "The execution exceeded its TimeoutSeconds.");
                    p.stop(&mut backend, e, true, now).await?;
                }
                InboxEvent::Stop { error, cause } => {
                    p.run(&mut backend, now).await?;
                    p.stop(&mut backend, StatesError::new(error, cause), false, now).await?;
                }
            }
        }
        p.run(&mut backend, now).await?;
        let changes = p.take_changes();
        let ttl = self.opts.ttl.as_secs() as i64;
        let exec_key = self.keys.exec(arn);
        let mut commit = Commit::default();
        backend.write_into(&mut commit, &changes, ttl);
        commit.hset(&exec_key, "next_event", p.next_event_id);
        if started {
            commit.hset(&exec_key, "started", "1");
        }
        commit.ltrim(&inbox_key, raw.len() as i64, -1);
        if let Some((status, result)) = &p.outcome {
            commit.hset(&exec_key, "status", status.as_str());
            commit.hset(&exec_key, "stop_date", Utc::now().to_rfc3339());
            match result {
                Ok(output) => commit.hset(&exec_key, "output", output),
                Err(e) => {
                    commit.hset(&exec_key, "error", &e.error);
                    commit.hset(&exec_key, "cause", &e.cause);
                }
            }
            commit.del(&self.keys.cursors(arn));
        }
        commit.expire(&exec_key, ttl);
        let committed = commit.run(&mut conn, &self.keys.lease(arn), &self.id).await.context("cannot commit the batch")?;
        if !committed {
            anyhow::bail!("lost the lease on the execution before committing; another coordinator has it");
        }
        self.flush_outbox(arn).await?;
        Ok(true)
    }

    /// A step's outcome is overdue: publish it again if its cursor still waits for it.
    async fn redrive(&self, backend: &mut RedisBackend, cursor: &str, seq: u64) -> anyhow::Result<()> {
        let Some(c) = backend.load_cursor(cursor).await? else { return Ok(()) };
        if let Phase::Task(wait) = &c.phase {
            if c.seq == seq {
                tracing::warn!(execution = %backend.arn, cursor, seq, resource = %wait.resource, "re-driving a step whose outcome is overdue");
                backend.publish(StepRequest {
                    cursor: cursor.to_string(),
                    seq,
                    attempt: 1 + c.retries.iter().sum::<u32>(),
                    resource: wait.resource.clone(),
                    input: wait.effective_input.clone(),
                    timeout: wait.timeout.map(Duration::from_secs),
                    heartbeat: wait.heartbeat.map(Duration::from_secs),
                });
            }
        }
        Ok(())
    }
}
