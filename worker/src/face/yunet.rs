//! YuNet (2023mar) input preparation and output decoding.
//!
//! Input: `input`, 1×3×640×640 BGR, raw 0–255 floats; the image is resized to fit (bilinear)
//! and placed at the top-left of a black canvas. Outputs: `cls_S`, `obj_S`, `bbox_S`, `kps_S` for
//! strides S = 8, 16, 32, each [1, cells, C], sigmoid already applied to cls and obj.

use fast_image_resize as fr;
use image::RgbImage;

/// The detector's square input side.
pub const INPUT_SIZE: usize = 640;
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
    /// 3×640×640, planar B, G, R.
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

/// Resizes the image to fit 640×640 (bilinear), top-left, and converts it to planar BGR floats.
pub fn letterbox(rgb: &RgbImage) -> Result<Letterbox, LetterboxError> {
    let (w, h) = rgb.dimensions();
    let scale = (INPUT_SIZE as f32 / w as f32).min(INPUT_SIZE as f32 / h as f32);
    let nw = ((w as f32 * scale).round() as usize).clamp(1, INPUT_SIZE);
    let nh = ((h as f32 * scale).round() as usize).clamp(1, INPUT_SIZE);
    let src = fr::images::ImageRef::new(w, h, rgb.as_raw(), fr::PixelType::U8x3)?;
    let mut dst = fr::images::Image::new(nw as u32, nh as u32, fr::PixelType::U8x3);
    let opts =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    fr::Resizer::new().resize(&src, &mut dst, &opts)?;
    let plane = INPUT_SIZE * INPUT_SIZE;
    let mut data = vec![0f32; 3 * plane];
    let buf = dst.buffer();
    for y in 0..nh {
        let row = &buf[y * nw * 3..(y + 1) * nw * 3];
        let base = y * INPUT_SIZE;
        for (x, px) in row.chunks_exact(3).enumerate() {
            data[base + x] = f32::from(px[2]);
            data[plane + base + x] = f32::from(px[1]);
            data[2 * plane + base + x] = f32::from(px[0]);
        }
    }
    Ok(Letterbox { scale, data })
}

/// The 12 outputs for one stride: cls, obj, bbox, kps slices.
pub struct StrideOutputs<'a> {
    pub cls: &'a [f32],
    pub obj: &'a [f32],
    pub bbox: &'a [f32],
    pub kps: &'a [f32],
}

/// Decodes the outputs (one entry per stride, in [`STRIDES`] order), keeps scores at or above
/// `score_threshold`, applies NMS at `nms_iou`, and maps back to the original image.
pub fn decode(
    outputs: &[StrideOutputs<'_>; 3],
    scale: f32,
    score_threshold: f32,
    nms_iou: f32,
    max_faces: usize,
) -> Vec<Detection> {
    let mut cands = Vec::new();
    for (o, &s) in outputs.iter().zip(STRIDES.iter()) {
        let cols = INPUT_SIZE / s;
        let cells = cols * cols;
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
    nms(cands, nms_iou, max_faces)
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
        let img = RgbImage::from_pixel(1280, 640, image::Rgb([10, 20, 30]));
        let lb = letterbox(&img).unwrap();
        assert_eq!(lb.scale, 0.5);
        let plane = INPUT_SIZE * INPUT_SIZE;
        assert_eq!(
            (lb.data[0], lb.data[plane], lb.data[2 * plane]),
            (30.0, 20.0, 10.0)
        );
        assert_eq!(lb.data[400 * INPUT_SIZE], 0.0, "below the image is padding");
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
        let d = decode(&outs, 0.5, 0.8, 0.3, 10);
        assert_eq!(d.len(), 1);
        assert!((d[0].score - 0.9).abs() < 1e-6);
        assert_eq!((d[0].x, d[0].y, d[0].w, d[0].h), (160.0, 96.0, 64.0, 64.0));
        assert_eq!(d[0].landmarks[0], [192.0, 128.0]);
    }
}
