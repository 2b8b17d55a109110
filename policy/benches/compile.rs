//! Compile benchmarks at the size the design targets (10,000 pods, 1,000
//! policies, 100 nodes; see `tests/support/gen.rs` for the cluster), each
//! group with its baseline measured in the same run:
//!
//! - `full_compile`: the large cluster, next to one ten times smaller;
//! - `incremental_single_pod`: one pod relabeled (between existing
//!   identities, or into a new one), one pod added and deleted, next to the
//!   full recompile each replaces;
//! - `incremental_single_policy`: one policy's port changed, one policy added
//!   and deleted, next to the full recompile.
//!
//! Each incremental iteration is a real change: the benchmark alternates a
//! change and its inverse on one prepared compiler.
//!
//! ```text
//! cargo bench -p bulkhead-policy --bench compile -- --warm-up-time 1 --measurement-time 5
//! cargo run --release -p bulkhead-policy --example compile_size   # peak memory
//! ```

#[path = "../tests/support/gen.rs"]
mod gen;

use std::hint::black_box;

use bulkhead_policy::{compile, CompileOptions, Compiler, IdentityAllocation, Snapshot};
use criterion::{criterion_group, criterion_main, Criterion};
use gen::{Size, Toggle};

fn full_compile(c: &mut Criterion) {
    let options = CompileOptions::default();
    let mut group = c.benchmark_group("full_compile");
    group.sample_size(10);
    for (name, size) in [
        ("10k_pods_1k_policies_100_nodes", Size::LARGE),
        ("baseline_1k_pods_100_policies_10_nodes", Size::SMALL),
    ] {
        let snapshot = gen::cluster(size);
        describe(name, &snapshot, &options);
        group.bench_function(name, |b| {
            b.iter(|| {
                compile(
                    black_box(&snapshot),
                    &options,
                    &IdentityAllocation::default(),
                )
            })
        });
    }
    group.finish();
}

fn incremental_single_pod(c: &mut Criterion) {
    let snapshot = gen::cluster(Size::LARGE);
    let toggles = [
        ("pod_relabel", gen::pod_relabel(&snapshot)),
        (
            "pod_add_delete",
            gen::pod_add_delete(&snapshot, Size::LARGE),
        ),
        (
            "pod_relabel_new_identity",
            gen::pod_relabel_new_identity(&snapshot),
        ),
    ];
    incremental(c, "incremental_single_pod", &snapshot, &toggles);
}

fn incremental_single_policy(c: &mut Criterion) {
    let snapshot = gen::cluster(Size::LARGE);
    let toggles = [
        (
            "policy_port_change",
            gen::policy_port_change(&snapshot, 123),
        ),
        ("policy_add_delete", gen::policy_add_delete(Size::LARGE)),
    ];
    incremental(c, "incremental_single_policy", &snapshot, &toggles);
}

/// Benches each toggle on one prepared compiler, then the full recompile
/// that an incremental change saves.
fn incremental(
    c: &mut Criterion,
    group_name: &str,
    snapshot: &Snapshot,
    toggles: &[(&str, Toggle)],
) {
    let options = CompileOptions::default();
    let mut compiler = Compiler::new(options.clone(), IdentityAllocation::default());
    compiler.load(snapshot.clone());
    let mut group = c.benchmark_group(group_name);
    group.sample_size(10);
    for (name, toggle) in toggles {
        let mut forth = true;
        group.bench_function(*name, |b| {
            b.iter(|| {
                let change = if forth {
                    toggle.forth.clone()
                } else {
                    toggle.back.clone()
                };
                forth = !forth;
                black_box(compiler.apply(change));
            })
        });
        if !forth {
            compiler.apply(toggle.back.clone());
        }
    }
    let allocation = compiler.output().allocation.clone();
    group.bench_function("baseline_full_recompile", |b| {
        b.iter(|| compile(black_box(snapshot), &options, &allocation))
    });
    group.finish();
}

fn describe(name: &str, snapshot: &Snapshot, options: &CompileOptions) {
    let out = compile(snapshot, options, &IdentityAllocation::default());
    let rules: usize = out.rule_maps.values().map(|m| m.rules.len()).sum();
    eprintln!(
        "{name}: {} pods, {} policies, {} nodes -> {} identities, {rules} compiled rules",
        snapshot.pods.len(),
        snapshot.policies.len(),
        snapshot.nodes.len(),
        out.identities.len(),
    );
}

criterion_group!(
    benches,
    full_compile,
    incremental_single_pod,
    incremental_single_policy
);
criterion_main!(benches);
