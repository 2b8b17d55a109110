//! What the compiler needs of a `networking.k8s.io/v1` NetworkPolicy, already
//! checked: selectors in Bulkhead's own shape, CIDRs parsed, protocols known.
//! [`crate::convert::network_policy`] builds it from the Kubernetes object.

use std::fmt;

use bulkhead_api::policy::Protocol;
use bulkhead_api::rule_map::Direction;
use bulkhead_api::LabelSelector;
use ipnet::IpNet;

/// A NetworkPolicy's `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkPolicyKey {
    /// The namespace the policy lives in, and whose pods it selects.
    pub namespace: String,
    /// The policy's name.
    pub name: String,
}

impl NetworkPolicyKey {
    /// A key from its two parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for NetworkPolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One NetworkPolicy's spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// `spec.podSelector`: the pods of the policy's namespace it governs
    /// (empty or absent: all of them).
    pub pod_selector: LabelSelector,
    /// `spec.policyTypes` as written; `None` (or empty) takes the API
    /// server's default, see [`NetworkPolicy::isolates`].
    pub policy_types: Option<Vec<Direction>>,
    /// `spec.ingress`.
    pub ingress: Vec<NetworkPolicyRule>,
    /// `spec.egress`.
    pub egress: Vec<NetworkPolicyRule>,
}

impl NetworkPolicy {
    /// Whether the selected pods are isolated in `direction`: the directions
    /// of `policyTypes`, or when it is absent, ingress always and egress when
    /// the policy has egress rules (as the API server defaults it).
    pub fn isolates(&self, direction: Direction) -> bool {
        match self.policy_types.as_deref() {
            Some(types) if !types.is_empty() => types.contains(&direction),
            _ => direction == Direction::Ingress || !self.egress.is_empty(),
        }
    }

    /// The rules of one direction.
    pub fn rules(&self, direction: Direction) -> &[NetworkPolicyRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// One ingress rule (`from`, `ports`) or egress rule (`to`, `ports`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicyRule {
    /// `from` or `to`; empty means every peer.
    pub peers: Vec<NetworkPolicyPeer>,
    /// `ports`; empty means every protocol and port.
    pub ports: Vec<NetworkPolicyPort>,
}

/// One entry of `from` or `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkPolicyPeer {
    /// `podSelector` and/or `namespaceSelector` (at least one is set).
    Pods {
        /// Namespaces whose pods are peers; `None`: the policy's own namespace.
        namespace_selector: Option<LabelSelector>,
        /// Pods within those namespaces; `None`: all of them.
        pod_selector: Option<LabelSelector>,
    },
    /// `ipBlock`: addresses in `cidr` and in none of `except` (each inside `cidr`).
    IpBlock {
        /// The range.
        cidr: IpNet,
        /// Ranges cut out of it.
        except: Vec<IpNet>,
    },
}

/// One entry of `ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicyPort {
    /// `protocol` (TCP when absent).
    pub protocol: Protocol,
    /// `port`; `None` means every port of the protocol.
    pub port: Option<PortRef>,
    /// `endPort`: with a numeric `port`, the last port of the range (inclusive).
    pub end_port: Option<u16>,
}

/// A port by number, or by the name of a container port of the destination pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    /// A port number.
    Number(u16),
    /// A container port name (`spec.containers[].ports[].name`).
    Name(String),
}
