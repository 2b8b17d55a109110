//! Reserved numeric identities, shared by the compiler, the agent and the BPF programs.
//!
//! Numbers below [`FIRST_ALLOCATED`] are reserved; `0` never names an
//! identity and stands for "any peer" in policy map keys.

/// Wildcard in policy keys; never an endpoint's identity.
pub const ANY: u32 = 0;
/// The node an endpoint runs on, as seen from that node.
pub const HOST: u32 = 1;
/// Any address Bulkhead knows nothing about.
pub const WORLD: u32 = 2;
/// A managed endpoint that no LabelMapping gives a segmentation label.
pub const UNLABELED: u32 = 3;
/// Another node of the cluster that has no segmentation labels.
pub const REMOTE_NODE: u32 = 4;
/// The first number handed out for a label set.
pub const FIRST_ALLOCATED: u32 = 256;

/// The label key that ties a CIDR identity to its prefix.
pub const CIDR_LABEL: &str = "bulkhead.dev/cidr";

/// A person-readable name for a reserved identity.
pub fn reserved_name(id: u32) -> Option<&'static str> {
    Some(match id {
        ANY => "any",
        HOST => "reserved:host",
        WORLD => "reserved:world",
        UNLABELED => "reserved:unlabeled",
        REMOTE_NODE => "reserved:remote-node",
        _ => return None,
    })
}
