//! The console's Map run page of a large Distributed Map: how long its first page takes to
//! load at `--items` children against a small run, on a real fleet.
//!
//! One `mapfleet coordinator --data-dir` and K `mapfleet-worker` processes on a fresh prefix
//! run two Distributed Maps of `echo` items read from JSONL objects (the distributed-map
//! scenario's definition, with a ResultWriter of Transformation `NONE`, so every child's
//! record is kept): a small one ([`SMALL`] items) and a large one (`--items`). Then
//! `mapfleet serve --allow-anonymous` runs on the same prefix and data dir, and each run's
//! page is loaded as the console's `dmaprun` page loads it (`views.js`): DescribeMapRun, then
//! ListExecutions with `mapRunArn` and `maxResults` 50, both through the console's
//! `/console/api/call/` route, each on a new connection. The figure is the median of
//! [`LOADS`] loads per run and the large run's median over the small one's. For comparison,
//! the same run's children are also read whole, as ListExecutions did before it read only
//! the files a page needs (`FleetClient::map_run_children`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use coordinator::engine::ExecutionInfo;
use coordinator::fleet::client::FleetClient;
use serde_json::{Value, json};
use shared::credentials::FleetUrlsEnv;
use shared::testkit::unique_prefix;

use crate::map_coordinator::spawn_workers;
use shared::topology::Topology;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::distributed_map::{self, Proc};
use crate::map_coordinator::{ensure_built, run_to_success, wait_for_consumers};

/// The small run the large one is compared with.
pub const SMALL: usize = 1_000;
/// Page loads measured per run.
pub const LOADS: usize = 21;
/// The console's page size for child executions.
const PAGE: usize = 50;

pub struct Report {
    pub items: usize,
    /// Median time of one page load (DescribeMapRun + the first ListExecutions page).
    pub large_page: Duration,
    pub small_page: Duration,
    /// Median time to read the large run's children whole (the listing before).
    pub large_whole: Duration,
    pub run_time: Duration,
}

pub async fn run(p: &distributed_map::Params<'_>) -> anyhow::Result<Report> {
    ensure_built(p.worker_bin, "worker")?;
    ensure_built(p.mapfleet_bin, "mapfleet")?;
    let topo = Topology::new(unique_prefix("loadtest-mrpage"), 5);
    let data = distributed_map::tempfile_dir()?;
    shared::testkit::declare(p.amqp_url, &topo).await?;
    let result = measure(p, &topo, &data).await;
    let cleanup = shared::testkit::teardown(p.amqp_url, p.redis_url, topo.prefix()).await;
    let _ = std::fs::remove_dir_all(&data);
    let report = result?;
    cleanup.context("cleaning up the prefix")?;
    Ok(report)
}

async fn measure(
    p: &distributed_map::Params<'_>,
    topo: &Topology,
    data: &Path,
) -> anyhow::Result<Report> {
    let _workers = spawn_workers(
        p.worker_bin,
        p.amqp_url,
        p.redis_url,
        topo,
        p.workers,
        p.concurrency,
        p.window,
    )?;
    let coordinator = distributed_map::spawn_coordinator(p, topo, data)?;
    wait_for_consumers(p.amqp_url, &topo.default_steps_queue(), p.workers as u32).await?;
    wait_for_consumers(p.amqp_url, &topo.outcomes_queue(), 1).await?;
    let client = FleetClient::connect(p.redis_url, topo.prefix()).await?;

    let (small_run, _) = map_run(p, &client, data, SMALL, "small").await?;
    let (large_run, run_time) = map_run(p, &client, data, p.items, "large").await?;
    drop(coordinator);

    let serve = spawn_serve(p, topo, data)?;
    let addr = serve.addr.clone();
    let small_page = median_of(LOADS, || page_load(&addr, &small_run, SMALL.min(PAGE))).await?;
    let large_page = median_of(LOADS, || page_load(&addr, &large_run, PAGE)).await?;
    drop(serve);

    let reader = |bucket: &str, key: &str| {
        std::fs::read(data.join("buckets").join(bucket).join(key)).map_err(|e| e.to_string())
    };
    let mut whole = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let all = client.map_run_children(&large_run, None, reader).await?;
        whole.push(t.elapsed());
        ensure!(all.len() == p.items, "{} children read whole", all.len());
    }
    whole.sort();
    Ok(Report {
        items: p.items,
        large_page,
        small_page,
        large_whole: whole[1],
        run_time,
    })
}

