//! A Map of N `echo` items through the real fleet: C coordinator processes (`mapfleet
//! coordinator` or `mapfleet-coordinator`) and K `mapfleet-worker` processes on a fresh
//! prefix. The execution is submitted with [`FleetClient::submit`] (what `mapfleet run
//! --detach` does), measured from the submit to the moment its status reads SUCCEEDED, and
//! verified: the output is the items, in order, and the history shows every iteration
//! started and succeeded exactly once, under unique event ids.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use coordinator::asl::definition::StateMachine;
use coordinator::driver::Status;
use coordinator::embedded::ExecutionResult;
use coordinator::engine::ExecutionInfo;
use coordinator::engine::history::Event;
use coordinator::fleet::client::FleetClient;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::{Value, json};
use shared::credentials::FleetUrlsEnv;
use shared::testkit::{WorkerProcess, unique_prefix};
use shared::topology::Topology;

/// How a coordinator process is started: a binary and the arguments before its flags
/// (`mapfleet` with `coordinator`, or `mapfleet-coordinator` with none).
#[derive(Clone, Copy)]
pub struct CoordinatorCmd<'a> {
    pub bin: &'a Path,
    pub args: &'a [&'a str],
}

pub struct Params<'a> {
    pub amqp_url: &'a str,
    pub redis_url: &'a str,
    pub worker_bin: &'a Path,
    pub coordinator: CoordinatorCmd<'a>,
    pub items: usize,
    pub workers: usize,
    pub coordinators: usize,
    pub concurrency: usize,
    pub window: usize,
    /// `--fleet-cap` of the coordinators (iterations in flight for `MaxConcurrency: 0`).
    pub fleet_cap: Option<usize>,
    /// `--parallel` of the coordinators.
    pub parallel: Option<usize>,
    /// `--step-batch` of the coordinators.
    pub step_batch: Option<usize>,
    pub limit: Duration,
}

pub struct Report {
    pub items: usize,
    pub elapsed: Duration,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }
}

/// A child process killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The state machine: one Map over `$.items`, each iteration one `echo` Task.
pub fn definition() -> Value {
    json!({
        "Comment": "loadtest map-coordinator",
        "StartAt": "Echo",
        "States": {
            "Echo": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 0,
                "ItemProcessor": {
                    "StartAt": "E",
                    "States": {
                        "E": {"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "End": true}
                    }
                },
                "End": true
            }
        }
    })
}

pub async fn run(p: &Params<'_>) -> anyhow::Result<Report> {
    ensure_built(p.worker_bin, "worker")?;
    ensure_built(p.coordinator.bin, "coordinator` or `-p mapfleet")?;
    let topo = Topology::new(unique_prefix("loadtest-map"), 5);
    // Declared before the processes start, deleted (queues and keys) afterwards.
    shared::testkit::declare(p.amqp_url, &topo).await?;
    let result = measure(p, &topo).await;
    let cleanup = shared::testkit::teardown(p.amqp_url, p.redis_url, topo.prefix()).await;
    let report = result?;
    cleanup.context("cleaning up the prefix")?;
    Ok(report)
}

/// Fails with how to build `bin` when it is missing.
pub fn ensure_built(bin: &Path, package: &str) -> anyhow::Result<()> {
    ensure!(
        bin.exists(),
        "{} not found: build it (`cargo build --release -p {package}`) or pass its flag",
        bin.display()
    );
    Ok(())
}

/// `count` utility-task workers on the fleet `topo`, each with `concurrency` task slots and
/// an outcome confirm window of `window`; killed when dropped.
pub fn spawn_workers(
    bin: &Path,
    amqp_url: &str,
    redis_url: &str,
    topo: &Topology,
    count: usize,
    concurrency: usize,
    window: usize,
) -> Result<Vec<WorkerProcess>, shared::testkit::TestkitError> {
    let concurrency = concurrency.to_string();
    let window = window.to_string();
    (0..count)
        .map(|_| {
            WorkerProcess::spawn(
                bin,
                amqp_url,
                redis_url,
                topo,
                &["--concurrency", &concurrency, "--confirm-window", &window],
            )
        })
        .collect()
}

