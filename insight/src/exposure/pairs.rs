//! One (source, destination) pair through the verdict function, over every
//! port: the ports are cut into ranges where a verdict can change.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use bulkhead_api::identity::{HOST, WORLD};
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::{CompiledRule, Direction, FailsafePort, NodeRuleMapSpec};
use bulkhead_policy::verdict::{deciding_rule, enforced, policy_verdict, Verdict};
use bulkhead_policy::Output;
use ipnet::IpNet;

use super::PROTOCOLS;

/// One node's rule map, prepared once: its own addresses parsed, and its
/// rules split by subject identity (a rule can only decide for its subjects,
/// so the verdict function sees the same answer from the shorter list).
pub(super) struct NodeView<'a> {
    pub(super) host: Vec<IpAddr>,
    failsafe: &'a [FailsafePort],
    /// Per subject identity: its rules, and their class ([`RuleClasses`]).
    rules: HashMap<u32, (u32, Vec<CompiledRule>)>,
}

/// Numbers the distinct rule lists a subject can have, with the subjects
/// left out: a rule only decides for its subjects, so two endpoints (of any
/// identity, on any node) whose lists are equal without them get the same
/// verdict from every peer. Class 0 is "no rules".
#[derive(Default)]
pub(super) struct RuleClasses(HashMap<Vec<CompiledRule>, u32>);

impl RuleClasses {
    fn class(&mut self, rules: &[CompiledRule]) -> u32 {
        if rules.is_empty() {
            return 0;
        }
        let mut key: Vec<CompiledRule> = rules
            .iter()
            .map(|r| CompiledRule {
                subjects: Vec::new(),
                ..r.clone()
            })
            .collect();
        key.sort();
        let next = self.0.len() as u32 + 1;
        *self.0.entry(key).or_insert(next)
    }
}

/// Peer identities that every rule treats alike: a peer enters the verdict
/// function only through `rule.peers.binary_search`, so identities that are
/// in the same peer lists (of every rule of every node) get the same
/// verdicts. `canon` maps each to one representative of its kind.
pub(super) struct PeerClasses {
    member_of: HashMap<u32, Vec<u32>>,
    reps: HashMap<Vec<u32>, u32>,
}

impl PeerClasses {
    pub(super) fn new(out: &Output) -> Self {
        let mut lists: HashMap<&[u32], u32> = HashMap::new();
        let mut member_of: HashMap<u32, Vec<u32>> = HashMap::new();
        for r in out.rule_maps.values().flat_map(|m| &m.rules) {
            let next = lists.len() as u32;
            if let std::collections::hash_map::Entry::Vacant(v) = lists.entry(&r.peers) {
                v.insert(next);
                // Lists are numbered in the order met, so each member's
                // list of lists stays sorted.
                for p in &r.peers {
                    member_of.entry(*p).or_default().push(next);
                }
            }
        }
        Self {
            member_of,
            reps: HashMap::new(),
        }
    }

    pub(super) fn canon(&mut self, identity: u32) -> u32 {
        let lists = self.member_of.get(&identity).cloned().unwrap_or_default();
        *self.reps.entry(lists).or_insert(identity)
    }
}

impl<'a> NodeView<'a> {
    pub(super) fn new(map: &'a NodeRuleMapSpec, classes: &mut RuleClasses) -> Self {
        let mut rules: HashMap<u32, Vec<CompiledRule>> = HashMap::new();
        for r in &map.rules {
            for s in &r.subjects {
                rules.entry(*s).or_default().push(r.clone());
            }
        }
        Self {
            host: map
                .host
                .addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            failsafe: &map.failsafe_ports,
            rules: rules
                .into_iter()
                .map(|(id, v)| (id, (classes.class(&v), v)))
                .collect(),
        }
    }

    pub(super) fn side(
        &'a self,
        node: &'a str,
        identity: u32,
        mode: EnforcementMode,
        is_host: bool,
    ) -> Side<'a> {
        let (class, rules) = self
            .rules
            .get(&identity)
            .map_or((0, &[][..]), |(c, v)| (*c, v.as_slice()));
        Side {
            node,
            view: self,
            rules,
            class,
            identity,
            mode,
            is_host,
        }
    }
}

/// A managed endpoint, as the verdict function needs it.
#[derive(Clone, Copy)]
pub(super) struct Side<'a> {
    pub(super) node: &'a str,
    view: &'a NodeView<'a>,
    /// The node's rules with this endpoint's identity among their subjects.
    rules: &'a [CompiledRule],
    /// The [`RuleClasses`] class of `rules`.
    class: u32,
    pub(super) identity: u32,
    pub(super) mode: EnforcementMode,
    pub(super) is_host: bool,
}

pub(super) struct Source<'a> {
    pub(super) managed: Option<Side<'a>>,
    pub(super) address: Option<IpAddr>,
    /// The identity other nodes give it.
    pub(super) seen: u32,
}

