//! The compiler's output: labels and identities per endpoint, one rule map
//! per node, identity map shards, and facts for policy and mapping status.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use bulkhead_api::policy::EnforcementMode;
use bulkhead_api::{IdentityMapSpec, Labels, NodeRuleMapSpec};
use ipnet::IpNet;

use crate::identities::IdentityAllocation;
use crate::snapshot::PodKey;

/// Something that has segmentation labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointRef {
    /// A pod.
    Pod(PodKey),
    /// A Kubernetes Node, as a host endpoint.
    Node(String),
    /// An ExternalNode.
    ExternalNode(String),
    /// An address range from a LabelMapping or a policy.
    Cidr(IpNet),
}

impl fmt::Display for EndpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointRef::Pod(k) => write!(f, "{k}"),
            EndpointRef::Node(n) => write!(f, "node/{n}"),
            EndpointRef::ExternalNode(n) => write!(f, "externalnode/{n}"),
            EndpointRef::Cidr(c) => write!(f, "cidr/{c}"),
        }
    }
}

/// Two or more mappings of equal priority that give one key different values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelConflict {
    /// The endpoint.
    pub endpoint: EndpointRef,
    /// The segmentation label key left unset because of the conflict.
    pub key: String,
    /// The priority at which the sources disagree.
    pub priority: i32,
    /// `(mapping, rule, value)` of every source at that priority.
    pub sources: Vec<(String, String, String)>,
}

impl fmt::Display for LabelConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: key {:?} at priority {} is set to",
            self.endpoint, self.key, self.priority
        )?;
        for (i, (mapping, rule, value)) in self.sources.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{value:?} by {mapping}/{rule}")?;
        }
        Ok(())
    }
}

/// What the compiler decided about one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointFacts {
    /// Its segmentation labels, after precedence (empty when unlabeled).
    pub labels: Labels,
    /// The identity of those labels (a reserved one when it has none).
    pub identity: u32,
    /// The node whose agent enforces it: its own node for pods, itself for
    /// nodes and external nodes, none for address ranges.
    pub node: Option<String>,
    /// Its addresses (for a range: none; see the ref).
    pub addresses: Vec<IpAddr>,
    /// Its enforcement mode (address ranges: the cluster default, unused).
    pub mode: EnforcementMode,
}

/// Facts for a SegmentationPolicy's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFacts {
    /// Endpoints in scope.
    pub matched_endpoints: u32,
    /// Distinct identities in scope.
    pub matched_identities: u32,
    /// Nodes whose rule map carries at least one of its rules.
    pub nodes: BTreeSet<String>,
    /// Things a person should look at.
    pub warnings: Vec<String>,
}

/// Facts for a LabelMapping's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappingFacts {
    /// Endpoints that have at least one label in effect from this mapping.
    pub endpoints_labeled: u32,
    /// Conflicts this mapping takes part in.
    pub conflicts: Vec<LabelConflict>,
    /// Things a person should look at (an unparsable CIDR, say).
    pub warnings: Vec<String>,
}

/// Everything one compile produces. Equal snapshots (and equal previous
/// allocations) give equal outputs, whether compiled whole or by changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    /// Every endpoint and address range with its labels and identity.
    pub endpoints: BTreeMap<EndpointRef, EndpointFacts>,
    /// Managed endpoints without any segmentation label: the labeling queue.
    pub unlabeled: BTreeSet<EndpointRef>,
    /// Every label conflict.
    pub conflicts: Vec<LabelConflict>,
    /// Identity number → label set, for every identity in use.
    pub identities: BTreeMap<u32, Labels>,
    /// The allocation to pass to the next compile (after a restart, say).
    pub allocation: IdentityAllocation,
    /// One rule map per Node and ExternalNode, by name.
    pub rule_maps: BTreeMap<String, NodeRuleMapSpec>,
    /// The identity map shards, by shard index.
    pub identity_maps: Vec<IdentityMapSpec>,
    /// Status facts by policy name.
    pub policies: BTreeMap<String, PolicyFacts>,
    /// Status facts by mapping name.
    pub mappings: BTreeMap<String, MappingFacts>,
}
