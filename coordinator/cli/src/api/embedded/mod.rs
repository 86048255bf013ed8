//! `mapfleet serve` without a fleet: state machines and executions kept under
//! `<data-dir>/api/` ([`disk`] has the layout), executions run in this process by the same
//! engine loop and worker tasks as `mapfleet run` ([`coordinator::embedded::run_live`]).
//!
//! What the API acknowledged is on disk before it answers: a machine, its tags and
//! revisions, a started execution's record, a stop (the answer waits for the ABORTED
//! record), a redrive. The history is appended as the run goes (handed to the OS at each
//! pause of the run, so a `kill -9` loses none of what a reader saw; fsync'd at least every
//! second and at the end), and the end's record is written after it.
//!
//! In memory: an index of the executions (ARN, machine, start, status; no input, output or
//! history) and of the map runs, and the handles of the running ones. Histories are read
//! from disk for each request.
//!
//! A restart finds the executions the previous process left RUNNING and ends them FAILED
//! with `Mapfleet.ServeRestarted` (an `ExecutionFailed` event closes their history). Each
//! keeps where its root stood (`resume.json`, written whenever the top level entered a
//! state), so RedriveExecution resumes it from that state, as it resumes a failed one.

mod disk;
mod run;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use coordinator::asl::definition::StateMachine;
use coordinator::asl::error::StatesError;
use coordinator::asl::parse::parse_definition;
use coordinator::driver::Status;
use coordinator::embedded::{
    Control, EmbeddedOptions, ExecutionResult, Live, Resume, TaskExecutor, TokenAnswer,
    TokenRefused, run_execution, run_live,
};
use coordinator::engine::cursor::LimitsUpdate;
use coordinator::engine::history::{Event, EventType};
use coordinator::engine::run::Tx;
use coordinator::engine::{Engine, ExecutionInfo};
use coordinator::fleet::client::definition_id;
use coordinator::fleet::map_runs::{
    MapRunError, describe_doc, list_item, newest_children_from_files,
};
use coordinator::fleet::redrive::Redriven;

use super::backend::{ApiStore, ListRow};
use super::store::{MachineRecord, Revision, TagRefused, revision_key};
use super::wire::ApiError;
use disk::{ExecRecord, Layout};
use run::{ExecHooks, LiveHandle, MapRuns};

/// The error a restart gives the executions it found running.
pub const SERVE_RESTARTED: &str = "Mapfleet.ServeRestarted";

/// How long StopExecution waits for the execution's ABORTED record.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

/// What the index knows of one execution.
struct ExecMeta {
    machine: String,
    name: String,
    start_ms: i64,
    status: Status,
    stop_date: Option<DateTime<Utc>>,
    redrive_count: u32,
    redrive_date: Option<DateTime<Utc>>,
    /// In its machine's list (ListExecutions); false once the machine was deleted.
    listed: bool,
    live: Option<LiveHandle>,
}

#[derive(Default)]
struct Index {
    executions: HashMap<String, ExecMeta>,
    /// Map run ARN → its execution's ARN.
    map_runs: HashMap<String, String>,
}

struct Inner {
    layout: Layout,
    data_dir: PathBuf,
    index: Mutex<Index>,
    /// Held by the calls that change what is stored, across their writes, so that checks
    /// and writes do not interleave (a name taken twice, a tag count exceeded).
    writing: tokio::sync::Mutex<()>,
    executors: Executors,
    /// What the runs' `.waitForTaskToken` tokens are minted under (`token.key`): one key
    /// for the store, so that a token from an earlier run of an execution is known as its.
    token_key: coordinator::engine::token::TokenKey,
}

/// The task executors of the runs: the worker's utility tasks, and the rider-photo tasks
/// loaded once, when a definition first calls them.
struct Executors {
    plain: Arc<dyn TaskExecutor>,
    photos: tokio::sync::OnceCell<Arc<dyn TaskExecutor>>,
}

/// Embedded mode's [`ApiStore`].
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

