//! N `echo` steps through one `mapfleet-coordinator` (the slim deployment binary) and K real
//! worker processes, one step per message (`--step-batch 1`): the fleet's per-step path,
//! beside map-coordinator's batched one. It is the map-coordinator scenario with those
//! settings: a Map of N items submitted with `FleetClient`, timed until SUCCEEDED, verified
//! (`output[i] == items[i]`, every iteration started and succeeded exactly once).

use std::path::Path;
use std::time::Duration;

use crate::map_coordinator::{self, CoordinatorCmd};

pub struct Params<'a> {
    pub amqp_url: &'a str,
    pub redis_url: &'a str,
    pub worker_bin: &'a Path,
    /// The `mapfleet-coordinator` binary.
    pub coordinator_bin: &'a Path,
    pub steps: usize,
    pub workers: usize,
    pub concurrency: usize,
    pub window: usize,
    pub limit: Duration,
}

pub async fn run(p: &Params<'_>) -> anyhow::Result<map_coordinator::Report> {
    map_coordinator::run(&map_coordinator::Params {
        amqp_url: p.amqp_url,
        redis_url: p.redis_url,
        worker_bin: p.worker_bin,
        coordinator: CoordinatorCmd {
            bin: p.coordinator_bin,
            args: &[],
        },
        items: p.steps,
        workers: p.workers,
        coordinators: 1,
        concurrency: p.concurrency,
        window: p.window,
        fleet_cap: None,
        parallel: None,
        step_batch: Some(1),
        limit: p.limit,
    })
    .await
}
