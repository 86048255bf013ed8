//! The operations: botocore's request members in, its response shapes out. The later
//! groups have a file each: [`activities`] (their own dispatch, since they need the
//! fleet's broker), [`machines`] (UpdateStateMachine,
//! DescribeStateMachineForExecution), [`map_runs`] (ListMapRuns, DescribeMapRun,
//! UpdateMapRun, ListExecutions with `mapRunArn`), [`tags`], [`sync`] (EXPRESS machines:
//! StartExecution on one, StartSyncExecution), [`test_state`] (TestState).

pub mod activities;
mod machines;
mod map_runs;
pub mod sync;
mod tags;
pub mod test_state;

use chrono::Utc;
use serde_json::{Map, Value, json};

use coordinator::asl::parse::{
    InvalidDefinition, MAX_DEFINITION_BYTES, Severity, parse_definition,
};
use coordinator::driver::Status;
use coordinator::engine::ExecutionInfo;

use super::backend::Store;
use super::store::{MachineRecord, check_execution_arn, machine_arn, machine_name};
use super::wire::{
    ApiError, DEFAULT_PAGE, Input, MAX_PAGE, check_len, encode_token, epoch, epoch_ms,
};

/// Step Functions' limit on an execution's input and output.
const MAX_PAYLOAD: usize = 262_144;

/// The operations this server answers.
pub const IMPLEMENTED: &[&str] = &[
    "UpdateStateMachine",
    "DescribeStateMachineForExecution",
    "ListMapRuns",
    "DescribeMapRun",
    "UpdateMapRun",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
    "CreateStateMachine",
    "DescribeStateMachine",
    "ListStateMachines",
    "DeleteStateMachine",
    "ValidateStateMachineDefinition",
    "StartExecution",
    "DescribeExecution",
    "ListExecutions",
    "GetExecutionHistory",
    "StopExecution",
    "RedriveExecution",
    "StartSyncExecution",
    "TestState",
];

/// Runs one operation.
pub async fn call(store: &Store, operation: &str, input: Input) -> Result<Value, ApiError> {
    match operation {
        "UpdateStateMachine" => machines::update_state_machine(store, input).await,
        "DescribeStateMachineForExecution" => {
            machines::describe_state_machine_for_execution(store, input).await
        }
        "ListMapRuns" => map_runs::list_map_runs(store, input).await,
        "DescribeMapRun" => map_runs::describe_map_run(store, input).await,
        "UpdateMapRun" => map_runs::update_map_run(store, input).await,
        "TagResource" => tags::tag_resource(store, input).await,
        "UntagResource" => tags::untag_resource(store, input).await,
        "ListTagsForResource" => tags::list_tags_for_resource(store, input).await,
        "CreateStateMachine" => create_state_machine(store, input).await,
        "DescribeStateMachine" => describe_state_machine(store, input).await,
        "ListStateMachines" => list_state_machines(store, input).await,
        "DeleteStateMachine" => delete_state_machine(store, input).await,
        "ValidateStateMachineDefinition" => validate_definition(input),
        "StartExecution" => start_execution(store, input).await,
        "DescribeExecution" => describe_execution(store, input).await,
        "ListExecutions" => list_executions(store, input).await,
        "GetExecutionHistory" => get_execution_history(store, input).await,
        "StopExecution" => stop_execution(store, input).await,
        "RedriveExecution" => super::redrive::redrive_execution(store, input).await,
        "StartSyncExecution" => sync::start_sync_execution(store, input).await,
        "TestState" => test_state::test_state(store, input).await,
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!(
                "mapfleet does not implement the operation '{other}' yet; it serves: {}",
                IMPLEMENTED
                    .iter()
                    .chain(activities::OPERATIONS)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn invalid_definition(e: &InvalidDefinition) -> ApiError {
    let text: Vec<String> = e.0.iter().map(|d| d.to_string()).collect();
    ApiError::new(
        "InvalidDefinition",
        format!("Invalid State Machine Definition: '{}'", text.join("; ")),
    )
}

fn invalid_name(name: &str) -> ApiError {
    ApiError::new("InvalidName", format!("Invalid Name: '{name}'"))
}

fn check_type(kind: Option<&str>) -> Result<String, ApiError> {
    match kind.unwrap_or("STANDARD") {
        "STANDARD" => Ok("STANDARD".into()),
        "EXPRESS" => Ok("EXPRESS".into()),
        other => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{other}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]"
        ))),
    }
}

