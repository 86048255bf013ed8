//! RabbitMQ plumbing, as the reliability guides say: connect with bounded retry, publish with
//! publisher confirms (a window of unconfirmed messages, `mandatory`, persistent, timeouts,
//! retry after recovery), consume with manual acks and per-consumer prefetch.
//!
//! Delivery is at-least-once end to end. The publisher may publish a message twice (a
//! confirm that timed out was perhaps delivered); consumers dedupe through the Redis scripts
//! in [`crate::redis_schema`], keyed by [`crate::messages::StepId`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::tcp::{AMQPUriTcpExt, OwnedIdentity, OwnedTLSConfig};
use lapin::types::{FieldTable, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::{RwLock, Semaphore};
use tokio::time::timeout;

use crate::config::redact_url;
use crate::messages::{OutcomeBatch, OutcomeMessage, StepBatch, StepMessage};
use crate::metrics;
use crate::tls::{TlsError, TlsFiles, TlsMaterial};
use crate::topology::Topology;

/// Persistent delivery mode: the broker writes the message to disk before confirming.
const PERSISTENT: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid AMQP URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("AMQP TLS settings: {0}")]
    TlsFiles(#[from] TlsError),
    #[error(
        "TLS with the broker at {url} failed: {reason} (is that the broker's TLS port, and \
         does --amqp-ca-file name the CA that signed its certificate?)"
    )]
    Tls { url: String, reason: String },
    #[error(
        "the broker at {url} refused the login: {reason} (check the user, password and vhost \
         of the URL)"
    )]
    AccessRefused { url: String, reason: String },
    #[error("could not connect to {url} after {attempts} attempts in {elapsed:?}: {last}")]
    GaveUp {
        /// The URL with its password redacted.
        url: String,
        attempts: u32,
        elapsed: Duration,
        last: String,
    },
    #[error("stopped connecting to {url}: shutdown requested")]
    Cancelled { url: String },
}

impl ConnectError {
    /// A misconfiguration that trying again cannot cure (a wrong password, a certificate
    /// that does not verify, a bad URL or file): the process should end with it at once.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            ConnectError::GaveUp { .. } | ConnectError::Cancelled { .. }
        )
    }
}

/// First pause between connection attempts; doubled after each failed one.
const FIRST_CONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between attempts: a broker that comes back is found within this.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(1);
/// Bound on one attempt's TCP connect and TLS handshake.
const MAX_ATTEMPT_TIME: Duration = Duration::from_secs(10);
/// Bound on the AMQP handshake after the socket is up.
const HANDSHAKE_TIME: Duration = Duration::from_secs(15);

/// Whether this process had a broker connection before: the next one is a reconnection.
static CONNECTED_BEFORE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How long closing a connection or a channel may take before it is abandoned.
pub const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Closes `conn`, waiting at most [`CLOSE_LIMIT`] for the broker's answer: with lapin's
/// recovery off, a connection left in a channel error may never see its close-ok, and a
/// shutdown must not wait for it (dropping the connection closes the socket anyway).
pub async fn close(conn: &Connection, reason: &str) {
    if timeout(CLOSE_LIMIT, conn.close(200, reason.into()))
        .await
        .is_err()
    {
        tracing::debug!(
            reason,
            "the broker did not answer the connection's close; dropping it"
        );
    }
}

/// How long one broker reply during set-up (opening a channel, `basic.qos`, `basic.consume`,
/// `confirm.select`, declaring the topology) may take. With lapin's recovery off nothing else
/// bounds them: a broker that accepts the socket and then stalls would hold a starting service
/// until the heartbeat gave up, and the supervisor would never see an error to restart on.
pub const REPLY_LIMIT: Duration = Duration::from_secs(30);

/// Awaits `reply`, turning a broker that does not answer within [`REPLY_LIMIT`] into an IO
/// time-out error naming `what` (the supervisor treats it like a lost connection).
pub async fn bounded<T>(
    what: &str,
    reply: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, lapin::Error> {
    match timeout(REPLY_LIMIT, reply).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the broker did not answer {what} within {REPLY_LIMIT:?}"),
        )
        .into()),
    }
}

