//! mapfleet's Rekognition-compatible endpoint: Amazon Rekognition's JSON API (awsJson 1.1,
//! `POST /` with `X-Amz-Target: RekognitionService.<Operation>`) served by a [`FaceEngine`],
//! normally the local one. It lets the AWS face engine ([`crate::face::RekognitionEngine`])
//! and any Rekognition client run offline against YuNet + SFace; `mapfleet rekognition serve`
//! runs it.
//!
//! Operations: CreateCollection, DetectFaces, SearchFacesByImage, IndexFaces, ListFaces,
//! DeleteFaces, CompareFaces. Images are `Image.Bytes` (base64) or `Image.S3Object`, read
//! through the engine's object store. Errors are Rekognition's bodies
//! (`{"__type": "InvalidS3ObjectException", "Message": ...}`, HTTP 400; 500 for
//! `InternalServerError`).
//!
//! - [`server`]: HTTP, the target header, body limits, error bodies, shutdown.
//! - [`ops`]: one function per operation.
//! - [`wire`]: request and answer shapes, parameter checks.

mod ops;
mod server;
mod wire;

use std::path::Path;
use std::sync::Arc;

pub use ops::OPERATIONS;
pub use server::{CONTENT_TYPE_JSON, Endpoint, EndpointOptions, Error, SIGNING_NAME};

use crate::face::models::ModelError;
use crate::face::{
    FaceEngine, LocalCollections, LocalEngine, LocalEngineConfig, ModelPaths, Models,
};
use crate::store::ObjectStore;

/// The local engine the endpoint serves: models from `models_dir` (`sessions` ONNX sessions
/// per model), collections under `<data_dir>/collections`, images from `store`.
pub async fn local_engine(
    data_dir: &Path,
    models_dir: &Path,
    sessions: usize,
    store: Arc<dyn ObjectStore>,
) -> Result<Arc<dyn FaceEngine>, ModelError> {
    let models = Models::load_blocking(ModelPaths::in_dir(models_dir), sessions.max(1)).await?;
    let collections = Arc::new(LocalCollections::new(data_dir.join("collections")));
    Ok(Arc::new(LocalEngine::new(
        store,
        Arc::new(models),
        collections,
        LocalEngineConfig::default(),
    )))
}
