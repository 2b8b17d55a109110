//! `NodeRuleMap`: everything one node's agent needs to enforce, compiled.
//!
//! Written only by the operator (one per Node and per ExternalNode, named
//! after it); its status is written only by that node's agent.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::policy::{Action, EnforcementMode, Protocol};

/// The compiled rules, local endpoints and failsafe ports of one node.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bulkhead.dev",
    version = "v1alpha1",
    kind = "NodeRuleMap",
    plural = "noderulemaps",
    shortname = "nrm",
    category = "bulkhead",
    status = "NodeRuleMapStatus",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.nodeKind"}"#,
    printcolumn = r#"{"name":"Endpoints","type":"integer","jsonPath":".status.endpoints","description":"Endpoints the agent programmed"}"#,
    printcolumn = r#"{"name":"Generation","type":"integer","jsonPath":".metadata.generation"}"#,
    printcolumn = r#"{"name":"Programmed","type":"integer","jsonPath":".status.programmedGeneration","description":"The generation the agent has in its maps"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeRuleMapSpec {
    /// Whether this map belongs to a Kubernetes Node or an ExternalNode.
    pub node_kind: NodeKind,
    /// The host endpoint: the node's own addresses. On this node they are seen
    /// as the reserved `host` identity; `identity` is what policies select.
    pub host: LocalEndpoint,
    /// The pods (or other workloads) that run on this node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<LocalEndpoint>,
    /// Every rule that governs an identity present on this node, ordered by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<CompiledRule>,
    /// Ports on which the host endpoint is always reachable and may always
    /// send, whatever the policy says (SSH, the API server, DNS, DHCP...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failsafe_ports: Vec<FailsafePort>,
}

/// The kind of node a rule map is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum NodeKind {
    /// A Kubernetes Node.
    #[default]
    Node,
    /// A Bulkhead ExternalNode (bare metal or VM).
    ExternalNode,
}

/// An endpoint enforced on this node.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct LocalEndpoint {
    /// `namespace/pod` for pods, the node's name for the host endpoint.
    pub name: String,
    /// Its IPv4 and IPv6 addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// The numeric identity of its segmentation labels.
    pub identity: u32,
    /// How its verdicts are enforced.
    pub mode: EnforcementMode,
}

/// One policy rule, resolved to identities, as it applies on this node.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct CompiledRule {
    /// Stable, cluster-wide number of the rule; flow records carry it. Never 0.
    pub id: u32,
    /// The SegmentationPolicy the rule came from.
    pub policy: String,
    /// Which rule of that policy: its name, or `ingress[i]` / `egress[i]`.
    pub rule: String,
    /// Whether the rule governs traffic to (ingress) or from (egress) the subjects.
    pub direction: Direction,
    /// What happens to matching traffic.
    pub action: Action,
    /// Identities of this node's endpoints that the rule governs.
    pub subjects: Vec<u32>,
    /// When true the rule matches every peer and `peers` is empty.
    #[serde(default)]
    pub any_peer: bool,
    /// Identities of the peers the rule matches, sorted.
    #[serde(default, skip_serializing_if = "PeerIds::is_empty")]
    #[schemars(with = "Vec<u32>")]
    pub peers: PeerIds,
    /// Protocols and port ranges; empty means all traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
}

/// A rule's peer identities, sorted. Shared, not copied: one policy rule
/// compiles to the same peer list on every node it applies on (a cluster of
/// 30k pods holds 857k compiled rules but 225 distinct peer lists), so a
/// clone is a reference count. On the wire it is a plain array.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerIds(std::sync::Arc<[u32]>);

impl PeerIds {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[u32] {
        &self.0
    }
}

impl std::ops::Deref for PeerIds {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a PeerIds {
    type Item = &'a u32;
    type IntoIter = std::slice::Iter<'a, u32>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Vec<u32>> for PeerIds {
    fn from(ids: Vec<u32>) -> Self {
        PeerIds(ids.into())
    }
}

impl From<&[u32]> for PeerIds {
    fn from(ids: &[u32]) -> Self {
        PeerIds(ids.into())
    }
}

impl<const N: usize> From<[u32; N]> for PeerIds {
    fn from(ids: [u32; N]) -> Self {
        PeerIds(ids.as_slice().into())
    }
}

impl FromIterator<u32> for PeerIds {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        PeerIds(iter.into_iter().collect())
    }
}

