//! The fleet's photo stores against the real Redis (`MAPFLEET_REDIS_URL`, else 127.0.0.1):
//! the face collection as two workers see it (two handles, each with its own connection and
//! cached copy, as two processes have), and the metadata table. Every test uses its own key
//! prefix and deletes it at the end, so tests run in parallel and leave Redis clean.

use std::sync::Arc;

use shared::testkit::{redis_url, teardown_prefix, unique_prefix};
use worker::face::collection::{FaceCollections, Reservation, StoredFace};
use worker::face::{BoundingBox, Face, FaceError, RedisCollections};
use worker::photo::{PhotoStores, StoresAt};
use worker::store::{PhotoMetadata, ThumbnailRef};

/// Deletes the prefix's keys when the test ends, passed or failed. Runs on its own thread:
/// `teardown_prefix` blocks on a runtime of its own, which cannot nest in the test's.
struct Teardown(String);

impl Drop for Teardown {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let _ = std::thread::spawn(move || teardown_prefix(&prefix)).join();
    }
}

/// A collection handle with its own connection and cache, as one worker process has.
async fn handle(prefix: &str) -> RedisCollections {
    let conn = shared::redis_schema::connect(&redis_url())
        .await
        .expect("Redis for the fleet tests");
    RedisCollections::new(conn, prefix)
}

fn face(id: &str, user: &str) -> Face {
    Face {
        face_id: id.into(),
        bounding_box: BoundingBox {
            width: 0.2,
            height: 0.3,
            left: 0.1,
            top: 0.1,
        },
        image_id: "image".into(),
        external_image_id: user.into(),
        confidence: 99.5,
    }
}

/// A unit embedding along `axis`: the same axis is the same person (similarity ≈ 100),
/// another axis someone else (≈ 1).
fn person(axis: usize) -> Vec<f32> {
    let mut v = vec![0.0; 8];
    v[axis] = 1.0;
    v
}

fn reservation(id: &str, axis: usize, expires_at_ms: u64) -> Reservation {
    Reservation {
        face: face(id, id),
        embedding: person(axis),
        expires_at_ms,
    }
}

fn in_a_minute() -> u64 {
    shared::now_ms() + 60_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_racing_for_one_face_reserve_it_once() {
    let prefix = unique_prefix("mft-faces-race");
    let _teardown = Teardown(prefix.clone());
    let (a, b) = (
        Arc::new(handle(&prefix).await),
        Arc::new(handle(&prefix).await),
    );
    assert!(a.create("c").await.unwrap());
    assert!(!b.create("c").await.unwrap());
    // Someone else is already indexed: searches must see past them.
    a.index(
        "c",
        StoredFace {
            face: face("other", "user_o"),
            embedding: person(3),
        },
    )
    .await
    .unwrap();

    // Sixteen photos of one person, searched at once through both workers.
    let searches = (0..16).map(|i| {
        let h = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            let r = reservation(&format!("face-{i}"), 0, in_a_minute());
            (
                i,
                h.search("c", &person(0), 70.0, 5, Some(r)).await.unwrap(),
            )
        })
    });
    let mut winners = Vec::new();
    let mut reserved_by = Vec::new();
    for s in searches {
        let (i, hits) = s.await.unwrap();
        if hits.is_empty() {
            winners.push(i);
        } else {
            assert_eq!(hits.len(), 1, "{hits:?}");
            assert!(hits[0].reserved, "{hits:?}");
            reserved_by.push(hits[0].face.face_id.clone());
        }
    }
    assert_eq!(winners.len(), 1, "exactly one search reserves the face");
    let winner = format!("face-{}", winners[0]);
    assert!(
        reserved_by.iter().all(|id| *id == winner),
        "{reserved_by:?}"
    );

    // The winner's index-face turns the reservation into a face the other worker finds.
    let stored = StoredFace {
        face: face(&winner, &winner),
        embedding: person(0),
    };
    let indexed = a.index("c", stored.clone()).await.unwrap();
    let hits = b.search("c", &person(0), 70.0, 5, None).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert!(!hits[0].reserved && hits[0].face == indexed, "{hits:?}");
    // A redelivered index-face, on either worker, changes nothing.
    assert_eq!(b.index("c", stored.clone()).await.unwrap(), indexed);
    assert_eq!(a.index("c", stored).await.unwrap(), indexed);
    let ids: Vec<String> = b
        .faces("c")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.face.face_id)
        .collect();
    assert_eq!(ids, ["other".to_string(), winner.clone()], "indexing order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_face_indexed_by_one_worker_is_found_by_the_other() {
    let prefix = unique_prefix("mft-faces-sync");
    let _teardown = Teardown(prefix.clone());
    let (a, b) = (handle(&prefix).await, handle(&prefix).await);
    a.create("c").await.unwrap();
    // b's copy is warm (and empty) before a indexes anything.
    assert!(
        b.search("c", &person(1), 70.0, 5, None)
            .await
            .unwrap()
            .is_empty()
    );
    for (i, axis) in [1, 2].into_iter().enumerate() {
        a.index(
            "c",
            StoredFace {
                face: face(&format!("f{i}"), "u"),
                embedding: person(axis),
            },
        )
        .await
        .unwrap();
    }
    let hits = b.search("c", &person(2), 70.0, 5, None).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].face.face_id, "f1");
    // A reservation b finds no match for: b may reserve. A deletion by a is seen by b.
    assert_eq!(
        a.delete("c", &["f1".into(), "nope".into()]).await.unwrap(),
        ["f1".to_string()]
    );
    assert!(
        b.search(
            "c",
            &person(2),
            70.0,
            5,
            Some(reservation("r", 2, in_a_minute()))
        )
        .await
        .unwrap()
        .is_empty()
    );
    let hits = a.search("c", &person(2), 70.0, 5, None).await.unwrap();
    assert!(hits[0].reserved && hits[0].face.face_id == "r", "{hits:?}");
}

