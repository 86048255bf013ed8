//! The endpoint's awsJson 1.1 bodies: requests as Rekognition's SDKs send them, answers as
//! they expect them, and the checks Rekognition makes on parameters.
//!
//! Unknown request fields are ignored (newer SDKs send more); what the local engine cannot
//! honour (an S3 object version) is refused rather than silently ignored.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::face::{CompareFacesOutput, FACE_MODEL_VERSION, Face, FaceDetail, FaceError, Image};

/// `Image`: exactly one of `Bytes` (base64) and `S3Object`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireImage {
    bytes: Option<String>,
    s3_object: Option<WireS3Object>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireS3Object {
    bucket: String,
    name: String,
    version: Option<String>,
}

impl WireImage {
    /// The engine's image, or `InvalidParameterException` as Rekognition answers.
    pub fn to_image(&self) -> Result<Image, FaceError> {
        match (&self.bytes, &self.s3_object) {
            (Some(b), None) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(|v| Image::Bytes(v.into()))
                .map_err(|e| {
                    FaceError::InvalidParameter(format!("Image.Bytes is not base64: {e}"))
                }),
            (None, Some(o)) if o.version.is_some() => Err(FaceError::InvalidParameter(
                "Image.S3Object.Version is not supported by this endpoint".into(),
            )),
            (None, Some(o)) => Ok(Image::S3Object {
                bucket: o.bucket.clone(),
                name: o.name.clone(),
            }),
            _ => Err(FaceError::InvalidParameter(
                "Image must have exactly one of Bytes and S3Object".into(),
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DetectFaces {
    pub image: WireImage,
    #[serde(default)]
    pub attributes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchFacesByImage {
    pub collection_id: String,
    pub image: WireImage,
    pub max_faces: Option<i64>,
    pub face_match_threshold: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexFaces {
    pub collection_id: String,
    pub image: WireImage,
    pub external_image_id: Option<String>,
    #[serde(default)]
    pub detection_attributes: Vec<String>,
    pub max_faces: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CollectionOnly {
    pub collection_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFaces {
    pub collection_id: String,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteFaces {
    pub collection_id: String,
    pub face_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompareFaces {
    pub source_image: WireImage,
    pub target_image: WireImage,
    pub similarity_threshold: Option<f32>,
}

fn invalid(m: impl Into<String>) -> FaceError {
    FaceError::InvalidParameter(m.into())
}

/// `CollectionId`: 1–255 of `[a-zA-Z0-9_.-]`.
pub fn collection_id(id: &str) -> Result<&str, FaceError> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(id)
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{id}' at 'collectionId' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-]+"
        )))
    }
}

/// `ExternalImageId`: 1–255 of `[a-zA-Z0-9_.:-]`.
pub fn external_image_id(id: &str) -> Result<&str, FaceError> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'));
    if ok {
        Ok(id)
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{id}' at 'externalImageId' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-:]+"
        )))
    }
}

/// A count parameter in `1..=max`, `default` when absent.
pub fn count(name: &str, v: Option<i64>, default: usize, max: usize) -> Result<usize, FaceError> {
    match v {
        None => Ok(default),
        Some(n) if n >= 1 && (n as u64) <= max as u64 => Ok(n as usize),
        Some(n) => Err(invalid(format!(
            "1 validation error detected: Value '{n}' at '{name}' failed to satisfy constraint: \
             Member must have value between 1 and {max}"
        ))),
    }
}

/// A similarity threshold in 0–100, `default` when absent.
pub fn threshold(name: &str, v: Option<f32>, default: f32) -> Result<f32, FaceError> {
    match v {
        None => Ok(default),
        Some(t) if (0.0..=100.0).contains(&t) => Ok(t),
        Some(t) => Err(invalid(format!(
            "1 validation error detected: Value '{t}' at '{name}' failed to satisfy constraint: \
             Member must have value between 0 and 100"
        ))),
    }
}

/// A FaceDetail with the attributes asked for: Rekognition's `DEFAULT` set (box, confidence,
/// pose, quality, landmarks) unless `ALL` or `SUNGLASSES` is named.
pub fn face_detail(d: &FaceDetail, attributes: &[String]) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    let all = attributes
        .iter()
        .any(|a| a.eq_ignore_ascii_case("ALL") || a.eq_ignore_ascii_case("SUNGLASSES"));
    if !all && let Some(o) = v.as_object_mut() {
        o.remove("Sunglasses");
    }
    v
}

pub fn faces(faces: &[Face]) -> Value {
    serde_json::to_value(faces).unwrap_or(Value::Null)
}

/// CompareFaces' answer. The local engine computes a similarity for unmatched faces too;
/// Rekognition's shape has no place for it.
pub fn compare_faces(out: &CompareFacesOutput) -> Value {
    let compared = |c: &crate::face::ComparedFace| json!({"BoundingBox": c.bounding_box, "Confidence": c.confidence});
    json!({
        "SourceImageFace": {"BoundingBox": out.source_image_face},
        "FaceMatches": out.face_matches.iter()
            .map(|m| json!({"Similarity": m.similarity, "Face": compared(m)}))
            .collect::<Vec<_>>(),
        "UnmatchedFaces": out.unmatched_faces.iter().map(compared).collect::<Vec<_>>(),
    })
}

/// The model version every answer that carries one reports.
pub fn model_version() -> Value {
    Value::String(FACE_MODEL_VERSION.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(v: Value) -> Result<Image, FaceError> {
        serde_json::from_value::<WireImage>(v).unwrap().to_image()
    }

    #[test]
    fn images_need_exactly_one_source() {
        assert!(matches!(img(json!({"Bytes": "AAEC"})), Ok(Image::Bytes(b)) if *b == [0, 1, 2]));
        assert!(matches!(
            img(json!({"S3Object": {"Bucket": "b", "Name": "k"}})),
            Ok(Image::S3Object { .. })
        ));
        for bad in [
            json!({}),
            json!({"Bytes": "AAEC", "S3Object": {"Bucket": "b", "Name": "k"}}),
            json!({"Bytes": "not base64!"}),
            json!({"S3Object": {"Bucket": "b", "Name": "k", "Version": "1"}}),
        ] {
            assert!(
                matches!(img(bad.clone()), Err(FaceError::InvalidParameter(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn parameters_are_checked_like_rekognition() {
        assert!(collection_id("rider-photos").is_ok());
        assert!(collection_id("../x").is_err());
        assert!(collection_id("").is_err());
        assert!(external_image_id("user_a").is_ok());
        assert!(external_image_id("a b").is_err());
        assert_eq!(count("maxFaces", None, 80, 4096).unwrap(), 80);
        assert!(count("maxFaces", Some(0), 80, 4096).is_err());
        assert!(count("maxFaces", Some(5000), 80, 4096).is_err());
        assert!(threshold("faceMatchThreshold", Some(101.0), 80.0).is_err());
        assert!(threshold("faceMatchThreshold", Some(f32::NAN), 80.0).is_err());
    }
}
