//! A Distributed Map of N `echo` items through the real fleet: a JSONL object of N items in
//! the local buckets of a fresh data dir, one `mapfleet coordinator --data-dir` process and
//! K `mapfleet-worker` processes on a fresh prefix, a ResultWriter writing the results back
//! to the buckets. Measured from the submit to SUCCEEDED; verified from the ResultWriter's
//! files: exactly N SUCCEEDED records, each item once, none FAILED. Reports the
//! coordinator's peak RSS (`VmHWM` of its process) as well, and Redis's peak `used_memory`
//! (`INFO memory`, sampled every 100 ms from before the submit to SUCCEEDED) next to what it
//! used just before the submit: a run's state in Redis is what it grew by. Redis is the
//! machine's, so other users' keys move it too: compare runs on a quiet Redis.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use coordinator::engine::ExecutionInfo;
use coordinator::fleet::client::FleetClient;
use serde_json::{Value, json};
use shared::credentials::FleetUrlsEnv;
use shared::testkit::unique_prefix;

use crate::map_coordinator::spawn_workers;
use shared::topology::Topology;

use crate::map_coordinator::{ensure_built, run_to_success, wait_for_consumers};

pub struct Params<'a> {
    pub amqp_url: &'a str,
    pub redis_url: &'a str,
    pub worker_bin: &'a Path,
    pub mapfleet_bin: &'a Path,
    pub items: usize,
    pub workers: usize,
    pub concurrency: usize,
    pub window: usize,
    /// The Map's `MaxConcurrency` (children in flight).
    pub max_concurrency: usize,
    pub step_batch: Option<usize>,
    pub limit: Duration,
}

pub struct Report {
    pub items: usize,
    pub elapsed: Duration,
    /// The coordinator's peak resident set, bytes.
    pub coordinator_peak_rss: u64,
    /// Redis's `used_memory` just before the submit, bytes.
    pub redis_before: u64,
    /// Redis's highest `used_memory` sampled during the run, bytes.
    pub redis_peak: u64,
    pub result_files: usize,
    /// CPU time from the submit to SUCCEEDED, by who spent it.
    pub cpu: crate::timeline::CpuTimes,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }

    /// How much Redis grew during the run at its peak, bytes.
    pub fn redis_growth(&self) -> u64 {
        self.redis_peak.saturating_sub(self.redis_before)
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The state machine: a Distributed Map over `items/items.jsonl`, each child one `echo`
/// Task, the results written under `results/run/` (COMPACT: the outputs only).
pub fn definition(max_concurrency: usize) -> Value {
    definition_over(max_concurrency, "items.jsonl", "COMPACT")
}

/// [`definition`] over the object `items/KEY`, its ResultWriter's `Transformation` given
/// (`NONE` keeps every child's record, which ListExecutions with `mapRunArn` lists).
pub fn definition_over(max_concurrency: usize, key: &str, transformation: &str) -> Value {
    json!({
        "Comment": "loadtest distributed-map",
        "StartAt": "Echo",
        "States": {
            "Echo": {
                "Type": "Map",
                "MaxConcurrency": max_concurrency,
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSONL"},
                    "Parameters": {"Bucket": "items", "Key": key}
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                    "StartAt": "E",
                    "States": {
                        "E": {"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "End": true}
                    }
                },
                "ResultWriter": {
                    "Resource": "arn:aws:states:::s3:putObject",
                    "Parameters": {"Bucket": "results", "Prefix": "run"},
                    "WriterConfig": {"OutputType": "JSONL", "Transformation": transformation}
                },
                "End": true
            }
        }
    })
}

pub async fn run(p: &Params<'_>) -> anyhow::Result<Report> {
    ensure_built(p.worker_bin, "worker")?;
    ensure_built(p.mapfleet_bin, "mapfleet")?;
    let topo = Topology::new(unique_prefix("loadtest-dmap"), 5);
    let data = tempfile_dir()?;
    shared::testkit::declare(p.amqp_url, &topo).await?;
    let result = measure(p, &topo, &data).await;
    let cleanup = shared::testkit::teardown(p.amqp_url, p.redis_url, topo.prefix()).await;
    let _ = std::fs::remove_dir_all(&data);
    let report = result?;
    cleanup.context("cleaning up the prefix")?;
    Ok(report)
}

pub fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(unique_prefix("loadtest-dmap-data"));
    std::fs::create_dir_all(dir.join("buckets/items"))?;
    std::fs::create_dir_all(dir.join("buckets/results"))?;
    Ok(dir)
}

/// Writes the items object, a line at a time (never the whole list in memory).
fn write_items(data: &Path, n: usize) -> anyhow::Result<()> {
    write_items_at(data, "items.jsonl", n)
}

/// Writes `n` items to the object `items/KEY`.
pub fn write_items_at(data: &Path, key: &str, n: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(data.join("buckets/items").join(key))?;
    let mut w = std::io::BufWriter::new(file);
    for i in 0..n {
        writeln!(w, "{{\"i\":{i}}}")?;
    }
    w.flush()?;
    Ok(())
}

