//! Maps keyed by cursor ids, hashed fast.
//!
//! The driver and the in-memory backends look cursors, items, results and live children up
//! by cursor id several times per event. Those ids are the engine's own (`""`, `/3`,
//! `/3/1`: see [`crate::engine::CursorId`]), never text from a user, so the map needs no
//! protection from chosen collisions and a multiply-rotate hash (FxHash, as rustc uses)
//! replaces std's SipHash.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by cursor ids.
pub type IdMap<V> = HashMap<String, V, BuildHasherDefault<IdHasher>>;

/// A set of cursor ids.
pub type IdSet = HashSet<String, BuildHasherDefault<IdHasher>>;

/// FxHash: 8 bytes at a time, rotate, xor, multiply.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_differ_hash_apart_and_maps_work() {
        let hash = |s: &str| {
            let mut h = IdHasher::default();
            h.write(s.as_bytes());
            h.write_u8(0xff);
            h.finish()
        };
        let ids: Vec<String> = (0..10_000)
            .map(|i| format!("/{i}"))
            .chain((0..100).map(|i| format!("/7/{i}")))
            .chain([String::new()])
            .collect();
        let distinct: HashSet<u64> = ids.iter().map(|s| hash(s)).collect();
        assert_eq!(distinct.len(), ids.len());
        let mut m: IdMap<usize> = IdMap::default();
        for (i, id) in ids.iter().enumerate() {
            m.insert(id.clone(), i);
        }
        assert!(ids.iter().enumerate().all(|(i, id)| m[id] == i));
    }
}
