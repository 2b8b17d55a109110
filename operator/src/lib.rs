//! The Bulkhead operator: cluster state in, rule maps out.
//!
//! ```text
//!  watches (feed.rs)                      engine.rs                     publish.rs / status.rs
//!  Pods ─────────┐                                                       (leader only)
//!  Namespaces ───┤  Change   ┌───────────────────────────┐  Output   ┌─► NodeRuleMap per node (SSA)
//!  Nodes ────────┼─────────► │ bulkhead_policy::Compiler │ ────────► ├─► IdentityMap shards (SSA)
//!  ExternalNodes ┤           │ (incremental after sync)  │           ├─► policy / mapping status
//!  LabelMappings ┤           └───────────────────────────┘           └─► Events
//!  SegPolicies ──┘                         ▲
//!  NodeRuleMaps, IdentityMaps ─────────────┘ what is published, and what agents programmed
//! ```
//!
//! Nothing is published until every watch has listed once: a partial
//! picture would withdraw rules that are merely not seen yet. Identities
//! survive restarts and failovers: the compiler starts from the allocation
//! published in the IdentityMaps (numbers in use and in quarantine), and a
//! replica that wins the Lease re-reads them before it publishes anything.
//! Only the holder of the Lease (leader.rs) writes, and every call has a
//! deadline (call.rs). Promotion gates (promotion.rs) ask the collector
//! (collector.rs) and change only the *effective* mode the compiler reads,
//! never a spec. Agents' status writes cost a status pass, the echo
//! of the operator's own writes nothing.

#![forbid(unsafe_code)]

pub mod call;
pub mod collector;
pub mod engine;
pub mod exceptions;
pub mod feed;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod heartbeat;
pub mod hits;
pub mod http;
pub mod kpi;
pub mod leader;
pub mod metrics;
pub mod observed;
pub mod promotion;
pub mod publish;
pub mod status;

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "bulkhead-operator";

/// Errors of the operator's parts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, naming the object.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A call to the API server got no answer in time.
    #[error("{action}: no answer from the API server within {after:?}")]
    Timeout {
        /// What was being done, naming the object.
        action: String,
        /// How long it waited.
        after: std::time::Duration,
    },
    /// An object could not be serialized.
    #[error("serializing {0}: {1}")]
    Serialize(String, serde_json::Error),
}

impl Error {
    /// Wraps a client error with what was being done.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}
