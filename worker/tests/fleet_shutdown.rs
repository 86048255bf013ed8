//! SIGTERM: a worker stops taking steps, finishes the ones in flight (publishing their
//! outcomes and acking), and exits cleanly; what it never started stays queued for others.

mod fleet_support;

use std::time::{Duration, Instant};

use fleet_support::*;
use serde_json::json;
use shared::lapin::options::QueueDeclareOptions;
use shared::lapin::types::FieldTable;
use tokio::time::timeout;
use worker::task::resource_arn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_steps_then_exits() {
    timeout(TEST_LIMIT, async {
        let h = harness("fleet-term", 5).await;
        let mut batch = echo_batch(&h, 8);
        batch.resource = resource_arn("sleep");
        batch.items = (0..8).map(|i| json!({"ms": 1500, "i": i})).collect();
        h.submit(&batch).await.expect("submit");

        let mut w = worker(&h, &["--concurrency", "4", "--grace-secs", "20"]);
        // Wait until the worker holds 4 steps (the queue keeps the other 4 ready).
        let ch = h.conn.create_channel().await.unwrap();
        let queue = h.topo.default_steps_queue();
        let started = Instant::now();
        loop {
            let q = ch
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            if q.message_count() == 4 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "worker never took its steps"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        let q = ch
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        assert_eq!(q.message_count(), 4, "unstarted steps stay queued");

        // Another worker finishes the rest; nothing ran twice.
        let _w2 = worker(&h, &["--concurrency", "4"]);
        let report = h
            .collect(&batch, Duration::from_secs(60), None)
            .await
            .expect("collect");
        assert_eq!(report.applied, 8);
        assert_eq!(report.duplicates, 0);
        assert_eq!(h.results(&batch).await.unwrap(), batch.items);
        h.cleanup().await.expect("cleanup");
    })
    .await
    .expect("fleet test timed out");
}