/// Opens a channel on `conn`, bounded by [`REPLY_LIMIT`].
pub async fn open_channel(conn: &Connection) -> Result<Channel, lapin::Error> {
    bounded("channel.open", conn.create_channel()).await
}

/// [`close`] for a channel.
pub async fn close_channel(channel: &lapin::Channel, reason: &str) {
    if timeout(CLOSE_LIMIT, channel.close(200, reason.into()))
        .await
        .is_err()
    {
        tracing::debug!(
            reason,
            "the broker did not answer the channel's close; dropping it"
        );
    }
}

/// [`connect_with`] without extra TLS files and without a way to cancel.
pub async fn connect(
    url: &str,
    connection_name: &str,
    give_up_after: Duration,
) -> Result<Connection, ConnectError> {
    connect_with(
        url,
        &TlsFiles::default(),
        connection_name,
        give_up_after,
        std::future::pending(),
    )
    .await
}

/// Connects to `url` (`amqp://` or `amqps://`, the latter with `tls`'s files and the
/// server's certificate verified), retrying with a short backoff (100 ms doubling to 1 s) a
/// broker that cannot be reached until `give_up_after` has passed, then fails with the last
/// error (`connection refused`, a time-out, ...). A refused login or a failed TLS handshake
/// fails at once ([`ConnectError::is_permanent`]). `cancel` resolving stops the retries
/// ([`ConnectError::Cancelled`]).
///
/// The connection does not recover by itself: lapin's recovery waits out its own backoff
/// (up to a minute between tries) and keeps an IO thread per attempt, so a lost connection
/// is left to the caller, which starts its service again on a new one
/// ([`crate::supervise`]) within a second of the broker being back.
pub async fn connect_with(
    url: &str,
    tls: &TlsFiles,
    connection_name: &str,
    give_up_after: Duration,
    cancel: impl Future<Output = ()>,
) -> Result<Connection, ConnectError> {
    let shown = redact_url(url);
    let uri: AMQPUri = url
        .parse()
        .map_err(|reason: String| ConnectError::InvalidUrl {
            url: shown.clone(),
            reason,
        })?;
    let uses_tls = uri.scheme == AMQPScheme::AMQPS;
    if tls.is_set() && !uses_tls {
        return Err(
            TlsError::NotTlsUrl("--amqp-ca-file/--amqp-cert-file", shown, "amqps://").into(),
        );
    }
    let mut cancel = std::pin::pin!(cancel);
    let started = Instant::now();
    let mut delay = FIRST_CONNECT_BACKOFF;
    let mut attempts = 0;
    loop {
        attempts += 1;
        // Read at every attempt: a certificate replaced on disk is used on the next one.
        let material = tls.load()?;
        let left = give_up_after.saturating_sub(started.elapsed());
        let socket_time = left.clamp(Duration::from_millis(500), MAX_ATTEMPT_TIME);
        let mut attempt = std::pin::pin!(timeout(
            socket_time + HANDSHAKE_TIME,
            attempt(uri.clone(), material, connection_name, socket_time),
        ));
        let result = tokio::select! {
            r = &mut attempt => r,
            _ = &mut cancel => {
                // Let the attempt end (it is bounded) rather than drop it: its IO thread
                // would otherwise go on with a runtime that is shutting down.
                if let Ok(Ok(Ok(conn))) = timeout(socket_time + Duration::from_secs(1), attempt).await {
                    close(&conn, "shutting down").await;
                }
                return Err(ConnectError::Cancelled { url: shown });
            }
        };
        let last = match result {
            Ok(Ok(conn)) => {
                let again = CONNECTED_BEFORE.swap(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    url = %shown,
                    name = connection_name,
                    attempts,
                    after = ?started.elapsed(),
                    tls = uses_tls,
                    "{}",
                    if again { "reconnected to the broker" } else { "connected to the broker" }
                );
                return Ok(conn);
            }
            Ok(Err(e)) => match classify(&e, uses_tls) {
                Failure::AccessRefused(reason) => {
                    return Err(ConnectError::AccessRefused { url: shown, reason });
                }
                Failure::Tls(reason) => return Err(ConnectError::Tls { url: shown, reason }),
                Failure::Transient(last) => last,
            },
            Err(_) => format!(
                "no AMQP handshake within {:?} of the connection",
                HANDSHAKE_TIME
            ),
        };
        if started.elapsed() + delay >= give_up_after {
            return Err(ConnectError::GaveUp {
                url: shown,
                attempts,
                elapsed: started.elapsed(),
                last,
            });
        }
        tracing::warn!(url = %shown, attempts, error = %last, retry_in = ?delay, "AMQP connect failed, retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut cancel => return Err(ConnectError::Cancelled { url: shown }),
        }
        delay = (delay * 2).min(MAX_CONNECT_BACKOFF);
    }
}

