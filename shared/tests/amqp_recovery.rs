//! A dropped connection: the broker force-closes it (as a restart or a network cut would).
//! The publisher on it fails at once with `ConnectionLost` (it does not wait for a recovery
//! that lapin is not asked to do), and a new connection's publisher carries on; the service
//! layer (`shared::supervise`) does that restart in the binaries.
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
async fn a_lost_connection_fails_publishes_at_once_and_a_new_one_carries_on() {
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

        // Publishing on the dead connection fails, promptly and saying why.
        let started = std::time::Instant::now();
        let err = publisher
            .publish_steps(&topo, steps(100..200))
            .await
            .expect_err("the connection is gone");
        assert!(
            matches!(err, amqp::PublishError::ConnectionLost(_)),
            "{err}"
        );
        eprintln!("the publish failed after {:?}: {err}", started.elapsed());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no wait for a recovery that never comes: {:?}",
            started.elapsed()
        );

        // A new connection publishes what failed.
        let conn = Arc::new(
            amqp::connect(&amqp_url(), &name, Duration::from_secs(10))
                .await
                .unwrap(),
        );
        let publisher = Publisher::new(conn.clone(), PublisherOptions::default())
            .await
            .unwrap();
        publisher
            .publish_steps(&topo, steps(100..200))
            .await
            .expect("publish on a new connection");

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
