//! `flow/v1`: the flow record, the one wire contract between the agent that
//! writes it, the collector that keeps it, the CLI that reads it and any SIEM
//! that ingests the agent's JSON-lines log. Documented in `docs/flows.md`;
//! `docs/flow-v1.schema.json` is generated from these types and a test
//! fails when it drifts.
//!
//! ```text
//!  one record = one (source, destination, port, protocol, direction,
//!               verdict, would-be verdict, deciding rule) in one window
//!
//!   pod a (node-1) ──egress──►  ──ingress──► pod b (node-2)
//!        record from node-1           record from node-2
//!        direction: egress            direction: ingress
//!        counts: yes                  counts: no (source.reported)
//! ```
//!
//! A flow between two managed endpoints is reported by both of their nodes,
//! each with its own verdict and rule. Aggregates count it once, through
//! [`FlowRecord::counts`]: the source's record when the source has an
//! agent, else the destination's.

use std::collections::BTreeMap;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::{EnforcementMode, Protocol};
use crate::rule_map::Direction;

/// The value of every record's `schema` field.
pub const SCHEMA: &str = "flow/v1";

/// One aggregated flow edge in one reporting window, from one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowRecord {
    /// Always `flow/v1`.
    pub schema: String,
    /// Start of the window, RFC 3339 UTC.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub start: jiff::Timestamp,
    /// End of the window (exclusive), RFC 3339 UTC.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub end: jiff::Timestamp,
    /// The node (Node or ExternalNode name) whose agent saw the flow.
    pub node: String,
    pub source: FlowEndpoint,
    pub destination: FlowEndpoint,
    /// Destination port; for ICMP and ICMPv6 the message type. The client's
    /// ephemeral port is aggregated away.
    pub port: u16,
    pub protocol: Protocol,
    /// Relative to the reporting node's local endpoint: `egress` when the
    /// source is local, `ingress` when the destination is.
    pub direction: Direction,
    /// What the datapath did.
    pub verdict: FlowVerdict,
    /// What it would have done in `full` mode.
    pub would_verdict: FlowVerdict,
    /// The local endpoint's mode when the flow was judged.
    pub mode: EnforcementMode,
    /// Why the verdict is what it is.
    pub reason: FlowReason,
    /// The deciding rule, by name. Absent when no rule matched (the mode's
    /// default decided) or a failsafe port did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleRef>,
    /// New connections (or, for flows first seen mid-stream, connections
    /// first seen) in this window.
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    /// The Service address the client sent to, when the flow went through
    /// one: `destination` is the backend kube-proxy translated it to. Known
    /// to the client's node (which saw the address asked for); absent
    /// otherwise. Added compatibly: readers of `flow/v1` that predate it
    /// never see it on flows that did not go through a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceAddress>,
    /// `source` is the reporting node (or the node that forwarded the
    /// flow) standing in for a client it masqueraded: NodePort or
    /// LoadBalancer traffic under `externalTrafficPolicy: Cluster`, which
    /// the node received from outside and kube-proxy SNATed to its own
    /// address. The real client is unknown here; the node is not it.
    /// Absent (false) otherwise; added compatibly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source_hidden_by_snat: bool,
}

/// A Service's address and port, as the client asked for them, and the
/// Service they belong to when the reporting agent knew it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAddress {
    /// The address asked for: a ClusterIP, an external IP or a load
    /// balancer's ingress IP (or a node's address, for a NodePort).
    pub address: IpAddr,
    /// The Service's port (the backend's is the record's `port`).
    pub port: u16,
    /// The Service's namespace. Absent when the agent did not know the
    /// Service (standalone mode, a Service it had not seen yet, records
    /// older than the field). Added compatibly, with `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Service's name; present exactly when `namespace` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The name of the Service port asked for, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
}

impl ServiceAddress {
    /// `namespace/name`, when the Service is known.
    pub fn service(&self) -> Option<String> {
        match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            _ => None,
        }
    }
}

/// One side of a flow, as it was when the flow was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowEndpoint {
    pub address: IpAddr,
    /// The numeric identity (see `bulkhead_api::identity` for reserved ones).
    pub identity: u32,
    /// Segmentation labels of that identity at that moment; empty for
    /// reserved identities and unlabeled endpoints.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub kind: EndpointKind,
    /// `namespace/pod`, a node or external node name, or the CIDR identity's
    /// range; absent when nothing is known (`world`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The namespace, for pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// This side runs an agent that reports the flow too (a managed endpoint).
    #[serde(default)]
    pub reported: bool,
}

/// What a flow endpoint is.
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
pub enum EndpointKind {
    Pod,
    /// A Kubernetes node's own address.
    Node,
    ExternalNode,
    /// A labeled CIDR (LabelMapping `cidrs`).
    Cidr,
    /// An address that belongs to nothing Bulkhead knows.
    #[default]
    World,
}

