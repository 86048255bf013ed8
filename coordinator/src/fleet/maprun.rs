//! Distributed Map runs over an `ItemReader` on the fleet: the [`RedisBackend`]'s part of
//! [`crate::driver::Backend`]'s map-run methods.
//!
//! A run's state in Redis stays compact whatever its item count (see [`super::keys`]): its
//! ARN, child count and result format, the inputs of its *running* children (for their
//! result records), the records of ended children not yet in a result file (at most
//! [`FLUSH_RECORDS`] or [`FILE_BYTES`] per status), and the sizes of the files written.
//! The items themselves stay in the object store: the coordinator reads them forward, a
//! chunk at a time, as children start ([`RunReader`], kept across batches in
//! [`MapRunStore`]).
//!
//! **Exactly once across a coordinator's death.** Everything a batch changes is committed
//! with its cursors in one lease-checked script, so Redis always holds a consistent run:
//!
//! - A child's input is read once for the child the Map's committed `next` says starts: a
//!   coordinator whose cached reader is not at that child (it never opened the run, or its
//!   last batch was not committed) reopens the reader from the plan the engine resolves
//!   again ([`crate::engine::Engine::map_run_plan`]) and skips the children already started
//!   without starting them again.
//! - Result file `N` of a status is written from every record Redis holds for that status
//!   plus the batch's own; the commit then drops those records and counts the file. A
//!   coordinator killed between the write and the commit leaves the records and the count
//!   as they were, so its successor writes file `N` again, whole, replacing it: no record
//!   lands in two files, none is lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use redis::AsyncCommands;
use serde_json::{Value, json};

use super::backend::{Commit, RedisBackend};
use crate::asl::error::{StatesError, names};
use crate::driver::{BackendError, PlanSource};
use crate::engine::cursor::LimitsUpdate;
use crate::maprun::{Buckets, ChildInputs, ChildRecord, FILE_BYTES, MapRunPlan, ResultFormat};

/// A result file is written once this many records of its status wait (or [`FILE_BYTES`]).
pub const FLUSH_RECORDS: usize = 5000;
/// Readers a coordinator keeps (each holds one read buffer, 1 MiB).
const MAX_READERS: usize = 256;
/// Children read per step when counting or skipping.
const READ_CHUNK: usize = 1024;
/// The two statuses a record can have: index 0 `S` (SUCCEEDED), 1 `F` (FAILED).
const STATUS: [(char, &str); 2] = [('S', "SUCCEEDED"), ('F', "FAILED")];

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

/// A run's reader, positioned at child `next`.
struct RunReader {
    map_run_arn: String,
    next: usize,
    inputs: ChildInputs,
}

/// What a coordinator's map runs share across batches: the object store they read and write
/// (the worker's store, handed in by whoever starts the coordinator: the slim
/// `mapfleet-coordinator` has none) and the readers of the runs it advances. A reader is a
/// cache: Redis decides where a run stands.
#[derive(Clone, Default)]
pub struct MapRunStore {
    buckets: Option<Arc<dyn Buckets>>,
    readers: Arc<Mutex<HashMap<String, RunReader>>>,
}

impl MapRunStore {
    pub fn new(buckets: Arc<dyn Buckets>) -> MapRunStore {
        MapRunStore {
            buckets: Some(buckets),
            readers: Arc::default(),
        }
    }

    fn take(&self, key: &str) -> Option<RunReader> {
        self.readers.lock().expect("readers lock").remove(key)
    }

    fn put(&self, key: String, reader: RunReader) {
        let mut readers = self.readers.lock().expect("readers lock");
        // Readers of runs this coordinator stopped advancing (another took the execution)
        // are never taken again: the cache is bounded, and a reader dropped here is only
        // opened again (Redis says where its run stands).
        if readers.len() >= MAX_READERS && !readers.contains_key(&key) {
            readers.clear();
        }
        readers.insert(key, reader);
    }
}

impl std::fmt::Debug for MapRunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapRunStore")
            .field("buckets", &self.buckets.is_some())
            .finish()
    }
}

