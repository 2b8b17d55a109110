//! Endpoints to identities: evaluating each endpoint's labels, numbering
//! label sets, and keeping the use counts that move identities in and out
//! of the universe (and into quarantine when their last user goes).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use bulkhead_api::identity::{CIDR_LABEL, REMOTE_NODE, UNLABELED};
use bulkhead_api::{Labels, PrefixEntry};
use ipnet::IpNet;

use super::{Compiler, Dirty};
use crate::labels::{Resolved, Source};
use crate::netpol;
use crate::output::{EndpointFacts, EndpointRef};
use crate::shards;

impl Compiler {
    /// The labels, node and addresses an endpoint should have, or `None` when
    /// it is not an endpoint (gone, unscheduled, no address, host network).
    pub(super) fn evaluate(
        &self,
        ep: &EndpointRef,
    ) -> Option<(Resolved, Option<String>, Vec<IpAddr>)> {
        let s = &self.snapshot;
        let empty = Labels::new();
        match ep {
            EndpointRef::Pod(key) => {
                let pod = s.pods.get(key)?;
                let node = pod.node.as_ref()?;
                if pod.host_network || pod.addresses.is_empty() {
                    return None;
                }
                let namespace = s
                    .namespaces
                    .get(&key.namespace)
                    .map_or(&empty, |n| &n.labels);
                let source = Source::Pod {
                    labels: &pod.labels,
                    namespace,
                    node: s.nodes.get(node).map_or(&empty, |n| &n.labels),
                };
                let mut resolved = self.mappings.resolve(ep, source);
                // NetworkPolicy hook: implicit labels join the identity.
                if self.options.network_policies {
                    resolved.implicit =
                        netpol::implicit_labels(&self.vocabulary, &key.namespace, pod, namespace);
                }
                Some((resolved, Some(node.clone()), pod.addresses.clone()))
            }
            EndpointRef::Node(name) => {
                let node = s.nodes.get(name)?;
                let source = Source::Node {
                    name,
                    labels: &node.labels,
                };
                Some((
                    self.mappings.resolve(ep, source),
                    Some(name.clone()),
                    node.addresses.clone(),
                ))
            }
            EndpointRef::ExternalNode(name) => {
                let ext = s.external_nodes.get(name)?;
                if s.nodes.contains_key(name) {
                    return None; // a Node of that name owns the rule map
                }
                let hostname = ext.spec.hostname.as_deref().unwrap_or(name);
                let source = Source::External {
                    hostname,
                    labels: &ext.labels,
                };
                let addrs = ext
                    .spec
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect();
                Some((self.mappings.resolve(ep, source), Some(name.clone()), addrs))
            }
            EndpointRef::Cidr(net) => {
                if !self.cidrs.contains(net) {
                    return None;
                }
                Some((
                    self.mappings.resolve(ep, Source::Cidr(*net)),
                    None,
                    Vec::new(),
                ))
            }
        }
    }

