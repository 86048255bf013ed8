//! Per-task latency and images/s per core of the rider-photo workflow in embedded mode (the
//! tasks called in the workflow's order, each step on its own, as the Map iteration runs them),
//! on the four workshop photos, next to the monolithic Python pipeline
//! (`loadtest/python-baseline/python_pipeline.py`) run back to back in the same process tree, pinned to
//! the same core.
//!
//! ```sh
//! deploy/setup-models.sh                       # once
//! bash loadtest/python-baseline/setup_python_baseline.sh  # once, for the Python figure
//! MAPFLEET_PYTHON=~/.cache/py-baseline-venv/bin/python \
//!     taskset -c 1 cargo bench -p worker --bench photo_pipeline
//! ```
//!
//! Environment: `MAPFLEET_BENCH_REPEAT` (default 10, both sides), `MAPFLEET_MODELS_DIR`
//! (default `./mapfleet-data/models` from the workspace root), `MAPFLEET_PYTHON` (the baseline
//! venv's interpreter; without it the Python side is skipped), `MAPFLEET_PYTHON_PIPELINE`
//! (default `loadtest/python-baseline/python_pipeline.py`), `MAPFLEET_PYTHON_MODELS`
//! (its `--models`), `MAPFLEET_BENCH_ROUNDS` (default 2: Python, Rust, Python, Rust; the
//! ratios use the medians), `MAPFLEET_BENCH_JSON` (write the figures there).
//!
//! Pairings (the same work on both sides): the analysis cache on (the default: one SFace
//! embedding per accepted photo, shared by face-search and index-face) against Python's
//! "embedding cached (once)"; the cache off against "embedding computed twice". Per step:
//! face-detection against decode + detect, face-search against embed, thumbnail against the
//! Pillow `draft()` thumbnail. Every figure is given as wall time and as CPU time (this
//! process's threads, from `/proc/self/task/*/schedstat`); on a shared machine the CPU-time
//! ratios are the ones to quote. Sessions are single-threaded.
//!
//! Figures from one run (2-core development machine, `taskset -c 1`, load average 8-9 from
//! other builds, so the CPU-time columns; 3 rounds of 10 repeats, medians):
//!
//! | figure | Python | Rust | ratio (CPU time) |
//! |---|---|---|---|
//! | face-detection, CPU ms | 14.38 | 18.31 | 0.79 |
//! | face-search, CPU ms | 10.58 | 10.38 | 1.02 |
//! | thumbnail, CPU ms | 7.07 | 2.61 | 2.71 |
//! | images/s by CPU time, embedding once (cache on, the default) | 43.88 | 46.20 | 1.05 |
//! | images/s by CPU time, embedding twice (cache off) | 35.02 | 31.62 | 0.90 |
//!
//! Then, after the rounds: SFace's per-face CPU time at batch 1, 2, 4 and 8 (one ONNX run per
//! batch: the batched-inference figure), the workflow with 8 items in flight at once on the
//! core, this process's peak RSS (`VmHWM`, both models loaded), and the headline ratio of
//! embedded images/s against Python's.
//!
//! The thumbnail is made from face-detection's decode (`worker::face::decoded`); before that,
//! the same session gave 0.99 and 0.86. The rest of the gap is in face-detection's JPEG
//! decode (`zune-jpeg`, 9.5 ms against about 7.6 in libjpeg-turbo).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use worker::face::{LocalEngineConfig, ModelPaths, Models};
use worker::photo::{self, DEFAULT_PHOTO_BUCKET, PhotoConfig, PhotoContext};
use worker::store::{LocalStore, ObjectStore};
use worker::task::{Registry, resource_arn};

const PHOTOS: [&str; 4] = [
    "1_happy_face.jpg",
    "2_sunglass_face.jpg",
    "3_multiple_faces.jpg",
    "4_no_face.jpg",
];

/// This process's CPU time in seconds, all threads (the tasks' decoding and inference run on
/// tokio's blocking thread): the sum of each thread's run time in `/proc/self/task/*/schedstat`,
/// in nanoseconds, so that one step's CPU time can be measured (like Python's
/// `time.process_time_ns`, which the baseline's `cpu-med` column uses).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
}

