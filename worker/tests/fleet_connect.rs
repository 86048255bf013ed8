//! Start-up against a broker or Redis that is not there or refuses us, with the real
//! `mapfleet-worker` binary: it says what is wrong and exits within its connect time-out
//! (at once for a wrong password), leaks no IO thread per attempt, exits 0 without a panic
//! on SIGTERM while it retries, and takes no step while it has no Redis.

mod fleet_support;

use std::path::Path;
use std::time::Duration;

use fleet_support::spawned::{Spawned, refused_port};
use fleet_support::*;
use shared::lapin::options::QueueDeclareOptions;
use shared::lapin::types::FieldTable;
use shared::testkit::{amqp_url, redis_url, unique_prefix};

/// Generous bounds for a loaded 2-core machine; each is far below what the faults used to
/// take (retries without end, 5.5 minutes for a wrong password).
const EXIT_LIMIT: Duration = Duration::from_secs(60);

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

#[test]
fn a_refused_port_is_reported_as_refused_and_given_up_after_the_time_out() {
    let amqp = format!("amqp://guest:guest@127.0.0.1:{}/%2f", refused_port());
    let mut w = start(&amqp, &redis_url(), &unique_prefix("conn-refused"), "4");
    // While it retries, at most one lapin IO thread is alive (one per attempt used to stay).
    assert!(
        w.wait_for_log("AMQP connect failed", 3, EXIT_LIMIT),
        "{}",
        w.log()
    );
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(w.threads_named("lapin-io-loop"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(most <= 1, "{most} lapin IO threads alive while retrying");
    let status = w.wait_exit(EXIT_LIMIT).expect("it gives up");
    let log = w.log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("Connection refused"), "{log}");
    assert!(!log.contains("timed out"), "{log}");
    assert!(log.contains("giving up"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_wrong_password_ends_it_at_once() {
    let amqp = amqp_url().replacen("guest:guest@", "guest:not-the-password@", 1);
    assert_ne!(amqp, amqp_url(), "the test broker URL carries guest:guest");
    let started = std::time::Instant::now();
    // A connect time-out far above the bound: only failing fast passes.
    let mut w = start(&amqp, &redis_url(), &unique_prefix("conn-auth"), "600");
    let status = w.wait_exit(EXIT_LIMIT).expect("a refused login ends it");
    let log = w.log();
    eprintln!("exited after {:?}", started.elapsed());
    assert!(!status.success(), "{log}");
    assert!(log.contains("refused the login"), "{log}");
    assert!(log.contains("ACCESS_REFUSED"), "{log}");
    assert!(
        !log.contains("not-the-password"),
        "the password is never shown: {log}"
    );
    assert_eq!(log.matches("AMQP connect failed").count(), 0, "{log}");
}

#[test]
fn sigterm_while_retrying_exits_cleanly() {
    let amqp = format!("amqp://guest:guest@127.0.0.1:{}/%2f", refused_port());
    let mut w = start(&amqp, &redis_url(), &unique_prefix("conn-term"), "600");
    assert!(
        w.wait_for_log("AMQP connect failed", 4, EXIT_LIMIT),
        "{}",
        w.log()
    );
    w.terminate();
    let status = w.wait_exit(EXIT_LIMIT).expect("SIGTERM ends it");
    let log = w.log();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(!log.contains("panicked"), "{log}");
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
    assert!(
        w.wait_for_log("Redis connect failed", 2, EXIT_LIMIT),
        "{}",
        w.log()
    );
    w.terminate();
    let status = w.wait_exit(EXIT_LIMIT).expect("SIGTERM ends it");
    let log = w.log();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(!log.contains("panicked"), "{log}");
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
