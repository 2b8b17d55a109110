//! The compiler's verdict for many flows over one output, indexed.
//!
//! `bulkhead_policy::simulate` answers one flow by scanning every endpoint,
//! prefix and rule; a replay asks the same output thousands of times. This
//! indexes the output once (address → local endpoint, address → identity,
//! (subject, direction) → rules) and decides with the compiler's own
//! `rule_matches`, `precedence` and `enforced`; a test holds it equal to
//! `simulate` on every flow of the ground-truth history.

use std::collections::HashMap;
use std::net::IpAddr;

use bulkhead_api::identity::{HOST, WORLD};
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::{CompiledRule, Direction, NodeRuleMapSpec};
use bulkhead_policy::verdict::{enforced, precedence, rule_matches};
use bulkhead_policy::{Output, Verdict};
use ipnet::IpNet;

struct Local<'a> {
    map: &'a NodeRuleMapSpec,
    /// Index of the map in `Judge::maps`.
    node: usize,
    identity: u32,
    mode: EnforcementMode,
    is_host: bool,
}

struct NodeIndex<'a> {
    own: Vec<IpAddr>,
    rules: HashMap<(u32, Direction), Vec<&'a CompiledRule>>,
}

/// An output, indexed for judging flows by address.
pub(crate) struct Judge<'a> {
    locals: HashMap<IpAddr, Local<'a>>,
    maps: Vec<NodeIndex<'a>>,
    exact: HashMap<IpAddr, u32>,
    /// Prefixes shorter than a host route, longest first.
    prefixes: Vec<(IpNet, u32)>,
}

impl<'a> Judge<'a> {
    pub(crate) fn new(out: &'a Output) -> Self {
        let mut locals = HashMap::new();
        let mut maps = Vec::new();
        let parse = |a: &String| a.parse::<IpAddr>().ok();
        for (node, map) in out.rule_maps.values().enumerate() {
            let mut rules: HashMap<(u32, Direction), Vec<&CompiledRule>> = HashMap::new();
            for rule in &map.rules {
                for s in &rule.subjects {
                    rules.entry((*s, rule.direction)).or_default().push(rule);
                }
            }
            let own: Vec<IpAddr> = map.host.addresses.iter().filter_map(parse).collect();
            // First owner wins, as simulate's scan in map order finds it:
            // the host of a map before its endpoints.
            for a in &own {
                locals.entry(*a).or_insert(Local {
                    map,
                    node,
                    identity: map.host.identity,
                    mode: map.host.mode,
                    is_host: true,
                });
            }
            for ep in &map.endpoints {
                for a in ep.addresses.iter().filter_map(parse) {
                    locals.entry(a).or_insert(Local {
                        map,
                        node,
                        identity: ep.identity,
                        mode: ep.mode,
                        is_host: false,
                    });
                }
            }
            maps.push(NodeIndex { own, rules });
        }
        let mut exact = HashMap::new();
        let mut prefixes = Vec::new();
        for shard in &out.identity_maps {
            for entry in &shard.prefixes {
                let Ok(net) = entry.cidr.parse::<IpNet>() else {
                    continue;
                };
                if net.prefix_len() == net.max_prefix_len() {
                    // Equal host routes: the first one listed wins, as in simulate.
                    exact.entry(net.addr()).or_insert(entry.identity);
                } else {
                    prefixes.push((net, entry.identity));
                }
            }
        }
        // Stable: among equal lengths, the first listed wins.
        prefixes.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Self {
            locals,
            maps,
            exact,
            prefixes,
        }
    }

    /// What is enforced on `source` → `destination`: deny when either
    /// managed side drops it in its mode.
    pub(crate) fn verdict(
        &self,
        source: IpAddr,
        destination: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Verdict {
        if source.is_ipv4() != destination.is_ipv4() {
            // No packet goes between families: nothing to enforce (as
            // simulate refuses such a pair).
            return Verdict::Allow;
        }
        let sides = [
            (source, Direction::Egress, destination),
            (destination, Direction::Ingress, source),
        ];
        for (at, direction, peer) in sides {
            if let Some(local) = self.locals.get(&at) {
                if self.side(local, direction, peer, protocol, port) == Verdict::Deny {
                    return Verdict::Deny;
                }
            }
        }
        Verdict::Allow
    }

    fn side(
        &self,
        local: &Local<'_>,
        direction: Direction,
        peer: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Verdict {
        let failsafe = local.is_host
            && local
                .map
                .failsafe_ports
                .iter()
                .any(|f| f.direction == direction && f.protocol == protocol && f.port == port);
        if failsafe {
            return Verdict::Allow;
        }
        let index = &self.maps[local.node];
        let peer_identity = self.peer_identity(index, peer);
        let mut best: Option<&CompiledRule> = None;
        for rule in index
            .rules
            .get(&(local.identity, direction))
            .into_iter()
            .flatten()
        {
            if !rule_matches(
                rule,
                local.identity,
                direction,
                peer_identity,
                protocol,
                port,
            ) {
                continue;
            }
            best = match best {
                Some(b)
                    if precedence(b.action) > precedence(rule.action)
                        || (precedence(b.action) == precedence(rule.action) && b.id < rule.id) =>
                {
                    Some(b)
                }
                _ => Some(rule),
            };
        }
        enforced(local.mode, best.map(|r| r.action))
    }

    fn peer_identity(&self, index: &NodeIndex<'_>, addr: IpAddr) -> u32 {
        if index.own.contains(&addr) {
            return HOST;
        }
        if let Some(id) = self.exact.get(&addr) {
            return *id;
        }
        self.prefixes
            .iter()
            .find(|(n, _)| n.contains(&addr))
            .map_or(WORLD, |(_, id)| *id)
    }
}
