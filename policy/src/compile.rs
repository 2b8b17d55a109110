//! The compiler proper: indexes over the snapshot, and one pipeline that a
//! whole compile and a single change both run.
//!
//! A change marks what it touches dirty (endpoints to relabel, policies to
//! reselect); the pipeline relabels, moves identities in and out of the
//! universe, updates the selections that mention them, and rebuilds only the
//! node maps, shards and status facts that depend on what moved. A whole
//! compile is the same pipeline with everything dirty, which is why the two
//! agree.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use bulkhead_api::identity::{CIDR_LABEL, REMOTE_NODE, UNLABELED};
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::{Direction, FailsafePort, LocalEndpoint, NodeKind};
use bulkhead_api::{Labels, NodeRuleMapSpec, PrefixEntry};
use ipnet::IpNet;

use crate::identities::IdentityAllocation;
use crate::labels::{PreparedMappings, Resolved, Source};
use crate::netpol;
use crate::node_map::{self, NodeContext, PolicyView};
use crate::output::{EndpointFacts, EndpointRef, MappingFacts, Output, PolicyFacts};
use crate::selection::{self, mode_of, PreparedPolicy, Selection, Universe};
use crate::shards::{self, fnv1a};
use crate::snapshot::{Change, Snapshot};

/// Settings that are not part of the cluster state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// The mode of endpoints no policy sets one for.
    pub default_mode: EnforcementMode,
    /// Ports every host endpoint keeps open.
    pub failsafe_ports: Vec<FailsafePort>,
    /// How many IdentityMap shards to write.
    pub identity_shards: u32,
    /// Compile Kubernetes NetworkPolicies too (off by default): pods then
    /// carry implicit labels in their identities, see [`crate::netpol`].
    pub network_policies: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        use Direction::{Egress, Ingress};
        use Protocol::{Tcp, Udp};
        let port = |protocol, port, direction| FailsafePort {
            protocol,
            port,
            direction,
        };
        Self {
            default_mode: EnforcementMode::Visibility,
            failsafe_ports: vec![
                port(Tcp, 22, Ingress),    // SSH
                port(Tcp, 6443, Ingress),  // the API server
                port(Tcp, 6443, Egress),   // kubelet and agent to the API server
                port(Tcp, 10250, Ingress), // kubelet
                port(Tcp, 2379, Ingress),  // etcd clients
                port(Tcp, 2380, Ingress),  // etcd peers
                port(Tcp, 2380, Egress),   // etcd peers
                port(Udp, 53, Egress),     // DNS
                port(Tcp, 53, Egress),     // DNS
                port(Udp, 67, Egress),     // DHCP client to server
                port(Udp, 68, Ingress),    // DHCP server to client
            ],
            identity_shards: 16,
            network_policies: false,
        }
    }
}

/// Compiles a whole snapshot.
pub fn compile(
    snapshot: &Snapshot,
    options: &CompileOptions,
    previous: &IdentityAllocation,
) -> Output {
    let mut compiler = Compiler::new(options.clone(), previous.clone());
    compiler.load(snapshot.clone());
    compiler.out
}

/// The incremental compiler: keeps its indexes between changes.
#[derive(Debug)]
pub struct Compiler {
    options: CompileOptions,
    snapshot: Snapshot,
    mappings: PreparedMappings,
    policies: BTreeMap<String, PreparedPolicy>,
    rule_ids: BTreeMap<String, Vec<u32>>,
    selections: BTreeMap<String, Selection>,
    universe: Universe,
    cidrs: BTreeSet<IpNet>,
    resolved: BTreeMap<EndpointRef, Resolved>,
    /// identity → endpoints using it (address ranges included).
    uses: BTreeMap<u32, usize>,
    /// identity → managed endpoints using it.
    managed_uses: BTreeMap<u32, usize>,
    /// identity → node → local endpoints with it.
    identity_nodes: BTreeMap<u32, BTreeMap<String, usize>>,
    /// identity → managed endpoints with it.
    identity_endpoints: BTreeMap<u32, BTreeSet<EndpointRef>>,
    /// node → pods enforced there.
    node_pods: BTreeMap<String, BTreeSet<EndpointRef>>,
    /// identity → policies whose scope holds it.
    scope_index: BTreeMap<u32, BTreeSet<String>>,
    modes: BTreeMap<u32, EnforcementMode>,
    /// address → endpoints claiming it (more than one is a clash; the first wins).
    addr_owners: BTreeMap<IpNet, BTreeSet<EndpointRef>>,
    /// shard → address prefix → its entry, formatted once.
    prefixes: BTreeMap<u32, BTreeMap<IpNet, PrefixEntry>>,
    mapping_labeled: BTreeMap<String, u32>,
    conflicted: BTreeSet<EndpointRef>,
    /// What NetworkPolicies read of pods (empty unless they are compiled).
    vocabulary: netpol::Vocabulary,
    out: Output,
}

