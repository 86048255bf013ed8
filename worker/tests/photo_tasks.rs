//! The six photo tasks on the workshop photos, driven through the registry the way the
//! workshop's DynamicInput state machine drives them (ResultPaths and Catches as in the
//! definition), plus hostile inputs.

mod photo_support;

use std::sync::Arc;

use serde_json::{Value, json};
use worker::face::LocalEngineConfig;
use worker::photo::{self, DEFAULT_PHOTO_BUCKET, PhotoConfig, PhotoContext};
use worker::store::{LocalStore, ObjectStore};
use worker::task::{Registry, TaskFailure, resource_arn};

async fn context(models: Arc<worker::face::Models>, dir: &std::path::Path) -> PhotoContext {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.join("buckets")));
    let ctx = PhotoContext::local_with_models(
        dir,
        models,
        PhotoConfig::default(),
        LocalEngineConfig::default(),
        store,
    )
    .await
    .unwrap();
    for name in photo_support::PHOTOS {
        ctx.store
            .put(
                DEFAULT_PHOTO_BUCKET,
                name,
                photo_support::photo(name),
                "image/jpeg",
            )
            .await
            .unwrap();
    }
    ctx
}

fn registry(ctx: PhotoContext) -> Arc<Registry> {
    let mut r = Registry::new();
    photo::register_photo_tasks(&mut r, ctx);
    Arc::new(r)
}

async fn call(r: &Registry, task: &str, input: &Value) -> Result<Value, TaskFailure> {
    r.resolve(&resource_arn(task))
        .unwrap_or_else(|| panic!("{task} not registered"))
        .run(input.clone())
        .await
}

/// One Map iteration of the DynamicInput definition: the state after it.
async fn iteration(r: Arc<Registry>, mut state: Value) -> Value {
    let caught = |state: &mut Value, f: TaskFailure| {
        state["errorInfo"] = json!({"Error": f.error, "Cause": f.cause});
    };
    match call(&r, "face-detection", &state).await {
        Ok(detail) => state["detectedFaceDetails"] = detail,
        Err(f) if f.error == "PhotoDoesNotMeetRequirementError" => {
            caught(&mut state, f);
            state["errorInfo"] = call(&r, "notification-placeholder", &state).await.unwrap();
            return state;
        }
        Err(f) => panic!("FaceDetection failed the execution: {f:?}"),
    }
    match call(&r, "face-search", &state).await {
        Ok(_) => {}
        Err(f) if f.error == "FaceAlreadyExistsError" => {
            caught(&mut state, f);
            state["errorInfo"] = call(&r, "notification-placeholder", &state).await.unwrap();
            return state;
        }
        Err(f) => panic!("CheckFaceDuplicate failed the execution: {f:?}"),
    }
    let (a, b) = tokio::join!(
        call(&r, "index-face", &state),
        call(&r, "thumbnail", &state)
    );
    state["parallelResult"] = json!([a.unwrap(), b.unwrap()]);
    call(&r, "persist-metadata", &state).await.unwrap();
    state
}

