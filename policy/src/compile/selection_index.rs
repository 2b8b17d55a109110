//! Policies to identity sets: stable rule ids, selections kept up to date
//! as identities come and go, the scope index and the modes it implies.

use std::collections::{BTreeMap, BTreeSet};

use super::{Compiler, Dirty};
use crate::selection::{self, mode_of};
use crate::shards::fnv1a;

impl Compiler {
    /// Stable rule ids: a hash of policy, direction and index, with
    /// collisions resolved in name order.
    pub(super) fn assign_rule_ids(&mut self, dirty: &mut Dirty) {
        if dirty.policies.is_empty() {
            return;
        }
        let mut taken = BTreeSet::new();
        let mut ids = BTreeMap::new();
        for (name, policy) in &self.policies {
            let mut per_rule = Vec::with_capacity(policy.rules.len());
            let mut index = BTreeMap::<&str, usize>::new();
            for rule in &policy.rules {
                let dir = selection::direction_name(rule.direction);
                let i = index.entry(dir).or_default();
                let mut id = fnv1a(format!("{name}\0{dir}\0{i}").as_bytes()).max(1);
                *i += 1;
                while !taken.insert(id) {
                    id = id.wrapping_add(1).max(1);
                }
                per_rule.push(id);
            }
            ids.insert(name.clone(), per_rule);
        }
        for (name, per_rule) in &ids {
            if self.rule_ids.get(name) != Some(per_rule) {
                dirty.policies.insert(name.clone());
            }
        }
        // Rule maps still hold the ids a changed or deleted policy had:
        // patching looks its rules up by them (see `patch_node_policies`).
        for (name, old) in &self.rule_ids {
            if ids.get(name) != Some(old) {
                dirty.old_rule_ids.extend(old.iter().copied());
            }
        }
        self.rule_ids = ids;
    }

    pub(super) fn reselect(&mut self, touched: &BTreeSet<u32>, dirty: &mut Dirty) {
        let mut changed: BTreeSet<String> = dirty.policies.clone();
        let mut mode_check: BTreeSet<u32> = touched.clone();
        for (name, policy) in &self.policies {
            if dirty.policies.contains(name) {
                continue;
            }
            let Some(sel) = self.selections.get_mut(name) else {
                continue;
            };
            let mut any = false;
            for id in touched {
                // Re-derive the id's membership from scratch: reserved peers
                // name their identity whether or not any endpoint has it now.
                let before = selection::membership(sel, *id);
                selection::remove_identity(sel, *id);
                policy.add_identity(&self.universe, sel, *id);
                any |= selection::membership(sel, *id) != before;
            }
            if any {
                changed.insert(name.clone());
            }
        }
        for name in &dirty.policies {
            let new = self.policies.get(name).map(|p| p.select(&self.universe));
            let old = match new {
                Some(sel) => self.selections.insert(name.clone(), sel),
                None => self.selections.remove(name),
            };
            if let Some(old) = old {
                self.index_scope(name, &old.scope, false, &mut mode_check);
            }
        }
        for name in &changed {
            let Some(sel) = self.selections.get(name) else {
                continue;
            };
            let scope = sel.scope.clone();
            if !dirty.policies.contains(name) {
                // Touched identities may have left this scope: drop them from the index first.
                for id in touched {
                    if let Some(set) = self.scope_index.get_mut(id) {
                        set.remove(name);
                    }
                }
            }
            self.index_scope(name, &scope, true, &mut mode_check);
        }
        for id in touched {
            if !self.universe.managed.contains(id) {
                self.scope_index.remove(id);
            }
        }
        self.refresh_templates(changed.iter());
        // Nodes that carried or will carry a changed policy (a load builds
        // every node whole anyway).
        for name in changed.iter().filter(|_| !dirty.all_nodes) {
            let mut nodes: BTreeSet<&String> = BTreeSet::new();
            if let Some(facts) = self.out.policies.get(name) {
                nodes.extend(facts.nodes.iter());
            }
            if let Some(sel) = self.selections.get(name) {
                for id in &sel.scope {
                    nodes.extend(
                        self.identity_nodes
                            .get(id)
                            .into_iter()
                            .flat_map(|m| m.keys()),
                    );
                }
            }
            for node in nodes {
                dirty
                    .node_policies
                    .entry(node.clone())
                    .or_default()
                    .insert(name.clone());
            }
        }
        for id in mode_check {
            let mode = mode_of(
                self.options.default_mode,
                self.scope_index
                    .get(&id)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| self.policies.get(p)),
            );
            let old = if self.universe.managed.contains(&id) {
                self.modes.insert(id, mode)
            } else {
                self.modes.remove(&id)
            };
            if old != Some(mode) && !dirty.all_nodes {
                dirty.node_endpoints.extend(
                    self.identity_nodes
                        .get(&id)
                        .into_iter()
                        .flat_map(|m| m.keys().cloned()),
                );
            }
            if old != Some(mode) {
                for ep in self.identity_endpoints.get(&id).into_iter().flatten() {
                    if let Some(f) = self.out.endpoints.get_mut(ep) {
                        f.mode = mode;
                    }
                }
            }
        }
        dirty.facts.extend(changed);
        dirty.policies.clear();
    }

    pub(super) fn index_scope(
        &mut self,
        name: &str,
        scope: &BTreeSet<u32>,
        add: bool,
        modes: &mut BTreeSet<u32>,
    ) {
        for id in scope {
            modes.insert(*id);
            let set = self.scope_index.entry(*id).or_default();
            if add {
                set.insert(name.to_string());
            } else {
                set.remove(name);
                if set.is_empty() {
                    self.scope_index.remove(id);
                }
            }
        }
    }
}