    /// Recomputes dirty endpoints; returns identities whose presence or
    /// managed status changed.
    pub(super) fn relabel(&mut self, dirty: &mut Dirty) -> BTreeSet<u32> {
        let mut fresh = BTreeMap::new();
        let mut new_sets = BTreeSet::new();
        for ep in std::mem::take(&mut dirty.endpoints) {
            let state = self.evaluate(&ep);
            if let Some((resolved, _, _)) = &state {
                if let Some(key) = identity_key(&ep, resolved) {
                    if self.out.allocation.get(&key).is_none() {
                        new_sets.insert(key);
                    }
                }
            }
            fresh.insert(ep, state);
        }
        for labels in &new_sets {
            self.out.allocation.get_or_allocate(labels);
        }
        let mut before: BTreeMap<u32, (bool, bool)> = BTreeMap::new();
        for (ep, state) in fresh {
            let old = self.out.endpoints.get(&ep).cloned();
            let new = state.as_ref().map(|(resolved, node, addrs)| {
                let identity = match identity_key(&ep, resolved) {
                    Some(key) => self.out.allocation.get(&key).unwrap_or(UNLABELED),
                    None if matches!(ep, EndpointRef::Node(_)) => REMOTE_NODE,
                    None => UNLABELED,
                };
                EndpointFacts {
                    labels: resolved.labels.clone(),
                    identity,
                    node: node.clone(),
                    addresses: addrs.clone(),
                    mode: self
                        .modes
                        .get(&identity)
                        .copied()
                        .unwrap_or(self.options.default_mode),
                }
            });
            let old_resolved = self.resolved.get(&ep).cloned();
            let new_resolved = state.map(|(r, _, _)| r);
            if old == new && old_resolved == new_resolved {
                continue;
            }
            for id in old.iter().chain(new.iter()).map(|f| f.identity) {
                before.entry(id).or_insert_with(|| self.presence(id));
            }
            if let Some(old) = &old {
                self.forget_endpoint(&ep, old, dirty);
            }
            if let Some(r) = &old_resolved {
                self.count_resolved(&ep, r, -1);
            }
            match (&new, new_resolved) {
                (Some(facts), Some(r)) => {
                    self.count_resolved(&ep, &r, 1);
                    self.resolved.insert(ep.clone(), r);
                    self.record_endpoint(&ep, facts, dirty);
                }
                _ => {
                    self.resolved.remove(&ep);
                    self.out.endpoints.remove(&ep);
                }
            }
        }
        let mut touched = BTreeSet::new();
        dirty.counted.extend(before.keys().copied());
        for (id, was) in before {
            if self.presence(id) != was {
                touched.insert(id);
                self.update_universe(id, dirty);
            }
        }
        touched
    }

    /// (used at all, used by a managed endpoint)
    pub(super) fn presence(&self, id: u32) -> (bool, bool) {
        (
            self.uses.contains_key(&id),
            self.managed_uses.contains_key(&id),
        )
    }

    pub(super) fn forget_endpoint(
        &mut self,
        ep: &EndpointRef,
        old: &EndpointFacts,
        dirty: &mut Dirty,
    ) {
        decrement(&mut self.uses, old.identity);
        if is_managed(ep) {
            decrement(&mut self.managed_uses, old.identity);
            if let Some(set) = self.identity_endpoints.get_mut(&old.identity) {
                set.remove(ep);
                if set.is_empty() {
                    self.identity_endpoints.remove(&old.identity);
                }
            }
        }
        if let Some(node) = &old.node {
            mark_node(dirty, ep, node);
            if let Some(per_node) = self.identity_nodes.get_mut(&old.identity) {
                decrement(per_node, node.clone());
                if !per_node.contains_key(node) {
                    dirty.node_ids.insert((node.clone(), old.identity));
                }
                if per_node.is_empty() {
                    self.identity_nodes.remove(&old.identity);
                }
            }
            if matches!(ep, EndpointRef::Pod(_)) {
                if let Some(pods) = self.node_pods.get_mut(node) {
                    pods.remove(ep);
                }
            }
        }
        for net in endpoint_prefixes(ep, old) {
            if let Some(owners) = self.addr_owners.get_mut(&net) {
                owners.remove(ep);
                if owners.is_empty() {
                    self.addr_owners.remove(&net);
                }
            }
            self.refresh_prefix(net, dirty);
        }
        self.out.unlabeled.remove(ep);
        self.out.endpoints.remove(ep);
    }

    pub(super) fn record_endpoint(
        &mut self,
        ep: &EndpointRef,
        facts: &EndpointFacts,
        dirty: &mut Dirty,
    ) {
        *self.uses.entry(facts.identity).or_default() += 1;
        if is_managed(ep) {
            *self.managed_uses.entry(facts.identity).or_default() += 1;
            self.identity_endpoints
                .entry(facts.identity)
                .or_default()
                .insert(ep.clone());
            if facts.labels.is_empty() {
                self.out.unlabeled.insert(ep.clone());
            }
        }
        if let Some(node) = &facts.node {
            mark_node(dirty, ep, node);
            let per_node = self.identity_nodes.entry(facts.identity).or_default();
            let count = per_node.entry(node.clone()).or_default();
            *count += 1;
            if *count == 1 {
                dirty.node_ids.insert((node.clone(), facts.identity));
            }
            if matches!(ep, EndpointRef::Pod(_)) {
                self.node_pods
                    .entry(node.clone())
                    .or_default()
                    .insert(ep.clone());
            }
        }
        self.out.endpoints.insert(ep.clone(), facts.clone());
        for net in endpoint_prefixes(ep, facts) {
            self.addr_owners.entry(net).or_default().insert(ep.clone());
            self.refresh_prefix(net, dirty);
        }
    }

