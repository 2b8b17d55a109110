//! Named ports (`port: http`) become numbers when a node's map is built.
//!
//! The number is the destination pod's: for an ingress rule the governed
//! pod's, for an egress rule the peer's. Both are identities, and a pod's
//! named ports are part of its identity (`k8s:port/<name>`), so every pod of
//! an identity resolves a name the same way. A rule with named ports is
//! emitted once per group of identities that resolve them alike, under the
//! same rule id; where a name resolves to nothing the rule matches nothing
//! (never every port).

use std::collections::BTreeMap;

use bulkhead_api::policy::Protocol;
use bulkhead_api::rule_map::{CompiledRule, Direction, PortRange};
use bulkhead_api::Labels;

use super::PORT_PREFIX;

/// `80/TCP`: how a named port's value is written in its label.
pub(crate) fn port_text(protocol: Protocol, port: u16) -> String {
    let name = match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
        Protocol::Icmp => "ICMP",
        Protocol::Icmpv6 => "ICMPv6",
    };
    format!("{port}/{name}")
}

fn parse_port(text: &str) -> Option<(Protocol, u16)> {
    let (port, protocol) = text.split_once('/')?;
    let protocol = match protocol {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        _ => return None,
    };
    Some((protocol, port.parse().ok()?))
}

/// The port ranges `named` resolves to for an identity with these labels.
pub(crate) fn resolve(labels: Option<&Labels>, named: &[(Protocol, String)]) -> Vec<PortRange> {
    let mut out: Vec<PortRange> = named
        .iter()
        .filter_map(|(protocol, name)| {
            let value = labels?.get(&format!("{PORT_PREFIX}{name}"))?;
            Some(
                value
                    .split(',')
                    .filter_map(parse_port)
                    .filter(|(p, _)| p == protocol)
                    .map(|(protocol, port)| PortRange {
                        protocol,
                        first: port,
                        last: port,
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The compiled rules of one prepared rule with named ports: `base` as
/// selection made it (its numeric ports, if any, kept as they are), plus one
/// rule per group of destinations that resolve the names to the same ports.
pub(crate) fn expand(
    base: CompiledRule,
    named: &[(Protocol, String)],
    identities: &BTreeMap<u32, Labels>,
) -> Vec<CompiledRule> {
    let mut groups: BTreeMap<Vec<PortRange>, Vec<u32>> = BTreeMap::new();
    let destinations: Vec<u32> = match base.direction {
        Direction::Ingress => base.subjects.clone(),
        Direction::Egress if base.any_peer => identities.keys().copied().collect(),
        Direction::Egress => base.peers.to_vec(),
    };
    for id in destinations {
        let ports = resolve(identities.get(&id), named);
        if !ports.is_empty() {
            groups.entry(ports).or_default().push(id);
        }
    }
    let mut out = Vec::new();
    for (ports, ids) in groups {
        let mut rule = base.clone();
        rule.ports = ports;
        match rule.direction {
            Direction::Ingress => rule.subjects = ids,
            Direction::Egress => {
                rule.any_peer = false;
                rule.peers = ids.into();
            }
        }
        out.push(rule);
    }
    if !base.ports.is_empty() {
        out.insert(0, base);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::policy::Action;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tcp(port: u16) -> PortRange {
        PortRange {
            protocol: Protocol::Tcp,
            first: port,
            last: port,
        }
    }

    #[test]
    fn names_resolve_per_destination_and_never_to_every_port() {
        let identities = BTreeMap::from([
            (300, labels(&[("k8s:port/http", "80/TCP")])),
            (301, labels(&[("k8s:port/http", "8080/TCP,53/UDP")])),
            (302, labels(&[("k8s:port/dns", "53/UDP")])),
        ]);
        let named = vec![(Protocol::Tcp, "http".to_string())];
        let base = CompiledRule {
            id: 7,
            policy: "p".into(),
            rule: "egress[0]".into(),
            direction: Direction::Egress,
            action: Action::Allow,
            subjects: vec![400],
            any_peer: false,
            peers: vec![300, 301, 302].into(),
            ports: vec![],
        };
        let got = expand(base.clone(), &named, &identities);
        let summary: Vec<(Vec<u32>, Vec<PortRange>)> = got
            .iter()
            .map(|r| (r.peers.to_vec(), r.ports.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![(vec![300], vec![tcp(80)]), (vec![301], vec![tcp(8080)])]
        );
        let ingress = CompiledRule {
            direction: Direction::Ingress,
            subjects: vec![302],
            ports: vec![tcp(443)],
            ..base
        };
        let got = expand(ingress.clone(), &named, &identities);
        assert_eq!(
            got,
            vec![ingress],
            "no group: only the numeric part is left"
        );
    }
}
