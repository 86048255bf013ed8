//! Helpers shared by the `fleet_*` integration tests: the test plays the coordinator through
//! `shared::testkit::Harness` while real `mapfleet-worker` processes do the work.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use shared::testkit::{Batch, Harness, WorkerProcess, amqp_url, redis_url, unique_prefix};
use shared::topology::Topology;
use worker::task::resource_arn;

pub mod spawned;

pub const WORKER_BIN: &str = env!("CARGO_BIN_EXE_mapfleet-worker");

/// Bound on every fleet test: a hung broker fails the test instead of hanging CI.
pub const TEST_LIMIT: Duration = Duration::from_secs(180);

pub async fn harness(tag: &str, delivery_limit: u32) -> Harness {
    let topo = Topology::new(unique_prefix(tag), delivery_limit);
    Harness::connect(&amqp_url(), &redis_url(), topo)
        .await
        .expect("RabbitMQ and Redis are running")
}

pub fn worker(h: &Harness, extra: &[&str]) -> WorkerProcess {
    worker_for(&h.topo, extra)
}

pub fn worker_for(topo: &Topology, extra: &[&str]) -> WorkerProcess {
    WorkerProcess::spawn(
        Path::new(WORKER_BIN),
        &amqp_url(),
        &redis_url(),
        topo,
        extra,
    )
    .expect("spawn mapfleet-worker")
}

/// `n` distinct items, `echo`ed.
pub fn echo_batch(h: &Harness, n: usize) -> Batch {
    Batch {
        arn: format!(
            "arn:aws:states:local:000000000000:execution:fleet:{}",
            h.topo.prefix()
        ),
        map_run: "Map".into(),
        resource: resource_arn("echo"),
        items: (0..n)
            .map(|i| json!({ "index": i, "name": format!("item-{i}"), "tags": [i % 7, "x"] }))
            .collect::<Vec<Value>>(),
    }
}
