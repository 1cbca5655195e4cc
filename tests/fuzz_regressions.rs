#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Replays the fuzz targets' stored inputs on the pinned stable toolchain
//! (`make test`): every file under `fuzz/regressions/<target>/` (inputs
//! that once crashed or broke a property, kept after the fix) and under
//! `fuzz/seeds/<target>/` (the small committed seed corpora) goes through
//! the same check function the fuzz target runs (`fuzz/src/`).
//!
//! A check panics when a property fails; the test names the file.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    let mut replayed = 0;
    let mut failed = Vec::new();
    for (target, check) in checks::TARGETS {
        for file in inputs(&root.join(target)) {
            let data = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(format!("{target}: {}", file.display()));
            }
            replayed += 1;
        }
    }
    // Every failing input, not just the first.
    assert!(failed.is_empty(), "failing inputs:\n{}", failed.join("\n"));
    replayed
}

#[test]
fn regressions_stay_fixed() {
    replay("regressions");
}

#[test]
fn seed_corpora_pass() {
    // Every target ships seeds: an empty replay would mean a broken path.
    assert!(replay("seeds") >= checks::TARGETS.len());
}

#[test]
fn every_target_has_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (target, _) in checks::TARGETS {
        assert!(
            !inputs(&root.join(target)).is_empty(),
            "no seeds for {target}"
        );
    }
}
