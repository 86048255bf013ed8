//! The face engine: Rekognition's operations (DetectFaces, SearchFacesByImage, IndexFaces,
//! CreateCollection, ListFaces, DeleteFaces, CompareFaces) behind one trait, [`FaceEngine`].
//!
//! - [`LocalEngine`]: YuNet detection and SFace embeddings run with onnxruntime (the `ort`
//!   crate, `load-dynamic`), models fetched by `deploy/setup-models.sh`.
//! - [`RekognitionEngine`]: Amazon Rekognition (or mapfleet's compatible endpoint) through
//!   `aws-sdk-rekognition`.
//! - [`collection`]: where indexed faces live, behind [`FaceCollections`]:
//!   [`LocalCollections`] under the data dir (embedded mode), [`RedisCollections`]
//!   ([`redis_collection`]) in the fleet's Redis.
//! - [`imagefile`]: bounded decoding (header check before any pixel is decoded).
//! - [`yunet`], [`align`], [`attributes`], [`sunglasses`], [`models`]: the pipeline's pieces.
//! - [`commands`]: the `mapfleet faces ...` debugging commands as library calls.
//!
//! Types serialise with Rekognition's field names, so task outputs look like the workshop's.

pub mod align;
pub mod attributes;
mod cache;
pub mod collection;
pub mod commands;
pub mod decode_budget;
pub mod decoded;
pub mod imagefile;
mod local;
pub mod models;
pub mod redis_collection;
pub mod rekognition;
pub mod shared_analyses;
pub mod similarity;
pub mod sunglasses;
pub mod yunet;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use collection::{FaceCollections, LocalCollections};
pub use local::{LocalEngine, LocalEngineConfig, MAX_OBJECT_BYTES};
pub use models::{ModelPaths, Models};
pub use redis_collection::RedisCollections;
pub use rekognition::RekognitionEngine;
pub use shared_analyses::SharedAnalyses;

/// The embedding model's name, reported as Rekognition's `FaceModelVersion`.
pub const FACE_MODEL_VERSION: &str = "sface-2021dec+yunet-2023mar";

/// A box as ratios of the image's width and height (Rekognition's `BoundingBox`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BoundingBox {
    pub width: f32,
    pub height: f32,
    pub left: f32,
    pub top: f32,
}

/// A facial landmark as ratios of the image's size. Types: `eyeLeft`, `eyeRight`, `nose`,
/// `mouthLeft`, `mouthRight`, where left and right are as seen in the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Landmark {
    #[serde(rename = "Type")]
    pub kind: String,
    pub x: f32,
    pub y: f32,
}

/// Head pose in degrees, estimated from the five landmarks (see [`attributes::pose`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Pose {
    pub roll: f32,
    pub yaw: f32,
    pub pitch: f32,
}

/// Image quality of the face, 0–100 (see [`attributes::quality`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Quality {
    pub brightness: f32,
    pub sharpness: f32,
}

/// A yes/no attribute with its confidence (0–100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BoolAttribute {
    pub value: bool,
    pub confidence: f32,
}

/// One detected face (Rekognition's `FaceDetail`), with only the attributes this engine
/// computes; no age, gender, emotion or smile is ever invented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaceDetail {
    pub bounding_box: BoundingBox,
    pub sunglasses: BoolAttribute,
    pub landmarks: Vec<Landmark>,
    pub pose: Pose,
    pub quality: Quality,
    pub confidence: f32,
}

/// A face in a collection (Rekognition's `Face`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Face {
    pub face_id: String,
    pub bounding_box: BoundingBox,
    pub image_id: String,
    pub external_image_id: String,
    pub confidence: f32,
}

/// An indexed face and its details (Rekognition's `FaceRecord`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaceRecord {
    pub face: Face,
    pub face_detail: FaceDetail,
}

/// A collection face that matched, with its similarity (0–100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaceMatch {
    pub similarity: f32,
    pub face: Face,
}

/// The answer to SearchFacesByImage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchFacesByImageOutput {
    pub searched_face_bounding_box: BoundingBox,
    pub searched_face_confidence: f32,
    pub face_matches: Vec<FaceMatch>,
    pub face_model_version: String,
}

/// A face of CompareFaces' target image and its similarity to the source's largest face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComparedFace {
    pub similarity: f32,
    pub bounding_box: BoundingBox,
    pub confidence: f32,
}

