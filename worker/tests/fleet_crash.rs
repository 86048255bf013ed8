//! A step that crashes every worker it reaches is dead-lettered after the delivery limit; the
//! real coordinator turns the dead letter into that iteration's `Mapfleet.StepDeadLettered`
//! (caught, so it is the iteration's result) and the rest of the Map completes, in order,
//! each iteration once.

mod fleet_support;

use std::time::Duration;

use coordinator::engine::history::Event;
use coordinator::fleet::service::ServiceOptions;
use fleet_support::*;
use serde_json::{Value, json};
use tokio::time::timeout;
use worker::task::resource_arn;

/// `n` items for the `crash` task, each returned as it is, but for the one at `crash`, which
/// aborts its worker.
fn crash_items(n: usize, crash: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            if i == crash {
                json!({"why": "test"})
            } else {
                json!({"survive": true, "index": i})
            }
        })
        .collect()
}

/// Checks the results of a Map over `items` whose item `crash` was dead-lettered from
/// `queue`: every other result is its item, that one the caught error; and the history
/// shows that one failure, once.
fn assert_dead_lettered_alone(
    got: &[Value],
    events: &[Event],
    items: &[Value],
    crash: usize,
    queue: &str,
) {
    assert_eq!(got.len(), items.len());
    let error = &got[crash];
    assert_eq!(error["Error"], "Mapfleet.StepDeadLettered", "{error}");
    let cause = error["Cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains(&resource_arn("crash")) && cause.contains(queue),
        "the dead letter names the step's resource and its queue: {cause}"
    );
    assert!(!cause.contains("unknown reason"), "{cause}");
    for (i, (got, item)) in got.iter().zip(items).enumerate() {
        if i != crash {
            assert_eq!(got, item, "results[{i}] == items[{i}]");
        }
    }
    assert_each_iteration_once(events, items.len());
    let dead: Vec<&Event> = events
        .iter()
        .filter(|e| e.details["error"] == "Mapfleet.StepDeadLettered")
        .collect();
    assert_eq!(dead.len(), 1, "one step was dead-lettered: {dead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_step_is_dead_lettered_and_the_map_goes_on() {
    timeout(TEST_LIMIT, async {
        // One step per message, so the crash step travels alone.
        let opts = ServiceOptions {
            step_batch: 1,
            ..ServiceOptions::default()
        };
        let fleet = Fleet::start_with("fleet-crash", 2, opts).await;
        let items = crash_items(200, 0);
        // The crash step is published first, so the first worker to start takes it.
        let arn = fleet
            .submit(&map_of("crash", json!({})), json!({ "items": items }))
            .await;
        // One slot each: a crashing worker takes down only the crash step with it, so the
        // delivery limit counts against that step alone.
        let args = ["--enable-test-tasks", "--concurrency", "1"];
        let (stop_tx, supervisor) = keep_two_workers(&fleet, args);
        let (ended, events) = fleet.wait(&arn).await;
        let _ = stop_tx.send(true);
        let restarts = supervisor.await.unwrap();
        eprintln!("worker restarts: {restarts}");
        assert_dead_lettered_alone(
            &results(&ended),
            &events,
            &items,
            0,
            &fleet.topo.default_steps_queue(),
        );
        assert!(
            restarts >= 2,
            "the crash step took down a worker per delivery"
        );
        fleet.finish().await;
    })
    .await
    .expect("fleet test timed out");
}

/// A step that crashes its worker inside a step batch: the batch comes back (redelivered),
/// the next worker splits it into single steps, and the crash step is dead-lettered alone
/// while every other step of the batch completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_step_in_a_batch_is_split_out_and_dead_lettered_alone() {
    timeout(TEST_LIMIT, async {
        // The Map's 25 steps go out together, as one message (whatever the task costs: no
        // time budget per message).
        let opts = ServiceOptions {
            step_batch: 25,
            step_batch_budget: Duration::ZERO,
            ..ServiceOptions::default()
        };
        let fleet = Fleet::start_with("fleet-crash-batch", 2, opts).await;
        let items = crash_items(25, 12);
        let arn = fleet
            .submit(&map_of("crash", json!({})), json!({ "items": items }))
            .await;
        // One slot each, as above: once the batch is split, a dying worker takes down only
        // the single step it was running. The batch itself runs its steps one at a time.
        let args = ["--enable-test-tasks", "--concurrency", "1"];
        let (stop_tx, supervisor) = keep_two_workers(&fleet, args);
        let (ended, events) = fleet.wait(&arn).await;
        let _ = stop_tx.send(true);
        let restarts = supervisor.await.unwrap();
        eprintln!("worker restarts: {restarts}");
        assert_dead_lettered_alone(
            &results(&ended),
            &events,
            &items,
            12,
            &fleet.topo.default_steps_queue(),
        );
        // The batch's delivery, then the crash step's own two.
        assert!(
            restarts >= 3,
            "the crash step took down a worker per delivery"
        );
        fleet.finish().await;
    })
    .await
    .expect("fleet test timed out");
}

