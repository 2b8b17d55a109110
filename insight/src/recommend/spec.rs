//! From rule candidates to a policy: names, ports, evidence.

use std::collections::BTreeMap;

use bulkhead_api::policy::{Action, Peer, PortSpec, Rule, Scope};
use bulkhead_api::rule_map::Direction;
use bulkhead_api::{LabelSelector, Labels, SegmentationPolicySpec};

use super::build::PortKey;
use super::evidence::Tally;
use super::{RecommendOptions, RecommendedPolicy};

pub(super) struct Candidate {
    pub(super) direction: Direction,
    pub(super) peers: Vec<Peer>,
    pub(super) ports: Vec<PortKey>,
    pub(super) periodic: bool,
    pub(super) tally: Tally,
}

impl RecommendOptions {
    pub(super) fn policy(&self, subject: Labels, candidates: Vec<Candidate>) -> RecommendedPolicy {
        let mut spec = SegmentationPolicySpec {
            ownership: Default::default(),
            scope: Scope {
                selector: Some(LabelSelector::from_labels(subject.clone())),
                cluster_wide: false,
            },
            enforcement: Some(self.enforcement),
            ingress: Vec::new(),
            egress: Vec::new(),
            promotion: None,
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
                ownership: Default::default(),
                expires: None,
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
