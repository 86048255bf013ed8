//! `mapfleet-worker`: parse flags, start logging and metrics, consume until SIGTERM.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use shared::config::FleetConfig;
use worker::consumer::{self, ConsumerOptions};
use worker::{RegistryOptions, default_registry};

// The same allocator as the coordinator: a worker's echo step is mostly (de)serialisation,
// i.e. small allocations.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A stateless mapfleet worker: consumes task steps from RabbitMQ, runs them, publishes
/// each outcome and then acks the step.
#[derive(Parser)]
#[command(name = "mapfleet-worker", version)]
struct Cli {
    #[command(flatten)]
    fleet: FleetConfig,

    /// Steps queues to consume, by route name: `default` takes every resource without a
    /// `--route`; a route name takes the resources routed to it.
    #[arg(
        long,
        env = "MAPFLEET_WORKER_QUEUES",
        value_delimiter = ',',
        default_value = "default"
    )]
    queues: Vec<String>,

    /// Task slots: steps run at once. The prefetch defaults to this.
    #[arg(long, env = "MAPFLEET_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,

    /// Seconds in-flight steps get to finish after SIGTERM / ctrl-c; unfinished ones then
    /// go back to the queue.
    #[arg(long, env = "MAPFLEET_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    grace_secs: u64,

    /// Most outcomes sent as one broker message (1 disables batching). Only outcomes that
    /// are ready at the same moment are batched; none waits for company.
    #[arg(long, env = "MAPFLEET_OUTCOME_BATCH", default_value_t = 64)]
    outcome_batch: usize,

    /// Register test-only tasks (`crash`, which aborts the process). Never in production.
    #[arg(long, env = "MAPFLEET_TEST_TASKS")]
    enable_test_tasks: bool,

    /// Where the rider-photo tasks keep buckets (workers of one machine share it), and the
    /// face collection and metadata table with `--photo-stores data-dir`.
    #[arg(long, env = "MAPFLEET_DATA_DIR", default_value = "mapfleet-data")]
    data_dir: std::path::PathBuf,

    /// Serve only the utility tasks (no face models needed).
    #[arg(long, env = "MAPFLEET_NO_PHOTO_TASKS")]
    no_photo_tasks: bool,

    /// Object store and face engine of the photo tasks (local, or AWS / compatible endpoints).
    #[command(flatten)]
    providers: worker::providers::ProviderArgs,

    /// Where the photo tasks keep the face collection and the metadata table: `redis` (the
    /// fleet's `--redis` under `--prefix`, shared by every worker) or `data-dir` (this
    /// machine's `--data-dir` only: duplicates are then caught only among its workers).
    #[arg(
        long,
        env = "MAPFLEET_PHOTO_STORES",
        value_enum,
        default_value = "redis"
    )]
    photo_stores: PhotoStoresFlag,

    /// With `--photo-stores redis`: seconds a photo's analysis (faces, aligned crops,
    /// embeddings) stays in the fleet's Redis, so that a later step of the same photo on
    /// another worker does not decode and detect it again (0: not shared). Redis holds at
    /// most the photos analysed in that window, about 40 KB a face until its embedding is
    /// made, 1 KB after.
    #[arg(long, env = "MAPFLEET_SHARED_ANALYSIS_SECS", default_value_t = worker::photo::DEFAULT_SHARED_ANALYSIS.as_secs())]
    shared_analysis_secs: u64,

    /// Test hook (honoured only with --enable-test-tasks): milliseconds between an
    /// outcome's confirm and the step's ack.
    #[arg(long, hide = true, default_value_t = 0)]
    test_ack_delay_ms: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PhotoStoresFlag {
    Redis,
    DataDir,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The same log filter variable as the coordinator (`MAPFLEET_LOG=debug`,
    // `MAPFLEET_LOG=worker=debug,info`, ...); info by default.
    shared::process::init_tracing("info");

    let mut cli = Cli::parse();
    cli.fleet.resolve_credentials()?;
    let worker_id = consumer::default_worker_id();
    shared::metrics::get().fleet.started("worker");
    tracing::info!(config = %cli.fleet, %worker_id, queues = ?cli.queues, concurrency = cli.concurrency, "starting");
    // Installed first, so that SIGTERM at any time (while waiting for Redis or the broker
    // too) ends the process cleanly.
    let shutdown = shared::supervise::Shutdown::on(shared::process::shutdown_signal());
    // Redis first: a worker that cannot reach it must take no step (its resources would go
    // unregistered, and the photo tasks could not keep their stores).
    let redis_tls = cli.fleet.redis_tls();
    let redis = tokio::select! {
        conn = shared::redis_schema::connect_retrying(
            &cli.fleet.redis_url,
            &redis_tls,
            cli.fleet.connect_timeout(),
        ) => conn.with_context(|| {
            format!(
                "cannot connect to Redis at {}; this worker takes no step without it",
                shared::config::redact_url(&cli.fleet.redis_url)
            )
        })?,
        _ = shutdown.wait() => {
            tracing::info!("stopped before start-up completed");
            return Ok(());
        }
    };
    if let Some(addr) = cli.fleet.metrics_addr {
        let (bound, _server) = shared::metrics::serve(addr)
            .await
            .with_context(|| format!("binding metrics on {addr}"))?;
        tracing::info!(%bound, "serving /metrics");
    }
    let concurrency = cli.concurrency.max(1);
    let opts = ConsumerOptions {
        queues: cli.queues.clone(),
        concurrency,
        prefetch: cli
            .fleet
            .prefetch
            .unwrap_or(u16::try_from(concurrency).unwrap_or(u16::MAX)),
        grace: Duration::from_secs(cli.grace_secs),
        worker_id,
        outcome_batch: cli.outcome_batch,
        test_ack_delay: if cli.enable_test_tasks {
            Duration::from_millis(cli.test_ack_delay_ms)
        } else {
            Duration::ZERO
        },
    };
    let mut registry = default_registry(RegistryOptions {
        test_tasks: cli.enable_test_tasks,
    });
    if !cli.no_photo_tasks {
        let stores = match cli.photo_stores {
            PhotoStoresFlag::Redis => worker::photo::StoresAt::Redis {
                url: cli.fleet.redis_url.clone(),
                prefix: cli.fleet.prefix.clone(),
                tls: cli.fleet.redis_tls(),
                shared_analysis: Duration::from_secs(cli.shared_analysis_secs),
            },
            PhotoStoresFlag::DataDir => worker::photo::StoresAt::DataDir,
        };
        worker::providers::add_photo_tasks(
            &mut registry,
            &cli.data_dir,
            concurrency,
            &cli.providers,
            &stores,
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e} (or start with --no-photo-tasks to serve only the utility tasks)")
        })?;
    }
    tracing::info!(resources = ?registry.resources().collect::<Vec<_>>(), "serving");
    // Tell the coordinators what this worker serves, so they fail steps nobody serves
    // instead of leaving them waiting.
    let resources: Vec<String> = registry.resources().map(str::to_string).collect();
    let registration = shared::workers::keep_registered(
        redis.clone(),
        cli.fleet.prefix.clone(),
        opts.worker_id.clone(),
        resources,
        Duration::from_secs(15),
    );
    let result = consumer::serve(&cli.fleet, registry, opts.clone(), &shutdown).await;
    registration.abort();
    let mut redis = redis;
    let _ = shared::workers::unregister(&mut redis, &cli.fleet.prefix, &opts.worker_id).await;
    result?;
    tracing::info!("stopped");
    Ok(())
}