/// Per task: (wall ms, CPU ms) of each call.
type Times = BTreeMap<&'static str, Vec<(f64, f64)>>;

/// Runs one Map iteration; adds each task's wall and CPU time (ms) to `times`.
async fn iteration(r: &Registry, mut state: Value, times: &mut Times) -> Value {
    async fn timed(
        r: &Registry,
        task: &'static str,
        input: &Value,
        times: &mut Times,
    ) -> Result<Value, worker::task::TaskFailure> {
        let c = cpu_seconds();
        let t = Instant::now();
        let out = r
            .resolve(&resource_arn(task))
            .unwrap()
            .run(input.clone())
            .await;
        let wall = t.elapsed().as_secs_f64() * 1e3;
        times
            .entry(task)
            .or_default()
            .push((wall, (cpu_seconds() - c) * 1e3));
        out
    }
    let notify = |state: &mut Value, f: worker::task::TaskFailure| {
        state["errorInfo"] = json!({"Error": f.error, "Cause": f.cause});
    };
    match timed(r, "face-detection", &state, times).await {
        Ok(d) => state["detectedFaceDetails"] = d,
        Err(f) => {
            notify(&mut state, f);
            state["errorInfo"] = timed(r, "notification-placeholder", &state, times)
                .await
                .unwrap();
            return state;
        }
    }
    if let Err(f) = timed(r, "face-search", &state, times).await {
        notify(&mut state, f);
        state["errorInfo"] = timed(r, "notification-placeholder", &state, times)
            .await
            .unwrap();
        return state;
    }
    let a = timed(r, "index-face", &state, times).await.unwrap();
    let b = timed(r, "thumbnail", &state, times).await.unwrap();
    state["parallelResult"] = json!([a, b]);
    timed(r, "persist-metadata", &state, times).await.unwrap();
    state
}

async fn setup(models: Arc<Models>, dir: &Path, cache_entries: usize) -> (Registry, PhotoContext) {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.join("buckets")));
    let engine = LocalEngineConfig {
        cache_entries,
        ..LocalEngineConfig::default()
    };
    let ctx = PhotoContext::local_with_models(dir, models, PhotoConfig::default(), engine, store)
        .await
        .unwrap();
    let mut r = Registry::new();
    photo::register_photo_tasks(&mut r, ctx.clone());
    (r, ctx)
}

/// Uploads the photos under `p<pass>/`: every pass reads objects the analysis cache has not
/// seen, as a real batch of distinct photos would.
async fn upload(ctx: &PhotoContext, pass: usize) {
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rider-photos/photos");
    for p in PHOTOS {
        let key = format!("p{pass}/{p}");
        ctx.store
            .put(
                DEFAULT_PHOTO_BUCKET,
                &key,
                std::fs::read(photos.join(p)).unwrap(),
                "image/jpeg",
            )
            .await
            .unwrap();
    }
}

async fn clear_collection(ctx: &PhotoContext) {
    let ids: Vec<String> = ctx
        .faces
        .list_faces(&ctx.config.collection_id)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.face_id)
        .collect();
    ctx.faces
        .delete_faces(&ctx.config.collection_id, &ids)
        .await
        .unwrap();
}

/// Runs `repeat` passes over the photos (plus one warm-up); returns per-task times and the
/// per-pass wall times (ms).
async fn run(r: &Registry, ctx: &PhotoContext, repeat: usize) -> (Times, Vec<f64>, f64) {
    let mut times = BTreeMap::new();
    let mut passes = Vec::new();
    let mut cpu = 0.0;
    for pass in 0..=repeat {
        clear_collection(ctx).await;
        upload(ctx, pass).await;
        let mut t_pass = Times::new();
        let t = Instant::now();
        let c = cpu_seconds();
        for (i, p) in PHOTOS.iter().enumerate() {
            // A fresh userId per pass and item, so nothing is "already indexed" by id.
            let state = json!({"userId": format!("bench_{pass}_{i}"), "s3Bucket": DEFAULT_PHOTO_BUCKET, "s3Key": format!("p{pass}/{p}")});
            iteration(r, state, &mut t_pass).await;
        }
        let elapsed = t.elapsed().as_secs_f64() * 1e3;
        if pass > 0 {
            cpu += cpu_seconds() - c;
            passes.push(elapsed);
            for (k, v) in t_pass {
                times.entry(k).or_insert_with(Vec::new).extend(v);
            }
        }
    }
    (times, passes, cpu)
}