#[tokio::test]
async fn a_copy_older_than_the_change_log_reloads_whole() {
    let prefix = unique_prefix("mft-faces-trim");
    let _teardown = Teardown(prefix.clone());
    let a = handle(&prefix).await.with_changes_limit(2);
    let b = handle(&prefix).await.with_changes_limit(2);
    a.create("c").await.unwrap();
    b.search("c", &person(0), 70.0, 5, None).await.unwrap();
    // Five changes: b's copy (at seq 0) falls behind the two ids the log keeps.
    for axis in 0..5 {
        a.index(
            "c",
            StoredFace {
                face: face(&format!("f{axis}"), "u"),
                embedding: person(axis),
            },
        )
        .await
        .unwrap();
    }
    for axis in 0..5 {
        let hits = b.search("c", &person(axis), 70.0, 5, None).await.unwrap();
        assert_eq!(hits.len(), 1, "axis {axis}");
        assert_eq!(hits[0].face.face_id, format!("f{axis}"));
    }
}

#[tokio::test]
async fn a_recreated_collection_is_not_mistaken_for_the_old_one() {
    let prefix = unique_prefix("mft-faces-again");
    let _teardown = Teardown(prefix.clone());
    let (a, b) = (handle(&prefix).await, handle(&prefix).await);
    a.create("c").await.unwrap();
    let stored = |id: &str, axis| StoredFace {
        face: face(id, "u"),
        embedding: person(axis),
    };
    a.index("c", stored("old", 0)).await.unwrap();
    assert_eq!(
        b.search("c", &person(0), 70.0, 5, None)
            .await
            .unwrap()
            .len(),
        1
    );
    // Gone and created again, and changed more often than b's copy had seen.
    shared::redis_schema::FleetStore::connect(&redis_url(), &prefix)
        .await
        .unwrap()
        .delete_prefix()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    a.create("c").await.unwrap();
    a.index("c", stored("new1", 1)).await.unwrap();
    a.index("c", stored("new2", 2)).await.unwrap();
    assert!(
        b.search("c", &person(0), 70.0, 5, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.search("c", &person(1), 70.0, 5, None)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The local store's scenario (`collection.rs`'s unit tests), through two handles.
#[tokio::test]
async fn same_answers_and_errors_as_the_local_store() {
    let prefix = unique_prefix("mft-faces-local");
    let _teardown = Teardown(prefix.clone());
    let (a, b) = (handle(&prefix).await, handle(&prefix).await);
    let missing = a.search("x", &person(0), 70.0, 3, None).await.unwrap_err();
    assert_eq!(
        missing,
        FaceError::ResourceNotFound("The collection id: x does not exist".into())
    );
    assert!(matches!(
        b.index(
            "x",
            StoredFace {
                face: face("a", "u"),
                embedding: person(0)
            }
        )
        .await,
        Err(FaceError::ResourceNotFound(_))
    ));
    assert!(matches!(
        a.create("../x").await,
        Err(FaceError::InvalidParameter(_))
    ));
    assert!(matches!(
        b.faces("x").await,
        Err(FaceError::ResourceNotFound(_))
    ));
    assert!(a.create("x").await.unwrap());

    // First searcher reserves; a redelivered search by the same face id still passes.
    for h in [&a, &b] {
        let r = reservation("a", 0, in_a_minute());
        assert!(
            h.search("x", &person(0), 70.0, 3, Some(r))
                .await
                .unwrap()
                .is_empty()
        );
    }
    // A second searcher of the same person matches the reservation, through either handle.
    for h in [&a, &b] {
        let r = reservation("b", 0, in_a_minute());
        let hits = h.search("x", &person(0), 70.0, 3, Some(r)).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert!(hits[0].reserved && hits[0].face.face_id == "a");
    }
    // A different person does not.
    assert!(
        b.search("x", &person(1), 70.0, 3, None)
            .await
            .unwrap()
            .is_empty()
    );

    // An expired reservation is stored, then no longer matches.
    let old = reservation("old", 5, 1);
    assert!(
        a.search("x", &person(5), 70.0, 3, Some(old))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        b.search("x", &person(5), 70.0, 3, None)
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting removes indexed faces only; an empty collection lists empty.
    assert!(a.delete("x", &["a".into()]).await.unwrap().is_empty());
    assert!(b.faces("x").await.unwrap().is_empty());
}

fn item(user: &str) -> PhotoMetadata {
    PhotoMetadata {
        username: user.into(),
        face_id: format!("face-of-{user}"),
        s3bucket: "mapfleet-rider-photos".into(),
        s3key: format!("{user}.jpg"),
        thumbnail: ThumbnailRef {
            s3bucket: "mapfleet-rider-photos-thumbnails".into(),
            s3key: format!("resized-{user}.jpg"),
        },
    }
}

#[tokio::test]
async fn metadata_put_get_list_through_two_workers() {
    let prefix = unique_prefix("mft-metadata");
    let _teardown = Teardown(prefix.clone());
    let at = StoresAt::Redis {
        url: redis_url(),
        prefix: prefix.clone(),
        tls: Default::default(),
        shared_analysis: std::time::Duration::ZERO,
    };
    let here = std::path::Path::new("unused");
    let a = PhotoStores::open(&at, here).await.unwrap().metadata;
    let b = PhotoStores::open(&at, here).await.unwrap().metadata;
    assert!(a.list().await.unwrap().is_empty());
    assert_eq!(b.get("user_a").await.unwrap(), None);
    a.put(item("user_e")).await.unwrap();
    b.put(item("user_a")).await.unwrap();
    assert_eq!(b.get("user_e").await.unwrap(), Some(item("user_e")));
    // A put with an existing Username replaces the item.
    let mut again = item("user_a");
    again.face_id = "another".into();
    a.put(again.clone()).await.unwrap();
    assert_eq!(b.list().await.unwrap(), vec![again, item("user_e")]);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let at = StoresAt::Redis {
        url: "redis://:secret@127.0.0.1:1/".into(),
        prefix: "p".into(),
        tls: Default::default(),
        shared_analysis: std::time::Duration::ZERO,
    };
    let Err(e) = PhotoStores::open(&at, std::path::Path::new("unused")).await else {
        panic!("connected to nothing");
    };
    let e = e.to_string();
    assert!(
        e.contains("cannot reach Redis at redis://:***@127.0.0.1:1/"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
}
