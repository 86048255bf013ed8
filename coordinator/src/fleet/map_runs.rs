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
use crate::maprun::{MapRunPlan, ResultFormat};

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
    /// `mapRunArn`, filtered by status, oldest start first. Reads every file: see
    /// [`Self::newest_map_run_children`] for a page.
    pub async fn map_run_children(
        &self,
        map_run: &str,
        status: Option<&str>,
        read: impl Fn(&str, &str) -> Result<Vec<u8>, String>,
    ) -> Result<Vec<Value>, MapRunChildrenError> {
        let (_, r) = self.map_run_record(map_run).await?;
        children_from_files(map_run, &r, status, read)
    }

    /// The `take` child executions of a finished map run that ended last, newest first (by
    /// stop date, merging the statuses), and whether there are more. The result files are
    /// read from the last one written backwards, and a JSONL file's records are parsed from
    /// its end, only as many as `take` needs: the first page of a run of a million children
    /// parses a page's worth of records, not the run's. (Within a file, records are in the
    /// order the children ended.)
    pub async fn newest_map_run_children(
        &self,
        map_run: &str,
        status: Option<&str>,
        take: usize,
        read: impl Fn(&str, &str) -> Result<Vec<u8>, String>,
    ) -> Result<(Vec<Value>, bool), MapRunChildrenError> {
        let (_, r) = self.map_run_record(map_run).await?;
        newest_children_from_files(map_run, &r, status, take, read)
    }
}

/// The child executions of a finished map run with a ResultWriter (its facts `r`), from its
/// result files (`read` reads an object of its bucket): ListExecutions' `executions` with
/// `mapRunArn`, filtered by status, oldest start first. Reads every file: see
/// [`newest_children_from_files`] for a page. Both stores (the fleet's, and embedded
/// `serve`'s) read their runs' children with it.
pub fn children_from_files(
    map_run: &str,
    r: &Value,
    status: Option<&str>,
    read: impl Fn(&str, &str) -> Result<Vec<u8>, String>,
) -> Result<Vec<Value>, MapRunChildrenError> {
    let files = result_files(map_run, r, status, &read)?;
    let mut out = Vec::new();
    for (_, keys) in &files.by_status {
        for key in keys {
            out.extend(files.records(key, &read)?);
        }
    }
    out.sort_by(|a, b| a["startDate"].as_str().cmp(&b["startDate"].as_str()));
    Ok(out)
}

/// The `take` child executions of a finished map run (its facts `r`) that ended last,
/// newest first (by stop date, merging the statuses), and whether there are more. The result
/// files are read from the last one written backwards, and a JSONL file's records are parsed
/// from its end, only as many as `take` needs: the first page of a run of a million children
/// parses a page's worth of records, not the run's. (Within a file, records are in the order
/// the children ended.)
pub fn newest_children_from_files(
    map_run: &str,
    r: &Value,
    status: Option<&str>,
    take: usize,
    read: impl Fn(&str, &str) -> Result<Vec<u8>, String>,
) -> Result<(Vec<Value>, bool), MapRunChildrenError> {
    let files = result_files(map_run, r, status, &read)?;
    let mut streams: Vec<Backwards<'_>> = files
        .by_status
        .iter()
        .map(|(_, keys)| Backwards {
            keys: keys.iter().collect(),
            ..Backwards::default()
        })
        .collect();
    let mut out = Vec::new();
    loop {
        let mut newest: Option<(usize, String)> = None;
        for (i, stream) in streams.iter_mut().enumerate() {
            if let Some(c) = stream.peek(&files, &read)? {
                let stop = c["stopDate"].as_str().unwrap_or("").to_string();
                if newest.as_ref().is_none_or(|(_, s)| stop > *s) {
                    newest = Some((i, stop));
                }
            }
        }
        let Some((i, _)) = newest else {
            return Ok((out, false));
        };
        if out.len() == take {
            return Ok((out, true));
        }
        out.push(streams[i].head.take().expect("just peeked"));
    }
}

/// A finished run's result files by status (those `status` asks for), in the order
/// they were written, from its manifest.
fn result_files(
    map_run: &str,
    r: &Value,
    status: Option<&str>,
    read: &impl Fn(&str, &str) -> Result<Vec<u8>, String>,
) -> Result<ResultFiles, MapRunChildrenError> {
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
    let manifest: Value =
        serde_json::from_slice(&read(bucket, manifest_key).map_err(MapRunChildrenError::Read)?)
            .map_err(|e| MapRunChildrenError::Read(format!("{manifest_key}: {e}")))?;
    let by_status = ["SUCCEEDED", "FAILED"]
        .into_iter()
        .filter(|st| status.is_none_or(|s| s == *st))
        .map(|st| {
            let keys = manifest["ResultFiles"][st]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| f["Key"].as_str().unwrap_or_default().to_string())
                .collect();
            (st, keys)
        })
        .collect();
    Ok(ResultFiles {
        bucket: bucket.to_string(),
        by_status,
    })
}

