//! Detection robustness on the workshop photos and on variants made from them here: faces made
//! small (downscaled and pasted into another photo, or the whole photo shrunk onto a padded
//! canvas) and faces behind painted dark sunglasses. Each must be found once, where it was
//! put, and the workshop's no-face photo must stay without a face.

mod photo_support;

use image::{Rgb, RgbImage, imageops};
use worker::face::imagefile::decode_rgb;
use worker::face::models::DetectOptions;
use worker::face::yunet::Detection;

fn decode(name: &str) -> RgbImage {
    decode_rgb(&photo_support::photo(name), 40_000_000)
        .unwrap()
        .1
}

/// The options with the second look turned off: the first pass alone.
fn first_pass_only() -> DetectOptions {
    DetectOptions {
        rescue_threshold: 1.0,
        ..DetectOptions::default()
    }
}

/// The only face of `1_happy_face.jpg`, at full size.
fn happy_face(models: &worker::face::Models) -> (RgbImage, Detection) {
    let img = decode("1_happy_face.jpg");
    let faces = models.detect(&img, &DetectOptions::default()).unwrap();
    assert_eq!(faces.len(), 1, "{faces:?}");
    (img, faces[0].clone())
}

/// Paints opaque dark lenses over both eyes (ellipses of 0.45 × 0.3 eye distances), as the
/// sunglasses tests of the attribute do.
fn paint_sunglasses(img: &mut RgbImage, d: &Detection) {
    let [l, r] = [d.landmarks[0], d.landmarks[1]];
    let dist = ((r[0] - l[0]).powi(2) + (r[1] - l[1]).powi(2)).sqrt();
    let (rx, ry) = (0.45 * dist, 0.3 * dist);
    for eye in [l, r] {
        let (x0, x1) = ((eye[0] - rx) as i64, (eye[0] + rx) as i64);
        let (y0, y1) = ((eye[1] - ry) as i64, (eye[1] + ry) as i64);
        for y in y0.max(0)..=y1.min(i64::from(img.height()) - 1) {
            for x in x0.max(0)..=x1.min(i64::from(img.width()) - 1) {
                let (dx, dy) = ((x as f32 - eye[0]) / rx, (y as f32 - eye[1]) / ry);
                if dx * dx + dy * dy <= 1.0 {
                    img.put_pixel(x as u32, y as u32, Rgb([12, 12, 14]));
                }
            }
        }
    }
    // The bridge between the lenses.
    let y = ((l[1] + r[1]) / 2.0) as u32;
    for x in (l[0] + rx) as u32..(r[0] - rx).max(l[0] + rx + 1.0) as u32 {
        for dy in 0..(0.05 * dist).max(1.0) as u32 {
            img.put_pixel(x, y + dy, Rgb([12, 12, 14]));
        }
    }
}

/// The face's surroundings (twice its box), scaled so that the face box is `face_px` wide,
/// pasted into `background` with its top-left at (`x`, `y`). Returns the pasted face's centre.
fn paste_small_face(
    background: &mut RgbImage,
    src: &RgbImage,
    d: &Detection,
    face_px: f32,
    (x, y): (i64, i64),
) -> (f32, f32) {
    let side = 2.0 * d.w.max(d.h);
    let (cx, cy) = (d.x + d.w / 2.0, d.y + d.h / 2.0);
    let x0 = (cx - side / 2.0).max(0.0) as u32;
    let y0 = (cy - side / 2.0).max(0.0) as u32;
    let w = (side as u32).min(src.width() - x0);
    let h = (side as u32).min(src.height() - y0);
    let crop = imageops::crop_imm(src, x0, y0, w, h).to_image();
    let k = face_px / d.w;
    let small = imageops::resize(
        &crop,
        ((w as f32 * k).round() as u32).max(1),
        ((h as f32 * k).round() as u32).max(1),
        imageops::FilterType::Triangle,
    );
    imageops::overlay(background, &small, x, y);
    (
        x as f32 + (cx - x0 as f32) * k,
        y as f32 + (cy - y0 as f32) * k,
    )
}

/// Asserts exactly one face, centred within `tol` px of `at`.
fn assert_one_face_at(faces: &[Detection], at: (f32, f32), tol: f32, what: &str) {
    assert_eq!(faces.len(), 1, "{what}: {faces:?}");
    let f = &faces[0];
    let (cx, cy) = (f.x + f.w / 2.0, f.y + f.h / 2.0);
    assert!(
        (cx - at.0).abs() <= tol && (cy - at.1).abs() <= tol,
        "{what}: face at ({cx:.0}, {cy:.0}), put at ({:.0}, {:.0})",
        at.0,
        at.1
    );
}

