//! A coordinator and a worker (the harness's utility tasks) in the test process on a fresh
//! prefix of the real RabbitMQ and Redis on 127.0.0.1: the fleet that `api_fleet.rs` and
//! `api_activities.rs` run `mapfleet serve --redis` next to.

use std::sync::Arc;
use std::time::Duration;

use coordinator::fleet::service::{Coordinator, ServiceOptions};
use shared::config::FleetConfig;
use shared::supervise::Shutdown;
use worker::consumer::{self, ConsumerOptions};

use crate::common::TestExecutor;

/// A coordinator and a worker on `prefix`, in this process; stopped by [`Fleet::stop`].
pub struct Fleet {
    stop_worker: tokio::sync::oneshot::Sender<()>,
    stop_coordinator: tokio::sync::oneshot::Sender<()>,
    worker: tokio::task::JoinHandle<
        Result<(), shared::supervise::Error<worker::consumer::ConsumerError>>,
    >,
    service: tokio::task::JoinHandle<
        Result<(), shared::supervise::Error<coordinator::fleet::service::Error>>,
    >,
}

#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    fleet: FleetConfig,
}

impl Fleet {
    pub async fn start(prefix: &str, executor: Arc<TestExecutor>) -> Fleet {
        Self::start_opts(prefix, executor, ServiceOptions::default()).await
    }

    pub async fn start_opts(
        prefix: &str,
        executor: Arc<TestExecutor>,
        opts: ServiceOptions,
    ) -> Fleet {
        use clap::Parser;
        let fleet = Flags::parse_from([
            "api-fleet",
            "--prefix",
            prefix,
            "--amqp",
            &shared::testkit::amqp_url(),
            "--redis",
            &shared::testkit::redis_url(),
        ])
        .fleet;
        shared::testkit::declare(&fleet.amqp_url, &fleet.topology())
            .await
            .expect("declare the fleet's queues");
        let registry = executor.registry();
        let mut conn = shared::redis_schema::connect(&fleet.redis_url)
            .await
            .expect("Redis");
        let resources: Vec<String> = registry.resources().map(str::to_string).collect();
        shared::workers::register(
            &mut conn,
            prefix,
            "api-tests",
            &resources,
            Duration::from_secs(600),
        )
        .await
        .expect("register the worker");
        let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = {
            let fleet = fleet.clone();
            let opts = ConsumerOptions {
                queues: vec!["default".into()],
                concurrency: 8,
                prefetch: 8,
                grace: Duration::from_secs(1),
                worker_id: format!("api-tests/{prefix}"),
                outcome_batch: 64,
                test_ack_delay: Duration::ZERO,
            };
            let shutdown = Shutdown::on(async {
                let _ = worker_stopped.await;
            });
            tokio::spawn(async move { consumer::serve(&fleet, registry, opts, &shutdown).await })
        };
        let (stop_coordinator, coordinator_stopped) = tokio::sync::oneshot::channel::<()>();
        let service = {
            let shutdown = Shutdown::on(async {
                let _ = coordinator_stopped.await;
            });
            tokio::spawn(async move { Coordinator::serve(&fleet, opts, &shutdown).await })
        };
        Fleet {
            stop_worker,
            stop_coordinator,
            worker,
            service,
        }
    }

    pub async fn stop(self, prefix: &str) {
        let _ = self.stop_coordinator.send(());
        let _ = self.stop_worker.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.service).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.worker).await;
        if let Err(e) = shared::testkit::teardown(
            &shared::testkit::amqp_url(),
            &shared::testkit::redis_url(),
            prefix,
        )
        .await
        {
            eprintln!("could not clean up the fleet prefix {prefix}: {e:#}");
        }
    }
}
