//! `kubectl-bulkhead`: the offline side of Bulkhead, for people and for CI.
//!
//! ```text
//!  PATH... ──► load/ (files, documents, kinds) ──► validate/ (schema, CEL rules)
//!                          │
//!                          ▼ Snapshot
//!              bulkhead_policy::compile ──► Output (labels, identities, rule maps, shards)
//!                          │
//!      ┌───────────────────┼──────────────────────┬───────────────────┐
//!  simulate.rs          matrix.rs            compile_cmd.rs        labels_cmd.rs
//!  one flow: verdict,   every pod × pod,     NodeRuleMap and       endpoints, labels,
//!  rule, modes          a truth table        IdentityMap files     unlabeled, conflicts
//!
//!  flows/ (history from the collector or an export) ──► reports/: top-talkers,
//!  unlabeled, report (thin over bulkhead_insight)
//! ```
//!
//! `recommend` and `what-if` (history.rs, recommend_cmd.rs, whatif_cmd/) read
//! flow history and today's cluster, and hand both to `bulkhead_insight`.
//!
//! Simulation goes through the very rule maps and verdict function the
//! agents enforce, so a green CI run means what the datapath will do.

#![forbid(unsafe_code)]

pub mod args;
pub mod cmdb;
pub mod compile_cmd;
pub mod endpoint;
pub mod error;
pub mod externalnode;
pub mod flows;
pub mod governance;
pub mod history;
pub mod labels_cmd;
pub mod live;
pub mod load;
pub mod matrix;
pub mod ports;
pub mod recommend_cmd;
pub mod render;
pub mod reports;
pub mod simulate;
pub mod simulate_service;
pub mod validate;
pub mod whatif_cmd;

use bulkhead_policy::{compile, CompileOptions, IdentityAllocation, Output};

use args::InputArgs;
use load::Inventory;

/// The loaded input and what the compiler made of it.
#[derive(Debug)]
pub struct Compiled {
    /// The manifests.
    pub inventory: Inventory,
    /// The compiler's output.
    pub output: Output,
    /// Whether NetworkPolicies were compiled.
    pub network_policies: bool,
    /// Things a person should know about how the input was read.
    pub notes: Vec<String>,
}

/// Loads the manifests and compiles them, as the operator would from a fresh
/// start (no previous identity allocation). NetworkPolicies are compiled with
/// `--network-policies`, or when `auto_network_policies` and the input has any.
pub fn load_and_compile(
    input: &InputArgs,
    shards: Option<u32>,
    auto_network_policies: bool,
) -> error::Result<Compiled> {
    compile_inventory(
        load::load(&input.paths)?,
        input,
        shards,
        auto_network_policies,
    )
}

/// Compiles what was loaded (or read from the API server) with the input's
/// options.
pub fn compile_inventory(
    inventory: Inventory,
    input: &InputArgs,
    shards: Option<u32>,
    auto_network_policies: bool,
) -> error::Result<Compiled> {
    let found = inventory.snapshot.network_policies.len();
    let network_policies = input.network_policies || (auto_network_policies && found > 0);
    let mut notes = Vec::new();
    let count = match found {
        1 => "1 NetworkPolicy".to_string(),
        n => format!("{n} NetworkPolicies"),
    };
    if found > 0 && !input.network_policies {
        notes.push(if network_policies {
            format!("the input has {count}; enforcing them too, as --network-policies would")
        } else {
            format!("the input has {count}, ignored without --network-policies")
        });
    }
    let defaults = CompileOptions::default();
    let mut options = CompileOptions {
        default_mode: input.default_mode.into(),
        identity_shards: shards.unwrap_or(defaults.identity_shards),
        network_policies,
        ..defaults
    };
    for port in &input.failsafe_ports {
        if !options.failsafe_ports.contains(port) {
            options.failsafe_ports.push(*port);
        }
    }
    let mut inventory = inventory;
    let enforced: Vec<(String, bulkhead_api::SegmentationPolicySpec)> = inventory
        .exceptions
        .iter()
        .filter_map(|(name, e)| {
            bulkhead_policy::exception::enforced(
                name,
                &e.spec,
                e.status.as_ref(),
                e.metadata.generation,
            )
            .map(|p| (bulkhead_policy::exception::policy_name(name), p))
        })
        .collect();
    if !enforced.is_empty() {
        let names: Vec<&str> = enforced.iter().map(|(n, _)| n.as_str()).collect();
        notes.push(format!(
            "counting the SegmentationExceptions the operator enforces: {}",
            names.join(", ")
        ));
    }
    inventory.snapshot.policies.extend(enforced);
    let output = compile(
        &inventory.snapshot,
        &options,
        &IdentityAllocation::default(),
    );
    Ok(Compiled {
        inventory,
        output,
        network_policies,
        notes,
    })
}

/// Serializes to pretty JSON; the types involved always serialize.
pub fn to_json<T: serde::Serialize>(value: &T) -> error::Result<String> {
    serde_json::to_string_pretty(value).map_err(|e| error::Error::Serialize(e.to_string()))
}
