//! Flattening compiled rules into policy-map entries.
//!
//! The kernel does one LPM lookup with the exact peer identity and, only when
//! that finds nothing, one with peer = ANY (see `bpf/include/policy_types.h`).
//! For that to equal the rule semantics, every entry must already carry the
//! verdict over *all* rules that match the packets it covers:
//!
//! ```text
//!  (subject S, direction D)
//!     ├─ peer P (named by some rule)  ← rules naming P  ∪ any-peer rules
//!     └─ peer ANY                     ← any-peer rules only
//!           each rule → blocks:  all traffic            prefixlen 72
//!                                one protocol           prefixlen 80
//!                                aligned port block 2^k prefixlen 96 - k
//!           each block B → resolve(rules with a block ⊇ B)
//! ```
//!
//! Aligned blocks nest or are disjoint (a laminar family), so the longest
//! block containing a packet lies inside every other block that contains it,
//! and the rules matching the packet are exactly the rules with a block
//! containing that longest one.

use std::collections::BTreeMap;

use bulkhead_api::identity::ANY;
use bulkhead_api::policy::Action;
use bulkhead_api::rule_map::{CompiledRule, Direction};

use crate::layout::{
    PolicyKey, PolicyValue, ACTION_ALLOW, ACTION_DENY, ACTION_OVERRIDE_DENY, DIR_EGRESS,
    DIR_INGRESS, POLICY_FIXED_PREFIX, POLICY_FULL_PREFIX,
};

/// A block of the (protocol, port) space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Block {
    /// Every protocol and port.
    All,
    /// One protocol; `bits` leading bits of `port` fixed (0 = every port).
    Ports { protocol: u8, port: u16, bits: u8 },
}

impl Block {
    fn prefixlen(self) -> u32 {
        match self {
            Block::All => POLICY_FIXED_PREFIX,
            Block::Ports { bits, .. } => POLICY_FIXED_PREFIX + 8 + u32::from(bits),
        }
    }

    /// The block and every block of the family that could contain it.
    fn with_ancestors(self) -> impl Iterator<Item = Block> {
        let (protocol, port, bits) = match self {
            Block::All => (0, 0, None),
            Block::Ports {
                protocol,
                port,
                bits,
            } => (protocol, port, Some(bits)),
        };
        let ports = bits.into_iter().flat_map(move |bits| {
            (0..=bits).map(move |b| Block::Ports {
                protocol,
                port: mask(port, b),
                bits: b,
            })
        });
        std::iter::once(Block::All).chain(ports)
    }
}

fn mask(port: u16, bits: u8) -> u16 {
    if bits == 0 {
        0
    } else {
        port & (u16::MAX << (16 - u32::from(bits)))
    }
}

/// Cuts `first..=last` into aligned power-of-two blocks: (start, fixed bits).
pub fn port_blocks(first: u16, last: u16) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let (mut start, end) = (u32::from(first), u32::from(last));
    while start <= end {
        let mut size_log = if start == 0 {
            16
        } else {
            start.trailing_zeros().min(16)
        };
        while start + (1 << size_log) - 1 > end {
            size_log -= 1;
        }
        // start < 65536 and size_log <= 16, so both fit.
        out.push((start as u16, (16 - size_log) as u8));
        start += 1 << size_log;
    }
    out
}

fn blocks_of(rule: &CompiledRule) -> Vec<Block> {
    if rule.ports.is_empty() {
        return vec![Block::All];
    }
    rule.ports
        .iter()
        .flat_map(|range| {
            let protocol = range.protocol.number();
            port_blocks(range.first, range.last)
                .into_iter()
                .map(move |(port, bits)| Block::Ports {
                    protocol,
                    port,
                    bits,
                })
        })
        .collect()
}

/// The winning action and lowest rule id per action, over a set of rules.
#[derive(Clone, Copy, Debug, Default)]
struct Resolution {
    override_deny: Option<u32>,
    allow: Option<u32>,
    deny: Option<u32>,
}

impl Resolution {
    fn add(&mut self, action: Action, id: u32) {
        let slot = match action {
            Action::OverrideDeny => &mut self.override_deny,
            Action::Allow => &mut self.allow,
            Action::Deny => &mut self.deny,
        };
        *slot = Some(slot.map_or(id, |old| old.min(id)));
    }

    fn merge(&mut self, other: &Resolution) {
        for (action, id) in [
            (Action::OverrideDeny, other.override_deny),
            (Action::Allow, other.allow),
            (Action::Deny, other.deny),
        ] {
            if let Some(id) = id {
                self.add(action, id);
            }
        }
    }

