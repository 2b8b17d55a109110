//! The labeling queue: managed endpoints without segmentation labels, and
//! addresses that talk to managed endpoints but belong to nothing Bulkhead
//! knows, ordered by the traffic they carry.
//!
//! ```text
//!  cluster (optional): Output.unlabeled ──┐   (the set LabelMapping status counts)
//!  records: world peers of reported sides ┼─► Entry { first/last seen, peers, ports, flows }
//!           unlabeled sides (no cluster) ─┘          │ sorted: flows, bytes, name
//!                                                    ▼
//!              suggest(): LabelMapping rules — `cidrs` per address cluster,
//!                         `hostnames` where a name is known
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowRecord};
use ipnet::IpNet;
use serde::Serialize;

use crate::query::protocol_name;

/// What kind of queue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EntryKind {
    /// A pod without segmentation labels.
    Pod,
    /// A Node or ExternalNode without segmentation labels.
    Host,
    /// An address of no endpoint and no labeled CIDR.
    Address,
}

/// A managed endpoint the compiler found no label for (from a cluster snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnlabeledEndpoint {
    /// `namespace/pod`, or a host name.
    pub name: String,
    pub kind: EntryKind,
    pub addresses: Vec<IpAddr>,
}

/// One item of the queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub kind: EntryKind,
    /// `namespace/pod`, a host name, or the address.
    pub name: String,
    pub addresses: Vec<IpAddr>,
    /// A name the records gave an unknown address (a DNS name), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<jiff::Timestamp>,
    pub flows: u64,
    pub bytes: u64,
    /// Peers by name (`namespace/pod`, host, or address), most traffic first.
    pub peers: Vec<String>,
    /// `port/PROTOCOL`, in port order.
    pub ports: Vec<String>,
}

#[derive(Default)]
struct Acc {
    first: Option<jiff::Timestamp>,
    last: Option<jiff::Timestamp>,
    flows: u64,
    bytes: u64,
    hostname: Option<String>,
    peers: HashMap<String, u64>,
    ports: BTreeSet<(u16, &'static str)>,
}

impl Acc {
    fn add(&mut self, r: &FlowRecord, peer: &FlowEndpoint) {
        self.first = Some(self.first.map_or(r.start, |t| t.min(r.start)));
        self.last = Some(self.last.map_or(r.end, |t| t.max(r.end)));
        self.flows += r.flows;
        self.bytes += r.bytes;
        *self.peers.entry(display(peer)).or_default() += r.flows;
        self.ports.insert((r.port, protocol_name(r.protocol)));
    }
}

fn display(e: &FlowEndpoint) -> String {
    e.name.clone().unwrap_or_else(|| e.address.to_string())
}

fn is_unknown(e: &FlowEndpoint) -> bool {
    e.kind == EndpointKind::World
}

fn is_unlabeled_managed(e: &FlowEndpoint) -> bool {
    e.reported && e.labels.is_empty() && e.kind != EndpointKind::World
}

/// The queue. With `cluster` (the compiler's unlabeled endpoints, which
/// LabelMapping status counts too), managed entries are exactly those; without
/// it, they are the reported sides whose records carried no labels.
/// Unknown addresses are `world` sides of flows whose other side is managed.
pub fn queue(records: &[FlowRecord], cluster: Option<&[UnlabeledEndpoint]>) -> Vec<Entry> {
    // key: (kind, name)
    let mut acc: BTreeMap<(EntryKind, String), (Vec<IpAddr>, Acc)> = BTreeMap::new();
    let mut by_address: HashMap<IpAddr, (EntryKind, String)> = HashMap::new();
    if let Some(endpoints) = cluster {
        for e in endpoints {
            let key = (e.kind, e.name.clone());
            for a in &e.addresses {
                by_address.insert(*a, key.clone());
            }
            acc.insert(key, (e.addresses.clone(), Acc::default()));
        }
    }
    for r in records.iter().filter(|r| r.counts()) {
        for (side, peer) in [(&r.source, &r.destination), (&r.destination, &r.source)] {
            let key = if is_unknown(side) {
                peer.reported
                    .then(|| (EntryKind::Address, side.address.to_string()))
            } else if cluster.is_some() {
                by_address.get(&side.address).cloned()
            } else if is_unlabeled_managed(side) {
                let kind = match side.kind {
                    EndpointKind::Pod => EntryKind::Pod,
                    _ => EntryKind::Host,
                };
                Some((kind, display(side)))
            } else {
                None
            };
            let Some(key) = key else { continue };
            let (addresses, a) = acc.entry(key).or_default();
            if !addresses.contains(&side.address) {
                addresses.push(side.address);
            }
            if is_unknown(side) && side.name.is_some() {
                a.hostname.clone_from(&side.name);
            }
            a.add(r, peer);
        }
    }
    let mut entries: Vec<Entry> = acc
        .into_iter()
        .map(|((kind, name), (addresses, a))| {
            let mut peers: Vec<(String, u64)> = a.peers.into_iter().collect();
            peers.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
            Entry {
                kind,
                name,
                addresses,
                hostname: a.hostname,
                first_seen: a.first,
                last_seen: a.last,
                flows: a.flows,
                bytes: a.bytes,
                peers: peers.into_iter().map(|(p, _)| p).collect(),
                ports: a.ports.iter().map(|(p, pr)| format!("{p}/{pr}")).collect(),
            }
        })
        .collect();
    entries.sort_by(|a, b| {
        b.flows
            .cmp(&a.flows)
            .then_with(|| b.bytes.cmp(&a.bytes))
            .then_with(|| a.name.cmp(&b.name))
    });
    entries
}

/// One suggested LabelMapping rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    /// A rule name, from what it matches.
    pub name: String,
    /// Address ranges (for unknown addresses without a name).
    pub cidrs: Vec<IpNet>,
    /// Host names (Nodes and ExternalNodes, or names the records knew).
    pub hostnames: Vec<String>,
    /// A placeholder `app` value for the user to edit.
    pub app: String,
    /// Flows of the entries it covers.
    pub flows: u64,
}

