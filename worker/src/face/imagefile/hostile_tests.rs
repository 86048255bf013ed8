//! Unusual and hostile images, all made here byte by byte or with the `image` encoder (rows
//! of `docs/HOSTILE-INPUT.md`): each decodes to 8-bit RGB or is refused with a reason,
//! never a panic, and never allocates for pixels a header only announces.

use std::io::Cursor;

use image::{ImageBuffer, ImageFormat, Luma, LumaA, Rgb, RgbImage};

use super::*;

/// The photo pipeline's pixel cap (40 megapixels, `photo::PhotoConfig`'s default).
const MAX_PIXELS: u64 = 40_000_000;

fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    out.extend([0xFF, marker]);
    out.extend(((body.len() + 2) as u16).to_be_bytes());
    out.extend(body);
}

/// An 8x8 baseline JPEG with four components and an Adobe marker saying "CMYK, no
/// transform": one block per component, DC only, each coded with one-symbol Huffman tables.
fn cmyk_jpeg() -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    segment(&mut j, 0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00"); // transform 0: CMYK
    let mut dqt = vec![0x00];
    dqt.extend([1u8; 64]);
    segment(&mut j, 0xDB, &dqt);
    segment(
        &mut j,
        0xC0,
        &[
            8, 0, 8, 0, 8, 4, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 4, 0x11, 0,
        ],
    );
    let mut one_code = [0u8; 16];
    one_code[0] = 1; // one code of length 1
    for class in [0x00u8, 0x10] {
        let mut dht = vec![class];
        dht.extend(one_code);
        dht.push(0x00); // DC: difference 0; AC: end of block
        segment(&mut j, 0xC4, &dht);
    }
    segment(
        &mut j,
        0xDA,
        &[4, 1, 0x00, 2, 0x00, 3, 0x00, 4, 0x00, 0, 63, 0],
    );
    j.push(0x00); // 4 blocks x (DC "0" + EOB "0") = 8 bits
    j.extend([0xFF, 0xD9]);
    j
}

fn encode(img: impl Into<image::DynamicImage>, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.into().write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn a_cmyk_jpeg_decodes_to_rgb() {
    let bytes = cmyk_jpeg();
    let d = decode(&bytes, MAX_PIXELS).expect("a CMYK JPEG decodes");
    assert_eq!(
        (d.probe.format, d.probe.width, d.probe.height),
        (Format::Jpeg, 8, 8)
    );
    // The decoder converts CMYK itself and hands back RGB8, which the thumbnail may reuse.
    assert_eq!(d.rgb.dimensions(), (8, 8));
    // Truncated inside its scan: refused, not filled with grey.
    assert!(decode(&bytes[..bytes.len() - 3], MAX_PIXELS).is_err());
}

#[test]
fn sixteen_bit_pngs_decode_to_eight_bits() {
    let rgb16: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_pixel(16, 8, Rgb([0xFFFF, 0x8080, 0x0000]));
    let d = decode(&encode(rgb16, ImageFormat::Png), MAX_PIXELS).expect("16-bit RGB");
    assert!(!d.native_rgb, "16-bit channels are converted");
    assert_eq!(d.rgb.get_pixel(3, 3).0, [255, 128, 0]);
    // Grey with alpha at 16 bits, the thumbnail path: kept as grey with alpha at 8 bits.
    let la16: ImageBuffer<LumaA<u16>, Vec<u16>> =
        ImageBuffer::from_pixel(4, 4, LumaA([0x4040, 0xFFFF]));
    let bytes = encode(la16, ImageFormat::Png);
    let p = probe(&bytes, MAX_PIXELS).unwrap();
    let img = decode_png(&bytes, &p, &decode_permit(&p)).unwrap();
    assert_eq!(img.color(), image::ColorType::La8);
    let l16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(4, 4, Luma([0x1010]));
    let d = decode(&encode(l16, ImageFormat::Png), MAX_PIXELS).unwrap();
    assert_eq!(d.rgb.get_pixel(0, 0).0, [16, 16, 16]);
}

#[test]
fn an_exif_rotated_jpeg_decodes_as_stored() {
    let img = RgbImage::from_pixel(64, 32, Rgb([200, 100, 50]));
    let plain = encode(img, ImageFormat::Jpeg);
    // An APP1 Exif segment (little-endian TIFF, one IFD entry: Orientation = 6, "rotate
    // 90° clockwise to display") spliced in after SOI.
    let mut exif = b"Exif\x00\x00II\x2a\x00\x08\x00\x00\x00".to_vec();
    exif.extend(1u16.to_le_bytes()); // one entry
    exif.extend(0x0112u16.to_le_bytes()); // Orientation
    exif.extend(3u16.to_le_bytes()); // SHORT
    exif.extend(1u32.to_le_bytes()); // one value
    exif.extend(6u16.to_le_bytes());
    exif.extend([0, 0]);
    exif.extend(0u32.to_le_bytes()); // no next IFD
    let mut rotated = plain[..2].to_vec();
    segment(&mut rotated, 0xE1, &exif);
    rotated.extend(&plain[2..]);
    let d = decode(&rotated, MAX_PIXELS).expect("decodes");
    // Pixels as stored: face detection runs on the stored orientation, as Rekognition's
    // DetectFaces reports boxes for the image as stored.
    assert_eq!(d.rgb.dimensions(), (64, 32));
}

/// A PNG header announcing `w` x `h` 8-bit RGB pixels, with a few bytes of data behind it.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let real = encode(RgbImage::new(1, 1), ImageFormat::Png);
    // IHDR's width and height sit at bytes 16..24; its CRC at 29..33 covers bytes 12..29.
    let mut out = real.clone();
    out[16..20].copy_from_slice(&w.to_be_bytes());
    out[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
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

/// A JPEG whose frame header announces `w` x `h`.
fn jpeg_header_only(w: u16, h: u16) -> Vec<u8> {
    let mut out = encode(RgbImage::new(8, 8), ImageFormat::Jpeg);
    let mut i = 2;
    while i + 9 < out.len() {
        let marker = out[i + 1];
        let len = usize::from(u16::from_be_bytes([out[i + 2], out[i + 3]]));
        if (0xC0..=0xC2).contains(&marker) {
            out[i + 5..i + 7].copy_from_slice(&h.to_be_bytes());
            out[i + 7..i + 9].copy_from_slice(&w.to_be_bytes());
            return out;
        }
        i += 2 + len;
    }
    panic!("no frame header");
}

#[test]
fn twenty_thousand_square_headers_are_refused_before_any_pixel() {
    for (bytes, format) in [
        (png_header_only(20_000, 20_000), "png"),
        (jpeg_header_only(20_000, 20_000), "jpeg"),
    ] {
        let err = decode(&bytes, MAX_PIXELS).err().expect("refused");
        assert_eq!(
            err,
            ImageError::TooManyPixels {
                width: 20_000,
                height: 20_000,
                max_pixels: MAX_PIXELS
            },
            "{format}"
        );
        assert!(err.to_string().contains("20000x20000 (400000000 pixels)"));
    }
    // Just under the cap in pixels but announced without the data: corrupt, not decoded
    // into a 40-megapixel grey canvas.
    let err = decode(&png_header_only(8000, 5000), MAX_PIXELS)
        .err()
        .expect("refused");
    assert!(matches!(err, ImageError::Corrupt(_)), "{err:?}");
}
