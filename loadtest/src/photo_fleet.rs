//! The rider-photo workflow on the fleet, per core: the workshop's definition
//! (`examples/rider-photos/ImageProcessingStateMachine-DynamicInput.json`) over `--photos`
//! items (the four workshop photos, each uploaded again under its own key per pass, so that no
//! step finds another item's analysis) through one `mapfleet coordinator` and one
//! `mapfleet-worker --concurrency 1` with the photo tasks, on a fresh prefix.
//!
//! The worker is pinned to the last allowed core and the coordinator to the others (with
//! `taskset`, when there is more than one core), so images/s is the figure of one worker core,
//! comparable with the embedded bench and the Python baseline pinned the same way. The worker's
//! CPU time over the run (from `/proc/<pid>/stat`) gives images per worker CPU second too.
//!
//! With `MAPFLEET_PYTHON` set (the interpreter of `loadtest/python-baseline/setup_python_baseline.sh`'s
//! venv), each round also runs the monolithic Python pipeline on the worker's core, right after
//! the fleet run, and the summary gives the ratios.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use coordinator::engine::ExecutionInfo;
use coordinator::fleet::client::FleetClient;
use serde_json::{Value, json};
use shared::credentials::FleetUrlsEnv;
use shared::testkit::unique_prefix;
use shared::topology::Topology;

use crate::map_coordinator::{run_to_success, wait_for_consumers};

pub const PHOTOS: [&str; 4] = [
    "1_happy_face.jpg",
    "2_sunglass_face.jpg",
    "3_multiple_faces.jpg",
    "4_no_face.jpg",
];

pub struct Params<'a> {
    pub amqp_url: &'a str,
    pub redis_url: &'a str,
    pub worker_bin: &'a Path,
    pub mapfleet_bin: &'a Path,
    /// Items of the Map (a multiple of 4 keeps the workshop's mix).
    pub photos: usize,
    /// The repository root (definition and photos).
    pub repo: &'a Path,
    /// `MAPFLEET_MODELS_DIR` for the worker.
    pub models_dir: &'a Path,
    pub limit: Duration,
}

pub struct Report {
    pub photos: usize,
    pub elapsed: Duration,
    /// The worker's user + system CPU time during the run.
    pub worker_cpu: Duration,
    /// The core the worker ran on, if pinned.
    pub worker_core: Option<usize>,
    /// The worker's peak resident set (`VmHWM`), bytes: both face models loaded.
    pub worker_peak_rss: u64,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.photos as f64 / self.elapsed.as_secs_f64()
    }

    pub fn rate_by_cpu(&self) -> f64 {
        self.photos as f64 / self.worker_cpu.as_secs_f64().max(1e-9)
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

/// The cores this process may run on, from `/proc/self/status` (`Cpus_allowed_list`).
fn allowed_cores() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    let mut cores = Vec::new();
    for part in list.trim().split(',') {
        let mut ends = part.split('-').map(|v| v.trim().parse::<usize>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), Some(Ok(b))) => cores.extend(a..=b),
            (Some(Ok(a)), None) => cores.push(a),
            _ => {}
        }
    }
    cores
}

