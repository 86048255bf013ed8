//! Bounded image decoding. Hostile objects (non-images, corrupt or truncated files, headers
//! that announce a gigapixel canvas) must end as an error, never a crash or an unbounded
//! allocation: the format is sniffed from the magic bytes, the dimensions are read from the
//! header and checked against a pixel cap before any pixel is decoded, and the decoder runs
//! with an allocation limit. A full decode also waits for its size in the process's
//! [`DecodeBudget`], so photos decoding side by side stay within a memory bound.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, RgbImage};

use super::decode_budget::{DecodeBudget, DecodePermit};

/// The formats the photo pipeline accepts (Rekognition's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

impl Format {
    /// The lower-case format name, as in `image/<name>` content types.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
        }
    }
}

/// Why an image was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    #[error("not a JPEG or PNG image")]
    UnsupportedFormat,
    /// A header announcing more pixels than allowed (a decompression bomb, or simply too
    /// big): refused before any pixel is decoded.
    #[error(
        "image dimensions {width}x{height} ({} pixels) are over the limit of {max_pixels} pixels",
        u64::from(*width) * u64::from(*height)
    )]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("corrupt image: {0}")]
    Corrupt(String),
}

/// An image's format and dimensions, from its header only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub format: Format,
    pub width: u32,
    pub height: u32,
}

/// Sniffs the format and reads the dimensions, and checks them against `max_pixels`.
pub fn probe(bytes: &[u8], max_pixels: u64) -> Result<Probe, ImageError> {
    let format = match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => Format::Jpeg,
        Ok(ImageFormat::Png) => Format::Png,
        _ => return Err(ImageError::UnsupportedFormat),
    };
    let reader = ImageReader::with_format(
        Cursor::new(bytes),
        if format == Format::Jpeg {
            ImageFormat::Jpeg
        } else {
            ImageFormat::Png
        },
    );
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt("zero-sized image".into()));
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ImageError::TooManyPixels {
            width,
            height,
            max_pixels,
        });
    }
    if format == Format::Jpeg && !jpeg_is_complete(bytes) {
        return Err(ImageError::Corrupt(
            "JPEG ends before its end-of-image marker".into(),
        ));
    }
    Ok(Probe {
        format,
        width,
        height,
    })
}

/// Whether a JPEG's scan data is followed by an end-of-image marker. Decoders fill a truncated
/// scan with grey rather than fail, which would turn a damaged upload into a plausible photo.
/// The marker segments before the first scan are walked (an EXIF thumbnail there has its own
/// `FF D9`), then the scan data is searched: entropy-coded data never contains `FF D9` (0xFF is
/// stuffed), so finding it means the image is complete, whatever trailer data follows.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if marker == 0xDA {
            let scan = bytes.get(i + 2 + len..).unwrap_or_default();
            // Searched from the end, where the marker almost always is: the answer is the
            // same as a forward search (some pair exists iff a last one does), without
            // reading the whole scan.
            return scan.windows(2).rev().any(|w| w == [0xFF, 0xD9]);
        }
        i += 2 + len;
    }
    false
}

/// Decoder limits for an image that passed [`probe`]: room for the pixels at 16 bits per
/// channel with alpha, plus the decoder's own buffers.
fn limits(p: &Probe) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(p.width);
    limits.max_image_height = Some(p.height);
    limits.max_alloc = Some(u64::from(p.width) * u64::from(p.height) * 8 + (64 << 20));
    limits
}

/// What a full decode of the probed image holds at its peak, in bytes: the decoder's output
/// (up to 4 bytes a pixel: RGBA, or a JPEG's CMYK) and, for a PNG, the 8-bit RGB or
/// thumbnail copy made from it (3 more).
pub fn decode_cost(p: &Probe) -> u64 {
    let pixels = u64::from(p.width) * u64::from(p.height);
    match p.format {
        Format::Jpeg => pixels * 4,
        Format::Png => pixels * 7,
    }
}

/// Waits for the probed image's [`decode_cost`] in the process's decode budget.
pub fn decode_permit(p: &Probe) -> DecodePermit {
    DecodeBudget::global().acquire(decode_cost(p))
}

/// Decodes to 8-bit RGB after [`probe`]'s checks.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> Result<(Probe, RgbImage), ImageError> {
    decode(bytes, max_pixels).map(|d| (d.probe, d.rgb))
}

/// A photo decoded to 8-bit RGB.
pub struct Decoded {
    pub probe: Probe,
    pub rgb: RgbImage,
    /// Whether the source was 8-bit RGB already (no grey, alpha or 16-bit channel lost).
    pub native_rgb: bool,
    /// This decode's share of the decode budget: keep it while the pixels are in use.
    pub permit: DecodePermit,
}

