//! The one way a task is run and its end is named, for the fleet's consumer and for embedded
//! mode alike, so that a definition behaves the same in both: the same error names, the same
//! causes, the same catchability.
//!
//! | how the task ended            | [`TaskEnd`]          | error name (catalogue: [`names`]) |
//! |-------------------------------|----------------------|-----------------------------------|
//! | returned a result             | `Succeeded`          |                                   |
//! | failed definitively           | `Failed`             | the task's own (`TaskFailure`)     |
//! | failed transiently            | `Retry`              | redelivered; after the delivery limit `Mapfleet.StepDeadLettered` |
//! | passed its deadline           | `Failed`             | `States.Timeout` (catchable)       |
//! | panicked                      | `Failed`             | `States.TaskFailed` (catchable)    |
//! | no task serves the resource   | `Failed`             | `States.Runtime` (never caught)    |

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use mapfleet_engine::asl::error::{StatesError, names};
use serde_json::Value;

use crate::task::{Registry, TaskFailure};

/// How one run of a task ended.
#[derive(Debug)]
pub enum TaskEnd {
    /// The task's result: the step's outcome.
    Succeeded(Value),
    /// A definitive failure: the step's outcome.
    Failed(StatesError),
    /// A transient failure (a broker, store or network that failed): the step is handed
    /// back and runs again after [`retry_backoff`], up to the delivery limit.
    Retry(TaskFailure),
}

/// Runs the task serving `resource` on `input` within `budget` (the time left before the
/// step's deadline; `None`: no deadline). Never panics: a panicking task is a failure.
pub async fn run_task(
    registry: &Registry,
    resource: &str,
    input: Value,
    budget: Option<Duration>,
) -> TaskEnd {
    let Some(task) = registry.resolve(resource) else {
        let served: Vec<&str> = registry.resources().collect();
        return TaskEnd::Failed(StatesError::unserved(resource, &served));
    };
    let m = shared::metrics::get();
    let name = task.name();
    if budget.is_some_and(|b| b.is_zero()) {
        m.task_duration
            .with_label_values(&[name, "timeout"])
            .observe(0.0);
        return TaskEnd::Failed(timed_out(name, "before the task started"));
    }
    m.tasks_in_flight.inc();
    let started = Instant::now();
    let run = AssertUnwindSafe(task.run(input)).catch_unwind();
    let ran = match budget {
        Some(budget) => tokio::time::timeout(budget, run).await.ok(),
        None => Some(run.await),
    };
    m.tasks_in_flight.dec();
    let (label, end) = match ran {
        None => (
            "timeout",
            TaskEnd::Failed(timed_out(name, "while the task ran")),
        ),
        Some(Ok(Ok(output))) => ("ok", TaskEnd::Succeeded(output)),
        Some(Ok(Err(failure))) if failure.retryable => ("retry", TaskEnd::Retry(failure)),
        Some(Ok(Err(failure))) => (
            "error",
            TaskEnd::Failed(StatesError::new(failure.error, failure.cause)),
        ),
        Some(Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(task = name, panic = %msg, "task panicked");
            (
                "error",
                TaskEnd::Failed(StatesError::task_panicked(name, &msg)),
            )
        }
    };
    m.task_duration
        .with_label_values(&[name, label])
        .observe(started.elapsed().as_secs_f64());
    end
}

/// How long to wait before a transiently failed step runs again, after `redeliveries`
/// earlier deliveries: 250 ms doubling, at most 10 s, so a flapping dependency is not
/// hammered.
pub fn retry_backoff(redeliveries: u32) -> Duration {
    Duration::from_millis(250u64 << redeliveries.min(5)).min(Duration::from_secs(10))
}

fn timed_out(task: &str, when: &str) -> StatesError {
    StatesError::new(
        names::TIMEOUT,
        format!("The task {task} did not complete before the step's deadline (it passed {when})."),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::task::Task;

    struct Panics;
    #[async_trait::async_trait]
    impl Task for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }
        async fn run(&self, _: Value) -> Result<Value, TaskFailure> {
            panic!("boom")
        }
    }

    struct Slow;
    #[async_trait::async_trait]
    impl Task for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(input)
        }
    }

    struct Flaps;
    #[async_trait::async_trait]
    impl Task for Flaps {
        fn name(&self) -> &'static str {
            "flaps"
        }
        async fn run(&self, _: Value) -> Result<Value, TaskFailure> {
            Err(TaskFailure::retryable("Unavailable", "the store is down"))
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::new();
        r.register(Arc::new(Panics));
        r.register(Arc::new(Slow));
        r.register(Arc::new(Flaps));
        r.register(Arc::new(crate::builtin::Echo));
        r
    }

    fn failed(end: TaskEnd) -> StatesError {
        match end {
            TaskEnd::Failed(e) => e,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn each_ending_has_its_catalogued_name() {
        let r = registry();
        let arn = crate::task::resource_arn;
        match run_task(&r, &arn("echo"), json!({"a": 1}), None).await {
            TaskEnd::Succeeded(v) => assert_eq!(v, json!({"a": 1})),
            other => panic!("echo: {other:?}"),
        }
        let e = failed(run_task(&r, &arn("panics"), json!(null), None).await);
        assert_eq!(e.error, names::TASK_FAILED);
        assert!(e.cause.contains("boom"), "{}", e.cause);
        let e = failed(run_task(&r, &arn("nobody"), json!(null), None).await);
        assert_eq!(e.error, names::RUNTIME);
        assert!(e.cause.contains(&arn("nobody")), "{}", e.cause);
        assert!(matches!(
            run_task(&r, &arn("flaps"), json!(null), None).await,
            TaskEnd::Retry(f) if f.retryable
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_enforced_before_and_while_running() {
        let r = registry();
        let slow = crate::task::resource_arn("slow");
        let e = failed(run_task(&r, &slow, json!(null), Some(Duration::from_secs(1))).await);
        assert_eq!(e.error, names::TIMEOUT);
        assert!(e.cause.contains("while the task ran"), "{}", e.cause);
        let e = failed(run_task(&r, &slow, json!(null), Some(Duration::ZERO)).await);
        assert_eq!(e.error, names::TIMEOUT);
        assert!(e.cause.contains("before the task started"), "{}", e.cause);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(retry_backoff(0), Duration::from_millis(250));
        assert_eq!(retry_backoff(1), Duration::from_millis(500));
        assert_eq!(retry_backoff(30), Duration::from_secs(8));
    }
}
