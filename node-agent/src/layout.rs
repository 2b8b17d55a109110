//! `#[repr(C)]` mirrors of every map key and value defined in `bpf/include/`.
//!
//! The C headers are the one definition; these mirrors are checked field by
//! field against the compiled object's BTF by `tests/layout.rs`. Constants
//! mirror `bpf/include/layout_types.h`.
#![allow(unsafe_code)] // aya's `Pod` is an unsafe marker trait: these are plain old data.

/// Version of the map layout; maps live under `/sys/fs/bpf/bulkhead/v<N>/`.
pub const LAYOUT_VERSION: u32 = 6;

pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

pub const ACTION_NONE: u8 = 0;
pub const ACTION_ALLOW: u8 = 1;
pub const ACTION_DENY: u8 = 2;
pub const ACTION_OVERRIDE_DENY: u8 = 3;

pub const MODE_VISIBILITY: u8 = 0;
pub const MODE_SELECTIVE: u8 = 1;
pub const MODE_FULL: u8 = 2;

pub const VERDICT_ALLOW: u8 = 1;
pub const VERDICT_DENY: u8 = 2;

pub const EP_F_HOST: u8 = 1;

pub const EVENT_NEW: u8 = 1;
pub const EVENT_DENY: u8 = 2;
pub const EVENT_WOULD_DENY: u8 = 3;
pub const EVENT_REEVAL_DENY: u8 = 4;

pub const REASON_POLICY: u8 = 0;
pub const REASON_DEFAULT: u8 = 1;
pub const REASON_FAILSAFE: u8 = 2;
pub const REASON_SPOOFED: u8 = 4;
pub const REASON_UNRELATED: u8 = 5;
pub const REASON_CT_FULL: u8 = 6;

pub const CT_F_CLOSING: u8 = 1;
/// A pod's entry for a flow it sent to a Service address: its egress is
/// judged in the entry of the translated tuple (bpf/lib/service.h).
pub const CT_F_VIA_SERVICE: u8 = 2;
/// `BH_CT_F_SNAT_HIDDEN`: the source is the node masquerading a client.
pub const CT_F_SNAT_HIDDEN: u8 = 4;
/// `BH_CT_F_TO_SERVICE`: the translated tuple of a pod's flow to a Service.
pub const CT_F_TO_SERVICE: u8 = 8;
/// `BH_FLOW_F_SNAT_HIDDEN` in `flow_event.flags`.
pub const FLOW_F_SNAT_HIDDEN: u8 = 1;
/// `BH_FLOW_F_TO_SERVICE` in `flow_event.flags`: the pod sent the flow to a
/// Service address, which its VIA_SERVICE entry names.
pub const FLOW_F_TO_SERVICE: u8 = 2;

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Bits of [`PolicyKey`] after `prefixlen`.
pub const POLICY_FULL_PREFIX: u32 = 96;
/// Bits of subject, peer and direction: always part of the prefix.
pub const POLICY_FIXED_PREFIX: u32 = 72;

/// Names of the per-CPU counters, in index order (`BH_CNT_*`).
pub const COUNTER_NAMES: [&str; 23] = [
    "packets",
    "allowed",
    "denied",
    "would_deny",
    "ct_new",
    "ct_established",
    "ct_reply",
    "reevaluated",
    "reeval_denied",
    "failsafe",
    "malformed",
    "later_fragment",
    "non_ip",
    "events_lost",
    "neighbor_discovery",
    "not_local",
    "spoofed",
    "ct_closing",
    "icmp_related",
    "icmp_unrelated",
    "ct_full",
    "via_service",
    "unbound",
];

/// `struct ipcache_v4_key`. aya's `lpm_trie::Key<[u8; 4]>` has the same layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpcacheV4Key {
    pub prefixlen: u32,
    pub addr: [u8; 4],
}

/// `struct ipcache_v6_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpcacheV6Key {
    pub prefixlen: u32,
    pub addr: [u8; 16],
}

/// `struct identity_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IdentityValue {
    pub identity: u32,
    pub pad: u32,
}

