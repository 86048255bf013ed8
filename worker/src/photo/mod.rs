//! The rider-photo tasks of the Wild Rydes workshop, one file per task, each behaving like the
//! workshop's Lambda function (messages, outputs and error names; see the workshop notes §2):
//!
//! | resource (`arn:mapfleet:task:::NAME`) | workshop function | file |
//! |---|---|---|
//! | `face-detection` | FaceDetectionFunction | [`face_detection`] |
//! | `face-search` | FaceSearchFunction | [`face_search`] |
//! | `index-face` | IndexFaceFunction | [`index_face`] |
//! | `thumbnail` | ThumbnailFunction | [`thumbnail`] |
//! | `persist-metadata` | PersistMetadataFunction | [`persist_metadata`] |
//! | `notification-placeholder` | NotificationPlaceholderFunction | [`notification`] |
//!
//! They share a [`PhotoContext`]: the object store, the face engine, the metadata table and the
//! [`PhotoConfig`]. [`PhotoContext::local`] builds the embedded one on a data dir;
//! [`PhotoContext::load`] takes the [`PhotoStores`] to use (the fleet's Redis on workers).

pub mod face_detection;
pub mod face_search;
pub mod index_face;
pub mod notification;
pub mod persist_metadata;
pub mod setup;
pub mod stores;
pub mod thumbnail;
pub mod thumbnailer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::face::decoded::DecodedImages;
use crate::face::{FaceEngine, FaceError, LocalEngine, LocalEngineConfig, ModelPaths, Models};
use crate::store::{LocalStore, MetadataTable, ObjectStore};
use crate::task::{Registry, TaskFailure};

pub use setup::SetupError;
pub use stores::{DEFAULT_SHARED_ANALYSIS, PhotoStores, StoresAt};

/// The default bucket of rider photos (the workshop's `RiderPhotoS3Bucket` output).
pub const DEFAULT_PHOTO_BUCKET: &str = "mapfleet-rider-photos";
/// The default thumbnail bucket (`ThumbnailS3Bucket`).
pub const DEFAULT_THUMBNAIL_BUCKET: &str = "mapfleet-rider-photos-thumbnails";
/// The default metadata table (`RiderPhotoDDBTable`).
pub const DEFAULT_METADATA_TABLE: &str = "mapfleet-rider-photos";
/// The default face collection (the workshop's `RekognitionCollectionID` default).
pub const DEFAULT_COLLECTION_ID: &str = "rider-photos";

/// Settings of the photo tasks (the workshop's Lambda environment variables).
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoConfig {
    /// `REKOGNITION_COLLECTION_ID`. Default `rider-photos`.
    pub collection_id: String,
    /// `THUMBNAIL_BUCKET`. Default `mapfleet-rider-photos-thumbnails`.
    pub thumbnail_bucket: String,
    /// `MAX_WIDTH` and `MAX_HEIGHT` of thumbnails. Default 300×300.
    pub thumbnail_max_width: u32,
    pub thumbnail_max_height: u32,
    /// JPEG quality of thumbnails (1–100). Default 85.
    pub thumbnail_jpeg_quality: u8,
    /// CheckFaceDuplicate's `FaceMatchThreshold` (0–100 similarity). Default 70.
    pub face_match_threshold: f32,
    /// Objects larger than this are refused. Default 15 MiB (Rekognition's S3 limit).
    pub max_object_bytes: u64,
    /// Images whose header announces more pixels are refused before decoding. Default 40 MP.
    pub max_pixels: u64,
}

impl Default for PhotoConfig {
    fn default() -> Self {
        Self {
            collection_id: DEFAULT_COLLECTION_ID.into(),
            thumbnail_bucket: DEFAULT_THUMBNAIL_BUCKET.into(),
            thumbnail_max_width: 300,
            thumbnail_max_height: 300,
            thumbnail_jpeg_quality: 85,
            face_match_threshold: crate::face::similarity::MATCH_THRESHOLD,
            max_object_bytes: crate::face::MAX_OBJECT_BYTES,
            max_pixels: 40_000_000,
        }
    }
}

