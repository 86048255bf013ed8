//! YuNet (2023mar) input preparation and output decoding.
//!
//! Input: `input`, N×3×H×W BGR, raw 0–255 floats (the folded model's batch, height and width
//! are free; H and W must be multiples of 32). The image is resized so that its long side is
//! the detection size (bilinear) and placed at the top-left of a black canvas whose sides are
//! the resized sides rounded up to 32: a 1200×800 photo at 640 runs on 640×448, not on the
//! 640×640 square the exporter fixed (the same pixels, a third less work). Outputs: `cls_S`,
//! `obj_S`, `bbox_S`, `kps_S` for strides S = 8, 16, 32, each [1, cells, C], sigmoid already
//! applied to cls and obj.

use fast_image_resize as fr;
use image::RgbImage;

/// The default detection size: the long side of the detector's input (the Python baseline's
/// and OpenCV's 640).
pub const INPUT_SIZE: usize = 640;
/// The detector's input sides are multiples of this (its largest stride).
pub const ALIGN: usize = 32;
/// The feature strides, in the order of the outputs.
pub const STRIDES: [usize; 3] = [8, 16, 32];

/// A detected face in the original image's pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub score: f32,
    /// Image-left eye, image-right eye, nose tip, image-left and image-right mouth corners
    /// (YuNet's order: the subject's right eye first, which appears on the image's left).
    pub landmarks: [[f32; 2]; 5],
}