/// Decodes to 8-bit RGB after [`probe`]'s checks, saying whether anything was converted.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Decoded, ImageError> {
    let p = probe(bytes, max_pixels)?;
    let permit = decode_permit(&p);
    let mut reader = ImageReader::with_format(
        Cursor::new(bytes),
        if p.format == Format::Jpeg {
            ImageFormat::Jpeg
        } else {
            ImageFormat::Png
        },
    );
    reader.limits(limits(&p));
    let img = reader
        .decode()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let native_rgb = img.color() == image::ColorType::Rgb8;
    Ok(Decoded {
        probe: p,
        rgb: img.into_rgb8(),
        native_rgb,
        permit,
    })
}

/// A PNG decoded to 8-bit channels, keeping grey and alpha (for thumbnails). The caller
/// holds the decode's [`decode_permit`] for as long as it uses the pixels.
pub fn decode_png(
    bytes: &[u8],
    p: &Probe,
    _permit: &DecodePermit,
) -> Result<image::DynamicImage, ImageError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), ImageFormat::Png);
    reader.limits(limits(p));
    let img = reader
        .decode()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    Ok(match img {
        image::DynamicImage::ImageLuma8(_)
        | image::DynamicImage::ImageLumaA8(_)
        | image::DynamicImage::ImageRgb8(_)
        | image::DynamicImage::ImageRgba8(_) => img,
        image::DynamicImage::ImageLuma16(_) => image::DynamicImage::ImageLuma8(img.into_luma8()),
        image::DynamicImage::ImageLumaA16(_) => {
            image::DynamicImage::ImageLumaA8(img.into_luma_alpha8())
        }
        other if other.color().has_alpha() => image::DynamicImage::ImageRgba8(other.into_rgba8()),
        other => image::DynamicImage::ImageRgb8(other.into_rgb8()),
    })
}

#[cfg(test)]
mod hostile_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_a_small_png() {
        let (p, img) = decode_rgb(&png(7, 5), 1000).unwrap();
        assert_eq!((p.format, p.width, p.height), (Format::Png, 7, 5));
        assert_eq!(img.get_pixel(3, 3).0, [10, 200, 30]);
    }

    #[test]
    fn refuses_non_images_and_garbage() {
        assert_eq!(
            probe(b"hello world", 1000),
            Err(ImageError::UnsupportedFormat)
        );
        assert_eq!(
            probe(b"GIF89a\x01\x00\x01\x00", 1000),
            Err(ImageError::UnsupportedFormat)
        );
        assert!(probe(b"\x89PNG\r\n\x1a\n garbage", 1000).is_err());
        assert!(probe(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0], 1000).is_err());
    }

    #[test]
    fn refuses_too_many_pixels_from_the_header() {
        assert!(matches!(
            probe(&png(40, 30), 1000),
            Err(ImageError::TooManyPixels { .. })
        ));
    }

    /// A decompression bomb: a PNG header announcing 100,000 x 100,000 pixels, with hardly
    /// any data behind it. It is refused from the header, saying what it is.
    pub(crate) fn bomb_png() -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend((data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend(kind);
            out.extend(data);
            let crc = crc32(&out[start..]);
            out.extend(crc.to_be_bytes());
        }
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(100_000u32.to_be_bytes());
        ihdr.extend(100_000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn a_decompression_bomb_is_named_with_its_dimensions() {
        let err = decode(&bomb_png(), 40_000_000).err().expect("refused");
        assert_eq!(
            err,
            ImageError::TooManyPixels {
                width: 100_000,
                height: 100_000,
                max_pixels: 40_000_000
            }
        );
        assert_eq!(
            err.to_string(),
            "image dimensions 100000x100000 (10000000000 pixels) are over the limit of 40000000 pixels"
        );
    }

    #[test]
    fn a_jpeg_is_complete_only_with_its_end_marker_after_the_scan() {
        let img = RgbImage::from_pixel(32, 32, image::Rgb([90, 60, 30]));
        let mut jpg = Cursor::new(Vec::new());
        img.write_to(&mut jpg, ImageFormat::Jpeg).unwrap();
        let jpg = jpg.into_inner();
        assert!(probe(&jpg, 10_000).is_ok());
        let mut trailer = jpg.clone();
        trailer.extend(vec![0x55; 10_000]);
        assert!(
            probe(&trailer, 10_000).is_ok(),
            "trailing data after EOI is fine"
        );
        assert!(probe(&jpg[..jpg.len() - 2], 10_000).is_err(), "no EOI");
    }

    #[test]
    fn refuses_a_truncated_png() {
        let data = png(64, 64);
        assert!(decode_rgb(&data[..data.len() - 20], 1 << 20).is_err());
    }
}
