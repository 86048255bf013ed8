//! The seam between the operations (and the console, which reads through them) and where
//! state machines and executions live: [`ApiStore`]. Two stores fill it:
//!
//! - [`FleetStore`](super::store::FleetStore): the fleet's Redis; executions run on the
//!   fleet's coordinators and workers (`--redis`).
//! - [`EmbeddedStore`](super::embedded::EmbeddedStore): files under `<data-dir>/api/`;
//!   executions run in the `serve` process with the worker's tasks, as `mapfleet run` runs
//!   them (no `--redis`).
//!
//! The operations check the request, call the store and shape the answer; a store answers
//! in the engine's types ([`ExecutionResult`], [`Event`]) and the map runs' documents as the
//! fleet writes them ([`coordinator::fleet::map_runs`]), so both modes answer alike.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use coordinator::asl::definition::StateMachine;
use coordinator::embedded::{ExecutionResult, TokenAnswer, TokenRefused};
use coordinator::engine::ExecutionInfo;
use coordinator::engine::cursor::LimitsUpdate;
use coordinator::engine::history::Event;
use coordinator::fleet::redrive::Redriven;

use super::store::{FleetStore, MachineRecord, Revision, TagRefused};
use super::wire::ApiError;

/// The store the API serves from, shared by every request.
pub type Store = Arc<dyn ApiStore>;

/// Where `mapfleet serve` keeps state machines and executions, and how it runs them.
#[async_trait::async_trait]
pub trait ApiStore: Send + Sync {
    /// The fleet's store, for an operation that exists on the fleet only (`None` in
    /// embedded mode).
    fn fleet(&self) -> Option<&FleetStore> {
        None
    }

    // State machines.

    async fn machine(&self, name: &str) -> Result<Option<MachineRecord>, ApiError>;
    /// Stores `record` unless a machine of that name exists; returns the one stored.
    async fn create_machine(&self, record: &MachineRecord) -> Result<MachineRecord, ApiError>;
    /// Replaces an existing machine's record and notes its revision; false when the
    /// machine is gone.
    async fn update_machine(&self, record: &MachineRecord) -> Result<bool, ApiError>;
    /// Forgets a machine, its tags, revisions and list of executions (the executions stay
    /// describable by ARN).
    async fn delete_machine(&self, name: &str) -> Result<(), ApiError>;
    /// Every machine, by name.
    async fn machines(&self) -> Result<Vec<MachineRecord>, ApiError>;
    /// The revision of `machine` that had this definition and role, if it is known.
    async fn revision(
        &self,
        machine: &str,
        definition_id: &str,
        role_arn: &str,
    ) -> Result<Option<Revision>, ApiError>;
    /// A machine's tags, by key.
    async fn tags(&self, machine: &str) -> Result<Vec<(String, String)>, ApiError>;
    /// Adds or replaces tags of an existing machine, keeping at most `max` in all.
    async fn tag(
        &self,
        machine: &str,
        tags: &[(String, String)],
        max: usize,
    ) -> Result<Result<(), TagRefused>, ApiError>;
    async fn untag(&self, machine: &str, keys: &[String]) -> Result<(), ApiError>;

    // Executions.