    /// Sets the prefix entry of `net` from its first owner.
    pub(super) fn refresh_prefix(&mut self, net: IpNet, dirty: &mut Dirty) {
        let shard = shards::shard_of_prefix(&net, self.options.identity_shards);
        let entry = self
            .addr_owners
            .get(&net)
            .and_then(|owners| owners.first())
            .and_then(|owner| {
                self.out.endpoints.get(owner).map(|f| PrefixEntry {
                    cidr: net.to_string(),
                    identity: f.identity,
                    owner: Some(owner.to_string()),
                })
            });
        let table = self.prefixes.entry(shard).or_default();
        let changed = match entry {
            Some(e) if table.get(&net) == Some(&e) => false,
            Some(e) => {
                table.insert(net, e);
                true
            }
            None => table.remove(&net).is_some(),
        };
        if changed {
            dirty.shards.insert(shard);
        }
    }

    pub(super) fn count_resolved(&mut self, ep: &EndpointRef, r: &Resolved, delta: i64) {
        for mapping in &r.contributors {
            let n = self.mapping_labeled.entry(mapping.clone()).or_default();
            *n = n.saturating_add_signed(delta as i32);
        }
        if r.conflicts.is_empty() {
            return;
        }
        if delta > 0 {
            self.conflicted.insert(ep.clone());
        } else {
            self.conflicted.remove(ep);
        }
    }

    pub(super) fn update_universe(&mut self, id: u32, dirty: &mut Dirty) {
        let shards = self.options.identity_shards;
        let (used, managed) = self.presence(id);
        if managed {
            self.universe.managed.insert(id);
        } else {
            self.universe.managed.remove(&id);
        }
        let allocated = self.out.allocation.labels_of(id).cloned();
        if used {
            if let Some(labels) = allocated {
                if !self.universe.labels.contains_key(&id) {
                    let cidr = labels.get(CIDR_LABEL).and_then(|c| c.parse::<IpNet>().ok());
                    self.universe.insert(id, labels, cidr);
                    dirty.shards.insert(shards::shard_of_identity(id, shards));
                    dirty.identities = true;
                }
            }
        } else if allocated.is_some() {
            self.universe.remove(id);
            self.out.allocation.release(id);
            dirty.shards.insert(shards::shard_of_identity(id, shards));
            dirty.identities = true;
        }
    }
}

/// The label set an endpoint's identity is allocated for (segmentation and
/// implicit labels), or `None` for a reserved identity (a managed endpoint
/// with no labels).
pub(super) fn identity_key(ep: &EndpointRef, resolved: &Resolved) -> Option<Labels> {
    let labels = &resolved.labels;
    match ep {
        EndpointRef::Cidr(net) => {
            let mut l = labels.clone();
            l.insert(CIDR_LABEL.to_string(), net.to_string());
            Some(l)
        }
        _ if labels.is_empty() && resolved.implicit.is_empty() => None,
        _ => {
            let mut l = labels.clone();
            l.extend(resolved.implicit.clone());
            Some(l)
        }
    }
}

pub(super) fn is_managed(ep: &EndpointRef) -> bool {
    !matches!(ep, EndpointRef::Cidr(_))
}

pub(super) fn endpoint_prefixes(ep: &EndpointRef, facts: &EndpointFacts) -> Vec<IpNet> {
    match ep {
        EndpointRef::Cidr(net) => vec![*net],
        _ => facts.addresses.iter().map(|a| IpNet::from(*a)).collect(),
    }
}

/// A pod moving touches its node's endpoint list; a host endpoint moving
/// (its identity is the node's own) rebuilds the node whole.
pub(super) fn mark_node(dirty: &mut Dirty, ep: &EndpointRef, node: &str) {
    if matches!(ep, EndpointRef::Pod(_)) {
        dirty.node_endpoints.insert(node.to_string());
    } else {
        dirty.nodes.insert(node.to_string());
    }
}

pub(super) fn decrement<K: Ord>(map: &mut BTreeMap<K, usize>, key: K) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}
