//! The Rekognition face engine: [`FaceEngine`] on `aws-sdk-rekognition`, for Amazon
//! Rekognition or a Rekognition-compatible endpoint (`mapfleet rekognition serve`, which
//! serves the local engine) through an endpoint override.
//!
//! Images go as `Image.S3Object` (the service reads the object: from S3 for Amazon
//! Rekognition, through its own object store for mapfleet's endpoint) or as `Image.Bytes`.
//!
//! mapfleet's one addition, the reservation that closes the workshop's duplicate race (see
//! [`super::collection`]), travels as the `x-mapfleet-reserve-for` header on
//! SearchFacesByImage. mapfleet's endpoint honours it; Amazon Rekognition ignores it, so
//! against AWS two photos of one person in one batch can both pass, as in the workshop.
//!
//! Errors keep the service's exception name and message ([`FaceError`] is named after them);
//! throttling, 5xx answers and an unreachable endpoint are [`FaceError::Internal`], which the
//! photo tasks report as retryable.

use aws_config::SdkConfig;
use aws_sdk_rekognition::Client;
use aws_sdk_rekognition::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rekognition::primitives::Blob;
use aws_sdk_rekognition::types as rk;
use base64::Engine as _;

use super::{
    BoolAttribute, BoundingBox, CompareFacesOutput, ComparedFace, Face, FaceDetail, FaceEngine,
    FaceError, FaceMatch, FaceRecord, Image, IndexFacesRequest, Landmark, Pose, Quality,
    SearchFacesByImageOutput, SearchFacesByImageRequest,
};
use crate::aws::describe;

/// The header that carries SearchFacesByImage's reservation (base64 of the UTF-8
/// `ExternalImageId`, since header values are ASCII).
pub const RESERVE_FOR_HEADER: &str = "x-mapfleet-reserve-for";

/// ListFaces' page size (Rekognition's maximum is 4096).
const LIST_PAGE: i32 = 1000;

/// Rekognition's operations through the AWS SDK.
#[derive(Debug, Clone)]
pub struct RekognitionEngine {
    client: Client,
    /// Where requests go, for error messages.
    endpoint: String,
}

impl RekognitionEngine {
    /// An engine on `config`'s region and credentials, at `endpoint` when given (else the
    /// region's Rekognition endpoint, or `AWS_ENDPOINT_URL_REKOGNITION`).
    pub fn new(config: &SdkConfig, endpoint: Option<&str>) -> Self {
        let mut b = aws_sdk_rekognition::config::Builder::from(config);
        if let Some(url) = endpoint {
            b = b.endpoint_url(url);
        }
        let endpoint = match (endpoint, config.endpoint_url()) {
            (Some(url), _) | (None, Some(url)) => url.to_owned(),
            (None, None) => format!(
                "Amazon Rekognition ({})",
                config
                    .region()
                    .map_or("no region".into(), |r| r.to_string())
            ),
        };
        Self {
            client: Client::from_conf(b.build()),
            endpoint,
        }
    }

    /// Where this engine sends its requests.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn error<E>(&self, e: SdkError<E, aws_sdk_rekognition::config::http::HttpResponse>) -> FaceError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let message = || {
            e.message()
                .map(str::to_owned)
                .unwrap_or_else(|| describe(&e))
        };
        match &e {
            SdkError::ServiceError(_) => match e.code() {
                Some("InvalidImageFormatException") => FaceError::InvalidImageFormat(message()),
                Some("ImageTooLargeException") => FaceError::ImageTooLarge(message()),
                Some("InvalidS3ObjectException") => FaceError::InvalidS3Object(message()),
                Some("InvalidParameterException" | "ValidationException") => {
                    FaceError::InvalidParameter(message())
                }
                Some("ResourceNotFoundException") => FaceError::ResourceNotFound(message()),
                Some("ResourceAlreadyExistsException") => {
                    FaceError::ResourceAlreadyExists(message())
                }
                Some(
                    code @ ("MissingAuthenticationTokenException"
                    | "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "IncompleteSignatureException"
                    | "AccessDeniedException"),
                ) => FaceError::AccessDenied(format!(
                    "Rekognition endpoint {} refused the credentials: {code}: {} (check the \
                     worker's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY against the endpoint's keys)",
                    self.endpoint,
                    message()
                )),
                code => FaceError::Internal(format!(
                    "Rekognition endpoint {}: {}: {}",
                    self.endpoint,
                    code.unwrap_or("error"),
                    message()
                )),
            },
            _ => FaceError::Internal(format!(
                "Rekognition endpoint {}: {}",
                self.endpoint,
                describe(&e)
            )),
        }
    }
}