fn io(doing: &str) -> impl Fn(std::io::Error) -> ApiError + '_ {
    move |e| ApiError::internal(format!("{doing}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EmbeddedStore {
    /// Opens (or starts) the API state under `<data_dir>/api/`, ending the executions a
    /// previous process left running (see the module's notes). Returns the store and how
    /// many executions it ended so.
    pub fn open(data_dir: &Path) -> anyhow::Result<(EmbeddedStore, usize)> {
        let layout = Layout::new(data_dir);
        std::fs::create_dir_all(layout.machines())?;
        std::fs::create_dir_all(layout.executions())?;
        let registry = worker::default_registry(worker::RegistryOptions::default());
        let token_key = disk::token_key(&layout)?;
        let inner = Inner {
            layout,
            data_dir: data_dir.to_path_buf(),
            index: Mutex::new(Index::default()),
            writing: tokio::sync::Mutex::new(()),
            token_key,
            executors: Executors {
                plain: Arc::new(crate::tasks::RegistryExecutor::new(registry)),
                photos: tokio::sync::OnceCell::new(),
            },
        };
        let ended = inner.load()?;
        Ok((
            EmbeddedStore {
                inner: Arc::new(inner),
            },
            ended,
        ))
    }

    fn meta_dir(&self, arn: &str) -> Result<PathBuf, ApiError> {
        let index = lock(&self.inner.index);
        let m = index
            .executions
            .get(arn)
            .ok_or_else(|| ApiError::execution_missing(arn))?;
        Ok(self.inner.layout.execution(&m.machine, &m.name))
    }

    fn record(&self, arn: &str) -> Result<(PathBuf, ExecRecord), ApiError> {
        let dir = self.meta_dir(arn)?;
        let record = disk::read_json(&dir.join("record.json"))
            .map_err(io("reading an execution"))?
            .ok_or_else(|| ApiError::execution_missing(arn))?;
        Ok((dir, record))
    }

    fn live(&self, arn: &str) -> Option<LiveHandle> {
        lock(&self.inner.index)
            .executions
            .get(arn)
            .and_then(|m| m.live.clone())
    }

    async fn executor(&self, def: &StateMachine) -> Result<Arc<dyn TaskExecutor>, ApiError> {
        let ex = &self.inner.executors;
        if !crate::tasks::uses_photo_tasks(def) {
            return Ok(ex.plain.clone());
        }
        ex.photos
            .get_or_try_init(|| crate::tasks::embedded_executor(&self.inner.data_dir, def))
            .await
            .cloned()
            .map_err(|e| ApiError::internal(format!("cannot load the rider-photo tasks: {e:#}")))
    }

    /// How this store runs an execution: history kept by its hooks (not in memory), the
    /// CLI's task slots, Distributed Maps over `<data-dir>/buckets`.
    fn options(&self) -> EmbeddedOptions {
        let mut opts = EmbeddedOptions {
            keep_history: false,
            task_slots: coordinator::embedded::default_task_slots(),
            ..Default::default()
        };
        opts.engine.token_key = self.inner.token_key.clone();
        opts.buckets = Some(Arc::new(crate::buckets::StoreBuckets(Arc::new(
            worker::store::LocalStore::new(self.inner.data_dir.join("buckets")),
        ))));
        opts
    }

    /// Runs `info` (whose files are in place) in a task of its own; `resume` for a redrive.
    fn spawn(
        &self,
        def: Arc<StateMachine>,
        info: ExecutionInfo,
        executor: Arc<dyn TaskExecutor>,
        resume: Option<Resume>,
    ) -> Result<(), ApiError> {
        let arn = info.execution_arn.clone();
        let dir = self
            .inner
            .layout
            .execution(&info.state_machine_name, &info.name);
        let map_runs = Arc::new(Mutex::new(
            MapRuns::load(&dir.join("mapruns.json")).map_err(io("reading map runs"))?,
        ));
        let weak = Arc::downgrade(&self.inner);
        let exec = arn.clone();
        let hooks = Arc::new(
            ExecHooks::new(
                &arn,
                &dir,
                map_runs.clone(),
                Box::new(move |run: &str| {
                    if let Some(inner) = weak.upgrade() {
                        lock(&inner.index)
                            .map_runs
                            .insert(run.to_string(), exec.clone());
                    }
                }),
            )
            .map_err(io("opening the history"))?,
        );
        let (control, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ended_tx, ended) = tokio::sync::watch::channel(false);
        if let Some(m) = lock(&self.inner.index).executions.get_mut(&arn) {
            m.status = Status::Running;
            m.stop_date = None;
            m.redrive_count = info.redrive_count;
            m.redrive_date = info.redrive_date;
            m.live = Some(LiveHandle {
                control,
                ended,
                map_runs,
            });
        }
        let opts = self.options();
        let live = Live {
            hooks: hooks.clone(),
            control: rx,
            resume,
        };
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let end = run_live(def, info, executor, opts, live).await;
            if let Err(e) = inner.finish(&dir, &hooks, end) {
                tracing::error!(execution = %arn, error = %e, "cannot write the execution's end");
            }
            let _ = ended_tx.send(true);
        });
        Ok(())
    }
}

