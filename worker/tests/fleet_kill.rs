//! A Map of 2,000 `echo` items through the real coordinator and 2 workers while one is
//! `kill -9`ed mid-run (or loses its broker connection): its unacked steps are redelivered,
//! their second outcomes are dropped as duplicates, and nothing is lost or done twice: the
//! results in item order, every iteration started and succeeded exactly once.

mod fleet_support;

use std::time::Duration;

use coordinator::fleet::service::ServiceOptions;
use fleet_support::*;
use serde_json::json;
use tokio::time::timeout;

/// Waits until `n` iterations of `arn` succeeded; returns how many had.
async fn succeeded_at_least(
    client: &coordinator::fleet::client::FleetClient,
    arn: &str,
    n: u64,
) -> u64 {
    loop {
        let (_, ok, _) = client.progress(arn).await.expect("progress");
        if ok >= n {
            return ok;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One message per step: a worker's ack delay then paces every step, so the fault lands
/// while steps are in flight (batched, a 2,000-item Map is over before it).
fn single_steps() -> ServiceOptions {
    ServiceOptions {
        step_batch: 1,
        ..ServiceOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_nothing() {
    timeout(TEST_LIMIT, async {
        let fleet = Fleet::start_with("fleet-kill", 5, single_steps()).await;
        let items = echo_items(2000);
        // The victim waits 300 ms between each step's confirmed outcome and its ack, so
        // the kill leaves steps behind whose outcomes are out: their redeliveries produce
        // second outcomes that the coordinator must drop.
        let mut victim = fleet.worker(&[
            "--concurrency",
            "32",
            "--enable-test-tasks",
            "--test-ack-delay-ms",
            "300",
        ]);
        let addr = free_addr();
        let survivor = fleet.worker(&["--concurrency", "16", "--metrics-addr", &addr]);
        let duplicates_before = duplicates();
        let arn = fleet
            .submit(&map_of("echo", json!({})), json!({ "items": items }))
            .await;
        let killer = {
            let (client, arn) = (fleet.client.clone(), arn.clone());
            tokio::spawn(async move {
                let seen = succeeded_at_least(&client, &arn, 300).await;
                victim.kill();
                seen
            })
        };
        let (ended, events) = fleet.wait(&arn).await;
        let killed_at = killer.await.expect("killer");
        let dropped = duplicates() - duplicates_before;
        let redelivered = metric(&scrape(&addr).await, "mapfleet_steps_redelivered_total");
        eprintln!("killed at {killed_at} succeeded; {redelivered} steps redelivered, {dropped} duplicate outcomes");
        assert!(killed_at < 2000, "the kill happened mid-run");
        assert!(
            redelivered > 0.0,
            "the victim's unacked steps were redelivered"
        );
        assert!(
            dropped > 0,
            "their second outcomes were dropped as duplicates"
        );
        assert_eq!(results(&ended), items, "results[i] == items[i]");
        assert_each_iteration_once(&events, 2000);
        assert_eq!(fleet.progress(&arn).await, (2000, 2000, 0));
        drop(survivor);
        fleet.finish().await;
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
        let fleet = Fleet::start_with("fleet-drop", 5, single_steps()).await;
        let items = echo_items(2000);
        // Paced (50 ms between each step's outcome and its ack) so the drop lands
        // mid-run and catches steps in flight.
        let addr = free_addr();
        let mut w = fleet.worker(&[
            "--concurrency",
            "16",
            "--enable-test-tasks",
            "--test-ack-delay-ms",
            "50",
            "--metrics-addr",
            &addr,
        ]);
        // The worker names its connection `host/pid` (the quote ends the name, so no other
        // pid that starts with the same digits matches).
        let fragment = format!("/{}\"", w.child.id());
        let arn = fleet
            .submit(&map_of("echo", json!({})), json!({ "items": items }))
            .await;
        let dropper = {
            let (client, arn) = (fleet.client.clone(), arn.clone());
            tokio::spawn(async move {
                succeeded_at_least(&client, &arn, 300).await;
                let closed = tokio::task::spawn_blocking(move || {
                    shared::testkit::force_close_connections(&fragment)
                })
                .await
                .unwrap();
                let (_, succeeded_after_close, _) = client.progress(&arn).await.unwrap();
                (closed, succeeded_after_close)
            })
        };
        let (ended, events) = fleet.wait(&arn).await;
        let (closed, succeeded_after_close) = dropper.await.unwrap();
        let redelivered = metric(&scrape(&addr).await, "mapfleet_steps_redelivered_total");
        eprintln!(
            "dropped with {succeeded_after_close} succeeded; {redelivered} steps redelivered"
        );
        assert_eq!(closed, Some(1), "the worker's connection was closed");
        assert!(succeeded_after_close < 2000, "the drop happened mid-run");
        assert!(
            redelivered > 0.0,
            "steps in flight at the drop were redelivered"
        );
        assert!(w.running(), "the worker recovered instead of exiting");
        assert_eq!(results(&ended), items, "results[i] == items[i]");
        assert_each_iteration_once(&events, 2000);
        assert_eq!(fleet.progress(&arn).await, (2000, 2000, 0));
        w.kill();
        fleet.finish().await;
    })
    .await
    .expect("fleet test timed out");
}
