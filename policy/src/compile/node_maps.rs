//! Per-node rule maps and the IdentityMap shards, rebuilt whole or patched
//! for just what moved.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use bulkhead_api::rule_map::{LocalEndpoint, NodeKind};
use bulkhead_api::NodeRuleMapSpec;

use super::{Compiler, Dirty, Fx};
use crate::node_map::{self, NodeContext, PolicyRules};
use crate::output::EndpointRef;
use crate::shards;

impl Compiler {
    pub(super) fn rebuild_nodes(&mut self, dirty: &mut Dirty) {
        // An identity arriving on or leaving a node changes the subjects of
        // the policies scoping it there.
        for (node, id) in std::mem::take(&mut dirty.node_ids) {
            if dirty.all_nodes || dirty.nodes.contains(&node) {
                continue;
            }
            let policies = self.scope_index.get(&id).into_iter().flatten().cloned();
            dirty
                .node_policies
                .entry(node)
                .or_default()
                .extend(policies);
        }
        for node in std::mem::take(&mut dirty.nodes) {
            dirty.node_endpoints.remove(&node);
            dirty.node_policies.remove(&node);
            self.build_node_whole(&node, dirty);
        }
        for node in std::mem::take(&mut dirty.node_endpoints) {
            if !self.refresh_node_endpoints(&node) {
                dirty.node_policies.remove(&node);
                self.build_node_whole(&node, dirty);
            }
        }
        for (node, policies) in std::mem::take(&mut dirty.node_policies) {
            if !self.patch_node_policies(&node, &policies, dirty) {
                self.build_node_whole(&node, dirty);
            }
        }
        self.flush_carried(dirty);
    }