impl Inner {
    /// Reads the index from disk and ends what a previous process left running.
    fn load(&self) -> anyhow::Result<usize> {
        let mut index = Index::default();
        let mut listed: HashSet<String> = HashSet::new();
        for entry in std::fs::read_dir(self.layout.machines())? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "executions") {
                listed.extend(disk::read_lines(&path)?);
            }
        }
        let mut ended = 0;
        for machine in std::fs::read_dir(self.layout.executions())? {
            let machine = machine?.path();
            if !machine.is_dir() {
                continue;
            }
            for exec in std::fs::read_dir(&machine)? {
                let dir = exec?.path();
                let Some(mut record) = disk::read_json::<ExecRecord>(&dir.join("record.json"))?
                else {
                    continue; // a start that did not get as far as its record
                };
                if record.status == Status::Running {
                    self.end_interrupted(&dir, &mut record)?;
                    ended += 1;
                }
                let runs = MapRuns::load(&dir.join("mapruns.json"))?;
                for arn in runs.records.keys() {
                    index
                        .map_runs
                        .insert(arn.clone(), record.info.execution_arn.clone());
                }
                let info = &record.info;
                index.executions.insert(
                    info.execution_arn.clone(),
                    ExecMeta {
                        machine: info.state_machine_name.clone(),
                        name: info.name.clone(),
                        start_ms: info.start_time.timestamp_millis(),
                        status: record.status,
                        stop_date: record.stop_date,
                        redrive_count: info.redrive_count,
                        redrive_date: info.redrive_date,
                        listed: listed.contains(&info.execution_arn),
                        live: None,
                    },
                );
            }
        }
        *lock(&self.index) = index;
        Ok(ended)
    }

    /// An execution the previous process left RUNNING: FAILED `Mapfleet.ServeRestarted`,
    /// with `ExecutionFailed` after what its history holds.
    fn end_interrupted(&self, dir: &Path, record: &mut ExecRecord) -> anyhow::Result<()> {
        let path = dir.join("history.jsonl");
        let mut events = disk::read_history(&path)?;
        let now = Utc::now();
        let mut appended = Vec::new();
        if events.is_empty() {
            // Started, but the run died before its first event reached the file.
            appended.push(Event {
                id: 1,
                previous_event_id: 0,
                event_type: EventType::ExecutionStarted,
                timestamp: record.info.start_time,
                details: json!({"input": record.info.input, "roleArn": record.info.role_arn}),
                cursor: String::new(),
            });
        }
        let last = appended.last().or(events.last()).map_or(0, |e| e.id);
        let cause = format!(
            "mapfleet serve stopped while the execution ran (it was restarted at {}); \
             RedriveExecution resumes it from the state it was in",
            now.to_rfc3339()
        );
        appended.push(Event {
            id: last + 1,
            previous_event_id: last,
            event_type: EventType::ExecutionFailed,
            timestamp: now,
            details: json!({"error": SERVE_RESTARTED, "cause": cause}),
            cursor: String::new(),
        });
        // The history as it is read (a line torn by the death dropped), then the end.
        events.extend(appended);
        let mut text = String::new();
        for e in &events {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        disk::write_atomic(&path, text.as_bytes())?;
        let mut runs = MapRuns::load(&dir.join("mapruns.json"))?;
        if runs.abort_running() {
            runs.save()?;
        }
        record.status = Status::Failed;
        record.error = Some(SERVE_RESTARTED.into());
        record.cause = Some(cause);
        record.output = None;
        record.stop_date = Some(now);
        disk::write_json(&dir.join("record.json"), record)?;
        tracing::warn!(execution = %record.info.execution_arn, "was running when serve stopped: now FAILED {SERVE_RESTARTED}");
        Ok(())
    }

    /// A run ended: its history on disk, where a redrive resumes, then its record.
    fn finish(
        &self,
        dir: &Path,
        hooks: &ExecHooks,
        end: coordinator::embedded::LiveEnd,
    ) -> std::io::Result<()> {
        hooks.sync()?;
        let r = &end.result;
        let resume = dir.join("resume.json");
        match (&end.ended_root, r.status) {
            (_, Status::Succeeded) => match std::fs::remove_file(&resume) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
            (Some(root), _) => disk::write_json(&resume, root)?,
            (None, _) => {}
        }
        let path = dir.join("record.json");
        let mut record: ExecRecord = disk::read_json(&path)?
            .ok_or_else(|| std::io::Error::other("the execution's record is gone"))?;
        record.status = r.status;
        record.output = r.output.clone();
        record.error = r.error.as_ref().map(|e| e.error.clone());
        record.cause = r.error.as_ref().map(|e| e.cause.clone());
        record.stop_date = Some(r.stop_date);
        disk::write_json(&path, &record)?;
        let mut index = lock(&self.index);
        if let Some(m) = index.executions.get_mut(&r.info.execution_arn) {
            m.status = r.status;
            m.stop_date = Some(r.stop_date);
            m.live = None;
        }
        tracing::info!(execution = %r.info.execution_arn, status = r.status.as_str(), "execution ended");
        Ok(())
    }
}

