//! Face collections in Redis, for a fleet: every worker, on any machine, sees one
//! collection, and the duplicate reservation holds across processes.
//!
//! Each worker keeps a copy of a collection's faces and reservations ([`mirror`]) and brings
//! it up to date before every search with one script call that returns only what changed
//! since the copy's `seq`, so a face another worker indexed is never missed and embeddings
//! do not cross the network on every search. Similarity is computed on the copy.
//!
//! Search-and-reserve stays atomic across workers by optimistic concurrency: the worker
//! searches its copy at `seq` N, and when nothing matches, the reserve script stores the
//! reservation only if the collection is still at N. If another worker changed it meanwhile,
//! the worker catches up, checks only the faces that changed (the rest had no match) and
//! tries again. Every failed try means another change was committed, so the fleet always
//! makes progress; a worker that keeps losing gives up after [`MAX_RESERVE_TRIES`] with a
//! retryable error. Key names: [`crate::redis_keys`].

mod mirror;
mod scripts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use shared::redis::{RedisError, Script, ScriptInvocation};
use shared::redis_conn::RedisConn;

use self::mirror::{Changed, Mirror};
use self::scripts::SCRIPTS;
use super::FaceError;
use super::collection::{FaceCollections, Hit, Reservation, StoredFace, not_found, validate_id};
use crate::face::Face;
use crate::redis_keys::{CollectionKeys, PhotoKeys};

/// How many changed face ids a collection's change log keeps by default. A worker whose copy
/// is older than the log reloads the whole collection; the ids are small, so this is cheap.
pub const DEFAULT_CHANGES_LIMIT: usize = 100_000;

/// Tries of the reserve script before a search gives up (retryably) under contention.
pub const MAX_RESERVE_TRIES: usize = 32;

/// Collections in one Redis under a fleet prefix, with this process's cached copies.
pub struct RedisCollections {
    conn: RedisConn,
    keys: PhotoKeys,
    changes_limit: usize,
    /// One copy per collection, each behind an async lock: one sync at a time per
    /// collection and process, and searches of one process never race each other's copy.
    mirrors: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Mirror>>>>,
}

impl std::fmt::Debug for RedisCollections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCollections")
            .field("prefix", &self.keys.prefix())
            .field("changes_limit", &self.changes_limit)
            .finish()
    }
}

fn redis_error(e: RedisError) -> FaceError {
    FaceError::Internal(format!("face collection: redis: {e}"))
}

fn unexpected(reply: &[String]) -> FaceError {
    let head = reply.first().map(String::as_str).unwrap_or("nothing");
    FaceError::Internal(format!("face collection: unexpected script reply {head:?}"))
}

