//! The committed sunglasses classifier: it loads (sha256 checked), keeps the workshop photos'
//! outcomes with confident, calibrated answers, and judges eyewear painted on the happy face
//! at the detected eye points (dark and tinted lenses found; clear frames, even thick dark
//! ones, not flagged).

mod photo_support;

use std::sync::Arc;

use worker::face::sunglasses;
use worker::face::{
    FaceDetail, FaceEngine, Image, LocalCollections, LocalEngine, LocalEngineConfig,
};
use worker::store::LocalStore;

fn engine(models: Arc<worker::face::Models>, name: &str) -> LocalEngine {
    let dir = photo_support::data_dir(name);
    LocalEngine::new(
        Arc::new(LocalStore::new(dir.join("buckets"))),
        models,
        Arc::new(LocalCollections::new(dir.join("collections"))),
        LocalEngineConfig::default(),
    )
}

async fn detect(e: &LocalEngine, bytes: Vec<u8>) -> Vec<FaceDetail> {
    e.detect_faces(&Image::Bytes(bytes.into())).await.unwrap()
}

#[test]
fn the_committed_model_is_the_pinned_one() {
    let bytes =
        sunglasses::verified_model().expect("sha256 of worker/models/sunglasses/sunglasses.onnx");
    assert_eq!(sunglasses::sha256_hex(bytes), sunglasses::MODEL_SHA256);
}

#[tokio::test]
async fn workshop_photos_keep_their_outcomes() {
    let models = models_or_skip!();
    let e = engine(models, "sunglasses-workshop");
    let happy = detect(&e, photo_support::photo("1_happy_face.jpg")).await;
    let shades = detect(&e, photo_support::photo("2_sunglass_face.jpg")).await;
    let group = detect(&e, photo_support::photo("3_multiple_faces.jpg")).await;
    eprintln!(
        "happy {:?}, sunglasses {:?}, group {:?}",
        happy[0].sunglasses,
        shades[0].sunglasses,
        group.iter().map(|f| f.sunglasses).collect::<Vec<_>>()
    );
    assert!(!happy[0].sunglasses.value && happy[0].sunglasses.confidence > 90.0);
    assert!(shades[0].sunglasses.value && shades[0].sunglasses.confidence > 90.0);
    assert_eq!(group.len(), 3);
    assert!(group.iter().all(|f| !f.sunglasses.value));
}

#[derive(Clone, Copy, Debug)]
enum Eyewear {
    Bare,
    /// Thick dark frames with clear lenses.
    ClearFrames,
    /// Lenses of this colour and opacity (0–1) inside thin frames.
    Lenses([u8; 3], f32),
}

/// The happy face with eyewear painted at its detected eye points (ellipses 0.42 × 0.30 eye
/// distances, frames 0.07 thick), as JPEG.
fn painted(face: &FaceDetail, eyewear: Eyewear) -> Vec<u8> {
    let mut img = image::load_from_memory(&photo_support::photo("1_happy_face.jpg"))
        .unwrap()
        .into_rgb8();
    let (w, h) = (img.width() as f32, img.height() as f32);
    let eye = |kind: &str| {
        let l = face.landmarks.iter().find(|l| l.kind == kind).unwrap();
        (l.x * w, l.y * h)
    };
    let eyes = [eye("eyeLeft"), eye("eyeRight")];
    let d = ((eyes[1].0 - eyes[0].0).powi(2) + (eyes[1].1 - eyes[0].1).powi(2)).sqrt();
    let (a, b, t) = (0.42 * d, 0.30 * d, 0.07 * d);
    let (frame, lens, frame_thickness) = match eyewear {
        Eyewear::Bare => return photo_support::photo("1_happy_face.jpg"),
        Eyewear::ClearFrames => ([15, 12, 10], None, t),
        Eyewear::Lenses(c, o) => ([30, 30, 30], Some((c, o)), 0.3 * t),
    };
    for (x, y, px) in img.enumerate_pixels_mut() {
        for &(cx, cy) in &eyes {
            let r = (((x as f32 - cx) / a).powi(2) + ((y as f32 - cy) / b).powi(2)).sqrt();
            let blend = |px: &mut image::Rgb<u8>, c: [u8; 3], o: f32| {
                for (v, c) in px.0.iter_mut().zip(c) {
                    *v = (f32::from(*v) * (1.0 - o) + f32::from(c) * o) as u8;
                }
            };
            if r < 1.0 {
                if let Some((c, o)) = lens {
                    blend(px, c, o);
                }
            } else if r < 1.0 + frame_thickness / b.min(a) {
                blend(px, frame, 1.0);
            }
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out.into_inner()
}

#[tokio::test]
async fn painted_eyewear_on_the_happy_face() {
    let models = models_or_skip!();
    let e = engine(models, "sunglasses-painted");
    let face = detect(&e, photo_support::photo("1_happy_face.jpg"))
        .await
        .remove(0);
    let cases = [
        (Eyewear::Bare, false),
        (Eyewear::ClearFrames, false),
        (Eyewear::Lenses([20, 18, 16], 0.95), true),
        (Eyewear::Lenses([40, 60, 40], 0.7), true),
    ];
    for (eyewear, want) in cases {
        let faces = detect(&e, painted(&face, eyewear)).await;
        assert_eq!(
            faces.len(),
            1,
            "{eyewear:?}: the painted face is still found"
        );
        let s = faces[0].sunglasses;
        eprintln!("{eyewear:?}: {s:?}");
        assert_eq!(s.value, want, "{eyewear:?}: {s:?}");
    }
}
