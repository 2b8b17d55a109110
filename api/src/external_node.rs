//! `ExternalNode`: a bare-metal or VM host outside Kubernetes that runs the agent.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// A host outside the cluster that runs the Bulkhead agent. Its labels
/// (`metadata.labels`) feed LabelMappings like a Node's do.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bulkhead.dev",
    version = "v1alpha1",
    kind = "ExternalNode",
    plural = "externalnodes",
    shortname = "xn",
    category = "bulkhead",
    status = "ExternalNodeStatus",
    printcolumn = r#"{"name":"Hostname","type":"string","jsonPath":".spec.hostname"}"#,
    printcolumn = r#"{"name":"Addresses","type":"string","jsonPath":".spec.addresses"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".status.agentVersion"}"#,
    printcolumn = r#"{"name":"Programmed","type":"integer","jsonPath":".status.programmedGeneration"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ExternalNodeSpec {
    /// The host's name, as LabelMapping `hostnames` match it. Defaults to the object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The host's IP addresses (IPv4 and IPv6).
    #[schemars(length(min = 1, max = 32), inner(length(max = 45)))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(a, isIP(a))", "message": "every address must be a valid IPv4 or IPv6 address"}
    ]))]
    pub addresses: Vec<String>,
    /// The interfaces the agent protects. Empty means every interface of the
    /// host but loopback (and those the agent treats as pod veths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 15)))]
    pub interfaces: Vec<String>,
}

/// What the host's agent reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalNodeStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The version of the agent that last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The interfaces the agent's programs are attached to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// The generation of the host's NodeRuleMap that its BPF maps hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed_generation: Option<i64>,
    /// `Ready` (True while the agent renews its Lease and has programmed its
    /// rule map; False with reason [`LEASE_EXPIRED`] when the operator found
    /// the Lease late).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The namespace of the external nodes' ServiceAccounts and heartbeat
/// Leases (one of each per ExternalNode, named after it), as
/// `kube-node-lease` holds the kubelets' Leases.
pub const EXTERNAL_NODE_NAMESPACE: &str = "bulkhead-external-nodes";

/// The reason of `Ready=False` that the operator writes, on the
/// ExternalNode and on its NodeRuleMap, when the host's Lease was not
/// renewed within its `leaseDurationSeconds`.
pub const LEASE_EXPIRED: &str = "LeaseExpired";

/// The reason of `Ready=True` that the host's agent writes.
pub const AGENT_READY: &str = "AgentReady";

/// The user name an external node's ServiceAccount token authenticates as.
pub fn service_account_user(host: &str) -> String {
    format!("system:serviceaccount:{EXTERNAL_NODE_NAMESPACE}:{host}")
}
