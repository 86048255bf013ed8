//! Embedded mode's task executor: the worker's own tasks, called in-process.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use worker::task::Registry;

use crate::asl::definition::{StateKind, StateMachine};
use crate::asl::error::StatesError;
use crate::embedded::{TaskExecutor, unserved};

/// A [`TaskExecutor`] over a worker [`Registry`].
pub struct RegistryExecutor {
    registry: Registry,
}

impl RegistryExecutor {
    pub fn new(registry: Registry) -> RegistryExecutor {
        RegistryExecutor { registry }
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

    async fn execute(&self, resource: &str, input: Value) -> Result<Value, StatesError> {
        let Some(task) = self.registry.resolve(resource) else {
            return Err(unserved(resource, &self.resources()));
        };
        task.run(input)
            .await
            .map_err(|f| StatesError::new(f.error, f.cause))
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
        worker::registry::add_local_photo_tasks(&mut registry, data_dir, sessions)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(Arc::new(RegistryExecutor::new(registry)))
}
