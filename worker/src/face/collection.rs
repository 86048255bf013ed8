//! Face collections: where indexed faces and their embeddings live, and the reservations
//! that close the workshop's duplicate race.
//!
//! The race: two photos of one person in one batch run concurrently, both search an
//! empty collection, and both pass. Here a search that finds no match *reserves* the searched
//! face (atomically with the search), and a later search matches reservations held by others
//! as it matches indexed faces. IndexFaces turns the reservation into the indexed face (same
//! `FaceId`); an abandoned reservation (the item failed later) expires after its TTL.
//!
//! Two implementations of [`FaceCollections`], which the face engine takes without caring which:
//! - [`LocalCollections`] keeps each collection as one JSON file under the data dir, updated
//!   under a file lock, so embedded runs and `mapfleet faces` commands on the same data dir
//!   see one collection (and it outlives the run).
//! - [`super::redis_collection::RedisCollections`] keeps them in the fleet's Redis, where
//!   every worker on every machine sees them, with each worker's copy kept in sync.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::similarity::{cosine, similarity};
use super::{Face, FaceError};
use crate::store::jsonfile::JsonFile;

/// An indexed face and its embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFace {
    pub face: Face,
    pub embedding: Vec<f32>,
}

/// A searched face held for its searcher until indexed or expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// The face as it will be indexed (same `FaceId`).
    pub face: Face,
    pub embedding: Vec<f32>,
    /// Unix time in milliseconds after which the reservation no longer counts.
    pub expires_at_ms: u64,
}

/// A face (indexed or reserved) that matched a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub face: Face,
    pub similarity: f32,
    pub reserved: bool,
}

/// Ranks candidate faces (indexed ones, and faces another photo reserved: `reserved` true)
/// against `embedding`: those at or above `threshold`, best first, ties broken by FaceId so
/// an answer never depends on how a store orders its faces, at most `max`. The one scoring
/// of every collection.
pub fn rank_hits<'a>(
    embedding: &[f32],
    candidates: impl Iterator<Item = (&'a Face, &'a [f32], bool)>,
    threshold: f32,
    max: usize,
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = candidates
        .map(|(face, emb, reserved)| Hit {
            face: face.clone(),
            similarity: similarity(cosine(embedding, emb)),
            reserved,
        })
        .filter(|h| h.similarity >= threshold)
        .collect();
    hits.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then_with(|| a.face.face_id.cmp(&b.face.face_id))
    });
    hits.truncate(max);
    hits
}

/// The store of collections.
#[async_trait::async_trait]
pub trait FaceCollections: Send + Sync {
    /// Creates a collection; false if it already existed.
    async fn create(&self, collection_id: &str) -> Result<bool, FaceError>;

    /// The indexed faces (`ResourceNotFound` if the collection does not exist).
    async fn faces(&self, collection_id: &str) -> Result<Vec<StoredFace>, FaceError>;

    /// Atomically: the best matches (similarity ≥ `threshold`, at most `max`) among indexed
    /// faces and unexpired reservations whose `FaceId` differs from `reserve`'s; and, if there
    /// is none and `reserve` is given, stores that reservation (replacing one with its `FaceId`).
    async fn search(
        &self,
        collection_id: &str,
        embedding: &[f32],
        threshold: f32,
        max: usize,
        reserve: Option<Reservation>,
    ) -> Result<Vec<Hit>, FaceError>;

    /// Adds a face; if its `FaceId` is already indexed, returns the stored face unchanged
    /// (idempotent under redelivery). Drops the reservation with that `FaceId`.
    async fn index(&self, collection_id: &str, face: StoredFace) -> Result<Face, FaceError>;

    /// Deletes faces; returns the ids that existed.
    async fn delete(
        &self,
        collection_id: &str,
        face_ids: &[String],
    ) -> Result<Vec<String>, FaceError>;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The JSON document of one collection.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Doc {
    faces: Vec<StoredFace>,
    #[serde(default)]
    reservations: Vec<Reservation>,
}

/// Rekognition's answer for a collection that does not exist.
pub(crate) fn not_found(id: &str) -> FaceError {
    FaceError::ResourceNotFound(format!("The collection id: {id} does not exist"))
}

/// Collection ids: 1–255 characters of `[a-zA-Z0-9_.-]` (Rekognition's pattern), not `.`/`..`.
pub(crate) fn validate_id(id: &str) -> Result<(), FaceError> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(FaceError::InvalidParameter(format!(
            "invalid collection id {id:?}: use 1-255 of [a-zA-Z0-9_.-]"
        )))
    }
}

/// Collections as JSON files: `<dir>/<collection-id>.json`.
#[derive(Debug)]
pub struct LocalCollections {
    dir: PathBuf,
    files: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<JsonFile>>>,
}

impl LocalCollections {
    /// Collections under `dir` (usually `<data-dir>/collections`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            files: Default::default(),
        }
    }

    fn file(&self, id: &str) -> Result<std::sync::Arc<JsonFile>, FaceError> {
        validate_id(id)?;
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        Ok(files
            .entry(id.to_owned())
            .or_insert_with(|| {
                std::sync::Arc::new(JsonFile::new(self.dir.join(format!("{id}.json"))))
            })
            .clone())
    }

    fn existing(&self, id: &str) -> Result<std::sync::Arc<JsonFile>, FaceError> {
        let f = self.file(id)?;
        if f.path().is_file() {
            Ok(f)
        } else {
            Err(not_found(id))
        }
    }
}

fn internal(e: crate::store::Error) -> FaceError {
    FaceError::Internal(format!("face collection: {e}"))
}

