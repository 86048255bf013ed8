//! The Redis scripts against a real Redis (127.0.0.1:6379 or `MAPFLEET_REDIS_URL`), each
//! test under its own key prefix.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use shared::messages::StepId;
use shared::redis_schema::{Applied, FleetStore};
use shared::testkit::{redis_url, unique_prefix};

const ARN: &str = "arn:aws:states:local:0:execution:sm:e1";

async fn store(tag: &str) -> FleetStore {
    FleetStore::connect(&redis_url(), &unique_prefix(tag))
        .await
        .expect("redis is running")
}

fn id(cursor: &str, seq: u64, attempt: u32) -> StepId {
    StepId {
        execution: ARN.into(),
        cursor: cursor.into(),
        seq,
        attempt,
    }
}

#[tokio::test]
async fn outcome_applies_exactly_once() {
    let s = store("apply").await;
    // No cursor awaits anything yet: a stray outcome is dropped.
    assert_eq!(
        s.apply_outcome(&id("c", 1, 1), "{}").await.unwrap(),
        Applied::Duplicate
    );
    s.await_step(ARN, "c", 1, 1).await.unwrap();
    assert_eq!(
        s.apply_outcome(&id("c", 1, 2), "{}").await.unwrap(),
        Applied::Duplicate
    );
    assert_eq!(
        s.apply_outcome(&id("c", 1, 1), "\"first\"").await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        s.apply_outcome(&id("c", 1, 1), "\"again\"").await.unwrap(),
        Applied::Duplicate
    );
    let fields = s.cursor_fields(ARN, "c").await.unwrap();
    assert_eq!(fields["phase"], "applied");
    assert_eq!(fields["outcome"], "\"first\"");
    // The cursor moves on: a late outcome of the old step is dropped.
    s.await_step(ARN, "c", 2, 1).await.unwrap();
    assert_eq!(
        s.apply_outcome(&id("c", 1, 1), "{}").await.unwrap(),
        Applied::Duplicate
    );
    assert_eq!(
        s.apply_outcome(&id("c", 2, 1), "{}").await.unwrap(),
        Applied::Applied
    );
    s.delete_prefix().await.unwrap();
}

#[tokio::test]
async fn map_run_init_and_bounds() {
    let s = store("maprun").await;
    assert!(s.init_map_run(ARN, "M", 3).await.unwrap());
    assert!(
        !s.init_map_run(ARN, "M", 3).await.unwrap(),
        "second init is a no-op"
    );
    let err = s
        .store_iteration_result(ARN, "M", 3, "x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("BADINDEX"), "{err}");
    let err = s
        .store_iteration_result(ARN, "nope", 0, "x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NOMAPRUN"), "{err}");
    s.delete_prefix().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_complete_once() {
    let s = store("concurrent").await;
    let n = 300u64;
    s.init_map_run(ARN, "M", n).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for copy in 0..3 {
        for i in 0..n {
            let s = s.clone();
            set.spawn(async move {
                s.store_iteration_result(ARN, "M", i, &format!("{i}-{copy}"))
                    .await
                    .unwrap()
            });
        }
    }
    let mut completions = 0;
    let mut stored = 0;
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        stored += u64::from(r.stored);
        completions += u64::from(r.completed_now());
    }
    assert_eq!(stored, n);
    assert_eq!(completions, 1);
    assert!(s.try_mark_reduced(ARN, "M").await.unwrap());
    assert!(!s.try_mark_reduced(ARN, "M").await.unwrap());
    let results = s.read_results(ARN, "M", n).await.unwrap();
    for (i, r) in results.iter().enumerate() {
        assert!(r.as_deref().unwrap().starts_with(&format!("{i}-")));
    }
    assert_eq!(s.map_meta(ARN, "M").await.unwrap()["status"], "complete");
    s.delete_prefix().await.unwrap();
}

#[tokio::test]
async fn timers_are_claimed_under_a_lease() {
    let s = store("timers").await;
    let now = shared::now_ms();
    s.schedule_timer("due", now - 10).await.unwrap();
    s.schedule_timer("later", now + 60_000).await.unwrap();
    let lease = Duration::from_secs(30);
    let claimed = s.claim_due_timers(now, 10, lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].member, "due");
    assert!(
        s.claim_due_timers(now, 10, lease).await.unwrap().is_empty(),
        "leased"
    );
    // A coordinator that crashed never completes: the timer fires again after the lease.
    let again = s.claim_due_timers(now + 30_001, 10, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(
        !s.complete_timer(&claimed[0]).await.unwrap(),
        "stale lease cannot remove"
    );
    assert!(s.complete_timer(&again[0]).await.unwrap());
    let rest = s.claim_due_timers(now + 60_000, 10, lease).await.unwrap();
    assert_eq!(
        rest.iter().map(|t| t.member.as_str()).collect::<Vec<_>>(),
        ["later"]
    );
    s.delete_prefix().await.unwrap();
}

#[tokio::test]
async fn history_appends_in_order() {
    let s = store("history").await;
    for e in ["a", "b", "c"] {
        s.append_history(ARN, e).await.unwrap();
    }
    assert_eq!(s.history(ARN, 0, -1).await.unwrap(), ["a", "b", "c"]);
    s.delete_prefix().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The iteration store behaves like a map from index to first-stored value whose
    /// `remaining` counts missing indices, and reports completion exactly once.
    #[test]
    fn iteration_store_matches_model(
        total in 1u64..12,
        ops in proptest::collection::vec((0u64..12, 0u8..4), 0..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let s = store("prop").await;
            s.init_map_run(ARN, "M", total).await.unwrap();
            let mut model: HashMap<u64, String> = HashMap::new();
            let mut completions = 0;
            for (i, v) in ops.into_iter().filter(|(i, _)| *i < total) {
                let value = format!("v{v}");
                let got = s.store_iteration_result(ARN, "M", i, &value).await.unwrap();
                let fresh = !model.contains_key(&i);
                if fresh {
                    model.insert(i, value);
                }
                prop_assert_eq!(got.stored, fresh);
                prop_assert_eq!(got.remaining, (total - model.len() as u64) as i64);
                completions += u64::from(got.completed_now());
            }
            prop_assert_eq!(completions, u64::from(model.len() as u64 == total));
            let results = s.read_results(ARN, "M", total).await.unwrap();
            for (i, r) in results.into_iter().enumerate() {
                prop_assert_eq!(r, model.get(&(i as u64)).cloned());
            }
            s.delete_prefix().await.unwrap();
            Ok(())
        })?;
    }
}