/// The answer to CompareFaces: every target face with its similarity, best first; those at or
/// above the threshold are matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompareFacesOutput {
    pub source_image_face: BoundingBox,
    pub face_matches: Vec<ComparedFace>,
    pub unmatched_faces: Vec<ComparedFace>,
}

/// An image, as Rekognition takes it: an object in the store, or bytes.
#[derive(Debug, Clone)]
pub enum Image {
    S3Object { bucket: String, name: String },
    Bytes(Arc<[u8]>),
}

/// SearchFacesByImage's request. `reserve_for` is mapfleet's addition for the workshop's race:
/// when no indexed face matches, the searched face is reserved for this `ExternalImageId`, so
/// that a concurrent search for the same person matches the reservation until the face is
/// indexed (by [`FaceEngine::index_faces`] with the same image and id) or the reservation
/// expires.
#[derive(Debug, Clone)]
pub struct SearchFacesByImageRequest {
    pub collection_id: String,
    pub image: Image,
    pub face_match_threshold: f32,
    pub max_faces: usize,
    pub reserve_for: Option<String>,
}

/// IndexFaces' request.
#[derive(Debug, Clone)]
pub struct IndexFacesRequest {
    pub collection_id: String,
    pub image: Image,
    pub external_image_id: String,
    pub max_faces: usize,
}

/// Errors, named like Rekognition's exceptions.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaceError {
    #[error("{0}")]
    InvalidImageFormat(String),
    #[error("{0}")]
    ImageTooLarge(String),
    #[error("{0}")]
    InvalidS3Object(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceAlreadyExists(String),
    /// The endpoint refused the caller's credentials (unsigned, unknown key, bad signature):
    /// a misconfiguration that retrying cannot cure.
    #[error("{0}")]
    AccessDenied(String),
    /// The engine itself failed (models, storage); worth retrying.
    #[error("{0}")]
    Internal(String),
}

impl FaceError {
    /// The exception name, as Rekognition reports it (and the workshop's Lambdas pass on).
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidImageFormat(_) => "InvalidImageFormatException",
            Self::ImageTooLarge(_) => "ImageTooLargeException",
            Self::InvalidS3Object(_) => "InvalidS3ObjectException",
            Self::InvalidParameter(_) => "InvalidParameterException",
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ResourceAlreadyExists(_) => "ResourceAlreadyExistsException",
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::Internal(_) => "InternalServerError",
        }
    }

    /// Whether the failure is transient (storage or engine trouble) rather than an answer.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Internal(_))
    }
}

/// Rekognition's operations. Implementations: [`LocalEngine`], [`RekognitionEngine`].
#[async_trait::async_trait]
pub trait FaceEngine: Send + Sync {
    /// Creates an empty collection; `ResourceAlreadyExists` if it exists.
    async fn create_collection(&self, collection_id: &str) -> Result<(), FaceError>;

    /// Every face in the image, best detection first, with landmarks.
    async fn detect_faces(&self, image: &Image) -> Result<Vec<FaceDetail>, FaceError>;

    /// Searches the collection for the image's largest face (`InvalidParameter` if it has none).
    async fn search_faces_by_image(
        &self,
        req: &SearchFacesByImageRequest,
    ) -> Result<SearchFacesByImageOutput, FaceError>;

    /// Adds the image's faces (largest first, at most `max_faces`). Idempotent: indexing the same
    /// image under the same `ExternalImageId` again returns the same `FaceId`s.
    async fn index_faces(&self, req: &IndexFacesRequest) -> Result<Vec<FaceRecord>, FaceError>;

    /// The collection's faces.
    async fn list_faces(&self, collection_id: &str) -> Result<Vec<Face>, FaceError>;

    /// Deletes faces by id; returns the ids that were deleted.
    async fn delete_faces(
        &self,
        collection_id: &str,
        face_ids: &[String],
    ) -> Result<Vec<String>, FaceError>;

    /// Compares the source image's largest face with every face of the target image.
    async fn compare_faces(
        &self,
        source: &Image,
        target: &Image,
        threshold: f32,
    ) -> Result<CompareFacesOutput, FaceError>;
}

/// A face record for the collections' unit tests.
#[cfg(test)]
pub(crate) fn test_face(id: &str) -> Face {
    Face {
        face_id: id.into(),
        bounding_box: BoundingBox {
            width: 0.1,
            height: 0.1,
            left: 0.1,
            top: 0.1,
        },
        image_id: "img".into(),
        external_image_id: "user".into(),
        confidence: 99.0,
    }
}