/// The root cursor of a fresh start, for a redrive of an execution that died before it
/// kept one: it runs again from its first state.
fn start_root(def: Arc<StateMachine>, info: ExecutionInfo) -> coordinator::engine::cursor::Cursor {
    let engine = Engine::new(def, info);
    let mut next = 1;
    let mut tx = Tx::new(Utc::now(), 0.0, &mut next);
    engine.start(&mut tx)
}

#[async_trait::async_trait]
impl ApiStore for EmbeddedStore {
    async fn machine(&self, name: &str) -> Result<Option<MachineRecord>, ApiError> {
        disk::read_json(&self.inner.layout.machine(name, ".json"))
            .map_err(io("reading a state machine"))
    }

    async fn create_machine(&self, record: &MachineRecord) -> Result<MachineRecord, ApiError> {
        let _w = self.inner.writing.lock().await;
        if let Some(existing) = self.machine(&record.name).await? {
            return Ok(existing);
        }
        let l = &self.inner.layout;
        let revision = Revision {
            update_ms: record.creation_ms,
            revision_id: None,
        };
        let revisions = HashMap::from([(
            revision_key(&definition_id(&record.definition), &record.role_arn),
            revision,
        )]);
        let saving = io("saving a state machine");
        disk::write_json(&l.machine(&record.name, ".revisions.json"), &revisions)
            .map_err(&saving)?;
        // Last: the machine exists once its record does.
        disk::write_json(&l.machine(&record.name, ".json"), record).map_err(&saving)?;
        Ok(record.clone())
    }

