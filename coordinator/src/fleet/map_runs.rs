//! The user's view of Distributed Map runs on the fleet: ListMapRuns and DescribeMapRun,
//! read from what the coordinators keep ([`super::maprun`]): each run's facts in the
//! execution's `mapruns` hash (written when it starts and when it ends), its live counters
//! in its `maprun` hash while it runs.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use redis::AsyncCommands;
use serde_json::{Value, json};

use super::InboxEvent;
use super::client::{ClientError, FleetClient};
use super::maprun::counts;
use super::service::enqueue;
use crate::engine::context::iso;
use crate::engine::cursor::LimitsUpdate;

/// Why a map run cannot be described.
#[derive(Debug, thiserror::Error)]
pub enum MapRunError {
    #[error("Map Run Does Not Exist: '{0}'")]
    DoesNotExist(String),
    #[error("map run {0}: its record is unreadable")]
    Unreadable(String),
    #[error("map run {0} is not running: only a running map run's limits can change")]
    Ended(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

fn date(ms: &Value) -> Value {
    ms.as_i64()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .map(|t| json!(iso(&t)))
        .unwrap_or(Value::Null)
}

impl FleetClient {
    /// ListMapRuns' `mapRuns` of an execution, in the order they started.
    pub async fn list_map_runs(&self, execution: &str) -> Result<Vec<Value>, MapRunError> {
        let key = self.keys.map_runs(execution);
        let all: HashMap<String, String> = self
            .read(&format!("reading the map runs of {execution}"), |mut c| {
                let key = key.clone();
                async move { c.hgetall(key).await }
            })
            .await?;
        let mut runs: Vec<Value> = all
            .into_values()
            .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
            .collect();
        runs.sort_by_key(|r| r["startDate"].as_i64().unwrap_or(0));
        Ok(runs.iter().map(list_item).collect())
    }

    /// DescribeMapRun's shape; counts are live while the run runs.
    pub async fn describe_map_run(&self, map_run: &str) -> Result<Value, MapRunError> {
        let (execution, r) = self.map_run_record(map_run).await?;
        let counts = match r.get("counts") {
            Some(c) => c.clone(),
            None => self.live_counts(&execution, &r).await?,
        };
        Ok(describe_doc(&r, counts))
    }

    /// A map run's execution and its facts as its coordinators keep them.
    async fn map_run_record(&self, map_run: &str) -> Result<(String, Value), MapRunError> {
        let index = self.keys.map_run_index();
        let run = map_run.to_string();
        let execution: Option<String> = self
            .read(&format!("finding map run {map_run}"), |mut c| {
                let (index, run) = (index.clone(), run.clone());
                async move { c.hget(index, run).await }
            })
            .await?;
        let execution = execution.ok_or_else(|| MapRunError::DoesNotExist(map_run.into()))?;
        let key = self.keys.map_runs(&execution);
        let text: Option<String> = self
            .read(&format!("reading map run {map_run}"), |mut c| {
                let (key, run) = (key.clone(), run.clone());
                async move { c.hget(key, run).await }
            })
            .await?;
        let r: Value = text
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| MapRunError::DoesNotExist(map_run.into()))?;
        Ok((execution, r))
    }

    /// UpdateMapRun: queues new limits for a running map run; its coordinator applies them
    /// to the Map (more children start at once, or the new tolerance is checked) and to
    /// what DescribeMapRun shows, in the execution's next batch.
    pub async fn update_map_run(
        &self,
        map_run: &str,
        limits: LimitsUpdate,
    ) -> Result<(), MapRunError> {
        let (execution, r) = self.map_run_record(map_run).await?;
        if r["status"] != "RUNNING" {
            return Err(MapRunError::Ended(map_run.into()));
        }
        let cursor = r["cursor"]
            .as_str()
            .ok_or_else(|| MapRunError::Unreadable(map_run.into()))?
            .to_string();
        let mut conn = self.conn.clone();
        let event = InboxEvent::UpdateMapRun { cursor, limits };
        enqueue(&mut conn, &self.keys, &execution, &[event])
            .await
            .map_err(|source| ClientError::Redis {
                doing: format!("updating map run {map_run}"),
                source,
            })?;
        Ok(())
    }

    /// A running run's counts, from its live counters.
    async fn live_counts(&self, execution: &str, r: &Value) -> Result<Value, MapRunError> {
        let cursor = r["cursor"]
            .as_str()
            .ok_or_else(|| MapRunError::Unreadable(r["mapRunArn"].to_string()))?;
        let key = self.keys.map_run(execution, cursor);
        let f: HashMap<String, String> = self
            .read("reading a map run's counters", |mut c| {
                let key = key.clone();
                async move { c.hgetall(key).await }
            })
            .await?;
        let n = |k: &str| -> usize { f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0) };
        let total = r["total"].as_u64().unwrap_or(0) as usize;
        let (succeeded, failed) = (n("succeeded"), n("failed"));
        let written = if r["resultWriter"].is_object() {
            (succeeded + failed).saturating_sub(n("n:S") + n("n:F"))
        } else {
            0
        };
        Ok(counts(
            total,
            n("started"),
            succeeded,
            failed,
            written,
            false,
        ))
    }

