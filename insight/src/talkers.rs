//! Top talkers: which groups send and receive the most, with their main
//! peers and ports.
//!
//! ```text
//!  records ─► counted once (FlowRecord::counts) ─► group of each side (--by keys)
//!                                                    │
//!        sent (as source) / received (as destination): flows, bytes, peer groups, ports
//!                                                    ▼
//!                       sorted by flows | bytes | peers, ties by name, then --limit
//! ```
//!
//! History is judged by the labels the records carried when they were seen.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::str::FromStr;

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowRecord};
use bulkhead_api::rule_map::Direction;
use serde::Serialize;

use crate::query::protocol_name;
use crate::InsightError;

/// What a group is made of: label keys, or one of the built-in keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TalkerKey {
    /// A segmentation label key.
    Label(String),
    /// The pod's namespace.
    Namespace,
    /// The node the endpoint lives on.
    Node,
    /// The endpoint itself: `namespace/pod`, a host name, or the address.
    Pod,
}

impl FromStr for TalkerKey {
    type Err = InsightError;
    fn from_str(s: &str) -> Result<Self, InsightError> {
        Ok(match s.trim() {
            "namespace" => TalkerKey::Namespace,
            "node" => TalkerKey::Node,
            "pod" => TalkerKey::Pod,
            "" => {
                return Err(InsightError::Argument {
                    name: "--by".into(),
                    input: s.into(),
                    reason: "empty key".into(),
                })
            }
            k => TalkerKey::Label(k.to_string()),
        })
    }
}

impl TalkerKey {
    /// The heading of this key in tables and the key in JSON groups.
    pub fn name(&self) -> &str {
        match self {
            TalkerKey::Label(k) => k,
            TalkerKey::Namespace => "namespace",
            TalkerKey::Node => "node",
            TalkerKey::Pod => "pod",
        }
    }
}

/// How to rank.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SortBy {
    #[default]
    Flows,
    Bytes,
    Peers,
}

/// Which side of a flow a group is counted on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TalkDirection {
    /// Sending (the group is the source).
    Egress,
    /// Receiving (the group is the destination).
    Ingress,
    /// Both.
    #[default]
    Both,
}

/// What to rank by and how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TalkersQuery {
    pub by: Vec<TalkerKey>,
    pub sort: SortBy,
    pub direction: TalkDirection,
    pub limit: usize,
    /// How many peers and ports to name per group.
    pub top: usize,
}

impl Default for TalkersQuery {
    fn default() -> Self {
        Self {
            by: vec![TalkerKey::Label("app".into())],
            sort: SortBy::Flows,
            direction: TalkDirection::Both,
            limit: 10,
            top: 3,
        }
    }
}

/// Flows and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub flows: u64,
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, r: &FlowRecord) {
        self.flows += r.flows;
        self.bytes += r.bytes;
    }
}

/// A peer or port with its share of a group's traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Share {
    /// The peer group (its values joined by `,`) or `port/PROTOCOL`.
    pub name: String,
    pub flows: u64,
    pub bytes: u64,
}

/// One ranked group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Talker {
    /// 1 for the top talker.
    pub rank: usize,
    /// Key name → value (`-` when the endpoint has none).
    pub group: BTreeMap<String, String>,
    pub sent: Counts,
    pub received: Counts,
    /// Distinct peer groups in the counted direction(s).
    pub peers: usize,
    pub top_peers: Vec<Share>,
    pub top_ports: Vec<Share>,
}

impl Talker {
    /// The group's values joined by `,`, in the order of the keys.
    pub fn label(&self, by: &[TalkerKey]) -> String {
        group_label(by, &self.group)
    }
}

fn group_label(by: &[TalkerKey], group: &BTreeMap<String, String>) -> String {
    by.iter()
        .map(|k| group.get(k.name()).map_or("-", String::as_str))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Default)]