async fn create_state_machine(store: &Store, input: Input) -> Result<Value, ApiError> {
    let name = input.required("name")?;
    crate::cli::check_name(name).map_err(|_| invalid_name(name))?;
    let definition = input.required_len("definition", MAX_DEFINITION_BYTES)?;
    let role_arn = input.required_len("roleArn", 256)?;
    if !role_arn.starts_with("arn:") {
        return Err(ApiError::new(
            "InvalidArn",
            format!("Invalid Arn: 'Invalid ARN prefix: {role_arn}'"),
        ));
    }
    let kind = check_type(input.str("type")?)?;
    if kind == "EXPRESS" && store.fleet().is_none() {
        return Err(ApiError::validation(
            "EXPRESS state machines run on the fleet only for now: start mapfleet serve with --redis",
        ));
    }
    refuse_publish(&input)?;
    let tags = tags::request_tags(&input)?;
    tags::check_count(&tags, &machine_arn(name))?;
    parse_definition(definition).map_err(|e| invalid_definition(&e))?;
    if kind == "EXPRESS" {
        sync::check_express_definition(definition)?;
    }
    let record = MachineRecord {
        name: name.to_string(),
        arn: machine_arn(name),
        definition: definition.to_string(),
        role_arn: role_arn.to_string(),
        kind,
        creation_ms: Utc::now().timestamp_millis(),
        logging: input.0.get("loggingConfiguration").cloned(),
        tracing: input.0.get("tracingConfiguration").cloned(),
        update_ms: None,
        revision_id: None,
    };
    let stored = store.create_machine(&record).await?;
    if !stored.same_request(&record) {
        return Err(ApiError::new(
            "StateMachineAlreadyExists",
            format!("State Machine Already Exists: '{}'", stored.arn),
        ));
    }
    if stored == record {
        // Created by this call (a repeat ignores the tags, as AWS does).
        tags::tag_created(store, name, &stored.arn, &tags).await?;
    }
    tracing::info!(state_machine = %stored.arn, "state machine created");
    Ok(json!({
        "stateMachineArn": stored.arn,
        "creationDate": epoch_ms(stored.creation_ms),
    }))
}

/// Versions and aliases are not there yet: `publish` is refused, in AWS's form.
fn refuse_publish(input: &Input) -> Result<(), ApiError> {
    if input.bool("publish")? {
        return Err(ApiError::validation(
            "mapfleet does not publish state machine versions yet: versions and aliases are not \
             supported (publish must be false)",
        ));
    }
    if input.str("versionDescription")?.is_some() {
        return Err(ApiError::validation(
            "Version description can only be set when publish is true",
        ));
    }
    Ok(())
}

async fn machine_for(store: &Store, arn: &str) -> Result<MachineRecord, ApiError> {
    let name = machine_name(arn)?;
    store
        .machine(name)
        .await?
        .ok_or_else(|| ApiError::machine_missing(arn))
}

async fn describe_state_machine(store: &Store, input: Input) -> Result<Value, ApiError> {
    let arn = input.required_len("stateMachineArn", 256)?;
    let m = machine_for(store, arn).await?;
    let mut out = json!({
        "stateMachineArn": m.arn,
        "name": m.name,
        "status": "ACTIVE",
        "definition": m.definition,
        "roleArn": m.role_arn,
        "type": m.kind,
        "creationDate": epoch_ms(m.creation_ms),
        "loggingConfiguration": m.logging.clone().unwrap_or_else(|| json!({"level": "OFF", "includeExecutionData": false})),
        "tracingConfiguration": m.tracing.clone().unwrap_or_else(|| json!({"enabled": false})),
    });
    if let Some(r) = &m.revision_id {
        out["revisionId"] = json!(r);
    }
    Ok(out)
}

async fn list_state_machines(store: &Store, input: Input) -> Result<Value, ApiError> {
    let max = input.max_results(MAX_PAGE, DEFAULT_PAGE)?;
    let after = input.token("machines")?;
    let all = store.machines().await?;
    let page: Vec<&MachineRecord> = all
        .iter()
        .filter(|m| after.as_deref().is_none_or(|a| m.name.as_str() > a))
        .take(max + 1)
        .collect();
    let more = page.len() > max;
    let page = &page[..page.len().min(max)];
    let mut out = json!({
        "stateMachines": page.iter().map(|m| json!({
            "stateMachineArn": m.arn,
            "name": m.name,
            "type": m.kind,
            "creationDate": epoch_ms(m.creation_ms),
        })).collect::<Vec<_>>(),
    });
    if more && let Some(last) = page.last() {
        out["nextToken"] = json!(encode_token("machines", &last.name));
    }
    Ok(out)
}

