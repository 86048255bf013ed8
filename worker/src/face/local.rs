//! The local face engine: objects from the [`ObjectStore`], YuNet + SFace through [`Models`],
//! faces in [`FaceCollections`], a per-photo [`AnalysisCache`], and on a fleet the analyses
//! the workers share ([`SharedAnalyses`]).

use std::sync::Arc;
use std::time::Duration;

use super::cache::{Analysis, AnalysisCache, AnalyzedFace, Key};
use super::collection::{FaceCollections, Reservation, StoredFace};
use super::decoded::DecodedImages;
use super::imagefile::{self, ImageError};
use super::models::{DetectOptions, Models};
use super::shared_analyses::SharedAnalyses;
use super::similarity::{cosine, similarity};
use super::sunglasses;
use super::{
    BoundingBox, CompareFacesOutput, ComparedFace, FACE_MODEL_VERSION, Face, FaceDetail,
    FaceEngine, FaceError, FaceMatch, FaceRecord, Image, IndexFacesRequest, Landmark,
    SearchFacesByImageOutput, SearchFacesByImageRequest, align, attributes,
};
use crate::store::{self, ObjectStore};

/// Rekognition's limit on an image stored in S3.
pub const MAX_OBJECT_BYTES: u64 = 15 * 1024 * 1024;

/// Settings of the local engine.
#[derive(Debug, Clone)]
pub struct LocalEngineConfig {
    /// Objects larger than this are refused (`ImageTooLargeException`). Default 15 MiB.
    pub max_object_bytes: u64,
    /// Images whose header announces more pixels are refused before decoding
    /// (`ImageTooLargeException`, with the dimensions). Default 40 megapixels.
    pub max_pixels: u64,
    /// Detection thresholds.
    pub detect: DetectOptions,
    /// How long a search's reservation holds a face for its searcher. Default 5 minutes.
    pub reservation_ttl: Duration,
    /// Photos whose analysis is kept (0: none). Default 4,096.
    pub cache_entries: usize,
    /// Bytes the kept analyses may hold (their aligned face crops, mostly: ~38 KB a face).
    /// Default 32 MiB, about 850 one-face photos.
    pub cache_bytes: usize,
}

impl Default for LocalEngineConfig {
    fn default() -> Self {
        Self {
            max_object_bytes: MAX_OBJECT_BYTES,
            max_pixels: 40_000_000,
            detect: DetectOptions::default(),
            reservation_ttl: Duration::from_secs(300),
            cache_entries: 4096,
            cache_bytes: 32 << 20,
        }
    }
}

/// Rekognition's operations on local models.
pub struct LocalEngine {
    store: Arc<dyn ObjectStore>,
    models: Arc<Models>,
    collections: Arc<dyn FaceCollections>,
    cache: AnalysisCache,
    config: LocalEngineConfig,
    /// Where full decodes are left for the thumbnail task, if anywhere.
    decoded: Option<Arc<DecodedImages>>,
    /// The analyses the fleet's workers share, if any.
    shared: Option<Arc<SharedAnalyses>>,
}

const INVALID_S3_OBJECT: &str =
    "Unable to get object metadata from S3. Check object key, region and/or access permissions.";

