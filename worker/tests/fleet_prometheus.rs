//! A real Prometheus server (Debian's `prometheus`, on a port and a data directory of its
//! own) scrapes a running fleet through a batch, with the repository's recording and alert
//! rules loaded; the test reads the executions and Map items counters back through
//! Prometheus's HTTP API, then kills the only worker with work queued and waits for the
//! alerts that situation must raise.
//!
//! The alert rules are loaded as `deploy/prometheus/rules/` has them except for their `for:`
//! durations, shortened to 1 s so the test does not wait minutes (their expressions, which
//! are what is tested here, are unchanged; the durations are covered by `promtool test
//! rules` in `shared/tests/deploy.rs`).

mod fleet_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleet_support::*;
use serde_json::{Value, json};
use tokio::time::timeout;

/// A Prometheus server of the test's own; killed and its directory removed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

impl Prometheus {
    /// Starts Prometheus scraping `coordinator` and `worker` (host:port) every second.
    fn start(coordinator: &str, worker: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(shared::testkit::unique_prefix("mapfleet-prom"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let rules = repo().join("deploy/prometheus/rules");
        std::fs::copy(
            rules.join("mapfleet.rules.yml"),
            dir.join("mapfleet.rules.yml"),
        )
        .unwrap();
        let alerts = std::fs::read_to_string(rules.join("mapfleet.alerts.yml")).unwrap();
        let quick: String = alerts
            .lines()
            .map(|l| match l.trim_start().strip_prefix("for:") {
                Some(_) => format!("{}for: 1s", &l[..l.len() - l.trim_start().len()]),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(quick, alerts, "the alert rules have `for:` durations");
        std::fs::write(dir.join("mapfleet.alerts.yml"), quick).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [mapfleet.rules.yml, mapfleet.alerts.yml]\n\
             scrape_configs:\n\
             \x20 - job_name: mapfleet-coordinator\n    static_configs: [{{targets: ['{coordinator}']}}]\n\
             \x20 - job_name: mapfleet-worker\n    static_configs: [{{targets: ['{worker}']}}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr = free_addr();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start prometheus ({e}): install Debian's `prometheus` package \
                     (`bash .ci/services.sh` does it)"
                )
            });
        let mut p = Prometheus { child, addr, dir };
        let started = Instant::now();
        while get(&p.addr, "/-/ready").is_none_or(|(status, _)| status != 200) {
            if let Ok(Some(status)) = p.child.try_wait() {
                let log = std::fs::read_to_string(p.dir.join("prometheus.log")).unwrap_or_default();
                panic!("prometheus exited with {status}:\n{log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "prometheus not ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// The value of an instant query returning one sample; None while it returns none.
    fn value(&self, query: &str) -> Option<f64> {
        let (status, body) = get(
            &self.addr,
            &format!("/api/v1/query?query={}", encode(query)),
        )?;
        assert_eq!(status, 200, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        let result = v["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{query}: {body}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Polls `query` until it returns `want`; panics with the last value after `limit`.
    async fn wait_for(&self, query: &str, want: f64, limit: Duration) {
        self.wait_until(query, |v| v == want, &format!("= {want}"), limit)
            .await
    }

    async fn wait_until(&self, query: &str, ok: impl Fn(f64) -> bool, what: &str, limit: Duration) {
        let started = Instant::now();
        loop {
            let got = self.value(query);
            if got.is_some_and(&ok) {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "{query} is {got:?}, not {what}, after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The alerts Prometheus holds (pending or firing), by name and state.
    fn alerts(&self) -> Vec<(String, String, Value)> {
        let Some((200, body)) = get(&self.addr, "/api/v1/alerts") else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&body).expect("JSON");
        v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                    a["state"].as_str().unwrap_or("").to_string(),
                    a["labels"].clone(),
                )
            })
            .collect()
    }

    /// Waits for alert `name` to fire with label `label` = `value`; returns its labels.
    async fn wait_firing(&self, name: &str, label: &str, value: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let alerts = self.alerts();
            if let Some((_, _, labels)) = alerts
                .iter()
                .find(|(n, s, l)| n == name && s == "firing" && l[label] == value)
            {
                return labels.clone();
            }
            assert!(
                started.elapsed() < limit,
                "{name} not firing after {limit:?}; alerts: {alerts:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.0 GET (no chunked replies): (status, body), or None if nobody answers.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_fleet_and_raises_the_alerts() {
    timeout(TEST_LIMIT, async {
        let fleet = Fleet::start("fleet-prom", 5).await;
        // The coordinator runs in this process: serve this process's registry.
        let (coordinator_addr, server) = shared::metrics::serve("127.0.0.1:0".parse().unwrap())
            .await
            .expect("metrics endpoint");
        let worker_addr = free_addr();
        let mut w = fleet.worker(&["--concurrency", "4", "--metrics-addr", &worker_addr]);
        let (c, wa) = (coordinator_addr.to_string(), worker_addr.clone());
        let prom = tokio::task::spawn_blocking(move || Prometheus::start(&c, &wa))
            .await
            .expect("prometheus started");

        // Both targets scraped once before the batch, so the rates see it happen.
        prom.wait_for("sum(up)", 2.0, Duration::from_secs(30)).await;

        let n = 200;
        let items = echo_items(n);
        let arn = fleet
            .submit(&map_of("echo", json!({})), json!({ "items": items }))
            .await;
        let (ended, events) = fleet.wait(&arn).await;
        assert_eq!(results(&ended), items);
        assert_each_iteration_once(&events, n);

        // The counters, as Prometheus scraped them (the test's state machine is "fleet").
        let limit = Duration::from_secs(30);
        let by_sm = r#"{state_machine="fleet"}"#;
        prom.wait_for(
            &format!("sum(mapfleet_executions_started_total{by_sm})"),
            1.0,
            limit,
        )
        .await;
        prom.wait_for(
            r#"sum(mapfleet_executions_finished_total{state_machine="fleet",status="succeeded"})"#,
            1.0,
            limit,
        )
        .await;
        prom.wait_for(
            r#"sum(mapfleet_executions_finished_total{state_machine="fleet",status="failed"})"#,
            0.0,
            limit,
        )
        .await;
        prom.wait_for(
            r#"sum(mapfleet_map_items_total{status="started"})"#,
            n as f64,
            limit,
        )
        .await;
        prom.wait_for(
            r#"sum(mapfleet_map_items_total{status="succeeded"})"#,
            n as f64,
            limit,
        )
        .await;
        prom.wait_for(
            r#"sum(mapfleet_map_items_total{status="failed"})"#,
            0.0,
            limit,
        )
        .await;
        prom.wait_for(
            r#"sum(mapfleet_steps_consumed_total{job="mapfleet-worker"})"#,
            n as f64,
            limit,
        )
        .await;
        // Every outcome measured once (a redelivered one twice).
        prom.wait_until(
            r#"sum(mapfleet_step_latency_seconds_count{job="mapfleet-coordinator"})"#,
            |v| v >= n as f64,
            &format!(">= {n}"),
            limit,
        )
        .await;
        prom.wait_until(
            "mapfleet:step_latency_seconds:p99_5m",
            |v| v > 0.0 && v < 60.0,
            "a latency",
            limit,
        )
        .await;
        eprintln!(
            "{n} echo items: step latency p50 {:?} s, p99 {:?} s; queue wait p99 {:?} s (Prometheus)",
            prom.value("mapfleet:step_latency_seconds:p50_5m"),
            prom.value("mapfleet:step_latency_seconds:p99_5m"),
            prom.value("mapfleet:step_queue_wait_seconds:p99_5m"),
        );
        prom.wait_for("mapfleet:workers_live:max", 1.0, limit).await;
        prom.wait_for("mapfleet:worker_slots:sum", 4.0, limit).await;
        // Healthy: neither of the alerts below is pending or firing.
        let quiet = prom.alerts();
        assert!(
            !quiet.iter().any(
                |(n, _, _)| n == "MapfleetStepsQueuedNoConsumer" || n == "MapfleetNoLiveWorker"
            ),
            "{quiet:?}"
        );

        // The only worker dies; a new batch's steps wait in the queue with nobody to take
        // them.
        w.kill();
        let stuck = fleet
            .submit(
                &map_of("echo", json!({})),
                json!({ "items": echo_items(20) }),
            )
            .await;
        let queue = fleet.topo.default_steps_queue();
        let labels = prom
            .wait_firing(
                "MapfleetStepsQueuedNoConsumer",
                "queue",
                &queue,
                Duration::from_secs(60),
            )
            .await;
        assert_eq!(labels["severity"], "critical", "{labels}");
        // The worker's registration lapses after 15 s: then no live worker serves echo.
        let labels = prom
            .wait_firing(
                "MapfleetNoLiveWorker",
                "resource",
                &worker::task::resource_arn("echo"),
                Duration::from_secs(90),
            )
            .await;
        assert_eq!(labels["severity"], "critical", "{labels}");
        assert_eq!(
            fleet.progress(&stuck).await.1,
            0,
            "nothing ran without a worker"
        );

        drop(prom);
        server.abort();
        fleet.finish().await;
    })
    .await
    .expect("fleet test timed out");
}