    async fn update_machine(&self, record: &MachineRecord) -> Result<bool, ApiError> {
        let _w = self.inner.writing.lock().await;
        if self.machine(&record.name).await?.is_none() {
            return Ok(false);
        }
        let l = &self.inner.layout;
        let path = l.machine(&record.name, ".revisions.json");
        let saving = io("saving a state machine");
        let mut revisions: HashMap<String, Revision> =
            disk::read_json(&path).map_err(&saving)?.unwrap_or_default();
        revisions.insert(
            revision_key(&definition_id(&record.definition), &record.role_arn),
            Revision {
                update_ms: record.update_ms.unwrap_or(record.creation_ms),
                revision_id: record.revision_id.clone(),
            },
        );
        disk::write_json(&path, &revisions).map_err(&saving)?;
        disk::write_json(&l.machine(&record.name, ".json"), record).map_err(&saving)?;
        Ok(true)
    }

    async fn delete_machine(&self, name: &str) -> Result<(), ApiError> {
        let _w = self.inner.writing.lock().await;
        let l = &self.inner.layout;
        // The record first: once it is gone the machine is.
        for suffix in [".json", ".tags.json", ".revisions.json", ".executions"] {
            match std::fs::remove_file(l.machine(name, suffix)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("deleting a state machine")(e));
                }
                _ => {}
            }
        }
        disk::sync_dir(&l.machines()).map_err(io("deleting a state machine"))?;
        for m in lock(&self.inner.index).executions.values_mut() {
            if m.machine == name {
                m.listed = false;
            }
        }
        Ok(())
    }

    async fn machines(&self) -> Result<Vec<MachineRecord>, ApiError> {
        let reading = io("listing state machines");
        let mut out: Vec<MachineRecord> = Vec::new();
        for entry in std::fs::read_dir(self.inner.layout.machines()).map_err(&reading)? {
            let path = entry.map_err(&reading)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || !name.ends_with(".json") || name.matches('.').count() > 1 {
                continue; // tags, revisions, temporary files
            }
            if let Some(m) = disk::read_json(&path).map_err(&reading)? {
                out.push(m);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn revision(
        &self,
        machine: &str,
        definition_id: &str,
        role_arn: &str,
    ) -> Result<Option<Revision>, ApiError> {
        let revisions: HashMap<String, Revision> =
            disk::read_json(&self.inner.layout.machine(machine, ".revisions.json"))
                .map_err(io("reading revisions"))?
                .unwrap_or_default();
        Ok(revisions
            .get(&revision_key(definition_id, role_arn))
            .cloned())
    }

    async fn tags(&self, machine: &str) -> Result<Vec<(String, String)>, ApiError> {
        let tags: std::collections::BTreeMap<String, String> =
            disk::read_json(&self.inner.layout.machine(machine, ".tags.json"))
                .map_err(io("reading tags"))?
                .unwrap_or_default();
        Ok(tags.into_iter().collect())
    }

    async fn tag(
        &self,
        machine: &str,
        tags: &[(String, String)],
        max: usize,
    ) -> Result<Result<(), TagRefused>, ApiError> {
        let _w = self.inner.writing.lock().await;
        if self.machine(machine).await?.is_none() {
            return Ok(Err(TagRefused::NoMachine));
        }
        let mut all: std::collections::BTreeMap<String, String> =
            self.tags(machine).await?.into_iter().collect();
        all.extend(tags.iter().cloned());
        if all.len() > max {
            return Ok(Err(TagRefused::TooMany));
        }
        disk::write_json(&self.inner.layout.machine(machine, ".tags.json"), &all)
            .map_err(io("saving tags"))?;
        Ok(Ok(()))
    }

    async fn untag(&self, machine: &str, keys: &[String]) -> Result<(), ApiError> {
        let _w = self.inner.writing.lock().await;
        let mut all: std::collections::BTreeMap<String, String> =
            self.tags(machine).await?.into_iter().collect();
        for k in keys {
            all.remove(k);
        }
        disk::write_json(&self.inner.layout.machine(machine, ".tags.json"), &all)
            .map_err(io("saving tags"))
    }

    async fn start_execution(
        &self,
        machine: &MachineRecord,
        def: Arc<StateMachine>,
        info: &ExecutionInfo,
    ) -> Result<(), ApiError> {
        let executor = self.executor(&def).await?;
        let _w = self.inner.writing.lock().await;
        let arn = &info.execution_arn;
        if lock(&self.inner.index).executions.contains_key(arn) {
            return Err(ApiError::new(
                "ExecutionAlreadyExists",
                format!("Execution Already Exists: '{arn}'"),
            ));
        }
        let l = &self.inner.layout;
        let dir = l.execution(&machine.name, &info.name);
        let saving = io("saving the execution");
        disk::write_atomic(&dir.join("definition.json"), machine.definition.as_bytes())
            .map_err(&saving)?;
        let record = ExecRecord {
            info: info.clone(),
            status: Status::Running,
            output: None,
            error: None,
            cause: None,
            stop_date: None,
            definition_id: definition_id(&machine.definition),
            redrive_token: None,
        };
        disk::write_json(&dir.join("record.json"), &record).map_err(&saving)?;
        disk::append_line(&l.machine(&machine.name, ".executions"), arn).map_err(&saving)?;
        lock(&self.inner.index).executions.insert(
            arn.clone(),
            ExecMeta {
                machine: machine.name.clone(),
                name: info.name.clone(),
                start_ms: info.start_time.timestamp_millis(),
                status: Status::Running,
                stop_date: None,
                redrive_count: 0,
                redrive_date: None,
                listed: true,
                live: None,
            },
        );
        self.spawn(def, info.clone(), executor, None)
    }

    async fn execution_exists(&self, arn: &str) -> Result<bool, ApiError> {
        Ok(lock(&self.inner.index).executions.contains_key(arn))
    }

    async fn executions(&self, machine: &str) -> Result<Vec<(i64, String)>, ApiError> {
        let index = lock(&self.inner.index);
        let mut out: Vec<(i64, String)> = index
            .executions
            .iter()
            .filter(|(_, m)| m.listed && m.machine == machine)
            .map(|(arn, m)| (m.start_ms, arn.clone()))
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        Ok(out)
    }

    async fn statuses(&self, arns: &[&str]) -> Result<Vec<Option<ListRow>>, ApiError> {
        let index = lock(&self.inner.index);
        Ok(arns
            .iter()
            .map(|a| {
                index.executions.get(*a).map(|m| ListRow {
                    status: m.status.as_str().to_string(),
                    stop_date: m.stop_date,
                    redrive_count: m.redrive_count,
                    redrive_date: m.redrive_date,
                })
            })
            .collect())
    }

    /// Runs in a task of its own, in memory only: nothing of it reaches the disk, so a
    /// restart of `serve` forgets it (AWS keeps no express execution either).
    async fn start_unlisted(
        &self,
        _definition: &str,
        def: Arc<StateMachine>,
        info: &ExecutionInfo,
    ) -> Result<(), ApiError> {
        let executor = self.executor(&def).await?;
        let (opts, info) = (self.options(), info.clone());
        tokio::spawn(async move {
            let arn = info.execution_arn.clone();
            let r = run_execution(def, info, executor, opts).await;
            tracing::info!(execution = %arn, status = r.status.as_str(), "express execution ended");
        });
        Ok(())
    }

    /// Runs in this task, in memory only; past `limit` the run is dropped, which stops it.
    async fn run_unlisted(
        &self,
        _definition: &str,
        def: Arc<StateMachine>,
        info: &ExecutionInfo,
        limit: Duration,
    ) -> Result<Option<ExecutionResult>, ApiError> {
        let executor = self.executor(&def).await?;
        let run = run_execution(def, info.clone(), executor, self.options());
        Ok(tokio::time::timeout(limit, run).await.ok())
    }

    async fn describe(&self, arn: &str) -> Result<ExecutionResult, ApiError> {
        let (_, r) = self.record(arn)?;
        let error = match (&r.error, &r.cause) {
            (None, None) => None,
            (e, c) => Some(StatesError::new(
                e.clone().unwrap_or_default(),
                c.clone().unwrap_or_default(),
            )),
        };
        Ok(ExecutionResult {
            info: r.info,
            status: r.status,
            output: r.output,
            error,
            stop_date: r.stop_date.unwrap_or_else(Utc::now),
            events: Vec::new(),
            transitions: 0,
        })
    }

    async fn history(&self, arn: &str) -> Result<Vec<Event>, ApiError> {
        let dir = self.meta_dir(arn)?;
        disk::read_history(&dir.join("history.jsonl")).map_err(io("reading the history"))
    }

    async fn execution_definition(&self, arn: &str) -> Result<(String, String), ApiError> {
        let (dir, r) = self.record(arn)?;
        let text = std::fs::read_to_string(dir.join("definition.json"))
            .map_err(io("reading the execution's definition"))?;
        Ok((r.definition_id, text))
    }

    async fn stop(&self, arn: &str, error: &str, cause: &str) -> Result<(), ApiError> {
        let Some(live) = self.live(arn) else {
            return Ok(()); // ended meanwhile
        };
        let _ = live
            .control
            .send(Control::Stop(StatesError::new(error, cause)));
        // Answered once ABORTED is on disk, so that a restart cannot undo the stop.
        let mut ended = live.ended.clone();
        tokio::time::timeout(STOP_PATIENCE, ended.wait_for(|e| *e))
            .await
            .map_err(|_| {
                ApiError::internal(format!(
                    "the execution did not stop within {} s",
                    STOP_PATIENCE.as_secs()
                ))
            })?
            .map_err(|_| ApiError::internal("the execution's run ended without its record"))?;
        Ok(())
    }

    async fn send_task(
        &self,
        token: &str,
        answer: TokenAnswer,
    ) -> Result<Result<(), TokenRefused>, ApiError> {
        let Some(decoded) = coordinator::engine::token::decode(token) else {
            return Ok(Err(TokenRefused::Invalid));
        };
        let arn = &decoded.step.execution;
        let Some(live) = self.live(arn) else {
            // Its execution ended (a restart of serve ends the running ones): no task of it
            // waits any more. A token of no execution here was never handed out.
            let known = lock(&self.inner.index).executions.contains_key(arn);
            return Ok(Err(if known {
                TokenRefused::TimedOut
            } else {
                TokenRefused::Invalid
            }));
        };
        let (reply, taken) = tokio::sync::oneshot::channel();
        let sent = live.control.send(Control::Token {
            token: token.to_string(),
            answer,
            reply,
        });
        if sent.is_err() {
            return Ok(Err(TokenRefused::TimedOut));
        }
        // The run answers between two engine steps; one that ends first drops `reply`.
        Ok(taken.await.unwrap_or(Err(TokenRefused::TimedOut)))
    }

    async fn redrive(&self, arn: &str, client_token: Option<&str>) -> Result<Redriven, ApiError> {
        let _w = self.inner.writing.lock().await;
        let (dir, mut record) = self.record(arn)?;
        if let (Some(t), Some(seen)) = (client_token, &record.redrive_token)
            && t == seen
        {
            return Ok(Redriven {
                count: record.info.redrive_count,
                date: record.info.redrive_date.unwrap_or_else(Utc::now),
                kept_children: 0,
                repeated: true,
            });
        }
        if matches!(record.status, Status::Succeeded | Status::Running) {
            return Err(ApiError::new(
                "ExecutionNotRedrivable",
                format!(
                    "Execution is {} and cannot be redriven",
                    record.status.as_str()
                ),
            ));
        }
        let text = std::fs::read_to_string(dir.join("definition.json"))
            .map_err(io("reading the execution's definition"))?;
        let def = Arc::new(parse_definition(&text).map_err(|e| {
            ApiError::internal(format!("the definition of {arn} no longer parses: {e}"))
        })?);
        let executor = self.executor(&def).await?;
        let history =
            disk::read_history(&dir.join("history.jsonl")).map_err(io("reading the history"))?;
        let next_event_id = history.last().map_or(1, |e| e.id + 1);
        let root = match disk::read_json(&dir.join("resume.json"))
            .map_err(io("reading where the redrive resumes"))?
        {
            Some(root) => root,
            None => start_root(def.clone(), record.info.clone()),
        };
        let now = Utc::now();
        record.info.redrive_count += 1;
        record.info.redrive_date = Some(now);
        record.status = Status::Running;
        record.output = None;
        record.error = None;
        record.cause = None;
        record.stop_date = None;
        record.redrive_token = client_token.map(str::to_string);
        disk::write_json(&dir.join("record.json"), &record).map_err(io("saving the redrive"))?;
        let count = record.info.redrive_count;
        self.spawn(
            def,
            record.info,
            executor,
            Some(Resume {
                root,
                next_event_id,
            }),
        )?;
        Ok(Redriven {
            count,
            date: now,
            kept_children: 0,
            repeated: false,
        })
    }

    async fn list_map_runs(&self, execution: &str) -> Result<Vec<Value>, ApiError> {
        let dir = self.meta_dir(execution)?;
        let records = match self.live(execution) {
            Some(l) => lock(&l.map_runs).records.clone(),
            None => {
                MapRuns::load(&dir.join("mapruns.json"))
                    .map_err(io("reading map runs"))?
                    .records
            }
        };
        let mut runs: Vec<Value> = records.into_values().collect();
        runs.sort_by_key(|r| r["startDate"].as_i64().unwrap_or(0));
        Ok(runs.iter().map(list_item).collect())
    }

    async fn describe_map_run(&self, map_run: &str) -> Result<Value, ApiError> {
        let (r, counts) = self.map_run(map_run)?;
        Ok(describe_doc(&r, counts))
    }

    async fn update_map_run(&self, map_run: &str, limits: LimitsUpdate) -> Result<(), ApiError> {
        let _w = self.inner.writing.lock().await;
        let missing = || ApiError::from(MapRunError::DoesNotExist(map_run.into()));
        let execution = lock(&self.inner.index)
            .map_runs
            .get(map_run)
            .cloned()
            .ok_or_else(missing)?;
        let Some(live) = self.live(&execution) else {
            return Err(MapRunError::Ended(map_run.into()).into());
        };
        let cursor = {
            let mut runs = lock(&live.map_runs);
            let r = runs.records.get_mut(map_run).ok_or_else(missing)?;
            if r["status"] != "RUNNING" {
                return Err(MapRunError::Ended(map_run.into()).into());
            }
            if let Some(n) = limits.max_concurrency {
                r["maxConcurrency"] = json!(n);
            }
            if let Some(n) = limits.tolerated_count {
                r["toleratedFailureCount"] = json!(n);
            }
            if let Some(p) = limits.tolerated_percentage {
                r["toleratedFailurePercentage"] = json!(p);
            }
            let cursor = r["cursor"].as_str().unwrap_or_default().to_string();
            runs.save().map_err(io("saving the map run"))?;
            cursor
        };
        let _ = live.control.send(Control::UpdateLimits {
            map: cursor,
            limits,
        });
        Ok(())
    }

    async fn newest_map_run_children(
        &self,
        map_run: &str,
        status: Option<&str>,
        take: usize,
    ) -> Result<(Vec<Value>, bool), ApiError> {
        let (r, _) = self.map_run(map_run)?;
        let reader = crate::cli::map_runs::bucket_reader(&self.inner.data_dir);
        Ok(newest_children_from_files(
            map_run, &r, status, take, reader,
        )?)
    }
}

impl EmbeddedStore {
    /// A map run's facts and counts.
    fn map_run(&self, map_run: &str) -> Result<(Value, Value), ApiError> {
        let missing = || ApiError::from(MapRunError::DoesNotExist(map_run.into()));
        let execution = lock(&self.inner.index)
            .map_runs
            .get(map_run)
            .cloned()
            .ok_or_else(missing)?;
        let found = match self.live(&execution) {
            Some(l) => lock(&l.map_runs).with_counts(map_run),
            None => {
                let dir = self.meta_dir(&execution)?;
                MapRuns::load(&dir.join("mapruns.json"))
                    .map_err(io("reading map runs"))?
                    .with_counts(map_run)
            }
        };
        found.ok_or_else(missing)
    }
}