#[test]
fn the_workshop_photos_keep_their_face_counts() {
    let models = models_or_skip!();
    for (name, want) in photo_support::PHOTOS.iter().zip([1, 1, 3, 0]) {
        let faces = models
            .detect(&decode(name), &DetectOptions::default())
            .unwrap();
        assert_eq!(faces.len(), want, "{name}: {faces:?}");
    }
}

#[test]
fn small_faces_pasted_into_the_no_face_photo_are_found_where_they_were_put() {
    let models = models_or_skip!();
    let (src, d) = happy_face(&models);
    let mut missed_by_first_pass = 0;
    for (face_px, at) in [(40.0, (150, 500)), (30.0, (700, 250))] {
        let mut bg = decode("4_no_face.jpg");
        let centre = paste_small_face(&mut bg, &src, &d, face_px, at);
        let faces = models.detect(&bg, &DetectOptions::default()).unwrap();
        assert_one_face_at(&faces, centre, face_px, &format!("{face_px} px face"));
        if models.detect(&bg, &first_pass_only()).unwrap().is_empty() {
            missed_by_first_pass += 1;
        }
    }
    // The 30 px face scores under the threshold at 640: the second look is what finds it.
    assert!(
        missed_by_first_pass >= 1,
        "the first pass alone found every small face: this test no longer tests the second look"
    );
    // Smaller still: the default passes miss it, the larger last pass finds it.
    let mut bg = decode("4_no_face.jpg");
    let centre = paste_small_face(&mut bg, &src, &d, 20.0, (900, 560));
    assert!(
        models
            .detect(&bg, &DetectOptions::default())
            .unwrap()
            .is_empty()
    );
    let faces = models.detect(&bg, &with_retry()).unwrap();
    assert_one_face_at(&faces, centre, 20.0, "20 px face, last pass at 1280");
}

/// The default options with the last pass at 1280.
fn with_retry() -> DetectOptions {
    DetectOptions {
        retry_size: Some(1280),
        ..DetectOptions::default()
    }
}

#[test]
fn a_whole_photo_shrunk_onto_a_padded_canvas_keeps_its_face() {
    let models = models_or_skip!();
    let src = decode("1_happy_face.jpg");
    for k in [0.25f32, 0.15] {
        let small = imageops::resize(
            &src,
            (src.width() as f32 * k) as u32,
            (src.height() as f32 * k) as u32,
            imageops::FilterType::Triangle,
        );
        let mut canvas = RgbImage::from_pixel(1200, 800, Rgb([128, 128, 128]));
        imageops::overlay(&mut canvas, &small, 500, 300);
        let faces = models.detect(&canvas, &DetectOptions::default()).unwrap();
        assert_eq!(faces.len(), 1, "photo at {k}: {faces:?}");
        let f = &faces[0];
        assert!(
            f.x >= 500.0 - f.w && f.x + f.w <= 500.0 + small.width() as f32 + f.w,
            "photo at {k}: face outside the pasted photo: {f:?}"
        );
    }
}

#[test]
fn faces_behind_painted_dark_sunglasses_are_found_large_and_small() {
    let models = models_or_skip!();
    let (mut src, d) = happy_face(&models);
    paint_sunglasses(&mut src, &d);
    let faces = models.detect(&src, &DetectOptions::default()).unwrap();
    assert_one_face_at(
        &faces,
        (d.x + d.w / 2.0, d.y + d.h / 2.0),
        d.w / 4.0,
        "large face with dark lenses",
    );
    let mut bg = decode("4_no_face.jpg");
    let centre = paste_small_face(&mut bg, &src, &d, 40.0, (300, 200));
    let faces = models.detect(&bg, &DetectOptions::default()).unwrap();
    assert_one_face_at(&faces, centre, 40.0, "40 px face with dark lenses");
}

#[test]
fn the_second_look_finds_no_face_in_the_no_face_photo() {
    let models = models_or_skip!();
    let img = decode("4_no_face.jpg");
    // Even a very permissive second look (every candidate from 0.3) confirms nothing there.
    let permissive = DetectOptions {
        rescue_threshold: 0.3,
        rescue_candidates: 10,
        ..DetectOptions::default()
    };
    for opts in [DetectOptions::default(), permissive, with_retry()] {
        let faces = models.detect(&img, &opts).unwrap();
        assert!(faces.is_empty(), "{opts:?}: {faces:?}");
    }
}
