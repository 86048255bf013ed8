//! A Distributed Map's run over an object store: items read in chunks from an `ItemReader`'s
//! object (or listing), results written in files by its `ResultWriter`.
//!
//! The logic is here, pure over the [`Buckets`] seam; whoever embeds the engine supplies the
//! buckets (embedded mode: the CLI hands in the worker's local or S3 store). Nothing here
//! holds a whole batch: an [`ItemStream`] keeps one read (1 MiB) and what it decoded from it,
//! and [`ResultFiles`] one result file in the making (flushed at 4 MiB).
//!
//! - `decode.rs`: JSON Lines and CSV decoded incrementally, a JSON array whole.
//! - `reader.rs`: [`ItemStream`], a forward-only reader of one `ItemReader`'s items.
//! - `results.rs`: [`ResultFiles`], AWS's `SUCCEEDED_n.json` / `FAILED_n.json` and
//!   `manifest.json`, and the summary a Map with a ResultWriter returns.
//! - `run.rs`: [`OpenRun`], one run in progress as a backend keeps it.
//! - `plan.rs`: what the engine resolves when the Map starts ([`MapRunPlan`]: the reader's
//!   bucket and key, the writer's destination, how items become child inputs).

mod decode;
mod plan;
mod reader;
mod results;
mod run;

pub use decode::{DecodeError, Decoded, Decoder};
pub use plan::{
    BatchPlan, ChildInputs, MapRunPlan, ReadRequest, RunLimits, WriteRequest, child_execution,
};
pub use reader::{ItemReadError, ItemStream};
pub use results::{ChildRecord, FILE_BYTES, ResultFiles, ResultFormat};
pub use run::OpenRun;

/// An object of a listing (`s3:listObjectsV2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    /// The entity tag, without quotes.
    pub etag: String,
    /// Seconds since the Unix epoch.
    pub last_modified: i64,
}

/// Why a bucket operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
    #[error("The specified bucket does not exist: {0}")]
    NoSuchBucket(String),
    #[error("The specified key does not exist: {bucket}/{key}")]
    NoSuchKey { bucket: String, key: String },
    /// Any other failure (refused, unreachable, an invalid name), already described.
    #[error("{0}")]
    Other(String),
}

/// The object store a Distributed Map reads its items from and writes its results to.
#[async_trait::async_trait]
pub trait Buckets: Send + Sync {
    /// Up to `len` bytes of an object from `offset`: fewer at its end, none past it.
    async fn read(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, BucketError>;

    /// At most `max` objects whose keys start with `prefix` and sort after `start_after`,
    /// in key order.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<ObjectSummary>, BucketError>;

    /// Writes an object, replacing any previous one.
    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), BucketError>;

    /// Whether the bucket exists (checked before a run writes anything).
    async fn bucket_exists(&self, bucket: &str) -> Result<bool, BucketError>;
}

#[cfg(test)]
mod tests;
