//! The step consumer: take a step, run its task, publish the outcome with a confirm, then
//! ack.
//!
//! # Order of effects (why at-least-once is safe here)
//! 1. take a delivery (per-consumer prefetch ≈ task slots, so no worker hoards steps);
//! 2. run the task (CPU-heavy tasks move themselves off the runtime with `spawn_blocking`),
//!    cut off at the step's deadline;
//! 3. publish the outcome and wait for the broker's confirm;
//! 4. only then ack the step.
//!
//! A crash anywhere before 4 makes the broker redeliver the step; the second outcome is then
//! dropped by the coordinator's apply script, keyed by the step id. A transient failure
//! (`TaskFailure::retryable`) nacks the step back to the queue instead, and every return
//! counts against the queue's delivery limit, past which the broker dead-letters the step.
//!
//! # Step batches
//! A message may carry several steps of one resource ([`shared::messages::StepBatch`]). Each
//! step starts in a task slot of its own, the next delivery is taken only once every step of
//! the message has one, and the message is acked once every step's outcome is confirmed,
//! so a crash still leaves every unfinished step of it in the queue. Two cases differ from a
//! single step, both to keep the delivery limit and dead-lettering *per step*:
//!
//! - A batch delivered **again** (the redelivered flag, or an `x-delivery-count` above 0: a
//!   worker died holding it, or gave it back) is not run: the worker **splits** it, publishing
//!   each step as a single-step message with a confirm, and then acks the batch. If the batch
//!   held a step that kills its worker, that step now travels alone, kills at most the
//!   workers of its own deliveries, and is dead-lettered alone after the delivery limit; the
//!   other steps run once more (their earlier outcomes, if any were published, are dropped
//!   as duplicates by step id). A worker that dies while splitting leaves the batch unacked:
//!   it is split again, and the steps published twice are duplicates too.
//! - A step of a batch that fails transiently is published again on its own (after the same
//!   backoff) instead of being nacked, since a nack would return the whole batch; its
//!   returns count from there, so it gets one delivery more than the limit in all.
//!
//! If an outcome of a batch cannot be published, the whole batch is nacked back to the
//! queue (it is then split on its next delivery).
//!
//! # Shutdown
//! When `shutdown` resolves the consumers are cancelled (no new deliveries), in-flight steps
//! get `grace` to finish and ack, and what is still unfinished then is given back to the
//! broker by closing the channels (unacked deliveries are requeued).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions, BasicRejectOptions};
use lapin::{Channel, Connection};
use shared::amqp::{self, Outgoing, Publisher, PublisherOptions};
use shared::config::FleetConfig;
use shared::messages::{OutcomeMessage, StepMessage, StepResult, Timings, decode_steps};
use shared::topology::{self, Topology};
use shared::{metrics, now_ms};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::Instrument;

use crate::policy::{self, TaskEnd};
use crate::task::{Registry, TaskFailure};

/// How one worker consumes.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Steps queues to consume, by route name (`default`, or a `Route::queue`).
    pub queues: Vec<String>,
    /// Task slots: steps running at once, across all queues.
    pub concurrency: usize,
    /// Unacked deliveries each queue's consumer may hold.
    pub prefetch: u16,
    /// Time in-flight steps get to finish after shutdown is requested.
    pub grace: Duration,
    /// Who we are, in outcomes and consumer tags.
    pub worker_id: String,
    /// Most outcomes published as one message (1 = one message per outcome). Outcomes
    /// that are ready at the same moment share a message; a lone outcome never waits.
    pub outcome_batch: usize,
    /// Test hook: wait this long between the outcome's confirm and the ack, widening the
    /// window in which a killed worker leaves a published-but-unacked step (whose
    /// redelivery must then be dropped as a duplicate). Zero in production.
    pub test_ack_delay: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// Kept as a source of its own: [`shared::supervise`] reads it to fail fast on a
    /// misconfiguration.
    #[error("could not connect to the broker")]
    Connect(#[from] amqp::ConnectError),
    #[error("cannot {doing}")]
    Amqp {
        /// What the worker was doing, with the queue it concerns.
        doing: String,
        #[source]
        source: lapin::Error,
    },
    #[error("the consumer of {0} was cancelled by the broker (queue deleted?)")]
    Cancelled(String),
}

