//! Offline answers to "can A reach B on this port?", from a compiled output,
//! through the same rule maps and verdict function the agents use.

use std::net::IpAddr;

use bulkhead_api::identity::{HOST, WORLD};
use bulkhead_api::policy::{Action, EnforcementMode, Protocol};
use bulkhead_api::rule_map::{Direction, NodeRuleMapSpec};
use ipnet::IpNet;
use serde::Serialize;

use crate::output::{EndpointRef, Output};
use crate::snapshot::PodKey;
use crate::verdict::{deciding_rule, enforced, policy_verdict, Verdict};

/// One end of a simulated flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowEnd {
    /// A pod, by `namespace/name`.
    Pod(PodKey),
    /// A Node or ExternalNode, by name.
    Host(String),
    /// Any address; resolved to the endpoint that owns it, if any.
    Address(IpAddr),
}

/// The flow to judge: `from` opens a connection to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowQuery {
    /// The client.
    pub from: FlowEnd,
    /// The server.
    pub to: FlowEnd,
    /// The protocol.
    pub protocol: Protocol,
    /// The destination port (for ICMP and ICMPv6: the message type).
    pub port: u16,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimulateError {
    /// The pod is not in the input, or has no node or address.
    #[error("pod {0} is not a managed endpoint: it is missing from the input, or has no spec.nodeName or status.podIP")]
    UnknownPod(String),
    /// No Node or ExternalNode has this name.
    #[error("no Node or ExternalNode named {0:?} in the input")]
    UnknownHost(String),
    /// The two ends have no address of a common family.
    #[error("{0} and {1} have no addresses of the same IP family")]
    NoCommonFamily(String, String),
}

/// One side's judgement: the source's egress or the destination's ingress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SideVerdict {
    /// The endpoint whose rules were applied.
    pub endpoint: String,
    /// The node that enforces them.
    pub node: String,
    /// The endpoint's identity.
    pub identity: u32,
    /// The other side's identity, as this node sees it.
    pub peer_identity: u32,
    /// The endpoint's mode.
    pub mode: EnforcementMode,
    /// The deciding rule, if any matched.
    pub rule: Option<RuleRef>,
    /// What full enforcement would do.
    pub would_be: Verdict,
    /// What this side does in its mode.
    pub verdict: Verdict,
    /// True when a failsafe port let the traffic through.
    pub failsafe: bool,
}

/// A rule named in a verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRef {
    /// Its cluster-wide id.
    pub id: u32,
    /// The policy.
    pub policy: String,
    /// The rule within the policy.
    pub rule: String,
    /// The rule's action.
    pub action: Action,
}

/// The answer for one flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowVerdict {
    /// Whether the flow is let through end to end.
    pub verdict: Verdict,
    /// Source address used.
    pub source: IpAddr,
    /// Destination address used.
    pub destination: IpAddr,
    /// The source's egress judgement, when the source is managed.
    pub egress: Option<SideVerdict>,
    /// The destination's ingress judgement, when the destination is managed.
    pub ingress: Option<SideVerdict>,
}

impl FlowVerdict {
    /// The side whose judgement decided the outcome: the first side that
    /// denies, else the destination's ingress, else the source's egress.
    pub fn deciding_side(&self) -> Option<&SideVerdict> {
        let sides = [self.egress.as_ref(), self.ingress.as_ref()];
        sides
            .iter()
            .flatten()
            .find(|s| s.verdict == Verdict::Deny)
            .or(self.ingress.as_ref().into_iter().next().as_ref())
            .or(self.egress.as_ref().into_iter().next().as_ref())
            .copied()
    }
}

/// A managed endpoint found for a flow end.
struct Managed<'a> {
    name: String,
    node: &'a str,
    map: &'a NodeRuleMapSpec,
    identity: u32,
    mode: EnforcementMode,
    is_host: bool,
}

/// Judges one flow.
pub fn simulate(out: &Output, query: &FlowQuery) -> Result<FlowVerdict, SimulateError> {
    let from_addrs = addresses_of(out, &query.from)?;
    let to_addrs = addresses_of(out, &query.to)?;
    let (source, destination) = pick_pair(&from_addrs, &to_addrs, query.protocol)
        .ok_or_else(|| SimulateError::NoCommonFamily(describe(&query.from), describe(&query.to)))?;
    let egress = managed_at(out, source).map(|src| {
        judge(
            out,
            &src,
            Direction::Egress,
            destination,
            query.protocol,
            query.port,
        )
    });
    let ingress = managed_at(out, destination).map(|dst| {
        judge(
            out,
            &dst,
            Direction::Ingress,
            source,
            query.protocol,
            query.port,
        )
    });
    let denied = [&egress, &ingress]
        .iter()
        .any(|s| s.as_ref().is_some_and(|s| s.verdict == Verdict::Deny));
    Ok(FlowVerdict {
        verdict: if denied {
            Verdict::Deny
        } else {
            Verdict::Allow
        },
        source,
        destination,
        egress,
        ingress,
    })
}

