//! `face-search` (the workshop's FaceSearchFunction, state CheckFaceDuplicate):
//! SearchFacesByImage with `FaceMatchThreshold` 70 and `MaxFaces` 3; any match fails with
//! `FaceAlreadyExistsError`, otherwise the result is null.
//!
//! Unlike the workshop, two photos of one person in the same batch cannot both pass: the search
//! reserves the face for this item's `userId` (see [`crate::face::collection`]).

use std::sync::Arc;

use serde_json::Value;

use super::{PhotoContext, input_object, passthrough, str_field};
use crate::face::{Image, SearchFacesByImageRequest};
use crate::task::{Task, TaskFailure};

/// The error name the workflow's Catch matches.
pub const FACE_ALREADY_EXISTS: &str = "FaceAlreadyExistsError";
/// The workshop's message, trailing space included.
pub const FACE_ALREADY_EXISTS_MESSAGE: &str = "Face in the picture is already in the system. ";

pub struct FaceSearch {
    ctx: Arc<PhotoContext>,
}

impl FaceSearch {
    pub fn new(ctx: Arc<PhotoContext>) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl Task for FaceSearch {
    fn name(&self) -> &'static str {
        "face-search"
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        let (bucket, name) = input_object(&input)?;
        let user = str_field(&input, "userId").ok().map(str::to_owned);
        let req = SearchFacesByImageRequest {
            collection_id: self.ctx.config.collection_id.clone(),
            image: Image::S3Object { bucket, name },
            face_match_threshold: self.ctx.config.face_match_threshold,
            max_faces: 3,
            reserve_for: user,
        };
        let out = self
            .ctx
            .faces
            .search_faces_by_image(&req)
            .await
            .map_err(passthrough)?;
        if out.face_matches.is_empty() {
            Ok(Value::Null)
        } else {
            Err(TaskFailure::lambda(
                FACE_ALREADY_EXISTS,
                FACE_ALREADY_EXISTS_MESSAGE,
            ))
        }
    }
}
