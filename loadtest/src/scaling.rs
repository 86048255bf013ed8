//! Scaling curves: the same Map run through fleets of more and more workers, one
//! coordinator each time, on fresh prefixes ([`crate::timeline`]).
//!
//! - **I/O-bound** (`sleep`): [`SLEEP_ITEMS`] items of a [`SLEEP_MS`] ms `sleep` through 1, 2,
//!   4 and 8 workers of [`SLEEP_SLOTS`] slots each. A sleeping task holds a slot, not a
//!   core, so the fleet's rate grows with its workers, not with this machine's cores.
//! - **CPU-bound** (the rider-photo workflow, with the face models): `--photos` photos
//!   through 1 and then 2 workers of one slot each. On a machine of 2 free cores the second
//!   worker should nearly double the rate; on a shared machine the figure says how much
//!   was free.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::timeline::{self, Params};

pub const WORKER_COUNTS: [usize; 4] = [1, 2, 4, 8];
pub const SLEEP_ITEMS: usize = 320;
pub const SLEEP_MS: u64 = 100;
pub const SLEEP_SLOTS: usize = 4;

/// One fleet size's figure.
#[derive(Debug, Clone)]
pub struct Point {
    pub workers: usize,
    pub items: usize,
    pub elapsed: Duration,
}

impl Point {
    pub fn rate(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }
}

/// What every run shares.
pub struct Base<'a> {
    pub amqp_url: &'a str,
    pub redis_url: &'a str,
    pub worker_bin: &'a Path,
    pub mapfleet_bin: &'a Path,
    pub limit: Duration,
}

fn params<'a>(b: &Base<'a>, workers: usize, worker_args: Vec<String>) -> Params<'a> {
    Params {
        amqp_url: b.amqp_url,
        redis_url: b.redis_url,
        worker_bin: b.worker_bin,
        mapfleet_bin: b.mapfleet_bin,
        workers,
        worker_args,
        models_dir: None,
        definition: String::new(),
        input: Value::Null,
        sample_every: Duration::from_millis(500),
        limit: b.limit,
    }
}

/// A Map of `n` `sleep` items of `ms` each (every item at once: `MaxConcurrency: 0`).
pub fn sleep_map(n: usize, ms: u64) -> (String, Value) {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items",
        "MaxConcurrency": 0, "End": true,
        "ItemProcessor": {"StartAt": "Sleep", "States": {"Sleep": {"Type": "Task",
            "Resource": "arn:mapfleet:task:::sleep", "Parameters": {"ms": ms, "i.$": "$.i"},
            "End": true}}}}}});
    let items: Vec<Value> = (0..n).map(|i| json!({ "i": i })).collect();
    (def.to_string(), json!({ "items": items }))
}

pub async fn sleep_curve(b: &Base<'_>) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    for workers in WORKER_COUNTS {
        let (definition, input) = sleep_map(SLEEP_ITEMS, SLEEP_MS);
        let args = vec![
            "--concurrency".to_string(),
            SLEEP_SLOTS.to_string(),
            "--no-photo-tasks".to_string(),
        ];
        let run = timeline::run(&Params {
            definition,
            input,
            ..params(b, workers, args)
        })
        .await
        .with_context(|| format!("sleep Map on {workers} worker(s)"))?;
        let got = run.output.as_array().context("the Map's output")?;
        ensure!(got.len() == SLEEP_ITEMS, "{} results", got.len());
        for (i, r) in got.iter().enumerate() {
            ensure!(r["i"] == i, "results[{i}] = {r}");
        }
        coordinator::engine::history::check_exactly_once(&run.history, SLEEP_ITEMS)?;
        let point = Point {
            workers,
            items: SLEEP_ITEMS,
            elapsed: run.elapsed,
        };
        println!(
            "scaling: sleep {SLEEP_ITEMS} x {SLEEP_MS} ms on {workers} worker(s) x {SLEEP_SLOTS} slots: {:.2} s, {:.1} items/s",
            point.elapsed.as_secs_f64(),
            point.rate()
        );
        points.push(point);
    }
    Ok(points)
}

/// The rider-photo workflow's definition and input over `photos` photos (the four workshop
/// photos in turn, each under its own key).
pub fn photo_map(repo: &Path, photos: usize) -> anyhow::Result<(String, Value)> {
    let path = repo.join("examples/rider-photos/ImageProcessingStateMachine-DynamicInput.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let images: Vec<Value> = (0..photos)
        .map(|i| {
            let name = crate::photo_fleet::PHOTOS[i % crate::photo_fleet::PHOTOS.len()];
            json!({"userId": format!("rider_{i}"), "s3Key": format!("p{}/{name}", i / 4)})
        })
        .collect();
    Ok((
        text,
        json!({ "s3Bucket": "mapfleet-rider-photos", "images": images }),
    ))
}

/// Copies the workshop photos an input of [`photo_map`] names into `data_dir`'s bucket.
pub fn upload_photos(data_dir: &Path, input: &Value) -> anyhow::Result<()> {
    let src = crate::photo_fleet::repo_root().join("examples/rider-photos/photos");
    let bucket = data_dir.join("buckets/mapfleet-rider-photos");
    for item in input["images"].as_array().into_iter().flatten() {
        let key = item["s3Key"].as_str().context("an image without s3Key")?;
        let name = key.rsplit('/').next().unwrap_or(key);
        let dest = bucket.join(key);
        std::fs::create_dir_all(dest.parent().context("photo key")?)?;
        std::fs::copy(src.join(name), &dest)
            .with_context(|| format!("copying {name} into {}", dest.display()))?;
    }
    Ok(())
}

pub async fn photo_curve(
    b: &Base<'_>,
    models_dir: &Path,
    photos: usize,
) -> anyhow::Result<Vec<Point>> {
    if !models_dir.join("libonnxruntime.so").exists() {
        bail!(
            "no face models in {}: run deploy/setup-models.sh",
            models_dir.display()
        );
    }
    let mut points = Vec::new();
    for workers in [1, 2] {
        let (definition, input) = photo_map(&crate::photo_fleet::repo_root(), photos)?;
        let run = timeline::run(&Params {
            definition,
            input,
            models_dir: Some(models_dir.to_path_buf()),
            ..params(b, workers, vec!["--concurrency".into(), "1".into()])
        })
        .await
        .with_context(|| format!("photo workflow on {workers} worker(s)"))?;
        crate::photo_fleet::verify(&run.output, photos)?;
        let point = Point {
            workers,
            items: photos,
            elapsed: run.elapsed,
        };
        println!(
            "scaling: {photos} rider photos on {workers} worker(s) x 1 slot: {:.2} s, {:.2} images/s; {}; worker peak RSS {:.1} MB",
            point.elapsed.as_secs_f64(),
            point.rate(),
            run.cpu,
            run.worker_peak_rss as f64 / 1e6
        );
        for t in &run.tasks {
            println!(
                "scaling:   task {}: {} runs, mean {:.1} ms, p50 {:.1} ms, p95 {:.1} ms",
                t.task,
                t.count,
                t.mean * 1000.0,
                t.p50 * 1000.0,
                t.p95 * 1000.0
            );
        }
        points.push(point);
    }
    Ok(points)
}
