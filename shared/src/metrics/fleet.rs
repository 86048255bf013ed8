//! The metrics operators alert on: executions and Map items by status, step latency and
//! queue wait, broker backlog, worker slots, coordinator batches and leases, Redis memory
//! and script errors, build info. Registered into the process's one registry next to the
//! plumbing metrics of [`super::Metrics`]; [`CATALOGUE`] lists both, and `docs/METRICS.md`
//! documents them (a test keeps the three in step).
//!
//! Counters whose label values are known up front are created at zero when the process
//! starts ([`FleetMetrics::register`]), so `rate()` and `increase()` see the first event.
//! Per state machine, every status is created at zero the first time a coordinator
//! counts an execution of it.

use std::time::{Duration, Instant};

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// What kind of series a catalogue entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The type Prometheus's text format names it by.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric of the catalogue: its exposed name, kind, labels, who records it, and what
/// it means.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub who: &'static str,
    pub help: &'static str,
}

const fn spec(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    who: &'static str,
    help: &'static str,
) -> Spec {
    Spec {
        name,
        kind,
        labels,
        who,
        help,
    }
}

use Kind::{Counter, Gauge, Histogram as Hist};

/// Every metric a mapfleet process exports. Names are what a scrape shows (counters end in
/// `_total`; a histogram adds `_bucket`, `_sum` and `_count`).
pub const CATALOGUE: &[Spec] = &[
    // Plumbing (registered in `super::Metrics::new`).
    spec(
        "mapfleet_steps_published_total",
        Counter,
        &[],
        "coordinator",
        "Steps handed to the broker.",
    ),
    spec(
        "mapfleet_steps_confirmed_total",
        Counter,
        &[],
        "coordinator",
        "Steps the broker confirmed (persisted).",
    ),
    spec(
        "mapfleet_outcomes_published_total",
        Counter,
        &[],
        "worker",
        "Outcomes published and confirmed.",
    ),
    spec(
        "mapfleet_publish_failures_total",
        Counter,
        &["reason"],
        "coordinator, worker",
        "Failed publish attempts, by reason (each may be retried).",
    ),
    spec(
        "mapfleet_publish_confirm_duration_seconds",
        Hist,
        &[],
        "coordinator, worker",
        "From publish to the broker's confirm.",
    ),
    spec(
        "mapfleet_steps_consumed_total",
        Counter,
        &[],
        "worker",
        "Step deliveries a worker took.",
    ),
    spec(
        "mapfleet_steps_acked_total",
        Counter,
        &[],
        "worker",
        "Step deliveries acked after their outcome was confirmed.",
    ),
    spec(
        "mapfleet_steps_requeued_total",
        Counter,
        &[],
        "worker",
        "Step deliveries nacked back to the queue after a transient failure.",
    ),
    spec(
        "mapfleet_steps_redelivered_total",
        Counter,
        &[],
        "worker",
        "Step deliveries the broker marked as redelivered.",
    ),
    spec(
        "mapfleet_steps_rejected_total",
        Counter,
        &[],
        "worker",
        "Undecodable step deliveries rejected to the dead-letter queue.",
    ),
    spec(
        "mapfleet_step_batches_split_total",
        Counter,
        &[],
        "worker",
        "Step batches delivered again and published again as single steps.",
    ),
    spec(
        "mapfleet_steps_dead_lettered_total",
        Counter,
        &[],
        "coordinator",
        "Steps found in the dead-letter queue (each fails its state with Mapfleet.StepDeadLettered).",
    ),
    spec(
        "mapfleet_task_duration_seconds",
        Hist,
        &["task", "outcome"],
        "worker",
        "Time a worker spent running a task, by task name and outcome.",
    ),
    spec(
        "mapfleet_tasks_in_flight",
        Gauge,
        &[],
        "worker",
        "Tasks running in this process now: the worker's busy slots.",
    ),
    spec(
        "mapfleet_iterations_in_flight",
        Gauge,
        &[],
        "coordinator",
        "Map iterations started and not finished, as counted by this coordinator (sum over coordinators).",
    ),
    spec(
        "mapfleet_outcome_duplicates_total",
        Counter,
        &[],
        "coordinator",
        "Outcomes dropped because their step was already applied (or is gone).",
    ),
    spec(
        "mapfleet_redis_script_duration_seconds",
        Hist,
        &["script"],
        "coordinator, worker",
        "Round trip of one Redis script call, by script.",
    ),
    spec(
        "mapfleet_service_restarts_total",
        Counter,
        &["service"],
        "coordinator, worker",
        "Times this process started its service again after a broker or Redis failure.",
    ),
    // What operators alert on (registered here).
    spec(
        "mapfleet_build_info",
        Gauge,
        &["process", "version"],
        "all",
        "Always 1; the labels name the process kind and its version.",
    ),
    spec(
        "mapfleet_process_start_time_seconds",
        Gauge,
        &["process"],
        "all",
        "Unix time the process started (a change means a restart).",
    ),
    spec(
        "mapfleet_executions_started_total",
        Counter,
        &["state_machine"],
        "coordinator",
        "Executions started, by state machine name.",
    ),
    spec(
        "mapfleet_executions_finished_total",
        Counter,
        &["state_machine", "status"],
        "coordinator",
        "Executions ended, by state machine name and status (succeeded, failed, timed_out, aborted).",
    ),
    spec(
        "mapfleet_map_items_total",
        Counter,
        &["status"],
        "coordinator",
        "Map iterations by event: started, succeeded, failed, aborted.",
    ),
    spec(
        "mapfleet_step_latency_seconds",
        Hist,
        &[],
        "coordinator",
        "From a step's publish to its outcome applied to its execution (queue wait + task + outcome's way back).",
    ),
    spec(
        "mapfleet_step_queue_wait_seconds",
        Hist,
        &[],
        "worker",
        "From a step's publish to a worker taking it (clocks of two machines: keep them in sync).",
    ),
    spec(
        "mapfleet_queue_messages_ready",
        Gauge,
        &["queue"],
        "coordinator",
        "Messages ready in a fleet queue (steps queues, outcomes, dead letters), polled every 5 s; every coordinator reports it: aggregate with max.",
    ),
    spec(
        "mapfleet_queue_consumers",
        Gauge,
        &["queue"],
        "coordinator",
        "Consumers attached to a fleet queue, polled with the backlog.",
    ),
    spec(
        "mapfleet_queue_poll_errors_total",
        Counter,
        &[],
        "coordinator",
        "Backlog polls that failed (the queue gauges then keep their last value).",
    ),
    spec(
        "mapfleet_workers_live",
        Gauge,
        &[],
        "coordinator",
        "Workers whose registration is live (renewed in the last 15 s).",
    ),
    spec(
        "mapfleet_resource_workers_live",
        Gauge,
        &["resource"],
        "coordinator",
        "Live workers serving each task resource that some worker served (0 when the last one went).",
    ),
    spec(
        "mapfleet_worker_slots",
        Gauge,
        &[],
        "worker",
        "Task slots of this worker (busy ones: mapfleet_tasks_in_flight).",
    ),
    spec(
        "mapfleet_coordinator_batch_duration_seconds",
        Hist,
        &[],
        "coordinator",
        "One batch of one execution: read, run, commit (publishing overlaps the next batch).",
    ),
    spec(
        "mapfleet_lease_takeovers_total",
        Counter,
        &[],
        "coordinator",
        "Leases taken on executions whose previous holder left steps unpublished (it died or stalled).",
    ),
    spec(
        "mapfleet_leases_lost_total",
        Counter,
        &[],
        "coordinator",
        "Batches dropped because the execution's lease lapsed under this coordinator.",
    ),
    spec(
        "mapfleet_redis_used_memory_bytes",
        Gauge,
        &[],
        "coordinator",
        "Redis INFO used_memory, polled every 5 s.",
    ),
    spec(
        "mapfleet_redis_maxmemory_bytes",
        Gauge,
        &[],
        "coordinator",
        "Redis INFO maxmemory (0: no limit), polled every 5 s.",
    ),
    spec(
        "mapfleet_redis_script_errors_total",
        Counter,
        &["script", "kind"],
        "coordinator, worker",
        "Redis script calls that failed, by script and kind (reply: Redis refused or the script raised; connection: the call did not get through).",
    ),
];

