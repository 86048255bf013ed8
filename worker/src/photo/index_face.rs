//! `index-face` (the workshop's IndexFaceFunction, state AddFaceToIndex): IndexFaces with
//! `ExternalImageId` = `userId`; the result is `FaceRecords[0].Face`
//! (`{FaceId, BoundingBox, ImageId, ExternalImageId, Confidence}`). Redelivery returns the
//! same face, since ids derive from the image content and the user.

use std::sync::Arc;

use serde_json::Value;

use super::{PhotoContext, input_object, passthrough, str_field};
use crate::face::{Image, IndexFacesRequest};
use crate::task::{Task, TaskFailure};

pub struct IndexFace {
    ctx: Arc<PhotoContext>,
}

impl IndexFace {
    pub fn new(ctx: Arc<PhotoContext>) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl Task for IndexFace {
    fn name(&self) -> &'static str {
        "index-face"
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        let (bucket, name) = input_object(&input)?;
        let user = str_field(&input, "userId")?.to_owned();
        let req = IndexFacesRequest {
            collection_id: self.ctx.config.collection_id.clone(),
            image: Image::S3Object { bucket, name },
            external_image_id: user,
            max_faces: 100,
        };
        let records = self
            .ctx
            .faces
            .index_faces(&req)
            .await
            .map_err(passthrough)?;
        let first = records.into_iter().next().ok_or_else(|| {
            TaskFailure::lambda("TypeError", "Cannot read property 'Face' of undefined")
        })?;
        serde_json::to_value(first.face)
            .map_err(|e| TaskFailure::fatal("States.Runtime", e.to_string()))
    }
}
