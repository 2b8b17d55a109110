//! kstatus-style conditions shared by every Bulkhead status.
//!
//! `Ready`, `Reconciling` and `Stalled` with `observedGeneration`, so Flux,
//! Argo CD and `kubectl wait` judge health without plugins.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition types Bulkhead writes.
pub mod types {
    /// The object's desired state is in effect everywhere it applies.
    pub const READY: &str = "Ready";
    /// Work towards the desired state is under way.
    pub const RECONCILING: &str = "Reconciling";
    /// Progress is blocked by an error that needs a person.
    pub const STALLED: &str = "Stalled";
}

/// One observation of an object's state, in the Kubernetes condition shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The kind of condition: `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase word a program can switch on.
    pub reason: String,
    /// What a person needs to know, in a sentence.
    #[serde(default)]
    pub message: String,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// The three-valued status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}