struct Acc {
    sent: Counts,
    received: Counts,
    /// By peer group index.
    peers: HashMap<usize, Counts>,
    ports: HashMap<(u16, &'static str), Counts>,
}

/// The node each address lives on, learned from the records where it is
/// the reporting node's local side.
pub(crate) fn nodes_of(records: &[FlowRecord]) -> HashMap<IpAddr, String> {
    let mut nodes = HashMap::new();
    for r in records {
        let local = match r.direction {
            Direction::Egress => &r.source,
            Direction::Ingress => &r.destination,
        };
        nodes.entry(local.address).or_insert_with(|| r.node.clone());
    }
    nodes
}

fn value(key: &TalkerKey, e: &FlowEndpoint, nodes: &HashMap<IpAddr, String>) -> String {
    let v = match key {
        TalkerKey::Label(k) => e.labels.get(k).cloned(),
        TalkerKey::Namespace => e.namespace.clone(),
        TalkerKey::Node => match e.kind {
            EndpointKind::Node | EndpointKind::ExternalNode => e.name.clone(),
            _ => nodes.get(&e.address).cloned(),
        },
        TalkerKey::Pod => Some(e.name.clone().unwrap_or_else(|| e.address.to_string())),
    };
    v.unwrap_or_else(|| "-".to_string())
}

/// Ranks groups over `records` (all of them: each flow is counted once,
/// through [`FlowRecord::counts`]).
pub fn top_talkers<'r>(records: &'r [FlowRecord], q: &TalkersQuery) -> Vec<Talker> {
    let nodes = nodes_of(records);
    // An endpoint's group is worked out once per distinct (address, labels,
    // name, namespace) as records carried them, not once per record.
    type Seen<'r> = (
        IpAddr,
        &'r BTreeMap<String, String>,
        Option<&'r str>,
        Option<&'r str>,
    );
    let mut known: HashMap<Seen<'_>, usize> = HashMap::new();
    let mut index: HashMap<Vec<String>, usize> = HashMap::new();
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut group_of = |e: &'r FlowEndpoint| -> usize {
        let seen = (
            e.address,
            &e.labels,
            e.name.as_deref(),
            e.namespace.as_deref(),
        );
        *known.entry(seen).or_insert_with(|| {
            let values: Vec<String> = q.by.iter().map(|k| value(k, e, &nodes)).collect();
            *index.entry(values.clone()).or_insert_with(|| {
                groups.push(values);
                groups.len() - 1
            })
        })
    };
    let mut acc: HashMap<usize, Acc> = HashMap::new();
    for r in records.iter().filter(|r| r.counts()) {
        let (src, dst) = (group_of(&r.source), group_of(&r.destination));
        let port = (r.port, protocol_name(r.protocol));
        if q.direction != TalkDirection::Ingress {
            let a = acc.entry(src).or_default();
            a.sent.add(r);
            a.peers.entry(dst).or_default().add(r);
            a.ports.entry(port).or_default().add(r);
        }
        if q.direction != TalkDirection::Egress {
            let a = acc.entry(dst).or_default();
            a.received.add(r);
            a.peers.entry(src).or_default().add(r);
            a.ports.entry(port).or_default().add(r);
        }
    }
    let acc = acc.into_iter().map(|(g, a)| (groups[g].clone(), a));
    let mut talkers: Vec<(Vec<String>, Acc)> = acc.collect();
    let metric = |a: &Acc| -> u64 {
        match q.sort {
            SortBy::Flows => a.sent.flows + a.received.flows,
            SortBy::Bytes => a.sent.bytes + a.received.bytes,
            SortBy::Peers => a.peers.len() as u64,
        }
    };
    talkers.sort_by(|(ka, a), (kb, b)| metric(b).cmp(&metric(a)).then_with(|| ka.cmp(kb)));
    talkers.truncate(q.limit);
    talkers
        .into_iter()
        .enumerate()
        .map(|(i, (values, a))| Talker {
            rank: i + 1,
            group: q
                .by
                .iter()
                .map(|k| k.name().to_string())
                .zip(values)
                .collect(),
            sent: a.sent,
            received: a.received,
            peers: a.peers.len(),
            top_peers: top(
                a.peers.into_iter().map(|(k, c)| (groups[k].join(","), c)),
                q.top,
            ),
            top_ports: top(
                a.ports
                    .into_iter()
                    .map(|((port, proto), c)| (format!("{port}/{proto}"), c)),
                q.top,
            ),
        })
        .collect()
}

fn top(items: impl Iterator<Item = (String, Counts)>, n: usize) -> Vec<Share> {
    let mut v: Vec<Share> = items
        .map(|(name, c)| Share {
            name,
            flows: c.flows,
            bytes: c.bytes,
        })
        .collect();
    v.sort_by(|a, b| b.flows.cmp(&a.flows).then_with(|| a.name.cmp(&b.name)));
    v.truncate(n);
    v
}