impl ConsumerError {
    fn amqp(doing: impl Into<String>) -> impl FnOnce(lapin::Error) -> ConsumerError {
        let doing = doing.into();
        move |source| ConsumerError::Amqp { doing, source }
    }
}

/// `host/pid`, a worker's identity in outcomes and logs.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}/{}", std::process::id())
}

/// Connects with `fleet`'s settings, declares the topology and consumes until `shutdown`
/// (which also stops the connection attempts).
pub async fn run_with_config(
    fleet: &FleetConfig,
    registry: Registry,
    opts: ConsumerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConsumerError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let conn = Arc::new(
        amqp::connect_with(
            &fleet.amqp_url,
            &fleet.amqp_tls(),
            &opts.worker_id,
            fleet.connect_timeout(),
            shutdown.as_mut(),
        )
        .await?,
    );
    let topo = fleet.topology();
    let channel = amqp::open_channel(&conn)
        .await
        .map_err(ConsumerError::amqp(
            "open a channel to declare the queue topology",
        ))?;
    topology::declare(&channel, &topo)
        .await
        .map_err(ConsumerError::amqp(format!(
            "declare the queue topology of prefix {}",
            topo.prefix()
        )))?;
    amqp::close_channel(&channel, "declared").await;
    let result = run(
        conn.clone(),
        topo,
        registry,
        opts,
        fleet.confirm_window,
        shutdown,
    )
    .await;
    amqp::close(&conn, "worker stopped").await;
    result
}

/// [`run_with_config`] until `shutdown`, on a new connection after a lost one (see
/// [`shared::supervise`]): steps in flight when a connection fails are redelivered by the
/// broker, so starting the consumers again loses nothing. What `mapfleet-worker` runs.
pub async fn serve(
    fleet: &FleetConfig,
    registry: Registry,
    opts: ConsumerOptions,
    shutdown: &shared::supervise::Shutdown,
) -> Result<(), shared::supervise::Error<ConsumerError>> {
    shared::supervise::restart_on_failure("worker", shutdown, || {
        let (registry, opts, stop) = (registry.clone(), opts.clone(), shutdown.wait());
        run_with_config(fleet, registry, opts, stop)
    })
    .await
}

struct Ctx {
    registry: Registry,
    /// Publishes single steps again: the steps of a split batch, and a batch's step that
    /// failed transiently.
    steps: Publisher,
    topo: Topology,
    /// To the outcome batcher: an outcome, and where to report whether it was confirmed.
    outcomes: mpsc::Sender<PendingOutcome>,
    worker_id: String,
    test_ack_delay: Duration,
}

type PendingOutcome = (
    OutcomeMessage,
    oneshot::Sender<Result<(), OutcomeNotPublished>>,
);

/// Why an outcome was not confirmed; its step is then requeued, not acked. One publish
/// answers a whole batch, hence the shared error.
#[derive(Debug, Clone, thiserror::Error)]
enum OutcomeNotPublished {
    #[error(transparent)]
    Publish(Arc<amqp::PublishError>),
    #[error("the outcome publisher stopped")]
    PublisherStopped,
}

/// Outcome batches awaiting their confirm at once; while they wait, new outcomes pile up
/// and the next batch grows (group commit).
const OUTCOME_BATCHES_IN_FLIGHT: usize = 4;