/// One connection attempt. lapin retries nothing here (no recovery, no backoff), so when it
/// fails its IO thread has ended; the socket (TCP and TLS) is bounded by `socket_time`.
async fn attempt(
    uri: AMQPUri,
    material: TlsMaterial,
    connection_name: &str,
    socket_time: Duration,
) -> Result<Connection, lapin::Error> {
    let tls = OwnedTLSConfig {
        identity: material.identity.map(|(pem, key)| OwnedIdentity::PKCS8 {
            pem: pem.into_bytes(),
            key: key.into_bytes(),
        }),
        cert_chain: material.ca_pem,
    };
    let props = ConnectionProperties::default().with_connection_name(connection_name.into());
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connector(
        uri,
        runtime,
        async move |uri: AMQPUri, runtime| match timeout(
            socket_time,
            uri.connect_with_config_async(tls.as_ref(), &runtime),
        )
        .await
        {
            Ok(stream) => stream.map_err(lapin::Error::from),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect timed out after {socket_time:?}"),
            )
            .into()),
        },
        props,
    )
    .await
}

enum Failure {
    AccessRefused(String),
    Tls(String),
    Transient(String),
}

fn classify(e: &lapin::Error, uses_tls: bool) -> Failure {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) if matches!(amqp.get_id(), 403 | 530) => {
            Failure::AccessRefused(amqp.get_message().to_string())
        }
        // An unknown issuer, a name mismatch, a server that does not speak TLS.
        lapin::ErrorKind::IOError(io) if uses_tls && crate::tls::is_handshake_failure(&**io) => {
            Failure::Tls(io.to_string())
        }
        _ => {
            let text = e.to_string();
            if text.contains("ACCESS_REFUSED") || text.contains("ACCESS-REFUSED") {
                Failure::AccessRefused(text)
            } else {
                Failure::Transient(text)
            }
        }
    }
}

