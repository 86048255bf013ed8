//! Sunglasses: a small CNN trained from scratch (`deploy/face-training/`, `make
//! train-sunglasses`) on faces from registry packages with eyewear painted at the detected eye
//! points. Its ONNX file is part of the source tree (`worker/models/sunglasses/`, ~470 KB) and
//! compiled into the binary, so there is nothing to install; its sha256 is checked when the
//! session is built, so a damaged or replaced file is refused rather than silently used.
//!
//! Input `crop` [N, 3, 72, 112]: rows 20–91 of the 112×112 aligned crop (brows to below the
//! nose tip), planar RGB, raw 0–255. Output `sunglasses` [N, 1]: the calibrated probability
//! (Platt scaling on out-of-fold scores), so `Confidence` is that probability × 100 for the
//! value reported. Cross-validated figures: `worker/models/sunglasses/README.md`.
//!
//! Interim gate ([`decide`]): the classifier misses the workshop's sunglasses photo (oversized
//! lenses mirroring a car's interior; probability 0.14), so the old pixel rule still flags a
//! face when the classifier gives it at least [`RULE_GATE`]. Faces the classifier is sure are
//! bare (below the gate) are never flagged by the rule, which removes most of the rule's false
//! alarms on bare faces and clear glasses; the combined figures are not measured yet.

use sha2::{Digest, Sha256};

use super::BoolAttribute;
use super::align::CROP;

/// The trained model, as committed.
pub const MODEL: &[u8] = include_bytes!("../../models/sunglasses/sunglasses.onnx");
/// Its sha256 (printed by the training script; update both together).
pub const MODEL_SHA256: &str = "bd2c8229946173a2e135b13ff88b4bd5b258e7523c359e0211f82154cace9887";

/// The first and one-past-last rows of the aligned crop the model sees.
pub const ROWS: (usize, usize) = (20, 92);
/// The model's input name and shape per face.
pub const INPUT: &str = "crop";
pub const INPUT_SHAPE: [usize; 3] = [3, ROWS.1 - ROWS.0, CROP];

/// The sha256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The model's bytes, after checking them against [`MODEL_SHA256`].
pub fn verified_model() -> Result<&'static [u8], ModelMismatch> {
    let got = sha256_hex(MODEL);
    if got == MODEL_SHA256 {
        Ok(MODEL)
    } else {
        Err(ModelMismatch { got })
    }
}

/// The compiled-in model does not have the pinned sha256.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the sunglasses model (worker/models/sunglasses/sunglasses.onnx) has sha256 {got}, \
     expected {MODEL_SHA256}: retrain with `make train-sunglasses` and pin its sha256"
)]
pub struct ModelMismatch {
    pub got: String,
}

/// The model input for one aligned 112×112 RGB crop (interleaved): its rows 20–91, planar.
pub fn input(crop: &[u8]) -> Option<Vec<f32>> {
    if crop.len() != CROP * CROP * 3 {
        return None;
    }
    let (h, w) = (ROWS.1 - ROWS.0, CROP);
    let plane = h * w;
    let mut data = vec![0f32; 3 * plane];
    for y in 0..h {
        let row = &crop[(ROWS.0 + y) * CROP * 3..(ROWS.0 + y + 1) * CROP * 3];
        for (x, px) in row.chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                data[c * plane + y * w + x] = f32::from(v);
            }
        }
    }
    Some(data)
}

/// Rekognition's attribute from the calibrated probability: the value is whether it is at
/// least one half, the confidence is the probability of that value, × 100.
pub fn attribute(probability: f32) -> BoolAttribute {
    let p = if probability.is_finite() {
        probability.clamp(0.0, 1.0)
    } else {
        0.5
    };
    BoolAttribute {
        value: p >= 0.5,
        confidence: 100.0 * p.max(1.0 - p),
    }
}

/// The classifier's probability above which the pixel rule may still flag a face.
pub const RULE_GATE: f32 = 0.05;

/// The reported attribute: the classifier's when it flags the face, or when it is sure the
/// face is bare or the pixel rule agrees; the pixel rule's when the classifier is unsure
/// ([`RULE_GATE`] to 0.5) and the rule flags the face.
pub fn decide(probability: f32, rule: BoolAttribute) -> BoolAttribute {
    if rule.value && (RULE_GATE..0.5).contains(&probability) {
        rule
    } else {
        attribute(probability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_model_matches_its_pinned_sha256() {
        verified_model().unwrap();
        assert!(
            (300_000..1_000_000).contains(&MODEL.len()),
            "{} bytes: an LFS pointer or another model?",
            MODEL.len()
        );
    }

    #[test]
    fn input_takes_rows_20_to_91_planar() {
        let mut crop = vec![0u8; CROP * CROP * 3];
        let at = |x: usize, y: usize| (y * CROP + x) * 3;
        crop[at(5, 20)..at(5, 20) + 3].copy_from_slice(&[1, 2, 3]);
        crop[at(7, 91) + 2] = 9;
        crop[at(0, 19)] = 200; // above the window
        let v = input(&crop).unwrap();
        let plane = 72 * 112;
        assert_eq!((v[5], v[plane + 5], v[2 * plane + 5]), (1.0, 2.0, 3.0));
        assert_eq!(v[2 * plane + 71 * 112 + 7], 9.0);
        assert!(v.iter().all(|&x| x != 200.0));
        assert!(input(&crop[1..]).is_none());
    }

    #[test]
    fn the_rule_only_speaks_when_the_classifier_is_unsure() {
        let flagged = BoolAttribute {
            value: true,
            confidence: 95.0,
        };
        let bare = BoolAttribute {
            value: false,
            confidence: 90.0,
        };
        assert_eq!(decide(0.01, flagged), attribute(0.01));
        assert_eq!(decide(0.2, flagged), flagged);
        assert_eq!(decide(0.2, bare), attribute(0.2));
        assert_eq!(decide(0.8, bare), attribute(0.8));
    }

    #[test]
    fn confidence_is_the_probability_of_the_reported_value() {
        assert_eq!(
            attribute(0.9),
            BoolAttribute {
                value: true,
                confidence: 90.0
            }
        );
        let a = attribute(0.2);
        assert!(!a.value && (a.confidence - 80.0).abs() < 1e-4);
        assert!(attribute(f32::NAN).confidence == 50.0);
    }
}
