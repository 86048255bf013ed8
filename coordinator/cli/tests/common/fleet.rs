//! The fleet mode of the engine fixtures: each fixture runs on a fleet of its own (a
//! fresh prefix on the real RabbitMQ and Redis on 127.0.0.1) made of one coordinator
//! service and one worker consumer, both in this process, the worker serving the utility
//! resources from the fixture's own [`TestExecutor`] (so `flaky` and `count` keep their
//! per-run counters). The prefix's queues and keys are deleted afterwards.
//!
//! Time is real here: Waits, retries and timeouts take as long as they say.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use coordinator::asl::parse::parse_definition_value;
use coordinator::engine::ExecutionInfo;
use coordinator::fleet::client::FleetClient;
use coordinator::fleet::service::{Coordinator, ServiceOptions};
use serde_json::Value;
use shared::config::FleetConfig;
use shared::supervise::Shutdown;
use worker::consumer::{self, ConsumerOptions};

use super::{EXECUTION_NAME, Ended, MACHINE_NAME, Mode, START_TIME, TestExecutor};

/// The longest a fixture may run on the fleet before it counts as hung.
const FIXTURE_LIMIT: Duration = Duration::from_secs(120);

/// Task slots of the worker: above every fixture's MaxConcurrency, so `count` measures the
/// Map's limit and not the worker's.
const WORKER_SLOTS: usize = 64;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    fleet: FleetConfig,
}

/// Runs each fixture on a fleet of its own; see the module docs.
pub struct Fleet;

#[async_trait::async_trait]
impl Mode for Fleet {
    fn name(&self) -> &'static str {
        "fleet"
    }

    /// Timer polling, broker round trips and a loaded machine add up to a few tenths of a
    /// second over a fixture's retries and waits; distinct expected times are a second or
    /// more apart.
    fn clock_slack(&self) -> Duration {
        Duration::from_millis(750)
    }

    async fn run(
        &self,
        definition: &Value,
        input: Value,
        executor: Arc<TestExecutor>,
    ) -> Result<Ended, String> {
        let def = parse_definition_value(definition).map_err(|e| e.to_string())?;
        let prefix = shared::testkit::unique_prefix("engine-fx");
        let log = log_file();
        // Bounded as a whole, teardown included: a fixture that hangs anywhere is a failure
        // that names it, never a test that runs until CI's limit.
        let result = match tokio::time::timeout(
            FIXTURE_LIMIT + Duration::from_secs(60),
            run_on(&prefix, definition, def, input, executor),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "the fixture's fleet did not finish (run and shut down) within {:?}",
                FIXTURE_LIMIT + Duration::from_secs(60)
            )),
        };
        let amqp = shared::testkit::amqp_url();
        let redis = shared::testkit::redis_url();
        if let Err(e) = shared::testkit::teardown(&amqp, &redis, &prefix).await {
            eprintln!("could not clean up the fleet prefix {prefix}: {e:#}");
        }
        result.map_err(|e| {
            format!(
                "the fleet run failed: {e:#}\n  warnings and errors logged so far (all fixtures):\n{}",
                problems_in(&log)
            )
        })
    }
}

/// Where this test process's coordinators and workers log (`MAPFLEET_LOG`, info by default);
/// set up by the first fixture.
fn log_file() -> std::path::PathBuf {
    static LOG: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("mapfleet-engine-fleet-{}.log", std::process::id()));
        if let Ok(file) = std::fs::File::create(&path) {
            let filter = tracing_subscriber::EnvFilter::try_from_env("MAPFLEET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init();
        }
        path
    })
    .clone()
}