    /// The child executions of a finished map run with a ResultWriter, from its result
    /// files (`read` reads an object of its bucket): ListExecutions' `executions` with
    /// `mapRunArn`, filtered by status.
    pub async fn map_run_children(
        &self,
        map_run: &str,
        status: Option<&str>,
        read: impl Fn(&str, &str) -> Result<Vec<u8>, String>,
    ) -> Result<Vec<Value>, MapRunChildrenError> {
        let (_, r) = self.map_run_record(map_run).await?;
        children_from_files(map_run, &r, status, read)
    }
}

/// ListMapRuns' item for a map run's facts (as the fleet's coordinators and `mapfleet serve`
/// in embedded mode keep them: `mapRunArn`, `executionArn`, `startDate`/`stopDate` in epoch
/// milliseconds, ...).
pub fn list_item(r: &Value) -> Value {
    let mut item = json!({
        "executionArn": r["executionArn"],
        "mapRunArn": r["mapRunArn"],
        "stateMachineArn": r["mapRunArn"].as_str().map(state_machine_of),
        "startDate": date(&r["startDate"]),
    });
    if r.get("stopDate").is_some() {
        item["stopDate"] = date(&r["stopDate"]);
    }
    item
}

/// DescribeMapRun's shape of a map run's facts, with its `counts`.
pub fn describe_doc(r: &Value, counts: Value) -> Value {
    let mut doc = json!({
        "mapRunArn": r["mapRunArn"],
        "executionArn": r["executionArn"],
        "status": r["status"],
        "startDate": date(&r["startDate"]),
        "maxConcurrency": r["maxConcurrency"],
        "toleratedFailurePercentage": r["toleratedFailurePercentage"],
        "toleratedFailureCount": r["toleratedFailureCount"],
        "itemCounts": counts,
        "executionCounts": counts,
        "redriveCount": r["redriveCount"].as_u64().unwrap_or(0),
    });
    if r.get("stopDate").is_some() {
        doc["stopDate"] = date(&r["stopDate"]);
    }
    if r.get("redriveDate").is_some() {
        doc["redriveDate"] = date(&r["redriveDate"]);
    }
    doc
}

/// The child executions of the ended map run `map_run` (its facts `r`) from its
/// ResultWriter's files (`read` reads an object of its bucket), filtered by status.
pub fn children_from_files(
    map_run: &str,
    r: &Value,
    status: Option<&str>,
    read: impl Fn(&str, &str) -> Result<Vec<u8>, String>,
) -> Result<Vec<Value>, MapRunChildrenError> {
    if r["status"] == "RUNNING" {
        return Err(MapRunChildrenError::Running(map_run.into()));
    }
    let writer = &r["resultWriter"];
    let (Some(bucket), Some(manifest_key)) =
        (writer["bucket"].as_str(), writer["manifestKey"].as_str())
    else {
        return Err(MapRunChildrenError::NoRecords(map_run.into()));
    };
    if writer["transformation"] != "NONE" {
        return Err(MapRunChildrenError::NoRecords(map_run.into()));
    }
    let parse = |key: &str| -> Result<Vec<Value>, MapRunChildrenError> {
        let bytes = read(bucket, key).map_err(MapRunChildrenError::Read)?;
        let text = String::from_utf8_lossy(&bytes);
        if key.ends_with(".jsonl") {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l)
                        .map_err(|e| MapRunChildrenError::Read(format!("{key}: {e}")))
                })
                .collect()
        } else {
            serde_json::from_str(&text)
                .map_err(|e| MapRunChildrenError::Read(format!("{key}: {e}")))
        }
    };
    let manifest: Value =
        serde_json::from_slice(&read(bucket, manifest_key).map_err(MapRunChildrenError::Read)?)
            .map_err(|e| MapRunChildrenError::Read(format!("{manifest_key}: {e}")))?;
    let mut out = Vec::new();
    for st in ["SUCCEEDED", "FAILED"] {
        if status.is_some_and(|s| s != st) {
            continue;
        }
        for f in manifest["ResultFiles"][st].as_array().into_iter().flatten() {
            let key = f["Key"].as_str().unwrap_or_default();
            for rec in parse(key)? {
                out.push(json!({
                    "executionArn": rec["ExecutionArn"],
                    "stateMachineArn": rec["StateMachineArn"],
                    "name": rec["Name"],
                    "status": rec["Status"],
                    "startDate": rec["StartDate"],
                    "stopDate": rec["StopDate"],
                    "mapRunArn": rec["MapRunArn"],
                }));
            }
        }
    }
    out.sort_by(|a, b| a["startDate"].as_str().cmp(&b["startDate"].as_str()));
    Ok(out)
}

/// Why a map run's children cannot be listed.
#[derive(Debug, thiserror::Error)]
pub enum MapRunChildrenError {
    #[error(transparent)]
    MapRun(#[from] MapRunError),
    #[error("map run {0} is still running: its children are listed once it ends")]
    Running(String),
    #[error(
        "map run {0} kept no child records: children are listed from a ResultWriter's files with Transformation NONE"
    )]
    NoRecords(String),
    #[error("cannot read the map run's result files: {0}")]
    Read(String),
}

/// The labelled state machine ARN a map run ARN belongs to (`…:stateMachine:NAME/LABEL`, as
/// ListMapRuns gives it).
fn state_machine_of(map_run: &str) -> String {
    // arn:aws:states:REGION:ACCOUNT:mapRun:MACHINE/LABEL:ID
    let base = map_run.replacen(":mapRun:", ":stateMachine:", 1);
    match base.rsplit_once(':') {
        Some((head, _)) => head.to_string(),
        None => base,
    }
}
