//! `persist-metadata` (the workshop's PersistMetadataFunction): puts
//! `{Username: userId, faceId: parallelResult[0].FaceId, s3bucket, s3key (raw, not decoded),
//! thumbnail: parallelResult[1].thumbnail}` into the metadata table (replacing an item with the
//! same Username, as the unconditional DynamoDB put did) and returns `{}`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{PhotoContext, str_field};
use crate::store::{PhotoMetadata, ThumbnailRef};
use crate::task::{Task, TaskFailure};

pub struct PersistMetadata {
    ctx: Arc<PhotoContext>,
}

impl PersistMetadata {
    pub fn new(ctx: Arc<PhotoContext>) -> Self {
        Self { ctx }
    }
}

fn type_error(what: &str) -> TaskFailure {
    TaskFailure::lambda(
        "TypeError",
        &format!("Cannot read property '{what}' of undefined"),
    )
}

/// The item the input describes.
pub fn item_from_input(input: &Value) -> Result<PhotoMetadata, TaskFailure> {
    let pr = input.get("parallelResult");
    let face_id = pr
        .and_then(|p| p.get(0))
        .ok_or_else(|| type_error("FaceId"))?
        .get("FaceId")
        .and_then(Value::as_str)
        .ok_or_else(|| type_error("FaceId"))?;
    let thumb = pr
        .and_then(|p| p.get(1))
        .ok_or_else(|| type_error("thumbnail"))?
        .get("thumbnail");
    let thumb_field = |f: &str| {
        thumb
            .and_then(|t| t.get(f))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let thumbnail = ThumbnailRef {
        s3bucket: thumb_field("s3bucket").ok_or_else(|| type_error("thumbnail"))?,
        s3key: thumb_field("s3key").ok_or_else(|| type_error("thumbnail"))?,
    };
    Ok(PhotoMetadata {
        username: str_field(input, "userId")?.to_owned(),
        face_id: face_id.to_owned(),
        s3bucket: str_field(input, "s3Bucket")?.to_owned(),
        s3key: str_field(input, "s3Key")?.to_owned(),
        thumbnail,
    })
}

#[async_trait::async_trait]
impl Task for PersistMetadata {
    fn name(&self) -> &'static str {
        "persist-metadata"
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        let item = item_from_input(&input)?;
        self.ctx.metadata.put(item).await.map_err(|e| {
            TaskFailure::retryable("ServiceUnavailable", format!("metadata table: {e}"))
        })?;
        Ok(json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_workshop_item() {
        let input = json!({
            "userId": "user_a", "s3Bucket": "photos", "s3Key": "my+photo.jpg",
            "parallelResult": [
                {"FaceId": "f-1", "ExternalImageId": "user_a"},
                {"thumbnail": {"s3key": "resized-my photo.jpg", "s3bucket": "thumbs"}}
            ]
        });
        let item = item_from_input(&input).unwrap();
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"Username": "user_a", "faceId": "f-1", "s3bucket": "photos", "s3key": "my+photo.jpg",
                   "thumbnail": {"s3bucket": "thumbs", "s3key": "resized-my photo.jpg"}})
        );
        let err =
            item_from_input(&json!({"userId": "u", "s3Bucket": "b", "s3Key": "k"})).unwrap_err();
        assert_eq!(err.error, "TypeError");
        assert!(
            err.cause
                .contains("Cannot read property 'FaceId' of undefined")
        );
    }
}
