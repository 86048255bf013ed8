//! Per-task latency and images/s of the rider-photo workflow in embedded mode (the tasks called
//! in the workflow's order, each step on its own, as the Map iteration runs them), on the four
//! workshop photos.
//!
//! ```sh
//! deploy/setup-models.sh                       # once
//! taskset -c 1 cargo bench -p worker --bench photo_pipeline
//! ```
//!
//! Environment: `MAPFLEET_BENCH_REPEAT` (default 10), `MAPFLEET_MODELS_DIR` (default
//! `./mapfleet-data/models` from the workspace root). Run it pinned to one core (`taskset -c 1`)
//! next to `shared/perf/python_pipeline.py` for a per-core comparison; sessions are
//! single-threaded.

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

/// This process's CPU time (user + system) in seconds, from `/proc/self/stat` (clock ticks of
/// 10 ms: only meaningful summed over many passes).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let tick = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(14) + tick(15)) / 100.0
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

/// Runs one Map iteration; adds each task's wall time (ms) to `times`.
async fn iteration(
    r: &Registry,
    mut state: Value,
    times: &mut BTreeMap<&'static str, Vec<f64>>,
) -> Value {
    async fn timed(
        r: &Registry,
        task: &'static str,
        input: &Value,
        times: &mut BTreeMap<&'static str, Vec<f64>>,
    ) -> Result<Value, worker::task::TaskFailure> {
        let t = Instant::now();
        let out = r
            .resolve(&resource_arn(task))
            .unwrap()
            .run(input.clone())
            .await;
        times
            .entry(task)
            .or_default()
            .push(t.elapsed().as_secs_f64() * 1e3);
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
async fn run(
    r: &Registry,
    ctx: &PhotoContext,
    repeat: usize,
) -> (BTreeMap<&'static str, Vec<f64>>, Vec<f64>, f64) {
    let mut times = BTreeMap::new();
    let mut passes = Vec::new();
    let mut cpu = 0.0;
    for pass in 0..=repeat {
        clear_collection(ctx).await;
        upload(ctx, pass).await;
        let mut t_pass = BTreeMap::new();
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

fn report(
    label: &str,
    mut times: BTreeMap<&'static str, Vec<f64>>,
    mut passes: Vec<f64>,
    cpu: f64,
) -> Value {
    let images = (passes.len() * PHOTOS.len()) as f64;
    println!("\n## {label}");
    println!("| task | calls | median ms | p10 | p90 |");
    println!("|---|---|---|---|---|");
    let mut out = serde_json::Map::new();
    for task in photo::TASK_NAMES {
        if let Some(v) = times.get_mut(task) {
            let (m, p10, p90) = (median(v), percentile(v, 0.1), percentile(v, 0.9));
            println!("| {task} | {} | {m:.2} | {p10:.2} | {p90:.2} |", v.len());
            out.insert(
                task.into(),
                json!({"calls": v.len(), "median_ms": m, "p10_ms": p10, "p90_ms": p90}),
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

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let repeat: usize = std::env::var("MAPFLEET_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
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
    println!(
        "models loaded (incl. onnxruntime environment) in {load_ms:.0} ms; {repeat} repeats after 1 warm-up"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let base = std::env::temp_dir().join(format!("mapfleet-bench-{}", std::process::id()));
    let json = rt.block_on(async {
        let mut all = serde_json::Map::new();
        for (label, cache) in [
            ("embedded, analysis cache on (default)", 64),
            ("embedded, analysis cache off", 0),
        ] {
            let dir = base.join(if cache > 0 { "cached" } else { "uncached" });
            std::fs::create_dir_all(&dir).unwrap();
            let (r, ctx) = setup(models.clone(), &dir, cache).await;
            let (times, passes, cpu) = run(&r, &ctx, repeat).await;
            all.insert(label.into(), report(label, times, passes, cpu));
        }
        Value::Object(all)
    });
    let _ = std::fs::remove_dir_all(&base);
    if let Some(out) = std::env::var_os("MAPFLEET_BENCH_JSON") {
        std::fs::write(out, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
}
