//! The face attributes this engine computes from geometry and pixels, and how; each value is a
//! measurement with a stated method, so it is reported, never invented. The sunglasses answer
//! is the trained classifier's ([`super::sunglasses`]); the pixel rule here only backs it up.
//!
//! - Sunglasses (pixel rule, see [`super::sunglasses::decide`]): on the 112×112 aligned crop the eyes sit at fixed places. Dark lenses make
//!   most of each eye region much darker than the cheek skin below it, so two measures relative
//!   to the cheek's median luma separate them: the eye region's median, and its share of pixels
//!   darker than half the cheek. Skin tone and exposure cancel out in the ratios. (A bright
//!   percentile, as first proposed, fails on the workshop's sunglasses photo: its lenses mirror
//!   the car's interior.) When the head is turned, the far eye is foreshortened and partly
//!   hidden, so the near eye (and its cheek) weighs more, and alone beyond 35° of yaw.
//!   Measured on the workshop photos: bare eyes median/cheek 0.78–1.49 and dark share ≤ 0.16;
//!   the sunglasses 0.38–0.55 and 0.41–0.65.
//! - Pose: roll from the eye line; yaw and pitch from where the nose tip falls between the eyes
//!   and mouth, compared with the frontal template (a geometric estimate, a few degrees coarse).
//! - Quality: brightness is the mean luma of the face box; sharpness maps the variance of the
//!   Laplacian of the aligned crop to 0–100.

use image::RgbImage;

use super::align::{CROP, TEMPLATE};
use super::{BoolAttribute, Pose, Quality};

fn luma(px: &[u8]) -> f32 {
    0.299 * f32::from(px[0]) + 0.587 * f32::from(px[1]) + 0.114 * f32::from(px[2])
}

/// Luma values of a rectangle of the aligned crop (x and y ranges inclusive).
fn region(crop: &[u8], xs: (usize, usize), ys: (usize, usize)) -> Vec<f32> {
    let mut v = Vec::with_capacity((xs.1 - xs.0 + 1) * (ys.1 - ys.0 + 1));
    for y in ys.0..=ys.1 {
        for x in xs.0..=xs.1 {
            let i = (y * CROP + x) * 3;
            v.push(luma(&crop[i..i + 3]));
        }
    }
    v
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len().max(1) as f32
}

