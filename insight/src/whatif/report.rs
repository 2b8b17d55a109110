//! The what-if answer (`-o json`, documented in docs/what-if.md).

use std::collections::BTreeMap;

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowRecord};
use bulkhead_api::policy::Protocol;
use bulkhead_api::Labels;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// `{"records": N, "newlyDenied": [...], "newlyAllowed": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhatIf {
    /// Records in the window.
    pub records: usize,
    /// Observed traffic today's policy lets through and the draft would drop.
    pub newly_denied: Vec<Change>,
    /// Observed traffic today's policy drops and the draft would let through.
    pub newly_allowed: Vec<Change>,
}

/// Traffic of one group pair, port and protocol whose verdict changes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The client group.
    pub from: EndpointGroup,
    /// The server group.
    pub to: EndpointGroup,
    /// Destination port (ICMP: the message type).
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// Connections seen in the window.
    pub flows: u64,
    /// End of the last window the traffic was seen in.
    pub last_seen: Timestamp,
}

/// A group of endpoints: its segmentation labels, and a name where labels
/// alone do not say who it is (unlabeled pods, hosts, ranges, the world).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EndpointGroup {
    /// Segmentation labels as recorded.
    pub labels: Labels,
    /// `namespace/pod` of an unlabeled pod, a node name, a range, or the
    /// address of a world peer; null for labeled pods (they are their labels).
    pub name: Option<String>,
}

impl EndpointGroup {
    /// The group a recorded endpoint belongs to.
    pub fn of(ep: &FlowEndpoint) -> Self {
        let name = match ep.kind {
            EndpointKind::Pod if !ep.labels.is_empty() => None,
            EndpointKind::World => Some(ep.address.to_string()),
            _ => ep.name.clone().or_else(|| Some(ep.address.to_string())),
        };
        Self {
            labels: ep.labels.clone(),
            name,
        }
    }
}

type Key = (EndpointGroup, EndpointGroup, u16, Protocol);

#[derive(Debug, Default)]
pub(super) struct Builder {
    denied: BTreeMap<Key, (u64, Timestamp)>,
    allowed: BTreeMap<Key, (u64, Timestamp)>,
}

impl Builder {
    pub(super) fn denied(&mut self, r: &FlowRecord, flows: u64, last: Timestamp) {
        add(&mut self.denied, r, flows, last);
    }

    pub(super) fn allowed(&mut self, r: &FlowRecord, flows: u64, last: Timestamp) {
        add(&mut self.allowed, r, flows, last);
    }

    pub(super) fn finish(self, records: usize) -> WhatIf {
        WhatIf {
            records,
            newly_denied: changes(self.denied),
            newly_allowed: changes(self.allowed),
        }
    }
}

fn add(map: &mut BTreeMap<Key, (u64, Timestamp)>, r: &FlowRecord, flows: u64, last: Timestamp) {
    let key = (
        EndpointGroup::of(&r.source),
        EndpointGroup::of(&r.destination),
        r.port,
        r.protocol,
    );
    let e = map.entry(key).or_insert((0, last));
    e.0 += flows;
    e.1 = e.1.max(last);
}

/// Most connections first, then by groups, so output is stable.
fn changes(map: BTreeMap<Key, (u64, Timestamp)>) -> Vec<Change> {
    let mut out: Vec<Change> = map
        .into_iter()
        .map(|((from, to, port, protocol), (flows, last_seen))| Change {
            from,
            to,
            port,
            protocol,
            flows,
            last_seen,
        })
        .collect();
    out.sort_by(|a, b| b.flows.cmp(&a.flows).then_with(|| a.cmp(b)));
    out
}
