//! Topology and publisher against a real RabbitMQ (127.0.0.1:5672 or `MAPFLEET_AMQP_URL`).

use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use serde_json::json;
use shared::amqp::{self, Outgoing, PublishError, Publisher, PublisherOptions};
use shared::lapin::options::BasicAckOptions;
use shared::messages::{StepId, StepMessage};
use shared::testkit::{amqp_url, unique_prefix};
use shared::topology::{self, Route, Topology};

fn step(resource: &str, i: u64) -> StepMessage {
    StepMessage::new(
        StepId {
            execution: "e".into(),
            cursor: format!("c/{i}"),
            seq: 1,
            attempt: 1,
        },
        resource,
        json!(i),
    )
}

#[tokio::test]
async fn routes_steps_by_resource_and_refuses_unroutable() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let conn = Arc::new(
            amqp::connect(&amqp_url(), "topology-test", Duration::from_secs(10))
                .await
                .unwrap(),
        );
        let topo = Topology::new(unique_prefix("topo"), 3).with_routes([Route {
            queue: "heavy".into(),
            resources: vec!["arn:mapfleet:task:::heavy".into()],
        }]);
        let ch = conn.create_channel().await.unwrap();
        topology::declare(&ch, &topo).await.unwrap();
        topology::declare(&ch, &topo).await.unwrap(); // idempotent

        let publisher = Publisher::new(conn.clone(), PublisherOptions::default())
            .await
            .unwrap();
        publisher
            .publish_steps(
                &topo,
                (0..10).map(|i| {
                    step(
                        if i % 2 == 0 {
                            "arn:mapfleet:task:::heavy"
                        } else {
                            "arn:mapfleet:task:::echo"
                        },
                        i,
                    )
                }),
            )
            .await
            .unwrap();

        for (route, want) in [
            ("heavy", "arn:mapfleet:task:::heavy"),
            ("default", "arn:mapfleet:task:::echo"),
        ] {
            let (_ch, mut consumer) = amqp::consume(&conn, &topo.steps_queue(route), route, 10)
                .await
                .unwrap();
            for _ in 0..5 {
                let d = consumer.next().await.unwrap().unwrap();
                let s = StepMessage::decode(&d.data).unwrap();
                assert_eq!(s.resource, want);
                assert_eq!(d.properties.delivery_mode(), &Some(2));
                d.acker.ack(BasicAckOptions::default()).await.unwrap();
            }
        }

        let err = publisher
            .publish(&Outgoing {
                exchange: String::new(),
                routing_key: format!("{}.no-such-queue", topo.prefix()),
                body: b"{}".to_vec(),
                message_id: None,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, PublishError::Unroutable { .. }), "{err}");
        // The publisher still works after a returned message.
        publisher
            .publish_step(&topo, &step("arn:mapfleet:task:::echo", 99))
            .await
            .unwrap();

        topology::delete(&ch, &topo).await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn connect_gives_up_with_a_clear_error() {
    let err = amqp::connect(
        "amqp://guest:secret@127.0.0.1:1/%2f",
        "nobody",
        Duration::from_millis(600),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("could not connect"), "{text}");
    assert!(!text.contains("secret"), "password leaked: {text}");
}

/// A test's teardown deletes its activities' queues too (CreateActivity made them; they
/// are not in the prefix's fixed topology), with the prefix's Redis keys.
#[tokio::test]
async fn teardown_deletes_activity_queues() {
    use shared::lapin::options::QueueDeclareOptions;
    use shared::redis_schema::FleetStore;
    use shared::testkit::{redis_url, teardown};
    tokio::time::timeout(Duration::from_secs(60), async {
        let prefix = unique_prefix("teardown-activity");
        let conn = amqp::connect(&amqp_url(), "teardown-test", Duration::from_secs(10))
            .await
            .unwrap();
        let topo = Topology::new(&prefix, 3);
        let ch = conn.create_channel().await.unwrap();
        topology::declare(&ch, &topo).await.unwrap();
        let arn = "arn:aws:states:local:000000000000:activity:resize";
        topology::declare_activity(&ch, &topo, arn).await.unwrap();
        let store = FleetStore::connect(&redis_url(), &prefix).await.unwrap();
        let mut redis = shared::redis_schema::connect(&redis_url()).await.unwrap();
        let _: () = shared::redis::AsyncCommands::hset(
            &mut redis,
            store.keys().activities(),
            "resize",
            "{}",
        )
        .await
        .unwrap();
        assert_eq!(store.activity_names().await.unwrap(), ["resize"]);

        teardown(&amqp_url(), &redis_url(), &prefix).await.unwrap();

        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let gone = conn
            .create_channel()
            .await
            .unwrap()
            .queue_declare(
                topo.activity_queue("resize").as_str().into(),
                passive,
                Default::default(),
            )
            .await;
        assert!(gone.is_err(), "the activity's queue is left: {gone:?}");
        assert!(store.activity_names().await.unwrap().is_empty());
    })
    .await
    .expect("the teardown test took over a minute");
}