/// Wire level, no coordinator: a message a worker cannot read goes to the dead-letter queue
/// untouched (a coordinator would consume it there, so none runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_step_is_rejected_to_the_dead_letter_queue() {
    use futures_lite::StreamExt;
    use shared::amqp::{self, Outgoing, Publisher, PublisherOptions};
    use shared::lapin::options::BasicAckOptions;
    use shared::testkit::{amqp_url, unique_prefix};
    use shared::topology::{DeadLetterInfo, Topology};
    timeout(TEST_LIMIT, async {
        let topo = Topology::new(unique_prefix("fleet-reject"), 5);
        shared::testkit::declare(&amqp_url(), &topo)
            .await
            .expect("RabbitMQ is running");
        let conn = std::sync::Arc::new(
            amqp::connect(&amqp_url(), "fleet-reject", Duration::from_secs(15))
                .await
                .unwrap(),
        );
        let publisher = Publisher::new(conn.clone(), PublisherOptions::default())
            .await
            .unwrap();
        let mut w = worker_for(&topo, &["--concurrency", "2"]);
        // A step from a future deployment (wire version 2) that this worker cannot read.
        let body = br#"{"v": 2, "something": "new"}"#.to_vec();
        publisher
            .publish(&Outgoing {
                exchange: topo.steps_exchange(),
                routing_key: resource_arn("echo"),
                body: body.clone(),
                message_id: None,
            })
            .await
            .expect("publish");
        let (_ch, mut dlq) = amqp::consume(&conn, &topo.dead_letter_queue(), "dlq", 1)
            .await
            .unwrap();
        let d = timeout(Duration::from_secs(60), dlq.next())
            .await
            .expect("dead-lettered in time")
            .unwrap()
            .unwrap();
        assert_eq!(d.data, body, "dead-lettered untouched");
        let info = DeadLetterInfo::from_headers(d.properties.headers().as_ref());
        assert_eq!(info.reason.as_deref(), Some("rejected"));
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
        w.kill();
        let _ = conn.close(200, "done".into()).await;
        shared::testkit::teardown(&amqp_url(), &shared::testkit::redis_url(), topo.prefix())
            .await
            .expect("teardown");
    })
    .await
    .expect("fleet test timed out");
}

/// Two workers with `args`, each started again whenever it dies (as a deployment would), until
/// the returned sender says stop; the task returns how many restarts it made (the workers are
/// killed when it ends).
fn keep_two_workers(
    fleet: &Fleet,
    args: [&'static str; 3],
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<u32>,
) {
    let mut workers = [fleet.worker(&args), fleet.worker(&args)];
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let topo = fleet.topo.clone();
    let supervisor = tokio::spawn(async move {
        let mut restarts = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(25));
        loop {
            tokio::select! {
                _ = stop_rx.wait_for(|s| *s) => break,
                _ = tick.tick() => {}
            }
            for w in workers.iter_mut() {
                if !w.running() {
                    restarts += 1;
                    *w = worker_for(&topo, &args);
                }
            }
        }
        restarts
    });
    (stop_tx, supervisor)
}
