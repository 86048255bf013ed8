//! The warning that a step's resource has no live worker, rate-limited.
//!
//! The check runs for every flush of steps, so a fleet whose workers all lapsed at once
//! (a Redis outage stops them renewing their registrations) would warn once per step:
//! a 20 s outage gave 1,240 identical warnings. Each resource is reported at most once per
//! [`EVERY`], with the number of steps seen since, and the message tells a registration that
//! lapsed (its workers stopped renewing: stopped, or cut off from Redis) from a resource no
//! worker has served lately.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time between two warnings about one resource.
const EVERY: Duration = Duration::from_secs(30);

/// Per resource: when it was last reported, and the steps seen since.
static REPORTED: Mutex<Option<HashMap<String, (Instant, u64)>>> = Mutex::new(None);

/// Whether a resource last reported at `at` (if ever) may be reported now.
fn is_due(at: Option<Instant>) -> bool {
    at.is_none_or(|t| t.elapsed() >= EVERY)
}

/// Notes a step published for `resource` while no live worker serves it; `lapsed` when
/// workers serving it lapsed recently.
pub fn report(execution: &str, resource: &str, lapsed: bool) {
    let mut reported = REPORTED.lock().unwrap_or_else(|p| p.into_inner());
    let reported = reported.get_or_insert_with(HashMap::new);
    let last = reported.get(resource).map(|(at, _)| *at);
    let entry = reported
        .entry(resource.to_string())
        .or_insert((Instant::now(), 0));
    entry.1 += 1;
    if !is_due(last) {
        return;
    }
    let steps = std::mem::take(&mut entry.1);
    entry.0 = Instant::now();
    if lapsed {
        tracing::warn!(
            execution,
            resource,
            steps,
            "the workers serving this resource stopped renewing their registration (stopped, or \
             cut off from Redis); its steps wait for them"
        );
    } else {
        tracing::warn!(
            execution,
            resource,
            steps,
            "no live worker serves this resource"
        );
    }
}

/// Whether the next report about `resource` would be logged (for tests).
#[cfg(test)]
fn due(resource: &str) -> bool {
    let reported = REPORTED.lock().unwrap_or_else(|p| p.into_inner());
    is_due(
        reported
            .as_ref()
            .and_then(|r| r.get(resource))
            .map(|(at, _)| *at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_is_reported_once_per_interval() {
        let resource = "arn:mapfleet:task:::rate-limited-test";
        assert!(due(resource));
        for _ in 0..1000 {
            report("arn:x", resource, true);
        }
        assert!(!due(resource));
        let reported = REPORTED.lock().unwrap();
        let (_, steps) = reported.as_ref().unwrap()[resource];
        assert_eq!(
            steps, 999,
            "the steps after the first report are counted for the next"
        );
    }
}