impl LocalEngine {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        models: Arc<Models>,
        collections: Arc<dyn FaceCollections>,
        config: LocalEngineConfig,
    ) -> Self {
        let cache = AnalysisCache::new(config.cache_entries, config.cache_bytes);
        Self {
            store,
            models,
            collections,
            cache,
            config,
            decoded: None,
            shared: None,
        }
    }

    /// Looks in `shared` for the analyses and embeddings this worker does not hold, and
    /// leaves its own there.
    pub fn with_shared_analyses(mut self, shared: Option<Arc<SharedAnalyses>>) -> Self {
        self.shared = shared;
        self
    }

    /// Leaves each photo's full RGB decode in `decoded`, for the thumbnail task.
    pub fn with_decoded_images(mut self, decoded: Arc<DecodedImages>) -> Self {
        self.decoded = Some(decoded);
        self
    }

    /// Reads the image's bytes and its cache key.
    async fn load(&self, image: &Image) -> Result<(Key, Arc<[u8]>), FaceError> {
        match image {
            Image::S3Object { bucket, name } => match self
                .store
                .get(bucket, name, self.config.max_object_bytes)
                .await
            {
                Ok(obj) => Ok(((bucket.clone(), name.clone(), obj.etag), obj.bytes)),
                Err(store::Error::TooLarge { .. }) => Err(FaceError::ImageTooLarge(format!(
                    "Image size is too large: the limit for an S3 object is {} bytes",
                    self.config.max_object_bytes
                ))),
                Err(store::Error::Io(e)) => Err(FaceError::Internal(format!("object store: {e}"))),
                Err(e @ store::Error::Unavailable(_)) => Err(FaceError::Internal(e.to_string())),
                // Rekognition reports an object it may not read as InvalidS3ObjectException;
                // the message says which key and why.
                Err(e @ store::Error::OutsideBucket { .. }) => {
                    Err(FaceError::InvalidS3Object(e.to_string()))
                }
                Err(_) => Err(FaceError::InvalidS3Object(INVALID_S3_OBJECT.into())),
            },
            Image::Bytes(b) => {
                if b.len() as u64 > 5 * 1024 * 1024 {
                    return Err(FaceError::ImageTooLarge(
                        "Image size is too large: the limit for image bytes is 5 MB".into(),
                    ));
                }
                Ok((
                    (String::new(), String::new(), store::sha256_hex(b)),
                    b.clone(),
                ))
            }
        }
    }

    /// The image's analysis and its key: from this worker's cache, from the fleet's shared
    /// analyses, or computed (and then shared).
    async fn analyze(&self, image: &Image) -> Result<(Key, Arc<Analysis>), FaceError> {
        let (key, bytes) = self.load(image).await?;
        if let Some(a) = self.cache.get(&key) {
            return Ok((key, a));
        }
        if let Some(shared) = &self.shared
            && let Some(a) = shared.get(&key).await
        {
            let a = Arc::new(a);
            self.cache.insert(key.clone(), a.clone());
            return Ok((key, a));
        }
        let models = self.models.clone();
        let config = self.config.clone();
        let etag = key.2.clone();
        let (analysis, rgb) =
            tokio::task::spawn_blocking(move || analyze_bytes(&models, &config, &bytes, etag))
                .await
                // A decoder that panics on a hostile file is an invalid image, not a retry.
                .map_err(|e| {
                    FaceError::InvalidImageFormat(format!("Request has invalid image format: {e}"))
                })??;
        if let (Some(d), Some(rgb)) = (&self.decoded, rgb) {
            d.insert(key.clone(), Arc::new(rgb));
        }
        let analysis = Arc::new(analysis);
        if let Some(shared) = &self.shared
            && !analysis.faces.is_empty()
        {
            shared.put(&key, &analysis).await;
        }
        self.cache.insert(key.clone(), analysis.clone());
        Ok((key, analysis))
    }

    /// The embedding of one face of an analysis: computed once, by this worker or another.
    async fn embedding(
        &self,
        key: &Key,
        analysis: &Arc<Analysis>,
        i: usize,
    ) -> Result<Arc<[f32]>, FaceError> {
        if let Some(e) = analysis.faces[i].embedding.get() {
            return Ok(e.clone());
        }
        if let Some(shared) = &self.shared
            && let Some(e) = shared.embedding(key, i).await
        {
            return Ok(analysis.faces[i].embedding.get_or_init(|| e).clone());
        }
        let models = self.models.clone();
        let a = analysis.clone();
        let e: Arc<[f32]> = tokio::task::spawn_blocking(move || models.embed(&a.faces[i].crop))
            .await
            .map_err(|e| FaceError::Internal(format!("embedding task: {e}")))?
            .map_err(|e| FaceError::Internal(e.to_string()))?
            .into();
        let e = analysis.faces[i].embedding.get_or_init(|| e).clone();
        if let Some(shared) = &self.shared {
            let complete = analysis
                .faces
                .iter()
                .all(|f| f.embedding.get().is_some())
                .then_some(analysis.faces.len());
            shared.put_embedding(key, i, &e, complete).await;
        }
        Ok(e)
    }

    /// The `Face` a face of this image gets when indexed under `external_image_id`: ids derived
    /// from (collection, content, external id, face rank), so redelivery indexes the same face.
    fn face_for(
        &self,
        collection: &str,
        a: &Analysis,
        i: usize,
        rank: usize,
        external_image_id: &str,
    ) -> Face {
        let f = &a.faces[i];
        Face {
            face_id: derived_uuid(&[
                "face",
                collection,
                &a.etag,
                external_image_id,
                &rank.to_string(),
            ]),
            bounding_box: f.detail.bounding_box,
            image_id: derived_uuid(&["image", &a.etag]),
            external_image_id: external_image_id.to_owned(),
            confidence: f.detail.confidence,
        }
    }
}

