//! Kubernetes NetworkPolicy (`networking.k8s.io/v1`) through the same
//! compiler: opt-in with [`crate::CompileOptions::network_policies`].
//!
//! ```text
//!  NetworkPolicy x/p ──► translate.rs ──► PreparedPolicy "networkpolicy:x/p" (internal)
//!    podSelector            scope: pods of x (implicit labels), mode ≥ selective
//!    per isolated           allow   ingress[i] / egress[i]  (peers, ports)
//!    direction              allow   <direction> (own node)   peer: host
//!                           deny    <direction> (isolation)  any peer, any port
//!
//!  Pod, its Namespace ──► labels.rs: implicit labels, part of the pod's identity
//!    k8s:namespace = x           k8s:pod/<key>, k8s:ns/<key>  (keys some policy reads)
//!    k8s:port/<name> = 80/TCP    k8s:cidr/<range> = in        (names and ranges some policy reads)
//!
//!  node maps ◄── named_ports.rs: a named port becomes a number per identity
//! ```
//!
//! The translated policies sit next to SegmentationPolicies and go through
//! the same selection, rule maps and verdict function. Allows are unions;
//! isolation is a `deny` that any `allow` beats; `overrideDeny` still beats
//! everything. `docs/policy-semantics.md` says how the two kinds combine.

mod labels;
mod model;
pub(crate) mod named_ports;
mod translate;

use bulkhead_api::Labels;
use ipnet::IpNet;

pub(crate) use labels::{implicit_labels, Vocabulary};
pub use model::{
    NetworkPolicy, NetworkPolicyKey, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule,
    PortRef,
};
pub(crate) use translate::prepare;

/// Every implicit label key starts with this. A colon cannot appear in a
/// Kubernetes label key, so no LabelMapping can set or shadow one.
pub const IMPLICIT_PREFIX: &str = "k8s:";
/// The pod's namespace.
pub const NAMESPACE_LABEL: &str = "k8s:namespace";
/// `k8s:pod/<key>`: a pod label.
pub const POD_PREFIX: &str = "k8s:pod/";
/// `k8s:ns/<key>`: a label of the pod's namespace.
pub const NAMESPACE_PREFIX: &str = "k8s:ns/";
/// `k8s:port/<name>`: a named container port, valued `<port>/<PROTOCOL>`
/// (several, comma-separated, when containers reuse a name).
pub const PORT_PREFIX: &str = "k8s:port/";
/// `k8s:cidr/<range>`: present (valued [`IN_RANGE`]) when one of the pod's
/// addresses is in a range some `ipBlock` names.
pub const CIDR_PREFIX: &str = "k8s:cidr/";
/// The value of a `k8s:cidr/` label.
pub const IN_RANGE: &str = "in";
/// The label the API server puts on every namespace, valued with its name.
pub const METADATA_NAME: &str = "kubernetes.io/metadata.name";
/// Translated policies are named `networkpolicy:<namespace>/<name>`; neither
/// `:` nor `/` can appear in a SegmentationPolicy's name.
pub const POLICY_PREFIX: &str = "networkpolicy:";

/// Whether `key` is an implicit label rather than a segmentation label.
pub fn is_implicit(key: &str) -> bool {
    key.starts_with(IMPLICIT_PREFIX)
}

/// The name of the internal policy a NetworkPolicy becomes.
pub fn policy_name(key: &NetworkPolicyKey) -> String {
    format!("{POLICY_PREFIX}{key}")
}

/// The NetworkPolicy behind an internal policy name, if it is one.
pub fn parse_policy_name(name: &str) -> Option<NetworkPolicyKey> {
    let (namespace, name) = name.strip_prefix(POLICY_PREFIX)?.split_once('/')?;
    Some(NetworkPolicyKey::new(namespace, name))
}

pub(crate) fn cidr_label(net: &IpNet) -> String {
    format!("{CIDR_PREFIX}{net}")
}

/// Whether a pod with these labels has an address in `net` and in none of `except`.
pub(crate) fn in_ip_block(labels: &Labels, net: &IpNet, except: &[IpNet]) -> bool {
    let inside = |n: &IpNet| labels.get(&cidr_label(n)).is_some_and(|v| v == IN_RANGE);
    inside(net) && !except.iter().any(inside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_round_trip() {
        let key = NetworkPolicyKey::new("shop", "allow-web");
        assert_eq!(policy_name(&key), "networkpolicy:shop/allow-web");
        assert_eq!(parse_policy_name(&policy_name(&key)), Some(key));
        assert_eq!(parse_policy_name("allow-web"), None);
        assert!(is_implicit(NAMESPACE_LABEL) && !is_implicit("app"));
    }
}