fn parse_face(json: &str) -> Result<Face, FaceError> {
    serde_json::from_str::<StoredFace>(json)
        .map(|f| f.face)
        .map_err(|e| FaceError::Internal(format!("face collection: corrupt face: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, FaceError> {
    serde_json::to_string(value).map_err(|e| FaceError::Internal(e.to_string()))
}

impl RedisCollections {
    /// Collections under `prefix` (the fleet's `--prefix`) on `conn`.
    pub fn new(conn: RedisConn, prefix: &str) -> Self {
        Self {
            conn,
            keys: PhotoKeys::new(prefix),
            changes_limit: DEFAULT_CHANGES_LIMIT,
            mirrors: Mutex::default(),
        }
    }

    /// Keeps `limit` entries in each change log instead of [`DEFAULT_CHANGES_LIMIT`] (tests
    /// use a tiny one to exercise the full reload).
    pub fn with_changes_limit(mut self, limit: usize) -> Self {
        self.changes_limit = limit.max(1);
        self
    }

    fn mirror(&self, id: &str) -> Arc<tokio::sync::Mutex<Mirror>> {
        let mut mirrors = self.mirrors.lock().unwrap_or_else(|p| p.into_inner());
        mirrors.entry(id.to_owned()).or_default().clone()
    }

    /// Validates the id and returns its keys.
    fn keys(&self, id: &str) -> Result<CollectionKeys, FaceError> {
        validate_id(id)?;
        Ok(self.keys.collection(id))
    }

    /// Runs one collection script; `missing` becomes the local store's ResourceNotFound.
    async fn call(
        &self,
        name: &'static str,
        script: &Script,
        id: &str,
        keys: &CollectionKeys,
        args: impl FnOnce(&mut ScriptInvocation<'_>),
    ) -> Result<Vec<String>, FaceError> {
        let mut inv = script.prepare_invoke();
        for k in keys.all() {
            inv.key(k);
        }
        args(&mut inv);
        let started = Instant::now();
        let mut conn = self.conn.clone();
        let out = inv.invoke_async::<Vec<String>>(&mut conn).await;
        shared::metrics::get()
            .fleet
            .script_call(name, started, &out);
        let reply = out.map_err(redis_error)?;
        if reply.first().map(String::as_str) == Some("missing") {
            return Err(not_found(id));
        }
        Ok(reply)
    }

    /// Brings `mirror` up to date; returns what changed.
    async fn sync(
        &self,
        id: &str,
        keys: &CollectionKeys,
        mirror: &mut Mirror,
    ) -> Result<Changed, FaceError> {
        let since = mirror.seq.map_or(-1, |s| i64::try_from(s).unwrap_or(-1));
        let reply = self
            .call("faces_sync", &SCRIPTS.sync, id, keys, |inv| {
                inv.arg(since).arg(&mirror.created);
            })
            .await?;
        mirror.apply(&reply)
    }
}

#[async_trait::async_trait]
impl FaceCollections for RedisCollections {
    async fn create(&self, collection_id: &str) -> Result<bool, FaceError> {
        let keys = self.keys(collection_id)?;
        let reply = self
            .call(
                "faces_create",
                &SCRIPTS.create,
                collection_id,
                &keys,
                |inv| {
                    inv.arg(shared::now_ms());
                },
            )
            .await?;
        match reply.first().map(String::as_str) {
            Some("created") => Ok(true),
            Some("exists") => Ok(false),
            _ => Err(unexpected(&reply)),
        }
    }

    async fn faces(&self, collection_id: &str) -> Result<Vec<StoredFace>, FaceError> {
        let keys = self.keys(collection_id)?;
        let reply = self
            .call("faces_list", &SCRIPTS.list, collection_id, &keys, |_| {})
            .await?;
        if reply.first().map(String::as_str) != Some("faces") {
            return Err(unexpected(&reply));
        }
        reply[1..]
            .iter()
            .map(|json| {
                serde_json::from_str(json)
                    .map_err(|e| FaceError::Internal(format!("face collection: corrupt face: {e}")))
            })
            .collect()
    }

    async fn search(
        &self,
        collection_id: &str,
        embedding: &[f32],
        threshold: f32,
        max: usize,
        reserve: Option<Reservation>,
    ) -> Result<Vec<Hit>, FaceError> {
        let keys = self.keys(collection_id)?;
        let now = shared::now_ms();
        let own = reserve.as_ref().map(|r| r.face.face_id.clone());
        let mirror = self.mirror(collection_id);
        let mut mirror = mirror.lock().await;
        self.sync(collection_id, &keys, &mut mirror).await?;
        let mut only = Changed::All;
        for _ in 0..MAX_RESERVE_TRIES {
            let hits = mirror.hits(embedding, threshold, max, own.as_deref(), now, &only);
            let Some(r) = reserve.as_ref().filter(|_| hits.is_empty()) else {
                return Ok(hits);
            };
            let Some(seq) = mirror.seq else {
                return Err(unexpected(&[]));
            };
            let json = to_json(r)?;
            let reply = self
                .call(
                    "faces_reserve",
                    &SCRIPTS.reserve,
                    collection_id,
                    &keys,
                    |inv| {
                        inv.arg(seq)
                            .arg(&r.face.face_id)
                            .arg(json)
                            .arg(r.expires_at_ms)
                            .arg(now)
                            .arg(self.changes_limit);
                    },
                )
                .await?;
            match reply.first().map(String::as_str) {
                Some("reserved") => return Ok(Vec::new()),
                // Someone changed the collection since the copy: check what they changed.
                Some("stale") => only = self.sync(collection_id, &keys, &mut mirror).await?,
                _ => return Err(unexpected(&reply)),
            }
        }
        tracing::warn!(
            collection = collection_id,
            tries = MAX_RESERVE_TRIES,
            "face reservation kept losing races"
        );
        Err(FaceError::Internal(format!(
            "face collection {collection_id}: changing too fast to reserve a face; try again"
        )))
    }

    async fn index(&self, collection_id: &str, face: StoredFace) -> Result<Face, FaceError> {
        let keys = self.keys(collection_id)?;
        let json = to_json(&face)?;
        let reply = self
            .call("faces_index", &SCRIPTS.index, collection_id, &keys, |inv| {
                inv.arg(&face.face.face_id)
                    .arg(json)
                    .arg(self.changes_limit);
            })
            .await?;
        match reply.as_slice() {
            [kind, json] if kind == "indexed" || kind == "exists" => parse_face(json),
            _ => Err(unexpected(&reply)),
        }
    }

    async fn delete(
        &self,
        collection_id: &str,
        face_ids: &[String],
    ) -> Result<Vec<String>, FaceError> {
        let keys = self.keys(collection_id)?;
        let reply = self
            .call(
                "faces_delete",
                &SCRIPTS.delete,
                collection_id,
                &keys,
                |inv| {
                    inv.arg(self.changes_limit).arg(face_ids);
                },
            )
            .await?;
        if reply.first().map(String::as_str) != Some("deleted") {
            return Err(unexpected(&reply));
        }
        Ok(reply[1..].to_vec())
    }
}
