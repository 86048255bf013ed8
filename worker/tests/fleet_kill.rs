//! 2,000 `echo` steps through 2 workers while one is `kill -9`ed mid-run: redelivered steps
//! produce duplicate outcomes that the apply script drops; nothing is lost, nothing applied
//! twice, order kept.

mod fleet_support;

use std::time::Duration;

use fleet_support::*;
use tokio::sync::watch;
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_nothing() {
    timeout(TEST_LIMIT, async {
        let h = harness("fleet-kill", 5).await;
        let batch = echo_batch(&h, 2000);
        // The victim waits 300 ms between each outcome's confirm and its ack, so the kill
        // leaves published-but-unacked steps behind: their redeliveries produce second
        // outcomes that the apply script must drop.
        let mut victim = worker(
            &h,
            &[
                "--concurrency",
                "32",
                "--enable-test-tasks",
                "--test-ack-delay-ms",
                "300",
            ],
        );
        let _survivor = worker(&h, &["--concurrency", "16"]);
        let (progress_tx, mut progress_rx) = watch::channel(0u64);
        let killer = tokio::spawn(async move {
            let seen = *progress_rx.wait_for(|n| *n >= 300).await.expect("progress");
            victim.kill();
            seen
        });
        h.submit(&batch).await.expect("submit");
        let report = h
            .collect(&batch, Duration::from_secs(150), Some(progress_tx))
            .await
            .expect("collect");
        let killed_at = killer.await.expect("killer");
        eprintln!("killed at {killed_at} applied; {report:?}");
        assert!(killed_at < 2000, "the kill happened mid-run");
        assert!(
            report.redelivered > 0,
            "the victim's unacked steps were redelivered"
        );
        assert!(
            report.duplicates > 0,
            "their second outcomes were dropped as duplicates"
        );
        assert_eq!(report.applied, 2000, "each step applied exactly once");
        assert_eq!(
            report.completions, 1,
            "exactly one caller saw the run complete"
        );
        let results = h.results(&batch).await.expect("results");
        assert_eq!(results, batch.items, "results[i] == items[i]");
        h.cleanup().await.expect("cleanup");
    })
    .await
    .expect("fleet test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_rides_out_a_dropped_broker_connection() {
    if !shared::testkit::rabbitmqctl_usable() {
        eprintln!("SKIPPED: rabbitmqctl is not usable here");
        return;
    }
    timeout(TEST_LIMIT, async {
        let h = harness("fleet-drop", 5).await;
        let batch = echo_batch(&h, 2000);
        // Paced (50 ms between each outcome and its ack) so the drop lands mid-run and
        // catches steps in flight.
        let mut w = worker(
            &h,
            &[
                "--concurrency",
                "16",
                "--enable-test-tasks",
                "--test-ack-delay-ms",
                "50",
            ],
        );
        // The worker names its connection `host/pid`.
        let fragment = format!("/{}", w.child.id());
        let (progress_tx, mut progress_rx) = watch::channel(0u64);
        let dropper = tokio::spawn(async move {
            progress_rx.wait_for(|n| *n >= 300).await.expect("progress");
            let closed = tokio::task::spawn_blocking(move || {
                shared::testkit::force_close_connections(&fragment)
            })
            .await
            .unwrap();
            let applied_after_close = *progress_rx.borrow();
            (closed, applied_after_close)
        });
        h.submit(&batch).await.expect("submit");
        let report = h
            .collect(&batch, Duration::from_secs(150), Some(progress_tx))
            .await
            .expect("collect");
        let (closed, applied_after_close) = dropper.await.unwrap();
        assert_eq!(closed, Some(1), "the worker's connection was closed");
        eprintln!("dropped with {applied_after_close} applied; {report:?}");
        assert!(applied_after_close < 2000, "the drop happened mid-run");
        assert!(
            report.redelivered > 0,
            "steps in flight at the drop were redelivered"
        );
        assert!(w.running(), "the worker recovered instead of exiting");
        assert_eq!(report.applied, 2000);
        assert_eq!(h.results(&batch).await.expect("results"), batch.items);
        h.cleanup().await.expect("cleanup");
    })
    .await
    .expect("fleet test timed out");
}
