//! `amqps://` and `rediss://` are real, verified TLS: against the test's own RabbitMQ node
//! (plain and TLS listeners, a server certificate from a test CA) and its own TLS-only
//! `redis-server`. With the right CA a coordinator and a worker run a small Map; with another
//! CA, or `amqps://` to the plain port, the connection fails at once with a clear error and
//! nothing is sent in clear text.
//!
//! One node serves every case (a node takes 10-15 s to start).

mod common;
mod nodes;

use std::time::Duration;

use common::in_process::{InProcessFleet, assert_clean_history, config, map_of};
use nodes::ca::TestCa;
use nodes::rabbit::RabbitNode;
use nodes::redis::RedisNode;
use serde_json::json;
use shared::amqp::{self, ConnectError};
use shared::tls::TlsFiles;

const TEST_LIMIT: Duration = Duration::from_secs(400);

fn ca_files(ca: &std::path::Path) -> TlsFiles {
    TlsFiles {
        ca_file: Some(ca.to_path_buf()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_and_rediss_are_verified_tls() {
    if !RabbitNode::available() {
        eprintln!("SKIPPED: rabbitmq-server is not installed here");
        return;
    }
    nodes::log_to_test_output();
    tokio::time::timeout(TEST_LIMIT, async {
        let certs = tempfile::tempdir().unwrap();
        let ca = TestCa::new(certs.path());
        let (rabbit, redis) = tokio::task::spawn_blocking({
            let ca = ca.clone();
            move || (RabbitNode::start(Some(&ca)), RedisNode::start(Some(&ca)))
        })
        .await
        .unwrap();

        // The wrong CA: refused at once, saying it is about TLS.
        let wrong = amqp::connect_with(
            &rabbit.tls_url(),
            &ca_files(&ca.other_ca_pem),
            "tls-wrong-ca",
            Duration::from_secs(60),
            std::future::pending(),
        )
        .await
        .expect_err("another CA's certificate is not trusted");
        assert!(matches!(wrong, ConnectError::Tls { .. }), "{wrong}");
        let text = wrong.to_string();
        assert!(
            text.contains("certificate") || text.contains("Certificate"),
            "{text}"
        );
        assert!(!text.contains("guest:guest"), "{text}");

        // `amqps://` to the plain port: a failed handshake, never a plain connection.
        let plain_port = rabbit.url().replacen("amqp://", "amqps://", 1);
        let plain = amqp::connect_with(
            &plain_port,
            &ca_files(&ca.ca_pem),
            "tls-to-plain",
            Duration::from_secs(60),
            std::future::pending(),
        )
        .await
        .expect_err("a plain port does not speak TLS");
        assert!(matches!(plain, ConnectError::Tls { .. }), "{plain}");

        // CA files with a plain URL are refused rather than ignored.
        let refused = amqp::connect_with(
            &rabbit.url(),
            &ca_files(&ca.ca_pem),
            "tls-files-plain-url",
            Duration::from_secs(60),
            std::future::pending(),
        )
        .await
        .expect_err("TLS files need amqps://");
        assert!(refused.to_string().contains("amqps://"), "{refused}");

        // Redis: the wrong CA fails, and fails at once.
        let started = std::time::Instant::now();
        let Err(e) = shared::redis_schema::connect_retrying(
            &redis.url(),
            &ca_files(&ca.other_ca_pem),
            Duration::from_secs(120),
        )
        .await
        else {
            panic!("another CA's certificate is trusted by the Redis client");
        };
        assert!(e.to_string().contains("certificate"), "{e}");
        // Not retried as if Redis were down (that would take the 120 s given).
        assert!(started.elapsed() < Duration::from_secs(60), "{e}");

        // The right CA: a coordinator and a worker, both over TLS to both, run a Map.
        let prefix = shared::testkit::unique_prefix("tls");
        let fleet = config(&[
            "--amqp",
            &rabbit.tls_url(),
            "--amqp-ca-file",
            ca.ca_pem.to_str().unwrap(),
            "--redis",
            &redis.url(),
            "--redis-ca-file",
            ca.ca_pem.to_str().unwrap(),
            "--prefix",
            &prefix,
        ]);
        let running = InProcessFleet::start(fleet, 8)
            .await
            .expect("a fleet over TLS");
        let n = 20;
        let items: Vec<_> = (0..n).map(|i| json!({"i": i})).collect();
        let arn = running
            .submit(
                "tls",
                &map_of("arn:mapfleet:task:::echo", json!({"i.$": "$.i"})),
                json!({ "items": items }),
            )
            .await
            .unwrap();
        let ended = running.wait(&arn, Duration::from_secs(120)).await.unwrap();
        assert_eq!(
            ended.output,
            Some(json!(items)),
            "{:?} {:?}",
            ended.status,
            ended.error
        );
        let events = running.client.history(&arn).await.unwrap();
        assert_clean_history(&events, n);
        for (what, result) in running.stop().await {
            assert!(result.is_ok(), "{what}: {result:?}");
        }
        drop((rabbit, redis));
    })
    .await
    .expect("the TLS test timed out");
}