fn percentile(mut v: Vec<f32>, p: f32) -> f32 {
    v.sort_by(f32::total_cmp);
    let i = ((v.len() - 1) as f32 * p).round() as usize;
    v[i]
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The sunglasses score (probability-like, 0–1) of one eye against its cheek.
fn eye_score(crop: &[u8], eye_x: (usize, usize), cheek_x: (usize, usize)) -> f32 {
    let eye = region(crop, eye_x, (45, 59));
    let cheek = percentile(region(crop, cheek_x, (74, 86)), 0.5).max(8.0);
    let dark = eye.iter().filter(|&&v| v < 0.5 * cheek).count() as f32 / eye.len() as f32;
    let median = percentile(eye, 0.5) / cheek;
    sigmoid(8.0 * (0.68 - median) + 8.0 * (dark - 0.28))
}

/// Sunglasses from the aligned crop and the head's yaw (degrees, as [`pose`] gives it: positive
/// when the nose points toward the image's right, which turns the image-left eye to the camera).
pub fn sunglasses(crop: &[u8], yaw: f32) -> BoolAttribute {
    let left = eye_score(crop, (27, 49), (24, 40));
    let right = eye_score(crop, (63, 85), (72, 88));
    // The near eye's weight grows with |yaw|, to 1 at 35°.
    let near_weight = (0.5 + yaw.abs() / 70.0).min(1.0);
    let (near, far) = if yaw >= 0.0 {
        (left, right)
    } else {
        (right, left)
    };
    let score = near_weight * near + (1.0 - near_weight) * far;
    BoolAttribute {
        value: score >= 0.5,
        confidence: 100.0 * score.max(1.0 - score),
    }
}

/// Head pose from the five landmarks (image pixels, YuNet's order).
pub fn pose(lm: &[[f32; 2]; 5]) -> Pose {
    let [el, er, nose, ml, mr] = *lm;
    let roll = (er[1] - el[1]).atan2(er[0] - el[0]);
    // Undo the roll around the eye midpoint, then measure.
    let (cx, cy) = ((el[0] + er[0]) / 2.0, (el[1] + er[1]) / 2.0);
    let (s, c) = (-roll).sin_cos();
    let rot = |p: [f32; 2]| {
        let (x, y) = (p[0] - cx, p[1] - cy);
        [x * c - y * s, x * s + y * c]
    };
    let (el, er, nose, ml, mr) = (rot(el), rot(er), rot(nose), rot(ml), rot(mr));
    let eye_dist = (er[0] - el[0]).abs().max(1e-3);
    // Yaw: the nose tip's sideways offset from the eye midpoint, relative to the eye distance;
    // the tip stands about 0.55 eye-distances in front of the eye plane.
    let yaw = ((nose[0] - (el[0] + er[0]) / 2.0) / (0.55 * eye_dist))
        .clamp(-1.0, 1.0)
        .asin();
    // Pitch: where the nose tip falls between the eye line and the mouth line, against the
    // frontal template's proportion.
    let t = &TEMPLATE;
    let frontal = (t[2][1] - (t[0][1] + t[1][1]) / 2.0)
        / ((t[3][1] + t[4][1]) / 2.0 - (t[0][1] + t[1][1]) / 2.0);
    let eye_y = (el[1] + er[1]) / 2.0;
    let mouth_y = (ml[1] + mr[1]) / 2.0;
    let span = (mouth_y - eye_y).abs().max(1e-3);
    let prop = (nose[1] - eye_y) / span;
    let pitch = ((frontal - prop) * 2.0).clamp(-1.0, 1.0).asin();
    Pose {
        roll: roll.to_degrees(),
        yaw: yaw.to_degrees(),
        pitch: pitch.to_degrees(),
    }
}

/// Brightness of the face box and sharpness of the aligned crop, both 0–100.
pub fn quality(img: &RgbImage, bbox: (f32, f32, f32, f32), crop: &[u8]) -> Quality {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let x0 = bbox.0.clamp(0.0, w - 1.0) as u32;
    let y0 = bbox.1.clamp(0.0, h - 1.0) as u32;
    let x1 = (bbox.0 + bbox.2).clamp(x0 as f32 + 1.0, w) as u32;
    let y1 = (bbox.1 + bbox.3).clamp(y0 as f32 + 1.0, h) as u32;
    // Sample at most ~64×64 points of the box.
    let step_x = ((x1 - x0) / 64).max(1);
    let step_y = ((y1 - y0) / 64).max(1);
    let (mut sum, mut n) = (0f32, 0u32);
    for y in (y0..y1).step_by(step_y as usize) {
        for x in (x0..x1).step_by(step_x as usize) {
            sum += luma(&img.get_pixel(x, y).0);
            n += 1;
        }
    }
    let brightness = 100.0 * sum / (255.0 * n.max(1) as f32);
    // Variance of the 4-neighbour Laplacian of the crop's luma.
    let g: Vec<f32> = crop.chunks_exact(3).map(luma).collect();
    let mut lap = Vec::with_capacity((CROP - 2) * (CROP - 2));
    for y in 1..CROP - 1 {
        for x in 1..CROP - 1 {
            let i = y * CROP + x;
            lap.push(g[i - 1] + g[i + 1] + g[i - CROP] + g[i + CROP] - 4.0 * g[i]);
        }
    }
    let m = mean(&lap);
    let var = lap.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / lap.len() as f32;
    let sharpness = 100.0 * (1.0 - (-var / 150.0).exp());
    Quality {
        brightness,
        sharpness,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crop_with(eyes: u8, skin: u8) -> Vec<u8> {
        let mut c = vec![skin; CROP * CROP * 3];
        for y in 45..=59 {
            for x in (27..=49).chain(63..=85) {
                let i = (y * CROP + x) * 3;
                c[i..i + 3].copy_from_slice(&[eyes; 3]);
            }
        }
        c
    }

    #[test]
    fn dark_eye_regions_are_sunglasses_and_skin_coloured_are_not() {
        assert!(sunglasses(&crop_with(20, 170), 0.0).value);
        assert!(!sunglasses(&crop_with(170, 170), 0.0).value);
    }

    #[test]
    fn frontal_template_pose_is_near_zero() {
        let p = pose(&TEMPLATE);
        assert!(
            p.roll.abs() < 1.0 && p.yaw.abs() < 5.0 && p.pitch.abs() < 1.0,
            "{p:?}"
        );
    }
}
