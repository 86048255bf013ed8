//! One execution running in the `serve` process: its hooks write its history and its map
//! runs' facts under its directory as the engine goes ([`ExecHooks`]), and what the API
//! asks of it (StopExecution, UpdateMapRun) reaches it through [`LiveHandle`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use coordinator::embedded::{Control, RunHooks};
use coordinator::engine::cursor::Cursor;
use coordinator::engine::history::Event;
use coordinator::fleet::map_runs::opened_facts;
use coordinator::fleet::maprun::{counts, ended_status};
use coordinator::maprun::{MapRunPlan, ResultFormat};

use super::disk::{self, HistoryFile};

/// How often at most a running execution's history is fsync'd while it runs (it is handed
/// to the OS at every pause, and fsync'd at its end).
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// A running child count of one map run.
#[derive(Debug, Default, Clone)]
struct Counters {
    arn: String,
    total: usize,
    started: usize,
    succeeded: usize,
    failed: usize,
}

/// An execution's map runs: their facts as `mapruns.json` holds them, and the live counts
/// of those running.
#[derive(Debug)]
pub struct MapRuns {
    path: PathBuf,
    /// Map run ARN → its facts (the fleet's shape: dates in epoch ms, `counts` once ended).
    pub records: BTreeMap<String, Value>,
    /// Map cursor → the counts of its run while it runs.
    live: HashMap<String, Counters>,
}

impl MapRuns {
    /// The map runs kept in `path` (none when it is not there).
    pub fn load(path: &Path) -> std::io::Result<MapRuns> {
        Ok(MapRuns {
            path: path.to_path_buf(),
            records: disk::read_json(path)?.unwrap_or_default(),
            live: HashMap::new(),
        })
    }

    pub fn save(&self) -> std::io::Result<()> {
        disk::write_json(&self.path, &self.records)
    }

    /// A run's facts with its counts: the final ones once it ended, the live ones while it
    /// runs.
    pub fn with_counts(&self, arn: &str) -> Option<(Value, Value)> {
        let r = self.records.get(arn)?;
        if let Some(c) = r.get("counts") {
            return Some((r.clone(), c.clone()));
        }
        let live = self.live.values().find(|c| c.arn == arn);
        let c = match live {
            Some(c) => counts(c.total, c.started, c.succeeded, c.failed, 0, false),
            None => counts(r["total"].as_u64().unwrap_or(0) as usize, 0, 0, 0, 0, false),
        };
        Some((r.clone(), c))
    }

    /// Ends every run still marked RUNNING (its execution ended without closing it: the
    /// process died under it). Returns whether any was.
    pub fn abort_running(&mut self) -> bool {
        let mut changed = false;
        for r in self.records.values_mut() {
            if r["status"] == "RUNNING" {
                let total = r["total"].as_u64().unwrap_or(0) as usize;
                r["status"] = json!("ABORTED");
                r["stopDate"] = json!(Utc::now().timestamp_millis());
                r["counts"] = counts(total, 0, 0, 0, 0, true);
                changed = true;
            }
        }
        changed
    }
}

/// What the API holds of a running execution.
#[derive(Clone)]
pub struct LiveHandle {
    pub control: tokio::sync::mpsc::UnboundedSender<Control>,
    /// Turns true once the execution's end is on disk.
    pub ended: tokio::sync::watch::Receiver<bool>,
    pub map_runs: Arc<Mutex<MapRuns>>,
}

/// The run's side of the API: writes its history and map runs, notes new map runs in the
/// store's index.
pub struct ExecHooks {
    execution: String,
    history: Mutex<History>,
    map_runs: Arc<Mutex<MapRuns>>,
    /// Where the root cursor is kept for a redrive (and for a restart of `serve`).
    resume: PathBuf,
    /// Called with each new map run's ARN.
    on_map_run: Box<dyn Fn(&str) + Send + Sync>,
}

