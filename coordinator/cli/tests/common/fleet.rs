//! The fleet mode of the engine fixtures: each fixture runs on a fleet of its own (a
//! fresh prefix on the real RabbitMQ and Redis on 127.0.0.1) made of one coordinator
//! service and one worker consumer, both in this process, the worker serving the utility
//! resources from the fixture's own [`TestExecutor`] (so `flaky` and `count` keep their
//! per-run counters). The prefix's queues and keys are deleted afterwards.
//!
//! Time is real here: Waits, retries and timeouts take as long as they say.

use std::sync::Arc;
use std::time::Duration;

use coordinator::asl::parse::parse_definition_value;
use coordinator::engine::ExecutionInfo;
use serde_json::Value;

use super::in_process::{InProcessFleet, Services, config, log_to_file};
use super::{EXECUTION_NAME, Ended, MACHINE_NAME, Mode, START_TIME, TestExecutor};

/// The longest a fixture may run on the fleet before it counts as hung.
const FIXTURE_LIMIT: Duration = Duration::from_secs(120);

/// Task slots of the worker: above every fixture's MaxConcurrency, so `count` measures the
/// Map's limit and not the worker's.
const WORKER_SLOTS: usize = 64;

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
        // A definition the fleet would reject is reported as such, before any fleet starts.
        parse_definition_value(definition).map_err(|e| e.to_string())?;
        let prefix = shared::testkit::unique_prefix("engine-fx");
        let log = log_to_file("mapfleet-engine-fleet");
        // Bounded as a whole, teardown included: a fixture that hangs anywhere is a failure
        // that names it, never a test that runs until CI's limit.
        let result = match tokio::time::timeout(
            FIXTURE_LIMIT + Duration::from_secs(60),
            run_on(&prefix, definition, input, executor),
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
            eprintln!(
                "could not clean up the fleet prefix {prefix}: {}",
                shared::supervise::Chain(&e)
            );
        }
        result.map_err(|e| {
            format!(
                "the fleet run failed: {e:#}\n  warnings and errors logged so far (all fixtures):\n{}",
                problems_in(&log)
            )
        })
    }
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
    input: Value,
    executor: Arc<TestExecutor>,
) -> anyhow::Result<Ended> {
    let fleet = config(&[
        "--prefix",
        prefix,
        "--amqp",
        &shared::testkit::amqp_url(),
        "--redis",
        &shared::testkit::redis_url(),
    ]);
    // One worker serving the utility resources from the fixture's own executor, and one
    // coordinator, started again after a broker failure as the binaries do.
    let running = InProcessFleet::start_with(
        fleet,
        Services {
            registry: executor.registry(),
            worker_tag: "engine-fixtures",
            ..Services::one_each(WORKER_SLOTS)
        },
    )
    .await?;
    let info = ExecutionInfo::new(MACHINE_NAME, EXECUTION_NAME, input, chrono::Utc::now());
    running.submit_as(definition, &info).await?;
    let ended = tokio::time::timeout(
        FIXTURE_LIMIT,
        running.client.wait(&info.execution_arn, None),
    )
    .await;

    // A coordinator or worker that stopped on its own explains a hang.
    let stopped = running.stopped();
    let client = running.client.clone();
    let results = running.stop().await;

    let ended = match ended {
        Ok(r) => r?,
        Err(_) => anyhow::bail!(
            "still RUNNING after {FIXTURE_LIMIT:?}; {}; services: {results:?}",
            if stopped.is_empty() {
                "all were running".to_string()
            } else {
                format!("{} had stopped", stopped.join(", "))
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
