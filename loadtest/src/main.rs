//! `loadtest`: measures the fleet against the machine it runs on, in one bounded run.
//!
//! # Scenarios
//! - `baseline` ([`baseline`]): raw RabbitMQ on this machine: persistent messages published
//!   with windowed publisher confirms into one quorum queue while one consumer acks each:
//!   the ceiling any queue-driven fleet here can reach.
//! - `echo-fleet` ([`fleet`]): a Map of `--steps` (10,000) `echo` items through one
//!   `mapfleet-coordinator` and K real `mapfleet-worker` processes, one step per message
//!   (`--step-batch 1`): the fleet's per-step path. Verified as map-coordinator.
//! - `map-coordinator` ([`map_coordinator`]): a Map of `--items` (10,000) `echo` items with
//!   `MaxConcurrency: 0` through the real fleet: C `mapfleet coordinator` processes and K
//!   `mapfleet-worker` processes on a fresh prefix, submitted as `mapfleet run --detach`
//!   does, timed until SUCCEEDED, verified (`output[i] == items[i]`, every iteration
//!   started and succeeded once in the history, under unique event ids).
//! - `map-run-page` ([`map_run_page`], not in the default set): the console's Map run page
//!   of a Distributed Map of `--items` children against one of 1,000: the median time of its
//!   first page's loads, and the ratio.
//! - `chaos` ([`chaos`], not in the default set): a Map of `--chaos-items` (20,000) items on 2
//!   coordinators and 3 workers with a broker and a Redis of its own (never `--amqp`/`--redis`)
//!   while a fault schedule kills and restarts processes and nodes and disturbs the network;
//!   a table per round of the faults, duplicates, lost and out-of-order results, recovery
//!   times and items/s before, during and after (`mapfleet_testbed::chaos`).
//!
//! The report prints each rate and the ratio of each fleet scenario to the baseline. Every
//! scenario is bounded in count (`--messages`, `--steps`, `--items`) and time
//! (`--time-limit-secs`), and cleans up its prefix's queues and keys.

mod baseline;
mod chaos;
mod distributed_map;
mod fleet;
mod map_coordinator;
mod map_run_page;
mod photo_fleet;
mod report;
mod scaling;
mod scrape;
mod timeline;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Baseline,
    EchoFleet,
    MapCoordinator,
    /// Not in the default set: needs the face models (`deploy/setup-models.sh`).
    PhotoFleet,
    /// Not in the default set: the rider-photo Map of `--photos` photos on 1 and then 2
    /// workers x 1 slot (the report's photo scaling curve), with each process's CPU time;
    /// needs the face models.
    PhotoScaling,
    /// Not in the default set: a Distributed Map of `--items` echo items read from a JSONL
    /// object, results checked from its ResultWriter's files (`MaxConcurrency`: `--fleet-cap`,
    /// 1,000 by default).
    DistributedMap,
    /// Not in the default set: the console's Map run page of a Distributed Map of `--items`
    /// children against a run of 1,000: the median time of its first page's loads.
    MapRunPage,
    /// Not in the default set: a batch under a fault schedule, on a RabbitMQ node and a Redis
    /// of its own (needs `rabbitmq-server` and `redis-server` installed).
    Chaos,
}

/// Measure the raw broker and the mapfleet fleet on this machine.
#[derive(Parser, Debug)]
#[command(name = "loadtest")]
struct Cli {
    /// RabbitMQ URL (`amqp://user@host:port/vhost`, the password in MAPFLEET_AMQP_PASSWORD or
    /// `--amqp-password-file`, as for the fleet's processes). The processes it starts get the
    /// URLs in their environment, never on their command line.
    #[arg(
        long = "amqp",
        env = "MAPFLEET_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,

    /// A file holding the RabbitMQ password.
    #[arg(long, env = "MAPFLEET_AMQP_PASSWORD_FILE", value_name = "FILE")]
    amqp_password_file: Option<PathBuf>,

    /// Redis URL (`redis://[user@]host:port/db`, the password in MAPFLEET_REDIS_PASSWORD or
    /// `--redis-password-file`).
    #[arg(
        long = "redis",
        env = "MAPFLEET_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    redis_url: String,

