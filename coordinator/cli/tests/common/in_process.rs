//! A fleet in this process: coordinators and workers, each supervised as the binaries run
//! them (`Coordinator::serve`, `consumer::serve`), on any broker and Redis a [`FleetConfig`]
//! names (TLS settings included); and the checks every fleet run must pass (unique event
//! ids, each iteration started and succeeded once). The one harness of the engine fixtures
//! on the fleet, the fault tests and the TLS and broker-restart tests.

use std::path::PathBuf;
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
use worker::task::Registry;
use worker::{RegistryOptions, default_registry};

/// How long [`InProcessFleet::stop`] waits for each service.
const STOP_LIMIT: Duration = Duration::from_secs(30);

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

/// What an [`InProcessFleet`] runs.
pub struct Services {
    pub coordinators: usize,
    pub workers: usize,
    /// Task slots (and prefetch) of each worker.
    pub worker_slots: usize,
    /// What every worker serves (registered as served, as `mapfleet-worker` does).
    pub registry: Registry,
    /// Workers are `TAG-N/PREFIX`.
    pub worker_tag: &'static str,
    /// The broker to declare the topology on when the services' own URL is not one to
    /// declare through (a proxy that will stall); theirs by default.
    pub declare_on: Option<String>,
}

impl Services {
    /// One coordinator and one worker with `worker_slots` slots serving the built-in tasks
    /// (`echo`, `sleep`, ...).
    pub fn one_each(worker_slots: usize) -> Services {
        Services {
            coordinators: 1,
            workers: 1,
            worker_slots,
            registry: default_registry(RegistryOptions { test_tasks: false }),
            worker_tag: "test-worker",
            declare_on: None,
        }
    }
}

/// Running coordinators and workers, and a client of their fleet.
pub struct InProcessFleet {
    pub fleet: FleetConfig,
    pub client: FleetClient,
    stops: Vec<oneshot::Sender<()>>,
    services: Vec<(String, JoinHandle<anyhow::Result<()>>)>,
}

impl InProcessFleet {
    /// [`InProcessFleet::start_with`] one coordinator and one worker of the built-in tasks.
    pub async fn start(fleet: FleetConfig, worker_slots: usize) -> anyhow::Result<InProcessFleet> {
        Self::start_with(fleet, Services::one_each(worker_slots)).await
    }

    /// Declares the topology (once, before the services start together: see
    /// `shared::testkit::declare_prefix`), registers the workers' resources and starts the
    /// services.
    pub async fn start_with(fleet: FleetConfig, s: Services) -> anyhow::Result<InProcessFleet> {
        Self::start_opts(fleet, s, ServiceOptions::default()).await
    }

