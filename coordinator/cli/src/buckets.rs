//! Distributed Maps' object store in embedded mode: the worker's store (the local buckets
//! under `<data-dir>/buckets`, or S3) seen through the engine's [`Buckets`] seam. The engine
//! reads and writes through the seam only, so the coordinator crate needs no store of its
//! own (and the slim coordinator binary no AWS SDK).

use std::sync::Arc;

use worker::store::{Error, ObjectStore};

use crate::maprun::{BucketError, Buckets, ObjectSummary};

/// The worker's object store as a map run's [`Buckets`].
pub struct StoreBuckets(pub Arc<dyn ObjectStore>);

fn convert(e: Error) -> BucketError {
    match e {
        Error::NoSuchBucket(b) => BucketError::NoSuchBucket(b),
        Error::NoSuchKey { bucket, key } => BucketError::NoSuchKey { bucket, key },
        other => BucketError::Other(other.to_string()),
    }
}

#[async_trait::async_trait]
impl Buckets for StoreBuckets {
    async fn read(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, BucketError> {
        self.0
            .get_range(bucket, key, offset, len)
            .await
            .map_err(convert)
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<ObjectSummary>, BucketError> {
        let page = self
            .0
            .list_page(bucket, prefix, start_after, max)
            .await
            .map_err(convert)?;
        Ok(page
            .into_iter()
            .map(|o| ObjectSummary {
                key: o.key,
                size: o.size,
                etag: o.etag,
                last_modified: o.last_modified,
            })
            .collect())
    }

    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), BucketError> {
        let content_type = if key.ends_with(".jsonl") {
            "application/jsonl"
        } else {
            "application/json"
        };
        self.0
            .put(bucket, key, bytes, content_type)
            .await
            .map(|_| ())
            .map_err(convert)
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, BucketError> {
        self.0.bucket_exists(bucket).await.map_err(convert)
    }
}
