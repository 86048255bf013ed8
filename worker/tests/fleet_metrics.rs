//! `--metrics-addr` serves the catalogue from a real worker, and the counters move.

mod fleet_support;

use std::io::{Read, Write};
use std::time::Duration;

use fleet_support::*;
use tokio::time::timeout;

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint is up");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn value(text: &str, metric: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_exports_its_metrics() {
    timeout(TEST_LIMIT, async {
        let h = harness("fleet-metrics", 5).await;
        // A free port: bind, read it, release it for the worker.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let _w = worker(&h, &["--concurrency", "8", "--metrics-addr", &addr]);
        let batch = echo_batch(&h, 100);
        h.submit(&batch).await.expect("submit");
        let report = h
            .collect(&batch, Duration::from_secs(60), None)
            .await
            .expect("collect");
        assert_eq!(report.applied, 100);

        // The last acks may land just after their outcomes; poll briefly for them.
        let mut text = String::new();
        for _ in 0..100 {
            text = tokio::task::spawn_blocking({
                let addr = addr.clone();
                move || scrape(&addr)
            })
            .await
            .unwrap();
            if value(&text, "mapfleet_steps_acked_total") >= 100.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert_eq!(value(&text, "mapfleet_steps_consumed_total"), 100.0);
        assert_eq!(value(&text, "mapfleet_steps_acked_total"), 100.0);
        assert_eq!(value(&text, "mapfleet_outcomes_published_total"), 100.0);
        assert!(
            text.contains("mapfleet_task_duration_seconds_count{outcome=\"ok\",task=\"echo\"} 100"),
            "{text}"
        );
        h.cleanup().await.expect("cleanup");
    })
    .await
    .expect("fleet test timed out");
}
