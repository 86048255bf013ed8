//! The per-photo analysis cache: a photo's faces, landmarks, aligned crops and (lazily) their
//! embeddings are computed once per worker and reused by the later steps of the same item
//! (face-detection, then face-search, then index-face all read the same object).
//!
//! The key is the object's identity and content: (bucket, key, entity tag), where the local
//! store's tag is the content's sha256, so a replaced object is never served stale results.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use super::FaceDetail;
use super::yunet::Detection;

/// One face of an analysed photo.
pub(crate) struct AnalyzedFace {
    pub detection: Detection,
    pub detail: FaceDetail,
    /// The aligned 112×112 RGB crop.
    pub crop: Vec<u8>,
    /// The SFace embedding, computed on first use.
    pub embedding: OnceLock<Arc<[f32]>>,
}

/// A photo's analysis.
pub(crate) struct Analysis {
    /// The content's identity (entity tag or sha256).
    pub etag: String,
    /// Faces, best detection first.
    pub faces: Vec<AnalyzedFace>,
}

impl Analysis {
    /// Face indices, largest box first.
    pub fn by_size(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.faces.len()).collect();
        idx.sort_by(|&a, &b| {
            self.faces[b]
                .detection
                .area()
                .total_cmp(&self.faces[a].detection.area())
        });
        idx
    }
}

pub(crate) type Key = (String, String, String);

/// The entries, and their keys oldest first.
type Entries = (HashMap<Key, Arc<Analysis>>, VecDeque<Key>);

/// A bounded map from key to analysis; the oldest entry goes first.
pub(crate) struct AnalysisCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

impl AnalysisCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Analysis>> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .get(key)
            .cloned()
    }

    pub fn insert(&self, key: Key, value: Arc<Analysis>) {
        if self.capacity == 0 {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *g;
        if map.insert(key.clone(), value).is_none() {
            order.push_back(key);
        }
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}
