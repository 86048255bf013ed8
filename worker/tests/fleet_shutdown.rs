//! SIGTERM: a worker stops taking steps, finishes the ones in flight (publishing their
//! outcomes and acking), and exits cleanly; what it never started stays queued for others.

mod fleet_support;

use std::time::{Duration, Instant};

use coordinator::fleet::service::ServiceOptions;
use fleet_support::*;
use serde_json::{Value, json};
use shared::lapin::options::QueueDeclareOptions;
use shared::lapin::types::FieldTable;
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_steps_then_exits() {
    timeout(TEST_LIMIT, async {
        let opts = ServiceOptions {
            // One message per step, so the queue's message count counts steps.
            step_batch: 1,
            // The steps wait for a worker longer than this test takes.
            unserved_grace: Duration::from_secs(600),
            ..ServiceOptions::default()
        };
        let fleet = Fleet::start_with("fleet-term", 5, opts).await;
        let items: Vec<Value> = (0..8).map(|i| json!({"ms": 1500, "i": i})).collect();
        let duplicates_before = duplicates();
        let arn = fleet
            .submit(&map_of("sleep", json!({})), json!({ "items": items }))
            .await;

        let conn = shared::amqp::connect(
            &shared::testkit::amqp_url(),
            "fleet-term",
            Duration::from_secs(15),
        )
        .await
        .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let queue = fleet.topo.default_steps_queue();
        let ready = || {
            let (ch, queue) = (ch.clone(), queue.clone());
            async move {
                ch.queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap()
                .message_count()
            }
        };
        let wait_for = |n: u32, what: &'static str| {
            let ready = &ready;
            async move {
                let started = Instant::now();
                while ready().await != n {
                    assert!(started.elapsed() < Duration::from_secs(60), "{what}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        // All 8 steps published before any worker runs.
        wait_for(8, "the coordinator never published the 8 steps").await;

        let mut w = fleet.worker(&["--concurrency", "4", "--grace-secs", "20"]);
        // Wait until the worker holds 4 steps (the queue keeps the other 4 ready).
        wait_for(4, "the worker never took its steps").await;
        let status = tokio::task::spawn_blocking(move || {
            let status = w.terminate(Duration::from_secs(30));
            (w, status)
        })
        .await
        .unwrap()
        .1
        .expect("the worker exits within its grace period");
        assert!(status.success(), "clean exit: {status:?}");

        // Its 4 in-flight steps finished and were acked: only 4 remain queued.
        assert_eq!(ready().await, 4, "unstarted steps stay queued");

        // Another worker finishes the rest; nothing ran twice.
        let w2 = fleet.worker(&["--concurrency", "4"]);
        let (ended, events) = fleet.wait(&arn).await;
        assert_eq!(results(&ended), items);
        assert_each_iteration_once(&events, 8);
        assert_eq!(duplicates() - duplicates_before, 0, "no outcome came twice");
        drop(w2);
        let _ = conn.close(200, "done".into()).await;
        fleet.finish().await;
    })
    .await
    .expect("fleet test timed out");
}
