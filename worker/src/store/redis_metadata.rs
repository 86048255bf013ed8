//! The rider-photo metadata table in the fleet's Redis: one hash, `Username` → item (JSON),
//! so every worker writes to and `mapfleet metadata` reads one table (key:
//! [`crate::redis_keys::PhotoKeys::table`]).

use shared::redis::AsyncCommands;
use shared::redis_conn::RedisConn;

use super::Error;
use super::metadata::{MetadataTable, PhotoMetadata};

/// One table in Redis.
#[derive(Clone)]
pub struct RedisMetadataTable {
    conn: RedisConn,
    key: String,
}

impl std::fmt::Debug for RedisMetadataTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMetadataTable")
            .field("key", &self.key)
            .finish()
    }
}

impl RedisMetadataTable {
    /// The table stored at `key` (see [`crate::redis_keys::PhotoKeys::table`]).
    pub fn new(conn: RedisConn, key: impl Into<String>) -> Self {
        Self {
            conn,
            key: key.into(),
        }
    }

    fn parse(&self, user: &str, json: &str) -> Result<PhotoMetadata, Error> {
        serde_json::from_str(json).map_err(|e| Error::Corrupt {
            path: format!("{} {user}", self.key),
            message: e.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl MetadataTable for RedisMetadataTable {
    async fn put(&self, item: PhotoMetadata) -> Result<(), Error> {
        let json = serde_json::to_string(&item).map_err(|e| Error::Corrupt {
            path: self.key.clone(),
            message: e.to_string(),
        })?;
        let mut conn = self.conn.clone();
        let _: i64 = conn.hset(&self.key, &item.username, json).await?;
        Ok(())
    }

    async fn get(&self, username: &str) -> Result<Option<PhotoMetadata>, Error> {
        let mut conn = self.conn.clone();
        let json: Option<String> = conn.hget(&self.key, username).await?;
        json.map(|j| self.parse(username, &j)).transpose()
    }

    async fn list(&self) -> Result<Vec<PhotoMetadata>, Error> {
        let mut conn = self.conn.clone();
        // A BTreeMap orders by Username, as the local table does.
        let all: std::collections::BTreeMap<String, String> = conn.hgetall(&self.key).await?;
        all.iter()
            .map(|(user, json)| self.parse(user, json))
            .collect()
    }
}
