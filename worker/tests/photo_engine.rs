//! The local face engine on the workshop photos and on generated same/different-person images.

mod photo_support;

use std::sync::Arc;

use worker::face::{
    FaceEngine, Image, IndexFacesRequest, LocalCollections, LocalEngine, LocalEngineConfig,
    SearchFacesByImageRequest,
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

fn bytes(v: Vec<u8>) -> Image {
    Image::Bytes(v.into())
}

#[tokio::test]
async fn workshop_photos_have_the_expected_faces() {
    let models = models_or_skip!();
    let e = engine(models, "detect");
    let mut counts = Vec::new();
    for name in photo_support::PHOTOS {
        let faces = e
            .detect_faces(&bytes(photo_support::photo(name)))
            .await
            .unwrap();
        eprintln!("{name}: {}", serde_json::to_string(&faces).unwrap());
        counts.push(faces.len());
        if faces.len() == 1 {
            let expect_glasses = name.contains("sunglass");
            assert_eq!(
                faces[0].sunglasses.value, expect_glasses,
                "{name}: {:?}",
                faces[0].sunglasses
            );
        }
    }
    assert_eq!(counts, vec![1, 1, 3, 0]);
}

/// Encodes an RGB image as JPEG.
fn jpeg(img: &image::RgbImage, quality: u8) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out.into_inner()
}

fn decode(name: &str) -> image::RgbImage {
    image::load_from_memory(&photo_support::photo(name))
        .unwrap()
        .into_rgb8()
}

/// Same-person images generated from `1_happy_face.jpg`: mirrored; shrunk to 55%, brightened
/// and placed off-centre on a grey canvas; recompressed at JPEG quality 40.
fn same_person_variants() -> Vec<(&'static str, Vec<u8>)> {
    let src = decode("1_happy_face.jpg");
    let mirrored = image::imageops::flip_horizontal(&src);
    let small = image::imageops::resize(&src, 660, 440, image::imageops::FilterType::Triangle);
    let mut canvas = image::RgbImage::from_pixel(1000, 700, image::Rgb([128, 128, 128]));
    image::imageops::overlay(&mut canvas, &image::imageops::brighten(&small, 25), 40, 200);
    vec![
        ("mirrored", jpeg(&mirrored, 90)),
        ("shrunk-brightened", jpeg(&canvas, 90)),
        ("quality-40", jpeg(&src, 40)),
    ]
}

/// Different-person images: for each face of `3_multiple_faces.jpg`, a copy of the photo in
/// which everything outside that face's box (grown 1.5×) is painted grey.
async fn group_faces(e: &LocalEngine) -> Vec<Vec<u8>> {
    let group = decode("3_multiple_faces.jpg");
    let faces = e
        .detect_faces(&bytes(photo_support::photo("3_multiple_faces.jpg")))
        .await
        .unwrap();
    let (w, h) = (group.width() as f32, group.height() as f32);
    faces
        .iter()
        .map(|f| {
            let b = f.bounding_box;
            let (cx, cy) = ((b.left + b.width / 2.0) * w, (b.top + b.height / 2.0) * h);
            let (hw, hh) = (b.width * w * 0.75, b.height * h * 0.75);
            let mut img = group.clone();
            for (x, y, px) in img.enumerate_pixels_mut() {
                if (x as f32 - cx).abs() > hw || (y as f32 - cy).abs() > hh {
                    *px = image::Rgb([128, 128, 128]);
                }
            }
            jpeg(&img, 92)
        })
        .collect()
}

#[tokio::test]
async fn same_person_matches_and_different_people_do_not() {
    let models = models_or_skip!();
    let e = engine(models, "compare");
    let happy = bytes(photo_support::photo("1_happy_face.jpg"));
    for (label, img) in same_person_variants() {
        let out = e.compare_faces(&happy, &bytes(img), 70.0).await.unwrap();
        eprintln!(
            "happy vs {label}: {:?}",
            out.face_matches
                .iter()
                .map(|m| m.similarity)
                .collect::<Vec<_>>()
        );
        assert_eq!(out.face_matches.len(), 1, "{label} should match: {out:?}");
        assert!(out.face_matches[0].similarity > 90.0, "{label}: {out:?}");
    }
    let others = group_faces(&e).await;
    assert_eq!(others.len(), 3);
    for other in &others {
        assert_eq!(
            e.detect_faces(&bytes(other.clone())).await.unwrap().len(),
            1,
            "one face per masked image"
        );
    }
    for (i, other) in others.iter().enumerate() {
        let out = e
            .compare_faces(&happy, &bytes(other.clone()), 70.0)
            .await
            .unwrap();
        eprintln!(
            "happy vs group face {i}: {:?}",
            out.unmatched_faces
                .iter()
                .map(|m| m.similarity)
                .collect::<Vec<_>>()
        );
        assert!(
            out.face_matches.is_empty(),
            "group face {i} matched the happy face: {out:?}"
        );
        for (j, another) in others.iter().enumerate().skip(i + 1) {
            let out = e
                .compare_faces(&bytes(other.clone()), &bytes(another.clone()), 70.0)
                .await
                .unwrap();
            eprintln!(
                "group face {i} vs {j}: {:?}",
                out.unmatched_faces
                    .iter()
                    .map(|m| m.similarity)
                    .collect::<Vec<_>>()
            );
            assert!(
                out.face_matches.is_empty(),
                "group faces {i} and {j} matched: {out:?}"
            );
        }
    }
}

