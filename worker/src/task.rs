//! What a task is, and how a resource ARN finds the task that serves it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// The prefix of every resource a mapfleet worker serves: `arn:mapfleet:task:::NAME`.
pub const RESOURCE_PREFIX: &str = "arn:mapfleet:task:::";

/// The full resource ARN of a task name.
pub fn resource_arn(name: &str) -> String {
    format!("{RESOURCE_PREFIX}{name}")
}

/// A task that failed: the error name Retry/Catch match on, and its cause (for the photo
/// tasks, Lambda's `{"errorMessage", "errorType"}` as JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub error: String,
    pub cause: String,
    /// A transient infrastructure failure (broker, store, network) worth redelivering the
    /// step for, as opposed to a definitive task error that becomes the step's outcome.
    pub retryable: bool,
}

impl TaskFailure {
    /// A definitive task error: becomes the step's outcome.
    pub fn fatal(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
            retryable: false,
        }
    }

    /// A Lambda-shaped error: the cause is `{"errorMessage", "errorType"}` as JSON text.
    pub fn lambda(error_type: &str, message: &str) -> Self {
        let cause = serde_json::json!({ "errorMessage": message, "errorType": error_type });
        Self::fatal(error_type, cause.to_string())
    }

    /// A transient failure: the step should be redelivered rather than failed.
    pub fn retryable(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
            retryable: true,
        }
    }
}

/// One kind of work a worker can do. Implementations are stateless between calls; anything
/// they keep (model sessions, caches) must be safe to lose.
#[async_trait::async_trait]
pub trait Task: Send + Sync {
    /// The short name, e.g. `echo` or `face-detection` (the resource is `arn:mapfleet:task:::NAME`).
    fn name(&self) -> &'static str;

    /// Runs the task on its effective input and returns its result.
    async fn run(&self, input: Value) -> Result<Value, TaskFailure>;
}

/// The tasks a worker serves, by resource ARN.
#[derive(Clone, Default)]
pub struct Registry {
    tasks: BTreeMap<String, Arc<dyn Task>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, task: Arc<dyn Task>) {
        self.tasks.insert(resource_arn(task.name()), task);
    }

    pub fn resolve(&self, resource: &str) -> Option<Arc<dyn Task>> {
        self.tasks.get(resource).cloned()
    }

    /// Every resource ARN served, sorted.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.tasks.keys().map(String::as_str)
    }
}
