//! `face-detection` (the workshop's FaceDetectionFunction): DetectFaces with all attributes;
//! exactly one face without sunglasses passes, and its FaceDetail (without `Landmarks`) is the
//! result.

use std::sync::Arc;

use serde_json::Value;

use super::{PhotoContext, input_object, passthrough};
use crate::face::{FaceError, Image};
use crate::task::{Task, TaskFailure};

/// The error name the workflow's Catch matches.
pub const PHOTO_DOES_NOT_MEET_REQUIREMENT: &str = "PhotoDoesNotMeetRequirementError";
/// The message for an image that is not a (valid) JPEG or PNG.
pub const UNSUPPORTED_FORMAT: &str = "Unsupported image file format. Only JPEG or PNG is supported";

pub struct FaceDetection {
    ctx: Arc<PhotoContext>,
}

impl FaceDetection {
    pub fn new(ctx: Arc<PhotoContext>) -> Self {
        Self { ctx }
    }
}

fn rejected(message: &str) -> TaskFailure {
    TaskFailure::lambda(PHOTO_DOES_NOT_MEET_REQUIREMENT, message)
}

#[async_trait::async_trait]
impl Task for FaceDetection {
    fn name(&self) -> &'static str {
        "face-detection"
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        let (bucket, name) = input_object(&input)?;
        let faces = match self
            .ctx
            .faces
            .detect_faces(&Image::S3Object { bucket, name })
            .await
        {
            Ok(f) => f,
            Err(FaceError::ImageTooLarge(m)) => return Err(rejected(&m)),
            Err(FaceError::InvalidImageFormat(_)) => return Err(rejected(UNSUPPORTED_FORMAT)),
            Err(e) => return Err(passthrough(e)),
        };
        if faces.len() != 1 {
            return Err(rejected(&format!(
                "Detected {} faces in the photo.",
                faces.len()
            )));
        }
        if faces[0].sunglasses.value {
            return Err(rejected("Face is wearing sunglasses"));
        }
        let mut detail = serde_json::to_value(&faces[0])
            .map_err(|e| TaskFailure::fatal("States.Runtime", e.to_string()))?;
        if let Some(obj) = detail.as_object_mut() {
            obj.shift_remove("Landmarks");
        }
        Ok(detail)
    }
}
