//! `mapfleet serve`: the Step Functions API (AWS JSON 1.0, `POST /` with
//! `X-Amz-Target: AWSStepFunctions.<Operation>`), so the `aws stepfunctions` CLI, boto3 and
//! the other AWS SDKs drive mapfleet unchanged.
//!
//! It serves state machines (Create, Describe, List, Update, Delete,
//! ValidateStateMachineDefinition, tags) and STANDARD executions (StartExecution,
//! DescribeExecution, ListExecutions, GetExecutionHistory, StopExecution, RedriveExecution,
//! Distributed Maps' map runs) in two modes, the same stores as the CLI's:
//!
//! - on the fleet (`--redis`): state machines in the fleet's Redis, executions run by its
//!   coordinators and workers; EXPRESS machines with StartSyncExecution, and TestState
//!   (`ops/sync.rs`, `ops/test_state.rs`); activities with their workers' calls (GetActivityTask,
//!   SendTask*) too, which need the fleet's broker (`--amqp`);
//! - embedded (no `--redis`): everything under `<data-dir>/api/`, executions run in this
//!   process with the worker's tasks, as `mapfleet run` runs them; a restart loses nothing
//!   it acknowledged.
//!
//! Requests are SigV4-checked (service `states`) by `mapfleet_auth`, as `mapfleet rekognition
//! serve` does.
//!
//! # Layout
//! - [`wire`]: errors, timestamps, request members, pagination tokens.
//! - [`backend`]: [`backend::ApiStore`], the seam between the operations and the two stores.
//! - [`store`]: the fleet's store (state machines and per-machine execution lists in its
//!   Redis), and the records both stores keep.
//! - [`embedded`]: embedded mode's store: files under `<data-dir>/api/`, runs in-process.
//! - [`ops`]: one function per operation (RedriveExecution's in `redrive`).
//! - [`server`]: the axum router, authentication and dispatch.

pub mod backend;
pub mod embedded;
pub mod ops;
mod redrive;
pub mod server;
pub mod store;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

/// How long a read of the fleet keeps trying while Redis cannot be reached, per request.
const REDIS_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where to listen.
    #[arg(long, env = "MAPFLEET_API_ADDR", default_value = "127.0.0.1:8083")]
    pub addr: SocketAddr,
    /// The fleet: state machines are kept in its Redis and executions run on it. Without
    /// `--redis` (or `--amqp`), embedded mode: everything is kept under `--data-dir`
    /// (`<data-dir>/api/`) and executions run in this process with the worker's tasks.
    #[command(flatten)]
    pub fleet: crate::cli::FleetArgs,
    /// The key pairs allowed to call, in the AWS credentials file format (every profile's
    /// `aws_access_key_id` / `aws_secret_access_key`). Adds to MAPFLEET_API_KEYS
    /// (`AKID:SECRET` pairs, comma-separated), which is read from the environment only so that
    /// no secret shows in `ps`.
    #[arg(long, env = "MAPFLEET_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Accept unsigned requests from anyone who can reach the address (a trusted network
    /// only; a warning says so at start).
    #[arg(long)]
    pub allow_anonymous: bool,
    /// How long GetActivityTask holds a request while no task comes (AWS holds it up to
    /// 60 s; botocore's default read timeout is 60 s too, hence a little less).
    #[arg(long, env = "MAPFLEET_ACTIVITY_POLL_SECS", default_value_t = 55)]
    pub activity_poll_secs: u64,
}

/// `mapfleet serve`. `data_dir` holds the local buckets (the fleet's map runs write their
/// result files there; embedded runs read and write them as `mapfleet run` does) and, in
/// embedded mode, the API's state.
pub async fn serve(args: ServeArgs, data_dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let api_keys = std::env::var("MAPFLEET_API_KEYS").ok();
    let access = crate::access::access(
        args.credentials_file.as_deref(),
        api_keys.as_deref(),
        args.allow_anonymous,
        wire::SIGNING_NAME,
    )?;
    let (store, mode, activities): (backend::Store, String, _) = if args.fleet.given() {
        let redis = args.fleet.redis_url()?;
        let mut fleet =
            coordinator::fleet::client::FleetClient::connect(&redis, &args.fleet.prefix).await?;
        fleet.patience = REDIS_PATIENCE;
        let mode = format!(
            "fleet prefix {}, Redis {}",
            args.fleet.prefix,
            shared::config::redact_url(&redis)
        );
        // Activities hand out steps from the fleet's queues: they need its broker.
        let amqp = match &args.fleet.amqp {
            Some(url) => Some((
                shared::credentials::with_password(url, shared::credentials::Service::Amqp, None)?,
                shared::tls::TlsFiles::default(),
            )),
            None => None,
        };
        let activities = ops::activities::ActivityApi {
            activities: coordinator::fleet::activities::Activities::new(
                fleet.conn.clone(),
                fleet.keys.clone(),
                amqp,
            ),
            poll: Duration::from_secs(args.activity_poll_secs),
        };
        (
            std::sync::Arc::new(store::FleetStore::new(fleet, data_dir.to_path_buf())),
            mode,
            Some(activities),
        )
    } else {
        let (store, ended) = embedded::EmbeddedStore::open(data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the API's state under {}: {e:#}",
                data_dir.join("api").display()
            )
        })?;
        if ended > 0 {
            eprintln!(
                "{ended} execution(s) were running when serve last stopped: now FAILED {}",
                embedded::SERVE_RESTARTED
            );
        }
        let mode = format!("embedded mode, data in {}", data_dir.display());
        (std::sync::Arc::new(store), mode, None)
    };
    let console = std::sync::Arc::new(crate::console::Console {
        store: store.clone(),
        sessions: crate::console::session::Sessions::new(access.clone()),
    });
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.addr))?;
    let bound = listener.local_addr()?;
    // The one line a script waits for; the port is the real one when --addr asked for 0.
    eprintln!("Step Functions API on http://{bound} ({mode})");
    if console.sessions.anonymous() {
        eprintln!("Console on http://{bound}/ (no login: --allow-anonymous)");
    } else {
        // A token rather than a secret: it opens the console only, for a short while.
        eprintln!(
            "Console on http://{bound}/ (log in with an API key pair, or open \
             http://{bound}/#token={} within {} minutes)",
            console.sessions.start_token(),
            crate::console::session::START_TOKEN_TTL.as_secs() / 60
        );
    }
    server::serve(
        listener,
        server::router(store, access, console, activities),
        shared::process::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_listens_on_8083_by_default_and_takes_the_fleet_flags() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            args: ServeArgs,
        }
        // Only flags, no environment: the defaults are the documented ones.
        let t = T::try_parse_from(["t", "--redis", "redis://r:6379/", "--prefix", "p"]).unwrap();
        if std::env::var_os("MAPFLEET_API_ADDR").is_none() {
            assert_eq!(t.args.addr, "127.0.0.1:8083".parse().unwrap());
        }
        assert_eq!(t.args.fleet.redis.as_deref(), Some("redis://r:6379/"));
        assert_eq!(t.args.fleet.prefix, "p");
        assert!(!t.args.allow_anonymous);
    }
}
