//! The metric catalogue of every mapfleet process, and the `/metrics` exporter.
//!
//! One process-wide [`Metrics`] ([`get`]) owns its own `prometheus::Registry`; the shared
//! plumbing (publisher, scripts) records into it, and each binary serves it with [`serve`]
//! when started with `--metrics-addr`.
//!
//! Labels are small closed sets only: task name, outcome, script name, failure reason.
//! **Never** a label per execution, item, cursor or object key: Prometheus keeps one series
//! per label value, so such a label turns a batch of a million items into a million series.
//!
//! The `steps_*` counters count steps, not broker messages: a step batch of 16 that is
//! published, consumed and acked adds 16 to each.
//!
//! The catalogue of every metric, with kinds, labels and who records it, is [`CATALOGUE`]
//! (in [`fleet`], which also registers the metrics operators alert on: executions, Map
//! items, step latency, backlog, workers, leases, Redis); `docs/METRICS.md` documents it
//! for operators, and tests check that the registry, the catalogue, the document, the
//! Prometheus rules and the Grafana dashboard agree.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub mod fleet;
pub use fleet::{CATALOGUE, FleetMetrics, Kind, Spec, is_catalogued, spec_of};

/// Every metric a mapfleet process can record.
pub struct Metrics {
    pub registry: Registry,
    pub steps_published: IntCounter,
    pub steps_confirmed: IntCounter,
    pub outcomes_published: IntCounter,
    pub publish_failures: IntCounterVec,
    pub service_restarts: IntCounterVec,
    pub publish_confirm_duration: Histogram,
    pub steps_consumed: IntCounter,
    pub steps_acked: IntCounter,
    pub steps_requeued: IntCounter,
    pub steps_redelivered: IntCounter,
    pub steps_rejected: IntCounter,
    pub step_batches_split: IntCounter,
    pub steps_dead_lettered: IntCounter,
    pub task_duration: HistogramVec,
    pub tasks_in_flight: IntGauge,
    pub iterations_in_flight: IntGauge,
    pub outcome_duplicates: IntCounter,
    pub redis_script_duration: HistogramVec,
    /// The metrics operators alert on ([`fleet`]).
    pub fleet: FleetMetrics,
}

/// The process-wide catalogue.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        fn counter(reg: &Registry, name: &str, help: &str) -> IntCounter {
            let c = IntCounter::new(name, help).expect("valid metric");
            reg.register(Box::new(c.clone())).expect("unique metric");
            c
        }
        fn gauge(reg: &Registry, name: &str, help: &str) -> IntGauge {
            let g = IntGauge::new(name, help).expect("valid metric");
            reg.register(Box::new(g.clone())).expect("unique metric");
            g
        }
        let publish_failures = IntCounterVec::new(
            Opts::new(
                "mapfleet_publish_failures_total",
                "Failed publish attempts, by reason (each may be retried).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(publish_failures.clone()))
            .expect("unique metric");
        let service_restarts = IntCounterVec::new(
            Opts::new(
                "mapfleet_service_restarts_total",
                "Times this process started its service again after a broker or Redis failure.",
            ),
            &["service"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(service_restarts.clone()))
            .expect("unique metric");
        for reason in ["nack", "timeout", "returned", "channel"] {
            publish_failures.with_label_values(&[reason]);
        }
        for service in ["coordinator", "worker"] {
            service_restarts.with_label_values(&[service]);
        }
        let publish_confirm_duration = Histogram::with_opts(
            HistogramOpts::new(
                "mapfleet_publish_confirm_duration_seconds",
                "From publish to the broker's confirm.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(publish_confirm_duration.clone()))
            .expect("unique metric");
        let task_duration = HistogramVec::new(
            HistogramOpts::new(
                "mapfleet_task_duration_seconds",
                "Time a worker spent running a task, by task name and outcome.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["task", "outcome"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(task_duration.clone()))
            .expect("unique metric");
        let redis_script_duration = HistogramVec::new(
            HistogramOpts::new(
                "mapfleet_redis_script_duration_seconds",
                "Round trip of one Redis script call, by script.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5,
            ]),
            &["script"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(redis_script_duration.clone()))
            .expect("unique metric");

        Self {
            steps_published: counter(
                &registry,
                "mapfleet_steps_published_total",
                "Steps handed to the broker.",
            ),
            steps_confirmed: counter(
                &registry,
                "mapfleet_steps_confirmed_total",
                "Steps the broker confirmed (persisted).",
            ),
            outcomes_published: counter(
                &registry,
                "mapfleet_outcomes_published_total",
                "Outcomes published and confirmed.",
            ),
            steps_consumed: counter(
                &registry,
                "mapfleet_steps_consumed_total",
                "Step deliveries a worker took.",
            ),
            steps_acked: counter(
                &registry,
                "mapfleet_steps_acked_total",
                "Step deliveries acked after their outcome was confirmed.",
            ),
            steps_requeued: counter(
                &registry,
                "mapfleet_steps_requeued_total",
                "Step deliveries nacked back to the queue after a transient failure.",
            ),
            steps_redelivered: counter(
                &registry,
                "mapfleet_steps_redelivered_total",
                "Step deliveries the broker marked as redelivered.",
            ),
            steps_rejected: counter(
                &registry,
                "mapfleet_steps_rejected_total",
                "Undecodable step deliveries rejected to the dead-letter queue.",
            ),
            step_batches_split: counter(
                &registry,
                "mapfleet_step_batches_split_total",
                "Step batches delivered again and published again as single steps.",
            ),
            steps_dead_lettered: counter(
                &registry,
                "mapfleet_steps_dead_lettered_total",
                "Steps found in the dead-letter queue.",
            ),
            tasks_in_flight: gauge(
                &registry,
                "mapfleet_tasks_in_flight",
                "Tasks running in this worker now.",
            ),
            iterations_in_flight: gauge(
                &registry,
                "mapfleet_iterations_in_flight",
                "Map iterations started and not finished.",
            ),
            outcome_duplicates: counter(
                &registry,
                "mapfleet_outcome_duplicates_total",
                "Outcomes dropped because their step was already applied (or is gone).",
            ),
            publish_failures,
            service_restarts,
            publish_confirm_duration,
            task_duration,
            redis_script_duration,
            fleet: FleetMetrics::register(&registry),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// Serves [`get`]'s metrics as `GET /metrics` on `addr` (port 0 picks one) until the task is
/// dropped or aborted. Returns the bound address.
///
/// A deliberately tiny HTTP/1.1 responder (one request per connection, then close): a
/// scrape endpoint needs nothing more, and it spares every binary an HTTP framework.
///
/// It has no authentication and no TLS, so an address other than loopback (`0.0.0.0`, a
/// public interface) is logged as a warning: anyone who reaches it reads the fleet's figures.
pub async fn serve(addr: SocketAddr) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    if let Some(warning) = exposure_warning(addr) {
        tracing::warn!(%addr, "{warning}");
    }
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream)).await;
            });
        }
    });
    Ok((local, handle))
}