/// A finished map run's result files.
struct ResultFiles {
    bucket: String,
    /// Status → file keys, in the order written.
    by_status: Vec<(&'static str, Vec<String>)>,
}

impl ResultFiles {
    /// One file's records as ListExecutions items, in the file's order.
    fn records(
        &self,
        key: &str,
        read: &impl Fn(&str, &str) -> Result<Vec<u8>, String>,
    ) -> Result<Vec<Value>, MapRunChildrenError> {
        let bytes = read(&self.bucket, key).map_err(MapRunChildrenError::Read)?;
        let text = String::from_utf8_lossy(&bytes);
        let records: Vec<Value> = if key.ends_with(".jsonl") {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l)
                        .map_err(|e| MapRunChildrenError::Read(format!("{key}: {e}")))
                })
                .collect::<Result<_, _>>()?
        } else {
            serde_json::from_str(&text)
                .map_err(|e| MapRunChildrenError::Read(format!("{key}: {e}")))?
        };
        Ok(records.iter().map(child_item).collect())
    }
}

/// A result file's record as a ListExecutions item.
fn child_item(rec: &Value) -> Value {
    json!({
        "executionArn": rec["ExecutionArn"],
        "stateMachineArn": rec["StateMachineArn"],
        "name": rec["Name"],
        "status": rec["Status"],
        "startDate": rec["StartDate"],
        "stopDate": rec["StopDate"],
        "mapRunArn": rec["MapRunArn"],
    })
}

/// One status's records read from the last one written backwards: the files not opened
/// yet, the open file, and the newest record not taken yet.
#[derive(Default)]
struct Backwards<'a> {
    /// The files not opened yet, the last written last.
    keys: Vec<&'a String>,
    key: String,
    /// The open JSONL file; the records before byte `end` are not parsed yet.
    text: String,
    end: usize,
    /// The open file's records when it is a JSON array (parsed whole), the last last.
    parsed: Vec<Value>,
    head: Option<Value>,
}

impl Backwards<'_> {
    /// The newest record not taken yet (parsing the next line from the end, or opening the
    /// previous file, as needed).
    fn peek(
        &mut self,
        files: &ResultFiles,
        read: &impl Fn(&str, &str) -> Result<Vec<u8>, String>,
    ) -> Result<Option<&Value>, MapRunChildrenError> {
        while self.head.is_none() {
            if let Some(v) = self.parsed.pop() {
                self.head = Some(v);
                break;
            }
            let rest = self.text[..self.end].trim_end();
            if !rest.is_empty() {
                let start = rest.rfind('\n').map_or(0, |i| i + 1);
                let line = &rest[start..];
                let rec: Value = serde_json::from_str(line)
                    .map_err(|e| MapRunChildrenError::Read(format!("{}: {e}", self.key)))?;
                self.head = Some(child_item(&rec));
                self.end = start;
                continue;
            }
            let Some(key) = self.keys.pop() else {
                return Ok(None);
            };
            self.key = key.clone();
            if key.ends_with(".jsonl") {
                let bytes = read(&files.bucket, key).map_err(MapRunChildrenError::Read)?;
                self.text = String::from_utf8_lossy(&bytes).into_owned();
                self.end = self.text.len();
            } else {
                self.text.clear();
                self.end = 0;
                self.parsed = files.records(key, read)?;
            }
        }
        Ok(self.head.as_ref())
    }
}

/// A map run's facts as it opens, in the shape both stores keep them (the fleet's
/// `mapruns` hash and embedded `serve`'s records) and [`list_item`], [`describe_doc`] and
/// [`children_from_files`] read: `execution`'s Map at `cursor` over `total` children, writing
/// with `format`. `earlier`: the facts of the run a redrive runs again, whose start it keeps.
pub fn opened_facts(
    plan: &MapRunPlan,
    format: Option<&ResultFormat>,
    execution: &str,
    cursor: &str,
    total: usize,
    earlier: Option<&Value>,
) -> Value {
    let limits = &plan.limits;
    let mut r = json!({
        "mapRunArn": plan.map_run_arn,
        "executionArn": execution,
        "cursor": cursor,
        "status": "RUNNING",
        "startDate": Utc::now().timestamp_millis(),
        "maxConcurrency": limits.max_concurrency,
        "toleratedFailureCount": limits.tolerated_count.unwrap_or(0),
        "toleratedFailurePercentage": limits.tolerated_percentage.unwrap_or(0.0),
        "total": total,
        "resultWriter": format.map(|f| json!({
            "bucket": f.req.bucket,
            "manifestKey": f.manifest_key(),
            "transformation": f.to_json()["transformation"],
        })),
    });
    if let Some(e) = earlier {
        r["startDate"] = e["startDate"].clone();
        r["redriveCount"] = json!(plan.redrive_count);
        r["redriveDate"] = json!(Utc::now().timestamp_millis());
    }
    r
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
