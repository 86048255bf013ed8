//! Execution history with AWS's event types and details.
//!
//! Ids come from the driver's per-execution counter as the engine writes events; each
//! event's `previousEventId` is the previous event of the same cursor, so Map iterations and
//! Parallel branches form chains as in AWS's histories.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A JSON object of the given members, moved in. Event details and the context object are
/// built with this rather than `json!`, which would copy a `&Value` member by serializing it
/// (several times a clone's cost, on every state of every Map item).
pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// The event types mapfleet writes (AWS's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    ExecutionStarted,
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionAborted,
    ExecutionTimedOut,
    /// A redrive resumed the execution (`RedriveExecution`): `{redriveCount}`.
    ExecutionRedriven,
    StateEntered(StateType),
    StateExited(StateType),
    TaskScheduled,
    TaskStarted,
    /// A `.waitForTaskToken` Task's integration returned; the state waits for its token's
    /// answer: `{resourceType, resource, output}`.
    TaskSubmitted,
    TaskSucceeded,
    TaskFailed,
    TaskTimedOut,
    /// A Task state's step for an activity (`arn:aws:states:R:A:activity:NAME`) was queued
    /// for the activity's workers: `{resource, input, timeoutInSeconds, heartbeatInSeconds}`.
    ActivityScheduled,
    /// A worker took the activity task (GetActivityTask): `{workerName}`.
    ActivityStarted,
    ActivitySucceeded,
    ActivityFailed,
    ActivityTimedOut,
    /// The activity task failed before any worker took it (the activity does not exist,
    /// the step was dead-lettered).
    ActivityScheduleFailed,
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
    /// A redriven execution started its Distributed Map's run again (the same map run ARN):
    /// `{mapRunArn, redriveCount}`.
    MapRunRedriven,
    ParallelStateStarted,
    ParallelStateSucceeded,
    ParallelStateFailed,
    ParallelStateAborted,
    WaitStateAborted,
    TaskStateAborted,
    /// A JSONata expression of a state failed (`States.QueryEvaluationError`), written
    /// before the state's failure events.
    EvaluationFailed,
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
        ExecutionRedriven => "executionRedrivenEventDetails",
        StateEntered(_) => "stateEnteredEventDetails",
        StateExited(_) => "stateExitedEventDetails",
        TaskScheduled => "taskScheduledEventDetails",
        TaskStarted => "taskStartedEventDetails",
        TaskSubmitted => "taskSubmittedEventDetails",
        TaskSucceeded => "taskSucceededEventDetails",
        TaskFailed => "taskFailedEventDetails",
        TaskTimedOut => "taskTimedOutEventDetails",
        ActivityScheduled => "activityScheduledEventDetails",
        ActivityStarted => "activityStartedEventDetails",
        ActivitySucceeded => "activitySucceededEventDetails",
        ActivityFailed => "activityFailedEventDetails",
        ActivityTimedOut => "activityTimedOutEventDetails",
        ActivityScheduleFailed => "activityScheduleFailedEventDetails",
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
        MapRunRedriven => "mapRunRedrivenEventDetails",
        EvaluationFailed => "evaluationFailedEventDetails",
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
            // AWS renders each assigned variable's value as JSON text.
            if let Some(Value::Object(vars)) = details.get_mut("assignedVariables") {
                for v in vars.values_mut() {
                    *v = Value::String(v.to_string());
                }
                details.insert(
                    "assignedVariablesDetails".into(),
                    json!({ "truncated": false }),
                );
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

/// How a history breaks the exactly-once invariant of a Map over `n` items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExactlyOnceViolation {
    #[error("{count} event ids appear more than once, e.g. {examples:?}")]
    DuplicateEventIds { count: usize, examples: Vec<u64> },
    #[error("an iteration event without a valid index (of {items} items): event {id}")]
    BadIndex { id: u64, items: usize },
    #[error("iterations not {what} exactly once (index, times): {wrong:?}")]
    Iterations {
        what: &'static str,
        wrong: Vec<(usize, u32)>,
    },
}

/// Checks the history of an execution with one Map over `items` items: every event id
/// unique, and every iteration started exactly once and succeeded exactly once. The check
/// the fleet's fault tests and the load test make after a run.
pub fn check_exactly_once(events: &[Event], items: usize) -> Result<(), ExactlyOnceViolation> {
    let mut ids = std::collections::HashSet::with_capacity(events.len());
    let twice: Vec<u64> = events
        .iter()
        .filter(|e| !ids.insert(e.id))
        .map(|e| e.id)
        .collect();
    if !twice.is_empty() {
        return Err(ExactlyOnceViolation::DuplicateEventIds {
            count: twice.len(),
            examples: twice.into_iter().take(10).collect(),
        });
    }
    for (kind, what) in [
        (EventType::MapIterationStarted, "started"),
        (EventType::MapIterationSucceeded, "succeeded"),
    ] {
        let mut seen = vec![0u32; items];
        for e in events.iter().filter(|e| e.event_type == kind) {
            let index = e.details["index"]
                .as_u64()
                .map(|i| i as usize)
                .filter(|&i| i < items)
                .ok_or(ExactlyOnceViolation::BadIndex { id: e.id, items })?;
            seen[index] += 1;
        }
        let wrong: Vec<(usize, u32)> = seen
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, c)| *c != 1)
            .take(10)
            .collect();
        if !wrong.is_empty() {
            return Err(ExactlyOnceViolation::Iterations { what, wrong });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, event_type: EventType, index: Option<u64>) -> Event {
        Event {
            id,
            previous_event_id: id.saturating_sub(1),
            event_type,
            timestamp: DateTime::<Utc>::UNIX_EPOCH,
            details: index.map_or(Value::Null, |i| json!({ "index": i })),
            cursor: String::new(),
        }
    }

    #[test]
    fn exactly_once_catches_duplicate_ids_and_iterations() {
        let clean = vec![
            event(1, EventType::MapIterationStarted, Some(0)),
            event(2, EventType::MapIterationStarted, Some(1)),
            event(3, EventType::MapIterationSucceeded, Some(1)),
            event(4, EventType::MapIterationSucceeded, Some(0)),
        ];
        assert_eq!(check_exactly_once(&clean, 2), Ok(()));
        let mut twice = clean.clone();
        twice.push(event(5, EventType::MapIterationSucceeded, Some(0)));
        assert!(matches!(
            check_exactly_once(&twice, 2),
            Err(ExactlyOnceViolation::Iterations {
                what: "succeeded",
                ..
            })
        ));
        let mut same_id = clean.clone();
        same_id[3].id = 3;
        assert!(matches!(
            check_exactly_once(&same_id, 2),
            Err(ExactlyOnceViolation::DuplicateEventIds { count: 1, .. })
        ));
        assert!(matches!(
            check_exactly_once(&clean, 3),
            Err(ExactlyOnceViolation::Iterations {
                what: "started",
                ..
            })
        ));
        assert!(matches!(
            check_exactly_once(&clean, 1),
            Err(ExactlyOnceViolation::BadIndex { .. })
        ));
    }
}