    /// [`InProcessFleet::start_with`], the coordinators with `opts` (an object store for
    /// Distributed Maps, say).
    pub async fn start_opts(
        fleet: FleetConfig,
        s: Services,
        opts: ServiceOptions,
    ) -> anyhow::Result<InProcessFleet> {
        let declare_on = s.declare_on.as_deref().unwrap_or(&fleet.amqp_url);
        let conn = shared::amqp::connect_with(
            declare_on,
            &fleet.amqp_tls(),
            "test-declare",
            Duration::from_secs(30),
            std::future::pending(),
        )
        .await?;
        let channel = conn.create_channel().await?;
        shared::topology::declare(&channel, &fleet.topology()).await?;
        shared::amqp::close(&conn, "declared").await;

        let redis = shared::redis_schema::connect_with(&fleet.redis_url, &fleet.redis_tls())
            .await
            .context("the test's Redis")?;
        let resources: Vec<String> = s.registry.resources().map(str::to_string).collect();
        let mut running = InProcessFleet {
            client: FleetClient {
                conn: redis.clone(),
                keys: FleetKeys::new(&fleet.prefix),
                patience: Duration::from_secs(300),
            },
            fleet,
            stops: Vec::new(),
            services: Vec::new(),
        };
        for n in 0..s.workers {
            let worker_id = format!("{}-{n}/{}", s.worker_tag, running.fleet.prefix);
            shared::workers::register(
                &mut redis.clone(),
                &running.fleet.prefix,
                &worker_id,
                &resources,
                Duration::from_secs(3600),
            )
            .await?;
            let opts = ConsumerOptions {
                queues: vec!["default".into()],
                concurrency: s.worker_slots,
                prefetch: s.worker_slots as u16,
                grace: Duration::from_secs(1),
                worker_id,
                outcome_batch: 64,
                test_ack_delay: Duration::ZERO,
            };
            let (fleet, registry, shutdown) = (
                running.fleet.clone(),
                s.registry.clone(),
                running.shutdown(),
            );
            let worker = tokio::spawn(async move {
                Ok(consumer::serve(&fleet, registry, opts, &shutdown).await?)
            });
            running.services.push((format!("worker {n}"), worker));
        }
        for n in 0..s.coordinators {
            let (fleet, shutdown, opts) = (running.fleet.clone(), running.shutdown(), opts.clone());
            let coordinator =
                tokio::spawn(async move { Ok(Coordinator::serve(&fleet, opts, &shutdown).await?) });
            running
                .services
                .push((format!("coordinator {n}"), coordinator));
        }
        Ok(running)
    }

    /// A shutdown for one more service, requested by [`InProcessFleet::stop`].
    fn shutdown(&mut self) -> Shutdown {
        let (stop, stopped) = oneshot::channel::<()>();
        self.stops.push(stop);
        Shutdown::on(async {
            let _ = stopped.await;
        })
    }

    /// Submits `definition` with `input` as execution `name`; returns its ARN.
    pub async fn submit(
        &self,
        name: &str,
        definition: &Value,
        input: Value,
    ) -> anyhow::Result<String> {
        let info = ExecutionInfo::new("transport", name, input, chrono::Utc::now());
        self.submit_as(definition, &info).await?;
        Ok(info.execution_arn)
    }

    /// Submits `definition` as the execution `info` describes.
    pub async fn submit_as(&self, definition: &Value, info: &ExecutionInfo) -> anyhow::Result<()> {
        let def = parse_definition_value(definition).map_err(|e| anyhow::anyhow!("{e}"))?;
        self.client
            .submit(&definition.to_string(), &def, info)
            .await?;
        Ok(())
    }

    /// Waits for the execution to end, failing if a service stopped on its own first.
    pub async fn wait(&self, arn: &str, limit: Duration) -> anyhow::Result<ExecutionResult> {
        let ended = tokio::time::timeout(limit, self.client.wait(arn, None)).await;
        let stopped = self.stopped();
        anyhow::ensure!(
            stopped.is_empty(),
            "{} stopped on its own",
            stopped.join(", ")
        );
        Ok(ended.map_err(|_| anyhow::anyhow!("still running after {limit:?}"))??)
    }

    /// The services that stopped on their own (none should before [`InProcessFleet::stop`]).
    pub fn stopped(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|(_, service)| service.is_finished())
            .map(|(what, _)| what.clone())
            .collect()
    }

    /// Stops every service; their results (each waited for at most 30 s).
    pub async fn stop(self) -> Vec<(String, anyhow::Result<()>)> {
        for stop in self.stops {
            let _ = stop.send(());
        }
        let mut results = Vec::new();
        for (what, service) in self.services {
            let result = match tokio::time::timeout(STOP_LIMIT, service).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(anyhow::anyhow!("did not stop within {STOP_LIMIT:?}")),
            };
            results.push((what, result));
        }
        results
    }
}

/// Sends this process's logs (`MAPFLEET_LOG`, info by default) to a file named after
/// `name` and the process in the temporary directory, set up by the first call (later
/// calls return the same file).
pub fn log_to_file(name: &str) -> PathBuf {
    static LOG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("{name}-{}.log", std::process::id()));
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