/// What one pass must redo.
#[derive(Debug, Default)]
struct Dirty {
    endpoints: BTreeSet<EndpointRef>,
    policies: BTreeSet<String>,
    /// Every node is being built whole (a load): skip finer bookkeeping.
    all_nodes: bool,
    /// Nodes to rebuild whole (their host endpoint moved, or they are new or gone).
    nodes: BTreeSet<String>,
    /// Nodes whose endpoint list (addresses, identities, modes) must be rebuilt.
    node_endpoints: BTreeSet<String>,
    /// (node, identity) whose presence on the node changed.
    node_ids: BTreeSet<(String, u32)>,
    /// Per node, the policies whose rules must be rebuilt there.
    node_policies: BTreeMap<String, BTreeSet<String>>,
    shards: BTreeSet<u32>,
    facts: BTreeSet<String>,
    /// Identities whose endpoint counts changed.
    counted: BTreeSet<u32>,
    /// An identity entered or left the universe.
    identities: bool,
}

impl Compiler {
    /// An empty compiler that will keep `previous`'s numbers for label sets still in use.
    pub fn new(options: CompileOptions, previous: IdentityAllocation) -> Self {
        let options = CompileOptions {
            identity_shards: options.identity_shards.max(1),
            ..options
        };
        Self {
            options,
            snapshot: Snapshot::default(),
            mappings: PreparedMappings::default(),
            policies: BTreeMap::new(),
            rule_ids: BTreeMap::new(),
            selections: BTreeMap::new(),
            universe: Universe::default(),
            cidrs: BTreeSet::new(),
            resolved: BTreeMap::new(),
            uses: BTreeMap::new(),
            managed_uses: BTreeMap::new(),
            identity_nodes: BTreeMap::new(),
            identity_endpoints: BTreeMap::new(),
            node_pods: BTreeMap::new(),
            scope_index: BTreeMap::new(),
            modes: BTreeMap::new(),
            addr_owners: BTreeMap::new(),
            prefixes: BTreeMap::new(),
            mapping_labeled: BTreeMap::new(),
            conflicted: BTreeSet::new(),
            vocabulary: netpol::Vocabulary::default(),
            out: Output {
                allocation: previous,
                ..Output::default()
            },
        }
    }

    /// Replaces the whole snapshot and recompiles everything.
    pub fn load(&mut self, snapshot: Snapshot) -> &Output {
        let previous = std::mem::take(&mut self.out.allocation);
        *self = Self::new(self.options.clone(), previous);
        self.snapshot = snapshot;
        self.mappings = PreparedMappings::new(&self.snapshot.mappings);
        let mut dirty = Dirty::default();
        let mut names: Vec<String> = self.snapshot.policies.keys().cloned().collect();
        // NetworkPolicy hook: translated policies sit next to the others.
        if self.options.network_policies {
            let translated = self.snapshot.network_policies.keys();
            names.extend(translated.map(netpol::policy_name));
            self.vocabulary = netpol::Vocabulary::of(&self.snapshot.network_policies);
        }
        for name in names {
            self.prepare_policy(&name, &mut dirty);
        }
        self.refresh_cidrs(&mut dirty);
        dirty.endpoints.extend(self.all_endpoint_refs());
        dirty.shards.extend(0..self.options.identity_shards);
        dirty.all_nodes = true;
        dirty.identities = true;
        self.run(dirty);
        // Label sets of the previous allocation that nothing uses any more.
        let in_use = &self.universe.labels;
        self.out.allocation.retain(|id| in_use.contains_key(&id));
        &self.out
    }