/// What the photo tasks work with.
#[derive(Clone)]
pub struct PhotoContext {
    pub store: Arc<dyn ObjectStore>,
    pub faces: Arc<dyn FaceEngine>,
    pub metadata: Arc<dyn MetadataTable>,
    pub config: PhotoConfig,
    /// Photos the local engine decoded in full, for the thumbnail task to reuse (none with
    /// another engine).
    pub decoded: Option<Arc<DecodedImages>>,
}

/// Where the embedded (local) context keeps things, under one data dir:
/// `buckets/<bucket>/<key>`, `collections/<id>.json`, `tables/<table>.json`.
#[derive(Debug, Clone)]
pub struct LocalPaths {
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
}

impl LocalPaths {
    /// `models_dir` defaults to `<data-dir>/models`, where `deploy/setup-models.sh` puts them.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            models_dir: data_dir.join("models"),
            data_dir,
        }
    }
}

impl PhotoContext {
    /// The embedded context: local buckets, local face engine and collection, local table.
    /// Loads the models (`sessions` ONNX sessions per model: the number of photos analysed at
    /// once), creates the two default buckets and the collection if missing.
    pub async fn local(
        paths: &LocalPaths,
        config: PhotoConfig,
        sessions: usize,
    ) -> Result<Self, SetupError> {
        let stores = PhotoStores::local(&paths.data_dir);
        Self::load(paths, config, sessions, stores).await
    }

    /// [`PhotoContext::local`] with the face collection and metadata table in `stores`
    /// (buckets stay under the data dir).
    pub async fn load(
        paths: &LocalPaths,
        config: PhotoConfig,
        sessions: usize,
        stores: PhotoStores,
    ) -> Result<Self, SetupError> {
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(paths.data_dir.join("buckets")));
        let models = ModelPaths::in_dir(&paths.models_dir);
        Self::load_models(models, config, sessions, store, stores).await
    }

    /// The local face engine on `models` (loaded here, `sessions` ONNX sessions per model),
    /// over `store` and `stores`.
    pub async fn load_models(
        models: ModelPaths,
        config: PhotoConfig,
        sessions: usize,
        store: Arc<dyn ObjectStore>,
        stores: PhotoStores,
    ) -> Result<Self, SetupError> {
        let models = Models::load_blocking(models, sessions).await?;
        let engine_config = LocalEngineConfig {
            max_object_bytes: config.max_object_bytes,
            max_pixels: config.max_pixels,
            ..LocalEngineConfig::default()
        };
        Self::with_stores(Arc::new(models), config, engine_config, store, stores).await
    }

    /// [`PhotoContext::local`] with models already loaded (tests and benchmarks share them).
    pub async fn local_with_models(
        data_dir: &Path,
        models: Arc<Models>,
        config: PhotoConfig,
        engine_config: LocalEngineConfig,
        store: Arc<dyn ObjectStore>,
    ) -> Result<Self, SetupError> {
        let stores = PhotoStores::local(data_dir);
        Self::with_stores(models, config, engine_config, store, stores).await
    }

    /// The context over given stores, models already loaded.
    pub async fn with_stores(
        models: Arc<Models>,
        config: PhotoConfig,
        engine_config: LocalEngineConfig,
        store: Arc<dyn ObjectStore>,
        stores: PhotoStores,
    ) -> Result<Self, SetupError> {
        let decoded = Arc::new(DecodedImages::default());
        let engine = LocalEngine::new(store.clone(), models, stores.collections, engine_config)
            .with_decoded_images(decoded.clone())
            .with_shared_analyses(stores.analyses);
        match engine.create_collection(&config.collection_id).await {
            Ok(()) | Err(FaceError::ResourceAlreadyExists(_)) => {}
            Err(error) => {
                return Err(SetupError::Collection {
                    collection_id: config.collection_id.clone(),
                    error,
                });
            }
        }
        create_buckets(store.as_ref(), &config).await?;
        Ok(Self {
            store,
            faces: Arc::new(engine),
            metadata: stores.metadata,
            config,
            decoded: Some(decoded),
        })
    }
}