    /// A file holding the Redis password.
    #[arg(long, env = "MAPFLEET_REDIS_PASSWORD_FILE", value_name = "FILE")]
    redis_password_file: Option<PathBuf>,

    /// Scenarios to run, in order (default: all).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Scenario::Baseline, Scenario::EchoFleet, Scenario::MapCoordinator])]
    scenarios: Vec<Scenario>,

    /// Messages in the baseline.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,

    /// Items (one `echo` step each) of the echo-fleet scenario's Map.
    #[arg(long, default_value_t = 10_000)]
    steps: usize,

    /// Items of the map-coordinator scenario's Map.
    #[arg(long, default_value_t = 10_000)]
    items: usize,

    /// Items of the chaos scenario's batch.
    #[arg(long, default_value_t = 20_000)]
    chaos_items: usize,

    /// The chaos batch's `MaxConcurrency` (each item sleeps 100 ms, so this bounds its rate
    /// at ten times as many items/s; the batch must outlast the fault schedule).
    #[arg(long, default_value_t = 20)]
    chaos_concurrency: usize,

    /// Photos of the photo-fleet scenario's Map (the four workshop photos in turn).
    #[arg(long, default_value_t = 40)]
    photos: usize,

    /// The face models of the photo-fleet scenario's worker.
    #[arg(long, env = "MAPFLEET_MODELS_DIR")]
    models_dir: Option<PathBuf>,

    /// `mapfleet coordinator` processes of the map-coordinator scenario.
    #[arg(long, default_value_t = 1)]
    coordinators: usize,

    /// The coordinators' `--fleet-cap` (iterations in flight for `MaxConcurrency: 0`;
    /// default: theirs).
    #[arg(long)]
    fleet_cap: Option<usize>,

    /// The coordinators' `--parallel` (default: theirs).
    #[arg(long)]
    parallel: Option<usize>,

    /// The coordinators' `--step-batch` (most steps per broker message; default: theirs).
    #[arg(long)]
    step_batch: Option<usize>,

    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,

    /// Task slots (and prefetch) per worker.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,

    /// Confirm window of the publishers (baseline and fleet alike).
    #[arg(long, default_value_t = 256)]
    window: usize,

    /// The `mapfleet-worker` binary (default: next to this one).
    #[arg(long)]
    worker_bin: Option<PathBuf>,

    /// The `mapfleet` binary (default: next to this one).
    #[arg(long)]
    mapfleet_bin: Option<PathBuf>,

    /// The `mapfleet-coordinator` binary of the echo-fleet scenario (default: next to this
    /// one).
    #[arg(long)]
    coordinator_bin: Option<PathBuf>,

    /// Bound on each scenario run.
    #[arg(long, default_value_t = 300)]
    time_limit_secs: u64,