/// Opens a channel with per-consumer `prefetch` and starts a manual-ack consumer on `queue`.
/// Keep the returned channel alive as long as the consumer; every delivery must be acked,
/// nacked or rejected on it.
pub async fn consume(
    conn: &Connection,
    queue: &str,
    consumer_tag: &str,
    prefetch: u16,
) -> Result<(Channel, lapin::Consumer), lapin::Error> {
    let channel = open_channel(conn).await?;
    bounded(
        "basic.qos",
        channel.basic_qos(prefetch, BasicQosOptions { global: false }),
    )
    .await?;
    let consumer = bounded(
        "basic.consume",
        channel.basic_consume(
            queue.into(),
            consumer_tag.into(),
            BasicConsumeOptions {
                no_ack: false,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await?;
    Ok((channel, consumer))
}

/// Knobs of a [`Publisher`].
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Most messages published and not yet confirmed at once, across all callers.
    pub window: usize,
    /// Bound on handing one message to the connection.
    pub publish_timeout: Duration,
    /// Bound on waiting for the broker's confirm of one message.
    pub confirm_timeout: Duration,
    /// Attempts per message before giving up (nacks, timeouts, channel failures). A lost
    /// connection ends the publish at once ([`PublishError::ConnectionLost`]).
    pub max_attempts: u32,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            window: 256,
            publish_timeout: Duration::from_secs(10),
            confirm_timeout: Duration::from_secs(30),
            max_attempts: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// `mandatory` caught it: no queue is bound for this routing key. Not retried: the
    /// topology is missing (call [`crate::topology::declare`]).
    #[error(
        "unroutable: the broker returned the message to {exchange:?} / {routing_key:?} ({reply})"
    )]
    Unroutable {
        exchange: String,
        routing_key: String,
        reply: String,
    },
    #[error("the broker nacked the message")]
    Nacked,
    #[error("{0} timed out after {1:?}")]
    Timeout(&'static str, Duration),
    #[error("channel error: {0}")]
    Channel(#[from] lapin::Error),
    /// The broker connection is gone: nothing published on it can be confirmed any more.
    /// The service using it starts again on a new connection ([`crate::supervise`]).
    #[error("the broker connection is lost: {0}")]
    ConnectionLost(Box<PublishError>),
    #[error("gave up after {attempts} attempts; last error: {last}")]
    GaveUp {
        attempts: u32,
        last: Box<PublishError>,
    },
}

impl PublishError {
    fn metric_reason(&self) -> &'static str {
        match self {
            PublishError::Unroutable { .. } => "returned",
            PublishError::Nacked => "nack",
            PublishError::Timeout(..) => "timeout",
            PublishError::Channel(_)
            | PublishError::ConnectionLost(_)
            | PublishError::GaveUp { .. } => "channel",
        }
    }
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    /// Becomes the AMQP `message_id` (the step id, for tracing through the broker).
    pub message_id: Option<String>,
}

impl Outgoing {
    /// A step, routed by its resource through the steps exchange.
    pub fn step(topo: &Topology, step: &StepMessage) -> Self {
        Self {
            exchange: topo.steps_exchange(),
            routing_key: step.resource.clone(),
            body: step.encode(),
            message_id: Some(step.id.message_id()),
        }
    }

    /// Several steps for the same resource as one [`StepBatch`] message (one step: a plain
    /// [`StepMessage`]), routed by the first step's resource.
    pub fn steps(topo: &Topology, steps: &[StepMessage]) -> Self {
        match steps {
            [one] => Self::step(topo, one),
            many => Self {
                exchange: topo.steps_exchange(),
                routing_key: many.first().map(|s| s.resource.clone()).unwrap_or_default(),
                body: StepBatch::new(many.to_vec()).encode(),
                message_id: many
                    .first()
                    .map(|s| format!("{}+{}", s.id.message_id(), many.len() - 1)),
            },
        }
    }

    /// An outcome, to the outcomes queue through the default exchange.
    pub fn outcome(topo: &Topology, outcome: &OutcomeMessage) -> Self {
        Self {
            exchange: String::new(),
            routing_key: topo.outcomes_queue(),
            body: outcome.encode(),
            message_id: Some(outcome.id.message_id()),
        }
    }

    /// Several outcomes as one [`OutcomeBatch`] message (one outcome: a plain
    /// [`OutcomeMessage`]).
    pub fn outcomes(topo: &Topology, outcomes: &[OutcomeMessage]) -> Self {
        match outcomes {
            [one] => Self::outcome(topo, one),
            many => Self {
                exchange: String::new(),
                routing_key: topo.outcomes_queue(),
                body: OutcomeBatch::new(many.to_vec()).encode(),
                message_id: many
                    .first()
                    .map(|o| format!("{}+{}", o.id.message_id(), many.len() - 1)),
            },
        }
    }
}

/// A confirming publisher on its own channel. Cheap to clone; all clones share the channel
/// and the confirm window, so any number of tasks may publish concurrently: lapin pipelines
/// their publishes and the broker confirms them in batches (the fsync is amortised), while
/// the window bounds how much is unconfirmed at once.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Arc<Connection>,
    channel: RwLock<Channel>,
    window: Semaphore,
    opts: PublisherOptions,
}

