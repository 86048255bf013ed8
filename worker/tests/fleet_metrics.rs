//! `--metrics-addr` serves the catalogue from a real worker, and the counters move.

mod fleet_support;

use std::time::Duration;

use fleet_support::*;
use serde_json::json;
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_exports_its_metrics() {
    timeout(TEST_LIMIT, async {
        let fleet = Fleet::start("fleet-metrics", 5).await;
        let addr = free_addr();
        let w = fleet.worker(&["--concurrency", "8", "--metrics-addr", &addr]);
        let items = echo_items(100);
        let arn = fleet
            .submit(&map_of("echo", json!({})), json!({ "items": items }))
            .await;
        let (ended, events) = fleet.wait(&arn).await;
        assert_eq!(results(&ended), items);
        assert_each_iteration_once(&events, 100);

        // The last acks may land just after their outcomes; poll briefly for them.
        let mut text = String::new();
        for _ in 0..100 {
            text = scrape(&addr).await;
            if metric(&text, "mapfleet_steps_acked_total") >= 100.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert_eq!(metric(&text, "mapfleet_steps_consumed_total"), 100.0);
        assert_eq!(metric(&text, "mapfleet_steps_acked_total"), 100.0);
        assert_eq!(metric(&text, "mapfleet_outcomes_published_total"), 100.0);
        assert!(
            text.contains("mapfleet_task_duration_seconds_count{outcome=\"ok\",task=\"echo\"} 100"),
            "{text}"
        );
        drop(w);
        fleet.finish().await;
    })
    .await
    .expect("fleet test timed out");
}
