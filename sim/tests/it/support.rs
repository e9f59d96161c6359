//! Shared test helpers: locating the external vectors and scratch directories.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// The external vectors: `$DETCD_CHECKER_VECTORS`, or shared/checker-vectors
/// beside the repository (where CI and every developer machine have it).
pub fn vectors_dir() -> PathBuf {
    match env::var_os("DETCD_CHECKER_VECTORS") {
        Some(directory) => PathBuf::from(directory),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/checker-vectors"),
    }
}

/// A fresh, empty directory for one test, under the system temp dir.
pub fn scratch_dir(test: &str) -> PathBuf {
    let directory = env::temp_dir().join(format!("detcd-sim-it-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&directory);
    fs::create_dir_all(&directory).expect("creating a scratch directory in the temp dir");
    directory
}
