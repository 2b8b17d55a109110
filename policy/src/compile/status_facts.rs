//! Facts for policy and mapping status: endpoints and nodes matched,
//! conflicts, warnings.

use std::collections::{BTreeMap, BTreeSet};

use super::{Compiler, Dirty};
use crate::output::{MappingFacts, PolicyFacts};
use bulkhead_api::identity::WORLD;

use crate::selection::{PeerSel, PreparedPolicy, Selection};

impl Compiler {
    pub(super) fn refresh_facts(&mut self, dirty: &Dirty) {
        // Endpoint counts move whenever endpoints of a scoped identity come
        // and go; nothing else about those policies did.
        let mut recount: BTreeSet<&String> = BTreeSet::new();
        for id in &dirty.counted {
            recount.extend(self.scope_index.get(id).into_iter().flatten());
        }
        for name in recount.into_iter().filter(|n| !dirty.facts.contains(*n)) {
            let (Some(sel), Some(facts)) =
                (self.selections.get(name), self.out.policies.get_mut(name))
            else {
                continue;
            };
            facts.matched_endpoints = matched_endpoints(sel, &self.managed_uses);
        }
        for name in dirty.facts.clone() {
            let (Some(policy), Some(sel)) = (self.policies.get(&name), self.selections.get(&name))
            else {
                self.out.policies.remove(&name);
                continue;
            };
            let nodes = self
                .out
                .policies
                .get(&name)
                .map(|f| f.nodes.clone())
                .unwrap_or_default();
            let facts = PolicyFacts {
                matched_endpoints: matched_endpoints(sel, &self.managed_uses),
                matched_identities: sel.scope.len() as u32,
                nodes,
                warnings: policy_warnings(policy, sel),
            };
            self.out.policies.insert(name, facts);
        }
        self.out.conflicts = self
            .conflicted
            .iter()
            .filter_map(|ep| self.resolved.get(ep))
            .flat_map(|r| r.conflicts.clone())
            .collect();
        self.out.mappings = self
            .snapshot
            .mappings
            .keys()
            .map(|name| {
                let facts = MappingFacts {
                    endpoints_labeled: self.mapping_labeled.get(name).copied().unwrap_or(0),
                    conflicts: self
                        .out
                        .conflicts
                        .iter()
                        .filter(|c| c.sources.iter().any(|s| &s.0 == name))
                        .cloned()
                        .collect(),
                    warnings: self
                        .mappings
                        .warnings
                        .get(name)
                        .cloned()
                        .unwrap_or_default(),
                };
                (name.clone(), facts)
            })
            .collect();
    }
}

pub(super) fn matched_endpoints(sel: &Selection, managed_uses: &BTreeMap<u32, usize>) -> u32 {
    sel.scope
        .iter()
        .map(|id| managed_uses.get(id).copied().unwrap_or(0) as u32)
        .sum()
}

pub(super) fn policy_warnings(policy: &PreparedPolicy, sel: &Selection) -> Vec<String> {
    if !policy.errors.is_empty() {
        return policy
            .errors
            .iter()
            .map(|e| format!("not compiled: {e}"))
            .collect();
    }
    let mut warnings = Vec::new();
    if sel.scope.is_empty() {
        warnings.push("scope selects no endpoint".to_string());
    }
    for (r, rule) in policy.rules.iter().enumerate() {
        for (p, set) in sel.peer_sets.get(r).into_iter().flatten().enumerate() {
            let service = match rule.peers.as_ref().and_then(|peers| peers.get(p)) {
                Some(PeerSel::Service(service)) => Some(service),
                _ => None,
            };
            match service {
                Some(s) if set.is_empty() => warnings.push(format!(
                    "{} peers[{p}] selects nothing: Service {s} has no endpoints \
                     (no EndpointSlice lists a backend for it)",
                    rule.name
                )),
                Some(s) if set.contains(&WORLD) => warnings.push(format!(
                    "{} peers[{p}]: Service {s} has a backend address that no endpoint or \
                     labeled CIDR owns, so the peer names world",
                    rule.name
                )),
                _ if set.is_empty() => {
                    warnings.push(format!("{} peers[{p}] selects nothing", rule.name));
                }
                _ => {}
            }
        }
    }
    warnings
}