/// The prefix length unknown addresses are clustered on: addresses in one
/// IPv4 /24 (IPv6 /64) are likely one network, and one rule covers them.
const CLUSTER_V4: u8 = 24;
const CLUSTER_V6: u8 = 64;

/// LabelMapping rules for the entries that a `cidrs` or `hostnames` rule can
/// label: unknown addresses, clustered by network into the smallest range
/// that covers them, and hosts or named addresses by their names. Pods are
/// labeled by pod selectors, which need a person's judgement; none is guessed.
pub fn suggest(entries: &[Entry]) -> Vec<Suggestion> {
    let mut clusters: BTreeMap<IpNet, (Vec<IpAddr>, u64)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in entries {
        let named = e.hostname.clone().or(match e.kind {
            EntryKind::Host => Some(e.name.clone()),
            _ => None,
        });
        match (e.kind, named) {
            (EntryKind::Pod, _) => {}
            (_, Some(host)) => out.push(Suggestion {
                name: format!("host-{}", slug(&host)),
                cidrs: Vec::new(),
                app: slug(host.split('.').next().unwrap_or(&host)),
                hostnames: vec![host],
                flows: e.flows,
            }),
            (_, None) => {
                for a in &e.addresses {
                    let len = if a.is_ipv4() { CLUSTER_V4 } else { CLUSTER_V6 };
                    let Ok(net) = IpNet::new(*a, len) else {
                        continue;
                    };
                    let c = clusters.entry(net.trunc()).or_default();
                    c.0.push(*a);
                    c.1 += e.flows;
                }
            }
        }
    }
    for (net, (addrs, flows)) in clusters {
        let cidr = covering(&addrs).unwrap_or(net);
        out.push(Suggestion {
            name: format!("range-{}", slug(&cidr.to_string())),
            app: format!("external-{}", slug(&cidr.to_string())),
            cidrs: vec![cidr],
            hostnames: Vec::new(),
            flows,
        });
    }
    out.sort_by(|a, b| b.flows.cmp(&a.flows).then_with(|| a.name.cmp(&b.name)));
    out
}

/// The smallest prefix that holds every address (all of one family).
fn covering(addrs: &[IpAddr]) -> Option<IpNet> {
    let first = *addrs.first()?;
    let max = if first.is_ipv4() { 32 } else { 128 };
    (0..=max).rev().find_map(|len| {
        let net = IpNet::new(first, len).ok()?.trunc();
        addrs.iter().all(|a| net.contains(a)).then_some(net)
    })
}

/// A label-value-safe form of a name: lowercase alphanumerics and `-`.
fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(63);
    out.trim_matches('-').to_string()
}

/// The compiler's unlabeled managed endpoints (what LabelMapping status
/// counts as unlabeled), as the queue takes them.
pub fn unlabeled_endpoints(out: &bulkhead_policy::Output) -> Vec<UnlabeledEndpoint> {
    use bulkhead_policy::EndpointRef;
    out.unlabeled
        .iter()
        .filter_map(|r| {
            let facts = out.endpoints.get(r)?;
            let (name, kind) = match r {
                EndpointRef::Pod(k) => (k.to_string(), EntryKind::Pod),
                EndpointRef::Node(n) | EndpointRef::ExternalNode(n) => (n.clone(), EntryKind::Host),
                EndpointRef::Cidr(_) => return None,
            };
            Some(UnlabeledEndpoint {
                name,
                kind,
                addresses: facts.addresses.clone(),
            })
        })
        .collect()
}
