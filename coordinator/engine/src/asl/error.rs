//! ASL error names and the runtime error value that flows through Retry/Catch.

use std::fmt;

/// An error raised while running a state: an error name (`States.Runtime`, a task's custom
/// error, ...) and a human-readable cause. This is what Retry and Catch match on and what
/// `{"Error", "Cause"}` in a Catch's ResultPath holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatesError {
    pub error: String,
    pub cause: String,
}

impl StatesError {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }

    /// `States.Runtime`: an invalid path, a bad value for a `...Path` field, ...
    /// Never caught by `States.ALL`.
    pub fn runtime(cause: impl Into<String>) -> Self {
        Self::new(names::RUNTIME, cause)
    }

    /// `States.IntrinsicFailure`: an intrinsic function failed on its arguments.
    pub fn intrinsic(cause: impl Into<String>) -> Self {
        Self::new(names::INTRINSIC_FAILURE, cause)
    }

    /// `States.DataLimitExceeded`: a payload over the 256 KiB limit.
    pub fn data_limit(cause: impl Into<String>) -> Self {
        Self::new(names::DATA_LIMIT_EXCEEDED, cause)
    }

    /// `States.TaskFailed` for a task that panicked (crashed) instead of returning.
    pub fn task_panicked(task: &str, message: &str) -> Self {
        Self::new(
            names::TASK_FAILED,
            format!("The task {task} panicked: {message}"),
        )
    }

    /// `Mapfleet.StepDeadLettered`: a step whose worker failed on every delivery allowed
    /// (`detail` says where: the broker's reason and queue, or embedded mode).
    pub fn dead_lettered(resource: &str, detail: &str, deliveries: u32) -> Self {
        Self::new(
            names::STEP_DEAD_LETTERED,
            format!(
                "The step for resource '{resource}' was dead-lettered ({detail}): its worker failed on \
                 every one of the {deliveries} deliveries allowed."
            ),
        )
    }

    /// A Task whose resource nothing serves: `States.Runtime`, so no Catch swallows a
    /// misconfiguration and the execution fails instead of waiting forever. The same error
    /// in embedded mode, for a step no live worker of the fleet serves, and for a step that
    /// reached a worker which does not serve it.
    pub fn unserved(resource: &str, served: &[impl AsRef<str>]) -> Self {
        let served = if served.is_empty() {
            "none".to_string()
        } else {
            served
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Self::runtime(format!(
            "No worker serves the resource '{resource}'. Resources served here: {served}. \
             Replace the ARN with one of them (see `mapfleet resources`) or run a worker that serves it."
        ))
    }
}

impl fmt::Display for StatesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.cause)
    }
}

impl std::error::Error for StatesError {}

/// Every error name mapfleet raises: the predefined names of the States language, then the
/// few of mapfleet's own (`Mapfleet.*`), so a definition's Retry/Catch can name them. One
/// catalogue for the engine, the coordinator, the worker and embedded mode.
pub mod names {
    pub const ALL: &str = "States.ALL";
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    pub const TIMEOUT: &str = "States.Timeout";
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const PERMISSIONS: &str = "States.Permissions";
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    pub const QUERY_EVALUATION_ERROR: &str = "States.QueryEvaluationError";
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
    pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
    pub const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";
    pub const RUNTIME: &str = "States.Runtime";
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";

    /// Every `States.*` name a definition may use in `ErrorEquals`.
    pub const PREDEFINED: &[&str] = &[
        ALL,
        HEARTBEAT_TIMEOUT,
        TIMEOUT,
        TASK_FAILED,
        PERMISSIONS,
        RESULT_PATH_MATCH_FAILURE,
        PARAMETER_PATH_FAILURE,
        QUERY_EVALUATION_ERROR,
        BRANCH_FAILED,
        NO_CHOICE_MATCHED,
        INTRINSIC_FAILURE,
        EXCEED_TOLERATED_FAILURE_THRESHOLD,
        ITEM_READER_FAILED,
        RESULT_WRITER_FAILED,
        RUNTIME,
        DATA_LIMIT_EXCEEDED,
    ];

    /// A step the broker gave up on: its worker failed on every delivery allowed (on the
    /// fleet, dead-lettered; in embedded mode, a transient failure on every attempt).
    pub const STEP_DEAD_LETTERED: &str = "Mapfleet.StepDeadLettered";
    /// A utility task's input that is not what it takes.
    pub const INVALID_INPUT: &str = "Mapfleet.InvalidInput";
    /// The default error of the `fail` utility task.
    pub const FAIL: &str = "Mapfleet.Fail";
}
