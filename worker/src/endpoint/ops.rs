//! One function per operation: the request body in, the engine called, the answer out.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::wire::{self, WireImage};
use crate::face::{FaceEngine, FaceError, IndexFacesRequest, SearchFacesByImageRequest};

/// An operation's failure: the exception name and message of Rekognition's error body.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    pub exception: &'static str,
    pub message: String,
}

impl OpError {
    pub fn new(exception: &'static str, message: impl Into<String>) -> Self {
        Self {
            exception,
            message: message.into(),
        }
    }

    /// The HTTP status Rekognition answers with: 500 for its own failures, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self.exception {
            "InternalServerError" => 500,
            _ => 400,
        }
    }
}

impl From<FaceError> for OpError {
    fn from(e: FaceError) -> Self {
        Self::new(e.error_type(), e.to_string())
    }
}

/// The operations served, by their `X-Amz-Target` name (after `RekognitionService.`).
pub const OPERATIONS: [&str; 7] = [
    "CreateCollection",
    "DetectFaces",
    "SearchFacesByImage",
    "IndexFaces",
    "ListFaces",
    "DeleteFaces",
    "CompareFaces",
];

/// SearchFacesByImage's `FaceMatchThreshold` and `MaxFaces` defaults.
const DEFAULT_MATCH_THRESHOLD: f32 = 80.0;
const DEFAULT_MAX_FACES: usize = 80;
/// Upper bounds of `MaxFaces`, `MaxResults` and `FaceIds` (Rekognition's).
const MAX_COUNT: usize = 4096;
/// ListFaces' page size when `MaxResults` is absent.
const DEFAULT_PAGE: usize = 1000;

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, OpError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => OpError::new("ValidationException", e.to_string()),
        _ => OpError::new("SerializationException", e.to_string()),
    })
}

fn image(i: &WireImage) -> Result<crate::face::Image, OpError> {
    Ok(i.to_image()?)
}

/// Runs `operation` on `body`. `reserve_for` is the decoded `x-mapfleet-reserve-for` header.
pub async fn call(
    engine: &dyn FaceEngine,
    operation: &str,
    body: &[u8],
    reserve_for: Option<String>,
) -> Result<Value, OpError> {
    match operation {
        "CreateCollection" => {
            let r: wire::CollectionOnly = parse(body)?;
            let id = wire::collection_id(&r.collection_id)?;
            engine.create_collection(id).await?;
            Ok(json!({
                "StatusCode": 200,
                "CollectionArn": format!("aws:rekognition:mapfleet:collection/{id}"),
                "FaceModelVersion": wire::model_version(),
            }))
        }
        "DetectFaces" => {
            let r: wire::DetectFaces = parse(body)?;
            let faces = engine.detect_faces(&image(&r.image)?).await?;
            let details: Vec<Value> = faces
                .iter()
                .map(|d| wire::face_detail(d, &r.attributes))
                .collect();
            Ok(json!({ "FaceDetails": details }))
        }
        "SearchFacesByImage" => {
            let r: wire::SearchFacesByImage = parse(body)?;
            let req = SearchFacesByImageRequest {
                collection_id: wire::collection_id(&r.collection_id)?.to_owned(),
                image: image(&r.image)?,
                face_match_threshold: wire::threshold(
                    "faceMatchThreshold",
                    r.face_match_threshold,
                    DEFAULT_MATCH_THRESHOLD,
                )?,
                max_faces: wire::count("maxFaces", r.max_faces, DEFAULT_MAX_FACES, MAX_COUNT)?,
                reserve_for,
            };
            let out = engine.search_faces_by_image(&req).await?;
            serde_json::to_value(out)
                .map_err(|e| OpError::new("InternalServerError", e.to_string()))
        }
        "IndexFaces" => {
            let r: wire::IndexFaces = parse(body)?;
            let external = match r.external_image_id.as_deref() {
                Some(id) => wire::external_image_id(id)?.to_owned(),
                None => String::new(),
            };
            let req = IndexFacesRequest {
                collection_id: wire::collection_id(&r.collection_id)?.to_owned(),
                image: image(&r.image)?,
                external_image_id: external,
                max_faces: wire::count("maxFaces", r.max_faces, MAX_COUNT, MAX_COUNT)?,
            };
            let records: Vec<Value> = engine
                .index_faces(&req)
                .await?
                .iter()
                .map(|rec| {
                    json!({
                        "Face": rec.face,
                        "FaceDetail": wire::face_detail(&rec.face_detail, &r.detection_attributes),
                    })
                })
                .collect();
            Ok(json!({
                "FaceRecords": records,
                "FaceModelVersion": wire::model_version(),
                "UnindexedFaces": [],
            }))
        }
        "ListFaces" => {
            let r: wire::ListFaces = parse(body)?;
            let id = wire::collection_id(&r.collection_id)?;
            let page = wire::count("maxResults", r.max_results, DEFAULT_PAGE, MAX_COUNT)?;
            // The token is the offset of the page: collections only grow at the end.
            let start: usize = match r.next_token.as_deref() {
                None | Some("") => 0,
                Some(t) => t.parse().map_err(|_| {
                    OpError::new("InvalidPaginationTokenException", "Invalid token")
                })?,
            };
            let faces = engine.list_faces(id).await?;
            let end = start.saturating_add(page).min(faces.len());
            let slice = faces.get(start..end).unwrap_or_default();
            let mut out =
                json!({ "Faces": wire::faces(slice), "FaceModelVersion": wire::model_version() });
            if end < faces.len() {
                out["NextToken"] = Value::String(end.to_string());
            }
            Ok(out)
        }
        "DeleteFaces" => {
            let r: wire::DeleteFaces = parse(body)?;
            let id = wire::collection_id(&r.collection_id)?;
            wire::count("faceIds", Some(r.face_ids.len() as i64), 1, MAX_COUNT)?;
            let deleted = engine.delete_faces(id, &r.face_ids).await?;
            let missing: Vec<Value> = r
                .face_ids
                .iter()
                .filter(|f| !deleted.contains(f))
                .map(|f| json!({"FaceId": f, "Reasons": ["FACE_NOT_FOUND"]}))
                .collect();
            Ok(json!({ "DeletedFaces": deleted, "UnsuccessfulFaceDeletions": missing }))
        }
        "CompareFaces" => {
            let r: wire::CompareFaces = parse(body)?;
            let t = wire::threshold(
                "similarityThreshold",
                r.similarity_threshold,
                DEFAULT_MATCH_THRESHOLD,
            )?;
            let out = engine
                .compare_faces(&image(&r.source_image)?, &image(&r.target_image)?, t)
                .await?;
            Ok(wire::compare_faces(&out))
        }
        other => Err(OpError::new(
            "UnknownOperationException",
            format!("RekognitionService.{other} is not an operation this endpoint serves"),
        )),
    }
}
