//! `thumbnail` (the workshop's ThumbnailFunction): reads the photo, fits it within
//! `MAX_WIDTH`×`MAX_HEIGHT` (300×300) in the same format, writes `resized-<key>` to the
//! thumbnail bucket, and returns `{"thumbnail": {"s3key", "s3bucket"}}`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::thumbnailer::{ThumbnailOptions, make_thumbnail, thumbnail_of_rgb};
use super::{PhotoContext, input_object};
use crate::face::imagefile::Format;
use crate::store;
use crate::task::{Task, TaskFailure};

pub struct Thumbnail {
    ctx: Arc<PhotoContext>,
}

impl Thumbnail {
    pub fn new(ctx: Arc<PhotoContext>) -> Self {
        Self { ctx }
    }
}

fn store_failure(e: store::Error) -> TaskFailure {
    match e {
        store::Error::NoSuchKey { .. } => {
            TaskFailure::lambda("NoSuchKey", "The specified key does not exist.")
        }
        store::Error::NoSuchBucket(_) => {
            TaskFailure::lambda("NoSuchBucket", "The specified bucket does not exist")
        }
        store::Error::Io(e) => {
            TaskFailure::retryable("ServiceUnavailable", format!("object store: {e}"))
        }
        e @ store::Error::Unavailable(_) => {
            TaskFailure::retryable("ServiceUnavailable", e.to_string())
        }
        e @ store::Error::OutsideBucket { .. } => {
            TaskFailure::lambda("AccessDenied", &e.to_string())
        }
        other => TaskFailure::lambda("Error", &other.to_string()),
    }
}

#[async_trait::async_trait]
impl Task for Thumbnail {
    fn name(&self) -> &'static str {
        "thumbnail"
    }

    async fn run(&self, input: Value) -> Result<Value, TaskFailure> {
        let (bucket, key) = input_object(&input)?;
        let cfg = &self.ctx.config;
        let obj = self
            .ctx
            .store
            .get(&bucket, &key, cfg.max_object_bytes)
            .await
            .map_err(store_failure)?;
        let opts = ThumbnailOptions {
            max_width: cfg.thumbnail_max_width,
            max_height: cfg.thumbnail_max_height,
            jpeg_quality: cfg.thumbnail_jpeg_quality,
            max_pixels: cfg.max_pixels,
        };
        // The face engine's decode of the same content, if it is still kept: the thumbnail is
        // then a resize and an encode, not a second decode. The engine keeps JPEGs only, and
        // one over this task's own pixel cap goes the decoding way, to be refused there.
        let decoded = self
            .ctx
            .decoded
            .as_ref()
            .and_then(|d| d.get(&(bucket.clone(), key.clone(), obj.etag.clone())))
            .filter(|rgb| u64::from(rgb.width()) * u64::from(rgb.height()) <= cfg.max_pixels);
        let thumb = tokio::task::spawn_blocking(move || match decoded {
            Some(rgb) => thumbnail_of_rgb(&rgb, Format::Jpeg, &opts),
            None => make_thumbnail(&obj.bytes, &opts),
        })
        .await
        .map_err(|e| TaskFailure::lambda("Error", &format!("thumbnail decoder failed: {e}")))?
        .map_err(|e| {
            TaskFailure::lambda(
                "Error",
                &format!("Could not make a thumbnail of {bucket}/{key}: {e}"),
            )
        })?;
        let dest = format!("resized-{key}");
        let content_type = format!("image/{}", thumb.format.name());
        self.ctx
            .store
            .put(&cfg.thumbnail_bucket, &dest, thumb.bytes, &content_type)
            .await
            .map_err(store_failure)?;
        Ok(json!({ "thumbnail": { "s3key": dest, "s3bucket": cfg.thumbnail_bucket } }))
    }
}