/// The batch: the four photos plus `1_happy_face.jpg` again under another user, concurrently.
async fn batch(r: &Arc<Registry>) -> Vec<Value> {
    let items = [
        ("user_a", "1_happy_face.jpg"),
        ("user_b", "2_sunglass_face.jpg"),
        ("user_c", "3_multiple_faces.jpg"),
        ("user_d", "4_no_face.jpg"),
        ("user_e", "1_happy_face.jpg"),
    ];
    let handles: Vec<_> = items
        .iter()
        .map(|(user, key)| {
            let state = json!({"userId": user, "s3Bucket": DEFAULT_PHOTO_BUCKET, "s3Key": key});
            tokio::spawn(iteration(r.clone(), state))
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn message(state: &Value) -> Option<(&str, &str)> {
    let m = state.get("errorInfo")?.get("messageToSend")?;
    Some((m["title"].as_str().unwrap(), m["message"].as_str().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workshop_batch_gives_the_workshop_outcomes() {
    let models = models_or_skip!();
    let dir = photo_support::data_dir("batch");
    let ctx = context(models, &dir).await;
    let (store, metadata) = (ctx.store.clone(), ctx.metadata.clone());
    let r = registry(ctx);

    let results = batch(&r).await;
    for s in &results {
        eprintln!("{s}");
    }
    let rejected = "PhotoDoesNotMeetRequirementError";
    assert_eq!(
        message(&results[1]),
        Some((rejected, "Face is wearing sunglasses"))
    );
    assert_eq!(
        message(&results[2]),
        Some((rejected, "Detected 3 faces in the photo."))
    );
    assert_eq!(
        message(&results[3]),
        Some((rejected, "Detected 0 faces in the photo."))
    );
    // Exactly one of the two happy-face items is accepted; the other is a duplicate.
    let happy = [&results[0], &results[4]];
    let accepted: Vec<&&Value> = happy
        .iter()
        .filter(|s| s.get("parallelResult").is_some())
        .collect();
    assert_eq!(accepted.len(), 1, "exactly one happy face must pass");
    let dup = happy
        .iter()
        .find(|s| s.get("parallelResult").is_none())
        .unwrap();
    assert_eq!(
        message(dup),
        Some((
            "FaceAlreadyExistsError",
            "Face in the picture is already in the system. "
        ))
    );
    assert!(dup.get("detectedFaceDetails").is_some());

    let ok = accepted[0];
    let detail = &ok["detectedFaceDetails"];
    assert!(
        detail.get("Landmarks").is_none(),
        "FaceDetection drops Landmarks"
    );
    for k in ["BoundingBox", "Confidence", "Pose", "Quality", "Sunglasses"] {
        assert!(detail.get(k).is_some(), "FaceDetail has {k}");
    }
    assert_eq!(detail["Sunglasses"]["Value"], false);
    let face = &ok["parallelResult"][0];
    assert_eq!(face["ExternalImageId"], ok["userId"]);
    for k in ["FaceId", "BoundingBox", "ImageId", "Confidence"] {
        assert!(face.get(k).is_some(), "IndexFaces' Face has {k}");
    }
    assert_eq!(
        ok["parallelResult"][1],
        json!({"thumbnail": {"s3key": "resized-1_happy_face.jpg", "s3bucket": "mapfleet-rider-photos-thumbnails"}})
    );
    let thumb = store
        .get(
            "mapfleet-rider-photos-thumbnails",
            "resized-1_happy_face.jpg",
            1 << 20,
        )
        .await
        .unwrap();
    let img = image::load_from_memory_with_format(&thumb.bytes, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((img.width(), img.height()), (300, 200));
    let user = ok["userId"].as_str().unwrap();
    let row = metadata.get(user).await.unwrap().expect("a metadata row");
    assert_eq!(
        serde_json::to_value(&row).unwrap(),
        json!({"Username": user, "faceId": face["FaceId"], "s3bucket": DEFAULT_PHOTO_BUCKET, "s3key": "1_happy_face.jpg",
               "thumbnail": {"s3bucket": "mapfleet-rider-photos-thumbnails", "s3key": "resized-1_happy_face.jpg"}})
    );
    assert_eq!(metadata.list().await.unwrap().len(), 1);

    // The batch again: both happy faces are duplicates now.
    let again = batch(&r).await;
    for i in [0, 4] {
        assert_eq!(
            message(&again[i]),
            Some((
                "FaceAlreadyExistsError",
                "Face in the picture is already in the system. "
            )),
            "{}",
            again[i]
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn error_causes_are_lambda_shaped_and_missing_objects_fail() {
    let models = models_or_skip!();
    let dir = photo_support::data_dir("errors");
    let r = registry(context(models, &dir).await);
    let input = |key: &str| json!({"userId": "u", "s3Bucket": DEFAULT_PHOTO_BUCKET, "s3Key": key});
    let f = call(&r, "face-detection", &input("2_sunglass_face.jpg"))
        .await
        .unwrap_err();
    let cause: Value = serde_json::from_str(&f.cause).unwrap();
    assert_eq!(
        cause,
        json!({"errorMessage": "Face is wearing sunglasses", "errorType": "PhotoDoesNotMeetRequirementError"})
    );
    for task in ["face-detection", "face-search", "index-face"] {
        let f = call(&r, task, &input("no-such-photo.jpg"))
            .await
            .unwrap_err();
        assert_eq!(f.error, "InvalidS3ObjectException", "{task}");
        assert!(!f.retryable);
    }
    let f = call(&r, "thumbnail", &input("no-such-photo.jpg"))
        .await
        .unwrap_err();
    assert_eq!(f.error, "NoSuchKey");
    // Keys are URL-decoded like the Lambdas do: '+' is a space.
    let store = LocalStore::new(dir.join("buckets"));
    store
        .put(
            DEFAULT_PHOTO_BUCKET,
            "my happy face.jpg",
            photo_support::photo("1_happy_face.jpg"),
            "",
        )
        .await
        .unwrap();
    let out = call(&r, "thumbnail", &input("my+happy%20face.jpg"))
        .await
        .unwrap();
    assert_eq!(out["thumbnail"]["s3key"], "resized-my happy face.jpg");
    // A PNG goes through too, and its thumbnail stays a PNG.
    let rgb = image::load_from_memory(&photo_support::photo("1_happy_face.jpg")).unwrap();
    let mut png = std::io::Cursor::new(Vec::new());
    rgb.write_to(&mut png, image::ImageFormat::Png).unwrap();
    store
        .put(
            DEFAULT_PHOTO_BUCKET,
            "happy.png",
            png.into_inner(),
            "image/png",
        )
        .await
        .unwrap();
    let detail = call(&r, "face-detection", &input("happy.png"))
        .await
        .unwrap();
    assert_eq!(detail["Sunglasses"]["Value"], false);
    call(&r, "thumbnail", &input("happy.png")).await.unwrap();
    let thumb = store
        .get(
            "mapfleet-rider-photos-thumbnails",
            "resized-happy.png",
            1 << 22,
        )
        .await
        .unwrap();
    let img = image::load_from_memory_with_format(&thumb.bytes, image::ImageFormat::Png).unwrap();
    assert_eq!((img.width(), img.height()), (300, 200));
    std::fs::remove_dir_all(dir).unwrap();
}

/// CRC-32 (IEEE) for hand-made PNG chunks.
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG whose header announces `w`×`h` pixels, followed by a little compressed data.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend(data);
        out.extend(&c);
        out.extend(crc32(&c).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream of zeros (stored blocks would do too; this is "compress(zeros)").
    chunk(
        &mut out,
        b"IDAT",
        &[
            0x78, 0x9c, 0x63, 0x60, 0x18, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff,
        ],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A copy of a JPEG whose SOF header announces `w`×`h`.
fn jpeg_with_dims(src: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = src.to_vec();
    let mut i = 2;
    while i + 9 < out.len() {
        assert_eq!(out[i], 0xFF);
        let marker = out[i + 1];
        let len = usize::from(u16::from_be_bytes([out[i + 2], out[i + 3]]));
        if (0xC0..=0xC2).contains(&marker) {
            out[i + 5..i + 7].copy_from_slice(&h.to_be_bytes());
            out[i + 7..i + 9].copy_from_slice(&w.to_be_bytes());
            return out;
        }
        i += 2 + len;
    }
    panic!("no SOF marker");
}

#[tokio::test]
async fn hostile_objects_are_refused_with_a_reason_never_a_crash() {
    let models = models_or_skip!();
    let dir = photo_support::data_dir("hostile");
    let ctx = context(models, &dir).await;
    let store = ctx.store.clone();
    let r = registry(ctx);
    let happy = photo_support::photo("1_happy_face.jpg");
    let mut garbage_jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    garbage_jpeg.extend((0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text.jpg", b"this is not an image at all".to_vec()),
        ("empty.jpg", Vec::new()),
        ("gif.jpg", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec()),
        ("garbage.jpg", garbage_jpeg),
        ("truncated.jpg", happy[..happy.len() / 2].to_vec()),
        ("header-only.jpg", happy[..600].to_vec()),
        ("bomb.png", png_bomb(100_000, 100_000)),
        ("bomb-wide.png", png_bomb(1_000_000, 1)),
        ("bomb.jpg", jpeg_with_dims(&happy, 65_000, 65_000)),
        ("truncated.png", png_bomb(64, 64)[..40].to_vec()),
    ];
    for (key, bytes) in cases {
        store
            .put(DEFAULT_PHOTO_BUCKET, key, bytes, "")
            .await
            .unwrap();
        let input = json!({"userId": "u", "s3Bucket": DEFAULT_PHOTO_BUCKET, "s3Key": key});
        let f = call(&r, "face-detection", &input).await.unwrap_err();
        let cause: Value = serde_json::from_str(&f.cause).unwrap();
        // A header announcing too many pixels (a decompression bomb) says so, with the
        // numbers; anything else that is no decodable JPEG or PNG is an unsupported format.
        let expected = match key {
            "bomb.png" => "Image size is too large: image dimensions 100000x100000 \
                 (10000000000 pixels) are over the limit of 40000000 pixels"
                .to_string(),
            "bomb.jpg" => "Image size is too large: image dimensions 65000x65000 \
                 (4225000000 pixels) are over the limit of 40000000 pixels"
                .to_string(),
            _ => "Unsupported image file format. Only JPEG or PNG is supported".to_string(),
        };
        assert_eq!(
            (f.error.as_str(), cause["errorMessage"].as_str().unwrap()),
            ("PhotoDoesNotMeetRequirementError", expected.as_str()),
            "{key}"
        );
        assert!(
            call(&r, "thumbnail", &input).await.is_err(),
            "{key}: thumbnail must fail"
        );
    }
    // The process stayed within a modest memory budget (a decoded 100000² bomb would be 30 GB).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(hwm) = status.lines().find(|l| l.starts_with("VmHWM")) {
        let kb: u64 = hwm.split_whitespace().nth(1).unwrap().parse().unwrap();
        eprintln!("peak RSS {} MiB", kb / 1024);
        assert!(kb < 1536 * 1024, "peak RSS {kb} kB");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
