//! The face debugging commands for people (`mapfleet faces detect IMAGE`,
//! `mapfleet faces compare A B`, `mapfleet faces collection list|delete`), as library calls
//! that return JSON in Rekognition's shapes; the CLI only parses arguments and prints.

use std::path::Path;

use serde_json::{Value, json};

use super::{FaceCollections, FaceEngine, Image};

fn read(path: &Path) -> Result<Image, String> {
    std::fs::read(path)
        .map(|b| Image::Bytes(b.into()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// DetectFaces on a local file: `{"FaceDetails": [...]}`, landmarks included.
pub async fn detect_file(engine: &dyn FaceEngine, path: &Path) -> Result<Value, String> {
    let faces = engine
        .detect_faces(&read(path)?)
        .await
        .map_err(|e| format!("{}: {e}", e.error_type()))?;
    Ok(json!({ "FaceDetails": faces }))
}

/// CompareFaces between two local files at the given threshold (the workshop's is 70).
pub async fn compare_files(
    engine: &dyn FaceEngine,
    source: &Path,
    target: &Path,
    threshold: f32,
) -> Result<Value, String> {
    let out = engine
        .compare_faces(&read(source)?, &read(target)?, threshold)
        .await
        .map_err(|e| format!("{}: {e}", e.error_type()))?;
    serde_json::to_value(out).map_err(|e| e.to_string())
}

/// ListFaces: `{"Faces": [...]}`. Takes the collections rather than an engine: listing
/// needs no models, and the caller picks the store (data dir or the fleet's Redis).
pub async fn collection_list(
    collections: &dyn FaceCollections,
    collection_id: &str,
) -> Result<Value, String> {
    let faces: Vec<_> = collections
        .faces(collection_id)
        .await
        .map_err(|e| format!("{}: {e}", e.error_type()))?
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
) -> Result<Value, String> {
    let ids: Vec<String> = if face_ids.is_empty() {
        collections
            .faces(collection_id)
            .await
            .map_err(|e| format!("{}: {e}", e.error_type()))?
            .into_iter()
            .map(|f| f.face.face_id)
            .collect()
    } else {
        face_ids.to_vec()
    };
    let deleted = collections
        .delete(collection_id, &ids)
        .await
        .map_err(|e| format!("{}: {e}", e.error_type()))?;
    Ok(json!({ "DeletedFaces": deleted }))
}