async fn delete_state_machine(store: &Store, input: Input) -> Result<Value, ApiError> {
    let arn = input.required_len("stateMachineArn", 256)?;
    let name = machine_name(arn)?;
    // An unknown machine is not an error (AWS answers 200 too). Its executions stay
    // describable by ARN; running ones run to their end.
    store.delete_machine(name).await?;
    tracing::info!(state_machine = %arn, "state machine deleted");
    Ok(json!({}))
}

fn validate_definition(input: Input) -> Result<Value, ApiError> {
    let definition = input.required_len("definition", MAX_DEFINITION_BYTES)?;
    if let Some(kind) = input.str("type")? {
        // Validated as STANDARD either way; the type is only checked for its values.
        if kind != "STANDARD" && kind != "EXPRESS" {
            check_type(Some(kind))?;
        }
    }
    let warnings = match input.str("severity")? {
        None | Some("ERROR") => false,
        Some("WARNING") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'severity' failed to satisfy constraint: Member must satisfy enum value set: [ERROR, WARNING]"
            )));
        }
    };
    let max = input.max_results(100, 100)?;
    let diagnostics = match parse_definition(definition) {
        Ok(_) => Vec::new(),
        Err(InvalidDefinition(d)) => d,
    };
    let failed = diagnostics.iter().any(|d| d.severity == Severity::Error);
    let shown: Vec<Value> = diagnostics
        .iter()
        .filter(|d| warnings || d.severity == Severity::Error)
        .map(|d| {
            let mut o = Map::new();
            o.insert(
                "severity".into(),
                json!(match d.severity {
                    Severity::Error => "ERROR",
                    Severity::Warning => "WARNING",
                }),
            );
            o.insert("code".into(), json!(d.code));
            o.insert("message".into(), json!(d.message));
            if let Some(l) = &d.location {
                o.insert("location".into(), json!(l));
            }
            Value::Object(o)
        })
        .collect();
    let truncated = shown.len() > max;
    Ok(json!({
        "result": if failed { "FAIL" } else { "OK" },
        "diagnostics": shown.into_iter().take(max).collect::<Vec<_>>(),
        "truncated": truncated,
    }))
}

/// A new execution's `name` (a UUID when absent) and `input` (`{}` when absent), checked.
fn new_execution(input: &Input) -> Result<(String, Value), ApiError> {
    let name = match input.str("name")? {
        Some(n) => n.to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    crate::cli::check_name(&name).map_err(|_| invalid_name(&name))?;
    let value = json_input(input, "input")?;
    Ok((name, value))
}

/// A JSON text member within the payload limit (`{}` when absent); InvalidExecutionInput
/// when it is not JSON.
fn json_input(input: &Input, member: &str) -> Result<Value, ApiError> {
    let text = input.str(member)?.unwrap_or("{}");
    if text.len() > MAX_PAYLOAD {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have length less than or equal to {MAX_PAYLOAD}"
        )));
    }
    serde_json::from_str(text).map_err(|e| {
        ApiError::new(
            "InvalidExecutionInput",
            format!("Invalid State Machine Execution Input: '{e}'"),
        )
    })
}

async fn start_execution(store: &Store, input: Input) -> Result<Value, ApiError> {
    let arn = input.required_len("stateMachineArn", 256)?;
    let machine = machine_for(store, arn).await?;
    if machine.kind == "EXPRESS" {
        return sync::start_express(store, &machine, &input).await;
    }
    let (name, value) = new_execution(&input)?;
    let def = parse_definition(&machine.definition).map_err(|e| {
        ApiError::internal(format!(
            "the stored definition of {arn} no longer parses: {e}"
        ))
    })?;
    let mut info = ExecutionInfo::new(&machine.name, &name, value, Utc::now());
    info.role_arn = machine.role_arn.clone();
    let exec_arn = info.execution_arn.clone();
    if store.execution_exists(&exec_arn).await? {
        return same_start_or_refuse(store, &exec_arn, &info.input).await;
    }
    if let Err(e) = store
        .start_execution(&machine, std::sync::Arc::new(def), &info)
        .await
    {
        if store.execution_exists(&exec_arn).await? {
            // Another call with this name won the race.
            return same_start_or_refuse(store, &exec_arn, &info.input).await;
        }
        return Err(e);
    }
    tracing::info!(execution = %exec_arn, "execution started");
    Ok(json!({ "executionArn": exec_arn, "startDate": epoch(&info.start_time) }))
}

