//! N `echo` steps through K real worker processes, measured from the first publish to the
//! map run's completion, and verified (`results[i] == items[i]`, each applied once).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::json;
use shared::testkit::{Batch, Harness, WorkerProcess, unique_prefix};
use shared::topology::Topology;

pub struct Params<'a> {
    pub amqp_url: &'a str,
    pub redis_url: &'a str,
    pub worker_bin: &'a Path,
    pub steps: usize,
    pub workers: usize,
    pub concurrency: usize,
    pub window: usize,
    pub limit: Duration,
}

pub struct Report {
    pub steps: usize,
    pub elapsed: Duration,
    pub publish_elapsed: Duration,
    pub applied: u64,
    pub duplicates: u64,
    /// Outcome messages consumed (outcomes are batched by the workers under load).
    pub outcome_messages: u64,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.steps as f64 / self.elapsed.as_secs_f64()
    }
}

pub async fn run(p: &Params<'_>) -> anyhow::Result<Report> {
    ensure!(
        p.worker_bin.exists(),
        "worker binary {} not found: build it (`cargo build --release -p worker`) or pass --worker-bin",
        p.worker_bin.display()
    );
    let topo = Topology::new(unique_prefix("loadtest"), 5);
    let mut harness = Harness::connect(p.amqp_url, p.redis_url, topo.clone()).await?;
    harness.publisher = shared::amqp::Publisher::new(
        harness.conn.clone(),
        shared::amqp::PublisherOptions {
            window: p.window,
            ..Default::default()
        },
    )
    .await?;
    let concurrency = p.concurrency.to_string();
    let _workers = (0..p.workers)
        .map(|_| {
            WorkerProcess::spawn(
                p.worker_bin,
                p.amqp_url,
                p.redis_url,
                &topo,
                &["--concurrency", &concurrency],
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let steps_queue = harness.topo.default_steps_queue();
    crate::map_coordinator::wait_for_consumers(&harness, &steps_queue, p.workers as u32).await?;

    let batch = Batch {
        arn: format!(
            "arn:aws:states:local:000000000000:execution:loadtest:{}",
            topo.prefix()
        ),
        map_run: "Map".into(),
        resource: "arn:mapfleet:task:::echo".into(),
        items: (0..p.steps)
            .map(|i| json!({ "index": i, "name": format!("item-{i}") }))
            .collect(),
    };
    let started = Instant::now();
    let submit = async {
        harness.submit(&batch).await?;
        anyhow::Ok(started.elapsed())
    };
    let (publish_elapsed, report) =
        tokio::try_join!(submit, harness.collect(&batch, p.limit, None))?;
    let elapsed = started.elapsed();
    ensure!(
        report.applied == p.steps as u64,
        "applied {} of {}",
        report.applied,
        p.steps
    );
    ensure!(
        report.completions == 1,
        "completions = {}",
        report.completions
    );
    let results = harness.results(&batch).await?;
    ensure!(results == batch.items, "results differ from items");
    harness.cleanup().await?;
    Ok(Report {
        steps: p.steps,
        elapsed,
        publish_elapsed,
        applied: report.applied,
        duplicates: report.duplicates,
        outcome_messages: report.deliveries,
    })
}
