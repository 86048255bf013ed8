//! The timer scripts against a real Redis (127.0.0.1:6379 or `MAPFLEET_REDIS_URL`), under a
//! key prefix of their own. Applying outcomes is `inbox.rs`'s.

use std::time::Duration;

use redis::AsyncCommands;
use shared::redis_schema::FleetStore;
use shared::testkit::{redis_url, unique_prefix};

#[tokio::test]
async fn timers_are_claimed_under_a_lease() {
    let s = FleetStore::connect(&redis_url(), &unique_prefix("timers"))
        .await
        .expect("redis is running");
    let now = shared::now_ms();
    // Scheduled as the coordinators do: a member of the timers set, scored by its due time.
    let mut conn = s.conn();
    let timers = s.keys().timers();
    let _: () = conn.zadd(&timers, "due", now - 10).await.unwrap();
    let _: () = conn.zadd(&timers, "later", now + 60_000).await.unwrap();
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
