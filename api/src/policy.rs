//! `SegmentationPolicy`: which endpoints a policy governs (its scope), what
//! they may send and receive (egress and ingress rules), and how strictly the
//! verdicts are enforced (the mode).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::governance::Ownership;
use crate::promotion::{Promotion, PromotionStatus};
use crate::selector::LabelSelector;

/// A segmentation policy: a scope over segmentation labels, ingress and
/// egress rules, and an optional enforcement mode for the endpoints in scope.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bulkhead.dev",
    version = "v1alpha1",
    kind = "SegmentationPolicy",
    plural = "segmentationpolicies",
    shortname = "segpol",
    shortname = "sp",
    category = "bulkhead",
    status = "SegmentationPolicyStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.enforcement","description":"Enforcement mode set for the endpoints in scope"}"#,
    printcolumn = r#"{"name":"Effective","type":"string","jsonPath":".status.effectiveMode","description":"The mode compiled: spec.enforcement, or promotion.to once promoted"}"#,
    printcolumn = r#"{"name":"Promoted","type":"string","jsonPath":".status.conditions[?(@.type==\"Promoted\")].status","description":"Whether the promotion gate opened"}"#,
    printcolumn = r#"{"name":"Gate","type":"string","jsonPath":".status.promotion.state","priority":1,"description":"Observing, Blocked, Unknown, Promoted or Invalid"}"#,
    printcolumn = r#"{"name":"Opens","type":"string","jsonPath":".status.promotion.opensAt","priority":1,"description":"The earliest time the promotion gate can open"}"#,
    printcolumn = r#"{"name":"Owner","type":"string","jsonPath":".spec.owner","description":"The team that answers for the policy"}"#,
    printcolumn = r#"{"name":"Review","type":"string","jsonPath":".spec.reviewBy","description":"The date by which the policy must be reviewed again"}"#,
    printcolumn = r#"{"name":"Contact","type":"string","jsonPath":".spec.contact","priority":1,"description":"Whom to ask when the policy blocks a flow"}"#,
    printcolumn = r#"{"name":"Endpoints","type":"integer","jsonPath":".status.matchedEndpoints","description":"Endpoints in scope"}"#,
    printcolumn = r#"{"name":"Nodes","type":"string","jsonPath":".status.nodesSummary","description":"Nodes that programmed it / nodes it applies to"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.promotion) || !has(self.enforcement) || self.enforcement == 'visibility' || (self.enforcement == 'selective' && self.promotion.to == 'full')",
        "message": "promotion.to must be stricter than enforcement (visibility < selective < full)"
    },
    {
        "rule": "!has(self.owner) || has(self.contact)",
        "message": "an owner needs a contact: whom a person calls when this policy blocks a flow",
        "fieldPath": ".contact"
    }
]))]
pub struct SegmentationPolicySpec {
    /// Who answers for the policy (owner, contact, ticket, reviewBy); its
    /// rules inherit what they do not set themselves.
    #[serde(flatten)]
    pub ownership: Ownership,
    /// The endpoints this policy governs.
    pub scope: Scope,
    /// The mode of the endpoints in scope. When several policies set a mode for
    /// one endpoint the strictest wins (full > selective > visibility); when
    /// none does, the endpoint stays in the cluster default (visibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<EnforcementMode>,
    /// Rules for traffic arriving at the endpoints in scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ingress: Vec<Rule>,
    /// Rules for traffic leaving the endpoints in scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub egress: Vec<Rule>,
    /// Move the endpoints in scope to a stricter mode once the flow history
    /// shows nothing they do would be blocked (see `docs/promotion.md`). The
    /// operator records the mode in effect in `status.effectiveMode` and never
    /// rewrites `enforcement`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
}

