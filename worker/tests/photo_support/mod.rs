//! Shared set-up of the photo tests: the models (fetched by `deploy/setup-models.sh` when
//! missing), the rider photos, and a fresh data dir per test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use worker::face::{ModelPaths, Models};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The models directory: `$MAPFLEET_MODELS_DIR`, else `<workspace>/mapfleet-data/models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("MAPFLEET_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("mapfleet-data").join("models"))
}

/// The models, loaded once per test binary. Runs the setup script if files are missing and
/// fails the test when it cannot: the face engine is never silently left untested.
pub fn models() -> Option<Arc<Models>> {
    static MODELS: OnceLock<Option<Arc<Models>>> = OnceLock::new();
    MODELS
        .get_or_init(|| {
            let dir = models_dir();
            let paths = ModelPaths::in_dir(&dir);
            if paths.missing().is_some() {
                eprintln!("photo tests: models missing in {}; running deploy/setup-models.sh", dir.display());
                let status = std::process::Command::new("bash")
                    .arg(workspace().join("deploy/setup-models.sh"))
                    .arg(&dir)
                    .status();
                match status {
                    Ok(s) if s.success() => {}
                    other => panic!(
                        "photo tests: deploy/setup-models.sh failed ({other:?}); the face engine cannot be \
                         tested without its models (`make models` fetches them)"
                    ),
                }
            }
            Some(Arc::new(Models::load(&paths, 2).expect("loading the models")))
        })
        .clone()
}

/// Returns early from a test (after the loud message above) when the models are unavailable.
#[macro_export]
macro_rules! models_or_skip {
    () => {
        match photo_support::models() {
            Some(m) => m,
            None => return,
        }
    };
}

/// The four workshop photos (Apache-2.0; see `examples/rider-photos/NOTICE.md`).
pub fn photo(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/rider-photos/photos")
            .join(name),
    )
    .unwrap()
}

pub const PHOTOS: [&str; 4] = [
    "1_happy_face.jpg",
    "2_sunglass_face.jpg",
    "3_multiple_faces.jpg",
    "4_no_face.jpg",
];

/// A fresh, empty data dir for one test.
pub fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "mapfleet-photo-test-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