    /// Applies one change and recompiles what it touches.
    pub fn apply(&mut self, change: Change) -> &Output {
        let mut dirty = Dirty::default();
        match &change {
            Change::UpsertPod(k, _) | Change::DeletePod(k) => {
                dirty.endpoints.insert(EndpointRef::Pod(k.clone()));
            }
            Change::UpsertNamespace(ns, _) | Change::DeleteNamespace(ns) => {
                let pods = self.snapshot.pods.keys().filter(|k| &k.namespace == ns);
                dirty
                    .endpoints
                    .extend(pods.map(|k| EndpointRef::Pod(k.clone())));
            }
            Change::UpsertNode(n, _) | Change::DeleteNode(n) => {
                dirty.endpoints.insert(EndpointRef::Node(n.clone()));
                let pods = self
                    .snapshot
                    .pods
                    .iter()
                    .filter(|(_, p)| p.node.as_ref() == Some(n));
                dirty
                    .endpoints
                    .extend(pods.map(|(k, _)| EndpointRef::Pod(k.clone())));
            }
            Change::UpsertExternalNode(n, _) | Change::DeleteExternalNode(n) => {
                dirty.endpoints.insert(EndpointRef::ExternalNode(n.clone()));
            }
            Change::UpsertMapping(..) | Change::DeleteMapping(_) => {}
            Change::UpsertPolicy(name, _) | Change::DeletePolicy(name) => {
                dirty.policies.insert(name.clone());
            }
            Change::UpsertNetworkPolicy(key, _) | Change::DeleteNetworkPolicy(key) => {
                if self.options.network_policies {
                    dirty.policies.insert(netpol::policy_name(key));
                }
            }
        }
        let mapping_changed =
            matches!(change, Change::UpsertMapping(..) | Change::DeleteMapping(_));
        self.snapshot.apply(change);
        // NetworkPolicy hook: what the policies read of pods is part of
        // every pod's identity; when that changes, every pod is relabeled.
        if self.options.network_policies {
            let vocabulary = netpol::Vocabulary::of(&self.snapshot.network_policies);
            if vocabulary != self.vocabulary {
                self.vocabulary = vocabulary;
                let pods = self.snapshot.pods.keys().cloned();
                dirty.endpoints.extend(pods.map(EndpointRef::Pod));
            }
        }
        if mapping_changed {
            self.mappings = PreparedMappings::new(&self.snapshot.mappings);
            dirty.endpoints.extend(self.all_endpoint_refs());
            dirty.endpoints.extend(self.resolved.keys().cloned());
        }
        for name in dirty.policies.clone() {
            self.prepare_policy(&name, &mut dirty);
        }
        if mapping_changed || !dirty.policies.is_empty() {
            self.refresh_cidrs(&mut dirty);
        }
        self.run(dirty);
        &self.out
    }

    /// The latest output.
    pub fn output(&self) -> &Output {
        &self.out
    }

