//! Gated promotion: a SegmentationPolicy moves its endpoints to a stricter
//! mode on its own once the flow history shows that nothing they really do
//! would be blocked.
//!
//! ```text
//!  spec.enforcement: visibility          (what a person wrote; never rewritten)
//!  spec.promotion: {to: full, after: {observedFor: 35d, quietFor: 14d}}
//!        │
//!        │  operator, every check: the collector's would-deny records
//!        │  touching the scope, since max(now - quietFor, created)
//!        ▼
//!  status.effectiveMode: full            (what is compiled)
//!  status.promotion: {state, opensAt, lastWouldDeny, promotedAt, ...}
//!  status.conditions[type=Promoted]
//! ```
//!
//! The operator changes only status. Demotion is a person's change: remove
//! `promotion`, or point `to` at another mode.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::{EnforcementMode, Protocol};

/// The condition type that says whether a policy's promotion happened.
pub const PROMOTED: &str = "Promoted";

/// Where a policy goes once its gate opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.to != 'visibility'",
        "message": "promotion.to must be selective or full: promoting to visibility enforces nothing"
    }
]))]
pub struct Promotion {
    /// The mode the endpoints in scope move to when the gate opens:
    /// `selective` or `full`. It must be stricter than `enforcement`.
    pub to: EnforcementMode,
    /// When the gate opens.
    pub after: PromotionGate,
}

/// How much quiet history a promotion needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionGate {
    /// How long the policy must have been in effect (and its traffic
    /// observed) before it can be promoted, such as `35d`: long enough to see
    /// monthly jobs and DR tests. Units: `s`, `m`, `h`, `d`, `w`.
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]+(s|m|h|d|w)$"))]
    pub observed_for: String,
    /// How long no flow touching the scope may have been would-be denied
    /// (denied once promoted) before it can be promoted, such as `14d`.
    /// Units: `s`, `m`, `h`, `d`, `w`.
    #[schemars(length(max = 16), regex(pattern = r"^[1-9][0-9]*(s|m|h|d|w)$"))]
    pub quiet_for: String,
}

/// Where a promotion gate stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PromotionState {
    /// Not enough history since the policy took effect.
    #[default]
    Observing,
    /// A flow touching the scope was would-be denied inside the quiet window.
    Blocked,
    /// The collector could not answer (or its answer was incomplete):
    /// nothing is promoted until it can.
    Unknown,
    /// The gate opened and the effective mode is `to`.
    Promoted,
    /// The gate cannot be evaluated as written.
    Invalid,
}

/// The gate's progress, as of the last check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStatus {
    pub state: PromotionState,
    /// The mode it promotes to.
    pub to: EnforcementMode,
    /// When the gate's clock started: the policy's creation (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observing_since: Option<String>,
    /// The earliest time the gate can open if nothing else is would-be
    /// denied (RFC 3339); absent once promoted, or when it cannot be known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<String>,
    /// The latest would-be denied flow that holds the gate shut (or, once
    /// promoted, the latest flow the promotion denies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_would_deny: Option<WouldDenySample>,
    /// When the effective mode became `to` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<String>,
    /// What a person needs to know, in a sentence.
    #[serde(default)]
    pub message: String,
}

/// One would-be denied flow, by the labels and names it carried when seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WouldDenySample {
    /// The end of the record's window (RFC 3339).
    pub seen: String,
    /// `namespace/pod`, a node name, or the address, of the source.
    pub from: String,
    /// The same for the destination.
    pub to: String,
    pub port: u16,
    pub protocol: Protocol,
    /// Flows of that edge in the quiet window.
    pub flows: u64,
}
