//! Which object store and face engine the rider-photo tasks use: local (the default: a
//! directory per bucket, YuNet + SFace on this machine) or AWS (S3 and Rekognition, or
//! compatible endpoints such as an S3-compatible server and `mapfleet rekognition serve`).
//!
//! The face collections (with the local engine) and the metadata table are where
//! [`StoresAt`] says: the fleet's Redis or the data dir.

use std::path::Path;
use std::sync::Arc;

use crate::face::{FaceEngine, FaceError, ModelPaths, RekognitionEngine};
use crate::photo::{PhotoConfig, PhotoContext, PhotoStores, SetupError, StoresAt, create_buckets};
use crate::store::{LocalStore, ObjectStore, S3Store};
use crate::task::Registry;

/// The face engine of the photo tasks.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaceEngineKind {
    /// YuNet + SFace on this machine (models from `MAPFLEET_MODELS_DIR`).
    #[default]
    Local,
    /// Amazon Rekognition through the AWS SDK, or a compatible endpoint.
    Aws,
}

/// The object store of the photo tasks.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ObjectStoreKind {
    /// A directory per bucket under `<data-dir>/buckets`.
    #[default]
    Local,
    /// Amazon S3 through the AWS SDK, or an S3-compatible server.
    S3,
}

/// Flags (and `MAPFLEET_*` variables) that choose an object store: the photo tasks', a
/// coordinator's (Distributed Maps' items and result files), `mapfleet rekognition serve`'s.
/// Region and credentials come from the standard AWS chain (`AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, instance roles, ...).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ObjectStoreArgs {
    /// Object store: `local` (`<data-dir>/buckets`), or `s3` (implied by --s3-endpoint).
    #[arg(long, env = "MAPFLEET_OBJECT_STORE", value_enum, default_value_t)]
    pub object_store: ObjectStoreKind,
    /// S3 endpoint URL of an S3-compatible server (path-style addressing), e.g.
    /// `http://127.0.0.1:9000`. Default: the region's Amazon S3 endpoint.
    #[arg(long, env = "MAPFLEET_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
}

impl ObjectStoreArgs {
    /// Whether objects live in S3 (or an S3-compatible server).
    pub fn uses_s3(&self) -> bool {
        self.object_store == ObjectStoreKind::S3 || self.s3_endpoint.is_some()
    }

    /// The object store these flags choose (`<data_dir>/buckets` when local).
    pub async fn object_store(&self, data_dir: &Path) -> Arc<dyn ObjectStore> {
        if self.uses_s3() {
            let sdk = crate::aws::load_config().await;
            Arc::new(S3Store::new(&sdk, self.s3_endpoint.as_deref()))
        } else {
            Arc::new(LocalStore::new(data_dir.join("buckets")))
        }
    }
}

/// Flags (and `MAPFLEET_*` variables) that choose the photo tasks' providers (AWS settings
/// as for [`ObjectStoreArgs`]).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ProviderArgs {
    /// Face engine: `local`, or `aws` (Rekognition; implied by --rekognition-endpoint).
    #[arg(long, env = "MAPFLEET_FACE_ENGINE", value_enum, default_value_t)]
    pub face_engine: FaceEngineKind,
    /// Rekognition endpoint URL, e.g. `http://127.0.0.1:8091` for `mapfleet rekognition
    /// serve`. Default: the region's Amazon Rekognition endpoint.
    #[arg(long, env = "MAPFLEET_REKOGNITION_ENDPOINT")]
    pub rekognition_endpoint: Option<String>,
    /// Where photos and thumbnails live.
    #[command(flatten)]
    pub store: ObjectStoreArgs,
    /// The face collection (the workshop's `REKOGNITION_COLLECTION_ID`).
    #[arg(long, env = "MAPFLEET_COLLECTION_ID", default_value = crate::photo::DEFAULT_COLLECTION_ID)]
    pub collection_id: String,
    /// The thumbnail bucket (the workshop's `THUMBNAIL_BUCKET`).
    #[arg(long, env = "MAPFLEET_THUMBNAIL_BUCKET", default_value = crate::photo::DEFAULT_THUMBNAIL_BUCKET)]
    pub thumbnail_bucket: String,
}

impl ProviderArgs {
    /// Whether faces go to Rekognition (or a compatible endpoint).
    pub fn uses_rekognition(&self) -> bool {
        self.face_engine == FaceEngineKind::Aws || self.rekognition_endpoint.is_some()
    }

    fn photo_config(&self) -> PhotoConfig {
        PhotoConfig {
            collection_id: self.collection_id.clone(),
            thumbnail_bucket: self.thumbnail_bucket.clone(),
            ..PhotoConfig::default()
        }
    }
}

/// The photo tasks' context on the chosen providers. The default buckets and the collection are
/// created when missing (an existing bucket is only checked).
pub async fn photo_context(
    data_dir: &Path,
    sessions: usize,
    args: &ProviderArgs,
    at: &StoresAt,
) -> Result<PhotoContext, SetupError> {
    let config = args.photo_config();
    let store = args.store.object_store(data_dir).await;
    let stores = PhotoStores::open(at, data_dir).await?;
    if !args.uses_rekognition() {
        return local_context(data_dir, sessions, config, store, stores).await;
    }
    let sdk = crate::aws::load_config().await;
    let engine = RekognitionEngine::new(&sdk, args.rekognition_endpoint.as_deref());
    match engine.create_collection(&config.collection_id).await {
        Ok(()) | Err(FaceError::ResourceAlreadyExists(_)) => {}
        Err(error) => {
            return Err(SetupError::RemoteCollection {
                collection_id: config.collection_id.clone(),
                endpoint: engine.endpoint().to_string(),
                error,
            });
        }
    }
    create_buckets(store.as_ref(), &config).await?;
    // Rekognition keeps the faces; the metadata table is where `at` says.
    Ok(PhotoContext {
        store,
        faces: Arc::new(engine) as Arc<dyn FaceEngine>,
        metadata: stores.metadata,
        config,
        decoded: None,
    })
}

/// The local engine over `store` (models checked first, with a hint when missing).
async fn local_context(
    data_dir: &Path,
    sessions: usize,
    config: PhotoConfig,
    store: Arc<dyn ObjectStore>,
    stores: PhotoStores,
) -> Result<PhotoContext, SetupError> {
    let models_dir = crate::registry::models_dir(data_dir);
    let paths = ModelPaths::in_dir(&models_dir);
    paths.check().map_err(SetupError::NoLocalModels)?;
    PhotoContext::load_models(paths, config, sessions.max(1), store, stores).await
}

/// Adds the rider-photo tasks on the chosen providers to `registry`.
pub async fn add_photo_tasks(
    registry: &mut Registry,
    data_dir: &Path,
    sessions: usize,
    args: &ProviderArgs,
    at: &StoresAt,
) -> Result<(), SetupError> {
    let ctx = photo_context(data_dir, sessions, args, at).await?;
    crate::photo::register_photo_tasks(registry, ctx);
    Ok(())
}