/// The last warnings and errors in the log, indented.
fn problems_in(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    let tail = &lines[lines.len().saturating_sub(30)..];
    if tail.is_empty() {
        return "    (none)".into();
    }
    tail.iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn run_on(
    prefix: &str,
    definition: &Value,
    def: coordinator::asl::definition::StateMachine,
    input: Value,
    executor: Arc<TestExecutor>,
) -> anyhow::Result<Ended> {
    let flags = Flags::parse_from([
        "engine-fleet",
        "--prefix",
        prefix,
        "--amqp",
        &shared::testkit::amqp_url(),
        "--redis",
        &shared::testkit::redis_url(),
    ]);
    let fleet = flags.fleet;
    // Declared once here, before the worker and the coordinator start together (see
    // `shared::testkit::declare_prefix`).
    {
        let conn =
            shared::amqp::connect(&fleet.amqp_url, "engine-fixtures", fleet.connect_timeout())
                .await?;
        let channel = conn.create_channel().await?;
        shared::topology::declare(&channel, &fleet.topology()).await?;
        shared::amqp::close(&conn, "declared").await;
    }

    // The worker: the utility resources, registered as served (as `mapfleet-worker` does).
    let registry = executor.registry();
    let mut conn = shared::redis_schema::connect(&fleet.redis_url).await?;
    let resources: Vec<String> = registry.resources().map(str::to_string).collect();
    shared::workers::register(
        &mut conn,
        prefix,
        "engine-fixtures",
        &resources,
        Duration::from_secs(600),
    )
    .await?;
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let fleet = fleet.clone();
        let opts = ConsumerOptions {
            queues: vec!["default".into()],
            concurrency: WORKER_SLOTS,
            prefetch: WORKER_SLOTS as u16,
            grace: Duration::from_secs(1),
            worker_id: format!("engine-fixtures/{prefix}"),
            outcome_batch: 64,
            test_ack_delay: Duration::ZERO,
        };
        let shutdown = Shutdown::on(async {
            let _ = worker_stopped.await;
        });
        tokio::spawn(async move { consumer::serve(&fleet, registry, opts, &shutdown).await })
    };

    // Started again after a broker failure, as `mapfleet coordinator` does.
    let (stop_coordinator, coordinator_stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = Shutdown::on(async {
        let _ = coordinator_stopped.await;
    });
    let service = {
        let fleet = fleet.clone();
        tokio::spawn(async move {
            Coordinator::serve(&fleet, ServiceOptions::default(), &shutdown).await
        })
    };

    let client = FleetClient::connect(&fleet.redis_url, prefix).await?;
    let info = ExecutionInfo::new(MACHINE_NAME, EXECUTION_NAME, input, chrono::Utc::now());
    client.submit(&definition.to_string(), &def, &info).await?;
    let ended = tokio::time::timeout(FIXTURE_LIMIT, client.wait(&info.execution_arn, None)).await;

    // A coordinator or worker that stopped on its own explains a hang.
    let early = |what: &str, finished: bool| finished.then(|| format!("the {what} had stopped"));
    let stopped: Vec<String> = [
        early("coordinator", service.is_finished()),
        early("worker", worker.is_finished()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let _ = stop_coordinator.send(());
    let _ = stop_worker.send(());
    let service_result = service.await;
    let worker_result = worker.await;

    let ended = match ended {
        Ok(r) => r?,
        Err(_) => anyhow::bail!(
            "still RUNNING after {FIXTURE_LIMIT:?}; {}; coordinator: {service_result:?}; worker: {worker_result:?}",
            if stopped.is_empty() {
                "both were running".to_string()
            } else {
                stopped.join(", ")
            }
        ),
    };
    let events = client.history(&info.execution_arn).await?;
    let mut outcome = Ended::of(ended.status, ended.output, ended.error, &events);
    // Report times as if the execution had started when the fixtures say it did.
    let shift = Shift {
        from: info.start_time,
        to: START_TIME.parse().expect("START_TIME is RFC 3339"),
        until: chrono::Utc::now(),
    };
    if let Some(output) = &mut outcome.output {
        shift.apply(output);
    }
    for event in &mut outcome.events {
        shift.apply(event);
    }
    Ok(outcome)
}

/// Moves the timestamps this run produced (those between its start and its end, so times
/// that came with the input stay as they are) from `from` to `to`, in JSON text too.
struct Shift {
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
}

impl Shift {
    fn apply(&self, v: &mut Value) {
        match v {
            Value::Object(m) => m.values_mut().for_each(|v| self.apply(v)),
            Value::Array(a) => a.iter_mut().for_each(|v| self.apply(v)),
            Value::String(s) => {
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                    let t = t.with_timezone(&chrono::Utc);
                    let margin = chrono::Duration::seconds(1);
                    if t >= self.from - margin && t <= self.until + margin {
                        *s = (self.to + (t - self.from))
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    }
                } else if (s.starts_with('{') || s.starts_with('['))
                    && let Ok(mut inner) = serde_json::from_str::<Value>(s)
                {
                    self.apply(&mut inner);
                    *s = inner.to_string();
                }
            }
            _ => {}
        }
    }
}