    /// Rounds: each round runs every scenario once (interleaved, so drift in the machine's
    /// load hits both alike); the summary uses the medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// Write an HTML report with charts to this directory instead of running the scenarios
    /// (see `report.rs`: a timeline of `--items` items, and the scaling curves).
    #[arg(long)]
    report: Option<PathBuf>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    cli.amqp_url = shared::credentials::with_password(
        &cli.amqp_url,
        shared::credentials::Service::Amqp,
        cli.amqp_password_file.as_deref(),
    )?;
    cli.redis_url = shared::credentials::with_password(
        &cli.redis_url,
        shared::credentials::Service::Redis,
        cli.redis_password_file.as_deref(),
    )?;
    let limit = Duration::from_secs(cli.time_limit_secs);
    let mut baseline_rates = Vec::new();
    let mut fleet_rates = Vec::new();
    let mut map_rates = Vec::new();
    let mut photo_rates = Vec::new();
    let mut python_rates = Vec::new();
    let mut scaling_rates: Vec<(f64, f64)> = Vec::new();
    let mut chaos_runs = chaos::Rounds::default();
    let worker_bin = match &cli.worker_bin {
        Some(b) => b.clone(),
        None => map_coordinator::sibling("mapfleet-worker")?,
    };
    let mapfleet_bin = match &cli.mapfleet_bin {
        Some(b) => b.clone(),
        None => map_coordinator::sibling("mapfleet")?,
    };
    let coordinator_bin = match &cli.coordinator_bin {
        Some(b) => b.clone(),
        None => map_coordinator::sibling("mapfleet-coordinator")?,
    };
    println!(
        "loadtest: amqp={} redis={} (release build recommended)",
        shared::config::redact_url(&cli.amqp_url),
        shared::config::redact_url(&cli.redis_url)
    );
    if let Some(dir) = &cli.report {
        return report::run(&report::Params {
            dir,
            amqp_url: &cli.amqp_url,
            redis_url: &cli.redis_url,
            worker_bin: &worker_bin,
            mapfleet_bin: &mapfleet_bin,
            items: cli.items,
            workers: cli.workers,
            concurrency: cli.concurrency,
            photos: cli.photos,
            models_dir: cli.models_dir.clone(),
            limit,
        })
        .await;
    }
    for round in 1..=cli.rounds.max(1) {
        println!("round {round}:");
        for scenario in &cli.scenarios {
            match scenario {
                Scenario::Baseline => {
                    let r = tokio::time::timeout(
                        limit,
                        baseline::run(&cli.amqp_url, cli.messages, cli.window),
                    )
                    .await
                    .context("baseline timed out")??;
                    println!(
                        "baseline:   {} msgs, publish+confirm (window {}) + consume+ack on one quorum queue: {:.2} s, {:.0} msg/s",
                        r.messages,
                        cli.window,
                        r.elapsed.as_secs_f64(),
                        r.rate()
                    );
                    baseline_rates.push(r.rate());
                }
                Scenario::EchoFleet => {
                    let r = tokio::time::timeout(
                        limit,
                        fleet::run(&fleet::Params {
                            amqp_url: &cli.amqp_url,
                            redis_url: &cli.redis_url,
                            worker_bin: &worker_bin,
                            coordinator_bin: &coordinator_bin,
                            steps: cli.steps,
                            workers: cli.workers,
                            concurrency: cli.concurrency,
                            window: cli.window,
                            limit,
                        }),
                    )
                    .await
                    .context("echo-fleet timed out")??;
                    println!(
                        "echo-fleet: {}-item echo Map, one step per message, through 1 mapfleet-coordinator and {} workers x {} slots: {:.2} s, {:.0} steps/s",
                        r.items,
                        cli.workers,
                        cli.concurrency,
                        r.elapsed.as_secs_f64(),
                        r.rate()
                    );
                    fleet_rates.push(r.rate());
                }
                Scenario::MapCoordinator => {
                    let r = tokio::time::timeout(
                        limit + Duration::from_secs(60),
                        map_coordinator::run(&map_coordinator::Params {
                            amqp_url: &cli.amqp_url,
                            redis_url: &cli.redis_url,
                            worker_bin: &worker_bin,
                            coordinator: map_coordinator::CoordinatorCmd {
                                bin: &mapfleet_bin,
                                args: &["coordinator"],
                            },
                            items: cli.items,
                            workers: cli.workers,
                            coordinators: cli.coordinators,
                            concurrency: cli.concurrency,
                            window: cli.window,
                            fleet_cap: cli.fleet_cap,
                            parallel: cli.parallel,
                            step_batch: cli.step_batch,
                            limit,
                        }),
                    )
                    .await
                    .context("map-coordinator timed out")??;
                    println!(
                        "map-coordinator: {}-item echo Map (MaxConcurrency 0) through {} coordinator(s) and {} workers x {} slots: {:.2} s, {:.0} items/s",
                        r.items,
                        cli.coordinators,
                        cli.workers,
                        cli.concurrency,
                        r.elapsed.as_secs_f64(),
                        r.rate()
                    );
                    map_rates.push(r.rate());
                }
                Scenario::DistributedMap => {
                    let r = distributed_map::run(&distributed_map::Params {
                        amqp_url: &cli.amqp_url,
                        redis_url: &cli.redis_url,
                        worker_bin: &worker_bin,
                        mapfleet_bin: &mapfleet_bin,
                        items: cli.items,
                        workers: cli.workers,
                        concurrency: cli.concurrency,
                        window: cli.window,
                        max_concurrency: cli.fleet_cap.unwrap_or(1000),
                        step_batch: cli.step_batch,
                        limit,
                    })
                    .await
                    .context("distributed-map")?;
                    let ratio = median(baseline_rates.clone())
                        .map(|b| format!(", {:.2}x the raw broker", r.rate() / b))
                        .unwrap_or_default();
                    println!(
                        "distributed-map: {} echo items from a JSONL object through 1 mapfleet coordinator and {} workers x {} slots, {} result files, each item once: {:.2} s, {:.0} items/s{ratio}; coordinator peak RSS {:.1} MB; Redis peak used_memory {:.1} MB, {:.1} MB above its {:.1} MB before the submit; {}",
                        r.items,
                        cli.workers,
                        cli.concurrency,
                        r.result_files,
                        r.elapsed.as_secs_f64(),
                        r.rate(),
                        r.coordinator_peak_rss as f64 / 1e6,
                        r.redis_peak as f64 / 1e6,
                        r.redis_growth() as f64 / 1e6,
                        r.redis_before as f64 / 1e6,
                        r.cpu
                    );
                }
                Scenario::MapRunPage => {
                    let r = map_run_page::run(&distributed_map::Params {
                        amqp_url: &cli.amqp_url,
                        redis_url: &cli.redis_url,
                        worker_bin: &worker_bin,
                        mapfleet_bin: &mapfleet_bin,
                        items: cli.items,
                        workers: cli.workers,
                        concurrency: cli.concurrency,
                        window: cli.window,
                        max_concurrency: cli.fleet_cap.unwrap_or(1000),
                        step_batch: cli.step_batch,
                        limit,
                    })
                    .await
                    .context("map-run-page")?;
                    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                    println!(
                        "map-run-page: first page of a Distributed Map run's page (DescribeMapRun + ListExecutions of 50, through the console), median of {} loads: {:.1} ms at {} children, {:.1} ms at {} children ({:.2}x); reading all {} children's records, as the listing did before: {:.1} ms (the {}-item run took {:.1} s)",
                        map_run_page::LOADS,
                        ms(r.large_page),
                        r.items,
                        ms(r.small_page),
                        map_run_page::SMALL,
                        r.large_page.as_secs_f64() / r.small_page.as_secs_f64(),
                        r.items,
                        ms(r.large_whole),
                        r.items,
                        r.run_time.as_secs_f64()
                    );
                }
                Scenario::Chaos => {
                    chaos_runs
                        .round(
                            round,
                            cli.chaos_items,
                            cli.chaos_concurrency,
                            &worker_bin,
                            &mapfleet_bin,
                        )
                        .await?;
                }
                Scenario::PhotoScaling => {
                    let base = scaling::Base {
                        amqp_url: &cli.amqp_url,
                        redis_url: &cli.redis_url,
                        worker_bin: &worker_bin,
                        mapfleet_bin: &mapfleet_bin,
                        limit,
                    };
                    let models = cli
                        .models_dir
                        .clone()
                        .unwrap_or_else(|| photo_fleet::repo_root().join("mapfleet-data/models"));
                    let points = scaling::photo_curve(&base, &models, cli.photos).await?;
                    let (one, two) = (points[0].rate(), points[1].rate());
                    println!(
                        "photo-scaling: {} rider photos: {one:.2} images/s on 1 worker, {two:.2} on 2: {:.2}x",
                        cli.photos,
                        two / one
                    );
                    scaling_rates.push((one, two));
                }
                Scenario::PhotoFleet => {
                    let r = photo_fleet_round(&cli, &worker_bin, &mapfleet_bin, limit).await?;
                    photo_rates.push((r.rate(), r.rate_by_cpu()));
                    if let Some(py) =
                        photo_fleet::python_baseline(&photo_fleet::repo_root(), r.worker_core)?
                    {
                        println!(
                            "python:      monolithic pipeline on the same core: {:.2} images/s embedding once ({:.2} by CPU time), {:.2} twice ({:.2})",
                            py.once.0, py.once.1, py.twice.0, py.twice.1
                        );
                        python_rates.push(py);
                    }
                }
            }
        }
    }
    let (b, f, m) = (
        median(baseline_rates),
        median(fleet_rates),
        median(map_rates),
    );
    println!("summary (medians of {} rounds):", cli.rounds.max(1));
    chaos_runs.summary()?;
    if let Some(b) = b {
        println!("baseline:        {b:.0} msg/s");
    }
    if let Some(f) = f {
        println!("echo-fleet:      {f:.0} steps/s");
    }
    if let Some(m) = m {
        println!("map-coordinator: {m:.0} items/s");
    }
    if !scaling_rates.is_empty() {
        let one = median(scaling_rates.iter().map(|r| r.0).collect()).unwrap_or(0.0);
        let two = median(scaling_rates.iter().map(|r| r.1).collect()).unwrap_or(0.0);
        let ratios: Vec<String> = scaling_rates
            .iter()
            .map(|r| format!("{:.2}", r.1 / r.0))
            .collect();
        println!(
            "photo-scaling:   {one:.2} images/s on 1 worker, {two:.2} on 2: {:.2}x (aim >= 1.8x; rounds: {})",
            two / one,
            ratios.join(", ")
        );
    }
    if !photo_rates.is_empty() {
        let wall = median(photo_rates.iter().map(|r| r.0).collect()).unwrap_or(0.0);
        let cpu = median(photo_rates.iter().map(|r| r.1).collect()).unwrap_or(0.0);
        println!(
            "photo-fleet:     {wall:.2} images/s on one worker core ({cpu:.2} per worker CPU second)"
        );
        if !python_rates.is_empty() {
            let py = |f: &dyn Fn(&photo_fleet::PythonFigures) -> f64| {
                median(python_rates.iter().map(f).collect()).unwrap_or(f64::NAN)
            };
            let (once, once_cpu) = (py(&|p| p.once.0), py(&|p| p.once.1));
            let (twice, twice_cpu) = (py(&|p| p.twice.0), py(&|p| p.twice.1));
            println!(
                "ratio:           photo-fleet / Python embedding once = {:.2} wall, {:.2} by CPU time ({once:.2}, {once_cpu:.2} images/s); / embedding twice = {:.2}, {:.2} ({twice:.2}, {twice_cpu:.2})",
                wall / once,
                cpu / once_cpu,
                wall / twice,
                cpu / twice_cpu
            );
        }
    }
    if let (Some(b), Some(f)) = (b, f) {
        println!(
            "ratio:           echo-fleet steps/s / baseline msgs/s = {:.2} (a step is a step message of its own, its share of an outcome message and the coordinator's Redis work)",
            f / b
        );
    }
    if let (Some(b), Some(m)) = (b, m) {
        println!(
            "ratio:           map-coordinator items/s / baseline msgs/s = {:.2} (aim >= 0.5; an item is a step message, its share of an outcome message and the coordinator's Redis work)",
            m / b
        );
    }
    Ok(())
}