/// Longest-prefix match over the identity maps, parsed once.
pub(super) struct Prefixes(Vec<(IpNet, u32)>);

impl Prefixes {
    pub(super) fn new(out: &Output) -> Self {
        let mut v: Vec<(IpNet, u32)> = out
            .identity_maps
            .iter()
            .flat_map(|s| &s.prefixes)
            .filter_map(|e| Some((e.cidr.parse::<IpNet>().ok()?, e.identity)))
            .collect();
        v.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Self(v)
    }

    pub(super) fn lookup(&self, addr: IpAddr) -> u32 {
        self.0
            .iter()
            .find(|(n, _)| n.contains(&addr))
            .map_or(WORLD, |(_, id)| *id)
    }
}

/// The identity `local`'s node gives a peer (as `simulate::peer_identity`).
pub(super) fn seen_by(local: &Side<'_>, addr: Option<IpAddr>, elsewhere: u32) -> u32 {
    match addr {
        Some(a) if local.view.host.contains(&a) => HOST,
        _ => elsewhere,
    }
}

fn side_allows(
    s: &Side<'_>,
    dir: Direction,
    peer: u32,
    proto: Protocol,
    port: u16,
    full: bool,
) -> bool {
    let failsafe = s.is_host
        && s.view
            .failsafe
            .iter()
            .any(|f| f.direction == dir && f.protocol == proto && f.port == port);
    if failsafe {
        return true;
    }
    let action = deciding_rule(s.rules, s.identity, dir, peer, proto, port).map(|r| r.action);
    let v = if full {
        policy_verdict(action)
    } else {
        enforced(s.mode, action)
    };
    v == Verdict::Allow
}

/// Where verdicts can change for `proto` on this side: rule range edges and
/// failsafe ports.
fn cuts(s: &Side<'_>, dir: Direction, proto: Protocol, into: &mut BTreeSet<u32>) {
    for r in s.rules.iter().filter(|r| r.direction == dir) {
        if r.subjects.binary_search(&s.identity).is_err() {
            continue;
        }
        for p in r.ports.iter().filter(|p| p.protocol == proto) {
            into.insert(u32::from(p.first));
            into.insert(u32::from(p.last) + 1);
        }
    }
    if s.is_host {
        for f in s
            .view
            .failsafe
            .iter()
            .filter(|f| f.direction == dir && f.protocol == proto)
        {
            into.insert(u32::from(f.port));
            into.insert(u32::from(f.port) + 1);
        }
    }
}

/// What one (source, destination) pair can do.
pub(super) struct PairReach {
    /// Ports reachable now, and if both sides were in full enforcement.
    pub(super) now: u64,
    pub(super) full: u64,
    /// At each risky port: (reachable now, reachable if full).
    pub(super) risky: Vec<(bool, bool)>,
}

/// What a pair's verdicts depend on from one side, besides the identity the
/// other side sees: its rules' class, its mode, and for a host its node
/// (failsafe ports are a node's).
pub(super) type SideKey<'a> = (u32, EnforcementMode, Option<&'a str>);

impl<'a> Side<'a> {
    pub(super) fn key(&self) -> SideKey<'a> {
        (self.class, self.mode, self.is_host.then_some(self.node))
    }
}

/// Every port of every protocol, and each risky port.
pub(super) fn pair(
    src: &Source<'_>,
    src_seen_dst: u32,
    dst: &Side<'_>,
    dst_seen_src: u32,
    risky: &[(Protocol, u16)],
) -> PairReach {
    let allows = |proto: Protocol, port: u16, full: bool| {
        src.managed
            .as_ref()
            .is_none_or(|s| side_allows(s, Direction::Egress, src_seen_dst, proto, port, full))
            && side_allows(dst, Direction::Ingress, dst_seen_src, proto, port, full)
    };
    let (mut now, mut full) = (0u64, 0u64);
    for proto in PROTOCOLS {
        let mut points = BTreeSet::from([1u32, 65_536]);
        if let Some(s) = &src.managed {
            cuts(s, Direction::Egress, proto, &mut points);
        }
        cuts(dst, Direction::Ingress, proto, &mut points);
        let points: Vec<u32> = points
            .into_iter()
            .filter(|p| (1..=65_536).contains(p))
            .collect();
        for w in points.windows(2) {
            let (Ok(port), len) = (u16::try_from(w[0]), u64::from(w[1] - w[0])) else {
                continue;
            };
            now += len * u64::from(allows(proto, port, false));
            full += len * u64::from(allows(proto, port, true));
        }
    }
    let risky = risky
        .iter()
        .map(|(proto, port)| (allows(*proto, *port, false), allows(*proto, *port, true)))
        .collect();
    PairReach { now, full, risky }
}