/// One map run as Redis holds it, with this batch's changes.
pub(super) struct RunState {
    map_run_arn: String,
    total: usize,
    /// DescribeMapRun's facts as of the run's start (`summary` in Redis).
    summary: Value,
    started: usize,
    succeeded: usize,
    failed: usize,
    /// `None`: no ResultWriter (the children's outputs are the Map's result).
    format: Option<ResultFormat>,
    waiting: [usize; 2],
    bytes: [usize; 2],
    /// Sizes of the files written, by status.
    files: [Vec<usize>; 2],
    failure: Option<String>,
    /// Opened in this batch: its keys are replaced.
    opened: bool,
    /// Its limits changed in this batch (UpdateMapRun): `summary` is written again.
    summary_changed: bool,
    changed: bool,
    /// The status's records in Redis went into a file in this batch.
    cleared: [bool; 2],
    new_records: [Vec<(usize, String)>; 2],
    /// The running children's inputs Redis holds, once read in this batch.
    inputs: Option<HashMap<usize, String>>,
    inputs_add: Vec<(usize, String)>,
    inputs_del: Vec<usize>,
}

impl RunState {
    fn fresh(
        map_run_arn: String,
        total: usize,
        format: Option<ResultFormat>,
        summary: Value,
    ) -> RunState {
        RunState {
            map_run_arn,
            total,
            summary,
            started: 0,
            succeeded: 0,
            failed: 0,
            format,
            waiting: [0; 2],
            bytes: [0; 2],
            files: [Vec::new(), Vec::new()],
            failure: None,
            opened: true,
            summary_changed: false,
            changed: true,
            cleared: [false; 2],
            new_records: [Vec::new(), Vec::new()],
            inputs: Some(HashMap::new()),
            inputs_add: Vec::new(),
            inputs_del: Vec::new(),
        }
    }

    fn parse(map: &str, f: HashMap<String, String>) -> Result<Option<RunState>, BackendError> {
        if f.is_empty() {
            return Ok(None);
        }
        let bad = |what: &str| err(format!("the map run of Map {map:?} is unreadable: {what}"));
        let num = |k: &str| -> Result<usize, BackendError> {
            match f.get(k) {
                None => Ok(0),
                Some(v) => v.parse().map_err(|_| bad(k)),
            }
        };
        let format = match f.get("format").map(String::as_str) {
            None | Some("") => None,
            Some(text) => Some(
                serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|v| ResultFormat::from_json(&v))
                    .ok_or_else(|| bad("format"))?,
            ),
        };
        let mut run = RunState::fresh(
            f.get("arn").cloned().ok_or_else(|| bad("arn"))?,
            num("total")?,
            format,
            f.get("summary")
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(Value::Null),
        );
        run.started = num("started")?;
        run.succeeded = num("succeeded")?;
        run.failed = num("failed")?;
        run.opened = false;
        run.changed = false;
        run.inputs = None;
        run.failure = f.get("failure").cloned();
        for (s, (c, _)) in STATUS.iter().enumerate() {
            run.waiting[s] = num(&format!("n:{c}"))?;
            run.bytes[s] = num(&format!("bytes:{c}"))?;
            let n = num(&format!("files:{c}"))?;
            run.files[s] = (0..n)
                .map(|i| num(&format!("file:{c}:{i}")))
                .collect::<Result<_, _>>()?;
        }
        Ok(Some(run))
    }
}

/// How an ended run ended: FAILED when its failures passed what it tolerates, ABORTED when
/// children were left (its execution stopped), SUCCEEDED otherwise.
fn run_status(run: &RunState, summary: &Value) -> &'static str {
    ended_status(run.total, run.succeeded, run.failed, summary)
}

/// The status a map run ended with: FAILED past its tolerated failures (`summary`'s
/// `toleratedFailureCount` / `toleratedFailurePercentage`), ABORTED when children did not
/// run, else SUCCEEDED.
pub fn ended_status(
    total: usize,
    succeeded: usize,
    failed: usize,
    summary: &Value,
) -> &'static str {
    let count = summary["toleratedFailureCount"].as_u64().unwrap_or(0) as usize;
    let pct = summary["toleratedFailurePercentage"]
        .as_f64()
        .unwrap_or(0.0);
    let exceeded = failed > count && (total == 0 || failed as f64 * 100.0 > pct * total as f64);
    if exceeded {
        "FAILED"
    } else if succeeded + failed < total {
        "ABORTED"
    } else {
        "SUCCEEDED"
    }
}

