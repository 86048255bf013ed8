//! `mapfleet redrive EXEC_ARN`: RedriveExecution from the command line. The fleet keeps
//! executions in Redis, so only they can be redriven; an embedded `mapfleet run` keeps
//! nothing once it returns.

use std::process::ExitCode;

use super::{EXIT_FAILED, FleetArgs, describe};
use crate::embedded::Status;
use crate::fleet::client::{ClientError, FleetClient};
use clap::Args;

#[derive(Args, Debug)]
pub struct RedriveArgs {
    /// The execution ARN (of `mapfleet run --redis`, or StartExecution through `serve`).
    pub arn: String,
    /// Makes the call idempotent: a second call with the same token redrives nothing more.
    #[arg(long)]
    pub client_token: Option<String>,
    /// Return once the redrive is queued, without waiting for the execution's end.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Said when the fleet does not know the execution: embedded runs are never kept.
const EMBEDDED: &str = "mapfleet redrive redrives executions of the fleet (mapfleet run --redis, \
    or StartExecution through mapfleet serve); an embedded `mapfleet run` keeps no execution \
    to redrive once it returns: run it again instead";

pub async fn redrive(args: RedriveArgs) -> anyhow::Result<ExitCode> {
    let RedriveArgs {
        arn,
        client_token,
        no_wait,
        fleet,
    } = args;
    let client = FleetClient::connect(&fleet.redis_url()?, &fleet.prefix)
        .await
        .map_err(|e| anyhow::anyhow!("{e} ({EMBEDDED})"))?;
    let done = match client.redrive(&arn, client_token.as_deref()).await {
        Ok(d) => d,
        Err(e @ ClientError::DoesNotExist(_)) => anyhow::bail!("{e} ({EMBEDDED})"),
        Err(e) => return Err(e.into()),
    };
    if done.repeated {
        eprintln!(
            "{arn} was already redriven with this client token at {}",
            done.date.to_rfc3339()
        );
    } else {
        eprintln!(
            "redrive {} of {arn}: {} children of the state it failed in succeeded before and are kept",
            done.count, done.kept_children
        );
    }
    if no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let result = client.wait(&arn, None).await?;
    // How many children each redriven map run ran again.
    for run in client.list_map_runs(&arn).await.unwrap_or_default() {
        let Some(run_arn) = run["mapRunArn"].as_str() else {
            continue;
        };
        let Ok(d) = client.describe_map_run(run_arn).await else {
            continue;
        };
        if d["redriveCount"].as_u64().unwrap_or(0) == done.count as u64 && !done.repeated {
            let total = d["executionCounts"]["total"].as_u64().unwrap_or(0);
            eprintln!(
                "map run {run_arn}: {} of {total} children ran again ({} kept)",
                total.saturating_sub(done.kept_children),
                done.kept_children
            );
        }
    }
    println!("{}", describe(&result));
    Ok(if result.status == Status::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
