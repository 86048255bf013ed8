//! One coordinator and one worker (the built-in `echo` and `sleep` tasks) in this process,
//! both supervised as the binaries run them (`Coordinator::serve`, `consumer::serve`), on
//! any broker and Redis the [`FleetConfig`] names (TLS settings included); and the checks
//! every fleet run must pass: unique event ids, each iteration started and succeeded once.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use coordinator::asl::parse::parse_definition_value;
use coordinator::embedded::ExecutionResult;
use coordinator::engine::ExecutionInfo;
use coordinator::engine::history::Event;
use coordinator::fleet::client::FleetClient;
use coordinator::fleet::keys::FleetKeys;
use coordinator::fleet::service::{Coordinator, ServiceOptions};
use serde_json::{Value, json};
use shared::config::FleetConfig;
use shared::supervise::Shutdown;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use worker::consumer::{self, ConsumerOptions};
use worker::{RegistryOptions, default_registry};

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    fleet: FleetConfig,
}

/// Fleet settings from command-line style flags (`--amqp`, `--redis`, `--prefix`, ...).
pub fn config(flags: &[&str]) -> FleetConfig {
    let mut args = vec!["test"];
    args.extend_from_slice(flags);
    Flags::try_parse_from(args).expect("valid flags").fleet
}

/// A running coordinator and worker.
pub struct InProcessFleet {
    pub fleet: FleetConfig,
    pub client: FleetClient,
    stops: Vec<oneshot::Sender<()>>,
    services: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

impl InProcessFleet {
    /// Declares the topology (once, before the services start together), registers the
    /// worker's resources and starts both services.
    pub async fn start(fleet: FleetConfig, worker_slots: usize) -> anyhow::Result<InProcessFleet> {
        let conn = shared::amqp::connect_with(
            &fleet.amqp_url,
            &fleet.amqp_tls(),
            "test-declare",
            Duration::from_secs(30),
            std::future::pending(),
        )
        .await?;
        let channel = conn.create_channel().await?;
        shared::topology::declare(&channel, &fleet.topology()).await?;
        let _ = conn.close(200, "declared".into()).await;

        let redis = shared::redis_schema::connect_with(&fleet.redis_url, &fleet.redis_tls())
            .await
            .context("the test's Redis")?;
        let registry = default_registry(RegistryOptions { test_tasks: false });
        let resources: Vec<String> = registry.resources().map(str::to_string).collect();
        let worker_id = format!("test-worker/{}", fleet.prefix);
        shared::workers::register(
            &mut redis.clone(),
            &fleet.prefix,
            &worker_id,
            &resources,
            Duration::from_secs(3600),
        )
        .await?;
        let client = FleetClient {
            conn: redis,
            keys: FleetKeys::new(&fleet.prefix),
            patience: Duration::from_secs(300),
        };

        let mut stops = Vec::new();
        let mut services = Vec::new();
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        let worker = {
            let fleet = fleet.clone();
            let shutdown = Shutdown::on(async {
                let _ = stopped.await;
            });
            let opts = ConsumerOptions {
                queues: vec!["default".into()],
                concurrency: worker_slots,
                prefetch: worker_slots as u16,
                grace: Duration::from_secs(1),
                worker_id,
                outcome_batch: 64,
                test_ack_delay: Duration::ZERO,
            };
            tokio::spawn(async move { consumer::serve(&fleet, registry, opts, &shutdown).await })
        };
        services.push(("worker", worker));
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        let coordinator = {
            let fleet = fleet.clone();
            let shutdown = Shutdown::on(async {
                let _ = stopped.await;
            });
            tokio::spawn(async move {
                Coordinator::serve(&fleet, ServiceOptions::default(), &shutdown).await
            })
        };
        services.push(("coordinator", coordinator));
        Ok(InProcessFleet {
            fleet,
            client,
            stops,
            services,
        })
    }

    /// Submits `definition` with `input`; returns the execution's ARN.
    pub async fn submit(
        &self,
        name: &str,
        definition: &Value,
        input: Value,
    ) -> anyhow::Result<String> {
        let def = parse_definition_value(definition).map_err(|e| anyhow::anyhow!("{e}"))?;
        let info = ExecutionInfo::new("transport", name, input, chrono::Utc::now());
        self.client
            .submit(&definition.to_string(), &def, &info)
            .await?;
        Ok(info.execution_arn)
    }

    /// Waits for the execution to end, failing if a service stopped on its own first.
    pub async fn wait(&self, arn: &str, limit: Duration) -> anyhow::Result<ExecutionResult> {
        let ended = tokio::time::timeout(limit, self.client.wait(arn, None)).await;
        for (what, service) in &self.services {
            anyhow::ensure!(!service.is_finished(), "the {what} stopped on its own");
        }
        ended.map_err(|_| anyhow::anyhow!("still running after {limit:?}"))?
    }

    /// Stops both services; their results.
    pub async fn stop(self) -> Vec<(&'static str, anyhow::Result<()>)> {
        for stop in self.stops {
            let _ = stop.send(());
        }
        let mut results = Vec::new();
        for (what, service) in self.services {
            results.push((what, service.await.unwrap_or_else(|e| Err(e.into()))));
        }
        results
    }
}

/// A Map of `n` items, each a Task on `resource` with `parameters`.
pub fn map_of(resource: &str, parameters: Value) -> Value {
    json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 0,
        "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": resource, "Parameters": parameters, "End": true}}},
        "End": true}}})
}

/// The history's own checks: unique event ids, and each of `n` iterations started and
/// succeeded exactly once.
pub fn assert_clean_history(events: &[Event], n: usize) {
    if let Err(e) = coordinator::engine::history::check_exactly_once(events, n) {
        panic!("{e}");
    }
}
