//! From observations to rules and policies.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowRecord};
use bulkhead_api::policy::{Action, Peer, PortSpec, Protocol, Rule, Scope};
use bulkhead_api::rule_map::Direction;
use bulkhead_api::{LabelSelector, Labels, SegmentationPolicySpec};
use ipnet::IpNet;

use super::evidence::Tally;
use super::{Layer, RecommendOptions, RecommendedPolicy, UnlabeledPeer};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PeerKey {
    Labels(Labels),
    Net(IpNet),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PortKey {
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

    /// One record seen from its in-scope side `local`.
    pub(super) fn add(
        &mut self,
        r: &FlowRecord,
        direction: Direction,
        local: &FlowEndpoint,
        peer: &FlowEndpoint,
    ) {
        let subject = cut(&local.labels, self.options.layer);
        let peer_key = match self.peer_key(peer) {
            Some(k) => k,
            None => {
                let key = (
                    peer.kind,
                    peer.name.clone(),
                    peer.address,
                    subject,
                    direction,
                );
                let e = self.unlabeled.entry(key).or_insert((0, r.end));
                e.0 += r.flows;
                e.1 = e.1.max(r.end);
                return;
            }
        };
        let port = self.port_key(r.protocol, r.port);
        self.edges
            .entry((subject, direction, peer_key))
            .or_default()
            .entry(port)
            .or_default()
            .add(r.start, r.end, r.flows);
    }

    fn peer_key(&self, peer: &FlowEndpoint) -> Option<PeerKey> {
        if !peer.labels.is_empty() {
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
                match &peer {
                    PeerKey::Net(net) => {
                        let e = nets
                            .entry((subject.clone(), direction, keys, periodic))
                            .or_default();
                        e.0.push(*net);
                        e.1.merge(&tally);
                    }
                    PeerKey::Labels(l) => {
                        rules.entry(subject.clone()).or_default().push(Candidate {
                            direction,
                            peers: vec![Peer {
                                selector: Some(LabelSelector::from_labels(l.clone())),
                                ..Peer::default()
                            }],
                            ports: keys,
                            periodic,
                            tally,
                        })
                    }
                }
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

struct Candidate {
    direction: Direction,
    peers: Vec<Peer>,
    ports: Vec<PortKey>,
    periodic: bool,
    tally: Tally,
}

impl RecommendOptions {
    fn policy(&self, subject: Labels, candidates: Vec<Candidate>) -> RecommendedPolicy {
        let mut spec = SegmentationPolicySpec {
            scope: Scope {
                selector: Some(LabelSelector::from_labels(subject.clone())),
                cluster_wide: false,
            },
            enforcement: Some(self.enforcement),
            ingress: Vec::new(),
            egress: Vec::new(),
        };
        let mut evidence = BTreeMap::new();
        for c in candidates {
            let list = match c.direction {
                Direction::Ingress => &mut spec.ingress,
                Direction::Egress => &mut spec.egress,
            };
            let dir = match c.direction {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            };
            let mut name = format!("{dir}-{}", list.len() + 1);
            if c.periodic {
                name.push_str("-periodic");
            }
            evidence.insert(name.clone(), c.tally.evidence(c.periodic));
            list.push(Rule {
                name: Some(name),
                action: Action::Allow,
                peers: c.peers,
                ports: c.ports.iter().filter_map(|p| port_spec(*p)).collect(),
            });
        }
        RecommendedPolicy {
            name: self.policy_name(&subject),
            spec,
            evidence,
        }
    }

    fn policy_name(&self, subject: &Labels) -> String {
        let mut name = format!("{}-{}", self.name_prefix, self.layer.as_str());
        for key in self.layer.keys() {
            if let Some(v) = subject.get(*key) {
                name.push('-');
                name.push_str(v);
            }
        }
        if !self.layer.keys().iter().any(|k| subject.contains_key(*k)) {
            for v in subject.values() {
                name.push('-');
                name.push_str(v);
            }
        }
        dns_name(&name)
    }
}

fn port_spec(p: PortKey) -> Option<PortSpec> {
    let spec = |protocol| PortSpec {
        protocol,
        port: None,
        end_port: None,
        icmp_type: None,
    };
    match p {
        PortKey::Any => None,
        PortKey::Port(protocol, port) => Some(PortSpec {
            port: Some(port),
            ..spec(protocol)
        }),
        PortKey::Range(protocol, from, to) => Some(PortSpec {
            port: Some(from),
            end_port: Some(to),
            ..spec(protocol)
        }),
        PortKey::Icmp(protocol, t) => Some(PortSpec {
            icmp_type: Some(t),
            ..spec(protocol)
        }),
    }
}

/// A DNS subdomain name: lower case, `[a-z0-9-.]`, at most 253 characters.
fn dns_name(raw: &str) -> String {
    let mut s: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(253);
    s.trim_matches(|c| c == '-' || c == '.').to_string()
}