/// What to say when `addr` is reachable from other machines; `None` for loopback.
pub fn exposure_warning(addr: SocketAddr) -> Option<&'static str> {
    if addr.ip().is_loopback() {
        return None;
    }
    Some(if addr.ip().is_unspecified() {
        "the metrics endpoint listens on every interface and has no authentication: \
         anyone who can reach this port reads it; bind it to 127.0.0.1 or a private network"
    } else {
        "the metrics endpoint listens on a non-loopback address and has no authentication: \
         anyone who can reach this port reads it"
    })
}

async fn answer(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) =
        if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                get().encode(),
            )
        } else {
            (
                "404 Not Found",
                "text/plain",
                "not found: try /metrics\n".to_string(),
            )
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_quiet() {
        assert!(exposure_warning("127.0.0.1:9100".parse().unwrap()).is_none());
        assert!(exposure_warning("[::1]:9100".parse().unwrap()).is_none());
        let all = exposure_warning("0.0.0.0:9100".parse().unwrap()).unwrap();
        assert!(all.contains("every interface") && all.contains("no authentication"));
        assert!(exposure_warning("[::]:9100".parse().unwrap()).is_some());
        assert!(exposure_warning("10.1.2.3:9100".parse().unwrap()).is_some());
    }

    #[test]
    fn every_registered_metric_is_in_the_catalogue() {
        get().fleet.started("test");
        get().fleet.executions("sm", 1, &["succeeded"]);
        let families = get().registry.gather();
        assert!(families.len() > 20, "{}", families.len());
        for f in families {
            let spec = spec_of(f.name()).unwrap_or_else(|| panic!("{} not catalogued", f.name()));
            let kind = match f.get_field_type() {
                prometheus::proto::MetricType::COUNTER => Kind::Counter,
                prometheus::proto::MetricType::GAUGE => Kind::Gauge,
                prometheus::proto::MetricType::HISTOGRAM => Kind::Histogram,
                other => panic!("{}: {other:?}", f.name()),
            };
            assert_eq!(spec.kind, kind, "{}", f.name());
            for m in f.get_metric() {
                let names: Vec<&str> = m.get_label().iter().map(|l| l.name()).collect();
                let mut want: Vec<&str> = spec.labels.to_vec();
                want.sort();
                assert_eq!(names, want, "{}", f.name());
            }
        }
        let text = get().encode();
        // Created at zero before anything happened.
        assert!(
            text.contains("mapfleet_map_items_total{status=\"failed\"} 0"),
            "{text}"
        );
        assert!(text.contains(
            "mapfleet_executions_finished_total{state_machine=\"sm\",status=\"aborted\"} 0"
        ));
        assert!(text.contains("mapfleet_build_info{process=\"test\",version=\""));
    }

    /// `docs/METRICS.md` documents exactly the catalogue.
    #[test]
    fn the_metrics_document_lists_the_catalogue() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/METRICS.md");
        let doc = std::fs::read_to_string(path).expect("docs/METRICS.md");
        let documented: std::collections::BTreeSet<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .filter(|n| n.starts_with("mapfleet_"))
            .collect();
        let catalogue: std::collections::BTreeSet<&str> =
            CATALOGUE.iter().map(|s| s.name).collect();
        assert_eq!(
            documented.difference(&catalogue).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "documented but not in the catalogue"
        );
        assert_eq!(
            catalogue.difference(&documented).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "in the catalogue but not in docs/METRICS.md"
        );
    }

    #[tokio::test]
    async fn serves_the_catalogue() {
        get().steps_published.inc();
        get()
            .task_duration
            .with_label_values(&["echo", "ok"])
            .observe(0.01);
        let (addr, handle) = serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.contains("mapfleet_steps_published_total"));
        assert!(out.contains("mapfleet_task_duration_seconds_bucket{outcome=\"ok\",task=\"echo\""));
        handle.abort();
    }
}