/// The catalogue entry named `name` (as exposed, with `_total` on counters).
pub fn spec_of(name: &str) -> Option<&'static Spec> {
    CATALOGUE.iter().find(|s| s.name == name)
}

/// Whether `series` (a name as it appears in a scrape or a query: a histogram's `_bucket`,
/// `_sum` and `_count` included) is one of the catalogue's.
pub fn is_catalogued(series: &str) -> bool {
    CATALOGUE.iter().any(|s| {
        s.name == series
            || (s.kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| series.strip_suffix(suffix) == Some(s.name)))
    })
}

/// Execution statuses as labels.
pub const EXECUTION_STATUSES: [&str; 4] = ["succeeded", "failed", "timed_out", "aborted"];
/// Map item events as labels.
pub const ITEM_STATUSES: [&str; 4] = ["started", "succeeded", "failed", "aborted"];
/// The scripts a coordinator runs (their error counters start at zero).
const COORDINATOR_SCRIPTS: [&str; 5] = [
    "apply_to_inbox",
    "await_steps",
    "claim_timers",
    "complete_timer",
    "commit",
];

/// Latency buckets of a step's whole trip, 1 ms to 10 min.
const STEP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// The operator-facing metrics (see the module docs).
pub struct FleetMetrics {
    pub build_info: IntGaugeVec,
    pub process_start_time: IntGaugeVec,
    pub executions_started: IntCounterVec,
    pub executions_finished: IntCounterVec,
    pub map_items: IntCounterVec,
    pub step_latency: Histogram,
    pub step_queue_wait: Histogram,
    pub queue_messages_ready: IntGaugeVec,
    pub queue_consumers: IntGaugeVec,
    pub queue_poll_errors: IntCounter,
    pub workers_live: IntGauge,
    pub resource_workers_live: IntGaugeVec,
    pub worker_slots: IntGauge,
    pub batch_duration: Histogram,
    pub lease_takeovers: IntCounter,
    pub leases_lost: IntCounter,
    pub redis_used_memory: IntGauge,
    pub redis_maxmemory: IntGauge,
    pub redis_script_errors: IntCounterVec,
}

