//! `LabelMapping`: where segmentation labels come from.
//!
//! A mapping's rules match endpoints by their Kubernetes labels (pods,
//! namespaces, nodes, external nodes), by address range, or by host name, and
//! give them segmentation labels, either fixed values or copied from a source
//! label. Mappings have an explicit priority; two sources of equal priority
//! that disagree on a key are a conflict, which is reported, never guessed.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::selector::{LabelSelector, Labels};

/// Rules that give endpoints segmentation labels.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bulkhead.dev",
    version = "v1alpha1",
    kind = "LabelMapping",
    plural = "labelmappings",
    shortname = "lm",
    category = "bulkhead",
    status = "LabelMappingStatus",
    printcolumn = r#"{"name":"Priority","type":"integer","jsonPath":".spec.priority"}"#,
    printcolumn = r#"{"name":"Labeled","type":"integer","jsonPath":".status.endpointsLabeled","description":"Endpoints this mapping gives at least one label"}"#,
    printcolumn = r#"{"name":"Conflicts","type":"integer","jsonPath":".status.conflicts"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LabelMappingSpec {
    /// Higher wins: for each label key, the highest-priority mapping that sets
    /// it decides. Mappings of equal priority that set different values for
    /// one key on one endpoint are a conflict and the key stays unset.
    #[serde(default)]
    pub priority: i32,
    /// The rules, evaluated independently; order carries no meaning.
    #[schemars(length(min = 1, max = 128))]
    pub rules: Vec<MappingRule>,
}

/// Endpoints to match and the labels to give them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.labels) && size(self.labels) > 0) || (has(self.copyLabels) && size(self.copyLabels) > 0)",
        "message": "a mapping rule must set labels or copyLabels, or it does nothing"
    },
    {
        "rule": "!has(self.copyLabels) || !has(self.match.cidrs) || size(self.copyLabels) == 0",
        "message": "copyLabels cannot be used with cidrs: an address range has no labels to copy"
    }
]))]
pub struct MappingRule {
    /// An optional name, shown in conflicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Which endpoints the rule applies to.
    #[serde(rename = "match")]
    pub match_: EndpointMatch,
    /// Segmentation labels with fixed values.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub labels: Labels,
    /// Segmentation labels whose values are copied from a label of the source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub copy_labels: Vec<CopyLabel>,
}

/// Exactly one kind of endpoint to match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.pods), has(self.nodes), has(self.externalNodes), has(self.cidrs), has(self.hostnames)].filter(x, x).size() == 1",
        "message": "match sets exactly one of pods, nodes, externalNodes, cidrs or hostnames"
    },
    {
        "rule": "!has(self.cidrs) || self.cidrs.all(c, isCIDR(c))",
        "message": "every entry of cidrs must be a valid IPv4 or IPv6 CIDR such as 10.20.0.0/16"
    }
]))]
pub struct EndpointMatch {
    /// Pods, by their own labels, their namespace's labels and their node's labels (all must match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodMatch>,
    /// Kubernetes Nodes (as host endpoints), by node labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// ExternalNodes, by their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_nodes: Option<LabelSelector>,
    /// Address ranges of assets that run no agent (a mainframe, a SaaS range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), inner(length(max = 64)))]
    pub cidrs: Option<Vec<String>>,
    /// Host names of Nodes and ExternalNodes; `*` matches any run of characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), inner(length(max = 253)))]
    pub hostnames: Option<Vec<String>>,
}

/// Which pods a rule matches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMatch {
    /// Labels of the pod. Absent matches every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Labels of the pod's namespace. Absent matches every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Labels of the node the pod runs on. Absent matches every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
}

/// Copy one label of the matched object (or of its namespace or node) into a segmentation label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CopyLabel {
    /// The segmentation label key to set.
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    /// The label to read the value from. When it is absent the key is not set.
    #[schemars(length(min = 1, max = 317))]
    pub from_label: String,
    /// Whose label to read: the matched object itself (default), its namespace, or its node.
    #[serde(default)]
    pub source: LabelSource,
}

/// Where a copied label is read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LabelSource {
    /// The pod, node or external node that matched.
    #[default]
    Object,
    /// The namespace of the matched pod.
    Namespace,
    /// The node of the matched pod.
    Node,
}

/// What the operator observed about a mapping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelMappingStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Endpoints this mapping gives at least one label that is in effect.
    #[serde(default)]
    pub endpoints_labeled: u32,
    /// Endpoints where this mapping is part of a conflict.
    #[serde(default)]
    pub conflicts: u32,
    /// Up to 20 conflicts, for a person to resolve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflict_samples: Vec<String>,
}
