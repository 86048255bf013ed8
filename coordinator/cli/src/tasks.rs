//! Embedded mode's task executor: the worker's own tasks, called in-process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use worker::policy::{TaskEnd, retry_backoff, run_task};
use worker::task::Registry;

use crate::asl::definition::{StateKind, StateMachine};
use crate::asl::error::StatesError;
use crate::embedded::TaskExecutor;

/// A [`TaskExecutor`] over a worker [`Registry`], running each task by the worker's own
/// policy ([`worker::policy`]): the same deadline, panic and unknown-resource errors as on the
/// fleet, and a transient failure retried with the worker's backoff up to the fleet's default
/// delivery limit before it fails as `Mapfleet.StepDeadLettered`.
pub struct RegistryExecutor {
    registry: Registry,
    deliveries: u32,
}

impl RegistryExecutor {
    pub fn new(registry: Registry) -> RegistryExecutor {
        RegistryExecutor {
            registry,
            deliveries: shared::config::DEFAULT_DELIVERY_LIMIT,
        }
    }
}

#[async_trait::async_trait]
impl TaskExecutor for RegistryExecutor {
    fn serves(&self, resource: &str) -> bool {
        self.registry.resolve(resource).is_some()
    }

    fn resources(&self) -> Vec<String> {
        self.registry.resources().map(str::to_string).collect()
    }

    async fn execute(
        &self,
        resource: &str,
        input: Value,
        budget: Option<Duration>,
    ) -> Result<Value, StatesError> {
        let mut redeliveries = 0;
        loop {
            match run_task(&self.registry, resource, input.clone(), budget).await {
                TaskEnd::Succeeded(output) => return Ok(output),
                TaskEnd::Failed(e) => return Err(e),
                TaskEnd::Retry(failure) if redeliveries + 1 >= self.deliveries => {
                    tracing::warn!(resource, error = %failure.error, cause = %failure.cause, "transient failure on every attempt");
                    return Err(StatesError::dead_lettered(
                        resource,
                        &format!(
                            "embedded mode, last failure {}: {}",
                            failure.error, failure.cause
                        ),
                        self.deliveries,
                    ));
                }
                TaskEnd::Retry(failure) => {
                    let backoff = retry_backoff(redeliveries);
                    tracing::warn!(resource, error = %failure.error, cause = %failure.cause, ?backoff, "transient failure; running the task again");
                    tokio::time::sleep(backoff).await;
                    redeliveries += 1;
                }
            }
        }
    }
}

/// Whether a definition calls one of the rider-photo tasks (which need the face models).
pub fn uses_photo_tasks(def: &StateMachine) -> bool {
    def.graphs
        .iter()
        .flat_map(|g| g.states.iter())
        .any(|s| match &s.kind {
            StateKind::Task(t) => worker::photo::TASK_NAMES
                .iter()
                .any(|n| t.resource == worker::task::resource_arn(n)),
            _ => false,
        })
}

/// The executor `mapfleet run` uses without a fleet: the utility tasks, plus the rider-photo
/// tasks over the data directory when the definition calls them (loading the face models
/// only then).
pub async fn embedded_executor(
    data_dir: &Path,
    def: &StateMachine,
) -> anyhow::Result<Arc<dyn TaskExecutor>> {
    let mut registry = worker::default_registry(worker::RegistryOptions::default());
    if uses_photo_tasks(def) {
        let sessions = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        worker::registry::add_local_photo_tasks(&mut registry, data_dir, sessions).await?;
    }
    Ok(Arc::new(RegistryExecutor::new(registry)))
}
