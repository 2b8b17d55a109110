//! Running the built plugin on fixture directories.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// What one run of the binary did.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout as JSON; panics with the stderr when it is not.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    /// Asserts a failure whose stderr contains `needle`.
    pub fn fails_with(&self, needle: &str) {
        assert_ne!(
            self.code,
            Some(0),
            "expected a failure; stdout: {}",
            self.stdout
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
    }
}

/// A fixture directory (or file) under tests/fixtures.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The lab example at the repository's root.
pub fn example_lab() -> String {
    format!("{}/../examples/lab", env!("CARGO_MANIFEST_DIR"))
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kubectl-bulkhead-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Runs `kubectl-bulkhead args...`.
pub fn run(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_kubectl-bulkhead"))
        .args(args)
        .output()
        .expect("the binary runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