#[async_trait::async_trait]
impl FaceCollections for LocalCollections {
    async fn create(&self, collection_id: &str) -> Result<bool, FaceError> {
        let f = self.file(collection_id)?;
        let existed = f.path().is_file();
        // Writing the (possibly unchanged) document creates the file under the lock.
        f.update(|_: &mut Doc| (!existed, ())).map_err(internal)?;
        Ok(!existed)
    }

    async fn faces(&self, collection_id: &str) -> Result<Vec<StoredFace>, FaceError> {
        Ok(self
            .existing(collection_id)?
            .read::<Doc>()
            .map_err(internal)?
            .faces)
    }

    async fn search(
        &self,
        collection_id: &str,
        embedding: &[f32],
        threshold: f32,
        max: usize,
        reserve: Option<Reservation>,
    ) -> Result<Vec<Hit>, FaceError> {
        let f = self.existing(collection_id)?;
        let now = now_ms();
        f.update(|doc: &mut Doc| {
            let own = reserve.as_ref().map(|r| r.face.face_id.clone());
            let before = doc.reservations.len();
            doc.reservations.retain(|r| r.expires_at_ms > now);
            let mut changed = doc.reservations.len() != before;
            let indexed = doc
                .faces
                .iter()
                .map(|f| (&f.face, f.embedding.as_slice(), false));
            let reserved = doc
                .reservations
                .iter()
                .filter(|r| Some(&r.face.face_id) != own.as_ref())
                .map(|r| (&r.face, r.embedding.as_slice(), true));
            let hits = rank_hits(embedding, indexed.chain(reserved), threshold, max);
            if hits.is_empty()
                && let Some(r) = reserve
            {
                doc.reservations
                    .retain(|x| x.face.face_id != r.face.face_id);
                doc.reservations.push(r);
                changed = true;
            }
            (changed, hits)
        })
        .map_err(internal)
    }

    async fn index(&self, collection_id: &str, face: StoredFace) -> Result<Face, FaceError> {
        let f = self.existing(collection_id)?;
        f.update(|doc: &mut Doc| {
            let id = face.face.face_id.clone();
            let before = doc.reservations.len();
            doc.reservations.retain(|r| r.face.face_id != id);
            if let Some(existing) = doc.faces.iter().find(|f| f.face.face_id == id) {
                return (doc.reservations.len() != before, existing.face.clone());
            }
            let out = face.face.clone();
            doc.faces.push(face);
            (true, out)
        })
        .map_err(internal)
    }

    async fn delete(
        &self,
        collection_id: &str,
        face_ids: &[String],
    ) -> Result<Vec<String>, FaceError> {
        let f = self.existing(collection_id)?;
        f.update(|doc: &mut Doc| {
            let deleted: Vec<String> = doc
                .faces
                .iter()
                .filter(|f| face_ids.contains(&f.face.face_id))
                .map(|f| f.face.face_id.clone())
                .collect();
            doc.faces.retain(|f| !face_ids.contains(&f.face.face_id));
            (!deleted.is_empty(), deleted)
        })
        .map_err(internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::face::test_face as face;

    fn unit(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; 4];
        v[i] = 1.0;
        v
    }

    fn dir() -> PathBuf {
        std::env::temp_dir().join(format!(
            "mapfleet-coll-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ))
    }

    #[tokio::test]
    async fn reservations_close_the_duplicate_race() {
        let d = dir();
        let c = LocalCollections::new(&d);
        assert!(matches!(
            c.search("x", &unit(0), 70.0, 3, None).await,
            Err(FaceError::ResourceNotFound(_))
        ));
        assert!(c.create("x").await.unwrap());
        assert!(!c.create("x").await.unwrap());
        let far = now_ms() + 60_000;
        let r = |id: &str| Reservation {
            face: face(id),
            embedding: unit(0),
            expires_at_ms: far,
        };
        // First searcher reserves; a redelivered search by the same face id still passes.
        assert!(
            c.search("x", &unit(0), 70.0, 3, Some(r("a")))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            c.search("x", &unit(0), 70.0, 3, Some(r("a")))
                .await
                .unwrap()
                .is_empty()
        );
        // A second searcher of the same person matches the reservation.
        let hits = c
            .search("x", &unit(0), 70.0, 3, Some(r("b")))
            .await
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert!(hits[0].reserved && hits[0].face.face_id == "a");
        // A different person does not.
        assert!(
            c.search("x", &unit(1), 70.0, 3, None)
                .await
                .unwrap()
                .is_empty()
        );
        // Indexing converts the reservation, idempotently.
        let stored = StoredFace {
            face: face("a"),
            embedding: unit(0),
        };
        c.index("x", stored.clone()).await.unwrap();
        c.index("x", stored).await.unwrap();
        assert_eq!(c.faces("x").await.unwrap().len(), 1);
        let hits = c.search("x", &unit(0), 70.0, 3, None).await.unwrap();
        assert!(!hits[0].reserved);
        assert_eq!(
            c.delete("x", &["a".into(), "zz".into()]).await.unwrap(),
            vec!["a".to_string()]
        );
        assert!(c.faces("x").await.unwrap().is_empty());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[tokio::test]
    async fn expired_reservations_do_not_match() {
        let d = dir();
        let c = LocalCollections::new(&d);
        c.create("x").await.unwrap();
        let old = Reservation {
            face: face("a"),
            embedding: unit(0),
            expires_at_ms: 1,
        };
        // An already-expired reservation is stored, then dropped by the next search.
        c.search("x", &unit(0), 70.0, 3, Some(old)).await.unwrap();
        assert!(
            c.search("x", &unit(0), 70.0, 3, None)
                .await
                .unwrap()
                .is_empty()
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
