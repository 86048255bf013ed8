//! The workshop's batch on the fleet and in embedded mode gives the same results: real
//! RabbitMQ, Redis, coordinator and worker processes, real photos and face models. The fleet
//! has two workers with data dirs of their own, so the face collection, the duplicate
//! reservations and the metadata table they share are the ones in Redis.

#[path = "common/models.rs"]
mod models;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use models::{models_dir, repo, worker_bin};
use serde_json::Value;

const REDIS: &str = "redis://127.0.0.1:6379/";

fn mapfleet() -> &'static str {
    env!("CARGO_BIN_EXE_mapfleet")
}

struct Proc(Child);

/// Deletes the fleet prefix's queues and keys when the test ends.
struct Teardown(String);

impl Drop for Teardown {
    fn drop(&mut self) {
        shared::testkit::teardown_prefix(&self.0);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: &[&str], data_dir: &Path) -> Output {
    let out = Command::new(mapfleet())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("MAPFLEET_MODELS_DIR", models_dir())
        .current_dir(repo())
        .output()
        .expect("run mapfleet");
    assert!(
        out.status.success(),
        "mapfleet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn load_photos(data_dir: &Path) {
    let photos: Vec<String> = std::fs::read_dir(repo().join("examples/rider-photos/photos"))
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".jpg"))
        .collect();
    let mut args = vec!["objects", "put", "mapfleet-rider-photos"];
    args.extend(photos.iter().map(String::as_str));
    run(&args, data_dir);
}

/// What the workshop shows of each result: the rejection, or the accepted photo's thumbnail.
fn summary(results: &Value) -> Vec<String> {
    results
        .as_array()
        .expect("results array")
        .iter()
        .map(
            |r| match (&r["errorInfo"]["messageToSend"], &r["parallelResult"]) {
                (m, _) if m.is_object() => {
                    format!("{} {}: {}", r["userId"], m["title"], m["message"])
                }
                (_, p) if p.is_array() => {
                    assert!(p[0]["FaceId"].is_string(), "an indexed face: {p}");
                    format!(
                        "{} accepted: {}",
                        r["userId"],
                        p[1]["thumbnail"]["s3key"].as_str().unwrap_or("?")
                    )
                }
                _ => panic!("unexpected result {r}"),
            },
        )
        .collect()
}

#[test]
fn batch_on_the_fleet_matches_embedded_mode() {
    let def = repo().join("examples/rider-photos/ImageProcessingStateMachine-DynamicInput.json");
    let input = repo().join("examples/rider-photos/batch-input.json");
    let (def, input) = (
        def.to_str().unwrap().to_string(),
        input.to_str().unwrap().to_string(),
    );

    // Embedded mode.
    let embedded_dir = tempfile::tempdir().unwrap();
    load_photos(embedded_dir.path());
    let out = run(&["run", &def, "--input", &input], embedded_dir.path());
    let embedded: Value = serde_json::from_slice(&out.stdout).unwrap();
    let embedded = summary(&embedded["results"]);

    // The fleet: one coordinator, two workers with the photo tasks, each over a data dir of its
    // own (both hold the photos): only Redis is shared between them.
    let fleet_dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for dir in &fleet_dirs {
        load_photos(dir.path());
    }
    let prefix = format!("mft-photos-{}", uuid::Uuid::new_v4().simple());
    // Declared before the processes, so it drops (and deletes the prefix) after them.
    let _teardown = Teardown(prefix.clone());
    shared::testkit::declare_prefix(&prefix, 5).expect("declare the fleet's queues");
    let _coordinator = Proc(
        Command::new(mapfleet())
            .args(["coordinator", "--prefix", &prefix])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _workers = fleet_dirs.each_ref().map(|dir| {
        Proc(
            Command::new(worker_bin())
                .args(["--prefix", &prefix, "--concurrency", "2", "--data-dir"])
                .arg(dir.path())
                .env("MAPFLEET_MODELS_DIR", models_dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    });
    let on_fleet = |name: &str| -> Vec<String> {
        let started = Instant::now();
        let out = Command::new(mapfleet())
            .args([
                "run", &def, "--input", &input, "--name", name, "--redis", REDIS, "--prefix",
                &prefix,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fleet run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(started.elapsed() < Duration::from_secs(120));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        summary(&v["results"])
    };
    let first = on_fleet("photos-1");
    // Items 1-3 are decided by the photo alone; of the two happy-face items (0 and 4), which
    // one wins the duplicate race is up to timing, in either mode.
    assert_eq!(
        first[1..4],
        embedded[1..4],
        "the fleet and embedded mode disagree"
    );
    for results in [&first, &embedded] {
        let happy = [&results[0], &results[4]];
        let accepted: Vec<&&String> = happy.iter().filter(|s| s.contains("accepted")).collect();
        assert_eq!(
            accepted.len(),
            1,
            "exactly one happy face is accepted: {results:#?}"
        );
        assert!(
            accepted[0].ends_with("accepted: resized-1_happy_face.jpg"),
            "{results:#?}"
        );
        assert!(
            happy.iter().any(|s| s.ends_with(
                "\"FaceAlreadyExistsError\": \"Face in the picture is already in the system. \""
            )),
            "{results:#?}"
        );
    }
    assert_eq!(
        first[1],
        "\"user_b\" \"PhotoDoesNotMeetRequirementError\": \"Face is wearing sunglasses\""
    );
    assert_eq!(
        first[2],
        "\"user_c\" \"PhotoDoesNotMeetRequirementError\": \"Detected 3 faces in the photo.\""
    );
    assert_eq!(
        first[3],
        "\"user_d\" \"PhotoDoesNotMeetRequirementError\": \"Detected 0 faces in the photo.\""
    );

    // The one accepted face is in the fleet's collection and table, read as `mapfleet` reads
    // them with `--redis`; the workers' data dirs hold none.
    let accepted_user = if first[0].contains("accepted") {
        "user_a"
    } else {
        "user_e"
    };
    let fleet_json = |args: &[&str]| -> Value {
        let mut args = args.to_vec();
        args.extend(["--redis", REDIS, "--prefix", &prefix]);
        serde_json::from_slice(&run(&args, fleet_dirs[0].path()).stdout).unwrap()
    };
    let faces = fleet_json(&["faces", "collection", "list"]);
    let faces = faces["Faces"].as_array().expect("Faces");
    assert_eq!(faces.len(), 1, "{faces:#?}");
    assert_eq!(faces[0]["ExternalImageId"], accepted_user);
    let items = fleet_json(&["metadata", "list"]);
    let items = items["Items"].as_array().expect("Items");
    assert_eq!(items.len(), 1, "{items:#?}");
    assert_eq!(items[0]["Username"], accepted_user);
    assert_eq!(items[0]["faceId"], faces[0]["FaceId"]);
    let item = fleet_json(&["metadata", "get", accepted_user]);
    assert_eq!(item["Item"], items[0]);
    for dir in &fleet_dirs {
        for local in ["collections", "tables"] {
            assert!(
                !dir.path().join(local).exists(),
                "a worker wrote {local} locally"
            );
        }
    }

    // Again: both happy faces are now duplicates.
    let second = on_fleet("photos-2");
    for i in [0, 4] {
        assert!(second[i].contains("FaceAlreadyExistsError"), "{second:#?}");
    }
}
