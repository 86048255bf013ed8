//! The rider-photo metadata table: the workshop's DynamoDB table, keyed by `Username`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Error;
use super::jsonfile::JsonFile;

/// Where a thumbnail is: the `thumbnail` attribute of an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailRef {
    pub s3bucket: String,
    pub s3key: String,
}

/// One item, with the workshop's attribute names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoMetadata {
    #[serde(rename = "Username")]
    pub username: String,
    #[serde(rename = "faceId")]
    pub face_id: String,
    pub s3bucket: String,
    pub s3key: String,
    pub thumbnail: ThumbnailRef,
}

/// The table every worker writes to. A put with an existing `Username` replaces the item, as
/// the workshop's unconditional DynamoDB put does.
#[async_trait::async_trait]
pub trait MetadataTable: Send + Sync {
    async fn put(&self, item: PhotoMetadata) -> Result<(), Error>;
    async fn get(&self, username: &str) -> Result<Option<PhotoMetadata>, Error>;
    /// Every item, ordered by `Username`.
    async fn list(&self) -> Result<Vec<PhotoMetadata>, Error>;
}

/// The table as one JSON file (embedded mode: `<data-dir>/tables/<name>.json`).
#[derive(Debug)]
pub struct LocalMetadataTable {
    file: JsonFile,
}

impl LocalMetadataTable {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            file: JsonFile::new(path),
        }
    }
}

type Items = BTreeMap<String, PhotoMetadata>;

#[async_trait::async_trait]
impl MetadataTable for LocalMetadataTable {
    async fn put(&self, item: PhotoMetadata) -> Result<(), Error> {
        self.file.update(|items: &mut Items| {
            items.insert(item.username.clone(), item);
            (true, ())
        })
    }

    async fn get(&self, username: &str) -> Result<Option<PhotoMetadata>, Error> {
        Ok(self.file.read::<Items>()?.remove(username))
    }

    async fn list(&self) -> Result<Vec<PhotoMetadata>, Error> {
        Ok(self.file.read::<Items>()?.into_values().collect())
    }
}
