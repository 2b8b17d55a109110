//! From observations to rules and policies.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowRecord};
use bulkhead_api::policy::{Peer, Protocol, ServiceRef};
use bulkhead_api::rule_map::Direction;
use bulkhead_api::{LabelSelector, Labels};
use ipnet::IpNet;

use super::evidence::Tally;
use super::spec::Candidate;
use super::{Layer, RecommendOptions, RecommendedPolicy, UnlabeledPeer};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PeerKey {
    Labels(Labels),
    Net(IpNet),
    Service(ServiceRef),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum PortKey {
    Any,
    Port(Protocol, u16),
    Range(Protocol, u16, u16),
    Icmp(Protocol, u8),
}

/// World prefixes share a rule when subject, direction, ports and periodicity agree.
type NetRuleKey = (Labels, Direction, Vec<PortKey>, bool);

type UnlabeledKey = (EndpointKind, Option<String>, IpAddr, Labels, Direction);

pub(super) struct Accumulator<'a> {
    options: &'a RecommendOptions,
    edges: BTreeMap<(Labels, Direction, PeerKey), BTreeMap<PortKey, Tally>>,
    unlabeled: BTreeMap<UnlabeledKey, (u64, jiff::Timestamp)>,
}

/// The labels a selector uses at `layer`: the layer's keys the endpoint
/// has, or all of its labels when it has none of them (a labeled range
/// with only `app`, say).
fn cut(labels: &Labels, layer: Layer) -> Labels {
    let kept: Labels = labels
        .iter()
        .filter(|(k, _)| layer.keys().contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if kept.is_empty() {
        labels.clone()
    } else {
        kept
    }
}

impl<'a> Accumulator<'a> {
    pub(super) fn new(options: &'a RecommendOptions) -> Self {
        Self {
            options,
            edges: BTreeMap::new(),
            unlabeled: BTreeMap::new(),
        }
    }

    /// The records of one edge (`r` is one of them, `seen` their sum),
    /// from its in-scope side `local`.
    pub(super) fn add(
        &mut self,
        r: &FlowRecord,
        seen: &Tally,
        direction: Direction,
        local: &FlowEndpoint,
        peer: &FlowEndpoint,
    ) {
        let subject = cut(&local.labels, self.options.layer);
        let peer_key = match self.peer_key(r, direction, peer) {
            Some(k) => k,
            None => {
                let key = (
                    peer.kind,
                    peer.name.clone(),
                    peer.address,
                    subject,
                    direction,
                );
                let last = seen.last.unwrap_or(r.end);
                let e = self.unlabeled.entry(key).or_insert((0, last));
                e.0 += seen.flows;
                e.1 = e.1.max(last);
                return;
            }
        };
        let port = self.port_key(r.protocol, r.port);
        self.edges
            .entry((subject, direction, peer_key))
            .or_default()
            .entry(port)
            .or_default()
            .merge(seen);
    }

    fn peer_key(
        &self,
        r: &FlowRecord,
        direction: Direction,
        peer: &FlowEndpoint,
    ) -> Option<PeerKey> {
        if !peer.labels.is_empty() {
            // Only the client's side names the Service: it asked for it. A
            // Service of unlabeled backends is still a queue entry, not an
            // allow.
            if let (true, Direction::Egress, Some((namespace, name))) = (
                self.options.service_peers,
                direction,
                super::service_name(r),
            ) {
                return Some(PeerKey::Service(ServiceRef {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                }));
            }
            return Some(PeerKey::Labels(cut(&peer.labels, self.options.layer)));
        }
        match peer.kind {
            EndpointKind::World => Some(PeerKey::Net(self.widen(peer.address))),
            EndpointKind::Cidr => Some(PeerKey::Net(
                peer.name
                    .as_deref()
                    .and_then(|n| n.parse::<IpNet>().ok())
                    .unwrap_or_else(|| self.widen(peer.address)),
            )),
            EndpointKind::Pod | EndpointKind::Node | EndpointKind::ExternalNode => None,
        }
    }

    fn widen(&self, addr: IpAddr) -> IpNet {
        let len = match addr {
            IpAddr::V4(_) => self.options.max_prefix_v4,
            IpAddr::V6(_) => self.options.max_prefix_v6,
        };
        // The length was checked against the family before any record.
        IpNet::new(addr, len).map_or(IpNet::from(addr), |n| n.trunc())
    }

    fn port_key(&self, protocol: Protocol, port: u16) -> PortKey {
        if self.options.layer != Layer::Role {
            return PortKey::Any;
        }
        match protocol {
            Protocol::Icmp | Protocol::Icmpv6 => {
                PortKey::Icmp(protocol, u8::try_from(port).unwrap_or(u8::MAX))
            }
            _ if port >= self.options.ephemeral_from => {
                PortKey::Range(protocol, self.options.ephemeral_from, u16::MAX)
            }
            _ => PortKey::Port(protocol, port),
        }
    }

    pub(super) fn finish(self) -> (Vec<RecommendedPolicy>, Vec<UnlabeledPeer>) {
        let window_days = self
            .options
            .until
            .duration_since(self.options.since)
            .as_secs() as f64
            / 86400.0;
        let share = self.options.periodic_share;
        // (subject, direction, ports, periodic) → world prefixes, and their tally.
        let mut nets: BTreeMap<NetRuleKey, (Vec<IpNet>, Tally)> = BTreeMap::new();
        let mut rules: BTreeMap<Labels, Vec<Candidate>> = BTreeMap::new();
        for ((subject, direction, peer), ports) in self.edges {
            for periodic in [false, true] {
                let mut tally = Tally::default();
                let mut keys = Vec::new();
                for (port, t) in &ports {
                    if t.periodic(window_days, share) == periodic {
                        keys.push(*port);
                        tally.merge(t);
                    }
                }
                if keys.is_empty() {
                    continue;
                }
                let rule_peer = match &peer {
                    PeerKey::Net(net) => {
                        let e = nets
                            .entry((subject.clone(), direction, keys, periodic))
                            .or_default();
                        e.0.push(*net);
                        e.1.merge(&tally);
                        continue;
                    }
                    PeerKey::Labels(l) => Peer {
                        selector: Some(LabelSelector::from_labels(l.clone())),
                        ..Peer::default()
                    },
                    PeerKey::Service(service) => Peer {
                        service: Some(service.clone()),
                        ..Peer::default()
                    },
                };
                rules.entry(subject.clone()).or_default().push(Candidate {
                    direction,
                    peers: vec![rule_peer],
                    ports: keys,
                    periodic,
                    tally,
                });
            }
        }
        for ((subject, direction, ports, periodic), (list, tally)) in nets {
            let peers = IpNet::aggregate(&list)
                .into_iter()
                .map(|n| Peer {
                    cidr: Some(n.to_string()),
                    ..Peer::default()
                })
                .collect();
            rules.entry(subject).or_default().push(Candidate {
                direction,
                peers,
                ports,
                periodic,
                tally,
            });
        }
        let policies = rules
            .into_iter()
            .map(|(subject, candidates)| self.options.policy(subject, candidates))
            .collect();
        let unlabeled = self
            .unlabeled
            .into_iter()
            .map(
                |((kind, name, address, with, direction), (flows, last_seen))| UnlabeledPeer {
                    kind,
                    name,
                    address,
                    with,
                    direction,
                    flows,
                    last_seen,
                },
            )
            .collect();
        (policies, unlabeled)
    }
}