#[tokio::test]
async fn collection_search_index_list_delete() {
    let models = models_or_skip!();
    let e = engine(models, "collection");
    e.create_collection("c").await.unwrap();
    assert!(e.create_collection("c").await.is_err());
    let happy = bytes(photo_support::photo("1_happy_face.jpg"));
    let search = |reserve: Option<&str>| SearchFacesByImageRequest {
        collection_id: "c".into(),
        image: happy.clone(),
        face_match_threshold: 70.0,
        max_faces: 3,
        reserve_for: reserve.map(str::to_owned),
    };
    assert!(
        e.search_faces_by_image(&search(None))
            .await
            .unwrap()
            .face_matches
            .is_empty()
    );
    let index = IndexFacesRequest {
        collection_id: "c".into(),
        image: happy.clone(),
        external_image_id: "user_a".into(),
        max_faces: 10,
    };
    let first = e.index_faces(&index).await.unwrap();
    let again = e.index_faces(&index).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].face.face_id, again[0].face.face_id,
        "indexing is idempotent"
    );
    assert_eq!(e.list_faces("c").await.unwrap().len(), 1);
    // A mirrored photo of the same person is found.
    let mirrored = bytes(same_person_variants().remove(0).1);
    let out = e
        .search_faces_by_image(&SearchFacesByImageRequest {
            image: mirrored,
            ..search(None)
        })
        .await
        .unwrap();
    assert_eq!(out.face_matches.len(), 1);
    assert_eq!(out.face_matches[0].face.external_image_id, "user_a");
    // No face: Rekognition's InvalidParameterException.
    let err = e
        .search_faces_by_image(&SearchFacesByImageRequest {
            image: bytes(photo_support::photo("4_no_face.jpg")),
            ..search(None)
        })
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidParameterException");
    let id = first[0].face.face_id.clone();
    assert_eq!(
        e.delete_faces("c", std::slice::from_ref(&id))
            .await
            .unwrap(),
        vec![id]
    );
    assert!(e.list_faces("c").await.unwrap().is_empty());
}

/// Two workers of a fleet (two engines, each with its own cache) sharing analyses through
/// the real Redis, against a third engine that shares nothing.
#[tokio::test]
async fn a_second_worker_takes_the_first_workers_analysis_from_redis() {
    use shared::redis::AsyncCommands;
    use worker::face::SharedAnalyses;
    use worker::face::shared_analyses::redis_key;

    let models = models_or_skip!();
    let prefix = shared::testkit::unique_prefix("mft-shared-analysis");
    let conn = shared::redis_schema::connect(&shared::testkit::redis_url())
        .await
        .expect("Redis for the fleet tests");
    let shared = || {
        Some(Arc::new(SharedAnalyses::new(
            conn.clone(),
            &prefix,
            std::time::Duration::from_secs(60),
        )))
    };
    let a = engine(models.clone(), "shared-a").with_shared_analyses(shared());
    let b = engine(models.clone(), "shared-b").with_shared_analyses(shared());
    let alone = engine(models, "shared-alone");
    let bytes_of = photo_support::photo("1_happy_face.jpg");
    let key = redis_key(&prefix, "", "", &worker::store::sha256_hex(&bytes_of));
    let photo = bytes(bytes_of);
    let mut redis = conn.clone();
    let fields = |mut r: shared::redis_conn::RedisConn, k: String| async move {
        let mut f: Vec<String> = r.hkeys(&k).await.unwrap();
        f.sort();
        f
    };

    // Worker A detects: the analysis is left with the face's aligned crop, no embedding yet.
    let detected = a.detect_faces(&photo).await.unwrap();
    assert_eq!(detected, alone.detect_faces(&photo).await.unwrap());
    assert_eq!(
        fields(redis.clone(), key.clone()).await,
        ["crop:0", "faces"]
    );
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");

    // Worker B searches the same photo: the same answer as an engine that works alone, from
    // A's analysis. (Proof that B used it: a mark put into the shared entry shows in B's
    // answer; the face's own confidence is in `alone`'s.)
    let header: String = redis.hget(&key, "faces").await.unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&header).unwrap();
    json["faces"][0]["detail"]["Confidence"] = serde_json::json!(12.5);
    let _: () = redis.hset(&key, "faces", json.to_string()).await.unwrap();
    let search = |collection: &str| SearchFacesByImageRequest {
        collection_id: collection.into(),
        image: photo.clone(),
        face_match_threshold: 70.0,
        max_faces: 1,
        reserve_for: None,
    };
    b.create_collection("c").await.unwrap();
    alone.create_collection("c").await.unwrap();
    let by_b = b.search_faces_by_image(&search("c")).await.unwrap();
    let by_alone = alone.search_faces_by_image(&search("c")).await.unwrap();
    assert_eq!(
        by_b.searched_face_confidence, 12.5,
        "B analysed the photo itself"
    );
    assert_eq!(
        by_b.searched_face_bounding_box,
        by_alone.searched_face_bounding_box
    );
    // B made the embedding and left it; with every face embedded the crop is gone.
    assert_eq!(fields(redis.clone(), key.clone()).await, ["emb:0", "faces"]);

    // A, which holds the analysis but not the embedding, indexes the face with B's
    // embedding: a search by the engine that works alone then finds it as the same face.
    let shared_emb: Vec<u8> = redis.hget(&key, "emb:0").await.unwrap();
    assert_eq!(shared_emb.len(), 128 * 4);
    a.create_collection("c").await.unwrap();
    let indexed = a
        .index_faces(&IndexFacesRequest {
            collection_id: "c".into(),
            image: photo.clone(),
            external_image_id: "rider".into(),
            max_faces: 1,
        })
        .await
        .unwrap();
    assert_eq!(indexed.len(), 1);
    let again = a.search_faces_by_image(&search("c")).await.unwrap();
    assert_eq!(again.face_matches.len(), 1);
    assert!(again.face_matches[0].similarity > 99.0, "{again:?}");

    let _: () = redis.del(&key).await.unwrap();
}
