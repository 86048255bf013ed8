//! EXPRESS state machines: StartExecution on one, and StartSyncExecution.
//!
//! An express execution runs like any other (on the fleet: the same coordinators and
//! workers; in embedded mode: in `serve`'s process, in memory only), under AWS's express ARN `…:express:MACHINE:NAME:UUID`, so a name can be used again
//! at once. As on AWS it is not an execution the API shows: DescribeExecution,
//! GetExecutionHistory and StopExecution answer InvalidArn ("Resource type not valid in this
//! context: express", see `store::check_execution_arn`), ListExecutions on an EXPRESS machine
//! StateMachineTypeNotSupported; the fleet keeps its record for the fleet's usual retention.
//! AWS's five-minute limit is the execution's TimeoutSeconds (the definition's own, when
//! shorter): past it the execution ends TIMED_OUT with `States.Timeout`. AWS runs express
//! executions at least once; here it runs once, as every fleet execution does.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value, json};

use coordinator::asl::definition::StateMachine;
use coordinator::asl::parse::parse_definition;
use coordinator::driver::Status;
use coordinator::engine::ExecutionInfo;
use coordinator::engine::context::{LOCAL_ACCOUNT, LOCAL_REGION};

use super::{machine_for, new_execution};
use crate::api::backend::Store;
use crate::api::store::MachineRecord;
use crate::api::wire::{ApiError, Input, epoch};

/// AWS's limit on an express execution's duration.
pub const EXPRESS_LIMIT_SECONDS: u64 = 300;

/// How much longer than the limit StartSyncExecution waits for the fleet to end an
/// execution before it answers TIMED_OUT itself (no coordinator running, say).
const SYNC_GRACE: Duration = Duration::from_secs(30);

pub(super) fn type_not_supported() -> ApiError {
    ApiError::new(
        "StateMachineTypeNotSupported",
        "This operation is not supported by this type of state machine",
    )
}

/// An express execution's ARN: AWS's `express:` resource with a UUID after the name.
pub fn express_arn(machine: &str, name: &str) -> String {
    format!(
        "arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:express:{machine}:{name}:{}",
        uuid::Uuid::new_v4()
    )
}

