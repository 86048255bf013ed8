//! Randomness that comes in from the caller.
//!
//! The engine draws no randomness of its own (no thread RNG, no OS entropy): a driver seeds
//! an [`Entropy`] for each step of work, and everything random the language offers (retry
//! jitter, `States.MathRandom` without a seed, `States.UUID`) is drawn from it. Given the
//! same seed the engine does the same thing, which keeps it testable and replayable.

use std::cell::Cell;

/// A small deterministic generator (SplitMix64) over a caller-given seed. Interior
/// mutability lets expression scopes, which are shared borrows, draw from it.
#[derive(Debug, Clone)]
pub struct Entropy {
    state: Cell<u64>,
}

impl Entropy {
    pub fn new(seed: u64) -> Entropy {
        Entropy {
            state: Cell::new(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let s = self.state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    pub fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// 16 random bytes (a version-4 UUID's raw material).
    pub fn next_bytes16(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_and_draws_differ() {
        let (a, b) = (Entropy::new(7), Entropy::new(7));
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert!(xs.windows(2).all(|w| w[0] != w[1]));
        let f = Entropy::new(1).next_f64();
        assert!((0.0..1.0).contains(&f));
    }
}