/// Prints one configuration's table; returns its figures.
fn report(label: &str, times: Times, mut passes: Vec<f64>, cpu: f64) -> Value {
    let images = (passes.len() * PHOTOS.len()) as f64;
    println!("\n## {label}");
    println!("| task | calls | median ms | p10 | p90 | CPU median ms |");
    println!("|---|---|---|---|---|---|");
    let mut out = serde_json::Map::new();
    for task in photo::TASK_NAMES {
        if let Some(v) = times.get(task) {
            let mut wall: Vec<f64> = v.iter().map(|t| t.0).collect();
            let mut cpu: Vec<f64> = v.iter().map(|t| t.1).collect();
            let (m, p10, p90) = (
                median(&mut wall),
                percentile(&mut wall, 0.1),
                percentile(&mut wall, 0.9),
            );
            let c = median(&mut cpu);
            println!(
                "| {task} | {} | {m:.2} | {p10:.2} | {p90:.2} | {c:.2} |",
                v.len()
            );
            out.insert(
                task.into(),
                json!({"calls": v.len(), "median_ms": m, "p10_ms": p10, "p90_ms": p90, "cpu_median_ms": c}),
            );
        }
    }
    let pass = median(&mut passes);
    let ips = PHOTOS.len() as f64 / (pass / 1e3);
    let cpu_ips = images / cpu;
    println!(
        "full workflow: {pass:.1} ms per pass of {} photos = {ips:.2} images/s wall; {cpu_ips:.2} images/s by CPU time",
        PHOTOS.len()
    );
    out.insert("pass_median_ms".into(), json!(pass));
    out.insert("images_per_s".into(), json!(ips));
    out.insert("images_per_cpu_s".into(), json!(cpu_ips));
    Value::Object(out)
}

/// Runs the Python baseline once (`--repeat`, same core: it pins itself to the last core this
/// process may use); returns its JSON report, or `None` when `MAPFLEET_PYTHON` is unset or the
/// run fails (said on stderr).
fn python_baseline(root: &Path, repeat: usize, round: usize) -> Option<Value> {
    let python = std::env::var_os("MAPFLEET_PYTHON").filter(|p| !p.is_empty())?;
    let script = std::env::var_os("MAPFLEET_PYTHON_PIPELINE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("loadtest/python-baseline/python_pipeline.py"));
    let out = std::env::temp_dir().join(format!(
        "mapfleet-bench-py-{}-{round}.json",
        std::process::id()
    ));
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&script)
        .args(["--repeat", &repeat.to_string(), "--json"])
        .arg(&out);
    if let Some(m) = std::env::var_os("MAPFLEET_PYTHON_MODELS") {
        cmd.arg("--models").arg(m);
    }
    let status = cmd.stdout(std::process::Stdio::null()).status();
    let json = std::fs::read(&out)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let _ = std::fs::remove_file(&out);
    match (status, json) {
        (Ok(s), Some(j)) if s.success() => Some(j),
        (s, _) => {
            eprintln!("photo_pipeline bench: the Python baseline failed ({s:?}); no ratios");
            None
        }
    }
}

