//! `loadtest --report DIR`: an HTML report with charts (SVG, drawn with `plotters`).
//!
//! 1. **Timeline**: a Map of `--items` items, each a `sleep` of [`TIMELINE_SLEEP_MS`] ms
//!    then an `echo`, through one coordinator and `--workers` workers x `--concurrency`
//!    slots, sampled every 250 ms ([`crate::timeline`]): items/s over time, step latency
//!    percentiles over time (publish → outcome applied, from the coordinator's histogram),
//!    the steps queue's backlog, and each task's durations (the workers' histograms).
//! 2. **Scaling** ([`crate::scaling`]): the I/O-bound `sleep` Map on 1, 2, 4 and 8 workers,
//!    and the CPU-bound rider-photo workflow on 1 and 2 workers (when the face models are
//!    there), as speed-up over one worker.
//!
//! Writes `DIR/index.html`, one SVG per chart, and `DIR/figures.txt` (the figures as text,
//! with the machine's load average).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use plotters::prelude::*;
use serde_json::{Value, json};

use crate::scaling::{self, Point};
use crate::timeline::{self, Run};

pub const TIMELINE_SLEEP_MS: u64 = 20;

pub struct Params<'a> {
    pub dir: &'a Path,
    pub amqp_url: &'a str,
    pub redis_url: &'a str,
    pub worker_bin: &'a Path,
    pub mapfleet_bin: &'a Path,
    pub items: usize,
    pub workers: usize,
    pub concurrency: usize,
    pub photos: usize,
    pub models_dir: Option<PathBuf>,
    pub limit: Duration,
}

