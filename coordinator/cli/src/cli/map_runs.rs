//! `mapfleet map-runs list|describe` and `mapfleet executions list --map-run`: Distributed
//! Map runs of the fleet in ListMapRuns', DescribeMapRun's and ListExecutions' shapes. A map
//! run's children are listed from its ResultWriter's files, read from the local buckets
//! under `--data-dir` (where `mapfleet coordinator --data-dir` wrote them).

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::FleetArgs;

#[derive(Subcommand, Debug)]
pub enum MapRunsCommand {
    /// The map runs an execution started (ListMapRuns' `mapRuns`).
    List {
        /// The execution ARN.
        execution: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// One map run: status, item and child execution counts, tolerated failures, maximum
    /// concurrency (DescribeMapRun's shape).
    Describe {
        /// The map run ARN (from `map-runs list` or the MapRunStarted event).
        map_run: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ExecutionsCommand {
    /// Child executions of a map run (ListExecutions with `mapRunArn`), from its ResultWriter's
    /// files once the run ended.
    List {
        /// The map run whose children to list.
        #[arg(long = "map-run")]
        map_run: String,
        /// Only children with this status (SUCCEEDED or FAILED).
        #[arg(long, value_parser = ["SUCCEEDED", "FAILED"])]
        status: Option<String>,
        #[command(flatten)]
        fleet: FleetArgs,
    },
}

pub async fn map_runs(cmd: MapRunsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MapRunsCommand::List { execution, fleet } => {
            let client = fleet.client().await?;
            let runs = client.list_map_runs(&execution).await?;
            println!("{}", json!({ "mapRuns": runs }));
        }
        MapRunsCommand::Describe { map_run, fleet } => {
            let client = fleet.client().await?;
            println!("{}", client.describe_map_run(&map_run).await?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn executions(data_dir: &Path, cmd: ExecutionsCommand) -> anyhow::Result<ExitCode> {
    let ExecutionsCommand::List {
        map_run,
        status,
        fleet,
    } = cmd;
    let client = fleet.client().await?;
    let children = client
        .map_run_children(&map_run, status.as_deref(), bucket_reader(data_dir))
        .await?;
    println!("{}", json!({ "executions": children }));
    Ok(ExitCode::SUCCESS)
}

/// Reads an object of the local buckets under `data_dir` (where `mapfleet coordinator
/// --data-dir` writes a map run's result files), for [`FleetClient::map_run_children`].
pub fn bucket_reader(data_dir: &Path) -> impl Fn(&str, &str) -> Result<Vec<u8>, String> + use<> {
    let buckets = data_dir.join("buckets");
    move |bucket: &str, key: &str| {
        // The keys come from the run's own manifest; refuse any that would leave the bucket.
        if bucket.contains('/') || key.split('/').any(|p| p == ".." || p == ".") {
            return Err(format!("refusing the object key {bucket}/{key}"));
        }
        let path = buckets.join(bucket).join(key);
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}