fn image(image: &Image) -> rk::Image {
    match image {
        Image::S3Object { bucket, name } => rk::Image::builder()
            .s3_object(rk::S3Object::builder().bucket(bucket).name(name).build())
            .build(),
        Image::Bytes(b) => rk::Image::builder().bytes(Blob::new(b.to_vec())).build(),
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn bounding_box(b: Option<&rk::BoundingBox>) -> BoundingBox {
    BoundingBox {
        width: b.and_then(rk::BoundingBox::width).unwrap_or(0.0),
        height: b.and_then(rk::BoundingBox::height).unwrap_or(0.0),
        left: b.and_then(rk::BoundingBox::left).unwrap_or(0.0),
        top: b.and_then(rk::BoundingBox::top).unwrap_or(0.0),
    }
}

fn face_detail(d: &rk::FaceDetail) -> FaceDetail {
    FaceDetail {
        bounding_box: bounding_box(d.bounding_box()),
        sunglasses: BoolAttribute {
            value: d.sunglasses().is_some_and(rk::Sunglasses::value),
            confidence: d
                .sunglasses()
                .and_then(rk::Sunglasses::confidence)
                .unwrap_or(0.0),
        },
        landmarks: d
            .landmarks()
            .iter()
            .map(|l| Landmark {
                kind: l.r#type().map_or("unknown", |t| t.as_str()).to_owned(),
                x: l.x().unwrap_or(0.0),
                y: l.y().unwrap_or(0.0),
            })
            .collect(),
        pose: Pose {
            roll: d.pose().and_then(rk::Pose::roll).unwrap_or(0.0),
            yaw: d.pose().and_then(rk::Pose::yaw).unwrap_or(0.0),
            pitch: d.pose().and_then(rk::Pose::pitch).unwrap_or(0.0),
        },
        quality: Quality {
            brightness: d
                .quality()
                .and_then(rk::ImageQuality::brightness)
                .unwrap_or(0.0),
            sharpness: d
                .quality()
                .and_then(rk::ImageQuality::sharpness)
                .unwrap_or(0.0),
        },
        confidence: d.confidence().unwrap_or(0.0),
    }
}

fn face(f: &rk::Face) -> Face {
    Face {
        face_id: f.face_id().unwrap_or_default().to_owned(),
        bounding_box: bounding_box(f.bounding_box()),
        image_id: f.image_id().unwrap_or_default().to_owned(),
        external_image_id: f.external_image_id().unwrap_or_default().to_owned(),
        confidence: f.confidence().unwrap_or(0.0),
    }
}

fn compared(f: &rk::ComparedFace, similarity: f32) -> ComparedFace {
    ComparedFace {
        similarity,
        bounding_box: bounding_box(f.bounding_box()),
        confidence: f.confidence().unwrap_or(0.0),
    }
}

#[async_trait::async_trait]
impl FaceEngine for RekognitionEngine {
    async fn create_collection(&self, collection_id: &str) -> Result<(), FaceError> {
        self.client
            .create_collection()
            .collection_id(collection_id)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn detect_faces(&self, img: &Image) -> Result<Vec<FaceDetail>, FaceError> {
        let out = self
            .client
            .detect_faces()
            .image(image(img))
            // `ALL` is what carries Sunglasses, which FaceDetection checks.
            .attributes(rk::Attribute::All)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(out.face_details().iter().map(face_detail).collect())
    }

    async fn search_faces_by_image(
        &self,
        req: &SearchFacesByImageRequest,
    ) -> Result<SearchFacesByImageOutput, FaceError> {
        let reserve = req
            .reserve_for
            .as_deref()
            .map(|id| base64::engine::general_purpose::STANDARD.encode(id));
        let out = self
            .client
            .search_faces_by_image()
            .collection_id(&req.collection_id)
            .image(image(&req.image))
            .face_match_threshold(req.face_match_threshold)
            .max_faces(count(req.max_faces.max(1)))
            .customize()
            .mutate_request(move |r| {
                if let Some(v) = &reserve {
                    r.headers_mut().insert(RESERVE_FOR_HEADER, v.clone());
                }
            })
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(SearchFacesByImageOutput {
            searched_face_bounding_box: bounding_box(out.searched_face_bounding_box()),
            searched_face_confidence: out.searched_face_confidence().unwrap_or(0.0),
            face_matches: out
                .face_matches()
                .iter()
                .filter_map(|m| {
                    Some(FaceMatch {
                        similarity: m.similarity().unwrap_or(0.0),
                        face: face(m.face()?),
                    })
                })
                .collect(),
            face_model_version: out.face_model_version().unwrap_or_default().to_owned(),
        })
    }

    async fn index_faces(&self, req: &IndexFacesRequest) -> Result<Vec<FaceRecord>, FaceError> {
        let out = self
            .client
            .index_faces()
            .collection_id(&req.collection_id)
            .image(image(&req.image))
            .external_image_id(&req.external_image_id)
            .max_faces(count(req.max_faces.max(1)))
            .detection_attributes(rk::Attribute::All)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(out
            .face_records()
            .iter()
            .filter_map(|r| {
                Some(FaceRecord {
                    face: face(r.face()?),
                    face_detail: face_detail(r.face_detail()?),
                })
            })
            .collect())
    }

    async fn list_faces(&self, collection_id: &str) -> Result<Vec<Face>, FaceError> {
        let mut faces = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_faces()
                .collection_id(collection_id)
                .max_results(LIST_PAGE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| self.error(e))?;
            faces.extend(out.faces().iter().map(face));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(faces)
    }

    async fn delete_faces(
        &self,
        collection_id: &str,
        face_ids: &[String],
    ) -> Result<Vec<String>, FaceError> {
        let out = self
            .client
            .delete_faces()
            .collection_id(collection_id)
            .set_face_ids(Some(face_ids.to_vec()))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(out.deleted_faces().to_vec())
    }

    async fn compare_faces(
        &self,
        source: &Image,
        target: &Image,
        threshold: f32,
    ) -> Result<CompareFacesOutput, FaceError> {
        let out = self
            .client
            .compare_faces()
            .source_image(image(source))
            .target_image(image(target))
            .similarity_threshold(threshold)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let mut face_matches: Vec<ComparedFace> = out
            .face_matches()
            .iter()
            .filter_map(|m| Some(compared(m.face()?, m.similarity().unwrap_or(0.0))))
            .collect();
        face_matches.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        Ok(CompareFacesOutput {
            source_image_face: bounding_box(
                out.source_image_face()
                    .and_then(rk::ComparedSourceImageFace::bounding_box),
            ),
            face_matches,
            // Rekognition reports no similarity for the faces under the threshold.
            unmatched_faces: out
                .unmatched_faces()
                .iter()
                .map(|f| compared(f, 0.0))
                .collect(),
        })
    }
}
