//! Wall time and peak memory of compiling the benchmark's cluster.
//!
//! ```text
//! cargo run --release -p bulkhead-policy --example compile_size            # 10k pods, 1k policies, 100 nodes
//! cargo run --release -p bulkhead-policy --example compile_size -- small   # a tenth of that
//! cargo run --release -p bulkhead-policy --example compile_size -- medium  # three times it: 30k pods
//! cargo run --release -p bulkhead-policy --example compile_size -- huge    # ten times it: 100k pods
//! ```
//!
//! Peak RSS is the kernel's high-water mark (`VmHWM` in /proc/self/status),
//! read after generating the snapshot and again after compiling: the
//! difference is what compiling adds on top of holding the input. Criterion
//! measures time more carefully (`cargo bench -p bulkhead-policy --bench
//! compile`); this reports memory, which criterion does not.

#[path = "../tests/support/gen.rs"]
mod gen;

use std::time::{Duration, Instant};

use bulkhead_policy::{compile, CompileOptions, Compiler, IdentityAllocation};
use gen::Size;

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// Mean time of one change, alternating a change and its inverse for about
/// two seconds (at least one pair, at most 200).
fn per_change(compiler: &mut Compiler, toggle: &gen::Toggle) -> (Duration, u32) {
    let start = Instant::now();
    let mut changes = 0;
    while changes == 0 || (changes < 400 && start.elapsed() < Duration::from_secs(2)) {
        std::hint::black_box(compiler.apply(toggle.forth.clone()));
        std::hint::black_box(compiler.apply(toggle.back.clone()));
        changes += 2;
    }
    (start.elapsed() / changes, changes)
}

/// How big the rule maps are: identities listed in rules, and the JSON the
/// operator would write (one NodeRuleMap spec per node).
fn output_size(out: &bulkhead_policy::Output) {
    let rules = out.rule_maps.values().flat_map(|m| &m.rules);
    let (mut subjects, mut peers, mut ports) = (0usize, 0usize, 0usize);
    let mut distinct = std::collections::HashSet::new();
    for r in rules {
        subjects += r.subjects.len();
        peers += r.peers.len();
        ports += r.ports.len();
        distinct.insert(r.peers.as_slice());
    }
    let distinct_ids: usize = distinct.iter().map(|p| p.len()).sum();
    let mut json = 0usize;
    let mut largest = 0usize;
    for map in out.rule_maps.values() {
        let mut counter = Counter(0);
        serde_json::to_writer(&mut counter, map).expect("a rule map serializes");
        json += counter.0;
        largest = largest.max(counter.0);
    }
    println!(
        "  rule maps hold {subjects} subject ids, {peers} peer ids, {ports} port ranges; \
         JSON {:.1} MiB in all, {:.2} MiB for the largest node\n  \
         distinct peer lists: {} holding {distinct_ids} ids",
        json as f64 / 1048576.0,
        largest as f64 / 1048576.0,
        distinct.len()
    );
}

/// Counts bytes written.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() {
    let size = match std::env::args().nth(1).as_deref() {
        Some("small") => Size::SMALL,
        Some("medium") => Size::MEDIUM,
        Some("huge") => Size::HUGE,
        _ => Size::LARGE,
    };
    println!("cluster: {size:?}");
    println!(
        "peak RSS at start:            {}",
        mib(status_kib("VmHWM:"))
    );

    let start = Instant::now();
    let snapshot = gen::cluster(size);
    println!(
        "generated in {:>10.1?}; peak RSS {}",
        start.elapsed(),
        mib(status_kib("VmHWM:"))
    );

    let options = CompileOptions::default();
    let start = Instant::now();
    let out = compile(&snapshot, &options, &IdentityAllocation::default());
    let full = start.elapsed();
    let rules: usize = out.rule_maps.values().map(|m| m.rules.len()).sum();
    let prefixes: usize = out.identity_maps.iter().map(|s| s.prefixes.len()).sum();
    println!(
        "full compile {full:>10.1?}; peak RSS {}",
        mib(status_kib("VmHWM:"))
    );
    println!(
        "  {} endpoints, {} identities, {} rule maps with {rules} compiled rules, {prefixes} prefixes",
        out.endpoints.len(),
        out.identities.len(),
        out.rule_maps.len(),
    );
    println!("  current RSS {}", mib(status_kib("VmRSS:")));
    output_size(&out);
    if std::env::args().any(|a| a == "--full-only") {
        return;
    }

    let allocation = out.allocation.clone();
    drop(out);
    let mut compiler = Compiler::new(options, allocation);
    compiler.load(snapshot.clone());
    println!(
        "incremental compiler loaded; peak RSS {}",
        mib(status_kib("VmHWM:"))
    );
    let cases = [
        ("pod relabel", gen::pod_relabel(&snapshot)),
        ("pod new identity", gen::pod_relabel_new_identity(&snapshot)),
        ("pod add/delete", gen::pod_add_delete(&snapshot, size)),
        (
            "policy port change",
            gen::policy_port_change(&snapshot, 123),
        ),
        ("policy add/delete", gen::policy_add_delete(size)),
    ];
    for (name, toggle) in &cases {
        let (t, n) = per_change(&mut compiler, toggle);
        println!("incremental {name:<20} {t:>10.1?} per change (mean of {n})");
    }
    println!(
        "peak RSS at end:              {}",
        mib(status_kib("VmHWM:"))
    );
}