/// Python's figures as the Rust side names them: per task (wall, CPU) ms and images/s.
fn python_figures(py: &[Value]) -> Value {
    let step = |v: &Value, s: &str, k: &str| v["step_ms"][s][k].as_f64().unwrap_or(f64::NAN);
    let med = |f: &dyn Fn(&Value) -> f64| median(&mut py.iter().map(f).collect::<Vec<_>>());
    let ips = |k: &'static str, by: &'static str| {
        move |v: &Value| {
            let mut r: Vec<f64> = v[by][k]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            median(&mut r)
        }
    };
    let mut tasks = serde_json::Map::new();
    for (task, parts) in [
        ("face-detection", &["decode", "detect"][..]),
        ("face-search", &["embed"][..]),
        ("thumbnail", &["thumb_draft"][..]),
    ] {
        let wall = med(&|v| parts.iter().map(|s| step(v, s, "median")).sum());
        let cpu = med(&|v| parts.iter().map(|s| step(v, s, "cpu_median")).sum());
        tasks.insert(
            task.into(),
            json!({"median_ms": wall, "cpu_median_ms": cpu}),
        );
    }
    json!({
        "tasks": tasks,
        "embed_once": {"images_per_s": med(&ips("embed_once", "pipeline_img_per_s")),
                       "images_per_cpu_s": med(&ips("embed_once", "pipeline_img_per_cpu_s"))},
        "embed_twice": {"images_per_s": med(&ips("embed_twice", "pipeline_img_per_s")),
                        "images_per_cpu_s": med(&ips("embed_twice", "pipeline_img_per_cpu_s"))},
        "loadavg": py.iter().map(|v| v["loadavg"].clone()).collect::<Vec<_>>(),
    })
}

/// Medians over rounds of each Rust figure.
fn rust_medians(rounds: &[Value]) -> Value {
    let Some(first) = rounds.first() else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    for (label, cfg) in first.as_object().into_iter().flatten() {
        let mut c = serde_json::Map::new();
        for (k, v) in cfg.as_object().into_iter().flatten() {
            let get = |r: &Value, f: &str| r[label][k][f].as_f64().unwrap_or(f64::NAN);
            if v.is_object() {
                let mut t = serde_json::Map::new();
                for f in ["median_ms", "cpu_median_ms"] {
                    let mut xs: Vec<f64> = rounds.iter().map(|r| get(r, f)).collect();
                    t.insert(f.into(), json!(median(&mut xs)));
                }
                c.insert(k.clone(), Value::Object(t));
            } else {
                let mut xs: Vec<f64> = rounds
                    .iter()
                    .map(|r| r[label][k].as_f64().unwrap_or(f64::NAN))
                    .collect();
                c.insert(k.clone(), json!(median(&mut xs)));
            }
        }
        out.insert(label.clone(), Value::Object(c));
    }
    Value::Object(out)
}

/// Prints the ratios Python ÷ Rust per step (ms) and Rust ÷ Python in images/s.
fn compare(rust: &Value, py: &Value) -> Value {
    let r = |label: &str, task: &str, f: &str| rust[label][task][f].as_f64().unwrap_or(f64::NAN);
    let p = |task: &str, f: &str| py["tasks"][task][f].as_f64().unwrap_or(f64::NAN);
    println!("\n## Against the Python pipeline (same core, back to back; medians of the rounds)");
    println!("| figure | Python | Rust | ratio (wall) | ratio (CPU time) |");
    println!("|---|---|---|---|---|");
    let mut out = serde_json::Map::new();
    for task in ["face-detection", "face-search", "thumbnail"] {
        let (pw, pc) = (p(task, "median_ms"), p(task, "cpu_median_ms"));
        let (rw, rc) = (
            r(CACHED, task, "median_ms"),
            r(CACHED, task, "cpu_median_ms"),
        );
        println!(
            "| {task}, ms (Python ÷ Rust) | {pw:.2} (CPU {pc:.2}) | {rw:.2} (CPU {rc:.2}) | {:.2} | {:.2} |",
            pw / rw,
            pc / rc
        );
        out.insert(
            task.into(),
            json!({"wall": pw / rw, "cpu": pc / rc, "python_ms": pw, "python_cpu_ms": pc, "rust_ms": rw, "rust_cpu_ms": rc}),
        );
    }
    for (label, py_key, name) in [
        (CACHED, "embed_once", "images/s, embedding once"),
        (UNCACHED, "embed_twice", "images/s, embedding twice"),
    ] {
        let (pw, pc) = (
            py[py_key]["images_per_s"].as_f64().unwrap_or(f64::NAN),
            py[py_key]["images_per_cpu_s"].as_f64().unwrap_or(f64::NAN),
        );
        let (rw, rc) = (
            rust[label]["images_per_s"].as_f64().unwrap_or(f64::NAN),
            rust[label]["images_per_cpu_s"].as_f64().unwrap_or(f64::NAN),
        );
        println!(
            "| {name} (Rust ÷ Python) | {pw:.2} (CPU {pc:.2}) | {rw:.2} (CPU {rc:.2}) | {:.2} | {:.2} |",
            rw / pw,
            rc / pc
        );
        out.insert(
            py_key.into(),
            json!({"wall": rw / pw, "cpu": rc / pc, "python": pw, "python_cpu": pc, "rust": rw, "rust_cpu": rc}),
        );
    }
    Value::Object(out)
}

