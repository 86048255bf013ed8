//! The chaos scenario (`--scenarios chaos`): each round runs `mapfleet_testbed::chaos` with
//! its loadtest plan ([`Plan::loadtest`]) on a fresh prefix of one RabbitMQ node and one Redis
//! of its own, started at the first round and kept; prints the round's faults and table. The
//! summary prints one row per round and fails the run unless every round was clean (0
//! duplicates, 0 lost, 0 out of order) with at least one broker restart, one Redis restart,
//! 2 coordinator kills and 10 worker kills.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use mapfleet_testbed::chaos::{self, Binaries, Kind, Nodes, Plan, Report};

use crate::map_coordinator::ensure_built;

/// What each round must have injected (the done-when).
const AT_LEAST: [(Kind, usize); 4] = [
    (Kind::BrokerRestart, 1),
    (Kind::RedisRestart, 1),
    (Kind::CoordinatorKill, 2),
    (Kind::WorkerKill, 10),
];

#[derive(Default)]
pub struct Rounds {
    nodes: Option<Arc<Nodes>>,
    reports: Vec<(usize, Report)>,
}

impl Rounds {
    pub async fn round(
        &mut self,
        round: usize,
        items: usize,
        max_concurrency: usize,
        worker_bin: &Path,
        mapfleet_bin: &Path,
    ) -> anyhow::Result<()> {
        ensure_built(worker_bin, "worker")?;
        ensure_built(mapfleet_bin, "mapfleet")?;
        ensure!(
            Nodes::available(),
            "the chaos scenario needs rabbitmq-server (.ci/services.sh installs it)"
        );
        let nodes = match &self.nodes {
            Some(n) => n.clone(),
            None => {
                println!("chaos: starting a RabbitMQ node and a Redis (AOF) of its own...");
                let n = Arc::new(tokio::task::spawn_blocking(Nodes::start).await?);
                self.nodes = Some(n.clone());
                n
            }
        };
        let plan = Plan::loadtest(items, max_concurrency);
        let bins = Binaries {
            mapfleet: mapfleet_bin.to_path_buf(),
            worker: worker_bin.to_path_buf(),
        };
        println!(
            "chaos: {} items (sleep {} ms each, MaxConcurrency {}) on {} mapfleet coordinators and {} workers x {} slots, {} faults {:.1} s apart:",
            plan.items,
            plan.item_ms,
            plan.max_concurrency,
            plan.coordinators,
            plan.workers,
            plan.worker_slots,
            plan.faults.len(),
            plan.gap.as_secs_f64()
        );
        let report = chaos::run(nodes, &bins, &plan, "loadtest-chaos")
            .await
            .context("chaos")?;
        println!("{}\n\n{}", report.timeline(), report.table());
        for p in report.problems() {
            println!("PROBLEM: {p}");
        }
        for m in report.missing_faults(&plan) {
            println!("NOT INJECTED (the batch ended first): {m}");
        }
        if !report.clean() {
            println!("logs: {}", report.logs.display());
        }
        self.reports.push((round, report));
        Ok(())
    }

    /// One row per round; an error unless every round met the bar.
    pub fn summary(&self) -> anyhow::Result<()> {
        if self.reports.is_empty() {
            return Ok(());
        }
        let rec = |r: &Report, k: Kind| {
            r.recovery(k)
                .map_or_else(|| "-".to_string(), |(m, x)| format!("{m:.2}/{x:.2}"))
        };
        let rate = |r: Option<f64>| r.map_or_else(|| "-".to_string(), |r| format!("{r:.0}"));
        println!(
            "chaos:\n\n| round | items | worker kills | coordinator kills | broker restarts | Redis restarts | cuts | stalls | slowdowns | duplicates | lost | out of order | recovery s, median/max: worker / coordinator / broker / Redis / cut / stall / slow | items/s before / during / after |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
        );
        let mut failures = Vec::new();
        for (round, r) in &self.reports {
            println!(
                "| {round} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} |",
                r.items,
                r.count(Kind::WorkerKill),
                r.count(Kind::CoordinatorKill),
                r.count(Kind::BrokerRestart),
                r.count(Kind::RedisRestart),
                r.count(Kind::Cut),
                r.count(Kind::Stall),
                r.count(Kind::Slow),
                r.duplicates,
                r.lost,
                r.out_of_order,
                Kind::ALL
                    .iter()
                    .map(|k| rec(r, *k))
                    .collect::<Vec<_>>()
                    .join(" / "),
                rate(r.rate_before),
                rate(r.rate_during),
                rate(r.rate_after)
            );
            if !r.clean() {
                failures.push(format!("round {round}: {}", r.problems().join("; ")));
            }
            for (kind, n) in AT_LEAST {
                if r.count(kind) < n {
                    failures.push(format!(
                        "round {round}: {} {} (at least {n} wanted)",
                        r.count(kind),
                        kind.label()
                    ));
                }
            }
        }
        if !failures.is_empty() {
            bail!("chaos: {}", failures.join("\n"));
        }
        println!(
            "chaos: every round exactly once (0 duplicates, 0 lost, 0 out of order) through its faults"
        );
        Ok(())
    }
}