    fn value(&self) -> Option<PolicyValue> {
        let (action, rule_id) = if let Some(id) = self.override_deny {
            (ACTION_OVERRIDE_DENY, id)
        } else if let Some(id) = self.allow {
            (ACTION_ALLOW, id)
        } else {
            (ACTION_DENY, self.deny?)
        };
        Some(PolicyValue {
            rule_id,
            action,
            pad: [0; 3],
        })
    }
}

/// The map's direction byte.
pub fn direction_byte(direction: Direction) -> u8 {
    match direction {
        Direction::Ingress => DIR_INGRESS,
        Direction::Egress => DIR_EGRESS,
    }
}

#[derive(Default)]
struct Group<'a> {
    any_peer: Vec<&'a CompiledRule>,
    by_peer: BTreeMap<u32, Vec<&'a CompiledRule>>,
}

/// All policy-map entries for `rules`.
pub fn flatten(rules: &[CompiledRule]) -> BTreeMap<PolicyKey, PolicyValue> {
    let mut groups: BTreeMap<(u32, u8), Group<'_>> = BTreeMap::new();
    for rule in rules {
        for &subject in &rule.subjects {
            let group = groups
                .entry((subject, direction_byte(rule.direction)))
                .or_default();
            if rule.any_peer {
                group.any_peer.push(rule);
            } else {
                for &peer in rule.peers.iter().filter(|&&p| p != ANY) {
                    group.by_peer.entry(peer).or_default().push(rule);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for ((subject, direction), group) in &groups {
        if !group.any_peer.is_empty() {
            emit(
                &mut out,
                *subject,
                *direction,
                ANY,
                group.any_peer.iter().copied(),
            );
        }
        for (peer, rules) in &group.by_peer {
            let all = rules.iter().chain(group.any_peer.iter()).copied();
            emit(&mut out, *subject, *direction, *peer, all);
        }
    }
    out
}

fn emit<'a>(
    out: &mut BTreeMap<PolicyKey, PolicyValue>,
    subject: u32,
    direction: u8,
    peer: u32,
    rules: impl Iterator<Item = &'a CompiledRule>,
) {
    let mut own: BTreeMap<Block, Resolution> = BTreeMap::new();
    for rule in rules {
        for block in blocks_of(rule) {
            own.entry(block).or_default().add(rule.action, rule.id);
        }
    }
    for block in own.keys() {
        let mut resolved = Resolution::default();
        for ancestor in block.with_ancestors() {
            if let Some(r) = own.get(&ancestor) {
                resolved.merge(r);
            }
        }
        let Some(value) = resolved.value() else {
            continue;
        };
        let (protocol, port) = match *block {
            Block::All => (0, 0),
            Block::Ports { protocol, port, .. } => (protocol, port),
        };
        let key = PolicyKey {
            prefixlen: block.prefixlen(),
            subject,
            peer,
            direction,
            protocol,
            port_be: port.to_be(),
        };
        out.insert(key, value);
    }
}

/// What the kernel's two LPM lookups return for a packet, computed over the
/// flattened entries: a model of `bh_policy_lookup` for tests and tools.
pub fn lookup(
    entries: &BTreeMap<PolicyKey, PolicyValue>,
    subject: u32,
    direction: u8,
    peer: u32,
    protocol: u8,
    port: u16,
) -> Option<PolicyValue> {
    let longest = |peer: u32| {
        (0..=16u8)
            .rev()
            .map(|bits| {
                (
                    POLICY_FIXED_PREFIX + 8 + u32::from(bits),
                    protocol,
                    mask(port, bits),
                )
            })
            .chain(std::iter::once((POLICY_FIXED_PREFIX, 0, 0)))
            .find_map(|(prefixlen, protocol, port)| {
                let key = PolicyKey {
                    prefixlen,
                    subject,
                    peer,
                    direction,
                    protocol,
                    port_be: port.to_be(),
                };
                entries.get(&key).copied()
            })
    };
    const { assert!(POLICY_FIXED_PREFIX + 24 == POLICY_FULL_PREFIX) };
    longest(peer).or_else(|| if peer == ANY { None } else { longest(ANY) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_blocks_cover_exactly() {
        for (first, last) in [
            (0, 65535),
            (80, 80),
            (1, 65535),
            (1000, 2000),
            (0, 0),
            (65535, 65535),
            (3, 17),
        ] {
            let blocks = port_blocks(first, last);
            let mut covered = 0u32;
            let mut next = u32::from(first);
            for (start, bits) in &blocks {
                let size = 1u32 << (16 - u32::from(*bits));
                assert_eq!(u32::from(*start), next, "contiguous");
                assert_eq!(u32::from(*start) % size, 0, "aligned");
                next += size;
                covered += size;
            }
            assert_eq!(covered, u32::from(last) - u32::from(first) + 1);
        }
        assert_eq!(port_blocks(0, 65535), vec![(0, 0)]);
        assert_eq!(port_blocks(1000, 2000).len(), 8);
    }
}
