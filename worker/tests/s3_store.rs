//! The S3 object store against a real S3-compatible server (s3s-fs, in-process, checking
//! signatures), and the photo tasks reading from and writing to it.

mod aws_support;
mod photo_support;

use std::sync::Arc;

use serde_json::json;
use worker::face::LocalEngineConfig;
use worker::photo::{
    self, DEFAULT_PHOTO_BUCKET, DEFAULT_THUMBNAIL_BUCKET, PhotoConfig, PhotoContext,
};
use worker::store::{Error, ObjectStore, S3Store};
use worker::task::{Registry, resource_arn};

/// The Lambda-shaped cause's `errorMessage`.
fn msg(f: &worker::task::TaskFailure) -> String {
    let v: serde_json::Value = serde_json::from_str(&f.cause).unwrap();
    v["errorMessage"].as_str().unwrap().to_owned()
}

async fn store(url: &str) -> S3Store {
    S3Store::new(&aws_support::sdk_config().await, Some(url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_and_errors_are_s3s() {
    let dir = photo_support::data_dir("s3-store");
    let server = aws_support::start_s3(&dir.join("s3")).await;
    let s = store(&server.url).await;

    s.create_bucket("photos").await.unwrap();
    s.create_bucket("photos").await.unwrap(); // already there: fine
    let e1 = s
        .put("photos", "b/2.jpg", b"two".to_vec(), "image/jpeg")
        .await
        .unwrap();
    s.put("photos", "a.jpg", b"one".to_vec(), "image/jpeg")
        .await
        .unwrap();
    let got = s.get("photos", "b/2.jpg", 1024).await.unwrap();
    assert_eq!(&*got.bytes, b"two");
    assert!(!got.etag.is_empty() && !got.etag.contains('"'));
    assert_eq!(got.etag, e1);
    let e2 = s
        .put("photos", "b/2.jpg", b"TWO!".to_vec(), "image/jpeg")
        .await
        .unwrap();
    assert_ne!(e1, e2, "the tag follows the content");
    assert_eq!(
        s.list("photos").await.unwrap(),
        vec!["a.jpg".to_string(), "b/2.jpg".to_string()]
    );

    assert!(matches!(
        s.get("photos", "missing.jpg", 1024).await,
        Err(Error::NoSuchKey { .. })
    ));
    // Amazon S3 answers NoSuchBucket; s3s-fs looks for the file only and answers NoSuchKey.
    let e = s.get("no-such-bucket", "a.jpg", 1024).await;
    assert!(
        matches!(e, Err(Error::NoSuchBucket(_) | Error::NoSuchKey { .. })),
        "{e:?}"
    );
    assert!(matches!(
        s.list("no-such-bucket").await,
        Err(Error::NoSuchBucket(_))
    ));
    assert!(matches!(
        s.get("photos", "b/2.jpg", 3).await,
        Err(Error::TooLarge { limit: 3, .. })
    ));
    // Keys that a path-normalising server would resolve into another bucket never leave.
    for bad in ["../other/a.jpg", "b/../../x", "./a.jpg"] {
        assert!(
            matches!(
                s.put("photos", bad, b"x".to_vec(), "image/jpeg").await,
                Err(Error::InvalidName { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        s.get("../photos", "a.jpg", 1024).await,
        Err(Error::InvalidName { .. })
    ));

    // A wrong secret is a refusal naming the server's code, with no secret in the message.
    let wrong = S3Store::new(
        &worker::aws::config_loader()
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                aws_support::ACCESS_KEY,
                "not-the-secret",
                None,
                None,
                "test",
            ))
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .load()
            .await,
        Some(&server.url),
    );
    match wrong.get("photos", "a.jpg", 1024).await {
        Err(e @ Error::Refused { .. }) => {
            let m = e.to_string();
            assert!(m.contains("SignatureDoesNotMatch"), "{m}");
            assert!(!m.contains("not-the-secret"), "{m}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

/// What a Distributed Map reads through on S3: ranged reads (none past the end), listing
/// pages after a key, and the bucket check of a ResultWriter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_pages_and_bucket_checks_on_s3() {
    let dir = photo_support::data_dir("s3-ranges");
    let server = aws_support::start_s3(&dir.join("s3")).await;
    let s = store(&server.url).await;
    s.create_bucket("items").await.unwrap();
    s.put(
        "items",
        "all.jsonl",
        b"0123456789".to_vec(),
        "application/jsonl",
    )
    .await
    .unwrap();
    for key in ["p/a", "p/b", "p/c", "q/d"] {
        s.put("items", key, key.as_bytes().to_vec(), "text/plain")
            .await
            .unwrap();
    }
    assert_eq!(
        s.get_range("items", "all.jsonl", 0, 4).await.unwrap(),
        b"0123"
    );
    assert_eq!(
        s.get_range("items", "all.jsonl", 8, 4).await.unwrap(),
        b"89"
    );
    assert!(
        s.get_range("items", "all.jsonl", 10, 4)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        s.get_range("items", "missing", 0, 4).await,
        Err(Error::NoSuchKey { .. })
    ));
    let page = s.list_page("items", "p/", None, 2).await.unwrap();
    let keys: Vec<&str> = page.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["p/a", "p/b"]);
    assert_eq!(page[0].size, 3);
    // S3 quotes entity tags in listings and the store strips the quotes.
    assert!(!page[0].etag.contains('"'), "{:?}", page[0]);
    assert!(page[0].last_modified > 0);
    let page = s.list_page("items", "p/", Some("p/b"), 2).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].key, "p/c");
    assert!(s.bucket_exists("items").await.unwrap());
    assert!(!s.bucket_exists("no-such-bucket").await.unwrap());
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_and_named() {
    let url = aws_support::dead_url().await;
    let s = store(&url).await;
    match s.get("photos", "a.jpg", 1024).await {
        Err(e @ Error::Unavailable(_)) => {
            let m = e.to_string();
            assert!(m.contains(&url), "{m}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnail_and_face_detection_run_on_s3() {
    let models = models_or_skip!();
    let dir = photo_support::data_dir("s3-tasks");
    let server = aws_support::start_s3(&dir.join("s3")).await;
    let s3: Arc<dyn ObjectStore> = Arc::new(store(&server.url).await);
    // Creates the two default buckets in the S3 server.
    let ctx = PhotoContext::local_with_models(
        &dir,
        models,
        PhotoConfig::default(),
        LocalEngineConfig::default(),
        s3.clone(),
    )
    .await
    .unwrap();
    for name in photo_support::PHOTOS {
        s3.put(
            DEFAULT_PHOTO_BUCKET,
            name,
            photo_support::photo(name),
            "image/jpeg",
        )
        .await
        .unwrap();
    }
    let mut r = Registry::new();
    photo::register_photo_tasks(&mut r, ctx);
    let call = |task: &str, key: &str| {
        let t = r.resolve(&resource_arn(task)).unwrap();
        let input = json!({"userId": "user_a", "s3Bucket": DEFAULT_PHOTO_BUCKET, "s3Key": key});
        async move { t.run(input).await }
    };

    let detail = call("face-detection", "1_happy_face.jpg").await.unwrap();
    assert_eq!(detail["Sunglasses"]["Value"], false);
    let f = call("face-detection", "2_sunglass_face.jpg")
        .await
        .unwrap_err();
    assert_eq!(msg(&f), "Face is wearing sunglasses");
    let f = call("face-detection", "3_multiple_faces.jpg")
        .await
        .unwrap_err();
    assert_eq!(msg(&f), "Detected 3 faces in the photo.");
    let f = call("face-detection", "4_no_face.jpg").await.unwrap_err();
    assert_eq!(msg(&f), "Detected 0 faces in the photo.");
    // A missing object is Rekognition's InvalidS3ObjectException.
    let f = call("face-detection", "nobody.jpg").await.unwrap_err();
    assert_eq!(f.error, "InvalidS3ObjectException", "{f:?}");

    let out = call("thumbnail", "1_happy_face.jpg").await.unwrap();
    assert_eq!(
        out,
        json!({"thumbnail": {"s3key": "resized-1_happy_face.jpg", "s3bucket": DEFAULT_THUMBNAIL_BUCKET}})
    );
    let thumb = s3
        .get(
            DEFAULT_THUMBNAIL_BUCKET,
            "resized-1_happy_face.jpg",
            1 << 20,
        )
        .await
        .unwrap();
    let img = image::load_from_memory_with_format(&thumb.bytes, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((img.width(), img.height()), (300, 200));
    // The thumbnail is a file of the S3 server, not of mapfleet's data dir.
    assert!(!dir.join("buckets").exists());
    let f = call("thumbnail", "nobody.jpg").await.unwrap_err();
    assert_eq!(f.error, "NoSuchKey", "{f:?}");
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}