/// StartExecution with a name already used: the original answer when it is still running
/// with the same input (AWS compares the input; mapfleet compares it as JSON), else
/// ExecutionAlreadyExists.
async fn same_start_or_refuse(store: &Store, arn: &str, input: &Value) -> Result<Value, ApiError> {
    let existing = store.describe(arn).await?;
    if existing.status == Status::Running && &existing.info.input == input {
        return Ok(json!({
            "executionArn": arn,
            "startDate": epoch(&existing.info.start_time),
        }));
    }
    Err(ApiError::new(
        "ExecutionAlreadyExists",
        format!("Execution Already Exists: '{arn}'"),
    ))
}

async fn existing_execution(store: &Store, input: &Input) -> Result<String, ApiError> {
    let arn = input.required_len("executionArn", 256)?;
    check_execution_arn(arn)?;
    if !store.execution_exists(arn).await? {
        return Err(ApiError::execution_missing(arn));
    }
    Ok(arn.to_string())
}

async fn describe_execution(store: &Store, input: Input) -> Result<Value, ApiError> {
    let arn = existing_execution(store, &input).await?;
    let metadata_only = input.str("includedData")? == Some("METADATA_ONLY");
    let r = store.describe(&arn).await?;
    let mut o = Map::new();
    o.insert("executionArn".into(), json!(r.info.execution_arn));
    o.insert("stateMachineArn".into(), json!(r.info.state_machine_arn));
    o.insert("name".into(), json!(r.info.name));
    o.insert("status".into(), json!(r.status.as_str()));
    o.insert("startDate".into(), epoch(&r.info.start_time));
    if r.status != Status::Running {
        o.insert("stopDate".into(), epoch(&r.stop_date));
    }
    if !metadata_only {
        o.insert("input".into(), json!(r.info.input.to_string()));
        o.insert("inputDetails".into(), json!({ "included": true }));
        if let (Status::Succeeded, Some(out)) = (r.status, &r.output) {
            o.insert("output".into(), json!(out.to_string()));
            o.insert("outputDetails".into(), json!({ "included": true }));
        }
    }
    if let Some(e) = &r.error {
        if !e.error.is_empty() {
            o.insert("error".into(), json!(e.error));
        }
        if !e.cause.is_empty() {
            o.insert("cause".into(), json!(e.cause));
        }
    }
    for (k, v) in coordinator::fleet::redrive::describe_members(r.status, &r.info) {
        o.insert(k.into(), v);
    }
    if let Some(d) = &r.info.redrive_date {
        o.insert("redriveDate".into(), epoch(d));
    }
    Ok(Value::Object(o))
}

const STATUSES: &str = "[SUCCEEDED, TIMED_OUT, PENDING_REDRIVE, ABORTED, FAILED, RUNNING]";

/// ListExecutions' `statusFilter`.
fn status_filter(input: &Input) -> Result<Option<String>, ApiError> {
    match input.str("statusFilter")? {
        None => Ok(None),
        Some(s)
            if STATUSES.contains(&format!(" {s},"))
                || STATUSES.contains(&format!("[{s},"))
                || STATUSES.contains(&format!(" {s}]")) =>
        {
            Ok(Some(s.to_string()))
        }
        Some(s) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{s}' at 'statusFilter' failed to satisfy constraint: Member must satisfy enum value set: {STATUSES}"
        ))),
    }
}

/// ListExecutions' `redriveFilter`: `Some(true)` lists only the executions redriven at
/// least once, `Some(false)` only those never redriven.
pub(super) fn redrive_filter(input: &Input) -> Result<Option<bool>, ApiError> {
    match input.str("redriveFilter")? {
        None => Ok(None),
        Some("REDRIVEN") => Ok(Some(true)),
        Some("NOT_REDRIVEN") => Ok(Some(false)),
        Some(s) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{s}' at 'redriveFilter' failed to satisfy constraint: Member must satisfy enum value set: [REDRIVEN, NOT_REDRIVEN]"
        ))),
    }
}