/// One run of the photo-fleet scenario, printed.
async fn photo_fleet_round(
    cli: &Cli,
    worker_bin: &std::path::Path,
    mapfleet_bin: &std::path::Path,
    limit: Duration,
) -> anyhow::Result<photo_fleet::Report> {
    let repo = photo_fleet::repo_root();
    let models_dir = cli
        .models_dir
        .clone()
        .unwrap_or_else(|| repo.join("mapfleet-data/models"));
    let r = tokio::time::timeout(
        limit + Duration::from_secs(60),
        photo_fleet::run(&photo_fleet::Params {
            amqp_url: &cli.amqp_url,
            redis_url: &cli.redis_url,
            worker_bin,
            mapfleet_bin,
            photos: cli.photos,
            repo: &repo,
            models_dir: &models_dir,
            limit,
        }),
    )
    .await
    .context("photo-fleet timed out")??;
    println!(
        "photo-fleet: {} rider photos through 1 coordinator and 1 worker x 1 slot (worker on core {}): {:.2} s, {:.2} images/s, {:.2} images per worker CPU second; worker peak RSS {:.1} MB",
        r.photos,
        r.worker_core
            .map_or_else(|| "any".to_string(), |c| c.to_string()),
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.rate_by_cpu(),
        r.worker_peak_rss as f64 / 1e6
    );
    Ok(r)
}
