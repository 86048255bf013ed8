//! Utility tasks for tests and load: `echo`, `sleep`, `fail`, and (only with test tasks
//! enabled) `crash`.
//!
//! | resource | input | result |
//! |---|---|---|
//! | `arn:mapfleet:task:::echo` | anything | the input |
//! | `arn:mapfleet:task:::sleep` | `{"ms": N, ...}` | the input, after N ms |
//! | `arn:mapfleet:task:::fail` | `{"error": E, "cause": C}` | fails with E / C |
//! | `arn:mapfleet:task:::crash` | anything | aborts the worker process (test tasks only) |
//! | `arn:mapfleet:task:::crash` | `{"survive": true, ...}` | the input (test tasks only) |

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::task::{Registry, Task, TaskFailure};

/// Longest `sleep` accepted: a step past it is a mistake, not a load test.
pub const MAX_SLEEP_MS: u64 = 15 * 60 * 1000;

/// Error name for task input that the task cannot use.
pub const INVALID_INPUT: &str = "Mapfleet.InvalidInput";

/// Registers `echo`, `sleep` and `fail`, and `crash` when `test_tasks` is set.
pub fn register(registry: &mut Registry, test_tasks: bool) {
    registry.register(Arc::new(Echo));
    registry.register(Arc::new(Sleep));
    registry.register(Arc::new(Fail));
    if test_tasks {
        registry.register(Arc::new(Crash));
    }
}

/// Returns its input.
pub struct Echo;

#[async_trait]
impl Task for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        Ok(input)
    }
}

/// Waits `ms` milliseconds (from its input), then returns its input.
pub struct Sleep;

#[async_trait]
impl Task for Sleep {
    fn name(&self) -> &'static str {
        "sleep"
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        let ms = match input.get("ms") {
            None => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                TaskFailure::fatal(
                    INVALID_INPUT,
                    format!("sleep: \"ms\" must be a non-negative integer, got {v}"),
                )
            })?,
        };
        if ms > MAX_SLEEP_MS {
            return Err(TaskFailure::fatal(
                INVALID_INPUT,
                format!("sleep: \"ms\" = {ms} exceeds the maximum {MAX_SLEEP_MS}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(input)
    }
}

/// Fails with the `error` and `cause` of its input.
pub struct Fail;

#[async_trait]
impl Task for Fail {
    fn name(&self) -> &'static str {
        "fail"
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        let text = |key: &str, default: &str| match input.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => default.to_string(),
        };
        Err(TaskFailure::fatal(
            text("error", "Mapfleet.Fail"),
            text("cause", "the fail task always fails"),
        ))
    }
}

/// Aborts the whole worker process, to test a step that kills every worker it reaches (it
/// must be dead-lettered after the delivery limit while the batch goes on). An input with
/// `"survive": true` returns the input instead, so that one Map (one resource) can put a
/// crashing step among steps that complete, in one step batch. Registered only with
/// `--enable-test-tasks`.
pub struct Crash;

#[async_trait]
impl Task for Crash {
    fn name(&self) -> &'static str {
        "crash"
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        if input.get("survive") == Some(&Value::Bool(true)) {
            return Ok(input);
        }
        tracing::error!("crash task: aborting the worker process on purpose");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::resource_arn;
    use serde_json::json;

    #[tokio::test]
    async fn crash_spares_a_surviving_input() {
        let v = json!({"survive": true, "i": 3});
        assert_eq!(Crash.run(v.clone()).await.unwrap(), v);
    }

    #[tokio::test]
    async fn echo_returns_input() {
        let v = json!({"a": [1, "x", null]});
        assert_eq!(Echo.run(v.clone()).await.unwrap(), v);
    }

    #[tokio::test]
    async fn sleep_waits_then_returns_input() {
        let started = tokio::time::Instant::now();
        let v = json!({"ms": 30, "k": 1});
        assert_eq!(Sleep.run(v.clone()).await.unwrap(), v);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(Sleep.run(json!({})).await.unwrap(), json!({}));
        let err = Sleep.run(json!({"ms": "soon"})).await.unwrap_err();
        assert_eq!(err.error, INVALID_INPUT);
        assert!(!err.retryable);
        assert!(Sleep.run(json!({"ms": MAX_SLEEP_MS + 1})).await.is_err());
    }

    #[tokio::test]
    async fn fail_uses_error_and_cause() {
        let err = Fail
            .run(json!({"error": "Custom.Error", "cause": "because"}))
            .await
            .unwrap_err();
        assert_eq!(
            (err.error.as_str(), err.cause.as_str()),
            ("Custom.Error", "because")
        );
        assert!(!err.retryable);
        let err = Fail.run(json!(null)).await.unwrap_err();
        assert_eq!(err.error, "Mapfleet.Fail");
    }

    #[test]
    fn crash_only_with_test_tasks() {
        let mut r = Registry::new();
        register(&mut r, false);
        assert!(r.resolve(&resource_arn("echo")).is_some());
        assert!(r.resolve(&resource_arn("crash")).is_none());
        register(&mut r, true);
        assert!(r.resolve(&resource_arn("crash")).is_some());
    }
}