/// Consumes `opts.queues` of `topo` on `conn` until `shutdown` resolves (then drains, see
/// the module docs) or a consumer fails.
pub async fn run(
    conn: Arc<Connection>,
    topo: Topology,
    registry: Registry,
    opts: ConsumerOptions,
    confirm_window: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConsumerError> {
    let publisher = Publisher::new(
        conn.clone(),
        PublisherOptions {
            window: confirm_window.max(opts.concurrency),
            ..PublisherOptions::default()
        },
    )
    .await
    .map_err(ConsumerError::amqp("open the publishing channel"))?;
    let (outcomes, outcome_rx) = mpsc::channel(opts.concurrency.max(1));
    let batcher = tokio::spawn(batch_outcomes(
        publisher.clone(),
        topo.clone(),
        outcome_rx,
        opts.outcome_batch.max(1),
    ));
    let ctx = Arc::new(Ctx {
        registry,
        steps: publisher,
        topo: topo.clone(),
        outcomes,
        worker_id: opts.worker_id.clone(),
        test_ack_delay: opts.test_ack_delay,
    });
    let slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    metrics::get()
        .fleet
        .worker_slots
        .set(opts.concurrency.max(1) as i64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loops = JoinSet::new();
    for route in &opts.queues {
        let queue = topo.steps_queue(route);
        let tag = format!("{}:{route}", opts.worker_id);
        let (channel, consumer) = amqp::consume(&conn, &queue, &tag, opts.prefetch)
            .await
            .map_err(ConsumerError::amqp(format!("consume queue {queue}")))?;
        tracing::info!(%queue, prefetch = opts.prefetch, concurrency = opts.concurrency, "consuming");
        loops.spawn(consume_loop(
            ctx.clone(),
            channel,
            consumer,
            queue,
            tag,
            slots.clone(),
            stop_rx.clone(),
            opts.grace,
        ));
    }

    let mut failure = None;
    tokio::select! {
        _ = shutdown => tracing::info!(grace = ?opts.grace, "shutdown requested: stop consuming, finish in-flight steps"),
        Some(ended) = loops.join_next() => {
            failure = Some(ended.expect("consume loop panicked"));
        }
    }
    let _ = stop_tx.send(true);
    while let Some(ended) = loops.join_next().await {
        let ended = ended.expect("consume loop panicked");
        if failure.is_none() {
            failure = Some(ended);
        }
    }
    // Every handler is done: dropping the last sender lets the batcher finish.
    drop(ctx);
    let _ = timeout(Duration::from_secs(5), batcher).await;
    match failure {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Publishes outcomes in batches: takes one, adds whatever else is already waiting (up to
/// `max_batch`), publishes them as one confirmed message and tells each handler the result.
async fn batch_outcomes(
    publisher: Publisher,
    topo: Topology,
    mut rx: mpsc::Receiver<PendingOutcome>,
    max_batch: usize,
) {
    let in_flight = Arc::new(Semaphore::new(OUTCOME_BATCHES_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    loop {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (publisher, topo) = (publisher.clone(), topo.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let (outcomes, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let result = publisher
                .publish_outcomes(&topo, &outcomes)
                .await
                .map_err(|e| OutcomeNotPublished::Publish(Arc::new(e)));
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

#[allow(clippy::too_many_arguments)]
async fn consume_loop(
    ctx: Arc<Ctx>,
    channel: Channel,
    mut consumer: lapin::Consumer,
    queue: String,
    tag: String,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), ConsumerError> {
    let mut in_flight = JoinSet::new();
    let mut outcome = Ok(());
    loop {
        while in_flight.try_join_next().is_some() {}
        // A slot first, then a delivery: a worker never takes a step it cannot start.
        let permit = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            p = slots.clone().acquire_owned() => p.expect("slots are never closed"),
        };
        let next = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            d = consumer.next() => d,
        };
        match next {
            Some(Ok(delivery)) => {
                let Some(taken) = take(delivery).await else {
                    continue;
                };
                let ctx = ctx.clone();
                if taken.steps.len() > 1 && taken.redeliveries > 0 {
                    in_flight.spawn(async move {
                        split(&ctx, taken).await;
                        drop(permit);
                    });
                    continue;
                }
                // Every step of a batch starts in a slot of its own (the first in this
                // one), and no further delivery is taken while a step of this one still
                // waits for a slot: no more steps run than there are slots. Slots are taken
                // one at a time (not all at once), so a consumer of another queue that holds
                // one while it waits for a delivery cannot stall a batch.
                let (started_tx, started_rx) = oneshot::channel();
                let slots = slots.clone();
                in_flight.spawn(async move {
                    handle(&ctx, taken, permit, slots, started_tx).await;
                });
                tokio::select! {
                    biased;
                    // The steps without a slot yet start within the grace period or go back
                    // to the queue with their message.
                    _ = stop.wait_for(|s| *s) => break,
                    _ = started_rx => {}
                }
            }
            Some(Err(e)) => {
                // No recovery on this connection (see `shared::amqp::connect_with`): the
                // consumers start again on a new one.
                tracing::warn!(%queue, error = %e, "consumer failed");
                outcome = Err(ConsumerError::amqp(format!("consume queue {queue}"))(e));
                break;
            }
            None => {
                outcome = Err(ConsumerError::Cancelled(queue.clone()));
                break;
            }
        }
    }
    if !channel.status().connected() {
        // The channel (or the whole connection) is gone: no outcome can be acked on it any
        // more, and the broker gives its unacked steps to the next delivery. Waiting for the
        // steps in flight would only hold up the restart on a new connection.
        tracing::warn!(%queue, in_flight = in_flight.len(), "channel lost; abandoning the steps in flight (they are redelivered)");
        in_flight.abort_all();
        return outcome;
    }
    // No new deliveries; what the broker already pushed but we never took goes back to the
    // queue when the channel closes below.
    let _ = timeout(
        Duration::from_secs(5),
        channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()),
    )
    .await;
    let drained = timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(%queue, unfinished = in_flight.len(), "grace period over; unfinished steps go back to the queue");
        in_flight.abort_all();
    }
    amqp::close_channel(&channel, "worker stopping").await;
    outcome
}

/// What running a step came to.
enum Ran {
    /// Publish this outcome, then ack.
    Outcome(StepResult),
    /// Transient failure: give the step back to the queue.
    Requeue(TaskFailure),
}

/// How one step of a delivery ended.
enum StepEnd {
    /// Its outcome is confirmed.
    Published,
    /// It failed transiently (the backoff has been waited): it must run again.
    Requeue,
    /// Its outcome could not be published: it must run again.
    Unpublished,
}

/// A decoded delivery.
struct Taken {
    delivery: Delivery,
    steps: Vec<StepMessage>,
    /// How many times the broker had delivered the message before (0 = first).
    redeliveries: u32,
}

/// Decodes a delivery; an undecodable one is rejected to the dead-letter queue (nobody can
/// be told about a step we cannot read) and `None` returned.
async fn take(delivery: Delivery) -> Option<Taken> {
    let m = metrics::get();
    let mut redeliveries = topology::delivery_count(delivery.properties.headers().as_ref());
    if delivery.redelivered {
        redeliveries = redeliveries.max(1);
    }
    match decode_steps(&delivery.data) {
        Ok(steps) if !steps.is_empty() => {
            let n = steps.len() as u64;
            m.steps_consumed.inc_by(n);
            for step in &steps {
                metrics::FleetMetrics::since_publish(&m.fleet.step_queue_wait, step.published_ms);
            }
            if redeliveries > 0 {
                m.steps_redelivered.inc_by(n);
            }
            Some(Taken {
                delivery,
                steps,
                redeliveries,
            })
        }
        decoded => {
            let error = match decoded {
                Err(e) => e.to_string(),
                Ok(_) => "a batch without steps".into(),
            };
            tracing::error!(%error, "undecodable step; rejecting to the dead-letter queue");
            m.steps_rejected.inc();
            let _ = delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await;
            None
        }
    }
}

/// Hands a delivery back to the broker for another delivery (here or to another worker).
async fn requeue(delivery: &Delivery, steps: usize) {
    let _ = delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await;
    metrics::get().steps_requeued.inc_by(steps as u64);
}

/// Acks a delivery whose steps are all done (see the module docs for the order).
async fn ack(ctx: &Ctx, delivery: &Delivery, steps: usize) {
    if !ctx.test_ack_delay.is_zero() {
        tokio::time::sleep(ctx.test_ack_delay).await;
    }
    match delivery.acker.ack(BasicAckOptions::default()).await {
        Ok(true) => metrics::get().steps_acked.inc_by(steps as u64),
        // The channel died after the outcomes were confirmed: the broker redelivers the
        // message and the coordinator drops the second outcomes as duplicates.
        Ok(false) => tracing::warn!(
            steps,
            "ack not sent: channel gone; the delivery will come again"
        ),
        Err(e) => tracing::warn!(steps, error = %e, "ack failed; the delivery will come again"),
    }
}

/// Publishes `steps` again, each as a single-step message, with confirms.
async fn republish(ctx: &Ctx, steps: &[StepMessage]) -> Result<(), amqp::PublishError> {
    let mut set = JoinSet::new();
    for step in steps {
        let (publisher, msg) = (ctx.steps.clone(), Outgoing::step(&ctx.topo, step));
        set.spawn(async move { publisher.publish(&msg).await });
    }
    let mut result = Ok(());
    while let Some(done) = set.join_next().await {
        if let Err(e) = done.expect("publish task panicked") {
            result = Err(e);
        }
    }
    result
}

/// A batch delivered again: publish its steps one per message, then ack it (module docs).
async fn split(ctx: &Ctx, taken: Taken) {
    let n = taken.steps.len();
    tracing::warn!(
        steps = n,
        redeliveries = taken.redeliveries,
        "a step batch came again; splitting it into single steps"
    );
    match republish(ctx, &taken.steps).await {
        Ok(()) => {
            metrics::get().step_batches_split.inc();
            ack(ctx, &taken.delivery, n).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "could not split the batch; giving it back");
            requeue(&taken.delivery, n).await;
        }
    }
}

/// Runs a delivery's steps, each in a task slot (`permit` for the first, the others taken
/// from `slots` in turn; `started` is told once every step has one), and acks the delivery
/// once every outcome is confirmed.
async fn handle(
    ctx: &Arc<Ctx>,
    taken: Taken,
    permit: OwnedSemaphorePermit,
    slots: Arc<Semaphore>,
    started: oneshot::Sender<()>,
) {
    let Taken {
        delivery,
        steps,
        redeliveries,
    } = taken;
    let received_ms = now_ms();
    if let [step] = steps.as_slice() {
        let _ = started.send(());
        let end = run_one(ctx, step, received_ms, redeliveries).await;
        drop(permit);
        match end {
            StepEnd::Published => ack(ctx, &delivery, 1).await,
            StepEnd::Requeue | StepEnd::Unpublished => requeue(&delivery, 1).await,
        }
        return;
    }
    let n = steps.len();
    let mut running = JoinSet::new();
    let mut permit = Some(permit);
    for (i, step) in steps.iter().cloned().enumerate() {
        let slot = match permit.take() {
            Some(p) => p,
            None => slots
                .clone()
                .acquire_owned()
                .await
                .expect("slots are never closed"),
        };
        let ctx = ctx.clone();
        running.spawn(async move {
            let end = run_one(&ctx, &step, received_ms, redeliveries).await;
            drop(slot);
            (i, end)
        });
    }
    let _ = started.send(());
    let (mut again, mut unpublished) = (Vec::new(), false);
    while let Some(done) = running.join_next().await {
        match done.expect("step task panicked") {
            (_, StepEnd::Published) => {}
            (i, StepEnd::Requeue) => again.push(steps[i].clone()),
            (_, StepEnd::Unpublished) => unpublished = true,
        }
    }
    if !unpublished && !again.is_empty() {
        match republish(ctx, &again).await {
            Ok(()) => metrics::get().steps_requeued.inc_by(again.len() as u64),
            Err(e) => {
                tracing::error!(error = %e, "could not publish a failed step again");
                unpublished = true;
            }
        }
    }
    if unpublished {
        // Not acked: every step of it runs again rather than one being lost.
        tracing::error!(
            steps = n,
            "an outcome of the batch could not be published; giving the batch back"
        );
        requeue(&delivery, n).await;
    } else {
        ack(ctx, &delivery, n).await;
    }
}

/// Runs one step and publishes its outcome (waiting for the confirm).
async fn run_one(ctx: &Ctx, step: &StepMessage, received_ms: u64, redeliveries: u32) -> StepEnd {
    let span = tracing::info_span!(
        "step",
        execution = %step.id.execution,
        cursor = %step.id.cursor,
        seq = step.id.seq,
        attempt = step.id.attempt,
        resource = %step.resource,
        redeliveries,
    );
    async {
        let started_ms = now_ms();
        let ran = run_step(&ctx.registry, step).await;
        let finished_ms = now_ms();
        let result = match ran {
            Ran::Outcome(result) => result,
            Ran::Requeue(failure) => {
                // Back off a little so a flapping dependency is not hammered; every return
                // counts toward the delivery limit.
                let backoff = policy::retry_backoff(redeliveries);
                tracing::warn!(error = %failure.error, cause = %failure.cause, ?backoff, "transient failure; requeueing");
                tokio::time::sleep(backoff).await;
                return StepEnd::Requeue;
            }
        };
        let mut outcome = OutcomeMessage::for_step(
            step,
            result,
            ctx.worker_id.clone(),
            Timings {
                received_ms,
                started_ms,
                finished_ms,
                published_ms: step.published_ms,
            },
        );
        outcome.redeliveries = redeliveries;
        let (confirmed_tx, confirmed_rx) = oneshot::channel();
        let published = match ctx.outcomes.send((outcome, confirmed_tx)).await {
            Ok(()) => confirmed_rx
                .await
                .unwrap_or(Err(OutcomeNotPublished::PublisherStopped)),
            Err(_) => Err(OutcomeNotPublished::PublisherStopped),
        };
        match published {
            Ok(()) => StepEnd::Published,
            Err(e) => {
                // Not acked: the step runs again (here or elsewhere) rather than being lost.
                tracing::error!(error = %e, "could not publish the outcome; requeueing the step");
                StepEnd::Unpublished
            }
        }
    }
    .instrument(span)
    .await
}

/// Runs one step by the one task policy ([`crate::policy`]); the step's deadline is wall
/// time (milliseconds since the epoch) set by its coordinator.
async fn run_step(registry: &Registry, step: &StepMessage) -> Ran {
    let budget = step
        .deadline_ms
        .map(|deadline| Duration::from_millis(deadline.saturating_sub(now_ms())));
    match policy::run_task(registry, &step.resource, step.input.clone(), budget).await {
        TaskEnd::Succeeded(output) => Ran::Outcome(StepResult::Ok { output }),
        TaskEnd::Failed(e) => Ran::Outcome(StepResult::Err {
            error: e.error,
            cause: e.cause,
        }),
        TaskEnd::Retry(failure) => Ran::Requeue(failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::resource_arn;
    use mapfleet_engine::asl::error::names;
    use serde_json::json;
    use shared::messages::StepId;

    fn step(name: &str, input: serde_json::Value) -> StepMessage {
        StepMessage::new(
            StepId {
                execution: "e".into(),
                cursor: "c".into(),
                seq: 1,
                attempt: 1,
            },
            resource_arn(name),
            input,
        )
    }

    fn err_name(ran: Ran) -> String {
        match ran {
            Ran::Outcome(StepResult::Err { error, .. }) => error,
            Ran::Outcome(StepResult::Ok { output }) => panic!("unexpected ok {output}"),
            Ran::Requeue(f) => panic!("unexpected requeue {f:?}"),
        }
    }

    /// The policy's own cases are tested in [`crate::policy`]; here, that a step's wall-time
    /// deadline and its outcome travel through it.
    #[tokio::test]
    async fn steps_run_by_the_policy_with_their_deadline() {
        let r = crate::registry::default_registry(Default::default());
        match run_step(&r, &step("echo", json!([1]))).await {
            Ran::Outcome(StepResult::Ok { output }) => assert_eq!(output, json!([1])),
            _ => panic!("echo failed"),
        }
        assert_eq!(
            err_name(run_step(&r, &step("fail", json!({"error": "E"}))).await),
            "E"
        );
        let mut late = step("echo", json!(1));
        late.deadline_ms = Some(now_ms() - 1);
        assert_eq!(err_name(run_step(&r, &late).await), names::TIMEOUT);
        let mut slow = step("sleep", json!({"ms": 5000}));
        slow.deadline_ms = Some(now_ms() + 50);
        assert_eq!(err_name(run_step(&r, &slow).await), names::TIMEOUT);
    }
}