impl Publisher {
    /// A publisher on a new channel of `conn` (shared: the publisher opens a fresh channel
    /// on it if its own is closed by a channel-level error).
    pub async fn new(conn: Arc<Connection>, opts: PublisherOptions) -> Result<Self, lapin::Error> {
        let channel = confirming_channel(&conn).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                channel: RwLock::new(channel),
                window: Semaphore::new(opts.window.max(1)),
                opts,
            }),
        })
    }

    /// Publishes one message and returns once the broker confirmed it, retrying a failed
    /// attempt (on a fresh channel if its channel closed) up to `max_attempts`, but not
    /// after the connection is lost: waiting for it would only hold up the restart on a new
    /// one. A retried message may reach the queue twice; consumers are idempotent.
    pub async fn publish(&self, msg: &Outgoing) -> Result<(), PublishError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = {
                let _permit = self
                    .inner
                    .window
                    .acquire()
                    .await
                    .expect("the window semaphore is never closed");
                self.try_once(msg).await
            };
            let err = match result {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            metrics::get()
                .publish_failures
                .with_label_values(&[err.metric_reason()])
                .inc();
            if matches!(err, PublishError::Unroutable { .. }) {
                return Err(err);
            }
            if !self.inner.conn.status().connected() {
                return Err(PublishError::ConnectionLost(Box::new(err)));
            }
            if attempt >= self.inner.opts.max_attempts {
                return Err(PublishError::GaveUp {
                    attempts: attempt,
                    last: Box::new(err),
                });
            }
            tracing::warn!(attempt, error = %err, routing_key = %msg.routing_key, "publish failed, retrying");
            self.recover(err).await;
        }
    }

    /// Publishes a step ([`Outgoing::step`]) and waits for its confirm.
    pub async fn publish_step(
        &self,
        topo: &Topology,
        step: &StepMessage,
    ) -> Result<(), PublishError> {
        let m = metrics::get();
        m.steps_published.inc();
        self.publish(&Outgoing::step(topo, step)).await?;
        m.steps_confirmed.inc();
        Ok(())
    }

    /// Publishes many steps, one message each, pipelined through the window; returns when
    /// all are confirmed (or the first definitive failure).
    pub async fn publish_steps(
        &self,
        topo: &Topology,
        steps: impl IntoIterator<Item = StepMessage>,
    ) -> Result<(), PublishError> {
        self.publish_step_batches(topo, steps, 1).await
    }

    /// Publishes many steps, up to `max_batch` per message ([`step_batches`]: steps of one
    /// resource only, sizes evened out), pipelined through the window; returns when all are
    /// confirmed (or the first definitive failure). The step metrics count steps.
    pub async fn publish_step_batches(
        &self,
        topo: &Topology,
        steps: impl IntoIterator<Item = StepMessage>,
        max_batch: usize,
    ) -> Result<(), PublishError> {
        self.publish_step_batches_by(topo, steps, |_| max_batch)
            .await
    }

    /// [`Self::publish_step_batches`] with a cap per resource (`cap(resource)`, at least 1):
    /// the coordinators size a resource's batches by what its tasks cost.
    pub async fn publish_step_batches_by(
        &self,
        topo: &Topology,
        steps: impl IntoIterator<Item = StepMessage>,
        cap: impl Fn(&str) -> usize,
    ) -> Result<(), PublishError> {
        let mut set = tokio::task::JoinSet::new();
        // Each spawned publish takes a window permit itself; this extra bound keeps the
        // number of spawned-but-waiting tasks (and their bodies) near the window.
        let spawn_bound = Arc::new(Semaphore::new(self.inner.opts.window.max(1) * 2));
        for batch in step_batches_by(steps, cap) {
            let permit = spawn_bound
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            let this = self.clone();
            let msg = Outgoing::steps(topo, &batch);
            let n = batch.len() as u64;
            drop(batch);
            set.spawn(async move {
                let _permit = permit;
                let m = metrics::get();
                m.steps_published.inc_by(n);
                this.publish(&msg).await?;
                m.steps_confirmed.inc_by(n);
                Ok::<_, PublishError>(())
            });
            while let Some(done) = set.try_join_next() {
                done.expect("publish task panicked")?;
            }
        }
        while let Some(done) = set.join_next().await {
            done.expect("publish task panicked")?;
        }
        Ok(())
    }

    /// Publishes an outcome ([`Outgoing::outcome`]) and waits for its confirm.
    pub async fn publish_outcome(
        &self,
        topo: &Topology,
        outcome: &OutcomeMessage,
    ) -> Result<(), PublishError> {
        self.publish(&Outgoing::outcome(topo, outcome)).await?;
        metrics::get().outcomes_published.inc();
        Ok(())
    }

    /// Publishes outcomes as one message ([`Outgoing::outcomes`]) and waits for its confirm.
    pub async fn publish_outcomes(
        &self,
        topo: &Topology,
        outcomes: &[OutcomeMessage],
    ) -> Result<(), PublishError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.publish(&Outgoing::outcomes(topo, outcomes)).await?;
        metrics::get()
            .outcomes_published
            .inc_by(outcomes.len() as u64);
        Ok(())
    }

    async fn try_once(&self, msg: &Outgoing) -> Result<(), PublishError> {
        let opts = &self.inner.opts;
        let channel = self.inner.channel.read().await.clone();
        let mut props = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into());
        if let Some(id) = &msg.message_id {
            props = props.with_message_id(ShortString::from(id.as_str()));
        }
        let started = Instant::now();
        let confirm = timeout(
            opts.publish_timeout,
            channel.basic_publish(
                msg.exchange.as_str().into(),
                msg.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &msg.body,
                props,
            ),
        )
        .await
        .map_err(|_| PublishError::Timeout("publish", opts.publish_timeout))??;
        let confirmation = timeout(opts.confirm_timeout, confirm)
            .await
            .map_err(|_| PublishError::Timeout("publisher confirm", opts.confirm_timeout))??;
        metrics::get()
            .publish_confirm_duration
            .observe(started.elapsed().as_secs_f64());
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(PublishError::Unroutable {
                    exchange: msg.exchange.clone(),
                    routing_key: msg.routing_key.clone(),
                    reply: format!("{} {}", returned.reply_code, returned.reply_text),
                })
            }
            Confirmation::Nack(None) => Err(PublishError::Nacked),
        }
    }

    /// After a failed attempt on a live connection: a short pause, and a fresh confirming
    /// channel if the broker closed ours (a channel-level error).
    async fn recover(&self, _err: PublishError) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut guard = self.inner.channel.write().await;
        if guard.status().connected() {
            return;
        }
        if self.inner.conn.status().connected() {
            match confirming_channel(&self.inner.conn).await {
                Ok(ch) => *guard = ch,
                Err(e) => tracing::warn!(error = %e, "could not reopen publisher channel"),
            }
        }
    }
}