/// A Map of `n` items: `sleep` `ms` (its result dropped), then `echo`.
fn timeline_map(n: usize, ms: u64) -> (String, Value) {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items",
        "MaxConcurrency": 0, "End": true,
        "ItemProcessor": {"StartAt": "Sleep", "States": {
            "Sleep": {"Type": "Task", "Resource": "arn:mapfleet:task:::sleep",
                "Parameters": {"ms": ms}, "ResultPath": null, "Next": "Echo"},
            "Echo": {"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "End": true}}}}}});
    let items: Vec<Value> = (0..n).map(|i| json!({ "i": i })).collect();
    (def.to_string(), json!({ "items": items }))
}

pub async fn run(p: &Params<'_>) -> anyhow::Result<()> {
    std::fs::create_dir_all(p.dir).with_context(|| format!("creating {}", p.dir.display()))?;
    let load_before = load_average();
    let (definition, input) = timeline_map(p.items, TIMELINE_SLEEP_MS);
    let run = timeline::run(&timeline::Params {
        amqp_url: p.amqp_url,
        redis_url: p.redis_url,
        worker_bin: p.worker_bin,
        mapfleet_bin: p.mapfleet_bin,
        workers: p.workers,
        worker_args: vec![
            "--concurrency".into(),
            p.concurrency.to_string(),
            "--no-photo-tasks".into(),
        ],
        models_dir: None,
        definition,
        input: input.clone(),
        sample_every: Duration::from_millis(250),
        limit: p.limit,
    })
    .await
    .context("the timeline run")?;
    if run.output != input["items"] {
        anyhow::bail!("the timeline Map's output is not its items in order");
    }
    coordinator::engine::history::check_exactly_once(&run.history, p.items)?;
    println!(
        "report: timeline: {} items through 1 coordinator and {} workers x {} slots: {:.2} s, {:.0} items/s",
        p.items,
        p.workers,
        p.concurrency,
        run.elapsed.as_secs_f64(),
        p.items as f64 / run.elapsed.as_secs_f64()
    );

    let base = scaling::Base {
        amqp_url: p.amqp_url,
        redis_url: p.redis_url,
        worker_bin: p.worker_bin,
        mapfleet_bin: p.mapfleet_bin,
        limit: p.limit,
    };
    let sleep = scaling::sleep_curve(&base).await?;
    let photo = match &p.models_dir {
        Some(models) => match scaling::photo_curve(&base, models, p.photos).await {
            Ok(points) => Some(points),
            Err(e) => {
                println!("report: no photo scaling: {e:#}");
                None
            }
        },
        None => {
            println!("report: no photo scaling: no --models-dir / MAPFLEET_MODELS_DIR");
            None
        }
    };
    let load_after = load_average();

    let charts = [
        (
            "throughput.svg",
            throughput_chart(&p.dir.join("throughput.svg"), &run),
        ),
        (
            "latency.svg",
            latency_chart(&p.dir.join("latency.svg"), &run),
        ),
        (
            "backlog.svg",
            backlog_chart(&p.dir.join("backlog.svg"), &run),
        ),
        ("tasks.svg", tasks_chart(&p.dir.join("tasks.svg"), &run)),
        (
            "scaling.svg",
            scaling_chart(&p.dir.join("scaling.svg"), &sleep, photo.as_deref()),
        ),
    ];
    for (name, drawn) in &charts {
        if let Err(e) = drawn {
            anyhow::bail!("drawing {name}: {e}");
        }
    }
    let figures = figures_text(p, &run, &sleep, photo.as_deref(), &load_before, &load_after);
    std::fs::write(p.dir.join("figures.txt"), &figures)?;
    std::fs::write(p.dir.join("index.html"), html(&figures))?;
    print!("{figures}");
    println!("report: {}", p.dir.join("index.html").display());
    Ok(())
}

/// `/proc/loadavg`'s first three fields: how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

const SIZE: (u32, u32) = (800, 360);

/// Items per second between consecutive samples.
fn rates(run: &Run) -> Vec<(f64, f64)> {
    run.samples
        .windows(2)
        .filter(|w| w[1].t > w[0].t)
        .map(|w| {
            (
                w[1].t,
                (w[1].done.saturating_sub(w[0].done)) as f64 / (w[1].t - w[0].t),
            )
        })
        .collect()
}

fn end_time(run: &Run) -> f64 {
    run.samples.last().map_or(1.0, |s| s.t).max(0.1)
}

fn throughput_chart(path: &Path, run: &Run) -> Drawn {
    let points = rates(run);
    let top = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Map items succeeded per second", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..end_time(run), 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since submit")
        .y_desc("items/s")
        .draw()?;
    chart.draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?;
    root.present()?;
    Ok(())
}

fn latency_chart(path: &Path, run: &Run) -> Drawn {
    let series: Vec<(f64, [f64; 3])> = run
        .samples
        .iter()
        .filter_map(|s| s.latency.map(|l| (s.t, l.map(|v| v * 1000.0))))
        .collect();
    let top = series.iter().map(|(_, l)| l[2]).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Step latency (publish → outcome applied), per 250 ms",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..end_time(run), 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since submit")
        .y_desc("ms")
        .draw()?;
    for (i, (name, color)) in [("p50", GREEN), ("p90", BLUE), ("p99", RED)]
        .into_iter()
        .enumerate()
    {
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|(t, l)| (*t, l[i])),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn backlog_chart(path: &Path, run: &Run) -> Drawn {
    let points: Vec<(f64, f64)> = run
        .samples
        .iter()
        .map(|s| (s.t, s.backlog as f64))
        .collect();
    let top = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Backlog: messages ready in the steps queue",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..end_time(run), 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since submit")
        .y_desc("messages (up to 16 steps each)")
        .draw()?;
    chart.draw_series(LineSeries::new(points, MAGENTA.stroke_width(2)))?;
    root.present()?;
    Ok(())
}

fn tasks_chart(path: &Path, run: &Run) -> Drawn {
    let n = run.tasks.len().max(1) as u32;
    let top = run.tasks.iter().map(|t| t.p95 * 1000.0).fold(1.0, f64::max) * 1.2;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Task durations on the workers (bar: p50, outline: p95)",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0u32..n).into_segmented(), 0f64..top)?;
    let names: Vec<String> = run.tasks.iter().map(|t| t.task.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("task")
        .y_desc("ms")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    for (i, t) in run.tasks.iter().enumerate() {
        let (a, b) = (
            SegmentValue::Exact(i as u32),
            SegmentValue::Exact(i as u32 + 1),
        );
        let mut p50 = Rectangle::new(
            [(a.clone(), 0.0), (b.clone(), t.p50 * 1000.0)],
            BLUE.mix(0.6).filled(),
        );
        p50.set_margin(0, 0, 30, 30);
        let mut p95 = Rectangle::new([(a, 0.0), (b, t.p95 * 1000.0)], BLACK.stroke_width(1));
        p95.set_margin(0, 0, 30, 30);
        chart.draw_series([p50, p95])?;
    }
    root.present()?;
    Ok(())
}

fn scaling_chart(path: &Path, sleep: &[Point], photo: Option<&[Point]>) -> Drawn {
    let speedups = |points: &[Point]| -> Vec<(f64, f64)> {
        let one = points.iter().find(|p| p.workers == 1).map(Point::rate);
        points
            .iter()
            .filter_map(|p| one.map(|one| (p.workers as f64, p.rate() / one)))
            .collect()
    };
    let max_workers = scaling::WORKER_COUNTS.iter().copied().max().unwrap_or(8) as f64;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Scaling: speed-up over one worker", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_workers + 0.5, 0f64..max_workers + 0.5)?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("items/s ÷ items/s on 1 worker")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            [(1.0, 1.0), (max_workers, max_workers)],
            BLACK.mix(0.3).stroke_width(1),
        ))?
        .label("linear")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
    let mut series = vec![("sleep (I/O-bound, 4 slots each)", BLUE, speedups(sleep))];
    if let Some(photo) = photo {
        series.push((
            "rider photos (CPU-bound, 1 slot each)",
            RED,
            speedups(photo),
        ));
    }
    for (name, color, points) in series {
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn figures_text(
    p: &Params<'_>,
    run: &Run,
    sleep: &[Point],
    photo: Option<&[Point]>,
    load_before: &str,
    load_after: &str,
) -> String {
    let mut s = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        s,
        "machine: {cores} cores; load average {load_before} before, {load_after} after"
    );
    let _ = writeln!(
        s,
        "timeline: {} items (sleep {TIMELINE_SLEEP_MS} ms, then echo) through 1 coordinator and {} workers x {} slots: {:.2} s, {:.0} items/s",
        p.items,
        p.workers,
        p.concurrency,
        run.elapsed.as_secs_f64(),
        p.items as f64 / run.elapsed.as_secs_f64()
    );
    let q = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1} ms", v * 1000.0));
    let _ = writeln!(
        s,
        "step latency over the run: p50 {}, p90 {}, p99 {} ({} steps)",
        q(run.latency.quantile(0.5)),
        q(run.latency.quantile(0.9)),
        q(run.latency.quantile(0.99)),
        run.latency.count
    );
    let peak = run.samples.iter().map(|s| s.backlog).max().unwrap_or(0);
    let _ = writeln!(s, "peak backlog: {peak} messages in the steps queue");
    for t in &run.tasks {
        let _ = writeln!(
            s,
            "task {}: {} runs, mean {:.1} ms, p50 {:.1} ms, p95 {:.1} ms",
            t.task,
            t.count,
            t.mean * 1000.0,
            t.p50 * 1000.0,
            t.p95 * 1000.0
        );
    }
    let curve = |s: &mut String, name: &str, points: &[Point], unit: &str| {
        let one = points.iter().find(|p| p.workers == 1).map(Point::rate);
        for pt in points {
            let _ = writeln!(
                s,
                "scaling {name}: {} worker(s): {:.2} s, {:.1} {unit}/s, {:.2}x one worker",
                pt.workers,
                pt.elapsed.as_secs_f64(),
                pt.rate(),
                one.map_or(f64::NAN, |o| pt.rate() / o)
            );
        }
    };
    curve(
        &mut s,
        &format!(
            "sleep ({} x {} ms, {} slots per worker)",
            scaling::SLEEP_ITEMS,
            scaling::SLEEP_MS,
            scaling::SLEEP_SLOTS
        ),
        sleep,
        "items",
    );
    match photo {
        Some(points) => curve(
            &mut s,
            &format!("rider photos ({} photos, 1 slot per worker)", p.photos),
            points,
            "images",
        ),
        None => {
            let _ = writeln!(s, "scaling rider photos: not run (no face models)");
        }
    }
    s
}

fn html(figures: &str) -> String {
    let escaped = figures
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mapfleet loadtest report</title>
<style>body{{font-family:sans-serif;max-width:860px;margin:2em auto}}img{{width:100%;border:1px solid #ddd;margin:.5em 0}}pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}</style>
</head><body>
<h1>mapfleet loadtest report</h1>
<pre>{escaped}</pre>
<h2>Timeline</h2>
<img src="throughput.svg" alt="items per second over time">
<img src="latency.svg" alt="step latency percentiles over time">
<img src="backlog.svg" alt="steps queue backlog over time">
<h2>Task durations</h2>
<img src="tasks.svg" alt="task durations">
<h2>Scaling</h2>
<img src="scaling.svg" alt="speed-up over one worker">
</body></html>
"#
    )
}