/// Where an EXPRESS definition uses what express workflows cannot (AWS's
/// `SCHEMA_VALIDATION_FAILED` for them): `.sync` and `.waitForTaskToken` integrations and
/// activities. Walks every Task, in Parallel branches and Map processors too.
pub fn express_problems(definition: &str) -> Vec<String> {
    fn walk(states: &Value, at: &str, out: &mut Vec<String>) {
        let Some(states) = states.as_object() else {
            return;
        };
        for (name, state) in states {
            let here = format!("{at}/States/{name}");
            if let Some(resource) = state.get("Resource").and_then(Value::as_str) {
                let what = if resource.contains(":activity:") {
                    Some("Activity ARN")
                } else if resource.ends_with(".sync") || resource.contains(".sync:") {
                    Some("'.sync' service integration")
                } else if resource.ends_with(".waitForTaskToken") {
                    Some("'.waitForTaskToken' service integration")
                } else {
                    None
                };
                if let Some(what) = what {
                    out.push(format!(
                        "SCHEMA_VALIDATION_FAILED: Express state machine does not support {what} at {here}/Resource"
                    ));
                }
            }
            for key in ["ItemProcessor", "Iterator"] {
                if let Some(p) = state.get(key) {
                    walk(&p["States"], &format!("{here}/{key}"), out);
                }
            }
            if let Some(branches) = state.get("Branches").and_then(Value::as_array) {
                for (i, b) in branches.iter().enumerate() {
                    walk(&b["States"], &format!("{here}/Branches[{i}]"), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_str::<Value>(definition) {
        walk(&v["States"], "", &mut out);
    }
    out
}

/// The checks CreateStateMachine and UpdateStateMachine add for an EXPRESS machine.
pub fn check_express_definition(definition: &str) -> Result<(), ApiError> {
    let problems = express_problems(definition);
    if problems.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        "InvalidDefinition",
        format!(
            "Invalid State Machine Definition: '{}'",
            problems.join("; ")
        ),
    ))
}

/// An express execution of `machine`: its definition with the five-minute limit, and its
/// info under an express ARN.
fn express_execution(
    machine: &MachineRecord,
    input: &Input,
) -> Result<(Arc<StateMachine>, ExecutionInfo), ApiError> {
    let (name, value) = new_execution(input)?;
    let mut def: StateMachine = parse_definition(&machine.definition).map_err(|e| {
        ApiError::internal(format!(
            "the stored definition of {} no longer parses: {e}",
            machine.arn
        ))
    })?;
    def.timeout_seconds = Some(
        def.timeout_seconds
            .map_or(EXPRESS_LIMIT_SECONDS, |t| t.min(EXPRESS_LIMIT_SECONDS)),
    );
    let mut info = ExecutionInfo::new(&machine.name, &name, value, Utc::now());
    info.role_arn = machine.role_arn.clone();
    info.execution_arn = express_arn(&machine.name, &name);
    Ok((Arc::new(def), info))
}

/// StartExecution on an EXPRESS machine: started, not waited for, not listed.
pub(super) async fn start_express(
    store: &Store,
    machine: &MachineRecord,
    input: &Input,
) -> Result<Value, ApiError> {
    let (def, info) = express_execution(machine, input)?;
    store
        .start_unlisted(&machine.definition, def, &info)
        .await?;
    tracing::info!(execution = %info.execution_arn, "express execution started");
    Ok(json!({ "executionArn": info.execution_arn, "startDate": epoch(&info.start_time) }))
}

pub(super) async fn start_sync_execution(store: &Store, input: Input) -> Result<Value, ApiError> {
    let arn = input.required_len("stateMachineArn", 256)?;
    let machine = machine_for(store, arn).await?;
    if machine.kind != "EXPRESS" {
        return Err(type_not_supported());
    }
    let metadata_only = match input.str("includedData")? {
        None | Some("ALL_DATA") => false,
        Some("METADATA_ONLY") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'includedData' failed to satisfy constraint: Member must satisfy enum value set: [ALL_DATA, METADATA_ONLY]"
            )));
        }
    };
    let trace_header = input.str("traceHeader")?;
    let (def, info) = express_execution(&machine, &input)?;
    let exec_arn = info.execution_arn.clone();
    let limit = Duration::from_secs(EXPRESS_LIMIT_SECONDS) + SYNC_GRACE;
    let ended = store
        .run_unlisted(&machine.definition, def, &info, limit)
        .await?;
    let mut o = Map::new();
    o.insert("executionArn".into(), json!(exec_arn));
    o.insert("stateMachineArn".into(), json!(machine.arn));
    o.insert("name".into(), json!(info.name));
    o.insert("startDate".into(), epoch(&info.start_time));
    let (status, stop_date, output, error) = match ended {
        Some(r) => (r.status, r.stop_date, r.output, r.error),
        None => {
            // It did not end in time (on the fleet: no coordinator?), and was stopped, as
            // the limit stops it.
            let cause = format!(
                "The execution did not end within the express limit of {EXPRESS_LIMIT_SECONDS} seconds"
            );
            let e = coordinator::asl::error::StatesError::new("States.Timeout", cause);
            (Status::TimedOut, Utc::now(), None, Some(e))
        }
    };
    // An express execution ends SUCCEEDED, FAILED or TIMED_OUT (a stop from elsewhere reads
    // as FAILED, the nearest of the three).
    let status = match status {
        Status::Succeeded => "SUCCEEDED",
        Status::TimedOut => "TIMED_OUT",
        _ => "FAILED",
    };
    o.insert("stopDate".into(), epoch(&stop_date));
    o.insert("status".into(), json!(status));
    if let Some(e) = &error {
        if !e.error.is_empty() {
            o.insert("error".into(), json!(e.error));
        }
        if !e.cause.is_empty() {
            o.insert("cause".into(), json!(e.cause));
        }
    }
    if !metadata_only {
        o.insert("input".into(), json!(info.input.to_string()));
        o.insert("inputDetails".into(), json!({ "included": true }));
        if let (Some(out), "SUCCEEDED") = (&output, status) {
            o.insert("output".into(), json!(out.to_string()));
            o.insert("outputDetails".into(), json!({ "included": true }));
        }
    }
    if let Some(t) = trace_header {
        o.insert("traceHeader".into(), json!(t));
    }
    // Billed as AWS bills express: in 100 ms steps, at the 64 MB minimum.
    let ms = (stop_date - info.start_time).num_milliseconds().max(1) as u64;
    o.insert(
        "billingDetails".into(),
        json!({
            "billedMemoryUsedInMB": 64,
            "billedDurationInMilliseconds": ms.div_ceil(100) * 100,
        }),
    );
    tracing::info!(execution = %exec_arn, status, "sync execution ended");
    Ok(Value::Object(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn express_arns_carry_the_machine_the_name_and_a_uuid() {
        let a = express_arn("M", "run");
        let parts: Vec<&str> = a.split(':').collect();
        assert_eq!(&parts[5..8], &["express", "M", "run"]);
        assert_eq!(parts[8].len(), 36, "{a}");
        assert_ne!(a, express_arn("M", "run"), "a name can be used again");
        assert!(crate::api::store::check_execution_arn(&a).is_err());
    }

    #[test]
    fn express_definitions_refuse_sync_callbacks_and_activities_wherever_they_are() {
        let def = json!({
            "StartAt": "A",
            "States": {
                "A": {"Type": "Task", "Resource": "arn:aws:states:::activity:x", "Next": "P"},
                "P": {"Type": "Parallel", "End": true, "Branches": [{
                    "StartAt": "S",
                    "States": {"S": {"Type": "Task", "Resource": "arn:aws:states:::ecs:runTask.sync", "End": true}}
                }]},
                "M": {"Type": "Map", "End": true, "ItemProcessor": {
                    "StartAt": "W",
                    "States": {"W": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "End": true}}
                }},
                "Fine": {"Type": "Task", "Resource": "arn:mapfleet:task:::echo", "End": true}
            }
        });
        let p = express_problems(&def.to_string());
        assert_eq!(
            p,
            [
                "SCHEMA_VALIDATION_FAILED: Express state machine does not support Activity ARN at /States/A/Resource",
                "SCHEMA_VALIDATION_FAILED: Express state machine does not support '.sync' service integration at /States/P/Branches[0]/States/S/Resource",
                "SCHEMA_VALIDATION_FAILED: Express state machine does not support '.waitForTaskToken' service integration at /States/M/ItemProcessor/States/W/Resource",
            ]
        );
        assert!(check_express_definition(&def.to_string()).is_err());
        assert!(
            express_problems(r#"{"StartAt":"F","States":{"F":{"Type":"Succeed"}}}"#).is_empty()
        );
    }
}
