//! The fleet on a Redis Cluster: a 3-node cluster of the test's own
//! ([`nodes::redis_cluster`]: free ports, its own directories, `redis-cli --cluster
//! create`), two coordinators and two workers in this process connected to it through a
//! `redis+cluster://` URL, and a 2,000-item `echo` Map. Every key of one execution carries
//! its ARN as a hash tag, so its scripts touch one slot; the fleet's shared indexes (ready
//! set, timers, execution list, worker registry) sit in other slots and are written by
//! commands of their own. The run must finish exactly once with its results in order.

mod common;
mod nodes;

use std::time::Duration;

use common::in_process::{InProcessFleet, Services, assert_clean_history, config};
use coordinator::engine::history::EventType;
use nodes::redis_cluster::RedisCluster;
use serde_json::{Value, json};
use worker::registry::{RegistryOptions, default_registry};

const ITEMS: usize = 2000;
const TEST_LIMIT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_runs_on_a_three_node_redis_cluster() {
    nodes::log_to_test_output();
    tokio::time::timeout(TEST_LIMIT, run())
        .await
        .expect("the Redis Cluster test timed out");
}

async fn run() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let prefix = shared::testkit::unique_prefix("mft-cluster");
    let running = InProcessFleet::start_with(
        config(&[
            "--prefix",
            &prefix,
            "--amqp",
            &shared::testkit::amqp_url(),
            "--redis",
            &cluster.url(),
        ]),
        Services {
            coordinators: 2,
            workers: 2,
            worker_slots: 16,
            registry: default_registry(RegistryOptions { test_tasks: false }),
            worker_tag: "cluster",
            declare_on: None,
        },
    )
    .await
    .expect("start the fleet on the cluster");

    // A Map with a Wait before it, so that timers (in their own slot) are on the path too.
    let definition = json!({"StartAt": "Pause", "States": {
        "Pause": {"Type": "Wait", "Seconds": 1, "Next": "M"},
        "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 0, "End": true,
            "ItemProcessor": {"StartAt": "E", "States": {"E": {
                "Type": "Task", "Resource": "arn:mapfleet:task:::echo",
                "Parameters": {"i.$": "$.i"}, "End": true}}}}}});
    let items: Vec<Value> = (0..ITEMS).map(|i| json!({ "i": i })).collect();
    let arn = running
        .submit("on-a-cluster", &definition, json!({ "items": items }))
        .await
        .expect("submit");
    let ended = running
        .wait(&arn, Duration::from_secs(300))
        .await
        .expect("the execution ends");
    assert_eq!(
        ended.output,
        Some(Value::Array(
            (0..ITEMS).map(|i| json!({ "i": i })).collect()
        )),
        "results in item order (error: {:?})",
        ended.error
    );
    let events = running.client.history(&arn).await.expect("history");
    assert_clean_history(&events, ITEMS);
    let ends = events
        .iter()
        .filter(|e| e.event_type == EventType::ExecutionSucceeded)
        .count();
    assert_eq!(ends, 1, "the execution succeeded once");
    let (_, succeeded, failed) = running.client.progress(&arn).await.expect("progress");
    assert_eq!((succeeded, failed), (ITEMS as u64, 0));

    // The execution's keys share one slot; the fleet's indexes are elsewhere.
    let slot = |key: &str| {
        cluster
            .cli(cluster.ports[0], &["CLUSTER", "KEYSLOT", key])
            .trim()
            .to_string()
    };
    let keys = coordinator::fleet::keys::FleetKeys::new(&prefix);
    let exec_slot = slot(&keys.exec(&arn));
    for key in [
        keys.history(&arn),
        keys.cursors(&arn),
        keys.inbox(&arn),
        keys.lease(&arn),
        keys.items(&arn, ""),
        keys.shared.cursor(&arn, "/0"),
    ] {
        assert_eq!(
            slot(&key),
            exec_slot,
            "{key} is not in its execution's slot"
        );
    }
    eprintln!(
        "keys per cluster node after the run: {:?}",
        cluster.keys_per_node()
    );

    assert!(running.stopped().is_empty(), "a service stopped on its own");
    for (what, result) in running.stop().await {
        assert!(result.is_ok(), "{what}: {result:?}");
    }
    drop(cluster);
    // The queues on the machine's broker (the keys went with the test's cluster).
    let _ = tokio::task::spawn_blocking(move || shared::testkit::teardown_prefix(&prefix)).await;
}