/// Groups `steps` into messages of at most `max_batch` steps (at least 1) with one resource
/// (routing key) each, keeping their order within a resource. A resource's `n` steps become
/// `ceil(n / max_batch)` messages of nearly equal size rather than full ones and a remainder,
/// so the messages of one flush spread evenly over the workers that prefetch them.
pub fn step_batches(
    steps: impl IntoIterator<Item = StepMessage>,
    max_batch: usize,
) -> Vec<Vec<StepMessage>> {
    step_batches_by(steps, |_| max_batch)
}

/// [`step_batches`] with the most steps per message given per resource (`cap(resource)`,
/// taken as 1 when 0).
pub fn step_batches_by(
    steps: impl IntoIterator<Item = StepMessage>,
    cap: impl Fn(&str) -> usize,
) -> Vec<Vec<StepMessage>> {
    let mut by_resource: Vec<(String, Vec<StepMessage>)> = Vec::new();
    for step in steps {
        match by_resource.iter_mut().find(|(r, _)| *r == step.resource) {
            Some((_, group)) => group.push(step),
            None => by_resource.push((step.resource.clone(), vec![step])),
        }
    }
    let mut batches = Vec::new();
    for (resource, group) in by_resource {
        // An activity's worker takes one task per GetActivityTask.
        let max_batch = if crate::topology::activity_name(&resource).is_some() {
            1
        } else {
            cap(&resource).max(1)
        };
        let messages = group.len().div_ceil(max_batch);
        let size = group.len().div_ceil(messages.max(1));
        let mut group = group.into_iter().peekable();
        while group.peek().is_some() {
            batches.push(group.by_ref().take(size).collect());
        }
    }
    batches
}