/// Runs a Distributed Map of `n` echo items to SUCCEEDED; its map run ARN and time.
async fn map_run(
    p: &distributed_map::Params<'_>,
    client: &FleetClient,
    data: &Path,
    n: usize,
    name: &str,
) -> anyhow::Result<(String, Duration)> {
    let key = format!("{name}.jsonl");
    distributed_map::write_items_at(data, &key, n)?;
    let text = distributed_map::definition_over(p.max_concurrency, &key, "NONE").to_string();
    let def = coordinator::asl::parse::parse_definition(&text)
        .map_err(|e| anyhow::anyhow!("the loadtest definition does not parse: {e:?}"))?;
    let info = ExecutionInfo::new("loadtest", name, json!({}), chrono::Utc::now());
    let (elapsed, result) = run_to_success(client, &text, &def, &info, p.limit).await?;
    let output = result.output.context("a SUCCEEDED Map without output")?;
    let arn = output["MapRunArn"]
        .as_str()
        .context("no MapRunArn in the Map's output")?;
    Ok((arn.to_string(), elapsed))
}

/// `mapfleet serve` on the prefix and data dir, and the address it listens on.
struct Serve {
    _proc: Proc,
    addr: String,
}

fn spawn_serve(
    p: &distributed_map::Params<'_>,
    topo: &Topology,
    data: &Path,
) -> anyhow::Result<Serve> {
    let mut child = Command::new(p.mapfleet_bin)
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--addr", "127.0.0.1:0", "--allow-anonymous"])
        .fleet_urls(p.amqp_url, p.redis_url)
        .args(["--prefix", topo.prefix()])
        .env_remove("MAPFLEET_API_KEYS")
        .env_remove("MAPFLEET_CREDENTIALS_FILE")
        .env_remove("MAPFLEET_API_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {} serve", p.mapfleet_bin.display()))?;
    let stderr = child.stderr.take().context("serve's stderr")?;
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end, so the process never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("Step Functions API on http://") {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .context("mapfleet serve did not say where it listens within 30 s")?;
    Ok(Serve { _proc: proc, addr })
}

async fn median_of<F, Fut>(n: usize, mut f: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times[n / 2])
}

/// One load of a map run's page, as the console's `dmaprun` page does it; checks that the
/// page holds `expect` children.
async fn page_load(addr: &str, run: &str, expect: usize) -> anyhow::Result<()> {
    let described = console_call(addr, "DescribeMapRun", &json!({ "mapRunArn": run })).await?;
    ensure!(described["status"] == "SUCCEEDED", "{described}");
    let page = console_call(
        addr,
        "ListExecutions",
        &json!({ "mapRunArn": run, "maxResults": PAGE }),
    )
    .await?;
    let shown = page["executions"].as_array().map_or(0, Vec::len);
    ensure!(
        shown == expect,
        "{shown} children on the first page: {page}"
    );
    Ok(())
}

/// `POST /console/api/call/OPERATION` on a new connection (HTTP/1.1, `Connection: close`).
async fn console_call(addr: &str, operation: &str, body: &Value) -> anyhow::Result<Value> {
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST /console/api/call/{operation} HTTP/1.1\r\nHost: {addr}\r\nx-mapfleet-console: 1\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, payload) = text
        .split_once("\r\n\r\n")
        .context("an HTTP answer without a body")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "{operation}: {}: {payload}",
            head.lines().next().unwrap_or(head)
        );
    }
    serde_json::from_str(payload).with_context(|| format!("{operation}: {payload}"))
}
