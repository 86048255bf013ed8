//! Start-up against a broker or Redis that is not there or refuses us, with the real
//! `mapfleet-worker` binary: it says what is wrong and exits within its connect time-out
//! (at once for a wrong password), leaks no IO thread per attempt, exits 0 without a panic
//! on SIGTERM while it retries, and takes no step while it has no Redis.

mod fleet_support;

use std::path::Path;
use std::time::Duration;

use fleet_support::spawned::{self, EXIT_LIMIT, Spawned, refused_port};
use fleet_support::*;
use shared::lapin::options::QueueDeclareOptions;
use shared::lapin::types::FieldTable;
use shared::testkit::{amqp_url, redis_url, unique_prefix};

fn start(amqp: &str, redis: &str, prefix: &str, connect_timeout: &str) -> Spawned {
    Spawned::start(
        Path::new(WORKER_BIN),
        &[
            "--amqp",
            amqp,
            "--redis",
            redis,
            "--prefix",
            prefix,
            "--no-photo-tasks",
            "--connect-timeout-secs",
            connect_timeout,
        ],
        &[],
    )
}

/// A worker of a fresh prefix on the test Redis; `tag` names the prefix.
fn worker(tag: &'static str) -> impl FnOnce(&str, &str) -> Spawned {
    move |amqp, connect_timeout| start(amqp, &redis_url(), &unique_prefix(tag), connect_timeout)
}

#[test]
fn a_refused_port_is_reported_as_refused_and_given_up_after_the_time_out() {
    let log = spawned::gives_up_on_a_refused_broker(worker("conn-refused"), |w| {
        // While it retries, at most one lapin IO thread is alive (one per attempt used to
        // stay).
        let mut most = 0;
        for _ in 0..20 {
            most = most.max(w.threads_named("lapin-io-loop"));
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(most <= 1, "{most} lapin IO threads alive while retrying");
    });
    assert!(!log.contains("timed out"), "{log}");
}

#[test]
fn a_wrong_password_ends_it_at_once() {
    spawned::a_wrong_password_ends_it_at_once(&amqp_url(), worker("conn-auth"));
}

#[test]
fn sigterm_while_retrying_exits_cleanly() {
    spawned::sigterm_while_retrying_exits_cleanly(worker("conn-term"));
}

#[test]
fn sigterm_while_waiting_for_redis_exits_cleanly() {
    let redis = format!("redis://127.0.0.1:{}/", refused_port());
    let mut w = start(
        &amqp_url(),
        &redis,
        &unique_prefix("conn-term-redis"),
        "600",
    );
    spawned::terminate_after(&mut w, "Redis connect failed", 2);
}

/// A step waits in the queue; a worker whose Redis is unreachable (refused, and `rediss://`
/// to a plain Redis, whose handshake fails) ends with a clear error and never takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_redis_takes_no_step() {
    tokio::time::timeout(TEST_LIMIT, async {
        // The real coordinator publishes the Map's steps; no worker is there to take them.
        let fleet = Fleet::start("conn-no-redis", 5).await;
        let items: Vec<serde_json::Value> = echo_items(3);
        fleet
            .submit(
                &map_of("echo", serde_json::json!({})),
                serde_json::json!({ "items": items }),
            )
            .await;
        let conn = shared::amqp::connect(&amqp_url(), "conn-no-redis", Duration::from_secs(10))
            .await
            .expect("RabbitMQ is running");
        let ch = conn.create_channel().await.unwrap();
        let queue = fleet.topo.default_steps_queue();
        let waiting = || async {
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
        };
        let mut before = 0;
        for _ in 0..100 {
            before = waiting().await;
            if before > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(before > 0, "the coordinator published the steps");
        let plain = redis_url();
        let tls_to_plain = plain.replacen("redis://", "rediss://", 1);
        for redis in [
            format!("redis://127.0.0.1:{}/", refused_port()),
            tls_to_plain,
        ] {
            let prefix = fleet.topo.prefix().to_string();
            let mut w = tokio::task::spawn_blocking(move || {
                let mut w = start(&amqp_url(), &redis, &prefix, "3");
                let status = w.wait_exit(EXIT_LIMIT);
                (w.log(), status)
            })
            .await
            .unwrap();
            let status = w.1.take().expect("it exits");
            let log = w.0;
            assert!(!status.success(), "{log}");
            assert!(log.contains("takes no step without it"), "{log}");
            assert!(!log.contains("consuming"), "{log}");
        }
        assert_eq!(waiting().await, before, "no step was taken");
        let _ = conn.close(200, "done".into()).await;
        fleet.finish().await;
    })
    .await
    .expect("test timed out");
}
