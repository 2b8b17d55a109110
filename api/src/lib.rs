//! Bulkhead's API: the custom resources of group `bulkhead.dev`, version `v1alpha1`.
//!
//! ```text
//!  Namespace ─┐   Node ──┐   ExternalNode ──┐            (cluster state)
//!    Pod ─────┴──────────┴──────────────────┤
//!                                           ▼
//!  LabelMapping ─────────────► segmentation labels per endpoint
//!                                           │ one numeric identity per distinct label set
//!  SegmentationPolicy ──► scope ∩ identities, rules ─► peers as identities
//!                                           ▼
//!        NodeRuleMap (one per node: local endpoints, compiled rules, failsafe ports)
//!        IdentityMap (shards: identity → labels, address prefix → identity)
//! ```
//!
//! The first three are written by people; the last two only by the operator
//! (their status by agents). Reserved identities are in [`identity`].

#![forbid(unsafe_code)]

pub mod condition;
pub mod exception;
pub mod exposition;
pub mod external_node;
pub mod flow;
pub mod governance;
pub mod hits;
pub mod identity;
pub mod identity_map;
pub mod mapping;
pub mod policy;
pub mod promotion;
pub mod rule_map;
pub mod selector;
#[cfg(feature = "watch")]
pub mod watch;

pub use exception::{
    SegmentationException, SegmentationExceptionSpec, SegmentationExceptionStatus,
};
pub use external_node::{ExternalNode, ExternalNodeSpec, ExternalNodeStatus};
pub use identity_map::{
    IdentityEntry, IdentityMap, IdentityMapSpec, PrefixEntry, ReleasedIdentity,
};
pub use mapping::{LabelMapping, LabelMappingSpec, LabelMappingStatus};
pub use policy::{SegmentationPolicy, SegmentationPolicySpec, SegmentationPolicyStatus};
pub use rule_map::{NodeRuleMap, NodeRuleMapSpec, NodeRuleMapStatus};
pub use selector::{LabelSelector, Labels};

use kube::CustomResourceExt;

/// Every CRD Bulkhead installs, in a stable order.
pub fn crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![
        SegmentationPolicy::crd(),
        LabelMapping::crd(),
        ExternalNode::crd(),
        NodeRuleMap::crd(),
        IdentityMap::crd(),
        SegmentationException::crd(),
    ]
}