/// Creates the photo tasks' two buckets, the default one and `config`'s thumbnail bucket
/// (an existing bucket is only checked).
pub async fn create_buckets(
    store: &dyn ObjectStore,
    config: &PhotoConfig,
) -> Result<(), SetupError> {
    for bucket in [DEFAULT_PHOTO_BUCKET, config.thumbnail_bucket.as_str()] {
        store
            .create_bucket(bucket)
            .await
            .map_err(|error| SetupError::Bucket {
                bucket: bucket.to_string(),
                error,
            })?;
    }
    Ok(())
}

/// Registers the six photo tasks.
pub fn register_photo_tasks(registry: &mut Registry, ctx: PhotoContext) {
    let ctx = Arc::new(ctx);
    registry.register(Arc::new(face_detection::FaceDetection::new(ctx.clone())));
    registry.register(Arc::new(face_search::FaceSearch::new(ctx.clone())));
    registry.register(Arc::new(index_face::IndexFace::new(ctx.clone())));
    registry.register(Arc::new(thumbnail::Thumbnail::new(ctx.clone())));
    registry.register(Arc::new(persist_metadata::PersistMetadata::new(
        ctx.clone(),
    )));
    registry.register(Arc::new(notification::NotificationPlaceholder));
}

/// The six task names, in workflow order.
pub const TASK_NAMES: [&str; 6] = [
    "face-detection",
    "face-search",
    "index-face",
    "thumbnail",
    "persist-metadata",
    "notification-placeholder",
];

/// The Lambdas' key decoding: `decodeURIComponent(key.replace(/\+/g, ' '))`.
pub fn decode_s3_key(key: &str) -> Result<String, TaskFailure> {
    let malformed = || TaskFailure::lambda("URIError", "URI malformed");
    let src = key.replace('+', " ");
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(malformed)?;
            let s = std::str::from_utf8(hex).map_err(|_| malformed())?;
            out.push(u8::from_str_radix(s, 16).map_err(|_| malformed())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| malformed())
}

/// A string field of the task input, or the TypeError Node would have thrown.
pub(crate) fn str_field<'a>(input: &'a Value, field: &str) -> Result<&'a str, TaskFailure> {
    input.get(field).and_then(Value::as_str).ok_or_else(|| {
        TaskFailure::lambda(
            "TypeError",
            &format!("Cannot read property of undefined: event.{field} is missing or not a string"),
        )
    })
}

/// The S3 object the input names: `s3Bucket`, and the decoded `s3Key`.
pub(crate) fn input_object(input: &Value) -> Result<(String, String), TaskFailure> {
    let bucket = str_field(input, "s3Bucket")?.to_owned();
    let key = decode_s3_key(str_field(input, "s3Key")?)?;
    Ok((bucket, key))
}

/// An engine error passed through as the Lambda would (retryable when transient).
pub(crate) fn passthrough(e: FaceError) -> TaskFailure {
    let mut f = TaskFailure::lambda(e.error_type(), &e.to_string());
    f.retryable = e.is_retryable();
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_decoded_like_the_lambdas() {
        assert_eq!(
            decode_s3_key("1_happy_face.jpg").unwrap(),
            "1_happy_face.jpg"
        );
        assert_eq!(
            decode_s3_key("my+photo%20one%2B.jpg").unwrap(),
            "my photo one+.jpg"
        );
        assert_eq!(decode_s3_key("caf%C3%A9.png").unwrap(), "café.png");
        for bad in ["%", "%4", "%zz", "%C3"] {
            assert_eq!(decode_s3_key(bad).unwrap_err().error, "URIError", "{bad}");
        }
    }
}
