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

impl Analysis {
    /// About what the entry holds in memory: the aligned crops, and a little per face.
    pub fn bytes(&self) -> usize {
        self.etag.len()
            + self
                .faces
                .iter()
                .map(|f| f.crop.len() + std::mem::size_of::<AnalyzedFace>() + 512)
                .sum::<usize>()
    }
}

/// The entries, their keys oldest first, and the bytes they hold.
type Entries = (HashMap<Key, Arc<Analysis>>, VecDeque<Key>, usize);

/// A map from key to analysis bounded in entries and in bytes; the oldest entry goes first.
///
/// A Map fans out every item's first step before the later ones (the steps queue is first in,
/// first out), so a worker analyses up to its share of the items in flight before their
/// face-search steps come: the cache must hold that many photos (~38 KB a face) to spare them
/// a second decode and detection.
pub(crate) struct AnalysisCache {
    capacity: usize,
    budget_bytes: usize,
    inner: Mutex<Entries>,
}

impl AnalysisCache {
    pub fn new(capacity: usize, budget_bytes: usize) -> Self {
        Self {
            capacity,
            budget_bytes,
            inner: Mutex::new((HashMap::new(), VecDeque::new(), 0)),
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
        let size = value.bytes();
        if self.capacity == 0 || size > self.budget_bytes {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order, used) = &mut *g;
        match map.insert(key.clone(), value) {
            Some(old) => *used -= old.bytes(),
            None => order.push_back(key),
        }
        *used += size;
        while order.len() > self.capacity || *used > self.budget_bytes {
            let Some(old) = order.pop_front() else { break };
            if let Some(gone) = map.remove(&old) {
                *used -= gone.bytes();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Key {
        ("b".into(), format!("k{i}"), format!("e{i}"))
    }

    fn analysis(etag_bytes: usize) -> Arc<Analysis> {
        Arc::new(Analysis {
            etag: "x".repeat(etag_bytes),
            faces: Vec::new(),
        })
    }

    #[test]
    fn the_oldest_entries_go_when_the_bytes_or_the_entries_run_out() {
        let c = AnalysisCache::new(10, 100);
        for i in 0..3 {
            c.insert(key(i), analysis(40));
        }
        // 120 bytes do not fit in 100: the first is gone.
        assert!(c.get(&key(0)).is_none());
        assert!(c.get(&key(1)).is_some() && c.get(&key(2)).is_some());
        // Replacing an entry counts its new size only.
        c.insert(key(2), analysis(10));
        c.insert(key(3), analysis(40));
        assert!(c.get(&key(1)).is_some(), "40 + 10 + 40 fit");
        // Larger than the whole budget: not kept, nothing else dropped.
        c.insert(key(4), analysis(101));
        assert!(c.get(&key(4)).is_none() && c.get(&key(1)).is_some());

        let few = AnalysisCache::new(2, 1 << 20);
        for i in 0..3 {
            few.insert(key(i), analysis(1));
        }
        assert!(few.get(&key(0)).is_none() && few.get(&key(2)).is_some());
        let off = AnalysisCache::new(0, 1 << 20);
        off.insert(key(0), analysis(1));
        assert!(off.get(&key(0)).is_none());
    }
}
