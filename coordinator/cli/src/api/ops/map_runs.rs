//! ListMapRuns, DescribeMapRun, UpdateMapRun and ListExecutions with `mapRunArn`: the
//! fleet's Distributed Map runs over an ItemReader, as `coordinator::fleet::map_runs` reads
//! them (the same code as `mapfleet map-runs` and `mapfleet executions list --map-run`), in
//! the API's shapes (epoch-second timestamps, pagination).

use chrono::DateTime;
use serde_json::{Value, json};

use coordinator::engine::cursor::LimitsUpdate;
use coordinator::fleet::map_runs::{MapRunChildrenError, MapRunError};

use super::{existing_execution, redrive_filter, status_filter};
use crate::api::backend::Store;
use crate::api::wire::{ApiError, DEFAULT_PAGE, Input, MAX_PAGE, encode_token, epoch};

/// The longest map run ARN (LongArn).
const MAX_MAP_RUN_ARN: usize = 2000;

impl From<MapRunError> for ApiError {
    fn from(e: MapRunError) -> Self {
        match e {
            MapRunError::DoesNotExist(arn) => ApiError::resource_missing(&arn),
            MapRunError::Ended(_) => {
                ApiError::validation_because("CANNOT_UPDATE_COMPLETED_MAP_RUN", e.to_string())
            }
            MapRunError::Client(c) => c.into(),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<MapRunChildrenError> for ApiError {
    fn from(e: MapRunChildrenError) -> Self {
        match e {
            MapRunChildrenError::MapRun(e) => e.into(),
            e @ (MapRunChildrenError::Running(_) | MapRunChildrenError::NoRecords(_)) => {
                ApiError::validation(e.to_string())
            }
            e @ MapRunChildrenError::Read(_) => ApiError::internal(e.to_string()),
        }
    }
}

/// A map run ARN member, checked for its form.
fn map_run_arn<'a>(input: &'a Input, name: &str) -> Result<&'a str, ApiError> {
    let arn = input.required_len(name, MAX_MAP_RUN_ARN)?;
    if !arn.starts_with("arn:") {
        return Err(ApiError::invalid_arn(arn));
    }
    if !arn.starts_with("arn:aws:states:") || !arn.contains(":mapRun:") {
        return Err(ApiError::new(
            "InvalidArn",
            format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
        ));
    }
    Ok(arn)
}

/// The fleet's ISO-8601 dates of a map run document as epoch seconds.
fn to_epoch(doc: &mut Value, fields: &[&str]) {
    for f in fields {
        if let Some(t) = doc[*f]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            doc[*f] = epoch(&t.with_timezone(&chrono::Utc));
        }
    }
}

pub(super) async fn list_map_runs(store: &Store, input: Input) -> Result<Value, ApiError> {
    let execution = existing_execution(store, &input).await?;
    let max = input.max_results(MAX_PAGE, DEFAULT_PAGE)?;
    let after = input.token("mapRuns")?;
    let mut runs = store.list_map_runs(&execution).await?;
    // In the order they started; a token is the last run of its page.
    let from = match &after {
        None => 0,
        Some(a) => {
            runs.iter()
                .position(|r| r["mapRunArn"].as_str() == Some(a.as_str()))
                .ok_or_else(ApiError::invalid_token)?
                + 1
        }
    };
    let rest = runs.split_off(from.min(runs.len()));
    let more = rest.len() > max;
    let page: Vec<Value> = rest
        .into_iter()
        .take(max)
        .map(|mut r| {
            to_epoch(&mut r, &["startDate", "stopDate"]);
            r
        })
        .collect();
    let mut out = json!({ "mapRuns": page });
    if more && let Some(last) = page.last().and_then(|r| r["mapRunArn"].as_str()) {
        out["nextToken"] = json!(encode_token("mapRuns", last));
    }
    Ok(out)
}

pub(super) async fn describe_map_run(store: &Store, input: Input) -> Result<Value, ApiError> {
    let arn = map_run_arn(&input, "mapRunArn")?;
    let mut doc = store.describe_map_run(arn).await?;
    to_epoch(&mut doc, &["startDate", "stopDate"]);
    Ok(doc)
}

pub(super) async fn update_map_run(store: &Store, input: Input) -> Result<Value, ApiError> {
    let arn = map_run_arn(&input, "mapRunArn")?;
    let limits = LimitsUpdate {
        max_concurrency: input.uint("maxConcurrency")?,
        tolerated_count: input.uint("toleratedFailureCount")?,
        tolerated_percentage: input.float("toleratedFailurePercentage", 0.0, 100.0)?,
    };
    if limits == LimitsUpdate::default() {
        return Err(ApiError::validation_because(
            "MISSING_REQUIRED_PARAMETER",
            "At least one of maxConcurrency, toleratedFailurePercentage or toleratedFailureCount must be specified",
        ));
    }
    store.update_map_run(arn, limits).await?;
    tracing::info!(map_run = %arn, ?limits, "map run update requested");
    Ok(json!({}))
}

/// ListExecutions with `mapRunArn`: the run's child executions, from its ResultWriter's
/// files once it ended, the last to end first (AWS lists closed executions by stop date).
/// Only as many files are read as the page needs (`FleetClient::newest_map_run_children`):
/// the first page costs the same at 100 children or a million; a page at offset N reads N
/// records before it.
pub(super) async fn list_map_run_executions(
    store: &Store,
    input: &Input,
) -> Result<Value, ApiError> {
    if input.str("stateMachineArn")?.is_some() {
        return Err(ApiError::validation(
            "Must provide either a StateMachine ARN or a MapRun ARN, not both",
        ));
    }
    let arn = map_run_arn(input, "mapRunArn")?;
    let filter = status_filter(input)?;
    let max = input.max_results(MAX_PAGE, DEFAULT_PAGE)?;
    let from: usize = match input.token("mapRunExecutions")? {
        None => 0,
        Some(t) => t.parse().map_err(|_| ApiError::invalid_token())?,
    };
    // A child that is not SUCCEEDED or FAILED has no record: such a filter lists none.
    let record_status = filter
        .as_deref()
        .filter(|f| matches!(*f, "SUCCEEDED" | "FAILED"));
    // A map run's children are never redriven themselves (a redrive of the parent starts
    // new ones).
    let redriven_only = redrive_filter(input)? == Some(true);
    if (filter.is_some() && record_status.is_none()) || redriven_only {
        return Ok(json!({ "executions": [] }));
    }
    let (children, more) = store
        .newest_map_run_children(arn, record_status, from + max)
        .await?;
    let page: Vec<Value> = children
        .into_iter()
        .skip(from)
        .map(|mut c| {
            to_epoch(&mut c, &["startDate", "stopDate"]);
            c["redriveCount"] = json!(0);
            c
        })
        .collect();
    let mut out = json!({ "executions": page });
    if more {
        out["nextToken"] = json!(encode_token("mapRunExecutions", &(from + max).to_string()));
    }
    Ok(out)
}
