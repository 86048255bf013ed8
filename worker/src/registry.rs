//! The tasks a `mapfleet-worker` (and embedded mode) serves.

use std::path::{Path, PathBuf};

use crate::face::models::ModelPaths;
use crate::photo::{
    LocalPaths, PhotoConfig, PhotoContext, PhotoStores, SetupError, StoresAt, register_photo_tasks,
};
use crate::task::Registry;

/// What goes into [`default_registry`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryOptions {
    /// Also register test-only tasks (`crash`). Never in production.
    pub test_tasks: bool,
}

/// The built-in utility tasks (`echo`, `sleep`, `fail`, and `crash` for tests).
pub fn default_registry(opts: RegistryOptions) -> Registry {
    let mut registry = Registry::new();
    crate::builtin::register(&mut registry, opts.test_tasks);
    registry
}

/// Where the face models are: `MAPFLEET_MODELS_DIR`, else `<data-dir>/models` (where
/// `deploy/setup-models.sh` puts them by default).
pub fn models_dir(data_dir: &Path) -> PathBuf {
    match std::env::var_os("MAPFLEET_MODELS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => data_dir.join("models"),
    }
}

/// The rider-photo tasks over a local data directory (buckets, face collection, metadata
/// table), with `sessions` ONNX sessions per model. A clear error names the models directory
/// when the models are not there.
pub async fn local_photo_context(
    data_dir: &Path,
    sessions: usize,
) -> Result<PhotoContext, SetupError> {
    photo_context(data_dir, sessions, &StoresAt::DataDir).await
}

/// [`local_photo_context`] with the face collection and metadata table where `at` says
/// (buckets stay under the data dir).
pub async fn photo_context(
    data_dir: &Path,
    sessions: usize,
    at: &StoresAt,
) -> Result<PhotoContext, SetupError> {
    let paths = LocalPaths {
        data_dir: data_dir.to_path_buf(),
        models_dir: models_dir(data_dir),
    };
    // Before connecting to anything: missing models are the likeliest mistake.
    ModelPaths::in_dir(&paths.models_dir).check()?;
    let stores = PhotoStores::open(at, data_dir).await?;
    PhotoContext::load(&paths, PhotoConfig::default(), sessions.max(1), stores).await
}

/// Adds the rider-photo tasks of [`local_photo_context`] to `registry`.
pub async fn add_local_photo_tasks(
    registry: &mut Registry,
    data_dir: &Path,
    sessions: usize,
) -> Result<(), SetupError> {
    add_photo_tasks(registry, data_dir, sessions, &StoresAt::DataDir).await
}

/// Adds the rider-photo tasks of [`photo_context`] to `registry`.
pub async fn add_photo_tasks(
    registry: &mut Registry,
    data_dir: &Path,
    sessions: usize,
    at: &StoresAt,
) -> Result<(), SetupError> {
    let ctx = photo_context(data_dir, sessions, at).await?;
    register_photo_tasks(registry, ctx);
    Ok(())
}