/// Which endpoints a policy governs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.clusterWide) && self.clusterWide) != (has(self.selector) && ((has(self.selector.matchLabels) && size(self.selector.matchLabels) > 0) || (has(self.selector.matchExpressions) && size(self.selector.matchExpressions) > 0)))",
        "message": "scope must have a non-empty selector, or set clusterWide: true and no selector; an empty selector does not silently mean every endpoint"
    }
]))]
pub struct Scope {
    /// Segmentation labels of the endpoints in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Set to true, with no selector, to govern every managed endpoint: pods,
    /// nodes and external nodes, labeled or not.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cluster_wide: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// How an endpoint's verdicts are enforced.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum EnforcementMode {
    /// Drop nothing; report every packet's would-be verdict. The cluster default.
    #[default]
    Visibility,
    /// Enforce explicit denies (`overrideDeny`, `deny`); let unmatched traffic through.
    Selective,
    /// Enforce everything; unmatched traffic is denied.
    Full,
}

/// One ingress or egress rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.owner) || has(self.contact)",
        "message": "an owner needs a contact: whom a person calls when this rule blocks a flow",
        "fieldPath": ".contact"
    },
    {
        "rule": "!has(self.expires) || has(self.ticket)",
        "message": "a rule that expires needs a ticket saying why it is temporary",
        "fieldPath": ".ticket"
    }
]))]
pub struct Rule {
    /// An optional name, shown in verdicts and flow logs instead of the rule's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub name: Option<String>,
    /// Who answers for this rule; what it leaves out comes from the policy.
    #[serde(flatten)]
    pub ownership: Ownership,
    /// When the rule stops being enforced (RFC 3339, such as
    /// `2026-03-01T00:00:00Z`). The operator drops it from the rule maps at
    /// that second and records an Event; the policy's status lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("format" = "date-time"))]
    pub expires: Option<String>,
    /// What happens to traffic the rule matches. `overrideDeny` beats `allow`,
    /// which beats `deny`, which beats the mode's default.
    pub action: Action,
    /// The other side of the traffic: the sources of an ingress rule, the
    /// destinations of an egress rule. Absent or empty means any peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub peers: Vec<Peer>,
    /// Protocols and ports the rule matches. Absent or empty means all traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ports: Vec<PortSpec>,
}

/// The action of a rule.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Let the traffic through (unless an `overrideDeny` also matches).
    Allow,
    /// Drop the traffic unless an `allow` also matches.
    Deny,
    /// Drop the traffic whatever else matches.
    OverrideDeny,
}

/// A peer: exactly one of `selector`, `cidr`, `reserved` or `service`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.selector), has(self.cidr), has(self.reserved), has(self.service)].filter(x, x).size() == 1",
        "message": "a peer sets exactly one of selector, cidr, reserved or service; to name a Service and something else, write two peers"
    },
    {
        "rule": "!has(self.except) || has(self.cidr)",
        "message": "except is only allowed together with cidr"
    },
    {
        "rule": "!has(self.cidr) || isCIDR(self.cidr)",
        "message": "cidr must be a valid IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/64"
    },
    {
        "rule": "!has(self.except) || self.except.all(e, isCIDR(e))",
        "message": "every except entry must be a valid CIDR"
    },
    {
        "rule": "!has(self.except) || !has(self.cidr) || !isCIDR(self.cidr) || self.except.all(e, !isCIDR(e) || (cidr(e).ip().family() == cidr(self.cidr).ip().family() && cidr(self.cidr).containsCIDR(e)))",
        "message": "every except entry must lie inside cidr and be of the same address family"
    }
]))]
pub struct Peer {
    /// Endpoints whose segmentation labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Addresses outside the managed endpoints, in this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub cidr: Option<String>,
    /// Ranges inside `cidr` that the peer does not cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(max = 64)))]
    pub except: Option<Vec<String>>,
    /// A reserved identity: `world`, `host`, `remoteNode` or `unlabeled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<ReservedPeer>,
    /// The backends of a Service, as its EndpointSlices list them now: the
    /// identities of those pods (or, for an address with no pod behind it,
    /// the identity of that address). Ports in the same rule are the
    /// backends' (target) ports, not the Service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
}

