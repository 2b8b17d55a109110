//! A NodeRuleMap and IdentityMap shards, for the agent's translation target.
//!
//! Addresses and CIDRs come mostly from a small vocabulary (so they collide),
//! sometimes from the raw bytes (so the parsers see junk); rule ids are
//! unique as the compiler guarantees, except for an occasional 0.

use arbitrary::{Arbitrary, Result, Unstructured};
use bulkhead_api::identity_map::PrefixEntry;
use bulkhead_api::policy::{Action, EnforcementMode, Protocol};
use bulkhead_api::rule_map::{
    CompiledRule, Direction, FailsafePort, LocalEndpoint, NodeKind, NodeRuleMapSpec, PortRange,
};
use bulkhead_api::IdentityMapSpec;

const ADDRESSES: [&str; 10] = [
    "10.1.0.1",
    "10.1.0.2",
    "10.1.0.2/32",
    "192.168.0.1",
    "fd00::1:1",
    "fd00::1:2/128",
    "fe80::1",
    "::ffff:10.1.0.1",
    "10.1.0.0/24",
    " 10.1.0.3 ",
];
const CIDRS: [&str; 10] = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.0.7/16",
    "0.0.0.0/0",
    "10.1.0.1",
    "::/0",
    "fd00::/8",
    "fd00::1:1/128",
    "10.1.0.0/33",
    "not-a-cidr",
];
pub const SUBJECTS: [u32; 3] = [300, 301, 302];
pub const PEERS: [u32; 5] = [1, 2, 256, 257, 300];
pub const PROTOCOLS: [Protocol; 5] = [
    Protocol::Tcp,
    Protocol::Udp,
    Protocol::Sctp,
    Protocol::Icmp,
    Protocol::Icmpv6,
];
const MODES: [EnforcementMode; 3] = [
    EnforcementMode::Visibility,
    EnforcementMode::Selective,
    EnforcementMode::Full,
];

fn text(u: &mut Unstructured<'_>, vocabulary: &[&str]) -> Result<String> {
    if u.ratio(1, 10)? {
        Ok(<&str>::arbitrary(u)?.to_string())
    } else {
        Ok((*u.choose(vocabulary)?).to_string())
    }
}

fn port(u: &mut Unstructured<'_>) -> Result<u16> {
    Ok(match u.int_in_range(0..=3)? {
        0 => u.int_in_range(0..=40)?,
        1 => u.int_in_range(65500..=65535)?,
        2 => *u.choose(&[0u16, 80, 443, 8080, 65535])?,
        _ => u.arbitrary()?,
    })
}

fn endpoint(u: &mut Unstructured<'_>, name: String) -> Result<LocalEndpoint> {
    let mut addresses = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        addresses.push(text(u, &ADDRESSES)?);
    }
    Ok(LocalEndpoint {
        name,
        addresses,
        identity: *u.choose(&SUBJECTS)?,
        mode: *u.choose(&MODES)?,
    })
}

fn rule(u: &mut Unstructured<'_>, id: u32) -> Result<CompiledRule> {
    let any_peer = u.ratio(1, 4)?;
    let mut peers = Vec::new();
    if !any_peer {
        for _ in 0..u.int_in_range(1..=3)? {
            peers.push(*u.choose(&PEERS)?);
        }
    }
    let mut subjects = Vec::new();
    for _ in 0..u.int_in_range(1..=2)? {
        subjects.push(*u.choose(&SUBJECTS)?);
    }
    // Sorted and without duplicates, as the compiler writes them (the
    // verdict function binary-searches them; the agent's flatten does not care).
    subjects.sort_unstable();
    subjects.dedup();
    peers.sort_unstable();
    peers.dedup();
    let mut ports = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let first = port(u)?;
        let last = if u.ratio(1, 10)? {
            u16::MAX
        } else if u.ratio(1, 20)? {
            first.saturating_sub(1) // first > last: must be refused
        } else {
            first.saturating_add(u.int_in_range(0..=300)?)
        };
        ports.push(PortRange {
            protocol: *u.choose(&PROTOCOLS)?,
            first,
            last,
        });
    }
    Ok(CompiledRule {
        id,
        policy: "p".into(),
        rule: format!("r{id}"),
        direction: if u.arbitrary()? {
            Direction::Ingress
        } else {
            Direction::Egress
        },
        action: *u.choose(&[Action::Allow, Action::Deny, Action::OverrideDeny])?,
        subjects,
        any_peer,
        peers: peers.into(),
        ports,
    })
}

/// A packet to look up: (subject, ingress, peer, protocol, port).
pub type Packet = (u32, bool, u32, Protocol, u16);

/// The rule map, its shards, and packets to judge against it.
#[derive(Debug)]
pub struct Translation {
    pub rule_map: NodeRuleMapSpec,
    pub shards: Vec<IdentityMapSpec>,
    pub packets: Vec<Packet>,
    /// Text for the host-route parsers (/proc/net/route, ipv6_route).
    pub routes: String,
}

impl<'a> Arbitrary<'a> for Translation {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let host = endpoint(u, "node".into())?;
        let mut endpoints = Vec::new();
        for i in 0..u.int_in_range(0..=4)? {
            endpoints.push(endpoint(u, format!("ns/p{i}"))?);
        }
        let mut rules = Vec::new();
        let first_id = if u.ratio(1, 20)? { 0 } else { 1 };
        for i in 0..u.int_in_range(0..=10u32)? {
            rules.push(rule(u, first_id + i * 7 % 23)?);
        }
        let mut failsafe_ports = Vec::new();
        for _ in 0..u.int_in_range(0..=2)? {
            failsafe_ports.push(FailsafePort {
                protocol: *u.choose(&PROTOCOLS)?,
                port: port(u)?,
                direction: if u.arbitrary()? {
                    Direction::Ingress
                } else {
                    Direction::Egress
                },
            });
        }
        let mut shards = Vec::new();
        for shard in 0..u.int_in_range(0..=2)? {
            let mut prefixes = Vec::new();
            for _ in 0..u.int_in_range(0..=4)? {
                prefixes.push(PrefixEntry {
                    cidr: text(u, &CIDRS)?,
                    identity: *u.choose(&PEERS)?,
                    owner: None,
                });
            }
            shards.push(IdentityMapSpec {
                shard,
                shards: 2,
                identities: Vec::new(),
                prefixes,
                released: Vec::new(),
            });
        }
        let mut packets = Vec::new();
        for _ in 0..u.int_in_range(1..=16)? {
            packets.push((
                *u.choose(&SUBJECTS)?,
                u.arbitrary()?,
                if u.ratio(1, 8)? {
                    4242
                } else {
                    *u.choose(&PEERS)?
                },
                *u.choose(&PROTOCOLS)?,
                port(u)?,
            ));
        }
        Ok(Translation {
            rule_map: NodeRuleMapSpec {
                node_kind: NodeKind::Node,
                host,
                endpoints,
                rules,
                failsafe_ports,
            },
            shards,
            packets,
            routes: <&str>::arbitrary(u).unwrap_or_default().to_string(),
        })
    }
}
