//! Where photos, thumbnails and metadata live.
//!
//! - [`ObjectStore`]: S3-shaped buckets of objects. [`LocalStore`] keeps each bucket as a
//!   directory, `<data-dir>/buckets/<bucket>/<key>` (the embedded default); [`S3Store`] keeps
//!   them in S3 or an S3-compatible server.
//! - [`MetadataTable`]: the rider-photo table (the workshop's DynamoDB table keyed by
//!   `Username`). [`LocalMetadataTable`] keeps it as a JSON file under the data dir
//!   (embedded mode); [`RedisMetadataTable`] as a hash in the fleet's Redis.

pub(crate) mod jsonfile;
mod local;
mod metadata;
mod redis_metadata;
mod s3;

pub use local::LocalStore;
pub use metadata::{LocalMetadataTable, MetadataTable, PhotoMetadata, ThumbnailRef};
pub use redis_metadata::RedisMetadataTable;
pub use s3::S3Store;

/// Errors of the object store and the metadata table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key does not exist in the bucket (S3 `NoSuchKey`).
    #[error("The specified key does not exist: {bucket}/{key}")]
    NoSuchKey { bucket: String, key: String },
    /// The bucket does not exist (S3 `NoSuchBucket`).
    #[error("The specified bucket does not exist: {0}")]
    NoSuchBucket(String),
    /// A bucket name or key that this store refuses, e.g. one that would leave its bucket.
    #[error("invalid object name {bucket}/{key}: {reason}")]
    InvalidName {
        bucket: String,
        key: String,
        reason: &'static str,
    },
    /// The key leads outside its bucket through a symbolic link (S3's `AccessDenied`).
    #[error("Access Denied: {bucket}/{key} is a symbolic link that leads outside its bucket")]
    OutsideBucket { bucket: String, key: String },
    /// The object is larger than the caller's limit; nothing beyond the limit was read.
    #[error("object {bucket}/{key} is larger than {limit} bytes")]
    TooLarge {
        bucket: String,
        key: String,
        limit: u64,
    },
    /// The backing storage failed.
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    /// The storage service failed or could not be reached (connection, timeout, throttling,
    /// 5xx); worth retrying.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The storage service refused the request for another reason (e.g. `AccessDenied`).
    #[error("object store refused {bucket}/{key}: {message}")]
    Refused {
        bucket: String,
        key: String,
        message: String,
    },
    /// The fleet's Redis failed (a shared metadata table).
    #[error("redis: {0}")]
    Redis(#[from] shared::redis::RedisError),
    /// A stored document could not be parsed.
    #[error("corrupt stored document {path}: {message}")]
    Corrupt { path: String, message: String },
}

/// An object's bytes and its entity tag (for the local store, the sha256 of the content, so that
/// the tag changes whenever the content does).
#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: std::sync::Arc<[u8]>,
    pub etag: String,
}

/// S3-shaped object storage.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync {
    /// Reads an object, refusing (without reading it all) one larger than `max_bytes`.
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Object, Error>;

    /// Writes an object, replacing any previous one; returns its entity tag.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<String, Error>;

    /// Creates a bucket if it does not exist.
    async fn create_bucket(&self, bucket: &str) -> Result<(), Error>;

    /// The keys of a bucket, sorted.
    async fn list(&self, bucket: &str) -> Result<Vec<String>, Error>;

    /// Up to `len` bytes of an object from `offset`: fewer at its end, none past it (a
    /// Distributed Map reads its items a chunk at a time).
    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, Error>;

    /// At most `max` objects whose keys start with `prefix` and sort after `start_after`,
    /// in key order, with their size, entity tag and modification time.
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<ObjectInfo>, Error>;

    /// Whether a bucket exists.
    async fn bucket_exists(&self, bucket: &str) -> Result<bool, Error>;
}

/// An object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// The entity tag, without quotes.
    pub etag: String,
    /// Seconds since the Unix epoch.
    pub last_modified: i64,
}

/// The sha256 of some bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
