//! The publisher survives a dropped connection: the broker force-closes it (as a restart or
//! a network cut would), lapin's auto-recovery reconnects, and the failed publish is retried.
//! Needs `rabbitmqctl` (the local broker's admin CLI); skipped with a note without it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use serde_json::json;
use shared::amqp::{self, Publisher, PublisherOptions};
use shared::lapin::options::BasicAckOptions;
use shared::messages::{StepId, StepMessage};
use shared::testkit::{amqp_url, force_close_connections, rabbitmqctl_usable, unique_prefix};
use shared::topology::{self, Topology};

fn steps(range: std::ops::Range<u64>) -> impl Iterator<Item = StepMessage> {
    range.map(|i| {
        StepMessage::new(
            StepId {
                execution: "e".into(),
                cursor: format!("c/{i}"),
                seq: 1,
                attempt: 1,
            },
            "arn:mapfleet:task:::echo",
            json!(i),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_retries_after_connection_recovery() {
    let usable = rabbitmqctl_usable();
    if !usable {
        eprintln!("SKIPPED: rabbitmqctl is not usable here");
        return;
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        let name = unique_prefix("recovery");
        let conn = Arc::new(
            amqp::connect(&amqp_url(), &name, Duration::from_secs(10))
                .await
                .unwrap(),
        );
        let topo = Topology::new(name.clone(), 5);
        let ch = conn.create_channel().await.unwrap();
        topology::declare(&ch, &topo).await.unwrap();
        let publisher = Publisher::new(conn.clone(), PublisherOptions::default())
            .await
            .unwrap();
        publisher.publish_steps(&topo, steps(0..100)).await.unwrap();

        let n = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || force_close_connections(&name))
                .await
                .unwrap()
        };
        assert_eq!(n, Some(1), "exactly our connection was closed");

        // Publishing goes on: the first attempts fail on the dead channel, the publisher
        // waits for lapin's recovery and retries.
        publisher
            .publish_steps(&topo, steps(100..200))
            .await
            .expect("publish after recovery");
        let failures: u64 = ["channel", "timeout", "nack"]
            .iter()
            .map(|r| {
                shared::metrics::get()
                    .publish_failures
                    .with_label_values(&[r])
                    .get()
            })
            .sum();
        eprintln!("publish attempts that failed and were retried: {failures}");

        let reader = amqp::connect(&amqp_url(), "recovery-reader", Duration::from_secs(10))
            .await
            .unwrap();
        let (_rch, mut consumer) =
            amqp::consume(&reader, &topo.default_steps_queue(), "reader", 200)
                .await
                .unwrap();
        let mut seen = HashSet::new();
        while seen.len() < 200 {
            let d = consumer.next().await.unwrap().unwrap();
            seen.insert(StepMessage::decode(&d.data).unwrap().id.cursor);
            d.acker.ack(BasicAckOptions::default()).await.unwrap();
        }
        let rch = reader.create_channel().await.unwrap();
        topology::delete(&rch, &topo).await.unwrap();
    })
    .await
    .expect("recovery test timed out");
}
