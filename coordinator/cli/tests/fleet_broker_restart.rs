//! A broker crash in the middle of a Map: the test's own RabbitMQ node is killed with
//! SIGKILL for 15 s and started again on its data directory, under a coordinator and a worker
//! (in this process, supervised as the binaries are). Work must resume within 3 s of the
//! broker accepting connections again (measured: the first iteration that succeeds after it),
//! and the run must finish once, with a clean history and its results in order.

mod common;
mod nodes;

use std::time::{Duration, Instant};

use common::in_process::{InProcessFleet, assert_clean_history, config, map_of};
use coordinator::engine::history::EventType;
use nodes::rabbit::{RabbitNode, START_LIMIT};
use nodes::redis::RedisNode;
use serde_json::json;

const TEST_LIMIT: Duration = Duration::from_secs(600);
const ITEMS: usize = 400;
const DOWN_FOR: Duration = Duration::from_secs(15);
/// What the issue asks for: the fleet used to idle up to 30 s after the broker was back.
const RESUME_WITHIN: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_resumes_within_seconds_of_a_killed_broker_coming_back() {
    if !RabbitNode::available() {
        eprintln!("SKIPPED: rabbitmq-server is not installed here");
        return;
    }
    nodes::log_to_test_output();
    tokio::time::timeout(TEST_LIMIT, async {
        let (mut rabbit, redis) =
            tokio::task::spawn_blocking(|| (RabbitNode::start(None), RedisNode::start(None)))
                .await
                .unwrap();
        let prefix = shared::testkit::unique_prefix("broker-kill");
        let fleet = config(&[
            "--amqp",
            &rabbit.url(),
            "--redis",
            &redis.url(),
            "--prefix",
            &prefix,
        ]);
        // A fleet's queues outlive any one crash of its broker. RabbitMQ 3.10 keeps the
        // registry of its quorum queues' Raft servers in a table it writes to disk every few
        // minutes or at an orderly stop: a node killed minutes after a queue was declared
        // comes back without it, and that queue never elects a leader again ("name not
        // registered"; seen in 1 of 3 runs here). So the queues are declared, and the node
        // stopped cleanly once, before the fleet starts and the crash is caused.
        shared::testkit::declare(&rabbit.url(), &fleet.topology())
            .await
            .expect("the fleet's queues");
        let mut rabbit = tokio::task::spawn_blocking(move || {
            rabbit.restart_clean();
            rabbit
        })
        .await
        .unwrap();
        let running = InProcessFleet::start(fleet, 8).await.expect("a fleet");
        let items: Vec<_> = (0..ITEMS).map(|i| json!({"ms": 100, "i": i})).collect();
        let arn = running
            .submit(
                "broker-kill",
                &map_of(
                    "arn:mapfleet:task:::sleep",
                    json!({"ms.$": "$.ms", "i.$": "$.i"}),
                ),
                json!({ "items": items }),
            )
            .await
            .unwrap();

        // Kill it once work is well under way.
        let started = Instant::now();
        loop {
            let (_, ok, _) = running.client.progress(&arn).await.unwrap();
            if ok >= 40 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no progress before the kill"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rabbit_back = tokio::task::spawn_blocking(move || {
            rabbit.kill9();
            std::thread::sleep(DOWN_FOR);
            rabbit.restart();
            let back = rabbit.wait_accepting(START_LIMIT);
            (rabbit, back)
        });
        let (rabbit, back) = rabbit_back.await.unwrap();
        let (_, at_back, _) = running.client.progress(&arn).await.unwrap();
        assert!(
            (at_back as usize) < ITEMS,
            "the Map finished while the broker was down"
        );
        let resumed = loop {
            let (_, ok, _) = running.client.progress(&arn).await.unwrap();
            if ok > at_back {
                break back.elapsed();
            }
            assert!(
                back.elapsed() < Duration::from_secs(120),
                "no iteration succeeded within 120 s of the broker being back:\n{}",
                rabbit.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        eprintln!(
            "work resumed {resumed:?} after the broker accepted connections again \
             ({at_back} of {ITEMS} iterations had succeeded)"
        );

        let ended = running.wait(&arn, Duration::from_secs(300)).await.unwrap();
        let events = running.client.history(&arn).await.unwrap();
        for (what, result) in running.stop().await {
            assert!(result.is_ok(), "{what}: {result:?}");
        }
        let output = ended.output.as_ref().expect("an output");
        let got: Vec<u64> = output
            .as_array()
            .expect("the Map's results")
            .iter()
            .map(|r| r["i"].as_u64().expect("an item index"))
            .collect();
        assert_eq!(
            got,
            (0..ITEMS as u64).collect::<Vec<_>>(),
            "results in order"
        );
        assert_clean_history(&events, ITEMS);
        let finished = events
            .iter()
            .filter(|e| e.event_type == EventType::ExecutionSucceeded)
            .count();
        assert_eq!(finished, 1, "the execution succeeded once");
        assert!(
            resumed < RESUME_WITHIN,
            "work resumed only {resumed:?} after the broker was back"
        );
        drop((rabbit, redis));
    })
    .await
    .expect("the broker restart test timed out");
}
