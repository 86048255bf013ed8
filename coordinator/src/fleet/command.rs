//! The coordinator's command line, shared by the slim `mapfleet-coordinator` binary and the
//! `mapfleet coordinator` subcommand: one set of flags, one way to start the service.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::service::{self, Coordinator, ServiceOptions};

/// Why a coordinator process ends with an error.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Credentials(#[from] shared::credentials::CredentialError),
    #[error(transparent)]
    Service(#[from] shared::supervise::Error<service::Error>),
}

/// Flags of a coordinator (each also a `MAPFLEET_*` environment variable).
#[derive(Args, Debug)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub fleet: shared::config::FleetConfig,
    /// Executions this coordinator advances at once.
    #[arg(long, env = "MAPFLEET_PARALLEL", default_value_t = 4)]
    pub parallel: usize,
    /// Most iterations of one Map in flight when its MaxConcurrency is 0 (the fleet cap).
    #[arg(long, env = "MAPFLEET_FLEET_CAP", default_value_t = 1000)]
    pub fleet_cap: usize,
    /// Publish a step again when its outcome is this many seconds overdue.
    #[arg(long, env = "MAPFLEET_REDRIVE_AFTER_SECS", default_value_t = 600)]
    pub redrive_after_secs: u64,
    /// Fail a step whose resource no live worker has served for this many seconds.
    #[arg(long, env = "MAPFLEET_UNSERVED_GRACE_SECS", default_value_t = 30)]
    pub unserved_grace_secs: u64,
    /// Most steps of one resource published as one broker message when many are ready at
    /// once (a Map's iterations); 1 publishes every step on its own. A worker's prefetch
    /// counts messages, so it may hold up to prefetch x this many steps.
    #[arg(long, env = "MAPFLEET_STEP_BATCH", default_value_t = 16)]
    pub step_batch: usize,
    /// Expected task time, in milliseconds, one step message may carry: a resource's batches
    /// shrink as its tasks (timed by the workers) get slower, so a slow task's steps spread
    /// over the workers instead of queueing in one; tasks slower than this travel one step a
    /// message, as do a resource's first steps. 0: always `--step-batch`.
    #[arg(long, env = "MAPFLEET_STEP_BATCH_BUDGET_MS", default_value_t = 10)]
    pub step_batch_budget_ms: u64,
    /// The largest state input or output in bytes (`States.DataLimitExceeded` above it).
    /// AWS's 256 KiB by default; raise it (up to 64 MiB) for inline Maps whose results need
    /// more. Every coordinator of a fleet should use the same value.
    #[arg(
        long,
        env = "MAPFLEET_MAX_PAYLOAD_BYTES",
        default_value_t = crate::engine::PAYLOAD_LIMIT_BYTES,
        value_parser = crate::engine::parse_payload_limit
    )]
    pub max_payload_bytes: usize,
    /// The most history events one cursor (the execution's top level, a Parallel branch, a
    /// Map iteration) may write before the execution fails with `States.Runtime`: AWS's
    /// 25,000 by default. It is what ends a looping definition within one batch, so the
    /// fleet has no "off" (0 is refused; raise it instead).
    #[arg(
        long,
        env = "MAPFLEET_MAX_HISTORY_EVENTS",
        default_value_t = crate::engine::run::MAX_HISTORY_EVENTS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_history_events: u64,
}

impl CoordinatorArgs {
    /// The service options these flags select.
    pub fn options(&self) -> ServiceOptions {
        let mut opts = ServiceOptions {
            parallel: self.parallel,
            ..Default::default()
        };
        opts.engine.max_children_in_flight = self.fleet_cap.max(1);
        opts.redrive_after = Duration::from_secs(self.redrive_after_secs);
        opts.unserved_grace = Duration::from_secs(self.unserved_grace_secs);
        opts.step_batch = self.step_batch.max(1);
        opts.step_batch_budget = Duration::from_millis(self.step_batch_budget_ms);
        opts.engine.payload_limit = self.max_payload_bytes;
        opts.engine.max_history_events = self.max_history_events;
        opts
    }
}

/// Serves metrics (when asked) and runs a coordinator until SIGTERM or Ctrl-C. It has no
/// object store: Distributed Maps with an ItemReader need [`run_with`].
pub async fn run(args: CoordinatorArgs) -> Result<(), CommandError> {
    run_with(args, Default::default()).await
}

/// [`run`] with the object store Distributed Maps read their items from and write their
/// results to (`mapfleet coordinator` hands in the worker's store).
pub async fn run_with(
    mut args: CoordinatorArgs,
    map_runs: super::maprun::MapRunStore,
) -> Result<(), CommandError> {
    args.fleet.resolve_credentials()?;
    tracing::info!(config = %args.fleet, "starting a coordinator");
    shared::metrics::get().fleet.started("coordinator");
    let _metrics = match args.fleet.metrics_addr {
        Some(addr) => {
            let (bound, server) = shared::metrics::serve(addr)
                .await
                .map_err(|source| CommandError::Metrics { addr, source })?;
            eprintln!("metrics on http://{bound}/metrics");
            Some(server)
        }
        None => None,
    };
    let shutdown = shared::supervise::Shutdown::on(shared::process::shutdown_signal());
    let mut opts = args.options();
    opts.map_runs = map_runs;
    Ok(Coordinator::serve(&args.fleet, opts, &shutdown).await?)
}

/// Entry point of the slim `mapfleet-coordinator` binary.
pub fn main() -> std::process::ExitCode {
    #[derive(clap::Parser)]
    #[command(
        name = "mapfleet-coordinator",
        version,
        about = "A mapfleet coordinator: advances executions on the fleet (stateless; run as many as you like)"
    )]
    struct Cli {
        #[command(flatten)]
        args: CoordinatorArgs,
    }
    shared::process::init_tracing("info");
    let cli = <Cli as clap::Parser>::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", shared::supervise::Chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