impl Detection {
    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    fn iou(&self, o: &Detection) -> f32 {
        let x1 = self.x.max(o.x);
        let y1 = self.y.max(o.y);
        let x2 = (self.x + self.w).min(o.x + o.w);
        let y2 = (self.y + self.h).min(o.y + o.h);
        let inter = (x2 - x1).max(0.0) * (y2 - y1).max(0.0);
        let union = self.area() + o.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// The letterboxed network input and the scale from the original image to it.
pub struct Letterbox {
    pub scale: f32,
    /// The input's width and height (multiples of [`ALIGN`]).
    pub width: usize,
    pub height: usize,
    /// 3×height×width, planar B, G, R.
    pub data: Vec<f32>,
}

/// Why an image could not be letterboxed (its buffer does not match its size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LetterboxError {
    #[error(transparent)]
    Image(#[from] fr::ImageBufferError),
    #[error(transparent)]
    Resize(#[from] fr::ResizeError),
}

/// Resizes the image so that its long side is `long_side` (bilinear), top-left on a canvas
/// rounded up to multiples of [`ALIGN`], and converts it to planar BGR floats.
pub fn letterbox(rgb: &RgbImage, long_side: usize) -> Result<Letterbox, LetterboxError> {
    let (w, h) = rgb.dimensions();
    let long_side = long_side.max(ALIGN);
    let scale = (long_side as f32 / w as f32).min(long_side as f32 / h as f32);
    let nw = ((w as f32 * scale).round() as usize).clamp(1, long_side);
    let nh = ((h as f32 * scale).round() as usize).clamp(1, long_side);
    let (cw, ch) = (nw.div_ceil(ALIGN) * ALIGN, nh.div_ceil(ALIGN) * ALIGN);
    let src = fr::images::ImageRef::new(w, h, rgb.as_raw(), fr::PixelType::U8x3)?;
    let mut dst = fr::images::Image::new(nw as u32, nh as u32, fr::PixelType::U8x3);
    let opts =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    fr::Resizer::new().resize(&src, &mut dst, &opts)?;
    let plane = cw * ch;
    let mut data = vec![0f32; 3 * plane];
    let buf = dst.buffer();
    let (b, rest) = data.split_at_mut(plane);
    let (g, r) = rest.split_at_mut(plane);
    for y in 0..nh {
        let row = &buf[y * nw * 3..(y + 1) * nw * 3];
        let base = y * cw;
        let (b, g, r) = (
            &mut b[base..base + nw],
            &mut g[base..base + nw],
            &mut r[base..base + nw],
        );
        for (x, px) in row.chunks_exact(3).enumerate() {
            b[x] = f32::from(px[2]);
            g[x] = f32::from(px[1]);
            r[x] = f32::from(px[0]);
        }
    }
    Ok(Letterbox {
        scale,
        width: cw,
        height: ch,
        data,
    })
}

/// The 12 outputs for one stride: cls, obj, bbox, kps slices.
pub struct StrideOutputs<'a> {
    pub cls: &'a [f32],
    pub obj: &'a [f32],
    pub bbox: &'a [f32],
    pub kps: &'a [f32],
}

/// Decodes the outputs of a `width`×`height` input (one entry per stride, in [`STRIDES`]
/// order), keeps scores at or above `score_threshold`, applies NMS at `nms_iou`, and maps back
/// to the original image (`scale`: original to input).
pub fn decode(
    outputs: &[StrideOutputs<'_>; 3],
    (width, height): (usize, usize),
    scale: f32,
    score_threshold: f32,
    nms_iou: f32,
    max_faces: usize,
) -> Vec<Detection> {
    nms(
        candidates(outputs, (width, height), scale, score_threshold),
        nms_iou,
        max_faces,
    )
}

/// Every cell scoring at or above `score_threshold`, mapped to the original image (no NMS).
pub fn candidates(
    outputs: &[StrideOutputs<'_>; 3],
    (width, height): (usize, usize),
    scale: f32,
    score_threshold: f32,
) -> Vec<Detection> {
    let mut cands = Vec::new();
    for (o, &s) in outputs.iter().zip(STRIDES.iter()) {
        let cols = width / s;
        let cells = cols * (height / s);
        if o.cls.len() < cells
            || o.obj.len() < cells
            || o.bbox.len() < cells * 4
            || o.kps.len() < cells * 10
        {
            continue;
        }
        let sf = s as f32;
        for i in 0..cells {
            let score = (o.cls[i].clamp(0.0, 1.0) * o.obj[i].clamp(0.0, 1.0)).sqrt();
            if score < score_threshold {
                continue;
            }
            let (r, c) = ((i / cols) as f32, (i % cols) as f32);
            let b = &o.bbox[i * 4..i * 4 + 4];
            let cx = (c + b[0]) * sf;
            let cy = (r + b[1]) * sf;
            let bw = b[2].exp() * sf;
            let bh = b[3].exp() * sf;
            let k = &o.kps[i * 10..i * 10 + 10];
            let mut landmarks = [[0f32; 2]; 5];
            for (j, lm) in landmarks.iter_mut().enumerate() {
                *lm = [(k[2 * j] + c) * sf / scale, (k[2 * j + 1] + r) * sf / scale];
            }
            cands.push(Detection {
                x: (cx - bw / 2.0) / scale,
                y: (cy - bh / 2.0) / scale,
                w: bw / scale,
                h: bh / scale,
                score,
                landmarks,
            });
        }
    }
    cands
}

/// Greedy non-maximum suppression, best score first (stable for equal scores).
pub fn nms(mut cands: Vec<Detection>, iou: f32, max_keep: usize) -> Vec<Detection> {
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::new();
    for c in cands {
        if keep.len() >= max_keep {
            break;
        }
        if keep.iter().all(|k| k.iou(&c) <= iou) {
            keep.push(c);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, score: f32) -> Detection {
        Detection {
            x,
            y: 0.0,
            w: 10.0,
            h: 10.0,
            score,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let kept = nms(vec![det(0.0, 0.8), det(1.0, 0.9), det(50.0, 0.85)], 0.3, 10);
        assert_eq!(
            kept.iter().map(|d| d.score).collect::<Vec<_>>(),
            vec![0.9, 0.85]
        );
    }

    #[test]
    fn letterbox_places_the_image_top_left_in_bgr() {
        let img = RgbImage::from_pixel(1280, 600, image::Rgb([10, 20, 30]));
        let lb = letterbox(&img, INPUT_SIZE).unwrap();
        assert_eq!(lb.scale, 0.5);
        // 640×300, on a canvas rounded up to 32: 640×320.
        assert_eq!((lb.width, lb.height), (640, 320));
        let plane = lb.width * lb.height;
        assert_eq!(
            (lb.data[0], lb.data[plane], lb.data[2 * plane]),
            (30.0, 20.0, 10.0)
        );
        assert_eq!(lb.data[299 * lb.width], 30.0, "the last row of the image");
        assert_eq!(lb.data[300 * lb.width], 0.0, "below the image is padding");
    }

    #[test]
    fn decode_maps_a_cell_back_to_the_image() {
        let cells: Vec<usize> = STRIDES.iter().map(|s| (INPUT_SIZE / s).pow(2)).collect();
        let mut cls: Vec<Vec<f32>> = cells.iter().map(|&n| vec![0.0; n]).collect();
        let obj: Vec<Vec<f32>> = cells.iter().map(|&n| vec![1.0; n]).collect();
        let bbox: Vec<Vec<f32>> = cells.iter().map(|&n| vec![0.0; n * 4]).collect();
        let kps: Vec<Vec<f32>> = cells.iter().map(|&n| vec![0.0; n * 10]).collect();
        // Stride 32, row 2, column 3: centre (96, 64), size 32 (exp(0)*32), at scale 0.5.
        cls[2][2 * 20 + 3] = 0.81;
        let outs = [0, 1, 2].map(|i| StrideOutputs {
            cls: &cls[i],
            obj: &obj[i],
            bbox: &bbox[i],
            kps: &kps[i],
        });
        let d = decode(&outs, (INPUT_SIZE, INPUT_SIZE), 0.5, 0.8, 0.3, 10);
        assert_eq!(d.len(), 1);
        assert!((d[0].score - 0.9).abs() < 1e-6);
        assert_eq!((d[0].x, d[0].y, d[0].w, d[0].h), (160.0, 96.0, 64.0, 64.0));
        assert_eq!(d[0].landmarks[0], [192.0, 128.0]);
    }
}
