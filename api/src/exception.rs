//! `SegmentationException`: a narrow, time-bound allow that a person asks
//! for and another person approves.
//!
//! ```text
//!  requester ── kubectl bulkhead exception request ──► spec (no approvedBy)
//!                                                        │  status.state: Pending
//!  approver (another person, in the approvers' group)    │
//!     └── kubectl bulkhead exception approve ──► spec.approvedBy = approver
//!                                                        │  ValidatingAdmissionPolicy checks
//!                                                        │  request.userInfo (see the chart)
//!  operator: one allow rule {scope, direction, peers, ports}, expiring at
//!  spec.expiresAt ──► compiled beside the SegmentationPolicies
//!                                                        │  status.state: Active
//!  expiresAt ──► the rule leaves every rule map; Event   │  status.state: Expired
//! ```
//!
//! The allow beats `deny` and the `full` mode's default, never an
//! `overrideDeny`. CRD rules have no clock, so the bound on `expiresAt` (at
//! most 90 days after the request by default) is checked by the admission
//! policy against `metadata.creationTimestamp`, and again by the operator,
//! which refuses an exception that runs longer and says so in its status.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::policy::{Peer, PortSpec, Scope};
use crate::rule_map::Direction;

/// A time-bound, narrow allow for the endpoints in `scope`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bulkhead.dev",
    version = "v1alpha1",
    kind = "SegmentationException",
    plural = "segmentationexceptions",
    shortname = "segex",
    category = "bulkhead",
    status = "SegmentationExceptionStatus",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state","description":"Pending, Active, Expired or Refused"}"#,
    printcolumn = r#"{"name":"Requester","type":"string","jsonPath":".spec.requester"}"#,
    printcolumn = r#"{"name":"Approved By","type":"string","jsonPath":".spec.approvedBy"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Ticket","type":"string","jsonPath":".spec.ticket","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.ports.all(p, has(p.port) || p.protocol in ['ICMP', 'ICMPv6'])",
        "message": "every port of an exception names a port: an exception is narrow, never every port of a protocol",
        "fieldPath": ".ports"
    },
    {
        "rule": "self.peers.all(p, !has(p.reserved) || p.reserved != 'world') && self.peers.all(p, !has(p.cidr) || !p.cidr.endsWith('/0'))",
        "message": "an exception's peers are narrow: not world and not a /0 range",
        "fieldPath": ".peers"
    },
    {
        "rule": "!has(self.approvedBy) || self.approvedBy != self.requester",
        "message": "the requester cannot approve their own exception",
        "fieldPath": ".approvedBy"
    }
]))]
pub struct SegmentationExceptionSpec {
    /// The endpoints the exception lets traffic reach (ingress) or leave (egress).
    pub scope: Scope,
    /// Which way the allowed traffic goes, seen from the endpoints in scope.
    pub direction: Direction,
    /// The other side, as in a rule; at least one.
    #[schemars(length(min = 1, max = 8))]
    pub peers: Vec<Peer>,
    /// Protocols and ports, as in a rule; at least one, each naming a port.
    #[schemars(length(min = 1, max = 8))]
    pub ports: Vec<PortSpec>,
    /// Who asks for it: the user name the API server knows them by (the
    /// admission policy checks that it is the creator).
    #[schemars(length(min = 1, max = 253))]
    pub requester: String,
    /// Why the connection is needed.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// The request or change ticket.
    #[schemars(length(min = 1, max = 128))]
    pub ticket: String,
    /// When it ends (RFC 3339). Required: at most 90 days after the request
    /// by default (the admission policy and the operator check it).
    #[schemars(length(max = 64), extend("format" = "date-time"))]
    pub expires_at: String,
    /// Who approved it, set by the approver themselves: a different person
    /// from the requester, in the approvers' group. Enforced only once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub approved_by: Option<String>,
}

/// Where an exception stands.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum ExceptionState {
    /// Requested, waiting for an approval: not enforced.
    Pending,
    /// Approved and not yet expired: enforced.
    Active,
    /// `expiresAt` has passed: no longer enforced.
    Expired,
    /// The operator will not enforce it (it runs too long, or it cannot be
    /// compiled); `message` says why.
    Refused,
}

impl ExceptionState {
    /// The name used in status, metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionState::Pending => "Pending",
            ExceptionState::Active => "Active",
            ExceptionState::Expired => "Expired",
            ExceptionState::Refused => "Refused",
        }
    }
}

/// What the operator observed about an exception.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentationExceptionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Active, Expired or Refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ExceptionState>,
    /// Why it is in that state, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The name of the policy it is compiled as (`exception:<name>`), in
    /// verdicts and flow logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `Ready` (enforced), with the state as its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