async fn measure(p: &Params<'_>, topo: &Topology) -> anyhow::Result<Report> {
    let _workers = spawn_workers(
        p.worker_bin,
        p.amqp_url,
        p.redis_url,
        topo,
        p.workers,
        p.concurrency,
        p.window,
    )?;
    let _coordinators = (0..p.coordinators)
        .map(|_| spawn_coordinator(p, topo))
        .collect::<anyhow::Result<Vec<_>>>()?;
    wait_for_consumers(p.amqp_url, &topo.default_steps_queue(), p.workers as u32).await?;
    wait_for_consumers(p.amqp_url, &topo.outcomes_queue(), p.coordinators as u32).await?;

    let client = FleetClient::connect(p.redis_url, topo.prefix()).await?;
    let text = definition().to_string();
    let def = coordinator::asl::parse::parse_definition(&text)
        .map_err(|e| anyhow::anyhow!("the loadtest definition does not parse: {e:?}"))?;
    // Small items: the Map's output (all of them) must stay within the 256 KiB payload limit.
    let items: Vec<Value> = (0..p.items).map(|i| json!({ "i": i })).collect();
    let input = json!({ "items": items });
    let info = ExecutionInfo::new("loadtest", topo.prefix(), input, chrono::Utc::now());
    let arn = info.execution_arn.clone();

    let (elapsed, result) = run_to_success(&client, &text, &def, &info, p.limit).await?;
    let output = result
        .output
        .context("a SUCCEEDED execution without output")?;
    let got = output
        .as_array()
        .context("the Map's output is not an array")?;
    ensure!(
        got.len() == items.len(),
        "{} results for {} items",
        got.len(),
        items.len()
    );
    if let Some(i) = (0..items.len()).find(|&i| got[i] != items[i]) {
        bail!("results[{i}] = {} but items[{i}] = {}", got[i], items[i]);
    }
    let (_, ok, failed) = client.progress(&arn).await?;
    ensure!(
        ok == p.items as u64 && failed == 0,
        "iterations succeeded {ok}, failed {failed}, expected {} and 0",
        p.items
    );
    check_history(&client.history(&arn).await?, p.items)?;
    Ok(Report {
        items: p.items,
        elapsed,
    })
}

/// The history of a Map over `n` items: event ids unique and contiguous from 1, every
/// iteration started exactly once and succeeded exactly once.
pub fn check_history(events: &[Event], n: usize) -> anyhow::Result<()> {
    if let Some((i, e)) = events
        .iter()
        .enumerate()
        .find(|(i, e)| e.id != *i as u64 + 1)
    {
        bail!(
            "history event {i} has id {}: ids are not 1..={}",
            e.id,
            events.len()
        );
    }
    coordinator::engine::history::check_exactly_once(events, n)?;
    Ok(())
}

fn spawn_coordinator(p: &Params<'_>, topo: &Topology) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(p.coordinator.bin);
    cmd.args(p.coordinator.args)
        .fleet_urls(p.amqp_url, p.redis_url)
        .args(["--prefix", topo.prefix()])
        .args(["--delivery-limit", &topo.delivery_limit().to_string()])
        .args(["--confirm-window", &p.window.to_string()]);
    if let Some(cap) = p.fleet_cap {
        cmd.args(["--fleet-cap", &cap.to_string()]);
    }
    if let Some(n) = p.parallel {
        cmd.args(["--parallel", &n.to_string()]);
    }
    if let Some(n) = p.step_batch {
        cmd.args(["--step-batch", &n.to_string()]);
    }
    let child = cmd
        .env_remove("MAPFLEET_METRICS_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("MAPFLEET_LOADTEST_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .with_context(|| format!("spawning {}", p.coordinator.bin.display()))?;
    Ok(Proc(child))
}

/// Waits until `n` consumers are on `queue`, so the measurement does not include process
/// start-up.
pub async fn wait_for_consumers(amqp_url: &str, queue: &str, n: u32) -> anyhow::Result<()> {
    let conn = shared::amqp::connect(amqp_url, "loadtest-wait", Duration::from_secs(15)).await?;
    let ch = conn.create_channel().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .context("passive declare")?;
        if q.consumer_count() >= n {
            let _ = conn.close(200, "ready".into()).await;
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{n} consumers did not start on {queue} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The binary `name` next to this one.
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("no parent dir")?
        .join(name))
}

/// Submits an execution, polls its status every 5 ms until it ends (at most `limit`) and
/// returns the time from the submit to its end with the described execution, which must have
/// SUCCEEDED.
pub(crate) async fn run_to_success(
    client: &FleetClient,
    text: &str,
    def: &StateMachine,
    info: &ExecutionInfo,
    limit: Duration,
) -> anyhow::Result<(Duration, ExecutionResult)> {
    let arn = &info.execution_arn;
    let started = Instant::now();
    client.submit(text, def, info).await?;
    let status = loop {
        let s = client.status(arn).await?;
        if s != Status::Running {
            break s;
        }
        if started.elapsed() >= limit {
            let (s, ok, failed) = client.progress(arn).await.unwrap_or_default();
            bail!(
                "the Map is still RUNNING after {limit:?} (items started {s}, succeeded {ok}, failed {failed})"
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let elapsed = started.elapsed();
    let result = client.describe(arn, false).await?;
    ensure!(
        status == Status::Succeeded,
        "execution ended {}: {:?}",
        status.as_str(),
        result.error
    );
    Ok((elapsed, result))
}