async fn list_executions(store: &Store, input: Input) -> Result<Value, ApiError> {
    if input.str("mapRunArn")?.is_some() {
        return map_runs::list_map_run_executions(store, &input).await;
    }
    let arn = input
        .str("stateMachineArn")?
        .ok_or_else(|| ApiError::validation("Must provide a StateMachine ARN or MapRun ARN"))?;
    check_len("stateMachineArn", arn, 256)?;
    let machine = machine_for(store, arn).await?;
    if machine.kind == "EXPRESS" {
        return Err(sync::type_not_supported());
    }
    let filter = status_filter(&input)?;
    let redriven = redrive_filter(&input)?;
    let max = input.max_results(MAX_PAGE, DEFAULT_PAGE)?;
    let after = match input.token("executions")? {
        None => None,
        Some(t) => {
            let (ms, arn) = t.split_once('|').ok_or_else(ApiError::invalid_token)?;
            Some((
                ms.parse::<i64>().map_err(|_| ApiError::invalid_token())?,
                arn.to_string(),
            ))
        }
    };
    let all = store.executions(&machine.name).await?;
    // Newest first, ties by ARN: everything strictly after the token's position.
    let rest: Vec<&(i64, String)> = all
        .iter()
        .filter(|(ms, a)| match &after {
            None => true,
            Some((t_ms, t_arn)) => ms < t_ms || (ms == t_ms && a > t_arn),
        })
        .collect();
    let mut page: Vec<Value> = Vec::new();
    let mut last: Option<&(i64, String)> = None;
    let mut more = false;
    'chunks: for chunk in rest.chunks(500) {
        let arns: Vec<&str> = chunk.iter().map(|(_, a)| a.as_str()).collect();
        let rows = store.statuses(&arns).await?;
        for (entry, row) in chunk.iter().zip(rows) {
            let Some(row) = row else { continue }; // expired from Redis
            if filter.as_deref().is_some_and(|f| f != row.status)
                || redriven.is_some_and(|r| r != (row.redrive_count > 0))
            {
                continue;
            }
            if page.len() == max {
                more = true;
                break 'chunks;
            }
            let (ms, exec_arn) = entry;
            let name = exec_arn
                .rsplit_once(&format!(":{}:", machine.name))
                .map(|(_, n)| n)
                .unwrap_or(exec_arn);
            let mut item = json!({
                "executionArn": exec_arn,
                "stateMachineArn": machine.arn,
                "name": name,
                "status": row.status,
                "startDate": epoch_ms(*ms),
                "redriveCount": row.redrive_count,
            });
            if row.status != "RUNNING"
                && let Some(stop) = &row.stop_date
            {
                item["stopDate"] = epoch(stop);
            }
            if let Some(d) = &row.redrive_date {
                item["redriveDate"] = epoch(d);
            }
            page.push(item);
            last = Some(entry);
        }
    }
    let mut out = json!({ "executions": page });
    if more && let Some((ms, a)) = last {
        out["nextToken"] = json!(encode_token("executions", &format!("{ms}|{a}")));
    }
    Ok(out)
}

async fn get_execution_history(store: &Store, input: Input) -> Result<Value, ApiError> {
    let arn = existing_execution(store, &input).await?;
    let max = input.max_results(MAX_PAGE, DEFAULT_PAGE)?;
    let reverse = input.bool("reverseOrder")?;
    let include_data = match input.0.get("includeExecutionData") {
        None | Some(Value::Null) => true,
        _ => input.bool("includeExecutionData")?,
    };
    let after: Option<u64> = match input.token("history")? {
        None => None,
        Some(t) => Some(t.parse().map_err(|_| ApiError::invalid_token())?),
    };
    let mut events = store.history(&arn).await?;
    if reverse {
        events.reverse();
    }
    let mut page: Vec<Value> = Vec::new();
    let mut more = false;
    let mut last_id = 0;
    for e in events.iter().filter(|e| match after {
        None => true,
        Some(a) if reverse => e.id < a,
        Some(a) => e.id > a,
    }) {
        if page.len() == max {
            more = true;
            break;
        }
        let mut v = e.to_aws_json();
        v["timestamp"] = epoch(&e.timestamp);
        if !include_data && let Value::Object(m) = &mut v {
            for (k, d) in m.iter_mut() {
                if k.ends_with("EventDetails")
                    && let Value::Object(d) = d
                {
                    for payload in ["input", "output", "inputDetails", "outputDetails"] {
                        d.remove(payload);
                    }
                }
            }
        }
        last_id = e.id;
        page.push(v);
    }
    let mut out = json!({ "events": page });
    if more {
        out["nextToken"] = json!(encode_token("history", &last_id.to_string()));
    }
    Ok(out)
}

async fn stop_execution(store: &Store, input: Input) -> Result<Value, ApiError> {
    let arn = existing_execution(store, &input).await?;
    let error = input.str("error")?.unwrap_or("");
    let cause = input.str("cause")?.unwrap_or("");
    if error.len() > 256 || cause.len() > 32_768 {
        return Err(ApiError::validation(
            "1 validation error detected: error must be at most 256 characters and cause at most 32768",
        ));
    }
    let r = store.describe(&arn).await?;
    if r.status != Status::Running {
        // Already closed: nothing to stop; AWS answers with the time as well.
        return Ok(json!({ "stopDate": epoch(&r.stop_date) }));
    }
    store.stop(&arn, error, cause).await?;
    tracing::info!(execution = %arn, "stop requested");
    Ok(json!({ "stopDate": epoch(&Utc::now()) }))
}