/// Allowed or denied.
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
pub enum FlowVerdict {
    #[default]
    Allow,
    Deny,
}

/// Why a flow got its verdict.
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
pub enum FlowReason {
    /// A rule matched.
    Policy,
    /// No rule matched: the mode's default.
    #[default]
    Default,
    /// A failsafe port of the host.
    Failsafe,
    /// An established connection that a policy change now denies.
    Reevaluated,
    /// The packet's source address was not its sender's: dropped in every
    /// mode. On a pod's interface the source names the pod that sent it
    /// (by its interface) while `source.address` is the forged address; on a
    /// host interface the sender is unknown (`world`).
    Spoofed,
    /// An ICMP or ICMPv6 error that quotes no tracked flow: not a way
    /// through (dropped in full and selective mode, a would-be deny in
    /// visibility mode).
    Unrelated,
    /// A new flow of a full-mode endpoint refused because that node's
    /// conntrack table for full-mode flows is full (established flows are
    /// never evicted for new ones).
    TableFull,
}

/// A deciding rule by name (and the compiled id, for joining with rule maps).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleRef {
    /// The SegmentationPolicy (or `networkpolicy:<ns>/<name>`).
    pub policy: String,
    /// The rule's name within the policy.
    pub name: String,
    /// The compiled rule id in that node's rule map at that time.
    pub id: u32,
}

impl FlowRecord {
    /// Whether aggregates count this record. A flow between two managed
    /// endpoints arrives twice (egress at the source's node, ingress at the
    /// destination's); the source's view counts. When the source has no
    /// agent, the destination's view is the only one.
    pub fn counts(&self) -> bool {
        self.direction == Direction::Egress || !self.source.reported
    }

    /// The aggregation key: everything but the window and the counters.
    pub fn edge(&self) -> EdgeKey<'_> {
        EdgeKey {
            node: &self.node,
            source: (&self.source.address, self.source.identity),
            destination: (&self.destination.address, self.destination.identity),
            port: self.port,
            protocol: self.protocol,
            direction: self.direction,
            verdicts: (self.verdict, self.would_verdict),
            rule: self.rule.as_ref().map(|r| r.id),
        }
    }
}

/// See [`FlowRecord::edge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeKey<'a> {
    pub node: &'a str,
    pub source: (&'a IpAddr, u32),
    pub destination: (&'a IpAddr, u32),
    pub port: u16,
    pub protocol: Protocol,
    pub direction: Direction,
    pub verdicts: (FlowVerdict, FlowVerdict),
    pub rule: Option<u32>,
}

/// What one agent lost in one window: events the ring buffer could not take,
/// records its export queue and spool had to drop. Queries surface these as
/// "records lost on node N".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LossReport {
    pub node: String,
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub start: jiff::Timestamp,
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub end: jiff::Timestamp,
    /// Flow events the datapath could not put in the ring buffer.
    #[serde(default)]
    pub ring_buffer_events: u64,
    /// Records dropped because the queue and the spool were full.
    #[serde(default)]
    pub export_records: u64,
}

/// What an agent sends to the collector in one request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowBatch {
    /// The sending node.
    pub node: String,
    /// Unique per node and batch; the collector ignores a batch id it has
    /// already stored, so a retried batch is not counted twice.
    pub batch_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<FlowRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub losses: Vec<LossReport>,
}

/// The JSON Schema of one record, as `docs/flow-v1.schema.json` holds it.
pub fn record_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(FlowRecord);
    serde_json::to_value(schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(address: &str) -> FlowEndpoint {
        FlowEndpoint {
            address: address.parse().expect("ip"),
            identity: 1000,
            labels: BTreeMap::new(),
            kind: EndpointKind::Pod,
            name: None,
            namespace: None,
            reported: true,
        }
    }

    #[test]
    fn the_source_view_counts_once() {
        let mut r = FlowRecord {
            schema: SCHEMA.into(),
            start: jiff::Timestamp::UNIX_EPOCH,
            end: jiff::Timestamp::UNIX_EPOCH,
            node: "n".into(),
            source: side("10.0.0.1"),
            destination: side("10.0.0.2"),
            port: 80,
            protocol: Protocol::Tcp,
            direction: Direction::Egress,
            verdict: FlowVerdict::Allow,
            would_verdict: FlowVerdict::Allow,
            mode: EnforcementMode::Full,
            reason: FlowReason::Default,
            rule: None,
            flows: 1,
            packets: 1,
            bytes: 60,
            service: None,
            source_hidden_by_snat: false,
        };
        assert!(r.counts());
        r.direction = Direction::Ingress;
        assert!(!r.counts(), "the destination's view of a reported source");
        r.source.reported = false;
        assert!(r.counts(), "the only view of an unmanaged source");
    }
}
