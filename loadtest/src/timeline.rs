//! One Map through a real fleet, watched as it runs: one `mapfleet coordinator` and K
//! `mapfleet-worker` processes on a fresh prefix, each serving Prometheus metrics on a
//! loopback port of its own. While the execution runs, every sample period reads the Map's
//! progress (Redis), the steps queue's backlog (RabbitMQ, a passive declare) and the
//! coordinator's step latency histogram (publish → outcome applied); at the end, the
//! workers' task duration histograms. The report ([`crate::report`]) draws these.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use coordinator::driver::Status;
use coordinator::engine::ExecutionInfo;
use coordinator::engine::history::Event;
use coordinator::fleet::client::FleetClient;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::Value;
use shared::credentials::FleetUrlsEnv;
use shared::testkit::unique_prefix;
use shared::topology::Topology;

use crate::map_coordinator::wait_for_consumers;
use crate::scrape::{self, Histogram};

pub struct Params<'a> {
    pub amqp_url: &'a str,
    pub redis_url: &'a str,
    pub worker_bin: &'a Path,
    pub mapfleet_bin: &'a Path,
    pub workers: usize,
    /// Flags of every worker besides the connection ones (`--concurrency 4`, ...).
    pub worker_args: Vec<String>,
    /// `MAPFLEET_MODELS_DIR` of the workers, for the photo tasks.
    pub models_dir: Option<PathBuf>,
    /// The definition (JSON text) and the execution's input.
    pub definition: String,
    pub input: Value,
    pub sample_every: Duration,
    pub limit: Duration,
}

/// One sample, `t` seconds after the submit.
#[derive(Debug, Clone)]
pub struct Sample {
    pub t: f64,
    /// Map iterations succeeded so far.
    pub done: u64,
    /// Steps ready in the steps queue.
    pub backlog: u64,
    /// Step latency since the previous sample: p50, p90, p99 (seconds).
    pub latency: Option<[f64; 3]>,
}

/// A task's durations over the run, from the workers' histograms.
#[derive(Debug, Clone)]
pub struct TaskFigures {
    pub task: String,
    pub count: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
}

pub struct Run {
    pub elapsed: Duration,
    pub samples: Vec<Sample>,
    pub tasks: Vec<TaskFigures>,
    /// The whole run's step latency.
    pub latency: Histogram,
    pub output: Value,
    pub history: Vec<Event>,
    /// CPU time from the submit to the end, by who spent it.
    pub cpu: CpuTimes,
    /// The largest peak resident set (`VmHWM`) of the workers, bytes (0 where unknown).
    pub worker_peak_rss: u64,
}

/// CPU time spent during a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub workers: Duration,
    pub coordinator: Duration,
    /// RabbitMQ (`beam.smp`) and Redis (`redis-server`) on this machine, whoever else
    /// used them meanwhile.
    pub broker: Duration,
    pub redis: Duration,
}

impl CpuTimes {
    pub(crate) fn now(workers: &[u32], coordinator: u32) -> Self {
        use crate::photo_fleet::{cpu_time, cpu_time_of};
        CpuTimes {
            workers: workers.iter().map(|&p| cpu_time(p)).sum(),
            coordinator: cpu_time(coordinator),
            broker: cpu_time_of("beam.smp"),
            redis: cpu_time_of("redis-server"),
        }
    }

    pub(crate) fn since(self, earlier: CpuTimes) -> Self {
        CpuTimes {
            workers: self.workers.saturating_sub(earlier.workers),
            coordinator: self.coordinator.saturating_sub(earlier.coordinator),
            broker: self.broker.saturating_sub(earlier.broker),
            redis: self.redis.saturating_sub(earlier.redis),
        }
    }
}

