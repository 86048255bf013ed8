//! Where the photo tests find the repository, the face models and the worker binary. Included with `#[path]`
//! by the tests that run photo tasks (`embedded_limits.rs`, `fleet_photos.rs`, `distributed_map.rs`), which need
//! nothing else of the harness.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (this crate is `coordinator/cli`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// The face models: `MAPFLEET_MODELS_DIR`, else `<repo>/mapfleet-data/models`, fetched by the
/// setup script when missing.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("MAPFLEET_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("mapfleet-data/models"));
    if !dir.join("libonnxruntime.so").exists() {
        let ok = Command::new("bash")
            .arg(repo().join("deploy/setup-models.sh"))
            .arg(&dir)
            .status()
            .map(|s| s.success());
        assert!(
            matches!(ok, Ok(true)),
            "deploy/setup-models.sh failed: the face models are needed"
        );
    }
    dir
}

/// The `mapfleet-worker` binary, built next to this test's own binaries by
/// `cargo test --workspace` (or `cargo build -p worker`).
#[allow(dead_code)] // not every test that includes this module starts worker processes
pub fn worker_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("mapfleet-worker");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p worker`",
        bin.display()
    );
    bin
}
