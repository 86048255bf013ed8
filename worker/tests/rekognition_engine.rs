//! The AWS face engine (`aws-sdk-rekognition`) against mapfleet's Rekognition-compatible
//! endpoint, in-process, serving the local engine; objects in a real S3-compatible server
//! (s3s-fs) read by both sides. The workshop's batch must give the local engine's outcomes.

mod aws_support;
mod photo_support;

use std::sync::Arc;

use serde_json::{Value, json};
use worker::face::{
    FaceEngine, FaceError, Image, LocalCollections, LocalEngine, LocalEngineConfig,
    RekognitionEngine,
};
use worker::photo::{
    self, DEFAULT_COLLECTION_ID, DEFAULT_PHOTO_BUCKET, DEFAULT_THUMBNAIL_BUCKET, PhotoConfig,
    PhotoContext,
};
use worker::store::{LocalMetadataTable, ObjectStore, S3Store};
use worker::task::{Registry, TaskFailure, resource_arn};

/// Everything of one test: the servers live as long as this.
struct World {
    _s3: aws_support::Server,
    endpoint: aws_support::Server,
    local: Arc<LocalEngine>,
    aws: Arc<RekognitionEngine>,
    ctx: PhotoContext,
    dir: std::path::PathBuf,
}

async fn world(models: Arc<worker::face::Models>, name: &str) -> World {
    let dir = photo_support::data_dir(name);
    let s3 = aws_support::start_s3(&dir.join("s3")).await;
    let sdk = aws_support::sdk_config().await;
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(&sdk, Some(&s3.url)));
    for b in [DEFAULT_PHOTO_BUCKET, DEFAULT_THUMBNAIL_BUCKET] {
        store.create_bucket(b).await.unwrap();
    }
    for p in photo_support::PHOTOS {
        store
            .put(
                DEFAULT_PHOTO_BUCKET,
                p,
                photo_support::photo(p),
                "image/jpeg",
            )
            .await
            .unwrap();
    }
    let local = Arc::new(LocalEngine::new(
        store.clone(),
        models,
        Arc::new(LocalCollections::new(dir.join("endpoint-collections"))),
        LocalEngineConfig::default(),
    ));
    let endpoint = aws_support::start_rekognition(local.clone()).await;
    let aws = Arc::new(RekognitionEngine::new(&sdk, Some(&endpoint.url)));
    aws.create_collection(DEFAULT_COLLECTION_ID).await.unwrap();
    let ctx = PhotoContext {
        store,
        faces: aws.clone(),
        metadata: Arc::new(LocalMetadataTable::new(dir.join("tables/metadata.json"))),
        config: PhotoConfig::default(),
        decoded: None,
    };
    World {
        _s3: s3,
        endpoint,
        local,
        aws,
        ctx,
        dir,
    }
}

async fn call(r: &Registry, task: &str, input: &Value) -> Result<Value, TaskFailure> {
    r.resolve(&resource_arn(task))
        .unwrap()
        .run(input.clone())
        .await
}