async fn measure(p: &Params<'_>, topo: &Topology, data: &Path) -> anyhow::Result<Report> {
    write_items(data, p.items)?;
    let workers = spawn_workers(
        p.worker_bin,
        p.amqp_url,
        p.redis_url,
        topo,
        p.workers,
        p.concurrency,
        p.window,
    )?;
    let worker_pids: Vec<u32> = workers.iter().map(|w| w.child.id()).collect();
    let coordinator = spawn_coordinator(p, topo, data)?;
    wait_for_consumers(p.amqp_url, &topo.default_steps_queue(), p.workers as u32).await?;
    wait_for_consumers(p.amqp_url, &topo.outcomes_queue(), 1).await?;

    let client = FleetClient::connect(p.redis_url, topo.prefix()).await?;
    let text = definition(p.max_concurrency).to_string();
    let def = coordinator::asl::parse::parse_definition(&text)
        .map_err(|e| anyhow::anyhow!("the loadtest definition does not parse: {e:?}"))?;
    let info = ExecutionInfo::new("loadtest", topo.prefix(), json!({}), chrono::Utc::now());
    let redis = shared::redis_schema::connect(p.redis_url)
        .await
        .context("connecting to Redis to sample its memory")?;
    let sampler = RedisMemory::start(redis).await?;
    let coordinator_pid = coordinator.0.id();
    let cpu_before = crate::timeline::CpuTimes::now(&worker_pids, coordinator_pid);
    let ran = run_to_success(&client, &text, &def, &info, p.limit).await;
    let cpu = crate::timeline::CpuTimes::now(&worker_pids, coordinator_pid).since(cpu_before);
    let (redis_before, redis_peak) = sampler.stop();
    let (elapsed, result) = ran?;
    let coordinator_peak_rss = crate::photo_fleet::peak_rss(coordinator.0.id()).unwrap_or(0);
    drop(coordinator);
    let output = result.output.context("a SUCCEEDED Map without output")?;
    let key = output["ResultWriterDetails"]["Key"]
        .as_str()
        .context("no ResultWriterDetails in the Map's output")?;
    let result_files = verify(&data.join("buckets/results"), key, p.items)?;
    Ok(Report {
        items: p.items,
        elapsed,
        coordinator_peak_rss,
        redis_before,
        redis_peak,
        result_files,
        cpu,
    })
}

/// Samples Redis's `used_memory` in the background, keeping the highest value.
struct RedisMemory {
    before: u64,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RedisMemory {
    const EVERY: Duration = Duration::from_millis(100);

    async fn used(conn: &mut shared::redis_conn::RedisConn) -> anyhow::Result<u64> {
        let texts = conn.info("memory").await.context("Redis INFO memory")?;
        texts
            .iter()
            .filter_map(|t| coordinator::fleet::service::redis_memory(t).0)
            .max()
            .map(|used| used.max(0) as u64)
            .context("no used_memory in Redis's INFO memory")
    }

    async fn start(mut conn: shared::redis_conn::RedisConn) -> anyhow::Result<RedisMemory> {
        use std::sync::atomic::Ordering;
        let before = Self::used(&mut conn).await?;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Self::EVERY).await;
                // A failed sample is skipped: the run itself reports Redis failures.
                if let Ok(used) = Self::used(&mut conn).await {
                    seen.fetch_max(used, Ordering::Relaxed);
                }
            }
        });
        Ok(RedisMemory { before, peak, task })
    }

    /// Stops sampling: (used before, peak).
    fn stop(self) -> (u64, u64) {
        self.task.abort();
        (
            self.before,
            self.peak.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// Every item exactly once among the SUCCEEDED files, none FAILED; returns the file count.
fn verify(results: &Path, manifest_key: &str, n: usize) -> anyhow::Result<usize> {
    let manifest: Value = serde_json::from_slice(&std::fs::read(results.join(manifest_key))?)
        .context("the manifest")?;
    let failed = manifest["ResultFiles"]["FAILED"]
        .as_array()
        .map_or(0, Vec::len);
    ensure!(failed == 0, "{failed} FAILED result files");
    let files = manifest["ResultFiles"]["SUCCEEDED"]
        .as_array()
        .context("no SUCCEEDED files in the manifest")?;
    let mut seen = vec![0u8; n];
    let mut records = 0usize;
    for f in files {
        let key = f["Key"].as_str().context("a file without a key")?;
        let text = std::fs::read_to_string(results.join(key))?;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_str(line).with_context(|| format!("{key}: {line}"))?;
            let i = v["i"].as_u64().context("a record without its item")? as usize;
            ensure!(i < n, "{key}: item {i} out of range");
            seen[i] = seen[i].saturating_add(1);
            records += 1;
        }
    }
    if let Some(i) = seen.iter().position(|&c| c != 1) {
        bail!("item {i} recorded {} times ({records} records)", seen[i]);
    }
    ensure!(records == n, "{records} records for {n} items");
    Ok(files.len())
}

pub fn spawn_coordinator(p: &Params<'_>, topo: &Topology, data: &Path) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(p.mapfleet_bin);
    cmd.arg("coordinator")
        .arg("--data-dir")
        .arg(data)
        .fleet_urls(p.amqp_url, p.redis_url)
        .args(["--prefix", topo.prefix()])
        .args(["--delivery-limit", &topo.delivery_limit().to_string()])
        .args(["--confirm-window", &p.window.to_string()]);
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
        .with_context(|| format!("spawning {}", p.mapfleet_bin.display()))?;
    Ok(Proc(child))
}
