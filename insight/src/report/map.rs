//! The traffic map's data: label groups as nodes, observed flows as edges
//! with their verdicts, and the clusters the page lays groups out in.

use std::collections::HashMap;

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowRecord, FlowVerdict};
use serde::Serialize;

/// A label group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapNode {
    /// The group's values joined by `/` (`web/prod`), or `(world)`, `(unlabeled)`.
    pub id: String,
    /// Its value of the cluster key (`-` when none).
    pub cluster: String,
    /// Flows it sent or received.
    pub flows: u64,
}

/// Observed traffic from one group to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapEdge {
    pub source: String,
    pub destination: String,
    pub allowed_flows: u64,
    pub denied_flows: u64,
    pub would_deny_flows: u64,
    /// The edge's color: `deny` if any flow was denied, else `would-deny`
    /// if any would be, else `allow`.
    pub verdict: String,
}

/// Nodes, edges and clusters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficMap {
    pub keys: Vec<String>,
    pub cluster_key: String,
    pub nodes: Vec<MapNode>,
    pub edges: Vec<MapEdge>,
}

fn group(e: &FlowEndpoint, keys: &[String], cluster_key: &str) -> (String, String) {
    if e.labels.is_empty() {
        let id = if e.kind == EndpointKind::World {
            "(world)"
        } else {
            "(unlabeled)"
        };
        return (id.to_string(), id.to_string());
    }
    let id = keys
        .iter()
        .map(|k| e.labels.get(k).map_or("-", String::as_str))
        .collect::<Vec<_>>()
        .join("/");
    let cluster = e
        .labels
        .get(cluster_key)
        .cloned()
        .unwrap_or_else(|| "-".into());
    (id, cluster)
}

/// The map over `records`: each flow counted once, except that a flow denied
/// at the destination (after the source let it out) colors its edge too.
pub fn traffic_map<'r>(
    records: &'r [FlowRecord],
    keys: &[String],
    cluster_key: &str,
) -> TrafficMap {
    // A side's group follows from its labels (and whether it is world):
    // worked out once per distinct label set, not once per record.
    type Seen<'r> = (bool, &'r std::collections::BTreeMap<String, String>);
    let mut known: HashMap<Seen<'_>, usize> = HashMap::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(String, String)> = Vec::new();
    let mut group_of = |e: &'r FlowEndpoint| -> usize {
        *known
            .entry((e.kind == EndpointKind::World, &e.labels))
            .or_insert_with(|| {
                let (id, cluster) = group(e, keys, cluster_key);
                *index.entry(id.clone()).or_insert_with(|| {
                    groups.push((id, cluster));
                    groups.len() - 1
                })
            })
    };
    let mut edges: HashMap<(usize, usize), [u64; 3]> = HashMap::new();
    let mut flows: HashMap<usize, u64> = HashMap::new();
    for r in records {
        let (src, dst) = (group_of(&r.source), group_of(&r.destination));
        let e = edges.entry((src, dst)).or_default();
        if r.verdict == FlowVerdict::Deny {
            e[1] += r.flows;
        } else if r.would_verdict == FlowVerdict::Deny {
            e[2] += r.flows;
        } else if r.counts() {
            e[0] += r.flows;
        }
        if r.counts() {
            *flows.entry(src).or_default() += r.flows;
            *flows.entry(dst).or_default() += r.flows;
        }
    }
    let mut nodes: Vec<MapNode> = flows
        .into_iter()
        .map(|(g, flows)| MapNode {
            id: groups[g].0.clone(),
            cluster: groups[g].1.clone(),
            flows,
        })
        .collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let mut edges: Vec<((String, String), [u64; 3])> = edges
        .into_iter()
        .map(|((s, d), c)| ((groups[s].0.clone(), groups[d].0.clone()), c))
        .collect();
    edges.sort_by(|a, b| a.0.cmp(&b.0));
    TrafficMap {
        keys: keys.to_vec(),
        cluster_key: cluster_key.to_string(),
        nodes,
        edges: edges
            .into_iter()
            .map(|((source, destination), [allow, deny, would])| MapEdge {
                source,
                destination,
                allowed_flows: allow,
                denied_flows: deny,
                would_deny_flows: would,
                verdict: if deny > 0 {
                    "deny"
                } else if would > 0 {
                    "would-deny"
                } else {
                    "allow"
                }
                .to_string(),
            })
            .collect(),
    }
}