/// A UUID-formatted id (version 8, RFC 9562 custom) from the sha256 of the parts.
fn derived_uuid(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = store::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

fn image_error(e: ImageError) -> FaceError {
    match e {
        ImageError::UnsupportedFormat => {
            FaceError::InvalidImageFormat("Request has unsupported image format".into())
        }
        // Rekognition's word for an image over its size limits; the message says which
        // limit, so a decompression bomb is not mistaken for an unsupported format.
        e @ ImageError::TooManyPixels { .. } => {
            FaceError::ImageTooLarge(format!("Image size is too large: {e}"))
        }
        ImageError::Corrupt(m) => {
            FaceError::InvalidImageFormat(format!("Request has invalid image format: {m}"))
        }
    }
}

/// Decode, detect, align and measure (no embedding yet). Also returns the decoded pixels when
/// they are a JPEG's own RGB, which a thumbnail can be made from.
fn analyze_bytes(
    models: &Models,
    config: &LocalEngineConfig,
    bytes: &[u8],
    etag: String,
) -> Result<(Analysis, Option<image::RgbImage>), FaceError> {
    let decoded = imagefile::decode(bytes, config.max_pixels).map_err(image_error)?;
    let (p, rgb) = (decoded.probe, decoded.rgb);
    let detections = models
        .detect(&rgb, &config.detect)
        .map_err(|e| FaceError::Internal(e.to_string()))?;
    let (w, h) = (p.width as f32, p.height as f32);
    let faces = detections
        .into_iter()
        .map(|d| {
            let crop = align::align_crop(&rgb, &d.landmarks);
            let pose = attributes::pose(&d.landmarks);
            let probability = models
                .sunglasses(&crop)
                .map_err(|e| FaceError::Internal(e.to_string()))?;
            let glasses = sunglasses::decide(probability, attributes::sunglasses(&crop, pose.yaw));
            let detail = FaceDetail {
                bounding_box: BoundingBox {
                    width: d.w / w,
                    height: d.h / h,
                    left: d.x / w,
                    top: d.y / h,
                },
                sunglasses: glasses,
                landmarks: ["eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight"]
                    .iter()
                    .zip(d.landmarks.iter())
                    .map(|(k, p)| Landmark {
                        kind: (*k).to_owned(),
                        x: p[0] / w,
                        y: p[1] / h,
                    })
                    .collect(),
                pose,
                quality: attributes::quality(&rgb, (d.x, d.y, d.w, d.h), &crop),
                confidence: 100.0 * d.score,
            };
            Ok(AnalyzedFace {
                detection: d,
                detail,
                crop,
                embedding: Default::default(),
            })
        })
        .collect::<Result<Vec<_>, FaceError>>()?;
    let reusable = (decoded.native_rgb && p.format == imagefile::Format::Jpeg).then_some(rgb);
    Ok((Analysis { etag, faces }, reusable))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

const NO_FACES: &str = "There are no faces in the image. Should be at least 1.";

#[async_trait::async_trait]
impl FaceEngine for LocalEngine {
    async fn create_collection(&self, collection_id: &str) -> Result<(), FaceError> {
        if self.collections.create(collection_id).await? {
            Ok(())
        } else {
            Err(FaceError::ResourceAlreadyExists(format!(
                "The collection id: {collection_id} already exists"
            )))
        }
    }

    async fn detect_faces(&self, image: &Image) -> Result<Vec<FaceDetail>, FaceError> {
        Ok(self
            .analyze(image)
            .await?
            .1
            .faces
            .iter()
            .map(|f| f.detail.clone())
            .collect())
    }

    async fn search_faces_by_image(
        &self,
        req: &SearchFacesByImageRequest,
    ) -> Result<SearchFacesByImageOutput, FaceError> {
        let (key, a) = self.analyze(&req.image).await?;
        let Some(&largest) = a.by_size().first() else {
            return Err(FaceError::InvalidParameter(NO_FACES.into()));
        };
        let emb = self.embedding(&key, &a, largest).await?;
        let reserve = req.reserve_for.as_ref().map(|ext| Reservation {
            face: self.face_for(&req.collection_id, &a, largest, 0, ext),
            embedding: emb.to_vec(),
            expires_at_ms: now_ms() + self.config.reservation_ttl.as_millis() as u64,
        });
        let hits = self
            .collections
            .search(
                &req.collection_id,
                &emb,
                req.face_match_threshold,
                req.max_faces.max(1),
                reserve,
            )
            .await?;
        let detail = &a.faces[largest].detail;
        Ok(SearchFacesByImageOutput {
            searched_face_bounding_box: detail.bounding_box,
            searched_face_confidence: detail.confidence,
            face_matches: hits
                .into_iter()
                .map(|h| FaceMatch {
                    similarity: h.similarity,
                    face: h.face,
                })
                .collect(),
            face_model_version: FACE_MODEL_VERSION.into(),
        })
    }

    async fn index_faces(&self, req: &IndexFacesRequest) -> Result<Vec<FaceRecord>, FaceError> {
        let (key, a) = self.analyze(&req.image).await?;
        let mut records = Vec::new();
        for (rank, i) in a
            .by_size()
            .into_iter()
            .take(req.max_faces.max(1))
            .enumerate()
        {
            let emb = self.embedding(&key, &a, i).await?;
            let face = self.face_for(&req.collection_id, &a, i, rank, &req.external_image_id);
            let face = self
                .collections
                .index(
                    &req.collection_id,
                    StoredFace {
                        face,
                        embedding: emb.to_vec(),
                    },
                )
                .await?;
            records.push(FaceRecord {
                face,
                face_detail: a.faces[i].detail.clone(),
            });
        }
        Ok(records)
    }

    async fn list_faces(&self, collection_id: &str) -> Result<Vec<Face>, FaceError> {
        Ok(self
            .collections
            .faces(collection_id)
            .await?
            .into_iter()
            .map(|f| f.face)
            .collect())
    }

    async fn delete_faces(
        &self,
        collection_id: &str,
        face_ids: &[String],
    ) -> Result<Vec<String>, FaceError> {
        self.collections.delete(collection_id, face_ids).await
    }

    async fn compare_faces(
        &self,
        source: &Image,
        target: &Image,
        threshold: f32,
    ) -> Result<CompareFacesOutput, FaceError> {
        let (sk, s) = self.analyze(source).await?;
        let Some(&largest) = s.by_size().first() else {
            return Err(FaceError::InvalidParameter(NO_FACES.into()));
        };
        let se = self.embedding(&sk, &s, largest).await?;
        let (tk, t) = self.analyze(target).await?;
        let mut compared = Vec::new();
        for i in 0..t.faces.len() {
            let te = self.embedding(&tk, &t, i).await?;
            let d = &t.faces[i].detail;
            compared.push(ComparedFace {
                similarity: similarity(cosine(&se, &te)),
                bounding_box: d.bounding_box,
                confidence: d.confidence,
            });
        }
        compared.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        let (face_matches, unmatched_faces) = compared
            .into_iter()
            .partition(|c| c.similarity >= threshold);
        Ok(CompareFacesOutput {
            source_image_face: s.faces[largest].detail.bounding_box,
            face_matches,
            unmatched_faces,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_uuid_shaped_and_stable() {
        let a = derived_uuid(&["face", "c", "etag", "user_a", "0"]);
        assert_eq!(a, derived_uuid(&["face", "c", "etag", "user_a", "0"]));
        assert_ne!(a, derived_uuid(&["face", "c", "etag", "user_b", "0"]));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }
}
