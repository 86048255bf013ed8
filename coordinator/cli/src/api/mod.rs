//! `mapfleet serve`: the Step Functions API (AWS JSON 1.0, `POST /` with
//! `X-Amz-Target: AWSStepFunctions.<Operation>`), so the `aws stepfunctions` CLI, boto3 and
//! the other AWS SDKs drive mapfleet unchanged.
//!
//! This first slice serves state machines (Create, Describe, List, Delete,
//! ValidateStateMachineDefinition) and STANDARD executions on the fleet (StartExecution,
//! DescribeExecution, ListExecutions, GetExecutionHistory, StopExecution, RedriveExecution),
//! EXPRESS machines with StartSyncExecution, and TestState (`ops/sync.rs`, `ops/test_state.rs`).
//! Requests are SigV4-checked (service `states`) by `mapfleet_auth`, as `mapfleet rekognition
//! serve` does.
//!
//! # Layout
//! - [`wire`]: errors, timestamps, request members, pagination tokens.
//! - [`store`]: the state machines and the per-machine execution lists in the fleet's Redis.
//! - [`ops`]: one function per operation (RedriveExecution's in `redrive`).
//! - [`server`]: the axum router, authentication and dispatch.

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
    /// The fleet: state machines are kept in its Redis and executions run on it.
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
}

/// `mapfleet serve`.
/// `data_dir` holds the local buckets the fleet's map runs write their result files to.
pub async fn serve(args: ServeArgs, data_dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let api_keys = std::env::var("MAPFLEET_API_KEYS").ok();
    let access = crate::access::access(
        args.credentials_file.as_deref(),
        api_keys.as_deref(),
        args.allow_anonymous,
        wire::SIGNING_NAME,
    )?;
    if !args.fleet.given() {
        anyhow::bail!(
            "mapfleet serve runs on the fleet only for now: give --redis (or MAPFLEET_REDIS_URL) \
             and run `mapfleet coordinator` and workers on it; embedded mode (--data-dir) is not \
             there yet"
        );
    }
    let redis = args.fleet.redis_url()?;
    let mut fleet =
        coordinator::fleet::client::FleetClient::connect(&redis, &args.fleet.prefix).await?;
    fleet.patience = REDIS_PATIENCE;
    let store = store::Store::new(fleet, data_dir.to_path_buf());
    let console = std::sync::Arc::new(crate::console::Console {
        store: store.clone(),
        sessions: crate::console::session::Sessions::new(access.clone()),
    });
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.addr))?;
    let bound = listener.local_addr()?;
    // The one line a script waits for; the port is the real one when --addr asked for 0.
    eprintln!(
        "Step Functions API on http://{bound} (fleet prefix {}, Redis {})",
        args.fleet.prefix,
        shared::config::redact_url(&redis)
    );
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
        server::router(store, access, console),
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
