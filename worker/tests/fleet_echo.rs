//! A Map of 2,000 `echo` items through the real coordinator and 2 worker processes: the
//! results in item order, every iteration started and succeeded exactly once; and failing
//! tasks and deadlines coming back as the iterations' errors.

mod fleet_support;

use std::time::{Duration, Instant};

use fleet_support::*;
use serde_json::{Value, json};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_echo_items_through_two_workers() {
    timeout(TEST_LIMIT, async {
        let fleet = Fleet::start("fleet-echo", 5).await;
        let items = echo_items(2000);
        let w1 = fleet.worker(&["--concurrency", "16"]);
        let w2 = fleet.worker(&["--concurrency", "16"]);
        let arn = fleet
            .submit(&map_of("echo", json!({})), json!({ "items": items }))
            .await;
        let (ended, events) = fleet.wait(&arn).await;
        assert_eq!(results(&ended), items, "results[i] == items[i]");
        assert_each_iteration_once(&events, 2000);
        assert_eq!(fleet.progress(&arn).await, (2000, 2000, 0));
        drop((w1, w2));
        fleet.finish().await;
    })
    .await
    .expect("fleet test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_sleep_and_deadlines_come_back_as_outcomes() {
    timeout(TEST_LIMIT, async {
        let fleet = Fleet::start("fleet-kinds", 5).await;
        let addr = free_addr();
        let w = fleet.worker(&["--concurrency", "4", "--metrics-addr", &addr]);

        // The fail task's errors, caught per iteration, in item order.
        let arn = fleet
            .submit(
                &map_of("fail", json!({})),
                json!({ "items": [
                    {"error": "Custom.Error", "cause": "because"},
                    {"error": "Other"},
                    {},
                ]}),
            )
            .await;
        let (ended, events) = fleet.wait(&arn).await;
        let errors: Vec<(Value, Value)> = results(&ended)
            .into_iter()
            .map(|r| (r["Error"].clone(), r["Cause"].clone()))
            .collect();
        assert_eq!(
            errors,
            vec![
                (json!("Custom.Error"), json!("because")),
                (json!("Other"), json!("the fail task always fails")),
                (json!("Mapfleet.Fail"), json!("the fail task always fails")),
            ]
        );
        assert_each_iteration_once(&events, 3);

        // A sleep past the step's deadline times out; one within it returns its input.
        let arn = fleet
            .submit(
                &map_of("sleep", json!({"TimeoutSeconds": 3})),
                json!({ "items": [{"ms": 10}, {"ms": 120_000}] }),
            )
            .await;
        let (ended, events) = fleet.wait(&arn).await;
        let got = results(&ended);
        assert_eq!(got[0], json!({"ms": 10}));
        assert_eq!(got[1]["Error"], "States.Timeout", "{}", got[1]);
        assert_each_iteration_once(&events, 2);
        // The coordinator's own timer may fail the iteration first; the worker must still
        // have cut the task at the step's deadline instead of sleeping its two minutes.
        let started = Instant::now();
        let timed_out = r#"mapfleet_task_duration_seconds_count{outcome="timeout",task="sleep"}"#;
        loop {
            if metric(&scrape(&addr).await, timed_out) == 1.0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the worker did not enforce the step's deadline"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(w);
        fleet.finish().await;
    })
    .await
    .expect("fleet test timed out");
}