/// The 1, 5 and 15-minute load averages (a figure is only as good as the machine was quiet).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The process's peak resident set (`VmHWM`), MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Batched inference, measured: SFace per-face CPU ms at batch sizes 1, 2, 4 and 8 on the
/// workshop's aligned faces (median of `repeat` runs each), then the photo workflow with 8
/// items in flight at once on this core, images/s by wall and by CPU time.
async fn batched(models: &Arc<Models>, dir: &Path, repeat: usize) -> Value {
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rider-photos/photos");
    let mut crops = Vec::new();
    for p in PHOTOS {
        let bytes = std::fs::read(photos.join(p)).unwrap();
        let (_, rgb) = worker::face::imagefile::decode_rgb(&bytes, 40_000_000).unwrap();
        for d in models.detect(&rgb, &Default::default()).unwrap() {
            crops.push(worker::face::align::align_crop(&rgb, &d.landmarks));
        }
    }
    println!(
        "\n## Batched inference (SFace, one ONNX run per batch; {} workshop faces)",
        crops.len()
    );
    println!("| batch | CPU ms per batch | CPU ms per face | per face vs batch 1 |");
    println!("|---|---|---|---|");
    let mut rows = serde_json::Map::new();
    let mut single = f64::NAN;
    for b in [1usize, 2, 4, 8] {
        let batch: Vec<&[u8]> = (0..b).map(|i| crops[i % crops.len()].as_slice()).collect();
        models.embed_batch(&batch).unwrap();
        let mut ms: Vec<f64> = (0..repeat.max(3))
            .map(|_| {
                let c = cpu_seconds();
                models.embed_batch(&batch).unwrap();
                (cpu_seconds() - c) * 1e3
            })
            .collect();
        let m = median(&mut ms);
        if b == 1 {
            single = m;
        }
        println!(
            "| {b} | {m:.2} | {:.2} | {:.2} |",
            m / b as f64,
            m / b as f64 / single
        );
        rows.insert(
            b.to_string(),
            json!({"cpu_ms": m, "cpu_ms_per_face": m / b as f64}),
        );
    }
    // 8 items at once: the photo tasks of 8 Map items interleave on this one core.
    let dir = dir.join("concurrent");
    std::fs::create_dir_all(&dir).unwrap();
    let (r, ctx) = setup(models.clone(), &dir, 64).await;
    let r = Arc::new(r);
    let mut ips = Vec::new();
    let mut ips_cpu = Vec::new();
    for pass in 0..=repeat {
        clear_collection(&ctx).await;
        upload(&ctx, 1000 + pass).await;
        upload(&ctx, 2000 + pass).await;
        let t = Instant::now();
        let c = cpu_seconds();
        let mut items = Vec::new();
        for (k, base) in [1000, 2000].into_iter().enumerate() {
            for (i, p) in PHOTOS.iter().enumerate() {
                let state = json!({"userId": format!("c_{pass}_{k}_{i}"), "s3Bucket": DEFAULT_PHOTO_BUCKET, "s3Key": format!("p{}/{p}", base + pass)});
                let r = r.clone();
                items.push(tokio::spawn(async move {
                    iteration(&r, state, &mut Times::new()).await
                }));
            }
        }
        for it in items {
            it.await.unwrap();
        }
        if pass > 0 {
            let n = 2.0 * PHOTOS.len() as f64;
            ips.push(n / t.elapsed().as_secs_f64());
            ips_cpu.push(n / (cpu_seconds() - c));
        }
    }
    let (w, c) = (median(&mut ips), median(&mut ips_cpu));
    println!(
        "8 items in flight on this core (no batching across them): {w:.2} images/s wall, {c:.2} by CPU time"
    );
    json!({"sface": rows, "concurrent_8": {"images_per_s": w, "images_per_cpu_s": c}})
}

