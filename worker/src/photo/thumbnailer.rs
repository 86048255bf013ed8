//! Thumbnail making: fit within a box keeping the aspect ratio (like the workshop's
//! ImageMagick `resize`, which may also upscale), same format as the source.
//!
//! JPEGs are decoded at reduced scale where the DCT allows (1/2, 1/4, 1/8, never below the
//! target), so a 1200×800 photo is decoded at 300×200 directly; the rest of the way is a
//! Lanczos3 resize (`fast_image_resize`). PNGs are decoded fully, within the pixel cap.
//!
//! [`thumbnail_of_rgb`] makes the same thumbnail from a photo already decoded in full (the
//! face engine's decode, see [`crate::face::decoded`]): a Lanczos3 resize all the way, so its
//! pixels can differ from the DCT-scaled path's by a grey level or two; size, format and
//! quality are the same.

use std::io::Cursor;

use fast_image_resize as fr;
use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;

use crate::face::imagefile::{self, Format, ImageError};

/// How thumbnails are made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThumbnailOptions {
    pub max_width: u32,
    pub max_height: u32,
    pub jpeg_quality: u8,
    /// Sources whose header announces more pixels are refused before decoding.
    pub max_pixels: u64,
}

/// An encoded thumbnail.
#[derive(Debug, Clone)]
pub struct Thumb {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub width: u32,
    pub height: u32,
}

/// The size that fits `w`×`h` within the box, keeping the aspect ratio (at least 1×1).
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    let k = (f64::from(max_w) / f64::from(w)).min(f64::from(max_h) / f64::from(h));
    let tw = (f64::from(w) * k).round().max(1.0) as u32;
    let th = (f64::from(h) * k).round().max(1.0) as u32;
    (tw.min(max_w.max(1)), th.min(max_h.max(1)))
}

fn corrupt(e: impl std::fmt::Display) -> ImageError {
    ImageError::Corrupt(e.to_string())
}

/// Makes the thumbnail of a JPEG or PNG.
pub fn make_thumbnail(bytes: &[u8], opts: &ThumbnailOptions) -> Result<Thumb, ImageError> {
    let p = imagefile::probe(bytes, opts.max_pixels)?;
    let (tw, th) = fit(p.width, p.height, opts.max_width, opts.max_height);
    // A JPEG decodes at reduced scale (small); a PNG in full, within the decode budget,
    // whose permit is held until the thumbnail is made.
    let mut held = None;
    let (pixels, sw, sh, pixel_type) = match p.format {
        Format::Jpeg => decode_jpeg_scaled(bytes, tw, th)?,
        Format::Png => {
            let permit = held.insert(imagefile::decode_permit(&p));
            let img = imagefile::decode_png(bytes, &p, permit)?;
            let (w, h) = (img.width(), img.height());
            let pt = match img.color() {
                image::ColorType::L8 => fr::PixelType::U8,
                image::ColorType::La8 => fr::PixelType::U8x2,
                image::ColorType::Rgba8 => fr::PixelType::U8x4,
                _ => fr::PixelType::U8x3,
            };
            (img.into_bytes(), w, h, pt)
        }
    };
    finish(pixels, (sw, sh), pixel_type, p.format, (tw, th), opts)
}

/// The thumbnail of a JPEG already decoded in full to RGB (`format` is the source's).
pub fn thumbnail_of_rgb(
    rgb: &image::RgbImage,
    format: Format,
    opts: &ThumbnailOptions,
) -> Result<Thumb, ImageError> {
    let (w, h) = rgb.dimensions();
    let (tw, th) = fit(w, h, opts.max_width, opts.max_height);
    let src =
        fr::images::ImageRef::new(w, h, rgb.as_raw(), fr::PixelType::U8x3).map_err(corrupt)?;
    let out = resize(&src, fr::PixelType::U8x3, (tw, th))?;
    finish(out, (tw, th), fr::PixelType::U8x3, format, (tw, th), opts)
}

/// A Lanczos3 resize to `tw`×`th`.
fn resize(
    src: &impl fr::IntoImageView,
    pixel_type: fr::PixelType,
    (tw, th): (u32, u32),
) -> Result<Vec<u8>, ImageError> {
    let mut dst = fr::images::Image::new(tw, th, pixel_type);
    let o =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3));
    fr::Resizer::new()
        .resize(src, &mut dst, &o)
        .map_err(corrupt)?;
    Ok(dst.into_vec())
}

