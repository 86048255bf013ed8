//! Five-point alignment to the ArcFace 112×112 template (what OpenCV's
//! `FaceRecognizerSF::alignCrop` does): a least-squares similarity transform from the detected
//! landmarks to the template, then an inverse warp with bilinear sampling and black borders.

use image::RgbImage;

/// The aligned crop's side.
pub const CROP: usize = 112;

/// The template, in YuNet's landmark order (image-left eye first).
pub const TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A similarity transform `[a -b tx; b a ty]` (scale, rotation, translation; no reflection).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    /// The least-squares similarity mapping `src` onto `dst` (Umeyama without reflection).
    pub fn estimate(src: &[[f32; 2]; 5], dst: &[[f32; 2]; 5]) -> Similarity {
        let n = src.len() as f64;
        let mean = |p: &[[f32; 2]; 5]| {
            let (sx, sy) = p.iter().fold((0.0, 0.0), |(x, y), q| {
                (x + f64::from(q[0]), y + f64::from(q[1]))
            });
            (sx / n, sy / n)
        };
        let (msx, msy) = mean(src);
        let (mdx, mdy) = mean(dst);
        let (mut num_a, mut num_b, mut den) = (0.0, 0.0, 0.0);
        for (s, d) in src.iter().zip(dst) {
            let (xs, ys) = (f64::from(s[0]) - msx, f64::from(s[1]) - msy);
            let (xd, yd) = (f64::from(d[0]) - mdx, f64::from(d[1]) - mdy);
            num_a += xs * xd + ys * yd;
            num_b += xs * yd - ys * xd;
            den += xs * xs + ys * ys;
        }
        if den <= f64::EPSILON {
            return Similarity {
                a: 1.0,
                b: 0.0,
                tx: mdx - msx,
                ty: mdy - msy,
            };
        }
        let (a, b) = (num_a / den, num_b / den);
        Similarity {
            a,
            b,
            tx: mdx - (a * msx - b * msy),
            ty: mdy - (b * msx + a * msy),
        }
    }

    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.a * x - self.b * y + self.tx,
            self.b * x + self.a * y + self.ty,
        )
    }

    /// The inverse transform.
    pub fn inverse(&self) -> Similarity {
        let det = self.a * self.a + self.b * self.b;
        if det <= f64::EPSILON {
            return Similarity {
                a: 1.0,
                b: 0.0,
                tx: 0.0,
                ty: 0.0,
            };
        }
        let (ia, ib) = (self.a / det, -self.b / det);
        Similarity {
            a: ia,
            b: ib,
            tx: -(ia * self.tx - ib * self.ty),
            ty: -(ib * self.tx + ia * self.ty),
        }
    }
}

/// The aligned 112×112 RGB crop (row-major, interleaved) for a face's landmarks.
pub fn align_crop(img: &RgbImage, landmarks: &[[f32; 2]; 5]) -> Vec<u8> {
    let inv = Similarity::estimate(landmarks, &TEMPLATE).inverse();
    let (w, h) = (img.width() as i64, img.height() as i64);
    let raw = img.as_raw();
    let mut out = vec![0u8; CROP * CROP * 3];
    for v in 0..CROP {
        for u in 0..CROP {
            let (sx, sy) = inv.apply(u as f64, v as f64);
            let (x0, y0) = (sx.floor() as i64, sy.floor() as i64);
            let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
            let mut acc = [0f64; 3];
            for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
                for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
                    let (x, y) = (x0 + dx, y0 + dy);
                    if x < 0 || y < 0 || x >= w || y >= h {
                        continue;
                    }
                    let i = ((y * w + x) * 3) as usize;
                    let wgt = wx * wy;
                    for c in 0..3 {
                        acc[c] += wgt * f64::from(raw[i + c]);
                    }
                }
            }
            let o = (v * CROP + u) * 3;
            for c in 0..3 {
                out[o + c] = acc[c].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_recovers_a_known_transform() {
        let t = Similarity {
            a: 0.8,
            b: 0.3,
            tx: 5.0,
            ty: -7.0,
        };
        let src = TEMPLATE.map(|p| [p[0] * 2.0 + 10.0, p[1] * 1.5 + 3.0]);
        let dst = src.map(|p| {
            let (x, y) = t.apply(f64::from(p[0]), f64::from(p[1]));
            [x as f32, y as f32]
        });
        let e = Similarity::estimate(&src, &dst);
        assert!(
            (e.a - t.a).abs() < 1e-4 && (e.b - t.b).abs() < 1e-4,
            "{e:?}"
        );
        assert!(
            (e.tx - t.tx).abs() < 1e-2 && (e.ty - t.ty).abs() < 1e-2,
            "{e:?}"
        );
        let back = e.inverse();
        let (x, y) = back.apply(dst[0][0].into(), dst[0][1].into());
        assert!((x - f64::from(src[0][0])).abs() < 1e-3 && (y - f64::from(src[0][1])).abs() < 1e-3);
    }

    #[test]
    fn identity_landmarks_copy_the_image() {
        let mut img = RgbImage::new(112, 112);
        img.put_pixel(40, 50, image::Rgb([200, 100, 50]));
        let crop = align_crop(&img, &TEMPLATE);
        let i = (50 * CROP + 40) * 3;
        assert_eq!(&crop[i..i + 3], &[200, 100, 50]);
    }
}
