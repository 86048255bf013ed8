//! 2,000 `echo` steps through 2 worker processes: every outcome applied exactly once and
//! `results[i] == items[i]`.

mod fleet_support;

use std::time::Duration;

use fleet_support::*;
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_echo_steps_through_two_workers() {
    timeout(TEST_LIMIT, async {
        let h = harness("fleet-echo", 5).await;
        let batch = echo_batch(&h, 2000);
        let _w1 = worker(&h, &["--concurrency", "16"]);
        let _w2 = worker(&h, &["--concurrency", "16"]);
        h.submit(&batch).await.expect("submit");
        let report = h
            .collect(&batch, Duration::from_secs(120), None)
            .await
            .expect("collect");
        eprintln!("{report:?}");
        assert_eq!(report.applied, 2000);
        assert_eq!(report.completions, 1);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let results = h.results(&batch).await.expect("results");
        assert_eq!(results, batch.items, "results[i] == items[i]");
        h.cleanup().await.expect("cleanup");
    })
    .await
    .expect("fleet test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_sleep_and_deadlines_come_back_as_outcomes() {
    use serde_json::json;
    use shared::messages::{StepId, StepMessage};
    use worker::task::resource_arn;
    timeout(TEST_LIMIT, async {
        let h = harness("fleet-kinds", 5).await;
        let mut batch = echo_batch(&h, 3);
        batch.resource = resource_arn("fail");
        batch.items = vec![
            json!({"error": "Custom.Error", "cause": "because"}),
            json!({"error": "Other"}),
            json!({}),
        ];
        let _w = worker(&h, &["--concurrency", "4"]);
        h.submit(&batch).await.expect("submit");
        let report = h
            .collect(&batch, Duration::from_secs(60), None)
            .await
            .expect("collect");
        let mut errors: Vec<_> = report
            .errors
            .iter()
            .map(|(i, e, _)| (*i, e.clone()))
            .collect();
        errors.sort();
        assert_eq!(
            errors,
            vec![
                (0, "Custom.Error".into()),
                (1, "Other".into()),
                (2, "Mapfleet.Fail".into())
            ]
        );

        // A sleep past its deadline times out; one within it returns its input.
        let mut sleepy = echo_batch(&h, 2);
        sleepy.map_run = "Sleepy".into();
        sleepy.resource = resource_arn("sleep");
        sleepy.items = vec![json!({"ms": 10}), json!({"ms": 20_000})];
        h.store
            .init_map_run(&sleepy.arn, &sleepy.map_run, 2)
            .await
            .unwrap();
        for i in 0..2 {
            h.store
                .await_step(&sleepy.arn, &sleepy.cursor(i), 1, 1)
                .await
                .unwrap();
            let mut step = StepMessage::new(
                StepId {
                    execution: sleepy.arn.clone(),
                    cursor: sleepy.cursor(i),
                    seq: 1,
                    attempt: 1,
                },
                sleepy.resource.clone(),
                sleepy.items[i].clone(),
            );
            step.deadline_ms = Some(shared::now_ms() + 3_000);
            h.publisher.publish_step(&h.topo, &step).await.unwrap();
        }
        let report = h
            .collect(&sleepy, Duration::from_secs(60), None)
            .await
            .expect("collect");
        assert_eq!(report.errors.len(), 1);
        assert_eq!(
            (report.errors[0].0, report.errors[0].1.as_str()),
            (1, "States.Timeout")
        );
        assert_eq!(h.results(&sleepy).await.unwrap()[0], json!({"ms": 10}));
        h.cleanup().await.expect("cleanup");
    })
    .await
    .expect("fleet test timed out");
}