impl std::fmt::Display for CpuTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU s: workers {:.2}, coordinator {:.2}, RabbitMQ {:.2}, Redis {:.2}",
            self.workers.as_secs_f64(),
            self.coordinator.as_secs_f64(),
            self.broker.as_secs_f64(),
            self.redis.as_secs_f64()
        )
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

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn logs() -> Stdio {
    if std::env::var_os("MAPFLEET_LOADTEST_LOGS").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// Runs the execution on a fresh prefix, cleaned up afterwards whatever the outcome.
pub async fn run(p: &Params<'_>) -> anyhow::Result<Run> {
    crate::map_coordinator::ensure_built(p.worker_bin, "worker")?;
    crate::map_coordinator::ensure_built(p.mapfleet_bin, "mapfleet")?;
    let topo = Topology::new(unique_prefix("loadtest-report"), 5);
    shared::testkit::declare(p.amqp_url, &topo).await?;
    let data_dir = std::env::temp_dir().join(format!("{}-data", topo.prefix()));
    let result = measure(p, &topo, &data_dir).await;
    let cleanup = shared::testkit::teardown(p.amqp_url, p.redis_url, topo.prefix()).await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let run = result?;
    cleanup.context("cleaning up the prefix")?;
    Ok(run)
}

async fn measure(p: &Params<'_>, topo: &Topology, data_dir: &Path) -> anyhow::Result<Run> {
    if p.models_dir.is_some() {
        crate::scaling::upload_photos(data_dir, &p.input)?;
    }
    let delivery_limit = topo.delivery_limit().to_string();
    let mut worker_addrs = Vec::new();
    let mut procs = Vec::new();
    for _ in 0..p.workers {
        let addr = free_addr()?;
        let mut cmd = Command::new(p.worker_bin);
        cmd.fleet_urls(p.amqp_url, p.redis_url)
            .args([
                "--prefix",
                topo.prefix(),
                "--delivery-limit",
                &delivery_limit,
            ])
            .args(["--metrics-addr", &addr.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .args(&p.worker_args);
        if let Some(models) = &p.models_dir {
            cmd.env("MAPFLEET_MODELS_DIR", models);
        }
        procs.push(Proc(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logs())
                .spawn()
                .with_context(|| format!("spawning {}", p.worker_bin.display()))?,
        ));
        worker_addrs.push(addr);
    }
    let coordinator_addr = free_addr()?;
    procs.push(Proc(
        Command::new(p.mapfleet_bin)
            .arg("coordinator")
            .fleet_urls(p.amqp_url, p.redis_url)
            .args([
                "--prefix",
                topo.prefix(),
                "--delivery-limit",
                &delivery_limit,
            ])
            .args(["--metrics-addr", &coordinator_addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logs())
            .spawn()
            .with_context(|| format!("spawning {}", p.mapfleet_bin.display()))?,
    ));
    let steps_queue = topo.default_steps_queue();
    wait_for_consumers(p.amqp_url, &steps_queue, p.workers as u32).await?;
    wait_for_consumers(p.amqp_url, &topo.outcomes_queue(), 1).await?;

    let amqp =
        shared::amqp::connect(p.amqp_url, "loadtest-backlog", Duration::from_secs(15)).await?;
    let channel = amqp.create_channel().await?;
    let client = FleetClient::connect(p.redis_url, topo.prefix()).await?;
    let def = coordinator::asl::parse::parse_definition(&p.definition)
        .map_err(|e| anyhow::anyhow!("the report's definition does not parse: {e:?}"))?;
    let info = ExecutionInfo::new(
        "loadtest-report",
        topo.prefix(),
        p.input.clone(),
        chrono::Utc::now(),
    );
    let arn = info.execution_arn.clone();
    let latency_of = |text: &str| {
        let mut all = Histogram::default();
        for h in scrape::histograms(text, "mapfleet_step_latency_seconds").values() {
            all.add(h);
        }
        all
    };
    let first = latency_of(&scrape::get(coordinator_addr).await?);
    let mut previous = first.clone();

    let worker_pids: Vec<u32> = procs.iter().take(p.workers).map(|c| c.0.id()).collect();
    let coordinator_pid = procs.last().map(|c| c.0.id()).unwrap_or(0);
    let cpu_before = CpuTimes::now(&worker_pids, coordinator_pid);
    let started = Instant::now();
    client.submit(&p.definition, &def, &info).await?;
    let mut samples = Vec::new();
    let mut next_sample = Duration::ZERO;
    let status = loop {
        let s = client.status(&arn).await?;
        if s != Status::Running {
            break s;
        }
        let t = started.elapsed();
        if t >= p.limit {
            bail!("the Map is still RUNNING after {:?}", p.limit);
        }
        if t >= next_sample {
            next_sample = t + p.sample_every;
            let (_, done, _) = client.progress(&arn).await?;
            let backlog = channel
                .queue_declare(
                    steps_queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|q| u64::from(q.message_count()))
                .unwrap_or(0);
            let now = match scrape::get(coordinator_addr).await {
                Ok(text) => latency_of(&text),
                Err(_) => previous.clone(),
            };
            let window = now.since(&previous);
            previous = now;
            let latency = match (
                window.quantile(0.5),
                window.quantile(0.9),
                window.quantile(0.99),
            ) {
                (Some(a), Some(b), Some(c)) => Some([a, b, c]),
                _ => None,
            };
            samples.push(Sample {
                t: t.as_secs_f64(),
                done,
                backlog,
                latency,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let elapsed = started.elapsed();
    let cpu = CpuTimes::now(&worker_pids, coordinator_pid).since(cpu_before);
    let result = client.describe(&arn, false).await?;
    ensure!(
        status == Status::Succeeded,
        "execution ended {}: {:?}",
        status.as_str(),
        result.error
    );
    let (_, done, _) = client.progress(&arn).await?;
    samples.push(Sample {
        t: elapsed.as_secs_f64(),
        done,
        backlog: 0,
        latency: None,
    });
    // The last outcomes' latency is observed as they are applied: read it once more.
    let latency = latency_of(&scrape::get(coordinator_addr).await?).since(&first);

    let mut per_task: std::collections::BTreeMap<String, Histogram> = Default::default();
    for addr in &worker_addrs {
        let text = scrape::get(*addr)
            .await
            .with_context(|| format!("reading worker metrics at {addr}"))?;
        for (labels, h) in scrape::histograms(&text, "mapfleet_task_duration_seconds") {
            let task = scrape::label(&labels, "task").unwrap_or("?").to_string();
            per_task.entry(task).or_default().add(&h);
        }
    }
    let tasks = per_task
        .into_iter()
        .filter(|(_, h)| h.count > 0.0)
        .map(|(task, h)| TaskFigures {
            task,
            count: h.count,
            mean: h.mean().unwrap_or(0.0),
            p50: h.quantile(0.5).unwrap_or(0.0),
            p95: h.quantile(0.95).unwrap_or(0.0),
        })
        .collect();
    let history = client.history(&arn).await?;
    let worker_peak_rss = worker_pids
        .iter()
        .filter_map(|&pid| crate::photo_fleet::peak_rss(pid))
        .max()
        .unwrap_or(0);
    let _ = amqp.close(200, "done".into()).await;
    drop(procs);
    Ok(Run {
        elapsed,
        samples,
        tasks,
        latency,
        output: result
            .output
            .context("a SUCCEEDED execution without output")?,
        history,
        cpu,
        worker_peak_rss,
    })
}
