//! A step that crashes every worker it reaches is dead-lettered after the delivery limit,
//! the dead letter names the step, and the rest of the batch completes.

mod fleet_support;

use std::time::Duration;

use fleet_support::*;
use serde_json::json;
use shared::messages::{StepId, StepMessage};
use tokio::time::timeout;
use worker::task::resource_arn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_step_is_dead_lettered_and_the_batch_goes_on() {
    timeout(TEST_LIMIT, async {
        let h = harness("fleet-crash", 2).await;
        let batch = echo_batch(&h, 200);
        let crash = StepMessage::new(
            StepId {
                execution: batch.arn.clone(),
                cursor: "Crash/0".into(),
                seq: 1,
                attempt: 1,
            },
            resource_arn("crash"),
            json!({"why": "test"}),
        );
        h.store
            .await_step(&crash.id.execution, &crash.id.cursor, 1, 1)
            .await
            .unwrap();
        // The crash step goes first, so the first worker to start takes it.
        h.publisher
            .publish_step(&h.topo, &crash)
            .await
            .expect("publish crash");
        h.submit(&batch).await.expect("submit");

        // Prefetch 1: a crashing worker takes down only the crash step with it, so the
        // delivery limit counts against that step alone.
        let args = ["--enable-test-tasks", "--concurrency", "1"];
        let (stop_tx, supervisor) = keep_two_workers(&h, args);

        let (dead, info) = h
            .next_dead_letter(Duration::from_secs(90))
            .await
            .expect("the crash step is dead-lettered");
        eprintln!("dead letter: {:?} {info:?}", dead.id);
        assert_eq!(dead.id, crash.id, "the dead letter identifies the step");
        assert_eq!(dead.resource, resource_arn("crash"));
        assert_eq!(
            info.queue.as_deref(),
            Some(h.topo.default_steps_queue().as_str())
        );
        assert!(info.reason.is_some());

        let report = h
            .collect(&batch, Duration::from_secs(90), None)
            .await
            .expect("the other items finish");
        assert_eq!(report.applied, 200);
        assert_eq!(h.results(&batch).await.unwrap(), batch.items);
        let _ = stop_tx.send(true);
        let restarts = supervisor.await.unwrap();
        eprintln!("worker restarts: {restarts}; {report:?}");
        assert!(
            restarts >= 2,
            "the crash step took down a worker per delivery"
        );
        h.cleanup().await.expect("cleanup");
    })
    .await
    .expect("fleet test timed out");
}

/// A step that crashes its worker inside a step batch: the batch comes back (redelivered),
/// the next worker splits it into single steps, and the crash step is dead-lettered alone
/// while every other step of the batch completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_step_in_a_batch_is_split_out_and_dead_lettered_alone() {
    use shared::amqp::Outgoing;
    timeout(TEST_LIMIT, async {
        let h = harness("fleet-crash-batch", 2).await;
        let batch = echo_batch(&h, 24);
        h.store
            .init_map_run(&batch.arn, &batch.map_run, batch.items.len() as u64)
            .await
            .unwrap();
        let mut steps = Vec::new();
        for (i, item) in batch.items.iter().enumerate() {
            let id = StepId {
                execution: batch.arn.clone(),
                cursor: batch.cursor(i),
                seq: 1,
                attempt: 1,
            };
            steps.push(StepMessage::new(id, batch.resource.clone(), item.clone()));
        }
        let crash = StepMessage::new(
            StepId {
                execution: batch.arn.clone(),
                cursor: "Crash/0".into(),
                seq: 1,
                attempt: 1,
            },
            resource_arn("crash"),
            json!({"why": "test"}),
        );
        steps.insert(12, crash.clone());
        for s in &steps {
            h.store
                .await_step(&s.id.execution, &s.id.cursor, 1, 1)
                .await
                .unwrap();
        }
        // One message for all 25 steps, routed by the first (echo) step's resource; the
        // worker runs each step by its own resource.
        h.publisher
            .publish(&Outgoing::steps(&h.topo, &steps))
            .await
            .expect("publish the batch");

        // One slot each, as above: once the batch is split, a dying worker takes down only
        // the single step it was running. The batch itself runs its steps one at a time.
        let args = ["--enable-test-tasks", "--concurrency", "1"];
        let (stop_tx, supervisor) = keep_two_workers(&h, args);

        let (dead, info) = h
            .next_dead_letter(Duration::from_secs(90))
            .await
            .expect("the crash step is dead-lettered");
        assert_eq!(dead.id, crash.id, "the crash step is dead-lettered alone");
        assert!(info.reason.is_some());
        let report = h
            .collect(&batch, Duration::from_secs(90), None)
            .await
            .expect("the other steps of the batch finish");
        assert_eq!(report.applied, 24);
        assert_eq!(h.results(&batch).await.unwrap(), batch.items);
        let _ = stop_tx.send(true);
        let restarts = supervisor.await.unwrap();
        eprintln!("worker restarts: {restarts}; {report:?}");
        // The batch's delivery, then the crash step's own two.
        assert!(
            restarts >= 3,
            "the crash step took down a worker per delivery"
        );
        h.cleanup().await.expect("cleanup");
    })
    .await
    .expect("fleet test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_step_is_rejected_to_the_dead_letter_queue() {
    use futures_lite::StreamExt;
    use shared::amqp::{self, Outgoing};
    use shared::lapin::options::BasicAckOptions;
    use shared::topology::DeadLetterInfo;
    timeout(TEST_LIMIT, async {
        let h = harness("fleet-reject", 5).await;
        let _w = worker(&h, &["--concurrency", "2"]);
        // A step from a future deployment (wire version 2) that this worker cannot read.
        let body = br#"{"v": 2, "something": "new"}"#.to_vec();
        h.publisher
            .publish(&Outgoing {
                exchange: h.topo.steps_exchange(),
                routing_key: resource_arn("echo"),
                body: body.clone(),
                message_id: None,
            })
            .await
            .expect("publish");
        let (_ch, mut dlq) = amqp::consume(&h.conn, &h.topo.dead_letter_queue(), "dlq", 1)
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
        h.cleanup().await.expect("cleanup");
    })
    .await
    .expect("fleet test timed out");
}

/// Two workers with `args`, each started again whenever it dies (as a deployment would), until
/// the returned sender says stop; the task returns how many restarts it made.
fn keep_two_workers(
    h: &shared::testkit::Harness,
    args: [&'static str; 3],
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<u32>,
) {
    let mut workers = [worker(h, &args), worker(h, &args)];
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let topo = h.topo.clone();
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