    /// The snapshot compiled.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn run(&mut self, mut dirty: Dirty) {
        let touched = self.relabel(&mut dirty);
        self.assign_rule_ids(&mut dirty);
        self.reselect(&touched, &mut dirty);
        self.rebuild_nodes(&mut dirty);
        self.rebuild_shards(&dirty);
        self.refresh_facts(&dirty);
    }

    fn prepare_policy(&mut self, name: &str, dirty: &mut Dirty) {
        dirty.policies.insert(name.to_string());
        let prepared = match netpol::parse_policy_name(name) {
            // NetworkPolicy hook: `networkpolicy:<ns>/<name>` is a translation.
            Some(key) => self
                .snapshot
                .network_policies
                .get(&key)
                .filter(|_| self.options.network_policies)
                .map(|policy| netpol::prepare(&key, policy)),
            None => self.snapshot.policies.get(name).map(PreparedPolicy::new),
        };
        match prepared {
            Some(policy) => {
                self.policies.insert(name.to_string(), policy);
            }
            None => {
                self.policies.remove(name);
            }
        }
    }

    fn refresh_cidrs(&mut self, dirty: &mut Dirty) {
        let wanted: BTreeSet<IpNet> = self
            .mappings
            .cidrs()
            .chain(self.policies.values().flat_map(|p| p.cidrs()))
            .collect();
        for net in wanted.symmetric_difference(&self.cidrs) {
            dirty.endpoints.insert(EndpointRef::Cidr(*net));
        }
        self.cidrs = wanted;
    }

    fn all_endpoint_refs(&self) -> Vec<EndpointRef> {
        let s = &self.snapshot;
        let pods = s.pods.keys().map(|k| EndpointRef::Pod(k.clone()));
        let nodes = s.nodes.keys().map(|n| EndpointRef::Node(n.clone()));
        let ext = s
            .external_nodes
            .keys()
            .map(|n| EndpointRef::ExternalNode(n.clone()));
        let cidrs = self.cidrs.iter().map(|c| EndpointRef::Cidr(*c));
        pods.chain(nodes).chain(ext).chain(cidrs).collect()
    }

    /// The labels, node and addresses an endpoint should have, or `None` when
    /// it is not an endpoint (gone, unscheduled, no address, host network).
    fn evaluate(&self, ep: &EndpointRef) -> Option<(Resolved, Option<String>, Vec<IpAddr>)> {
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
    fn relabel(&mut self, dirty: &mut Dirty) -> BTreeSet<u32> {
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
    fn presence(&self, id: u32) -> (bool, bool) {
        (
            self.uses.contains_key(&id),
            self.managed_uses.contains_key(&id),
        )
    }

    fn forget_endpoint(&mut self, ep: &EndpointRef, old: &EndpointFacts, dirty: &mut Dirty) {
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

    fn record_endpoint(&mut self, ep: &EndpointRef, facts: &EndpointFacts, dirty: &mut Dirty) {
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
    fn refresh_prefix(&mut self, net: IpNet, dirty: &mut Dirty) {
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

    fn count_resolved(&mut self, ep: &EndpointRef, r: &Resolved, delta: i64) {
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

    fn update_universe(&mut self, id: u32, dirty: &mut Dirty) {
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

    /// Stable rule ids: a hash of policy, direction and index, with
    /// collisions resolved in name order.
    fn assign_rule_ids(&mut self, dirty: &mut Dirty) {
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
        self.rule_ids = ids;
    }

    fn reselect(&mut self, touched: &BTreeSet<u32>, dirty: &mut Dirty) {
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

    fn index_scope(
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

    fn rebuild_nodes(&mut self, dirty: &mut Dirty) {
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
    fn local_endpoints(&self, node: &str) -> Option<(NodeKind, LocalEndpoint, Vec<LocalEndpoint>)> {
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

    fn view<'a>(&'a self, name: &'a str) -> Option<PolicyView<'a>> {
        Some(PolicyView {
            name,
            policy: self.policies.get(name)?,
            selection: self.selections.get(name)?,
            rule_ids: self.rule_ids.get(name)?,
        })
    }

    /// Builds a node's map from scratch and records which policies it carries.
    fn build_node_whole(&mut self, node: &str, dirty: &mut Dirty) {
        let old: BTreeSet<String> = self
            .out
            .rule_maps
            .get(node)
            .map(|m| m.rules.iter().map(|r| r.policy.clone()).collect())
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
        let new: BTreeSet<String> = new_map
            .iter()
            .flat_map(|m| m.rules.iter())
            .filter(|r| !old.contains(&r.policy))
            .map(|r| r.policy.clone())
            .collect();
        let kept: BTreeSet<&str> = new_map
            .iter()
            .flat_map(|m| m.rules.iter().map(|r| r.policy.as_str()))
            .collect();
        for p in old.iter().filter(|p| !kept.contains(p.as_str())) {
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
    fn refresh_node_endpoints(&mut self, node: &str) -> bool {
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
    fn patch_node_policies(
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
        let had: BTreeSet<String> = map
            .rules
            .iter()
            .filter(|r| policies.contains(&r.policy))
            .map(|r| r.policy.clone())
            .collect();
        map.rules.retain(|r| !policies.contains(&r.policy));
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

    fn rebuild_shards(&mut self, dirty: &Dirty) {
        let shards = self.options.identity_shards;
        if dirty.identities {
            self.out.identities = self.universe.labels.clone();
        }
        if self.out.identity_maps.len() != shards as usize {
            self.out.identity_maps = (0..shards)
                .map(|s| shards::build(s, shards, &BTreeMap::new(), None))
                .collect();
        }
        for shard in &dirty.shards {
            self.out.identity_maps[*shard as usize] = shards::build(
                *shard,
                shards,
                &self.universe.labels,
                self.prefixes.get(shard),
            );
        }
    }

    fn refresh_facts(&mut self, dirty: &Dirty) {
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

fn matched_endpoints(sel: &Selection, managed_uses: &BTreeMap<u32, usize>) -> u32 {
    sel.scope
        .iter()
        .map(|id| managed_uses.get(id).copied().unwrap_or(0) as u32)
        .sum()
}

fn policy_warnings(policy: &PreparedPolicy, sel: &Selection) -> Vec<String> {
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
            if set.is_empty() {
                warnings.push(format!("{} peers[{p}] selects nothing", rule.name));
            }
        }
    }
    warnings
}

/// The label set an endpoint's identity is allocated for (segmentation and
/// implicit labels), or `None` for a reserved identity (a managed endpoint
/// with no labels).
fn identity_key(ep: &EndpointRef, resolved: &Resolved) -> Option<Labels> {
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

fn is_managed(ep: &EndpointRef) -> bool {
    !matches!(ep, EndpointRef::Cidr(_))
}

fn endpoint_prefixes(ep: &EndpointRef, facts: &EndpointFacts) -> Vec<IpNet> {
    match ep {
        EndpointRef::Cidr(net) => vec![*net],
        _ => facts.addresses.iter().map(|a| IpNet::from(*a)).collect(),
    }
}

/// A pod moving touches its node's endpoint list; a host endpoint moving
/// (its identity is the node's own) rebuilds the node whole.
fn mark_node(dirty: &mut Dirty, ep: &EndpointRef, node: &str) {
    if matches!(ep, EndpointRef::Pod(_)) {
        dirty.node_endpoints.insert(node.to_string());
    } else {
        dirty.nodes.insert(node.to_string());
    }
}

fn decrement<K: Ord>(map: &mut BTreeMap<K, usize>, key: K) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}
