//! UpdateStateMachine and DescribeStateMachineForExecution.
//!
//! Versions and aliases are not there yet: `publish` is refused, and a version or alias ARN
//! is not a state machine ARN here (InvalidArn).

use chrono::Utc;
use serde_json::{Value, json};

use coordinator::asl::parse::{MAX_DEFINITION_BYTES, parse_definition};

use super::{existing_execution, invalid_definition, machine_for, refuse_publish};
use crate::api::backend::Store;
use crate::api::wire::{ApiError, Input, epoch, epoch_ms};

/// A configuration member (`loggingConfiguration`, `tracingConfiguration`): an object.
fn configuration(input: &Input, name: &str) -> Result<Option<Value>, ApiError> {
    match input.0.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must be a structure"
        ))),
    }
}

pub(super) async fn update_state_machine(store: &Store, input: Input) -> Result<Value, ApiError> {
    let arn = input.required_len("stateMachineArn", 256)?;
    refuse_publish(&input)?;
    let definition = match input.str("definition")? {
        Some(_) => Some(input.required_len("definition", MAX_DEFINITION_BYTES)?),
        None => None,
    };
    let role_arn = match input.str("roleArn")? {
        Some(_) => Some(input.required_len("roleArn", 256)?),
        None => None,
    };
    let logging = configuration(&input, "loggingConfiguration")?;
    let traced = configuration(&input, "tracingConfiguration")?;
    if definition.is_none() && role_arn.is_none() && logging.is_none() && traced.is_none() {
        return Err(ApiError::new(
            "MissingRequiredParameter",
            "Either the definition, the role ARN, the LoggingConfiguration, or the TracingConfiguration must be specified",
        ));
    }
    if let Some(r) = role_arn
        && !r.starts_with("arn:")
    {
        return Err(ApiError::new(
            "InvalidArn",
            format!("Invalid Arn: 'Invalid ARN prefix: {r}'"),
        ));
    }
    if let Some(d) = definition {
        parse_definition(d).map_err(|e| invalid_definition(&e))?;
    }
    let old = machine_for(store, arn).await?;
    if let Some(d) = definition
        && old.kind == "EXPRESS"
    {
        super::sync::check_express_definition(d)?;
    }
    let mut new = old.clone();
    if let Some(d) = definition {
        new.definition = d.to_string();
    }
    if let Some(r) = role_arn {
        new.role_arn = r.to_string();
    }
    if logging.is_some() {
        new.logging = logging;
    }
    if traced.is_some() {
        new.tracing = traced;
    }
    // The same update again changes nothing: the same date and revision (idempotent).
    if new.same_request(&old)
        && new.role_arn == old.role_arn
        && let Some(revision) = &old.revision_id
    {
        return Ok(json!({
            "updateDate": epoch_ms(old.update_ms.unwrap_or(old.creation_ms)),
            "revisionId": revision,
        }));
    }
    let now = Utc::now();
    new.update_ms = Some(now.timestamp_millis());
    new.revision_id = Some(uuid::Uuid::new_v4().to_string());
    if !store.update_machine(&new).await? {
        return Err(ApiError::machine_missing(arn));
    }
    tracing::info!(state_machine = %new.arn, "state machine updated");
    Ok(json!({
        "updateDate": epoch(&now),
        "revisionId": new.revision_id,
    }))
}

pub(super) async fn describe_state_machine_for_execution(
    store: &Store,
    input: Input,
) -> Result<Value, ApiError> {
    let arn = existing_execution(store, &input).await?;
    let r = store.describe(&arn).await?;
    let (id, definition) = store.execution_definition(&arn).await?;
    let info = &r.info;
    let machine = store.machine(&info.state_machine_name).await?;
    let revision = store
        .revision(&info.state_machine_name, &id, &info.role_arn)
        .await?;
    // When the machine got this definition and role; else (deleted since, or started outside
    // the API) the oldest date known for it.
    let update_ms = match (&revision, &machine) {
        (Some(rev), _) => rev.update_ms,
        (None, Some(m)) => m.creation_ms.min(info.start_time.timestamp_millis()),
        (None, None) => info.start_time.timestamp_millis(),
    };
    let mut out = json!({
        "stateMachineArn": info.state_machine_arn,
        "name": info.state_machine_name,
        "definition": definition,
        "roleArn": info.role_arn,
        "updateDate": epoch_ms(update_ms),
    });
    if let Some(m) = &machine {
        out["loggingConfiguration"] = m
            .logging
            .clone()
            .unwrap_or_else(|| json!({"level": "OFF", "includeExecutionData": false}));
        out["tracingConfiguration"] = m
            .tracing
            .clone()
            .unwrap_or_else(|| json!({"enabled": false}));
    }
    if let Some(id) = revision.and_then(|r| r.revision_id) {
        out["revisionId"] = json!(id);
    }
    Ok(out)
}