/// Resizes the pixels to `tw`×`th` if they are not that size yet, and encodes them.
fn finish(
    pixels: Vec<u8>,
    (sw, sh): (u32, u32),
    pixel_type: fr::PixelType,
    format: Format,
    (tw, th): (u32, u32),
    opts: &ThumbnailOptions,
) -> Result<Thumb, ImageError> {
    let out = if (sw, sh) == (tw, th) {
        pixels
    } else {
        let src = fr::images::Image::from_vec_u8(sw, sh, pixels, pixel_type).map_err(corrupt)?;
        resize(&src, pixel_type, (tw, th))?
    };
    let color = match pixel_type {
        fr::PixelType::U8 => ExtendedColorType::L8,
        fr::PixelType::U8x2 => ExtendedColorType::La8,
        fr::PixelType::U8x4 => ExtendedColorType::Rgba8,
        _ => ExtendedColorType::Rgb8,
    };
    let mut encoded = Cursor::new(Vec::new());
    match format {
        Format::Jpeg => {
            JpegEncoder::new_with_quality(&mut encoded, opts.jpeg_quality.clamp(1, 100))
                .encode(&out, tw, th, color)
                .map_err(corrupt)?
        }
        Format::Png => {
            use image::ImageEncoder;
            PngEncoder::new(&mut encoded)
                .write_image(&out, tw, th, color)
                .map_err(corrupt)?
        }
    }
    Ok(Thumb {
        bytes: encoded.into_inner(),
        format,
        width: tw,
        height: th,
    })
}

/// Decodes a JPEG at the smallest DCT scale that is still at least `tw`×`th`; returns the
/// pixels (grey or RGB), their size and type.
fn decode_jpeg_scaled(
    bytes: &[u8],
    tw: u32,
    th: u32,
) -> Result<(Vec<u8>, u32, u32, fr::PixelType), ImageError> {
    let mut d = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    d.read_info().map_err(corrupt)?;
    let req_w = u16::try_from(tw).unwrap_or(u16::MAX);
    let req_h = u16::try_from(th).unwrap_or(u16::MAX);
    let (sw, sh) = d.scale(req_w, req_h).map_err(corrupt)?;
    let pixels = d.decode().map_err(corrupt)?;
    let info = d.info().ok_or_else(|| corrupt("no image info"))?;
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    let n = sw as usize * sh as usize;
    let (pixels, pt) = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => (pixels, fr::PixelType::U8),
        jpeg_decoder::PixelFormat::L16 => (
            pixels.chunks_exact(2).map(|c| c[0]).collect(),
            fr::PixelType::U8,
        ),
        jpeg_decoder::PixelFormat::RGB24 => (pixels, fr::PixelType::U8x3),
        jpeg_decoder::PixelFormat::CMYK32 => {
            // Adobe CMYK JPEGs store inverted values; this is the usual naive conversion.
            let rgb = pixels
                .chunks_exact(4)
                .flat_map(|c| {
                    let k = u16::from(c[3]);
                    [c[0], c[1], c[2]].map(|v| (u16::from(v) * k / 255) as u8)
                })
                .collect();
            (rgb, fr::PixelType::U8x3)
        }
    };
    let need = n * pt.size();
    if pixels.len() < need {
        return Err(corrupt(
            "JPEG decoded to fewer pixels than its header announced",
        ));
    }
    Ok((pixels, sw, sh, pt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_like_the_workshop() {
        assert_eq!(fit(1200, 800, 300, 300), (300, 200));
        assert_eq!(fit(800, 1200, 300, 300), (200, 300));
        assert_eq!(fit(100, 50, 300, 300), (300, 150));
        assert_eq!(fit(1, 30000, 300, 300), (1, 300));
    }

    #[test]
    fn the_thumbnail_of_a_decoded_photo_matches_the_decoding_path() {
        // A smooth gradient, so that the DCT-scaled and the full-resize paths agree closely.
        let img = image::RgbImage::from_fn(1200, 800, |x, y| {
            image::Rgb([(x / 5) as u8, (y / 4) as u8, ((x + y) / 8) as u8])
        });
        let mut jpg = Cursor::new(Vec::new());
        img.write_to(&mut jpg, image::ImageFormat::Jpeg).unwrap();
        let opts = ThumbnailOptions {
            max_width: 300,
            max_height: 300,
            jpeg_quality: 85,
            max_pixels: 1 << 24,
        };
        let decoded = crate::face::imagefile::decode_rgb(jpg.get_ref(), 1 << 24)
            .unwrap()
            .1;
        let a = make_thumbnail(jpg.get_ref(), &opts).unwrap();
        let b = thumbnail_of_rgb(&decoded, Format::Jpeg, &opts).unwrap();
        assert_eq!((b.format, b.width, b.height), (a.format, a.width, a.height));
        assert_eq!((b.width, b.height), (300, 200));
        let (a, b) = (
            image::load_from_memory(&a.bytes).unwrap().into_rgb8(),
            image::load_from_memory(&b.bytes).unwrap().into_rgb8(),
        );
        let diff: f64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| f64::from(x.abs_diff(*y)))
            .sum::<f64>()
            / a.as_raw().len() as f64;
        assert!(diff < 2.0, "mean difference {diff}");
    }

    #[test]
    fn png_keeps_format_and_alpha() {
        let img = image::RgbaImage::from_pixel(600, 400, image::Rgba([1, 2, 3, 128]));
        let mut png = Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let opts = ThumbnailOptions {
            max_width: 300,
            max_height: 300,
            jpeg_quality: 85,
            max_pixels: 1 << 24,
        };
        let t = make_thumbnail(png.get_ref(), &opts).unwrap();
        assert_eq!((t.format, t.width, t.height), (Format::Png, 300, 200));
        let back = image::load_from_memory(&t.bytes).unwrap();
        assert_eq!(back.color(), image::ColorType::Rgba8);
    }
}
