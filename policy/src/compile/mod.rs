//! The compiler proper: indexes over the snapshot, and one pipeline that a
//! whole compile and a single change both run.
//!
//! A change marks what it touches dirty (endpoints to relabel, policies to
//! reselect); the pipeline relabels, moves identities in and out of the
//! universe, updates the selections that mention them, and rebuilds only the
//! node maps, shards and status facts that depend on what moved. A whole
//! compile is the same pipeline with everything dirty, which is why the two
//! agree.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::{Direction, FailsafePort};
use bulkhead_api::PrefixEntry;
use ipnet::IpNet;

use crate::identities::IdentityAllocation;
use crate::labels::{PreparedMappings, Resolved};
use crate::netpol;
use crate::node_map::PolicyRules;
use crate::output::{EndpointRef, Output};
use crate::selection::{PreparedPolicy, Selection, Universe};
use crate::snapshot::{Change, Snapshot};

mod allocation;
mod node_maps;
mod selection_index;
mod services;
mod status_facts;

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
    /// How long a released identity number stays reserved for its label set
    /// (see [`crate::identities`] for why a day).
    pub identity_quarantine: std::time::Duration,
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
            identity_quarantine: crate::identities::DEFAULT_QUARANTINE,
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
    /// Per policy, its rules as every node shares them (see node_map).
    templates: HashMap<String, PolicyRules, Fx>,
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
    /// The caller's clock as last advanced: rules whose `expires` it has
    /// reached are compiled into no rule map. `None` expires nothing.
    now: Option<jiff::Timestamp>,
    out: Output,
}

/// A fast hasher for the compiler's string-keyed hash maps (FxHash's
/// multiply-rotate over 8-byte words): short keys such as policy names,
/// looked up once per rule of every node built or patched. SipHash's
/// resistance to chosen keys buys nothing for names the operator holds.
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut rest = [0u8; 8];
        let tail = chunks.remainder();
        rest[..tail.len()].copy_from_slice(tail);
        self.add(u64::from_le_bytes(rest) ^ ((tail.len() as u64) << 56));
    }
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }
}

pub(crate) type Fx = std::hash::BuildHasherDefault<FxHasher>;

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
    /// Policy → nodes whose new rule map carries it (flushed into the
    /// policy facts once per pass, not once per node).
    carried: HashMap<String, Vec<String>, Fx>,
    /// Rule ids that policies changed or deleted in this pass had before.
    old_rule_ids: HashSet<u32, Fx>,
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
            templates: HashMap::default(),
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
            now: None,
            out: Output {
                allocation: previous,
                ..Output::default()
            },
        }
    }

    /// Replaces the whole snapshot and recompiles everything.
    pub fn load(&mut self, snapshot: Snapshot) -> &Output {
        let previous = std::mem::take(&mut self.out.allocation);
        let now = self.now;
        *self = Self::new(self.options.clone(), previous);
        self.now = now;
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
        // Label sets of the previous allocation that nothing uses any more
        // go into quarantine, and their shards say so.
        let in_use = &self.universe.labels;
        let released = self.out.allocation.retain(|id| in_use.contains_key(&id));
        self.rebuild_shards_of(released);
        &self.out
    }

    /// Moves the identity allocation's clock to `now` (the caller's clock:
    /// the compiler reads none) and frees the numbers whose quarantine has
    /// passed. Releases from here on are stamped with `now`.
    ///
    /// Rules whose `expires` `now` reaches leave the rule maps here: the
    /// caller advances the clock at [`Compiler::next_expiry`] to stop
    /// enforcing them at that second.
    pub fn advance_clock(&mut self, now: jiff::Timestamp) -> &Output {
        let quarantine = self.options.identity_quarantine;
        let freed = self.out.allocation.advance(now, quarantine);
        self.rebuild_shards_of(freed);
        self.now = Some(now);
        let moved: Vec<String> = (self.policies.iter())
            .filter(|(_, p)| p.expiry_moves(now))
            .map(|(name, _)| name.clone())
            .collect();
        if !moved.is_empty() {
            let mut dirty = Dirty::default();
            for name in moved {
                self.prepare_policy(&name, &mut dirty);
            }
            self.run(dirty);
        }
        &self.out
    }

    /// The earliest `expires` of a rule still enforced: when to call
    /// [`Compiler::advance_clock`] next.
    pub fn next_expiry(&self) -> Option<jiff::Timestamp> {
        let rules = self.policies.values().flat_map(|p| &p.rules);
        rules.filter(|r| !r.expired).filter_map(|r| r.expires).min()
    }

    /// The rules the clock has expired: policy name → (rule name, when).
    pub fn expired_rules(&self) -> BTreeMap<String, Vec<(String, jiff::Timestamp)>> {
        let mut out = BTreeMap::new();
        for (name, policy) in &self.policies {
            let expired: Vec<_> = (policy.rules.iter())
                .filter(|r| r.expired)
                .filter_map(|r| r.expires.map(|at| (r.name.clone(), at)))
                .collect();
            if !expired.is_empty() {
                out.insert(name.clone(), expired);
            }
        }
        out
    }

    /// Starts over from `allocation` (the one published by another replica,
    /// say) with the same snapshot: label sets keep the numbers it has for
    /// them, and the ones it lacks get new numbers above its high-water mark.
    pub fn reseed(&mut self, allocation: IdentityAllocation) -> &Output {
        let snapshot = std::mem::take(&mut self.snapshot);
        self.out.allocation = allocation;
        self.load(snapshot)
    }

    fn rebuild_shards_of(&mut self, ids: Vec<u32>) {
        if ids.is_empty() {
            return;
        }
        let shards = self.options.identity_shards;
        let dirty = Dirty {
            shards: ids
                .into_iter()
                .map(|id| crate::shards::shard_of_identity(id, shards))
                .collect(),
            ..Dirty::default()
        };
        self.rebuild_shards(&dirty);
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
            // `refresh_services` in `run` follows the backends.
            Change::UpsertEndpointSlice(..) | Change::DeleteEndpointSlice(_) => {}
            Change::UpsertPolicy(name, _)
            | Change::DeletePolicy(name)
            | Change::SetEffectiveMode(name, _) => {
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
        self.refresh_services(&mut dirty);
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
            None => self.snapshot.policies.get(name).map(|spec| {
                let mut prepared = PreparedPolicy::new(spec);
                // A promotion's mode, not the spec's, is what gets enforced.
                if let Some(mode) = self.snapshot.effective_modes.get(name) {
                    prepared.enforcement = Some(*mode);
                }
                prepared.expire_at(self.now);
                prepared
            }),
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
}
