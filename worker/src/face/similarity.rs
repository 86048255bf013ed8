//! SFace cosine similarity mapped to Rekognition's 0–100 `Similarity` scale.
//!
//! OpenCV's published same-person threshold for SFace is cosine 0.363 (LFW-calibrated). The
//! workshop searches with `FaceMatchThreshold: 70`, so the map puts cosine 0.363 exactly at 70:
//! `similarity = 100 · σ(12 · (cos − 0.363) + ln(7/3))`. It is monotone, so a threshold on
//! similarity is a threshold on cosine. Measured points: the same photo ≈ 99.9; other photos
//! of one person (cos 0.74–0.78) ≈ 99.6; different people (cos ≤ 0.29) ≤ 49.

/// The cosine that maps to [`MATCH_THRESHOLD`].
pub const COSINE_AT_THRESHOLD: f32 = 0.363;
/// The workshop's `FaceMatchThreshold`.
pub const MATCH_THRESHOLD: f32 = 70.0;
const SLOPE: f32 = 12.0;

/// Cosine of two L2-normalised embeddings.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The calibrated 0–100 similarity of a cosine.
pub fn similarity(cos: f32) -> f32 {
    let offset = (MATCH_THRESHOLD / (100.0 - MATCH_THRESHOLD)).ln();
    100.0 / (1.0 + (-(SLOPE * (cos - COSINE_AT_THRESHOLD) + offset)).exp())
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

    #[test]
    fn threshold_sits_at_opencvs_cosine() {
        assert!((similarity(COSINE_AT_THRESHOLD) - 70.0).abs() < 1e-3);
        assert!(similarity(0.29) < 60.0);
        assert!(similarity(0.74) > 99.0);
        assert!(similarity(-1.0) >= 0.0 && similarity(1.0) <= 100.0);
    }
}
