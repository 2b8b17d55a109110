//! `labels`: every endpoint with its segmentation labels and identity, the
//! queue of what is still unlabeled, and the conflicts to resolve.

use std::fmt::Write;

use bulkhead_api::Labels;
use bulkhead_policy::output::EndpointRef;
use bulkhead_policy::Output;
use serde::Serialize;

use crate::args::{Format, LabelsArgs};
use crate::error::Result;
use crate::{render, to_json, Compiled};

/// One endpoint, as `-o json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRow {
    /// `namespace/pod`, `node/<name>`, `externalnode/<name>` or `cidr/<range>`.
    pub endpoint: String,
    /// `pod`, `node`, `externalNode` or `cidr`.
    pub kind: &'static str,
    /// The node that enforces it.
    pub node: Option<String>,
    /// Its addresses.
    pub addresses: Vec<String>,
    /// Its identity.
    pub identity: u32,
    /// Its mode.
    pub mode: &'static str,
    /// Its segmentation labels.
    pub labels: Labels,
}

/// One source in a conflict.
#[derive(Debug, Serialize)]
pub struct ConflictSource {
    /// The LabelMapping.
    pub mapping: String,
    /// The rule in it.
    pub rule: String,
    /// The value it sets.
    pub value: String,
}

/// One conflict.
#[derive(Debug, Serialize)]
pub struct ConflictRow {
    /// The endpoint.
    pub endpoint: String,
    /// The key left unset.
    pub key: String,
    /// The priority at which the sources disagree.
    pub priority: i32,
    /// The disagreeing sources.
    pub sources: Vec<ConflictSource>,
}

/// The whole answer.
#[derive(Debug, Serialize)]
pub struct LabelsReport {
    /// Every endpoint and address range.
    pub endpoints: Vec<EndpointRow>,
    /// Managed endpoints without a segmentation label.
    pub unlabeled: Vec<String>,
    /// Label conflicts.
    pub conflicts: Vec<ConflictRow>,
}

/// Runs the command.
pub fn run(args: &LabelsArgs, compiled: &Compiled) -> Result<String> {
    let report = report(&compiled.output);
    match args.output {
        Format::Json => to_json(&report),
        Format::Text => Ok(text(&report)),
    }
}

/// Collects the report from the compiler's output.
pub fn report(out: &Output) -> LabelsReport {
    let endpoints = out
        .endpoints
        .iter()
        .map(|(r, facts)| EndpointRow {
            endpoint: r.to_string(),
            kind: match r {
                EndpointRef::Pod(_) => "pod",
                EndpointRef::Node(_) => "node",
                EndpointRef::ExternalNode(_) => "externalNode",
                EndpointRef::Cidr(_) => "cidr",
            },
            node: facts.node.clone(),
            addresses: facts.addresses.iter().map(ToString::to_string).collect(),
            identity: facts.identity,
            mode: render::mode(facts.mode),
            labels: facts.labels.clone(),
        })
        .collect();
    let conflicts = out
        .conflicts
        .iter()
        .map(|c| ConflictRow {
            endpoint: c.endpoint.to_string(),
            key: c.key.clone(),
            priority: c.priority,
            sources: c
                .sources
                .iter()
                .map(|(mapping, rule, value)| ConflictSource {
                    mapping: mapping.clone(),
                    rule: rule.clone(),
                    value: value.clone(),
                })
                .collect(),
        })
        .collect();
    LabelsReport {
        endpoints,
        unlabeled: out.unlabeled.iter().map(ToString::to_string).collect(),
        conflicts,
    }
}

/// The report for a person.
pub fn text(report: &LabelsReport) -> String {
    let mut table = render::Table::new(&[
        "ENDPOINT",
        "NODE",
        "ADDRESSES",
        "IDENTITY",
        "MODE",
        "LABELS",
    ]);
    for row in &report.endpoints {
        let (node, mode) = match row.kind {
            "cidr" => ("-".to_string(), "-"),
            _ => (row.node.clone().unwrap_or_else(|| "-".into()), row.mode),
        };
        let addresses = if row.addresses.is_empty() {
            "-".to_string()
        } else {
            row.addresses.join(",")
        };
        table.row(vec![
            row.endpoint.clone(),
            node,
            addresses,
            row.identity.to_string(),
            mode.to_string(),
            render::labels(&row.labels),
        ]);
    }
    let mut s = table.render();
    let _ = writeln!(s, "\nunlabeled ({}):", report.unlabeled.len());
    for endpoint in &report.unlabeled {
        let _ = writeln!(s, "  {endpoint}");
    }
    let _ = writeln!(s, "conflicts ({}):", report.conflicts.len());
    for c in &report.conflicts {
        let sources: Vec<String> = c
            .sources
            .iter()
            .map(|x| format!("{:?} by {}/{}", x.value, x.mapping, x.rule))
            .collect();
        let _ = writeln!(
            s,
            "  {}: {} at priority {}: {}",
            c.endpoint,
            c.key,
            c.priority,
            sources.join(", ")
        );
    }
    s
}
