//! The benchmark's generated cluster (`support/gen.rs`, `Size::SMALL`: 1,000
//! pods, 100 policies, 10 nodes) built by the two node-build paths of the
//! compiler, which share the rule templates but nothing else: a whole
//! compile takes each policy's subjects on a node from the scope index, a
//! policy change patches every node it touches by intersecting the scope
//! with the node's identities. Both must give the same rule maps.

#[path = "support/gen.rs"]
mod gen;

use bulkhead_policy::{compile, Change, CompileOptions, Compiler, IdentityAllocation};
use gen::Size;

#[test]
fn policies_added_one_by_one_give_the_whole_compile() {
    let snapshot = gen::cluster(Size::SMALL);
    let options = CompileOptions::default();
    let whole = compile(&snapshot, &options, &IdentityAllocation::default());
    let rules: usize = whole.rule_maps.values().map(|m| m.rules.len()).sum();
    assert!(
        rules > 1_000,
        "the generated cluster compiles to {rules} rules"
    );

    let mut without_policies = snapshot.clone();
    without_policies.policies.clear();
    // The whole compile's numbers, so that the CIDR identities the policies
    // bring back get the numbers they had there.
    let mut compiler = Compiler::new(options, whole.allocation.clone());
    compiler.load(without_policies);
    for (name, spec) in &snapshot.policies {
        compiler.apply(Change::UpsertPolicy(name.clone(), spec.clone()));
    }
    let patched = compiler.output();
    for (node, map) in &whole.rule_maps {
        assert_eq!(
            patched.rule_maps.get(node),
            Some(map),
            "node {node}: patched policy by policy differs from the whole compile"
        );
    }
    assert_eq!(patched.rule_maps.len(), whole.rule_maps.len());
    assert_eq!(patched.policies, whole.policies, "policy facts");

    for name in snapshot.policies.keys() {
        compiler.apply(Change::DeletePolicy(name.clone()));
    }
    let left: usize = (compiler.output().rule_maps.values())
        .map(|m| m.rules.len())
        .sum();
    assert_eq!(left, 0, "rules left after deleting every policy");
}
