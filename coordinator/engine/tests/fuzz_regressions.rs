//! Inputs the `execution_run` fuzz target once failed on (`fuzz/README.md`), replayed through
//! the same property as plain tests: each is a definition, an input and a script of Task
//! outcomes, run to its end in memory.

#[path = "../fuzz/fuzz_targets/execution.rs"]
mod execution;

#[test]
fn every_fuzz_finding_now_passes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("the regressions directory")
        .map(|e| e.expect("an entry").path())
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for path in names {
        let data = std::fs::read(&path).expect("readable");
        eprintln!("replaying {}", path.display());
        execution::check(&data);
    }
}
