//! Per-node rule maps and the IdentityMap shards, rebuilt whole or patched
//! for just what moved.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use bulkhead_api::rule_map::{LocalEndpoint, NodeKind};
use bulkhead_api::NodeRuleMapSpec;

use super::{Compiler, Dirty};
use crate::node_map::{self, NodeContext, PolicyView};
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

    pub(super) fn view<'a>(&'a self, name: &'a str) -> Option<PolicyView<'a>> {
        Some(PolicyView {
            name,
            policy: self.policies.get(name)?,
            selection: self.selections.get(name)?,
            rule_ids: self.rule_ids.get(name)?,
        })
    }

    /// Builds a node's map from scratch and records which policies it carries.
    pub(super) fn build_node_whole(&mut self, node: &str, dirty: &mut Dirty) {
        let old = self
            .out
            .rule_maps
            .get(node)
            .map(|m| policy_names(&m.rules))
            .unwrap_or_default();
        let new_map = self.local_endpoints(node).map(|(kind, host, endpoints)| {
            let ctx = NodeContext::new(&host, &endpoints, &self.universe.labels);
            let mut names: BTreeSet<&str> = BTreeSet::new();
            for id in ctx.local() {
                names.extend(
                    self.scope_index
                        .get(id)
                        .into_iter()
                        .flatten()
                        .map(String::as_str),
                );
            }
            let mut rules = Vec::new();
            for view in names.into_iter().filter_map(|name| self.view(name)) {
                ctx.policy_rules(&view, &mut rules);
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
        let kept = new_map
            .as_ref()
            .map(|m| policy_names(&m.rules))
            .unwrap_or_default();
        let new: Vec<String> = kept.difference(&old).cloned().collect();
        for p in old.difference(&kept) {
            if let Some(f) = self.out.policies.get_mut(p) {
                f.nodes.remove(node);
            }
            dirty.facts.insert(p.clone());
        }
        for p in new {
            self.out
                .policies
                .entry(p.clone())
                .or_default()
                .nodes
                .insert(node.to_string());
            dirty.facts.insert(p);
        }
        match new_map {
            Some(map) => self.out.rule_maps.insert(node.to_string(), map),
            None => self.out.rule_maps.remove(node),
        };
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
            if let Some(view) = self.view(name) {
                ctx.policy_rules(&view, &mut fresh);
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
        let replaced: HashSet<&str> = policies.iter().map(String::as_str).collect();
        let mut had: HashSet<String> = HashSet::new();
        map.rules.retain(|r| {
            let hit = replaced.contains(r.policy.as_str());
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
