//! Execution history with AWS's event types and details.
//!
//! Ids come from the driver's per-execution counter as the engine writes events; each
//! event's `previousEventId` is the previous event of the same cursor, so Map iterations and
//! Parallel branches form chains as in AWS's histories.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The event types mapfleet writes (AWS's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    ExecutionStarted,
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionAborted,
    ExecutionTimedOut,
    StateEntered(StateType),
    StateExited(StateType),
    TaskScheduled,
    TaskStarted,
    TaskSucceeded,
    TaskFailed,
    TaskTimedOut,
    LambdaFunctionScheduled,
    LambdaFunctionStarted,
    LambdaFunctionSucceeded,
    LambdaFunctionFailed,
    LambdaFunctionTimedOut,
    MapStateStarted,
    MapStateSucceeded,
    MapStateFailed,
    MapStateAborted,
    MapIterationStarted,
    MapIterationSucceeded,
    MapIterationFailed,
    MapIterationAborted,
    MapRunStarted,
    MapRunSucceeded,
    MapRunFailed,
    ParallelStateStarted,
    ParallelStateSucceeded,
    ParallelStateFailed,
    ParallelStateAborted,
    WaitStateAborted,
    TaskStateAborted,
}

/// A state type, as the prefix of `...StateEntered` / `...StateExited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateType {
    Pass,
    Task,
    Choice,
    Wait,
    Succeed,
    Fail,
    Parallel,
    Map,
}

impl StateType {
    pub fn of(state: &crate::asl::definition::State) -> StateType {
        use crate::asl::definition::StateKind::*;
        match state.kind {
            Pass { .. } => StateType::Pass,
            Task(_) => StateType::Task,
            Choice { .. } => StateType::Choice,
            Wait(_) => StateType::Wait,
            Succeed => StateType::Succeed,
            Fail { .. } => StateType::Fail,
            Parallel { .. } => StateType::Parallel,
            Map(_) => StateType::Map,
        }
    }
}

impl EventType {
    pub fn name(&self) -> String {
        match self {
            EventType::StateEntered(t) => format!("{t:?}StateEntered"),
            EventType::StateExited(t) => format!("{t:?}StateExited"),
            other => format!("{other:?}"),
        }
    }
}

/// One numbered history event, as stored and served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    pub previous_event_id: u64,
    pub event_type: EventType,
    pub timestamp: DateTime<Utc>,
    /// The details member, e.g. `{"name": ..., "input": ...}`; payloads are JSON values here
    /// and become JSON text when rendered.
    pub details: Value,
    /// The cursor that wrote it, so the console can group a Map iteration's events without
    /// walking `previousEventId` chains.
    pub cursor: String,
}

/// The name of the details member AWS uses for an event type.
fn details_member(t: &EventType) -> Option<&'static str> {
    use EventType::*;
    Some(match t {
        ExecutionStarted => "executionStartedEventDetails",
        ExecutionSucceeded => "executionSucceededEventDetails",
        ExecutionFailed => "executionFailedEventDetails",
        ExecutionAborted => "executionAbortedEventDetails",
        ExecutionTimedOut => "executionTimedOutEventDetails",
        StateEntered(_) => "stateEnteredEventDetails",
        StateExited(_) => "stateExitedEventDetails",
        TaskScheduled => "taskScheduledEventDetails",
        TaskStarted => "taskStartedEventDetails",
        TaskSucceeded => "taskSucceededEventDetails",
        TaskFailed => "taskFailedEventDetails",
        TaskTimedOut => "taskTimedOutEventDetails",
        LambdaFunctionScheduled => "lambdaFunctionScheduledEventDetails",
        LambdaFunctionSucceeded => "lambdaFunctionSucceededEventDetails",
        LambdaFunctionFailed => "lambdaFunctionFailedEventDetails",
        LambdaFunctionTimedOut => "lambdaFunctionTimedOutEventDetails",
        MapStateStarted => "mapStateStartedEventDetails",
        MapIterationStarted => "mapIterationStartedEventDetails",
        MapIterationSucceeded => "mapIterationSucceededEventDetails",
        MapIterationFailed => "mapIterationFailedEventDetails",
        MapIterationAborted => "mapIterationAbortedEventDetails",
        MapRunStarted => "mapRunStartedEventDetails",
        MapRunFailed => "mapRunFailedEventDetails",
        LambdaFunctionStarted
        | MapRunSucceeded
        | MapStateSucceeded
        | MapStateFailed
        | MapStateAborted
        | ParallelStateStarted
        | ParallelStateSucceeded
        | ParallelStateFailed
        | ParallelStateAborted
        | WaitStateAborted
        | TaskStateAborted => return None,
    })
}

/// Payload members rendered as JSON text next to a `...Details: {"truncated": false}`.
const PAYLOADS: &[(&str, &str)] = &[("input", "inputDetails"), ("output", "outputDetails")];

impl Event {
    /// Renders the event as GetExecutionHistory returns it.
    pub fn to_aws_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert(
            "timestamp".into(),
            json!(self.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        obj.insert("type".into(), json!(self.event_type.name()));
        obj.insert("id".into(), json!(self.id));
        obj.insert("previousEventId".into(), json!(self.previous_event_id));
        if let Some(member) = details_member(&self.event_type) {
            let mut details = match &self.details {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            };
            for (payload, detail) in PAYLOADS {
                if let Some(v) = details.get_mut(*payload) {
                    *v = Value::String(v.to_string());
                    details.insert((*detail).to_string(), json!({ "truncated": false }));
                }
            }
            if let Some(v) = details.get_mut("parameters")
                && !v.is_string()
            {
                *v = Value::String(v.to_string());
            }
            obj.insert(member.into(), Value::Object(details));
        }
        Value::Object(obj)
    }
}