async fn confirming_channel(conn: &Connection) -> Result<Channel, lapin::Error> {
    let channel = open_channel(conn).await?;
    bounded(
        "confirm.select",
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_broker_reply_that_never_comes_is_a_named_time_out() {
        let never = std::future::pending::<Result<(), lapin::Error>>();
        let started = tokio::time::Instant::now();
        let err = bounded("basic.consume", never).await.unwrap_err();
        assert_eq!(started.elapsed(), REPLY_LIMIT);
        let text = err.to_string();
        assert!(
            text.contains("did not answer basic.consume within 30s"),
            "{text}"
        );
        assert!(
            matches!(err.kind(), lapin::ErrorKind::IOError(e) if e.kind() == std::io::ErrorKind::TimedOut),
            "{err:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_broker_reply_passes_through() {
        let reply = async { Ok::<_, lapin::Error>(7) };
        assert_eq!(bounded("channel.open", reply).await.unwrap(), 7);
    }
    use crate::messages::StepId;

    fn step(resource: &str, i: u64) -> StepMessage {
        StepMessage::new(
            StepId {
                execution: "e".into(),
                cursor: format!("M/{i}"),
                seq: 1,
                attempt: 1,
            },
            resource,
            serde_json::json!(i),
        )
    }

    #[test]
    fn step_batches_keep_one_resource_and_even_sizes() {
        let steps: Vec<StepMessage> = (0..40)
            .map(|i| step(if i % 4 == 3 { "b" } else { "a" }, i))
            .collect();
        let batches = step_batches(steps, 16);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        // 30 of "a" in two messages of 15, 10 of "b" in one.
        assert_eq!(sizes, vec![15, 15, 10]);
        for batch in &batches {
            assert!(batch.iter().all(|s| s.resource == batch[0].resource));
        }
        let a: Vec<u64> = batches[..2]
            .iter()
            .flatten()
            .map(|s| s.input.as_u64().unwrap())
            .collect();
        assert!(a.windows(2).all(|w| w[0] < w[1]), "order kept");
        assert_eq!(step_batches((0..3).map(|i| step("a", i)), 1).len(), 3);
        assert_eq!(step_batches((0..3).map(|i| step("a", i)), 0).len(), 3);
        assert!(step_batches(Vec::new(), 16).is_empty());
        // Per resource: "slow" one step a message, "fast" up to 16.
        let mixed = (0..8).map(|i| step(if i % 2 == 0 { "slow" } else { "fast" }, i));
        let batches = step_batches_by(mixed, |r| if r == "slow" { 1 } else { 16 });
        let sizes: Vec<(String, usize)> = batches
            .iter()
            .map(|b| (b[0].resource.clone(), b.len()))
            .collect();
        assert_eq!(
            sizes,
            [
                ("slow", 1),
                ("slow", 1),
                ("slow", 1),
                ("slow", 1),
                ("fast", 4)
            ]
            .map(|(r, n)| (r.to_string(), n))
        );
        let activity = "arn:aws:states:local:000000000000:activity:a";
        assert_eq!(step_batches((0..3).map(|i| step(activity, i)), 16).len(), 3);
    }
}