/// DescribeMapRun's `itemCounts` / `executionCounts` (children counted; with an ItemBatcher
/// a child is a batch). `ended`: children not started were aborted, not pending.
pub fn counts(
    total: usize,
    started: usize,
    succeeded: usize,
    failed: usize,
    written: usize,
    ended: bool,
) -> Value {
    let running = started.saturating_sub(succeeded + failed);
    let not_started = total.saturating_sub(started);
    let (pending, running, aborted) = if ended {
        (0, 0, running + not_started)
    } else {
        (not_started, running, 0)
    };
    json!({
        "pending": pending,
        "running": running,
        "succeeded": succeeded,
        "failed": failed,
        "timedOut": 0,
        "aborted": aborted,
        "total": total,
        "resultsWritten": written,
        "failuresNotRedrivable": 0,
        "pendingRedrive": 0,
    })
}

fn reader_key(arn: &str, map: &str) -> String {
    format!("{arn}\n{map}")
}

fn writer_failed(why: &str) -> StatesError {
    StatesError::new(
        names::RESULT_WRITER_FAILED,
        format!("The ResultWriter could not write the results: {why}"),
    )
}

impl RedisBackend {
    /// The map run of `map` (None: it has none), read once per batch.
    async fn run_state(&mut self, map: &str) -> Result<Option<&mut RunState>, BackendError> {
        if !self.runs.contains_key(map) {
            let loaded = if self.pending.dropped.contains(map) {
                None
            } else {
                let fields: HashMap<String, String> = self
                    .conn
                    .hgetall(self.keys.map_run(&self.arn, map))
                    .await
                    .map_err(err)?;
                RunState::parse(map, fields)?
            };
            self.runs.insert(map.to_string(), loaded);
        }
        Ok(self.runs.get_mut(map).and_then(Option::as_mut))
    }

    /// Renews the lease when a long read (counting a run's items, skipping to where it
    /// stands) has used a third of it: the batch must still hold it to commit.
    async fn keep_lease(&mut self, since: &mut Instant) -> Result<(), BackendError> {
        let Some((token, lease)) = self.lease.clone() else {
            return Ok(());
        };
        if since.elapsed() < lease / 3 {
            return Ok(());
        }
        *since = Instant::now();
        let held =
            super::service::renew_lease(&mut self.conn, &self.keys, &self.arn, &token, lease)
                .await
                .map_err(err)?;
        if held {
            Ok(())
        } else {
            Err(err(format!(
                "lost the lease on execution {} while reading a map run's items",
                self.arn
            )))
        }
    }

