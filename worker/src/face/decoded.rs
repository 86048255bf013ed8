//! Recently decoded photos, shared by the local engine (which decodes every photo in full for
//! detection) and the thumbnail task (which would otherwise decode the same JPEG again a few
//! steps later). Decoding is the largest cost of a thumbnail; with a hit, the thumbnail is a
//! resize and an encode only.
//!
//! Bounded in bytes, oldest first out: a worker keeps the photos of the items in flight, not
//! a history. The key is the object's identity and content, (bucket, key, entity tag), like
//! the analysis cache's, so a replaced object is never served stale pixels. Only JPEGs that
//! decode natively to RGB are kept: a PNG's thumbnail keeps its alpha and a grey JPEG stays
//! grey, which the engine's RGB decode has lost.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use image::RgbImage;

/// (bucket, key, entity tag).
pub type Key = (String, String, String);

/// The entries, oldest first, and the bytes they hold.
type Entries = (VecDeque<(Key, Arc<RgbImage>)>, usize);

/// Decoded RGB photos, at most `budget_bytes` of pixels in all.
pub struct DecodedImages {
    budget_bytes: usize,
    inner: Mutex<Entries>,
}

impl DecodedImages {
    /// The default budget: 32 MiB, about a dozen 1200×800 photos.
    pub const DEFAULT_BUDGET_BYTES: usize = 32 << 20;

    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget_bytes,
            inner: Mutex::new((VecDeque::new(), 0)),
        }
    }

    /// Keeps `img` under `key`, dropping the oldest entries to stay within the budget. An image
    /// larger than the whole budget is not kept.
    pub fn insert(&self, key: Key, img: Arc<RgbImage>) {
        let size = img.as_raw().len();
        if size > self.budget_bytes {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (entries, used) = &mut *g;
        if let Some(i) = entries.iter().position(|(k, _)| *k == key)
            && let Some((_, old)) = entries.remove(i)
        {
            *used -= old.as_raw().len();
        }
        while *used + size > self.budget_bytes {
            match entries.pop_front() {
                Some((_, old)) => *used -= old.as_raw().len(),
                None => break,
            }
        }
        entries.push_back((key, img));
        *used += size;
    }

    /// The image decoded for `key`, if still kept.
    pub fn get(&self, key: &Key) -> Option<Arc<RgbImage>> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
}

impl Default for DecodedImages {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BUDGET_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        ("b".into(), k.into(), "etag".into())
    }

    #[test]
    fn keeps_within_the_budget_oldest_out() {
        let img = || Arc::new(RgbImage::new(10, 10)); // 300 bytes
        let c = DecodedImages::new(700);
        c.insert(key("a"), img());
        c.insert(key("b"), img());
        assert!(c.get(&key("a")).is_some());
        c.insert(key("c"), img());
        assert!(c.get(&key("a")).is_none(), "the oldest went first");
        assert!(c.get(&key("b")).is_some() && c.get(&key("c")).is_some());
        c.insert(key("b"), img());
        c.insert(key("d"), img());
        assert!(c.get(&key("c")).is_none() && c.get(&key("b")).is_some());
        c.insert(key("huge"), Arc::new(RgbImage::new(100, 100)));
        assert!(c.get(&key("huge")).is_none(), "over the whole budget");
        assert!(
            c.get(&("b".into(), "b".into(), "other".into())).is_none(),
            "another content"
        );
    }
}
