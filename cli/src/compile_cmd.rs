//! `compile --out DIR`: the rule maps and identity shards the operator would
//! publish, as files an agent in standalone mode reads, and a summary.

use std::fmt::Write;
use std::fs;
use std::path::Path;

use bulkhead_api::policy::EnforcementMode;
use bulkhead_api::{IdentityMap, NodeRuleMap};
use bulkhead_policy::netpol;
use bulkhead_policy::output::EndpointRef;
use bulkhead_policy::Output;
use serde::Serialize;

use crate::args::{CompileArgs, FileFormat};
use crate::error::{Error, Result};
use crate::{render, Compiled};

/// Runs the command: writes the files, returns the summary.
pub fn run(args: &CompileArgs, compiled: &Compiled) -> Result<String> {
    let written = write_files(&compiled.output, &args.out, args.output)?;
    let mut s = format!(
        "wrote {} and {} to {}\n",
        plural(written.0, "NodeRuleMap"),
        plural(written.1, "IdentityMap shard"),
        args.out.display()
    );
    s.push_str(&summary(compiled));
    Ok(s)
}

/// Writes one file per rule map and per shard into `dir`, after removing
/// files of those names left from an earlier run (a node that is gone must
/// not keep its map). Returns how many of each it wrote.
pub fn write_files(out: &Output, dir: &Path, format: FileFormat) -> Result<(usize, usize)> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let ours = name.starts_with("noderulemap-") || name.starts_with("identitymap-");
        if ours && (name.ends_with(".yaml") || name.ends_with(".json")) {
            fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    let ext = match format {
        FileFormat::Yaml => "yaml",
        FileFormat::Json => "json",
    };
    for (node, spec) in &out.rule_maps {
        let object = NodeRuleMap::new(node, spec.clone());
        let path = dir.join(format!("noderulemap-{node}.{ext}"));
        fs::write(&path, serialize(&object, format)?).map_err(io(&path))?;
    }
    for spec in &out.identity_maps {
        let object = IdentityMap::new(&format!("shard-{}", spec.shard), spec.clone());
        let path = dir.join(format!("identitymap-{}.{ext}", spec.shard));
        fs::write(&path, serialize(&object, format)?).map_err(io(&path))?;
    }
    Ok((out.rule_maps.len(), out.identity_maps.len()))
}

fn serialize<T: Serialize>(value: &T, format: FileFormat) -> Result<String> {
    let text = match format {
        FileFormat::Yaml => serde_yaml::to_string(value).map_err(|e| e.to_string()),
        FileFormat::Json => serde_json::to_string_pretty(value)
            .map(|t| t + "\n")
            .map_err(|e| e.to_string()),
    };
    text.map_err(Error::Serialize)
}

/// What the compiler made of the input: counts, the labeling queue,
/// conflicts, and what each policy and mapping matched.
pub fn summary(compiled: &Compiled) -> String {
    let out = &compiled.output;
    let mut s = String::new();
    let count = |f: fn(&EndpointRef) -> bool| out.endpoints.keys().filter(|r| f(r)).count();
    let pods = count(|r| matches!(r, EndpointRef::Pod(_)));
    let nodes = count(|r| matches!(r, EndpointRef::Node(_)));
    let external = count(|r| matches!(r, EndpointRef::ExternalNode(_)));
    let cidrs = count(|r| matches!(r, EndpointRef::Cidr(_)));
    let _ = writeln!(
        s,
        "endpoints:  {} ({}, {}, {}, {})",
        out.endpoints.len(),
        plural(pods, "pod"),
        plural(nodes, "node"),
        plural(external, "external node"),
        plural(cidrs, "address range"),
    );
    let _ = writeln!(s, "identities: {}", out.identities.len());
    if !compiled.inventory.implied_nodes.is_empty() {
        let implied: Vec<&str> = compiled
            .inventory
            .implied_nodes
            .iter()
            .map(String::as_str)
            .collect();
        let _ = writeln!(
            s,
            "nodes named only by pods (no addresses): {}",
            implied.join(", ")
        );
    }
    let _ = writeln!(s, "unlabeled:  {}", out.unlabeled.len());
    for endpoint in &out.unlabeled {
        let _ = writeln!(s, "  {endpoint}");
    }
    let _ = writeln!(s, "conflicts:  {}", out.conflicts.len());
    for conflict in &out.conflicts {
        let _ = writeln!(s, "  {conflict}");
    }
    if !out.policies.is_empty() {
        let _ = writeln!(s, "policies:");
        for (name, facts) in &out.policies {
            let mode = match netpol::parse_policy_name(name) {
                // Translated NetworkPolicies isolate in selective mode.
                Some(_) => Some(EnforcementMode::Selective),
                None => compiled
                    .inventory
                    .snapshot
                    .policies
                    .get(name)
                    .and_then(|p| p.enforcement),
            };
            let mode = mode.map(render::mode).unwrap_or("-");
            let _ = writeln!(
                s,
                "  {name}: mode {mode}, {} in scope ({}), on {}",
                plural(facts.matched_endpoints as usize, "endpoint"),
                plural(facts.matched_identities as usize, "identity"),
                plural(facts.nodes.len(), "node"),
            );
            for warning in &facts.warnings {
                let _ = writeln!(s, "    warning: {warning}");
            }
        }
    }
    if !out.mappings.is_empty() {
        let _ = writeln!(s, "mappings:");
        for (name, facts) in &out.mappings {
            let _ = writeln!(
                s,
                "  {name}: {} labeled, {}",
                plural(facts.endpoints_labeled as usize, "endpoint"),
                plural(facts.conflicts.len(), "conflict"),
            );
            for warning in &facts.warnings {
                let _ = writeln!(s, "    warning: {warning}");
            }
        }
    }
    s
}

/// `1 node`, `2 nodes`, `3 identities`.
fn plural(n: usize, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}
