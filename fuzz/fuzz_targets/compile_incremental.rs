//! The compiler on arbitrary small clusters (fuzz/src/cluster.rs): no
//! snapshot and no change makes it panic, loading equals a full compile,
//! and after every change the incremental output equals a full compile of
//! the same snapshot with the allocation the compiler had just before it
//! (the property policy/tests/properties.rs checks with proptest).

#![no_main]

use bulkhead_fuzz::cluster::Scenario;
use bulkhead_policy::{compile, Compiler, IdentityAllocation, Output};
use libfuzzer_sys::fuzz_target;

/// Equal as policy/tests/properties.rs compares them: the numbers in use,
/// the next number and the quarantined ones.
fn same_allocation(left: &IdentityAllocation, right: &IdentityAllocation) -> bool {
    left.next_id() == right.next_id()
        && left.iter().eq(right.iter())
        && left.released().eq(right.released())
}

/// The first field where two outputs differ.
fn first_difference(left: &Output, right: &Output) -> Option<&'static str> {
    let fields: [(&str, bool); 9] = [
        ("endpoints", left.endpoints == right.endpoints),
        ("unlabeled", left.unlabeled == right.unlabeled),
        ("conflicts", left.conflicts == right.conflicts),
        ("identities", left.identities == right.identities),
        (
            "allocation",
            same_allocation(&left.allocation, &right.allocation),
        ),
        ("rule_maps", left.rule_maps == right.rule_maps),
        ("identity_maps", left.identity_maps == right.identity_maps),
        ("policies", left.policies == right.policies),
        ("mappings", left.mappings == right.mappings),
    ];
    fields.into_iter().find(|(_, same)| !same).map(|(f, _)| f)
}

fuzz_target!(|scenario: Scenario| {
    let Scenario {
        options,
        snapshot,
        changes,
    } = scenario;
    let mut compiler = Compiler::new(options.clone(), IdentityAllocation::default());
    compiler.load(snapshot.clone());
    let whole = compile(&snapshot, &options, &IdentityAllocation::default());
    if let Some(field) = first_difference(compiler.output(), &whole) {
        panic!(
            "load vs compile differ in {field}:\n  load:    {:?}\n  compile: {:?}",
            compiler.output(),
            whole
        );
    }
    for (i, change) in changes.into_iter().enumerate() {
        let allocation = compiler.output().allocation.clone();
        let shown = format!("{change:?}");
        compiler.apply(change);
        let whole = compile(compiler.snapshot(), &options, &allocation);
        if let Some(field) = first_difference(compiler.output(), &whole) {
            panic!(
                "after change {i} ({shown}), incremental vs full differ in {field}:\n  incremental: {:?}\n  full:        {:?}",
                compiler.output(),
                whole
            );
        }
    }
});