    /// Starts `info` of `machine` (whose parsed definition is `def`) and notes it in the
    /// machine's list; ExecutionAlreadyExists when the name is taken.
    async fn start_execution(
        &self,
        machine: &MachineRecord,
        def: Arc<StateMachine>,
        info: &ExecutionInfo,
    ) -> Result<(), ApiError>;
    async fn execution_exists(&self, arn: &str) -> Result<bool, ApiError>;
    /// Every execution `machine` started through the API: (start ms, ARN), newest first
    /// (ties by ARN).
    async fn executions(&self, machine: &str) -> Result<Vec<(i64, String)>, ApiError>;
    /// What ListExecutions shows of executions, in the order asked (`None`: gone).
    async fn statuses(&self, arns: &[&str]) -> Result<Vec<Option<ListRow>>, ApiError>;
    /// Starts an execution that the API never lists or describes (an EXPRESS execution)
    /// and does not wait for it. `definition` is `def`'s text.
    async fn start_unlisted(
        &self,
        definition: &str,
        def: Arc<StateMachine>,
        info: &ExecutionInfo,
    ) -> Result<(), ApiError>;
    /// Runs an execution that the API never lists or describes (StartSyncExecution's,
    /// TestState's Task) and returns its end, or `None` when it had not ended within
    /// `limit` (it is then stopped with `States.Timeout`).
    async fn run_unlisted(
        &self,
        definition: &str,
        def: Arc<StateMachine>,
        info: &ExecutionInfo,
        limit: Duration,
    ) -> Result<Option<ExecutionResult>, ApiError>;
    /// The execution as it stands, without its history.
    async fn describe(&self, arn: &str) -> Result<ExecutionResult, ApiError>;
    /// The execution's history events, in order.
    async fn history(&self, arn: &str) -> Result<Vec<Event>, ApiError>;
    /// The definition an execution runs (as submitted) and its id
    /// ([`coordinator::fleet::client::definition_id`]).
    async fn execution_definition(&self, arn: &str) -> Result<(String, String), ApiError>;
    /// Stops a running execution (it ends ABORTED with `error` and `cause`).
    async fn stop(&self, arn: &str, error: &str, cause: &str) -> Result<(), ApiError>;
    /// Redrives an execution that ended FAILED, ABORTED or TIMED_OUT.
    async fn redrive(&self, arn: &str, client_token: Option<&str>) -> Result<Redriven, ApiError>;
    /// SendTaskSuccess, SendTaskFailure or SendTaskHeartbeat with a `.waitForTaskToken`
    /// token, for a store that runs its executions itself (the fleet's tokens go through
    /// its activities' store, `coordinator::fleet::activities`).
    async fn send_task(
        &self,
        token: &str,
        answer: TokenAnswer,
    ) -> Result<Result<(), TokenRefused>, ApiError> {
        let _ = (token, answer);
        Err(ApiError::validation(
            "task tokens are answered through the fleet's activities here",
        ))
    }

    // Distributed Map runs.

    /// ListMapRuns' `mapRuns` of an execution, in the order they started.
    async fn list_map_runs(&self, execution: &str) -> Result<Vec<Value>, ApiError>;
    /// DescribeMapRun's shape, with ISO-8601 dates.
    async fn describe_map_run(&self, map_run: &str) -> Result<Value, ApiError>;
    /// UpdateMapRun: new limits for a running map run.
    async fn update_map_run(&self, map_run: &str, limits: LimitsUpdate) -> Result<(), ApiError>;
    /// The `take` child executions of an ended map run (from its ResultWriter's files),
    /// filtered by status, that ended last, newest first, and whether there are more.
    async fn newest_map_run_children(
        &self,
        map_run: &str,
        status: Option<&str>,
        take: usize,
    ) -> Result<(Vec<Value>, bool), ApiError>;
}

/// What ListExecutions shows of one execution besides its name and start.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRow {
    /// `RUNNING`, `SUCCEEDED`, ...
    pub status: String,
    /// When it ended; `None` while it runs.
    pub stop_date: Option<DateTime<Utc>>,
    /// How many times it was redriven (`redriveCount`, `redriveFilter`).
    pub redrive_count: u32,
    /// When it was last redriven.
    pub redrive_date: Option<DateTime<Utc>>,
}

/// The fleet's client, for an operation that runs on the fleet only; in embedded mode
/// `what` is answered with a ValidationException saying so.
pub fn fleet_only<'a>(
    store: &'a Store,
    what: &str,
) -> Result<&'a coordinator::fleet::client::FleetClient, ApiError> {
    store.fleet().map(|f| &f.fleet).ok_or_else(|| {
        ApiError::validation(format!(
            "{what} runs on the fleet only for now: start mapfleet serve with --redis"
        ))
    })
}
