//! `inbox::apply_to_inbox` against a real Redis: an outcome is applied and queued together,
//! exactly once, and only for the step its cursor awaits.

use redis::AsyncCommands;
use shared::inbox::{Delivery, apply_to_inbox};
use shared::messages::StepId;
use shared::redis_schema::{Applied, FleetStore};
use shared::testkit::{redis_url, unique_prefix};

const ARN: &str = "arn:aws:states:local:0:execution:sm:inbox";

fn id(cursor: &str, seq: u64) -> StepId {
    StepId {
        execution: ARN.into(),
        cursor: cursor.into(),
        seq,
        attempt: 1,
    }
}

#[tokio::test]
async fn applied_outcomes_are_queued_once_and_duplicates_are_not() {
    let prefix = unique_prefix("inbox");
    let store = FleetStore::connect(&redis_url(), &prefix)
        .await
        .expect("redis is running");
    let mut conn = store.conn();
    let (inbox, ready) = (
        format!("{prefix}:{{{ARN}}}:inbox"),
        format!("{prefix}:ready"),
    );
    store
        .await_steps(ARN, &[("/0", 3, 1), ("/1", 5, 1)])
        .await
        .unwrap();
    let (a, b, stale) = (id("/0", 3), id("/1", 5), id("/1", 4));
    let batch = [
        Delivery {
            id: &a,
            outcome: "{\"ok\":0}",
            inbox_entry: "entry-0",
        },
        Delivery {
            id: &stale,
            outcome: "{\"ok\":1}",
            inbox_entry: "stale",
        },
        Delivery {
            id: &b,
            outcome: "{\"ok\":1}",
            inbox_entry: "entry-1",
        },
    ];
    let got = apply_to_inbox(&mut conn, store.keys(), 60, &inbox, &ready, &batch)
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Applied::Applied, Applied::Duplicate, Applied::Applied]
    );
    let queued: Vec<String> = conn.lrange(&inbox, 0, -1).await.unwrap();
    assert_eq!(queued, vec!["entry-0", "entry-1"]);
    let flagged: Option<f64> = conn.zscore(&ready, ARN).await.unwrap();
    assert!(flagged.is_some(), "the execution is flagged ready");

    // A redelivery of the same outcomes changes nothing.
    let again = apply_to_inbox(&mut conn, store.keys(), 60, &inbox, &ready, &batch[..1])
        .await
        .unwrap();
    assert_eq!(again, vec![Applied::Duplicate]);
    let queued: Vec<String> = conn.lrange(&inbox, 0, -1).await.unwrap();
    assert_eq!(queued.len(), 2);

    // Outcomes of two executions in one call are refused.
    let other = StepId {
        execution: "arn:other".into(),
        cursor: "/0".into(),
        seq: 1,
        attempt: 1,
    };
    let mixed = [
        Delivery {
            id: &a,
            outcome: "{}",
            inbox_entry: "x",
        },
        Delivery {
            id: &other,
            outcome: "{}",
            inbox_entry: "y",
        },
    ];
    assert!(
        apply_to_inbox(&mut conn, store.keys(), 60, &inbox, &ready, &mixed)
            .await
            .is_err()
    );
    let _: () = conn.del(&[inbox.as_str(), ready.as_str()]).await.unwrap();
    store.delete_prefix().await.unwrap();
}

#[tokio::test]
async fn only_the_awaited_step_of_a_cursor_is_applied() {
    let prefix = unique_prefix("inbox-await");
    let store = FleetStore::connect(&redis_url(), &prefix)
        .await
        .expect("redis is running");
    let mut conn = store.conn();
    let (inbox, ready) = (
        format!("{prefix}:{{{ARN}}}:inbox"),
        format!("{prefix}:ready"),
    );
    let apply = |id: StepId, outcome: &'static str| {
        let (mut conn, store, inbox, ready) =
            (store.conn(), store.clone(), inbox.clone(), ready.clone());
        async move {
            let d = [Delivery {
                id: &id,
                outcome,
                inbox_entry: outcome,
            }];
            apply_to_inbox(&mut conn, store.keys(), 60, &inbox, &ready, &d)
                .await
                .unwrap()[0]
        }
    };
    let attempt = |cursor: &str, seq, attempt| StepId {
        attempt,
        ..id(cursor, seq)
    };
    // No cursor awaits anything yet: a stray outcome is dropped.
    assert_eq!(apply(id("c", 1), "stray").await, Applied::Duplicate);
    store.await_steps(ARN, &[("c", 1, 1)]).await.unwrap();
    // Another attempt of the awaited step is not the awaited step.
    assert_eq!(
        apply(attempt("c", 1, 2), "other attempt").await,
        Applied::Duplicate
    );
    assert_eq!(apply(id("c", 1), "first").await, Applied::Applied);
    assert_eq!(apply(id("c", 1), "again").await, Applied::Duplicate);
    let fields: std::collections::HashMap<String, String> =
        conn.hgetall(store.keys().cursor(ARN, "c")).await.unwrap();
    assert_eq!(fields["phase"], "applied");
    assert_eq!(fields["outcome"], "first");
    // The cursor moves on: a late outcome of the old step is dropped.
    store.await_steps(ARN, &[("c", 2, 1)]).await.unwrap();
    assert_eq!(apply(id("c", 1), "late").await, Applied::Duplicate);
    assert_eq!(apply(id("c", 2), "second").await, Applied::Applied);
    let queued: Vec<String> = conn.lrange(&inbox, 0, -1).await.unwrap();
    assert_eq!(queued, vec!["first", "second"]);
    let _: () = conn.del(&[inbox.as_str(), ready.as_str()]).await.unwrap();
    store.delete_prefix().await.unwrap();
}
