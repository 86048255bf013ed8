//! Test and load-generation utilities: unique name prefixes, worker processes, and a minimal
//! stand-in coordinator ([`Harness`]) that drives a Map-shaped batch through the fleet
//! using only this crate's public API: it initialises a map run in Redis, marks each
//! iteration's cursor as awaiting its step, publishes the steps with confirms, consumes
//! outcomes, applies each with the exactly-once scripts and reduces the results in order.
//!
//! It is what the real coordinator does for a Map of one Task state, minus the ASL: the
//! fleet tests and the load test use it until (and besides) the engine.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_lite::StreamExt;
use lapin::Connection;
use lapin::options::{BasicAckOptions, QueuePurgeOptions};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};

use crate::amqp::{self, Publisher, PublisherOptions};
use crate::messages::{OutcomeMessage, StepId, StepMessage, StepResult, decode_outcomes};
use crate::redis_schema::{Applied, FleetStore};
use crate::topology::{self, DeadLetterInfo, Topology};

/// The broker URL tests use: `MAPFLEET_AMQP_URL` or the local default.
pub fn amqp_url() -> String {
    std::env::var("MAPFLEET_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The Redis URL tests use: `MAPFLEET_REDIS_URL` or the local default.
pub fn redis_url() -> String {
    std::env::var("MAPFLEET_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// Declares a fleet's queues and exchanges (default routes) under `prefix`, before its
/// processes start. Processes that start together all declare the same quorum queues at
/// once, and RabbitMQ 3.10 can answer the second declaration before the queue's process is
/// up: a consumer attaching right then crashes its channel, and the broker closes the whole
/// connection (`INTERNAL_ERROR`). The processes ride that out (`crate::supervise`), but a
/// test's timings should not depend on it. Blocks on its own runtime.
pub fn declare_prefix(prefix: &str, delivery_limit: u32) -> anyhow::Result<()> {
    let run = async {
        let conn = amqp::connect(&amqp_url(), "mapfleet-declare", Duration::from_secs(10)).await?;
        let channel = conn.create_channel().await?;
        topology::declare(&channel, &Topology::new(prefix, delivery_limit)).await?;
        let _ = conn.close(200, "declared".into()).await;
        anyhow::Ok(())
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run)
}

/// Deletes everything a fleet under `prefix` made: its queues and exchanges (default routes)
/// and its Redis keys. For tests that start real coordinators and workers: call it after
/// they stopped, so repeated runs leave the broker as they found it (hundreds of abandoned
/// quorum queues slow a broker down for everyone). Blocks on its own runtime, so it can run
/// in a `Drop`; a failure is reported on stderr, not raised.
pub fn teardown_prefix(prefix: &str) {
    let run = async {
        let conn = amqp::connect(&amqp_url(), "mapfleet-teardown", Duration::from_secs(10)).await?;
        let channel = conn.create_channel().await?;
        topology::delete(&channel, &Topology::new(prefix, 1)).await?;
        let _ = conn.close(200, "teardown".into()).await;
        FleetStore::connect(&redis_url(), prefix)
            .await?
            .delete_prefix()
            .await?;
        anyhow::Ok(())
    };
    let done = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run));
    if let Err(e) = done {
        eprintln!("could not clean up the fleet prefix {prefix}: {e:#}");
    }
}

/// A prefix no other test (or test run) uses: `TAG-PID-NANOS-N`.
pub fn unique_prefix(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the broker's admin CLI (`rabbitmqctl`) works here (it needs the node's cookie,
/// i.e. root on the broker's machine). Tests that drop connections skip without it.
pub fn rabbitmqctl_usable() -> bool {
    Command::new("rabbitmqctl")
        .args(["-q", "status"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Has the broker close every connection whose client properties mention `fragment` (the
/// connection name), as a network cut or a broker restart would. Returns how many it closed,
/// `None` if `rabbitmqctl` failed.
pub fn force_close_connections(fragment: &str) -> Option<usize> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut closed = 0;
    for line in text.lines().filter(|l| l.contains(fragment)) {
        let pid = line.split_whitespace().next()?;
        let ok = Command::new("rabbitmqctl")
            .args([
                "-q",
                "close_connection",
                pid,
                "test: simulated connection loss",
            ])
            .status()
            .ok()?
            .success();
        closed += usize::from(ok);
    }
    Some(closed)
}

/// A `mapfleet-worker` child process, killed (SIGKILL) when dropped.
pub struct WorkerProcess {
    pub child: Child,
}

impl WorkerProcess {
    /// Starts `bin` against the given broker/prefix. `extra` adds flags (e.g.
    /// `--enable-test-tasks`, `--concurrency 4`).
    pub fn spawn(
        bin: &Path,
        amqp_url: &str,
        redis_url: &str,
        topo: &Topology,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let child = Command::new(bin)
            .arg("--amqp")
            .arg(amqp_url)
            .arg("--redis")
            .arg(redis_url)
            .arg("--prefix")
            .arg(topo.prefix())
            .arg("--delivery-limit")
            .arg(topo.delivery_limit().to_string())
            // The utility tasks only: these workers need no face models.
            .arg("--no-photo-tasks")
            .args(extra)
            .env_remove("MAPFLEET_METRICS_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("MAPFLEET_TEST_WORKER_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        Ok(Self { child })
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown), then wait up to `grace` for the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One batch: `items[i]` goes to cursor `{map_run}/{i}` of execution `arn`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub arn: String,
    pub map_run: String,
    pub resource: String,
    pub items: Vec<Value>,
}

impl Batch {
    pub fn cursor(&self, index: usize) -> String {
        format!("{}/{index}", self.map_run)
    }

    fn index_of(&self, cursor: &str) -> Option<u64> {
        cursor
            .strip_prefix(self.map_run.as_str())?
            .strip_prefix('/')?
            .parse()
            .ok()
    }
}

/// What [`Harness::collect`] saw.
#[derive(Debug, Clone, Default)]
pub struct CollectReport {
    /// Outcomes applied (first for their step).
    pub applied: u64,
    /// Outcomes the apply script dropped as duplicates.
    pub duplicates: u64,
    /// Calls that observed the map run complete (must be exactly 1).
    pub completions: u64,
    /// Outcomes (applied or not) of steps the broker had redelivered.
    pub redelivered: u64,
    /// Messages taken from the outcomes queue (a batch counts once).
    pub deliveries: u64,
    /// Outcomes that were errors (`error`, `cause`), by item index.
    pub errors: Vec<(u64, String, String)>,
    pub elapsed: Duration,
}

/// A stand-in coordinator for one prefix. See the module docs.
pub struct Harness {
    pub topo: Topology,
    pub conn: Arc<Connection>,
    pub publisher: Publisher,
    pub store: FleetStore,
}

impl Harness {
    /// Connects, declares `topo` and opens a confirming publisher.
    pub async fn connect(amqp_url: &str, redis_url: &str, topo: Topology) -> anyhow::Result<Self> {
        let conn =
            Arc::new(amqp::connect(amqp_url, "mapfleet-testkit", Duration::from_secs(15)).await?);
        let channel = conn.create_channel().await?;
        topology::declare(&channel, &topo).await?;
        let publisher = Publisher::new(conn.clone(), PublisherOptions::default()).await?;
        let store = FleetStore::connect(redis_url, topo.prefix()).await?;
        Ok(Self {
            topo,
            conn,
            publisher,
            store,
        })
    }

    /// Initialises the map run, marks every cursor as awaiting step (1, 1) and publishes the
    /// steps (pipelined through the confirm window). Returns when all are confirmed.
    pub async fn submit(&self, batch: &Batch) -> anyhow::Result<()> {
        self.store
            .init_map_run(&batch.arn, &batch.map_run, batch.items.len() as u64)
            .await?;
        // Per item: mark the cursor, then publish its step (so no outcome can arrive for a
        // cursor that does not await it yet). Items overlap, so Redis and the broker work
        // in parallel; the publisher's window bounds what is unconfirmed.
        let limit = Arc::new(Semaphore::new(512));
        let mut set = tokio::task::JoinSet::new();
        for (i, item) in batch.items.iter().enumerate() {
            let permit = limit.clone().acquire_owned().await?;
            let (store, publisher, topo) = (
                self.store.clone(),
                self.publisher.clone(),
                self.topo.clone(),
            );
            let step = StepMessage::new(
                StepId {
                    execution: batch.arn.clone(),
                    cursor: batch.cursor(i),
                    seq: 1,
                    attempt: 1,
                },
                batch.resource.clone(),
                item.clone(),
            );
            set.spawn(async move {
                let _permit = permit;
                store
                    .await_step(&step.id.execution, &step.id.cursor, 1, 1)
                    .await?;
                publisher.publish_step(&topo, &step).await?;
                anyhow::Ok(())
            });
            while let Some(r) = set.try_join_next() {
                r??;
            }
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        Ok(())
    }

    /// Consumes outcomes, applies each exactly once and stores iteration results, until some
    /// call observes the map run complete and everything in flight is done, or `limit`
    /// passes (an error). `progress` receives the number of applied outcomes.
    pub async fn collect(
        &self,
        batch: &Batch,
        limit: Duration,
        progress: Option<watch::Sender<u64>>,
    ) -> anyhow::Result<CollectReport> {
        let started = Instant::now();
        let (channel, mut consumer) = amqp::consume(
            &self.conn,
            &self.topo.outcomes_queue(),
            &format!("collector-{}", std::process::id()),
            256,
        )
        .await?;
        let report = Arc::new(std::sync::Mutex::new(CollectReport::default()));
        let (done_tx, mut done_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(64));
        let mut set = tokio::task::JoinSet::new();
        let batch = Arc::new(batch.clone());
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let delivery = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    let r = report.lock().unwrap().clone();
                    bail!("collect timed out after {limit:?}: {r:?}");
                }
                _ = done_rx.wait_for(|d| *d) => break,
                d = consumer.next() => d,
            };
            let delivery = match delivery {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    channel.wait_for_recovery(e).await?;
                    continue;
                }
                None => bail!("outcome consumer ended"),
            };
            let permit = slots.clone().acquire_owned().await?;
            let (store, report, batch, done_tx, progress) = (
                self.store.clone(),
                report.clone(),
                batch.clone(),
                done_tx.clone(),
                progress.clone(),
            );
            set.spawn(async move {
                let _permit = permit;
                let result =
                    apply_all(&store, &batch, &delivery.data, &report, progress.as_ref()).await;
                if let Ok(true) = result {
                    let _ = done_tx.send(true);
                }
                delivery.acker.ack(BasicAckOptions::default()).await?;
                result.map(|_| ())
            });
            while let Some(r) = set.try_join_next() {
                r??;
            }
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        let _ = channel.close(200, "collected".into()).await;
        let mut r = report.lock().unwrap().clone();
        r.elapsed = started.elapsed();
        Ok(r)
    }

    /// The reduced results, in item order; errors if any is missing.
    pub async fn results(&self, batch: &Batch) -> anyhow::Result<Vec<Value>> {
        let raw = self
            .store
            .read_results(&batch.arn, &batch.map_run, batch.items.len() as u64)
            .await?;
        raw.into_iter()
            .enumerate()
            .map(|(i, r)| {
                let r = r.with_context(|| format!("no result for item {i}"))?;
                Ok(serde_json::from_str(&r)?)
            })
            .collect()
    }

    /// Waits up to `limit` for one message in the dead-letter queue and decodes it as a step.
    pub async fn next_dead_letter(
        &self,
        limit: Duration,
    ) -> anyhow::Result<(StepMessage, DeadLetterInfo)> {
        let (channel, mut consumer) =
            amqp::consume(&self.conn, &self.topo.dead_letter_queue(), "dlq-reader", 1).await?;
        let delivery = tokio::time::timeout(limit, consumer.next())
            .await
            .with_context(|| format!("no dead letter within {limit:?}"))?
            .context("dead-letter consumer ended")??;
        let info = DeadLetterInfo::from_headers(delivery.properties.headers().as_ref());
        let step = StepMessage::decode(&delivery.data)?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        crate::metrics::get().steps_dead_lettered.inc();
        let _ = channel.close(200, "read".into()).await;
        Ok((step, info))
    }

    /// Purges and deletes the prefix's queues and exchanges and its Redis keys.
    pub async fn cleanup(&self) -> anyhow::Result<()> {
        let channel = self.conn.create_channel().await?;
        for q in self.topo.steps_queues() {
            let _ = channel
                .queue_purge(q.into(), QueuePurgeOptions::default())
                .await;
        }
        topology::delete(&channel, &self.topo).await?;
        self.store.delete_prefix().await?;
        Ok(())
    }
}

/// Applies the outcomes of one delivery (one outcome or a batch); true if one of them
/// completed the map run.
async fn apply_all(
    store: &FleetStore,
    batch: &Batch,
    body: &[u8],
    report: &std::sync::Mutex<CollectReport>,
    progress: Option<&watch::Sender<u64>>,
) -> anyhow::Result<bool> {
    let mut completed = false;
    report.lock().unwrap().deliveries += 1;
    for outcome in decode_outcomes(body)? {
        completed |= apply_one(store, batch, outcome, report, progress).await?;
    }
    Ok(completed)
}

/// Applies one outcome; true if it completed the map run.
async fn apply_one(
    store: &FleetStore,
    batch: &Batch,
    outcome: OutcomeMessage,
    report: &std::sync::Mutex<CollectReport>,
    progress: Option<&watch::Sender<u64>>,
) -> anyhow::Result<bool> {
    let Some(index) = (outcome.id.execution == batch.arn)
        .then(|| batch.index_of(&outcome.id.cursor))
        .flatten()
    else {
        return Ok(false); // another batch's outcome (not ours to apply)
    };
    if outcome.redeliveries > 0 {
        report.lock().unwrap().redelivered += 1;
    }
    let result_json = serde_json::to_string(&outcome.result)?;
    match store.apply_outcome(&outcome.id, &result_json).await? {
        Applied::Duplicate => {
            report.lock().unwrap().duplicates += 1;
            Ok(false)
        }
        Applied::Applied => {
            let value = match &outcome.result {
                StepResult::Ok { output } => output.clone(),
                StepResult::Err { error, cause } => {
                    report
                        .lock()
                        .unwrap()
                        .errors
                        .push((index, error.clone(), cause.clone()));
                    serde_json::json!({ "Error": error, "Cause": cause })
                }
            };
            let stored = store
                .store_iteration_result(&batch.arn, &batch.map_run, index, &value.to_string())
                .await?;
            let applied = {
                let mut r = report.lock().unwrap();
                r.applied += 1;
                if stored.completed_now() {
                    r.completions += 1;
                }
                r.applied
            };
            if let Some(p) = progress {
                let _ = p.send(applied);
            }
            Ok(stored.completed_now())
        }
    }
}
