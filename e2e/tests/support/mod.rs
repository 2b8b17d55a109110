//! Shared by the lab tests: they need root (network namespaces, eBPF) and
//! the control-plane binaries, and fail, never skip, without them.
#![allow(dead_code)]

use std::time::Duration;

use bulkhead_e2e::lab::wait_until;
use bulkhead_e2e::{Lab, LabSpec};

/// How long the operator (and agents) get to react to one change.
pub const SETTLE: Duration = Duration::from_secs(30);

pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2));
    assert_eq!(
        euid,
        Some("0"),
        "privileged test: the lab creates network namespaces, a bridge and BPF mounts; run as root"
    );
}

/// Starts a lab or fails the test with why.
pub fn start(spec: LabSpec) -> Lab {
    require_root();
    Lab::start(spec).unwrap_or_else(|e| panic!("starting the lab: {e}"))
}

/// The value, or a test failure that says what was being done.
pub fn ok<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Polls `check` until it returns `Some` (within `SETTLE`), or fails the test.
pub fn eventually<T>(what: &str, check: impl FnMut() -> bulkhead_e2e::Result<Option<T>>) -> T {
    ok(wait_until(what, SETTLE, check), "waiting")
}