/// A Service, by namespace and name.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.__namespace__.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
        "message": "service.namespace must be a namespace name: lower-case letters, digits and '-', starting and ending with a letter or digit",
        "fieldPath": ".namespace"
    },
    {
        "rule": "self.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": "service.name must be a Service name: lower-case letters, digits and '-', starting with a letter and ending with a letter or digit",
        "fieldPath": ".name"
    }
]))]
pub struct ServiceRef {
    /// The Service's namespace.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// The Service's name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Peers that are not described by labels.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ReservedPeer {
    /// Every address that belongs to no endpoint, node or host (CIDR ranges included).
    World,
    /// The node (or external host) the endpoint runs on.
    Host,
    /// Every other node of the cluster that has no segmentation labels.
    RemoteNode,
    /// Managed endpoints that no LabelMapping gives a segmentation label.
    Unlabeled,
}

/// A protocol and, for TCP, UDP and SCTP, a port or port range; for ICMP and
/// ICMPv6, optionally a message type.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.endPort) || has(self.port)",
        "message": "endPort needs port: it ends the range that port starts"
    },
    {
        "rule": "!has(self.endPort) || !has(self.port) || self.endPort >= self.port",
        "message": "endPort must be greater than or equal to port"
    },
    {
        "rule": "!(self.protocol in ['ICMP', 'ICMPv6']) || (!has(self.port) && !has(self.endPort))",
        "message": "ICMP and ICMPv6 have no ports; use icmpType to match a message type"
    },
    {
        "rule": "!has(self.icmpType) || self.protocol in ['ICMP', 'ICMPv6']",
        "message": "icmpType is only allowed with protocol ICMP or ICMPv6"
    }
]))]
pub struct PortSpec {
    /// The IP protocol.
    pub protocol: Protocol,
    /// The destination port, or the first port of a range. Absent means every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// The last port of the range that starts at `port` (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub end_port: Option<u16>,
    /// For ICMP and ICMPv6: the message type (echo request is 8 for ICMP and 128 for ICMPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 255))]
    pub icmp_type: Option<u8>,
}

/// IP protocols a rule can name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Protocol {
    /// TCP (6).
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP (17).
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP (132).
    #[serde(rename = "SCTP")]
    Sctp,
    /// ICMP for IPv4 (1).
    #[serde(rename = "ICMP")]
    Icmp,
    /// ICMP for IPv6 (58).
    #[serde(rename = "ICMPv6")]
    Icmpv6,
}

impl Protocol {
    /// The IANA protocol number, as it appears in the IP header.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Icmp => 1,
            Protocol::Icmpv6 => 58,
        }
    }

    /// The protocol with this IANA number, if Bulkhead knows it.
    pub fn from_number(number: u8) -> Option<Self> {
        Some(match number {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            132 => Protocol::Sctp,
            1 => Protocol::Icmp,
            58 => Protocol::Icmpv6,
            _ => return None,
        })
    }

    /// Whether the protocol carries ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp | Protocol::Sctp)
    }
}

/// What the operator observed about a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentationPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How many endpoints the scope selects.
    #[serde(default)]
    pub matched_endpoints: u32,
    /// How many distinct identities the scope selects.
    #[serde(default)]
    pub matched_identities: u32,
    /// How many nodes the policy applies to (nodes with an endpoint in scope).
    #[serde(default)]
    pub nodes_total: u32,
    /// How many of those nodes have programmed the rule map that carries it.
    #[serde(default)]
    pub nodes_programmed: u32,
    /// `programmed/total`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_summary: Option<String>,
    /// Things a person should look at, such as a selector that matches nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The mode compiled for the endpoints in scope: `spec.enforcement`, or
    /// `spec.promotion.to` once the gate opened. Null when the policy sets
    /// no mode. Written as null rather than left out, so a merge patch clears it.
    #[serde(default)]
    pub effective_mode: Option<EnforcementMode>,
    /// The promotion gate's progress; null without `spec.promotion`.
    #[serde(default)]
    pub promotion: Option<PromotionStatus>,
    /// Hits of the rules that decided something, over every node; a rule
    /// not listed was never hit. Refreshed at the operator's hits
    /// interval, written only when it changes.
    #[serde(default)]
    pub rule_hits: Vec<crate::hits::RuleHits>,
}