fn judge(
    out: &Output,
    local: &Managed<'_>,
    direction: Direction,
    peer_addr: IpAddr,
    protocol: Protocol,
    port: u16,
) -> SideVerdict {
    let peer_identity = peer_identity(out, local.map, peer_addr);
    let failsafe = local.is_host
        && local
            .map
            .failsafe_ports
            .iter()
            .any(|f| f.direction == direction && f.protocol == protocol && f.port == port);
    let rule = deciding_rule(
        &local.map.rules,
        local.identity,
        direction,
        peer_identity,
        protocol,
        port,
    );
    let action = rule.map(|r| r.action);
    let verdict = if failsafe {
        Verdict::Allow
    } else {
        enforced(local.mode, action)
    };
    SideVerdict {
        endpoint: local.name.clone(),
        node: local.node.to_string(),
        identity: local.identity,
        peer_identity,
        mode: local.mode,
        rule: rule.map(|r| RuleRef {
            id: r.id,
            policy: r.policy.clone(),
            rule: r.rule.clone(),
            action: r.action,
        }),
        would_be: if failsafe {
            Verdict::Allow
        } else {
            policy_verdict(action)
        },
        verdict,
        failsafe,
    }
}

/// The identity a node gives `addr`: its own addresses are `host`, then the
/// longest matching prefix of the identity maps, else `world`.
pub fn peer_identity(out: &Output, local: &NodeRuleMapSpec, addr: IpAddr) -> u32 {
    if local
        .host
        .addresses
        .iter()
        .any(|a| a.parse::<IpAddr>() == Ok(addr))
    {
        return HOST;
    }
    let mut best: Option<(u8, u32)> = None;
    for shard in &out.identity_maps {
        for entry in &shard.prefixes {
            let Ok(net) = entry.cidr.parse::<IpNet>() else {
                continue;
            };
            if net.contains(&addr) && best.is_none_or(|(len, _)| net.prefix_len() > len) {
                best = Some((net.prefix_len(), entry.identity));
            }
        }
    }
    best.map_or(WORLD, |(_, id)| id)
}

fn managed_at(out: &Output, addr: IpAddr) -> Option<Managed<'_>> {
    for (name, map) in &out.rule_maps {
        let owns = |addrs: &[String]| addrs.iter().any(|a| a.parse::<IpAddr>() == Ok(addr));
        if owns(&map.host.addresses) {
            return Some(Managed {
                name: map.host.name.clone(),
                node: name,
                map,
                identity: map.host.identity,
                mode: map.host.mode,
                is_host: true,
            });
        }
        if let Some(ep) = map.endpoints.iter().find(|e| owns(&e.addresses)) {
            return Some(Managed {
                name: ep.name.clone(),
                node: name,
                map,
                identity: ep.identity,
                mode: ep.mode,
                is_host: false,
            });
        }
    }
    None
}

fn addresses_of(out: &Output, end: &FlowEnd) -> Result<Vec<IpAddr>, SimulateError> {
    match end {
        FlowEnd::Address(a) => Ok(vec![*a]),
        FlowEnd::Pod(key) => out
            .endpoints
            .get(&EndpointRef::Pod(key.clone()))
            .filter(|f| f.node.is_some() && !f.addresses.is_empty())
            .map(|f| f.addresses.clone())
            .ok_or_else(|| SimulateError::UnknownPod(key.to_string())),
        FlowEnd::Host(name) => [
            EndpointRef::Node(name.clone()),
            EndpointRef::ExternalNode(name.clone()),
        ]
        .iter()
        .find_map(|r| out.endpoints.get(r))
        .map(|f| f.addresses.clone())
        .ok_or_else(|| SimulateError::UnknownHost(name.clone())),
    }
}

/// IPv4 first when both ends have it, as dual-stack clients usually do;
/// ICMP only travels over IPv4 and ICMPv6 only over IPv6.
fn pick_pair(from: &[IpAddr], to: &[IpAddr], protocol: Protocol) -> Option<(IpAddr, IpAddr)> {
    let v4 = |a: &&IpAddr| a.is_ipv4();
    let v6 = |a: &&IpAddr| a.is_ipv6();
    let pair_v4 = || from.iter().find(v4).zip(to.iter().find(v4));
    let pair_v6 = || from.iter().find(v6).zip(to.iter().find(v6));
    let pair = match protocol {
        Protocol::Icmp => pair_v4(),
        Protocol::Icmpv6 => pair_v6(),
        _ => pair_v4().or_else(pair_v6),
    };
    pair.map(|(a, b)| (*a, *b))
}

fn describe(end: &FlowEnd) -> String {
    match end {
        FlowEnd::Pod(k) => k.to_string(),
        FlowEnd::Host(h) => h.clone(),
        FlowEnd::Address(a) => a.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_family_follows_the_protocol() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("test address");
        let both = [ip("10.0.0.1"), ip("fd00::1")];
        let other = [ip("10.0.0.2"), ip("fd00::2")];
        let v4 = Some((ip("10.0.0.1"), ip("10.0.0.2")));
        let v6 = Some((ip("fd00::1"), ip("fd00::2")));
        assert_eq!(pick_pair(&both, &other, Protocol::Tcp), v4);
        assert_eq!(pick_pair(&both, &other, Protocol::Icmp), v4);
        assert_eq!(pick_pair(&both, &other, Protocol::Icmpv6), v6);
        assert_eq!(pick_pair(&both[1..], &other, Protocol::Udp), v6);
        assert_eq!(pick_pair(&both[..1], &other, Protocol::Icmpv6), None);
    }
}