    /// The node's host endpoint and pods, or `None` when it has no host endpoint.
    pub(super) fn local_endpoints(
        &self,
        node: &str,
    ) -> Option<(NodeKind, LocalEndpoint, Vec<LocalEndpoint>)> {
        let (kind, host_ref) = if self.snapshot.nodes.contains_key(node) {
            (NodeKind::Node, EndpointRef::Node(node.to_string()))
        } else {
            (
                NodeKind::ExternalNode,
                EndpointRef::ExternalNode(node.to_string()),
            )
        };
        let host_facts = self.out.endpoints.get(&host_ref)?;
        let mode_of_id = |id: u32| {
            self.modes
                .get(&id)
                .copied()
                .unwrap_or(self.options.default_mode)
        };
        let host = LocalEndpoint {
            name: node.to_string(),
            addresses: host_facts.addresses.iter().map(IpAddr::to_string).collect(),
            identity: host_facts.identity,
            mode: mode_of_id(host_facts.identity),
        };
        let endpoints = self
            .node_pods
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|ep| {
                let facts = self.out.endpoints.get(ep)?;
                Some(LocalEndpoint {
                    name: ep.to_string(),
                    addresses: facts.addresses.iter().map(IpAddr::to_string).collect(),
                    identity: facts.identity,
                    mode: mode_of_id(facts.identity),
                })
            })
            .collect();
        Some((kind, host, endpoints))
    }

    /// Re-derives the shared rule templates of `names` (after their
    /// selections or rule ids moved); a policy without a selection has none.
    pub(super) fn refresh_templates<'a>(&mut self, names: impl Iterator<Item = &'a String>) {
        for name in names {
            let template = (self.policies.get(name))
                .zip(self.selections.get(name))
                .zip(self.rule_ids.get(name))
                .map(|((policy, sel), ids)| PolicyRules::new(policy, sel, ids));
            match template {
                Some(t) => self.templates.insert(name.clone(), t),
                None => self.templates.remove(name),
            };
        }
    }

    /// Builds a node's map from scratch and records which policies it carries.
    pub(super) fn build_node_whole(&mut self, node: &str, dirty: &mut Dirty) {
        let old = (self.out.rule_maps.get(node)).map(|m| policy_names(&m.rules));
        let mut carried: Vec<String> = Vec::new();
        let new_map = self.local_endpoints(node).map(|(kind, host, endpoints)| {
            let ctx = NodeContext::new(&host, &endpoints, &self.universe.labels);
            // Each policy's subjects here, from the scope index: one hash
            // entry per (local identity, policy scoping it), the size of the
            // subjects the map will list, instead of a set of names and an
            // intersection per policy.
            let mut subjects: HashMap<&str, Vec<u32>, Fx> = HashMap::default();
            for id in ctx.local() {
                for name in self.scope_index.get(id).into_iter().flatten() {
                    subjects.entry(name.as_str()).or_default().push(*id);
                }
            }
            let mut rules = Vec::new();
            for (name, ids) in &subjects {
                if let Some(template) = self.templates.get(*name) {
                    let before = rules.len();
                    ctx.policy_rules(name, template, ids, &mut rules);
                    if rules.len() > before {
                        carried.push(name.to_string());
                    }
                }
            }
            node_map::sort_rules(&mut rules);
            NodeRuleMapSpec {
                node_kind: kind,
                host,
                endpoints,
                rules,
                failsafe_ports: self.options.failsafe_ports.clone(),
            }
        });
        match old {
            // A new map (every map of a load): its policies gain this node,
            // recorded once per pass (see `flush_carried`).
            None => {
                for p in carried {
                    dirty.carried.entry(p).or_default().push(node.to_string());
                }
            }
            Some(old) => {
                let kept: BTreeSet<String> = carried.into_iter().collect();
                for p in old.difference(&kept) {
                    if let Some(f) = self.out.policies.get_mut(p) {
                        f.nodes.remove(node);
                    }
                    dirty.facts.insert(p.clone());
                }
                for p in kept.difference(&old) {
                    let facts = self.out.policies.entry(p.clone()).or_default();
                    facts.nodes.insert(node.to_string());
                    dirty.facts.insert(p.clone());
                }
            }
        }
        match new_map {
            Some(map) => self.out.rule_maps.insert(node.to_string(), map),
            None => self.out.rule_maps.remove(node),
        };
    }

    /// Adds the nodes that new maps gave each policy to its facts.
    fn flush_carried(&mut self, dirty: &mut Dirty) {
        for (policy, nodes) in std::mem::take(&mut dirty.carried) {
            let facts = self.out.policies.entry(policy.clone()).or_default();
            // Nodes are built in name order: a sorted bulk build, not an
            // insert (and its string compares) per node.
            let mut nodes: BTreeSet<String> = nodes.into_iter().collect();
            facts.nodes.append(&mut nodes);
            dirty.facts.insert(policy);
        }
    }

    /// Rebuilds the endpoint list of an existing map; false when the node
    /// needs a whole build instead.
    pub(super) fn refresh_node_endpoints(&mut self, node: &str) -> bool {
        let Some((kind, host, endpoints)) = self.local_endpoints(node) else {
            return false;
        };
        let Some(map) = self.out.rule_maps.get_mut(node) else {
            return false;
        };
        if map.node_kind != kind || map.host.identity != host.identity {
            return false;
        }
        map.host = host;
        map.endpoints = endpoints;
        true
    }

    /// Replaces the rules of `policies` on an existing map; false when the
    /// node needs a whole build instead.
    pub(super) fn patch_node_policies(
        &mut self,
        node: &str,
        policies: &BTreeSet<String>,
        dirty: &mut Dirty,
    ) -> bool {
        let Some(map) = self.out.rule_maps.get(node) else {
            return false;
        };
        let ctx = NodeContext::new(&map.host, &map.endpoints, &self.universe.labels);
        let mut fresh = Vec::new();
        let mut carried = BTreeSet::new();
        for name in policies {
            let before = fresh.len();
            if let (Some(template), Some(sel)) =
                (self.templates.get(name), self.selections.get(name))
            {
                let subjects: Vec<u32> = sel.scope.intersection(ctx.local()).copied().collect();
                ctx.policy_rules(name, template, &subjects, &mut fresh);
            }
            if fresh.len() > before {
                carried.insert(name.as_str());
            }
        }
        let Some(map) = self.out.rule_maps.get_mut(node) else {
            return false;
        };
        // One pass over the node's rules, with a hash lookup each: a new
        // identity can touch hundreds of policies on every node, and a
        // search of a set of names per rule was most of such a change.
        let replaced: HashSet<&str, Fx> = policies.iter().map(String::as_str).collect();
        // A replaced policy's rules here carry its current ids, or the ones
        // it had before this pass changed them: a number lookup rules most
        // rules out before the name is hashed.
        let mut ids: HashSet<u32, Fx> = dirty.old_rule_ids.clone();
        for name in policies {
            ids.extend(self.rule_ids.get(name).into_iter().flatten().copied());
        }
        let mut had: HashSet<String, Fx> = HashSet::default();
        map.rules.retain(|r| {
            let hit = ids.contains(&r.id) && replaced.contains(r.policy.as_str());
            if hit && !had.contains(&r.policy) {
                had.insert(r.policy.clone());
            }
            !hit
        });
        map.rules.extend(fresh);
        node_map::sort_rules(&mut map.rules);
        for name in policies {
            let (was, is) = (had.contains(name), carried.contains(name.as_str()));
            if was == is {
                continue;
            }
            let facts = self.out.policies.entry(name.clone()).or_default();
            if is {
                facts.nodes.insert(node.to_string());
            } else {
                facts.nodes.remove(node);
            }
            dirty.facts.insert(name.clone());
        }
        true
    }

    pub(super) fn rebuild_shards(&mut self, dirty: &Dirty) {
        let shards = self.options.identity_shards;
        if dirty.identities {
            self.out.identities = self.universe.labels.clone();
        }
        if self.out.identity_maps.len() != shards as usize {
            self.out.identity_maps = (0..shards)
                .map(|s| shards::build(s, shards, &BTreeMap::new(), None, &Default::default()))
                .collect();
        }
        for shard in &dirty.shards {
            self.out.identity_maps[*shard as usize] = shards::build(
                *shard,
                shards,
                &self.universe.labels,
                self.prefixes.get(shard),
                &self.out.allocation,
            );
        }
    }
}

/// The policies that rules come from. A policy's rules sit together (ids are
/// given per policy), so each name is cloned about once, not once per rule.
fn policy_names(rules: &[bulkhead_api::rule_map::CompiledRule]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut last: Option<&str> = None;
    for r in rules {
        if last != Some(r.policy.as_str()) {
            last = Some(r.policy.as_str());
            if !names.contains(&r.policy) {
                names.insert(r.policy.clone());
            }
        }
    }
    names
}