fn opts(name: &str) -> Opts {
    let s = spec_of(name).unwrap_or_else(|| panic!("{name} is not in the catalogue"));
    Opts::new(s.name, s.help)
}

fn labels(name: &str) -> &'static [&'static str] {
    spec_of(name).map(|s| s.labels).unwrap_or(&[])
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn counter(r: &Registry, name: &str) -> IntCounter {
    reg(r, IntCounter::with_opts(opts(name)).expect("valid metric"))
}

fn counter_vec(r: &Registry, name: &str) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(opts(name), labels(name)).expect("valid metric"),
    )
}

fn gauge(r: &Registry, name: &str) -> IntGauge {
    reg(r, IntGauge::with_opts(opts(name)).expect("valid metric"))
}

fn gauge_vec(r: &Registry, name: &str) -> IntGaugeVec {
    reg(
        r,
        IntGaugeVec::new(opts(name), labels(name)).expect("valid metric"),
    )
}

fn histogram(r: &Registry, name: &str, buckets: &[f64]) -> Histogram {
    let o = opts(name);
    let h = HistogramOpts::new(o.name, o.help).buckets(buckets.to_vec());
    reg(r, Histogram::with_opts(h).expect("valid metric"))
}

impl FleetMetrics {
    /// Registers every operator metric in `registry`, label sets known up front at zero.
    pub fn register(registry: &Registry) -> FleetMetrics {
        let m = FleetMetrics {
            build_info: gauge_vec(registry, "mapfleet_build_info"),
            process_start_time: gauge_vec(registry, "mapfleet_process_start_time_seconds"),
            executions_started: counter_vec(registry, "mapfleet_executions_started_total"),
            executions_finished: counter_vec(registry, "mapfleet_executions_finished_total"),
            map_items: counter_vec(registry, "mapfleet_map_items_total"),
            step_latency: histogram(registry, "mapfleet_step_latency_seconds", STEP_BUCKETS),
            step_queue_wait: histogram(registry, "mapfleet_step_queue_wait_seconds", STEP_BUCKETS),
            queue_messages_ready: gauge_vec(registry, "mapfleet_queue_messages_ready"),
            queue_consumers: gauge_vec(registry, "mapfleet_queue_consumers"),
            queue_poll_errors: counter(registry, "mapfleet_queue_poll_errors_total"),
            workers_live: gauge(registry, "mapfleet_workers_live"),
            resource_workers_live: gauge_vec(registry, "mapfleet_resource_workers_live"),
            worker_slots: gauge(registry, "mapfleet_worker_slots"),
            batch_duration: histogram(
                registry,
                "mapfleet_coordinator_batch_duration_seconds",
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            lease_takeovers: counter(registry, "mapfleet_lease_takeovers_total"),
            leases_lost: counter(registry, "mapfleet_leases_lost_total"),
            redis_used_memory: gauge(registry, "mapfleet_redis_used_memory_bytes"),
            redis_maxmemory: gauge(registry, "mapfleet_redis_maxmemory_bytes"),
            redis_script_errors: counter_vec(registry, "mapfleet_redis_script_errors_total"),
        };
        for status in ITEM_STATUSES {
            m.map_items.with_label_values(&[status]);
        }
        for script in COORDINATOR_SCRIPTS {
            for kind in ["reply", "connection"] {
                m.redis_script_errors.with_label_values(&[script, kind]);
            }
        }
        m
    }

    /// Marks this process as `process` (coordinator, worker, mapfleet) of this build, and
    /// records its start time. Call once at start-up.
    pub fn started(&self, process: &str) {
        self.build_info
            .with_label_values(&[process, env!("CARGO_PKG_VERSION")])
            .set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.process_start_time
            .with_label_values(&[process])
            .set(now);
    }

    /// Counts executions of `state_machine` started and ended (`ended` by status label, see
    /// [`EXECUTION_STATUSES`]). The first count for a state machine creates all of its
    /// series at zero.
    pub fn executions(&self, state_machine: &str, started: u64, ended: &[&str]) {
        let first = self
            .executions_started
            .get_metric_with_label_values(&[state_machine])
            .map(|c| c.get() == 0)
            .unwrap_or(true);
        if first {
            for status in EXECUTION_STATUSES {
                self.executions_finished
                    .with_label_values(&[state_machine, status]);
            }
        }
        self.executions_started
            .with_label_values(&[state_machine])
            .inc_by(started);
        for status in ended {
            self.executions_finished
                .with_label_values(&[state_machine, status])
                .inc();
        }
    }

    /// Records a step's latency from its publish (`published_ms`, Unix ms) to now, into
    /// `histogram`; nothing for steps of builds that did not stamp it.
    pub fn since_publish(histogram: &Histogram, published_ms: Option<u64>) {
        if let Some(at) = published_ms {
            let now = crate::now_ms();
            histogram.observe(Duration::from_millis(now.saturating_sub(at)).as_secs_f64());
        }
    }

    /// Records one Redis script call's round trip and, when it failed, its error.
    pub fn script_call<T>(&self, script: &str, started: Instant, result: &redis::RedisResult<T>) {
        super::get()
            .redis_script_duration
            .with_label_values(&[script])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = result {
            let kind = if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                "connection"
            } else {
                "reply"
            };
            self.redis_script_errors
                .with_label_values(&[script, kind])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_names_follow_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for s in CATALOGUE {
            assert!(seen.insert(s.name), "{} twice", s.name);
            assert!(s.name.starts_with("mapfleet_"), "{}", s.name);
            assert_eq!(
                s.kind == Kind::Counter,
                s.name.ends_with("_total"),
                "{}: counters, and only they, end in _total",
                s.name
            );
            for l in s.labels {
                // Never a label per execution, item or object.
                assert!(
                    !["execution", "item", "cursor", "key", "worker_id"].contains(l),
                    "{}: label {l} has unbounded cardinality",
                    s.name
                );
            }
        }
        assert!(is_catalogued("mapfleet_step_latency_seconds_bucket"));
        assert!(is_catalogued("mapfleet_map_items_total"));
        assert!(!is_catalogued("mapfleet_map_items_total_bucket"));
        assert!(!is_catalogued("mapfleet_nothing"));
    }
}