    pub(super) async fn open_run(
        &mut self,
        map: &str,
        plan: MapRunPlan,
    ) -> Result<Result<usize, StatesError>, BackendError> {
        let Some(store) = self.map_runs.buckets.clone() else {
            return Ok(Err(StatesError::new(
                names::ITEM_READER_FAILED,
                "This coordinator has no object store to read the ItemReader's items from: \
                 run `mapfleet coordinator` (which reads and writes the local buckets under \
                 --data-dir) rather than the slim mapfleet-coordinator",
            )));
        };
        let format = plan.writer.clone().map(|w| ResultFormat::new(&plan, w));
        if let Some(f) = &format {
            match store.bucket_exists(&f.req.bucket).await {
                Ok(true) => {}
                Ok(false) => {
                    return Ok(Err(writer_failed(&format!(
                        "the bucket {} does not exist",
                        f.req.bucket
                    ))));
                }
                Err(e) => {
                    return Ok(Err(writer_failed(&format!(
                        "could not check bucket {}: {e}",
                        f.req.bucket
                    ))));
                }
            }
        }
        // Count the children (bad input fails the Map here, before any child runs, and the
        // tolerated failure percentage has its total).
        let mut counting = ChildInputs::new(plan.clone());
        let mut total = 0;
        let mut since = Instant::now();
        loop {
            match counting.next(store.as_ref(), READ_CHUNK).await {
                Ok(chunk) if chunk.is_empty() => break,
                Ok(chunk) => total += chunk.len(),
                Err(e) => return Ok(Err(e)),
            }
            self.keep_lease(&mut since).await?;
        }
        let arn = plan.map_run_arn.clone();
        // A redrive runs the failed run again under its ARN: its facts keep their start,
        // and the result files of the children kept stay (the new ones are numbered on).
        let earlier: Option<Value> = if plan.redrive_count > 0 {
            self.conn
                .hget::<_, _, Option<String>>(self.keys.map_runs(&self.arn), &arn)
                .await
                .map_err(err)?
                .and_then(|t| serde_json::from_str(&t).ok())
        } else {
            None
        };
        let summary = super::map_runs::opened_facts(
            &plan,
            format.as_ref(),
            &self.arn,
            map,
            total,
            earlier.as_ref(),
        );
        let mut kept_files = Vec::new();
        if let Some(e) = &earlier
            && format.is_some()
        {
            kept_files = e["succeededFiles"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|n| n.as_u64())
                        .map(|n| n as usize)
                        .collect()
                })
                .unwrap_or_default();
        }
        self.run_summaries.push((arn.clone(), summary.to_string()));
        self.map_runs.put(
            reader_key(&self.arn, map),
            RunReader {
                map_run_arn: arn.clone(),
                next: 0,
                inputs: ChildInputs::new(plan),
            },
        );
        let mut run = RunState::fresh(arn, total, format, summary);
        run.files[0] = kept_files;
        self.runs.insert(map.to_string(), Some(run));
        Ok(Ok(total))
    }

    pub(super) async fn run_items(
        &mut self,
        map: &str,
        from: usize,
        to: usize,
        plan: &PlanSource<'_>,
    ) -> Result<Option<Vec<Value>>, BackendError> {
        let (run_arn, writes) = match self.run_state(map).await? {
            None => return Ok(None),
            Some(run) => (run.map_run_arn.clone(), run.format.is_some()),
        };
        let store = self
            .map_runs
            .buckets
            .clone()
            .ok_or_else(|| err("a map run is open but this coordinator has no object store"))?;
        let key = reader_key(&self.arn, map);
        let mut reader = match self.map_runs.take(&key) {
            Some(r) if r.map_run_arn == run_arn && r.next == from => r,
            _ => {
                self.reopen(map, &run_arn, from, plan, store.as_ref())
                    .await?
            }
        };
        let inputs = reader
            .inputs
            .next(store.as_ref(), to - from)
            .await
            .map_err(|e| err(format!("{}: {}", e.error, e.cause)))?;
        if inputs.len() != to - from {
            return Err(err(format!(
                "map run {run_arn}: the items changed during the run (children {from}..{to} asked for, {} read)",
                inputs.len()
            )));
        }
        reader.next = to;
        self.map_runs.put(key, reader);
        {
            let run = self.run_state(map).await?.expect("read above");
            run.started = run.started.max(to);
            run.changed = true;
        }
        if writes {
            let now = Utc::now().timestamp_millis();
            let run = self.run_state(map).await?.expect("read above");
            for (i, input) in inputs.iter().enumerate() {
                let text = json!({"i": input, "t": now}).to_string();
                run.inputs_add.push((from + i, text));
            }
            run.changed = true;
        }
        Ok(Some(inputs))
    }

    /// A reader at child `from` of the run, opened from the plan the engine resolves again.
    async fn reopen(
        &mut self,
        map: &str,
        run_arn: &str,
        from: usize,
        plan: &PlanSource<'_>,
        store: &dyn Buckets,
    ) -> Result<RunReader, BackendError> {
        let plan = match plan() {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                return Err(err(format!(
                    "cannot resolve the plan of map run {run_arn} again: {}: {}",
                    e.error, e.cause
                )));
            }
            None => return Err(err(format!("Map {map:?} has no map run to read on"))),
        };
        if plan.map_run_arn != run_arn {
            return Err(err(format!(
                "Map {map:?} resolves map run {} but Redis holds {run_arn}",
                plan.map_run_arn
            )));
        }
        tracing::info!(execution = %self.arn, map_run = %run_arn, from, "reopening a map run's reader");
        let mut inputs = ChildInputs::new(plan);
        let mut skipped = 0;
        let mut since = Instant::now();
        while skipped < from {
            let n = inputs
                .next(store, (from - skipped).min(READ_CHUNK))
                .await
                .map_err(|e| err(format!("{}: {}", e.error, e.cause)))?
                .len();
            if n == 0 {
                return Err(err(format!(
                    "map run {run_arn}: the items changed during the run (fewer than {from})"
                )));
            }
            skipped += n;
            self.keep_lease(&mut since).await?;
        }
        Ok(RunReader {
            map_run_arn: run_arn.to_string(),
            next: from,
            inputs,
        })
    }

    /// Whether `parent`'s children's outputs go to result files (then they are not kept).
    pub(super) async fn run_writes(&mut self, parent: &str) -> Result<bool, BackendError> {
        Ok(self
            .run_state(parent)
            .await?
            .is_some_and(|r| r.format.is_some()))
    }

    pub(super) async fn run_child_ended(
        &mut self,
        parent: &str,
        index: usize,
        result: &Result<Value, StatesError>,
        at: DateTime<Utc>,
    ) -> Result<(), BackendError> {
        let items_key = self.keys.items(&self.arn, parent);
        let mut conn = self.conn.clone();
        let Some(run) = self.run_state(parent).await? else {
            return Ok(());
        };
        if result.is_ok() {
            run.succeeded += 1;
        } else {
            run.failed += 1;
        }
        run.changed = true;
        let Some(format) = run.format.clone() else {
            return Ok(());
        };
        let text = match run.inputs_add.iter().position(|(i, _)| *i == index) {
            Some(pos) => Some(run.inputs_add.swap_remove(pos).1),
            None => {
                if run.inputs.is_none() {
                    let all: HashMap<usize, String> =
                        conn.hgetall(&items_key).await.map_err(err)?;
                    run.inputs = Some(all);
                }
                run.inputs_del.push(index);
                run.inputs.as_mut().and_then(|m| m.remove(&index))
            }
        };
        let stored: Value = text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let start = stored
            .get("t")
            .and_then(Value::as_i64)
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .unwrap_or(at);
        let record = ChildRecord {
            index,
            input: stored.get("i").cloned().unwrap_or(Value::Null),
            result: result.clone(),
            start,
            stop: at,
        };
        let s = usize::from(result.is_err());
        let text = format.record_text(record);
        run.waiting[s] += 1;
        run.bytes[s] += text.len() + 1;
        run.new_records[s].push((index, text));
        run.changed = true;
        if run.waiting[s] >= FLUSH_RECORDS || run.bytes[s] >= FILE_BYTES {
            self.flush_run(parent, s).await?;
        }
        Ok(())
    }

    /// Child `index` succeeded before a redrive and is kept: it counts as succeeded (its
    /// record is in the earlier result files; its input, read for it, is not kept).
    pub(super) async fn run_child_kept(
        &mut self,
        parent: &str,
        index: usize,
    ) -> Result<(), BackendError> {
        if let Some(run) = self.run_state(parent).await? {
            run.succeeded += 1;
            run.inputs_add.retain(|(i, _)| *i != index);
            run.changed = true;
        }
        Ok(())
    }

    /// Writes the next result file of status `s` from every record waiting for it.
    async fn flush_run(&mut self, map: &str, s: usize) -> Result<(), BackendError> {
        let records_key = self.keys.run_records(&self.arn, map, STATUS[s].0);
        let mut conn = self.conn.clone();
        let Some(store) = self.map_runs.buckets.clone() else {
            return Ok(());
        };
        let Some(run) = self.run_state(map).await? else {
            return Ok(());
        };
        let Some(format) = run.format.clone() else {
            return Ok(());
        };
        if run.waiting[s] == 0 {
            return Ok(());
        }
        let mut records: Vec<(usize, String)> = if run.cleared[s] || run.opened {
            Vec::new()
        } else {
            conn.hgetall::<_, HashMap<usize, String>>(&records_key)
                .await
                .map_err(err)?
                .into_iter()
                .collect()
        };
        records.append(&mut run.new_records[s]);
        records.sort_unstable_by_key(|(i, _)| *i);
        let bytes = format.file_bytes(records.iter().map(|(_, t)| t.as_str()));
        let key = format.file_key(STATUS[s].1, run.files[s].len());
        let size = bytes.len();
        match store.put(&format.req.bucket, &key, bytes).await {
            Ok(()) => run.files[s].push(size),
            Err(e) => {
                if run.failure.is_none() {
                    run.failure = Some(format!("{}/{key}: {e}", format.req.bucket));
                }
            }
        }
        run.cleared[s] = true;
        run.waiting[s] = 0;
        run.bytes[s] = 0;
        run.changed = true;
        Ok(())
    }

    pub(super) async fn close_run(
        &mut self,
        map: &str,
    ) -> Result<Option<Result<Value, StatesError>>, BackendError> {
        let format = match self.run_state(map).await? {
            None => return Ok(None),
            Some(run) => run.format.clone(),
        };
        let Some(format) = format else {
            self.summarize(map, None).await?;
            return Ok(None);
        };
        self.flush_run(map, 0).await?;
        self.flush_run(map, 1).await?;
        let failure = self.run_state(map).await?.and_then(|r| r.failure.clone());
        if let Some(f) = failure {
            self.summarize(map, Some("FAILED")).await?;
            return Ok(Some(Err(writer_failed(&f))));
        }
        let run = self.run_state(map).await?.expect("read above");
        let files = |s: usize| -> Vec<(String, usize)> {
            run.files[s]
                .iter()
                .enumerate()
                .map(|(n, size)| (format.file_key(STATUS[s].1, n), *size))
                .collect()
        };
        let manifest = format.manifest(&files(0), &files(1));
        let store = self
            .map_runs
            .buckets
            .clone()
            .ok_or_else(|| err("a map run is open but this coordinator has no object store"))?;
        let written = store
            .put(&format.req.bucket, &format.manifest_key(), manifest)
            .await;
        self.summarize(map, written.is_err().then_some("FAILED"))
            .await?;
        Ok(Some(match written {
            Ok(()) => Ok(format.summary()),
            Err(e) => Err(writer_failed(&e.to_string())),
        }))
    }

    /// The run ended: its DescribeMapRun facts with their final status and counts.
    async fn summarize(&mut self, map: &str, status: Option<&str>) -> Result<(), BackendError> {
        let Some(run) = self.run_state(map).await? else {
            return Ok(());
        };
        let mut summary = run.summary.clone();
        if !summary.is_object() {
            return Ok(());
        }
        let status = status.unwrap_or_else(|| run_status(run, &summary));
        let written = if run.format.is_some() {
            run.succeeded + run.failed
        } else {
            0
        };
        summary["status"] = json!(status);
        summary["stopDate"] = json!(Utc::now().timestamp_millis());
        if run.format.is_some() {
            summary["succeededFiles"] = json!(run.files[0]);
        }
        summary["counts"] = counts(
            run.total,
            run.started,
            run.succeeded,
            run.failed,
            written,
            true,
        );
        let arn = run.map_run_arn.clone();
        self.run_summaries.push((arn, summary.to_string()));
        Ok(())
    }

    /// UpdateMapRun: a running run's DescribeMapRun facts take the new limits (its Map's
    /// cursor takes them through [`crate::engine::cursor::CursorEvent::UpdateLimits`]), and
    /// so does the status it ends with. A run that ended already is left as it is.
    pub(super) async fn update_run_limits(
        &mut self,
        map: &str,
        limits: &LimitsUpdate,
    ) -> Result<(), BackendError> {
        let Some(run) = self.run_state(map).await? else {
            return Ok(());
        };
        let arn = run.map_run_arn.clone();
        let ended_text =
            |t: &str| serde_json::from_str::<Value>(t).is_ok_and(|s| s["status"] != "RUNNING");
        let ended_here = self
            .run_summaries
            .iter()
            .any(|(a, s)| a == &arn && ended_text(s));
        let key = self.keys.map_runs(&self.arn);
        let stored: Option<String> = self.conn.hget(key, &arn).await.map_err(err)?;
        let ended = stored.as_deref().is_some_and(ended_text);
        let Some(run) = self.run_state(map).await? else {
            return Ok(());
        };
        if ended || ended_here || !run.summary.is_object() {
            return Ok(());
        }
        if let Some(n) = limits.max_concurrency {
            run.summary["maxConcurrency"] = json!(n);
        }
        if let Some(n) = limits.tolerated_count {
            run.summary["toleratedFailureCount"] = json!(n);
        }
        if let Some(p) = limits.tolerated_percentage {
            run.summary["toleratedFailurePercentage"] = json!(p);
        }
        run.changed = true;
        run.summary_changed = true;
        let summary = run.summary.to_string();
        self.run_summaries.push((arn, summary));
        Ok(())
    }

    /// A parent's children were dropped: its run (if any) goes with them.
    pub(super) fn drop_run(&mut self, parent: &str) {
        self.runs.insert(parent.to_string(), None);
        self.map_runs.take(&reader_key(&self.arn, parent));
    }

    /// Adds the map runs' writes of this batch to the commit (after the dropped parents'
    /// deletions, so a run dropped and opened again in one batch ends up opened).
    pub(super) fn write_runs(&mut self, pipe: &mut Commit, ttl_secs: i64) {
        let arn = self.arn.clone();
        if !self.run_summaries.is_empty() {
            let key = self.keys.map_runs(&arn);
            let summaries = std::mem::take(&mut self.run_summaries);
            pipe.hset_multiple(&key, &summaries);
            pipe.expire(&key, ttl_secs);
            let index: Vec<(String, String)> = summaries
                .iter()
                .map(|(run, _)| (run.clone(), arn.clone()))
                .collect();
            pipe.hset_multiple(&self.keys.map_run_index(), &index);
        }
        for (map, run) in std::mem::take(&mut self.runs) {
            let run_key = self.keys.map_run(&arn, &map);
            let Some(run) = run else { continue };
            if !run.changed {
                continue;
            }
            if run.opened {
                pipe.del(&run_key);
                for (c, _) in STATUS {
                    pipe.del(&self.keys.run_records(&arn, &map, c));
                }
                let format = run
                    .format
                    .as_ref()
                    .map(|f| f.to_json().to_string())
                    .unwrap_or_default();
                pipe.hset_multiple(
                    &run_key,
                    &[
                        ("arn", run.map_run_arn.clone()),
                        ("total", run.total.to_string()),
                        ("format", format),
                        ("summary", run.summary.to_string()),
                    ],
                );
            }
            if run.summary_changed && !run.opened {
                pipe.hset_multiple(&run_key, &[("summary", run.summary.to_string())]);
            }
            let mut fields: Vec<(String, String)> = vec![
                ("started".into(), run.started.to_string()),
                ("succeeded".into(), run.succeeded.to_string()),
                ("failed".into(), run.failed.to_string()),
            ];
            for (s, (c, _)) in STATUS.iter().enumerate() {
                let records_key = self.keys.run_records(&arn, &map, *c);
                if run.cleared[s] {
                    pipe.del(&records_key);
                }
                if !run.new_records[s].is_empty() {
                    pipe.hset_multiple(&records_key, &run.new_records[s]);
                    pipe.expire(&records_key, ttl_secs);
                }
                fields.push((format!("n:{c}"), run.waiting[s].to_string()));
                fields.push((format!("bytes:{c}"), run.bytes[s].to_string()));
                fields.push((format!("files:{c}"), run.files[s].len().to_string()));
                for (n, size) in run.files[s].iter().enumerate() {
                    fields.push((format!("file:{c}:{n}"), size.to_string()));
                }
            }
            if let Some(f) = &run.failure {
                fields.push(("failure".into(), f.clone()));
            }
            pipe.hset_multiple(&run_key, &fields);
            pipe.expire(&run_key, ttl_secs);
            let items_key = self.keys.items(&arn, &map);
            if !run.inputs_del.is_empty() {
                let fields: Vec<String> = run.inputs_del.iter().map(usize::to_string).collect();
                pipe.hdel(&items_key, &fields);
            }
            if !run.inputs_add.is_empty() {
                pipe.hset_multiple(&items_key, &run.inputs_add);
                pipe.expire(&items_key, ttl_secs);
            }
        }
    }
}