/// `struct endpoint_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub family: u8,
    pub pad: [u8; 3],
    pub addr: [u8; 16],
}

/// `struct endpoint_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointInfo {
    pub identity: u32,
    pub mode: u8,
    pub flags: u8,
    pub pad: u16,
    /// Host-side ifindex of the endpoint's veth; 0 when none is known.
    pub ifindex: u32,
}

/// `struct policy_key`; `port` is big-endian, as in the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    pub prefixlen: u32,
    pub subject: u32,
    pub peer: u32,
    pub direction: u8,
    pub protocol: u8,
    pub port_be: u16,
}

/// The bits of [`PolicyKey`] after `prefixlen`: what aya's `lpm_trie::Key` wraps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKeyData {
    pub subject: u32,
    pub peer: u32,
    pub direction: u8,
    pub protocol: u8,
    pub port_be: u16,
}

/// `struct policy_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyValue {
    pub rule_id: u32,
    pub action: u8,
    pub pad: [u8; 3],
}

/// `struct failsafe_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FailsafeKey {
    pub protocol: u8,
    pub direction: u8,
    pub port_be: u16,
}

/// `struct failsafe_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FailsafeValue {
    pub present: u32,
}

/// `struct ct_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport_be: u16,
    pub dport_be: u16,
    pub protocol: u8,
    pub family: u8,
    pub direction: u8,
    pub pad: u8,
}

/// `struct ct_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtValue {
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub created_ns: u64,
    pub report_ns: u64,
    pub generation: u32,
    pub rule_id: u32,
    pub peer_identity: u32,
    pub policy_port: u16,
    pub action: u8,
    pub verdict: u8,
    pub would_verdict: u8,
    pub reason: u8,
    pub flags: u8,
    pub pad: [u8; 5],
}

/// `struct flow_event`, as read from the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowEvent {
    pub timestamp_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub flow_ns: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub local_identity: u32,
    pub peer_identity: u32,
    pub rule_id: u32,
    pub generation: u32,
    pub ifindex: u32,
    pub sport_be: u16,
    pub dport_be: u16,
    pub family: u8,
    pub protocol: u8,
    pub direction: u8,
    pub event: u8,
    pub action: u8,
    pub verdict: u8,
    pub would_verdict: u8,
    pub mode: u8,
    pub reason: u8,
    /// `BH_FLOW_F_*`.
    pub flags: u8,
    pub pad: [u8; 6],
}

/// `struct datapath_state`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DatapathState {
    pub generation: u32,
    pub pad: u32,
}

/// `struct rule_hit_value`: one CPU's hits of one rule (`bh_rule_hits`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleHitValue {
    pub count: u64,
    pub last_hit_ns: u64,
}

// SAFETY: every type above is #[repr(C)], made only of integers and integer
// arrays, with explicit padding fields, so every bit pattern is valid and
// there are no implicit padding bytes.
unsafe impl aya::Pod for IpcacheV4Key {}
unsafe impl aya::Pod for IpcacheV6Key {}
unsafe impl aya::Pod for IdentityValue {}
unsafe impl aya::Pod for EndpointKey {}
unsafe impl aya::Pod for EndpointInfo {}
unsafe impl aya::Pod for PolicyKey {}
unsafe impl aya::Pod for PolicyKeyData {}
unsafe impl aya::Pod for PolicyValue {}
unsafe impl aya::Pod for FailsafeKey {}
unsafe impl aya::Pod for FailsafeValue {}
unsafe impl aya::Pod for CtKey {}
unsafe impl aya::Pod for CtValue {}
unsafe impl aya::Pod for FlowEvent {}
unsafe impl aya::Pod for DatapathState {}
unsafe impl aya::Pod for RuleHitValue {}

impl FlowEvent {
    /// Reads an event from ring-buffer bytes; `None` when the record is too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: the length is checked, FlowEvent is Pod (any bit pattern is
        // valid) and read_unaligned does not need the buffer to be aligned.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }
}
