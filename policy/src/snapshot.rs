//! The compiler's input: a plain, I/O-free picture of the cluster.
//!
//! The operator and the CLI fill it from Kubernetes objects (see
//! [`crate::convert`]); tests build it directly.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::{ExternalNodeSpec, LabelMappingSpec, Labels, SegmentationPolicySpec};

use crate::netpol::{NetworkPolicy, NetworkPolicyKey};
use crate::service::{EndpointSlice, EndpointSliceKey};

/// A pod's `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    /// The namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

impl PodKey {
    /// A key from its two parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the compiler needs of a Pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pod {
    /// `metadata.labels`.
    pub labels: Labels,
    /// `spec.nodeName`; a pod not yet scheduled is not an endpoint.
    pub node: Option<String>,
    /// `status.podIPs`; a pod without addresses is not an endpoint yet.
    pub addresses: Vec<IpAddr>,
    /// `spec.hostNetwork`: such pods share the node's addresses and are
    /// governed as the host endpoint, not as pods.
    pub host_network: bool,
    /// The named ports of its containers: what NetworkPolicy named ports
    /// resolve against (read only when NetworkPolicy support is on).
    pub named_ports: BTreeSet<NamedPort>,
}

/// A container port that has a name (`spec.containers[].ports[]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamedPort {
    /// `name`.
    pub name: String,
    /// `protocol` (TCP when absent).
    pub protocol: Protocol,
    /// `containerPort`.
    pub port: u16,
}

/// What the compiler needs of a Namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    /// `metadata.labels`.
    pub labels: Labels,
}

/// What the compiler needs of a Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// `metadata.labels`.
    pub labels: Labels,
    /// `status.addresses` of type InternalIP and ExternalIP.
    pub addresses: Vec<IpAddr>,
}

/// What the compiler needs of an ExternalNode.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalNode {
    /// `metadata.labels`.
    pub labels: Labels,
    /// The object itself.
    pub spec: ExternalNodeSpec,
}

/// Everything the compiler reads, keyed by name.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Namespace>,
    /// Pods by `namespace/name`.
    pub pods: BTreeMap<PodKey, Pod>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// ExternalNodes by name.
    pub external_nodes: BTreeMap<String, ExternalNode>,
    /// LabelMappings by name.
    pub mappings: BTreeMap<String, LabelMappingSpec>,
    /// SegmentationPolicies by name.
    pub policies: BTreeMap<String, SegmentationPolicySpec>,
    /// Modes in effect that differ from `spec.enforcement`: policies whose
    /// promotion gate opened (`spec.promotion.to`), by policy name. The
    /// operator decides them (spec is never rewritten); the compiler only
    /// reads them.
    pub effective_modes: BTreeMap<String, EnforcementMode>,
    /// Kubernetes NetworkPolicies by `namespace/name`; compiled only when
    /// `CompileOptions::network_policies` is on (see [`crate::netpol`]).
    pub network_policies: BTreeMap<NetworkPolicyKey, NetworkPolicy>,
    /// EndpointSlices by `namespace/name`: the backends `service` peers name
    /// (see [`crate::service`]).
    pub endpoint_slices: BTreeMap<EndpointSliceKey, EndpointSlice>,
}

/// One change to the snapshot: the incremental form of compiling.
#[derive(Clone, Debug)]
pub enum Change {
    /// A pod was added or changed.
    UpsertPod(PodKey, Pod),
    /// A pod was deleted.
    DeletePod(PodKey),
    /// A namespace was added or changed.
    UpsertNamespace(String, Namespace),
    /// A namespace was deleted.
    DeleteNamespace(String),
    /// A node was added or changed.
    UpsertNode(String, Node),
    /// A node was deleted.
    DeleteNode(String),
    /// An external node was added or changed.
    UpsertExternalNode(String, ExternalNode),
    /// An external node was deleted.
    DeleteExternalNode(String),
    /// A label mapping was added or changed.
    UpsertMapping(String, LabelMappingSpec),
    /// A label mapping was deleted.
    DeleteMapping(String),
    /// A policy was added or changed.
    UpsertPolicy(String, SegmentationPolicySpec),
    /// A policy was deleted.
    DeletePolicy(String),
    /// A policy's mode in effect changed: `Some` overrides its
    /// `spec.enforcement` (a promotion), `None` returns to it.
    SetEffectiveMode(String, Option<EnforcementMode>),
    /// A NetworkPolicy was added or changed.
    UpsertNetworkPolicy(NetworkPolicyKey, NetworkPolicy),
    /// A NetworkPolicy was deleted.
    DeleteNetworkPolicy(NetworkPolicyKey),
    /// An EndpointSlice was added or changed.
    UpsertEndpointSlice(EndpointSliceKey, EndpointSlice),
    /// An EndpointSlice was deleted.
    DeleteEndpointSlice(EndpointSliceKey),
}

impl Snapshot {
    /// Applies one change to the snapshot itself.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::UpsertPod(k, v) => {
                self.pods.insert(k, v);
            }
            Change::DeletePod(k) => {
                self.pods.remove(&k);
            }
            Change::UpsertNamespace(k, v) => {
                self.namespaces.insert(k, v);
            }
            Change::DeleteNamespace(k) => {
                self.namespaces.remove(&k);
            }
            Change::UpsertNode(k, v) => {
                self.nodes.insert(k, v);
            }
            Change::DeleteNode(k) => {
                self.nodes.remove(&k);
            }
            Change::UpsertExternalNode(k, v) => {
                self.external_nodes.insert(k, v);
            }
            Change::DeleteExternalNode(k) => {
                self.external_nodes.remove(&k);
            }
            Change::UpsertMapping(k, v) => {
                self.mappings.insert(k, v);
            }
            Change::DeleteMapping(k) => {
                self.mappings.remove(&k);
            }
            Change::UpsertPolicy(k, v) => {
                self.policies.insert(k, v);
            }
            Change::DeletePolicy(k) => {
                self.policies.remove(&k);
            }
            Change::SetEffectiveMode(k, Some(mode)) => {
                self.effective_modes.insert(k, mode);
            }
            Change::SetEffectiveMode(k, None) => {
                self.effective_modes.remove(&k);
            }
            Change::UpsertNetworkPolicy(k, v) => {
                self.network_policies.insert(k, v);
            }
            Change::DeleteNetworkPolicy(k) => {
                self.network_policies.remove(&k);
            }
            Change::UpsertEndpointSlice(k, v) => {
                self.endpoint_slices.insert(k, v);
            }
            Change::DeleteEndpointSlice(k) => {
                self.endpoint_slices.remove(&k);
            }
        }
    }
}