/// One Map iteration of the workshop's DynamicInput definition (its Catches included).
async fn iteration(r: Arc<Registry>, mut state: Value) -> Value {
    let record = |state: &mut Value, f: TaskFailure| {
        state["errorInfo"] = json!({"Error": f.error, "Cause": f.cause});
    };
    match call(&r, "face-detection", &state).await {
        Ok(detail) => state["detectedFaceDetails"] = detail,
        Err(f) if f.error == "PhotoDoesNotMeetRequirementError" => {
            record(&mut state, f);
            return state;
        }
        Err(f) => panic!("FaceDetection failed the execution: {f:?}"),
    }
    match call(&r, "face-search", &state).await {
        Ok(_) => {}
        Err(f) if f.error == "FaceAlreadyExistsError" => {
            record(&mut state, f);
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

/// The four photos plus the happy face again under another user, concurrently.
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

/// The caught error's name and Lambda `errorMessage`.
fn caught(state: &Value) -> Option<(String, String)> {
    let e = state.get("errorInfo")?;
    let cause: Value = serde_json::from_str(e["Cause"].as_str()?).ok()?;
    Some((
        e["Error"].as_str()?.to_owned(),
        cause["errorMessage"].as_str()?.to_owned(),
    ))
}

fn is(state: &Value, error: &str, message: &str) -> bool {
    caught(state) == Some((error.to_owned(), message.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workshop_batch_through_the_aws_engine_gives_the_local_outcomes() {
    let models = models_or_skip!();
    let w = world(models, "rekognition-batch").await;
    let metadata = w.ctx.metadata.clone();
    let mut r = Registry::new();
    photo::register_photo_tasks(&mut r, w.ctx.clone());
    let r = Arc::new(r);

    let results = batch(&r).await;
    for s in &results {
        eprintln!("{s}");
    }
    let rejected = "PhotoDoesNotMeetRequirementError";
    assert!(is(&results[1], rejected, "Face is wearing sunglasses"));
    assert!(is(&results[2], rejected, "Detected 3 faces in the photo."));
    assert!(is(&results[3], rejected, "Detected 0 faces in the photo."));
    // Exactly one happy face passes: the reservation crossed the wire as a header.
    let dup = "Face in the picture is already in the system. ";
    let accepted: Vec<&Value> = [&results[0], &results[4]]
        .into_iter()
        .filter(|s| s.get("parallelResult").is_some())
        .collect();
    assert_eq!(accepted.len(), 1, "exactly one happy face must pass");
    let ok = accepted[0];
    let other = if std::ptr::eq(ok, &results[0]) {
        &results[4]
    } else {
        &results[0]
    };
    assert!(is(other, "FaceAlreadyExistsError", dup), "{other}");
    let face = &ok["parallelResult"][0];
    assert_eq!(face["ExternalImageId"], ok["userId"]);
    assert!(ok["detectedFaceDetails"].get("Landmarks").is_none());
    assert_eq!(
        ok["parallelResult"][1],
        json!({"thumbnail": {"s3key": "resized-1_happy_face.jpg", "s3bucket": DEFAULT_THUMBNAIL_BUCKET}})
    );
    let user = ok["userId"].as_str().unwrap();
    let row = metadata.get(user).await.unwrap().expect("a metadata row");
    assert_eq!(
        serde_json::to_value(&row).unwrap()["faceId"],
        face["FaceId"]
    );

    // Again: both happy faces are duplicates now.
    let again = batch(&r).await;
    assert!(is(&again[0], "FaceAlreadyExistsError", dup), "{}", again[0]);
    assert!(is(&again[4], "FaceAlreadyExistsError", dup), "{}", again[4]);

    // The collection through the SDK: ListFaces, DeleteFaces, CreateCollection again.
    let faces = w.aws.list_faces(DEFAULT_COLLECTION_ID).await.unwrap();
    assert_eq!(faces.len(), 1);
    assert_eq!(faces[0].face_id, face["FaceId"].as_str().unwrap());
    assert_eq!(
        faces,
        w.local.list_faces(DEFAULT_COLLECTION_ID).await.unwrap()
    );
    let ids = vec![faces[0].face_id.clone(), "no-such-face".to_owned()];
    let deleted = w
        .aws
        .delete_faces(DEFAULT_COLLECTION_ID, &ids)
        .await
        .unwrap();
    assert_eq!(deleted, vec![faces[0].face_id.clone()]);
    assert!(
        w.aws
            .list_faces(DEFAULT_COLLECTION_ID)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        w.aws.create_collection(DEFAULT_COLLECTION_ID).await,
        Err(FaceError::ResourceAlreadyExists(_))
    ));
    assert!(matches!(
        w.aws.list_faces("no-such-collection").await,
        Err(FaceError::ResourceNotFound(_))
    ));
    std::fs::remove_dir_all(&w.dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_answer_like_the_local_engine() {
    let models = models_or_skip!();
    let w = world(models, "rekognition-ops").await;
    for p in photo_support::PHOTOS {
        let img = Image::S3Object {
            bucket: DEFAULT_PHOTO_BUCKET.into(),
            name: p.into(),
        };
        let local = w.local.detect_faces(&img).await.unwrap();
        let aws = w.aws.detect_faces(&img).await.unwrap();
        assert_eq!(local.len(), aws.len(), "{p}");
        for (l, a) in local.iter().zip(&aws) {
            // Through JSON, numbers may move by an ulp; nothing else may change.
            assert_eq!(l.sunglasses.value, a.sunglasses.value, "{p}");
            assert_eq!(l.landmarks.len(), a.landmarks.len(), "{p}");
            assert_eq!(l.landmarks[0].kind, a.landmarks[0].kind, "{p}");
            assert!(
                (l.bounding_box.left - a.bounding_box.left).abs() < 1e-5,
                "{p}"
            );
            assert!((l.pose.yaw - a.pose.yaw).abs() < 1e-3, "{p}");
            assert!((l.confidence - a.confidence).abs() < 1e-3, "{p}");
        }
    }
    // Image.Bytes, base64 on the wire.
    let bytes = Image::Bytes(photo_support::photo("3_multiple_faces.jpg").into());
    assert_eq!(w.aws.detect_faces(&bytes).await.unwrap().len(), 3);
    let happy = Image::Bytes(photo_support::photo("1_happy_face.jpg").into());
    let cmp = w.aws.compare_faces(&happy, &happy, 70.0).await.unwrap();
    assert_eq!(cmp.face_matches.len(), 1);
    assert!(cmp.face_matches[0].similarity > 99.0);

    // A missing object is InvalidS3ObjectException, through the SDK and on the wire.
    let missing = Image::S3Object {
        bucket: DEFAULT_PHOTO_BUCKET.into(),
        name: "nobody.jpg".into(),
    };
    assert!(matches!(
        w.aws.detect_faces(&missing).await,
        Err(FaceError::InvalidS3Object(_))
    ));
    let body =
        json!({"Image": {"S3Object": {"Bucket": DEFAULT_PHOTO_BUCKET, "Name": "nobody.jpg"}}});
    let (status, err) = aws_support::raw_request(
        &w.endpoint.url,
        Some("RekognitionService.DetectFaces"),
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["__type"], "InvalidS3ObjectException");
    assert!(err["Message"].as_str().unwrap().contains("S3"));
    // No faces to search for: InvalidParameterException with Rekognition's message.
    let req = worker::face::SearchFacesByImageRequest {
        collection_id: DEFAULT_COLLECTION_ID.into(),
        image: Image::Bytes(photo_support::photo("4_no_face.jpg").into()),
        face_match_threshold: 70.0,
        max_faces: 3,
        reserve_for: None,
    };
    match w.aws.search_faces_by_image(&req).await {
        Err(FaceError::InvalidParameter(m)) => assert!(m.contains("no faces"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The reservation crosses the wire deterministically: a second searcher of the same face
    // matches the first one's reservation before anything is indexed.
    w.aws.create_collection("reservations").await.unwrap();
    let search = |user: &str| worker::face::SearchFacesByImageRequest {
        collection_id: "reservations".into(),
        image: Image::S3Object {
            bucket: DEFAULT_PHOTO_BUCKET.into(),
            name: "1_happy_face.jpg".into(),
        },
        face_match_threshold: 70.0,
        max_faces: 3,
        reserve_for: Some(user.into()),
    };
    let first = w
        .aws
        .search_faces_by_image(&search("user_a"))
        .await
        .unwrap();
    assert!(first.face_matches.is_empty());
    let second = w
        .aws
        .search_faces_by_image(&search("user_e"))
        .await
        .unwrap();
    assert_eq!(second.face_matches.len(), 1, "user_a's reservation matches");
    assert_eq!(second.face_matches[0].face.external_image_id, "user_a");
    // What no SDK sends: an unknown target, broken JSON, a missing field.
    for (target, body, exception) in [
        (None, "{}", "UnknownOperationException"),
        (
            Some("RekognitionService.DetectLabels"),
            "{}",
            "UnknownOperationException",
        ),
        (
            Some("RekognitionService.DetectFaces"),
            "{",
            "SerializationException",
        ),
        (
            Some("RekognitionService.DetectFaces"),
            "{}",
            "ValidationException",
        ),
        (
            Some("RekognitionService.ListFaces"),
            r#"{"CollectionId": "../etc"}"#,
            "InvalidParameterException",
        ),
    ] {
        let (status, err) = aws_support::raw_request(&w.endpoint.url, target, body).await;
        assert_eq!(
            (status, err["__type"].as_str()),
            (400, Some(exception)),
            "{body}"
        );
    }
    // Who is calling is checked before anything else: unsigned, unknown key, wrong secret,
    // a clock 20 minutes off, an SDK client with the wrong secret. The collection is untouched.
    use aws_support::Signing;
    let list = r#"{"CollectionId": "reservations"}"#;
    let target = Some("RekognitionService.ListFaces");
    for (signing, exception, words) in [
        (
            Signing::Unsigned,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ),
        (
            Signing::Key("SOMEONEELSE", "whatever", 0),
            "UnrecognizedClientException",
            "security token",
        ),
        (
            Signing::Key(aws_support::ACCESS_KEY, "not-the-secret", 0),
            "InvalidSignatureException",
            "does not match",
        ),
        (
            Signing::Key(aws_support::ACCESS_KEY, aws_support::SECRET_KEY, -20 * 60),
            "InvalidSignatureException",
            "Signature expired",
        ),
    ] {
        let (status, err) =
            aws_support::raw_request_as(&w.endpoint.url, target, list, signing).await;
        assert_eq!(
            (status, err["__type"].as_str()),
            (400, Some(exception)),
            "{signing:?}: {err}"
        );
        let message = err["Message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{signing:?}: {message}");
        assert!(!message.contains("not-the-secret"), "{message}");
    }
    let wrong = {
        use aws_sdk_s3::config::Credentials;
        let config = aws_support::sdk_config()
            .await
            .into_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                    aws_support::ACCESS_KEY,
                    "not-the-secret",
                    None,
                    None,
                    "wrong",
                )),
            )
            .build();
        RekognitionEngine::new(&config, Some(&w.endpoint.url))
    };
    match wrong.list_faces("reservations").await {
        Err(e @ FaceError::AccessDenied(_)) => {
            assert!(!e.is_retryable());
            assert!(e.to_string().contains("InvalidSignatureException"), "{e}");
        }
        other => panic!("a wrongly signed SDK call: {other:?}"),
    }
    assert_eq!(w.aws.list_faces("reservations").await.unwrap().len(), 0);
    std::fs::remove_dir_all(&w.dir).unwrap();
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_retryable_internal_error() {
    let url = aws_support::dead_url().await;
    let aws = RekognitionEngine::new(&aws_support::sdk_config().await, Some(&url));
    match aws.list_faces("c").await {
        Err(e @ FaceError::Internal(_)) => {
            assert!(e.is_retryable());
            assert!(e.to_string().contains(&url), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// `mapfleet rekognition serve` over the local store: an `S3Object` that is a link leading
/// out of its bucket is refused (InvalidS3ObjectException naming the key), never analysed;
/// the same photo as a real object is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_file_outside_the_bucket_is_never_analysed() {
    let models = models_or_skip!();
    let dir = photo_support::data_dir("rekognition-links");
    let store = Arc::new(worker::store::LocalStore::new(dir.join("buckets")));
    store.create_bucket(DEFAULT_PHOTO_BUCKET).await.unwrap();
    let photo = photo_support::photo("1_happy_face.jpg");
    std::fs::write(dir.join("outside.jpg"), &photo).unwrap();
    let bucket_dir = dir.join("buckets").join(DEFAULT_PHOTO_BUCKET);
    std::os::unix::fs::symlink(dir.join("outside.jpg"), bucket_dir.join("link.jpg")).unwrap();
    store
        .put(DEFAULT_PHOTO_BUCKET, "real.jpg", photo, "image/jpeg")
        .await
        .unwrap();
    let local = Arc::new(LocalEngine::new(
        store,
        models,
        Arc::new(LocalCollections::new(dir.join("collections"))),
        LocalEngineConfig::default(),
    ));
    let endpoint = aws_support::start_rekognition(local.clone()).await;
    let detect = |name: &str| {
        json!({"Image": {"S3Object": {"Bucket": DEFAULT_PHOTO_BUCKET, "Name": name}}}).to_string()
    };
    let target = Some("RekognitionService.DetectFaces");
    let (status, ok) = aws_support::raw_request(&endpoint.url, target, &detect("real.jpg")).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["FaceDetails"].as_array().map(Vec::len), Some(1));
    let (status, err) = aws_support::raw_request(&endpoint.url, target, &detect("link.jpg")).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["__type"], "InvalidS3ObjectException");
    let message = err["Message"].as_str().unwrap();
    assert!(
        message.contains("Access Denied") && message.contains("link.jpg"),
        "{message}"
    );
    // The photo tasks go through the same engine: face-detection sees the same refusal.
    match local
        .detect_faces(&Image::S3Object {
            bucket: DEFAULT_PHOTO_BUCKET.into(),
            name: "link.jpg".into(),
        })
        .await
    {
        Err(FaceError::InvalidS3Object(m)) => assert!(m.contains("link.jpg"), "{m}"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
