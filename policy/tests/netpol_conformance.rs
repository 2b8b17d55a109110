//! Kubernetes NetworkPolicy conformance in the compiler: the cases of the
//! upstream e2e suite (`test/e2e/network/netpol/network_policy.go`),
//! transcribed as data under `netpol/upstream/`, and Bulkhead's own cases
//! (how NetworkPolicies combine with SegmentationPolicies, and what upstream
//! does not probe) under `netpol/bulkhead/`. The format and the list of
//! upstream cases left out are in `netpol/README.md`.

#[path = "netpol/case.rs"]
mod case;
#[path = "netpol/harness.rs"]
mod harness;

use std::path::Path;

use harness::Variant;

/// How many `It`s the upstream file has, and how many of them we left out.
const UPSTREAM_CASES: usize = 48;
const UPSTREAM_LEFT_OUT: usize = 0;

fn run_dir(dir: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let cases = case::load_dir(&dir);
    let mut failures = String::new();
    let (mut cells, mut flows, mut runs) = (0, 0, 0);
    for (path, case) in &cases {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        for variant in Variant::all_for(case) {
            runs += 1;
            match harness::run(name, case, variant) {
                Ok(checked) => {
                    cells += checked.cells;
                    flows += checked.flows;
                }
                Err(report) => failures.push_str(&report),
            }
        }
    }
    println!(
        "{}: {} cases, {runs} runs, {cells} cells and {flows} flows checked",
        dir.display(),
        cases.len()
    );
    assert!(failures.is_empty(), "cases failed:{failures}");
    assert!(cells > 0);
    cases.len()
}

#[test]
fn upstream_cases_pass_in_the_compiler() {
    let transcribed = run_dir("tests/netpol/upstream");
    assert_eq!(transcribed, UPSTREAM_CASES - UPSTREAM_LEFT_OUT);
}

#[test]
fn bulkhead_cases_pass_in_the_compiler() {
    run_dir("tests/netpol/bulkhead");
}