/// Traffic direction relative to the governed endpoint.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Traffic arriving at the endpoint.
    Ingress,
    /// Traffic leaving the endpoint.
    Egress,
}

/// A protocol and an inclusive range of destination ports (for ICMP and
/// ICMPv6, of message types). `first: 0, last: 65535` means every port.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    /// The IP protocol.
    pub protocol: Protocol,
    /// The first port (or ICMP type) of the range.
    pub first: u16,
    /// The last port (or ICMP type) of the range, inclusive.
    pub last: u16,
}

impl PortRange {
    /// Whether `port` of `protocol` falls in the range.
    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol == protocol && self.first <= port && port <= self.last
    }
}

/// A port the host endpoint keeps open whatever the policy says.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct FailsafePort {
    /// The IP protocol.
    pub protocol: Protocol,
    /// The port.
    pub port: u16,
    /// Whether it protects traffic to the host (ingress) or from it (egress).
    pub direction: Direction,
}

impl std::str::FromStr for FailsafePort {
    type Err = String;

    /// `tcp/9470/egress`: protocol (TCP, UDP or SCTP), port, direction.
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || {
            format!("failsafe port {s:?}: expected PROTOCOL/PORT/DIRECTION, like tcp/9470/egress")
        };
        let mut parts = s.split('/');
        let (Some(protocol), Some(port), Some(direction), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(usage());
        };
        let protocol = match protocol.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            other => {
                return Err(format!(
                    "{}: protocol {other:?} has no ports (TCP, UDP or SCTP)",
                    usage()
                ))
            }
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("{}: port {port:?} is not 1-65535", usage())),
        };
        let direction = match direction.to_ascii_lowercase().as_str() {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            other => {
                return Err(format!(
                    "{}: direction {other:?} is neither ingress nor egress",
                    usage()
                ))
            }
        };
        Ok(FailsafePort {
            protocol,
            port,
            direction,
        })
    }
}

#[cfg(test)]
mod failsafe_port_tests {
    use super::*;
    use crate::policy::Protocol;

    #[test]
    fn failsafe_ports_parse_from_the_command_line_form() {
        let ok = [
            ("tcp/9470/egress", Protocol::Tcp, 9470, Direction::Egress),
            ("UDP/53/Ingress", Protocol::Udp, 53, Direction::Ingress),
            (
                "sctp/3868/ingress",
                Protocol::Sctp,
                3868,
                Direction::Ingress,
            ),
        ];
        for (text, protocol, port, direction) in ok {
            let want = FailsafePort {
                protocol,
                port,
                direction,
            };
            assert_eq!(text.parse::<FailsafePort>(), Ok(want), "{text}");
        }
        let bad = [
            ("tcp/9470", "expected PROTOCOL/PORT/DIRECTION"),
            ("icmp/8/ingress", "has no ports"),
            ("tcp/0/egress", "is not 1-65535"),
            ("tcp/70000/egress", "is not 1-65535"),
            ("tcp/22/inbound", "neither ingress nor egress"),
            ("tcp/22/egress/x", "expected PROTOCOL/PORT/DIRECTION"),
        ];
        for (text, why) in bad {
            let err = text.parse::<FailsafePort>().expect_err(text);
            assert!(err.contains(why) && err.contains(text), "{text}: {err}");
        }
    }
}

/// What the node's agent has programmed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRuleMapStatus {
    /// The `metadata.generation` whose content is in the node's BPF maps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed_generation: Option<i64>,
    /// Endpoints programmed.
    #[serde(default)]
    pub endpoints: u32,
    /// Policy map entries programmed.
    #[serde(default)]
    pub policy_entries: u32,
    /// The `metadata.generation` of every IdentityMap shard whose content
    /// is in the node's BPF maps, by shard name: an identity change moves
    /// these, not `programmedGeneration`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub programmed_identity_maps: std::collections::BTreeMap<String, i64>,
    /// Hits of the rules of this map that decided something on this node,
    /// by rule id. Refreshed at the agent's hits interval and written only
    /// when they change.
    #[serde(default)]
    pub rule_hits: Vec<crate::hits::NodeRuleHits>,
    /// `Ready`, `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