struct History {
    file: HistoryFile,
    synced: Instant,
    /// The root's `...StateEntered` id last written to `resume.json`.
    root_entered: u64,
    failed: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ExecHooks {
    pub fn new(
        execution: &str,
        dir: &Path,
        map_runs: Arc<Mutex<MapRuns>>,
        on_map_run: Box<dyn Fn(&str) + Send + Sync>,
    ) -> std::io::Result<ExecHooks> {
        Ok(ExecHooks {
            execution: execution.to_string(),
            history: Mutex::new(History {
                file: HistoryFile::open(&dir.join("history.jsonl"))?,
                synced: Instant::now(),
                root_entered: 0,
                failed: false,
            }),
            map_runs,
            resume: dir.join("resume.json"),
            on_map_run,
        })
    }

    /// Everything written so far, on the disk (the run ended).
    pub fn sync(&self) -> std::io::Result<()> {
        let mut h = lock(&self.history);
        h.file.sync()
    }

    fn io_failed(&self, h: &mut History, what: &str, e: &std::io::Error) {
        // Once per execution: a full disk would otherwise log at every event.
        if !h.failed {
            tracing::error!(execution = %self.execution, error = %e, "cannot write {what}");
            h.failed = true;
        }
    }

    fn save_runs(&self, runs: &MapRuns) {
        if let Err(e) = runs.save() {
            tracing::error!(execution = %self.execution, error = %e, "cannot write the map runs' facts");
        }
    }
}

impl RunHooks for ExecHooks {
    fn event(&self, event: &Event) {
        let mut h = lock(&self.history);
        if let Err(e) = h.file.push(event) {
            self.io_failed(&mut h, "the history", &e);
        }
    }

    fn idle(&self, root: Option<&Cursor>) {
        let mut h = lock(&self.history);
        let result = if h.synced.elapsed() >= SYNC_EVERY {
            h.synced = Instant::now();
            h.file.sync()
        } else {
            h.file.flush()
        };
        if let Err(e) = result {
            self.io_failed(&mut h, "the history", &e);
        }
        // Where a redrive resumes if serve dies now: the state the root stands in.
        if let Some(root) = root
            && root.entered_event != h.root_entered
        {
            h.root_entered = root.entered_event;
            if let Err(e) = disk::write_json(&self.resume, root) {
                self.io_failed(&mut h, "where a redrive resumes", &e);
            }
        }
    }

    fn map_run_opened(&self, map: &str, plan: &MapRunPlan, total: usize) {
        let arn = plan.map_run_arn.clone();
        let format = plan.writer.clone().map(|w| ResultFormat::new(plan, w));
        let mut runs = lock(&self.map_runs);
        // A redrive runs the run again under its ARN: it keeps its start.
        let earlier = (plan.redrive_count > 0)
            .then(|| runs.records.get(&arn))
            .flatten();
        let r = opened_facts(plan, format.as_ref(), &self.execution, map, total, earlier);
        runs.records.insert(arn.clone(), r);
        runs.live.insert(
            map.to_string(),
            Counters {
                arn: arn.clone(),
                total,
                ..Counters::default()
            },
        );
        self.save_runs(&runs);
        drop(runs);
        (self.on_map_run)(&arn);
    }

    fn map_run_started(&self, map: &str, children: usize) {
        if let Some(c) = lock(&self.map_runs).live.get_mut(map) {
            c.started += children;
        }
    }

    fn map_run_child_ended(&self, map: &str, succeeded: bool) {
        if let Some(c) = lock(&self.map_runs).live.get_mut(map) {
            if succeeded {
                c.succeeded += 1;
            } else {
                c.failed += 1;
            }
        }
    }

    fn map_run_closed(&self, map: &str, written: bool) {
        let mut runs = lock(&self.map_runs);
        let Some(c) = runs.live.remove(map) else {
            return;
        };
        let Some(r) = runs.records.get_mut(&c.arn) else {
            return;
        };
        let status = if written {
            ended_status(c.total, c.succeeded, c.failed, r)
        } else {
            "FAILED"
        };
        let writes = r["resultWriter"].is_object();
        r["status"] = json!(status);
        r["stopDate"] = json!(Utc::now().timestamp_millis());
        r["counts"] = counts(
            c.total,
            c.started,
            c.succeeded,
            c.failed,
            if writes { c.succeeded + c.failed } else { 0 },
            true,
        );
        self.save_runs(&runs);
    }
}