/// A command run under `taskset -c <cores>` when `cores` is given and `taskset` exists.
fn pinned(bin: &Path, cores: Option<&str>) -> Command {
    match cores {
        Some(c) if Path::new("/usr/bin/taskset").exists() => {
            let mut cmd = Command::new("/usr/bin/taskset");
            cmd.args(["-c", c]).arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}

/// A process's peak resident set (`VmHWM`), bytes.
pub(crate) fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User + system CPU time of a process (clock ticks of 10 ms, fine over seconds of work).
pub(crate) fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // After the command name the state is field 3; utime is 14 and stime 15 (1-based).
    let tick = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = tick(14).unwrap_or(0) + tick(15).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

pub async fn run(p: &Params<'_>) -> anyhow::Result<Report> {
    for (bin, build) in [(p.worker_bin, "worker"), (p.mapfleet_bin, "coordinator")] {
        ensure!(
            bin.exists(),
            "{} not found: build it (`cargo build --release -p {build}`) or pass its flag",
            bin.display()
        );
    }
    ensure!(
        p.models_dir.join("libonnxruntime.so").exists(),
        "no face models in {}: run deploy/setup-models.sh",
        p.models_dir.display()
    );
    let topo = Topology::new(unique_prefix("loadtest-photos"), 5);
    // Declared before the processes start, deleted (queues and keys) afterwards; the
    // worker's face collection and metadata table live under the same prefix.
    shared::testkit::declare(p.amqp_url, &topo).await?;
    let data_dir = std::env::temp_dir().join(format!("{}-data", topo.prefix()));
    let result = measure(p, &topo, &data_dir).await;
    let cleanup = shared::testkit::teardown(p.amqp_url, p.redis_url, topo.prefix()).await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let report = result?;
    cleanup.context("cleaning up the prefix")?;
    Ok(report)
}

/// Copies the photos into the worker's local bucket, one key per item.
fn upload(p: &Params<'_>, data_dir: &Path) -> anyhow::Result<Vec<Value>> {
    let src = p.repo.join("examples/rider-photos/photos");
    let bucket = data_dir.join("buckets/mapfleet-rider-photos");
    let mut items = Vec::with_capacity(p.photos);
    for i in 0..p.photos {
        let name = PHOTOS[i % PHOTOS.len()];
        let key = format!("p{}/{name}", i / PHOTOS.len());
        let dest = bucket.join(&key);
        std::fs::create_dir_all(dest.parent().context("photo key")?)?;
        std::fs::copy(src.join(name), &dest)
            .with_context(|| format!("copying {name} into {}", dest.display()))?;
        items.push(json!({"userId": format!("rider_{i}"), "s3Key": key}));
    }
    Ok(items)
}

async fn measure(p: &Params<'_>, topo: &Topology, data_dir: &Path) -> anyhow::Result<Report> {
    let items = upload(p, data_dir)?;
    let cores = allowed_cores();
    let (worker_core, others) = match cores.split_last() {
        Some((last, rest)) if !rest.is_empty() => (
            Some(*last),
            Some(
                rest.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ),
        _ => (None, None),
    };
    let logs = || {
        if std::env::var_os("MAPFLEET_LOADTEST_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        }
    };
    let worker_core_arg = worker_core.map(|c| c.to_string());
    let worker = Proc(
        pinned(p.worker_bin, worker_core_arg.as_deref())
            .fleet_urls(p.amqp_url, p.redis_url)
            .args(["--prefix", topo.prefix()])
            .args(["--delivery-limit", &topo.delivery_limit().to_string()])
            .args(["--concurrency", "1", "--data-dir"])
            .arg(data_dir)
            .env("MAPFLEET_MODELS_DIR", p.models_dir)
            .env_remove("MAPFLEET_METRICS_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logs())
            .spawn()
            .with_context(|| format!("spawning {}", p.worker_bin.display()))?,
    );
    let _coordinator = Proc(
        pinned(p.mapfleet_bin, others.as_deref())
            .arg("coordinator")
            .fleet_urls(p.amqp_url, p.redis_url)
            .args(["--prefix", topo.prefix()])
            .args(["--delivery-limit", &topo.delivery_limit().to_string()])
            .env_remove("MAPFLEET_METRICS_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logs())
            .spawn()
            .with_context(|| format!("spawning {}", p.mapfleet_bin.display()))?,
    );
    wait_for_consumers(p.amqp_url, &topo.default_steps_queue(), 1).await?;
    wait_for_consumers(p.amqp_url, &topo.outcomes_queue(), 1).await?;

    let def_path = p
        .repo
        .join("examples/rider-photos/ImageProcessingStateMachine-DynamicInput.json");
    let text = std::fs::read_to_string(&def_path)
        .with_context(|| format!("reading {}", def_path.display()))?;
    let def = coordinator::asl::parse::parse_definition(&text)
        .map_err(|e| anyhow::anyhow!("the workshop definition does not parse: {e:?}"))?;
    let input = json!({ "s3Bucket": "mapfleet-rider-photos", "images": items });
    let info = ExecutionInfo::new("loadtest-photos", topo.prefix(), input, chrono::Utc::now());
    let client = FleetClient::connect(p.redis_url, topo.prefix()).await?;

    let cpu0 = cpu_time(worker.0.id());
    let (elapsed, result) = run_to_success(&client, &text, &def, &info, p.limit).await?;
    let worker_cpu = cpu_time(worker.0.id()).saturating_sub(cpu0);
    let worker_peak_rss = peak_rss(worker.0.id()).unwrap_or(0);
    verify(&result.output.context("no output")?, p.photos)?;
    Ok(Report {
        photos: p.photos,
        elapsed,
        worker_cpu,
        worker_core,
        worker_peak_rss,
    })
}

/// Each item ended as the workshop's photo decides: only the first happy face is accepted
/// (later ones are duplicates of it), the others are rejected with the workshop's messages.
pub(crate) fn verify(output: &Value, photos: usize) -> anyhow::Result<()> {
    let results = output["results"]
        .as_array()
        .context("the output has no results array")?;
    ensure!(
        results.len() == photos,
        "{} results for {photos} photos",
        results.len()
    );
    let mut accepted = 0;
    for (i, r) in results.iter().enumerate() {
        let message = r["errorInfo"]["messageToSend"]["message"].as_str();
        let ok = match PHOTOS[i % PHOTOS.len()] {
            "1_happy_face.jpg" if r["parallelResult"].is_array() => {
                accepted += 1;
                true
            }
            "1_happy_face.jpg" => message.is_some_and(|m| m.contains("already in the system")),
            "2_sunglass_face.jpg" => message == Some("Face is wearing sunglasses"),
            "3_multiple_faces.jpg" => message == Some("Detected 3 faces in the photo."),
            _ => message == Some("Detected 0 faces in the photo."),
        };
        ensure!(ok, "results[{i}] is not what its photo decides: {r}");
    }
    ensure!(accepted == 1, "{accepted} happy faces accepted, expected 1");
    Ok(())
}

/// The repository root, from the loadtest crate's manifest dir at build time.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The Python pipeline's images/s (median of its repeats), wall and by CPU time, embedding
/// once and twice.
pub struct PythonFigures {
    pub once: (f64, f64),
    pub twice: (f64, f64),
}

/// Runs `loadtest/python-baseline/python_pipeline.py` (or `MAPFLEET_PYTHON_PIPELINE`) with the
/// interpreter in `MAPFLEET_PYTHON`, pinned to `core`; `None` when unset.
pub fn python_baseline(repo: &Path, core: Option<usize>) -> anyhow::Result<Option<PythonFigures>> {
    let Some(python) = std::env::var_os("MAPFLEET_PYTHON").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let script = std::env::var_os("MAPFLEET_PYTHON_PIPELINE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("loadtest/python-baseline/python_pipeline.py"));
    let out = std::env::temp_dir().join(format!("loadtest-py-{}.json", std::process::id()));
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .args(["--repeat", "5", "--json"])
        .arg(&out)
        .args(["--cpu", &core.map_or(-1, |c| c as i64).to_string()]);
    if let Some(m) = std::env::var_os("MAPFLEET_PYTHON_MODELS") {
        cmd.arg("--models").arg(m);
    }
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(status.success(), "the Python baseline failed: {status}");
    let v: Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    let _ = std::fs::remove_file(&out);
    let med = |by: &str, k: &str| {
        let mut xs: Vec<f64> = v[by][k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        xs.sort_by(f64::total_cmp);
        xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
    };
    Ok(Some(PythonFigures {
        once: (
            med("pipeline_img_per_s", "embed_once"),
            med("pipeline_img_per_cpu_s", "embed_once"),
        ),
        twice: (
            med("pipeline_img_per_s", "embed_twice"),
            med("pipeline_img_per_cpu_s", "embed_twice"),
        ),
    }))
}

/// The summed CPU time of this machine's processes named `comm` (as `/proc/<pid>/comm`
/// has it: `beam.smp` for RabbitMQ, `redis-server`), for what a run cost the services.
pub(crate) fn cpu_time_of(comm: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .map(cpu_time)
        .sum()
}
