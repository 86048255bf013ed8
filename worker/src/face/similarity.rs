//! SFace cosine similarity mapped to Rekognition's 0–100 `Similarity` scale.
//!
//! `similarity = 100 · σ(SLOPE · (cos − COSINE_AT_50))`: a logistic fitted on same-person and
//! different-person pairs of the training faces (`deploy/face-training/calibrate_similarity.py`;
//! never the evaluation packages), with the fitted 50% point moved up by ln 19 / SLOPE, which
//! is the posterior under a 1-in-19 prior that two faces are the same person (a duplicate
//! search meets mostly other people). The measured pairs, the fit and the curve as a table are
//! in `docs/face-similarity.md`. Where it lands:
//! - the workshop's `FaceMatchThreshold` 70 sits at cosine 0.558; the closest different people
//!   measured (cosine 0.476, two women in one group photo) get 16, the median pair ~0;
//! - the same person in other photos: median cosine 0.84 → 100; 98% of those pairs ≥ 70;
//! - the same photo again (mirrored, recompressed, rescaled): cosine ≥ 0.85 → ≥ 99.9.
//!
//! It is monotone, so a threshold on similarity is a threshold on cosine.

/// The cosine that maps to 50.
pub const COSINE_AT_50: f32 = 0.530;
/// The fitted logistic slope (per unit of cosine).
pub const SLOPE: f32 = 30.0;
/// The workshop's `FaceMatchThreshold`.
pub const MATCH_THRESHOLD: f32 = 70.0;

/// Cosine of two L2-normalised embeddings.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The calibrated 0–100 similarity of a cosine.
pub fn similarity(cos: f32) -> f32 {
    100.0 / (1.0 + (-(SLOPE * (cos - COSINE_AT_50))).exp())
}

/// The cosine at which [`similarity`] reaches `threshold` (0–100, exclusive).
pub fn cosine_at(threshold: f32) -> f32 {
    let t = threshold.clamp(1e-3, 100.0 - 1e-3) / 100.0;
    COSINE_AT_50 + (t / (1.0 - t)).ln() / SLOPE
}

/// L2-normalises in place (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The measured cosines the calibration is judged by (docs/face-similarity.md).
    #[test]
    fn measured_pairs_land_on_the_right_side_of_70() {
        // Different people: the closest pair measured on the training faces, and the pair the
        // old map (0.363 at 70) let through at 70.9 on the evaluation set.
        for cos in [0.476, 0.366, 0.29] {
            assert!(similarity(cos) < 20.0, "{cos}: {}", similarity(cos));
        }
        // The same person: 5th percentile of other-photo pairs, and re-rendered copies.
        assert!(similarity(0.683) > 98.5);
        assert!(similarity(0.749) > 99.5);
        let at70 = cosine_at(MATCH_THRESHOLD);
        assert!((at70 - 0.558).abs() < 1e-3, "{at70}");
        assert!((similarity(at70) - 70.0).abs() < 1e-3);
    }

    #[test]
    fn bounded_and_monotone() {
        let mut last = -1.0;
        for i in -100..=100 {
            let s = similarity(i as f32 / 100.0);
            assert!((0.0..=100.0).contains(&s) && s >= last);
            last = s;
        }
    }
}