const CACHED: &str = "embedded, analysis cache on (default)";
const UNCACHED: &str = "embedded, analysis cache off";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let repeat = env_usize("MAPFLEET_BENCH_REPEAT", 10);
    let rounds = env_usize("MAPFLEET_BENCH_ROUNDS", 2).max(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let models_dir = std::env::var_os("MAPFLEET_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("mapfleet-data/models"));
    let paths = ModelPaths::in_dir(&models_dir);
    if let Some(p) = paths.missing() {
        eprintln!(
            "photo_pipeline bench: {} is missing; run deploy/setup-models.sh first",
            p.display()
        );
        std::process::exit(2);
    }
    let t = Instant::now();
    let models = Arc::new(Models::load(&paths, 1).expect("loading models"));
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_loaded = peak_rss_mib();
    println!(
        "models loaded (incl. onnxruntime environment) in {load_ms:.0} ms; {repeat} repeats after 1 warm-up, {rounds} rounds"
    );
    println!("load average at the start: {}", loadavg());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        // A thread that exits takes its CPU time out of /proc/self/task: keep it.
        .thread_keep_alive(std::time::Duration::from_secs(3600))
        .build()
        .unwrap();
    let base = std::env::temp_dir().join(format!("mapfleet-bench-{}", std::process::id()));
    let mut py_runs = Vec::new();
    let mut rust_runs = Vec::new();
    for round in 0..rounds {
        if let Some(py) = python_baseline(&root, repeat, round) {
            py_runs.push(py);
        }
        let json = rt.block_on(async {
            let mut all = serde_json::Map::new();
            for (label, cache) in [(CACHED, 64), (UNCACHED, 0)] {
                let dir = base.join(format!("r{round}-{cache}"));
                std::fs::create_dir_all(&dir).unwrap();
                let (r, ctx) = setup(models.clone(), &dir, cache).await;
                let (times, passes, cpu) = run(&r, &ctx, repeat).await;
                all.insert(label.into(), report(label, times, passes, cpu));
            }
            Value::Object(all)
        });
        rust_runs.push(json);
    }
    let batched = rt.block_on(batched(&models, &base, repeat));
    let _ = std::fs::remove_dir_all(&base);
    println!("\nload average at the end: {}", loadavg());
    let rss = peak_rss_mib();
    println!(
        "peak RSS of this process (both models loaded, every run above): {rss:.1} MiB (after loading: {rss_loaded:.1} MiB)"
    );
    let rust = rust_medians(&rust_runs);
    let mut json = json!({"rust": rust, "rust_rounds": rust_runs, "batched": batched,
        "peak_rss_mib": rss, "rss_after_load_mib": rss_loaded});
    if !py_runs.is_empty() {
        let py = python_figures(&py_runs);
        json["ratios"] = compare(&rust, &py);
        let r = &json["ratios"]["embed_once"];
        println!(
            "\nembedded images/s = {:.2}x Python's by wall time ({:.2}x by CPU time), same core, median of {} rounds; load average {}",
            r["wall"].as_f64().unwrap_or(f64::NAN),
            r["cpu"].as_f64().unwrap_or(f64::NAN),
            rounds,
            loadavg()
        );
        json["python"] = py;
    }
    if let Some(out) = std::env::var_os("MAPFLEET_BENCH_JSON") {
        std::fs::write(out, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
}
