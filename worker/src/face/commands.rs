//! The face debugging commands for people (`mapfleet faces detect IMAGE`,
//! `mapfleet faces compare A B`, `mapfleet faces collection list|delete`), as library calls
//! that return JSON in Rekognition's shapes; the CLI only parses arguments and prints.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{FaceCollections, FaceEngine, FaceError, Image};

/// Why a face command failed, worded for the person who ran it.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// An image file could not be read.
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The engine or the collection answered with an error, shown with its exception name.
    #[error("{}: {}", .0.error_type(), .0)]
    Face(FaceError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

// By hand, not `#[from]`: that would also make the error its source, and `{:#}` would then
// print its message twice.
impl From<FaceError> for CommandError {
    fn from(e: FaceError) -> Self {
        Self::Face(e)
    }
}

fn read(path: &Path) -> Result<Image, CommandError> {
    std::fs::read(path)
        .map(|b| Image::Bytes(b.into()))
        .map_err(|error| CommandError::Read {
            path: path.to_path_buf(),
            error,
        })
}

/// DetectFaces on a local file: `{"FaceDetails": [...]}`, landmarks included.
pub async fn detect_file(engine: &dyn FaceEngine, path: &Path) -> Result<Value, CommandError> {
    let faces = engine.detect_faces(&read(path)?).await?;
    Ok(json!({ "FaceDetails": faces }))
}

/// CompareFaces between two local files at the given threshold (the workshop's is 70).
pub async fn compare_files(
    engine: &dyn FaceEngine,
    source: &Path,
    target: &Path,
    threshold: f32,
) -> Result<Value, CommandError> {
    let out = engine
        .compare_faces(&read(source)?, &read(target)?, threshold)
        .await?;
    Ok(serde_json::to_value(out)?)
}

/// ListFaces: `{"Faces": [...]}`. Takes the collections rather than an engine: listing
/// needs no models, and the caller picks the store (data dir or the fleet's Redis).
pub async fn collection_list(
    collections: &dyn FaceCollections,
    collection_id: &str,
) -> Result<Value, CommandError> {
    let faces: Vec<_> = collections
        .faces(collection_id)
        .await?
        .into_iter()
        .map(|f| f.face)
        .collect();
    Ok(json!({ "Faces": faces }))
}

/// DeleteFaces: the given ids, or every face when `face_ids` is empty: `{"DeletedFaces": [...]}`.
pub async fn collection_delete(
    collections: &dyn FaceCollections,
    collection_id: &str,
    face_ids: &[String],
) -> Result<Value, CommandError> {
    let ids: Vec<String> = if face_ids.is_empty() {
        collections
            .faces(collection_id)
            .await?
            .into_iter()
            .map(|f| f.face.face_id)
            .collect()
    } else {
        face_ids.to_vec()
    };
    let deleted = collections.delete(collection_id, &ids).await?;
    Ok(json!({ "DeletedFaces": deleted }))
}
