//! History as a cluster: every endpoint a record saw, as it was then.
//!
//! ```text
//!  records ─► distinct (kind, namespace, labels, address) ─► one synthetic pod each
//!             (pods: their recorded labels, copied into segmentation labels by one
//!              LabelMapping; hosts, labeled CIDRs and world: their own address)
//!  today's cluster ─► namespaces, nodes, external nodes, CIDR and host mappings
//!                       │
//!                       ▼  Snapshot + a policy set ─► bulkhead_policy::compile ─► Output
//!  records through a named Service ─► one EndpointSlice per Service: the endpoints
//!                                     that answered for it (for `service` peers)
//!  record ─► (source address, destination address) ─► bulkhead_policy::simulate ─► Verdict
//! ```
//!
//! Pods come and go, so a record is judged by the labels it carried, never by
//! today's pods: today's pods are dropped and each recorded pod comes back as
//! a synthetic one. Hosts, external nodes, labeled ranges and the world are
//! judged by address, against today's cluster. The verdict is the one the
//! agents would enforce: each side in the mode that policy set gives it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowRecord};
use bulkhead_api::mapping::{CopyLabel, EndpointMatch, LabelSource, MappingRule, PodMatch};
use bulkhead_api::{LabelMappingSpec, LabelSelector, Labels};
use bulkhead_policy::service::{Backend, EndpointSlice, EndpointSliceKey, ServiceRef};
use bulkhead_policy::snapshot::{Node, Pod, PodKey, Snapshot};
use bulkhead_policy::Verdict;

mod judge;
use bulkhead_policy::{compile, CompileOptions, FlowEnd, FlowQuery, IdentityAllocation, Output};
use judge::Judge;

/// The node every synthetic pod runs on.
pub const REPLAY_NODE: &str = "bulkhead-history-replay";
/// The mapping that gives synthetic pods their recorded labels.
pub const REPLAY_MAPPING: &str = "bulkhead-history-replay";
const MARKER: &str = "replay.bulkhead.dev/endpoint";

/// One endpoint as history saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct EndKey {
    kind: EndpointKind,
    namespace: Option<String>,
    labels: Labels,
    address: IpAddr,
}

impl EndKey {
    fn of(ep: &FlowEndpoint) -> Self {
        Self {
            kind: ep.kind,
            namespace: ep.namespace.clone(),
            labels: ep.labels.clone(),
            address: ep.address,
        }
    }
}

/// Today's cluster with history's endpoints in place of today's pods.
#[derive(Debug)]
pub struct HistoryCluster {
    /// The snapshot, without policies of its own until [`HistoryCluster::compile`].
    pub snapshot: Snapshot,
    addresses: HashMap<EndKey, IpAddr>,
}

impl HistoryCluster {
    /// Builds the cluster history describes, from today's `base` (whose pods
    /// and policies are not used) and the records to judge.
    pub fn new<'a>(base: &Snapshot, records: impl IntoIterator<Item = &'a FlowRecord>) -> Self {
        let mut ends = BTreeSet::new();
        // Which endpoints answered for each named Service: its backends then.
        let mut backends: BTreeMap<ServiceRef, BTreeSet<EndKey>> = BTreeMap::new();
        for r in records {
            ends.insert(EndKey::of(&r.source));
            ends.insert(EndKey::of(&r.destination));
            if let Some(service) = recorded_service(r) {
                backends
                    .entry(service)
                    .or_default()
                    .insert(EndKey::of(&r.destination));
            }
        }
        // An address keeps its recorded value when one endpoint alone used
        // it; a pod address reused by other labels gets a synthetic one.
        let mut users: HashMap<IpAddr, usize> = HashMap::new();
        for e in &ends {
            *users.entry(e.address).or_default() += 1;
        }
        let taken: BTreeSet<IpAddr> = users.keys().copied().collect();
        let mut spare = SpareAddresses::new(taken);
        let mut snapshot = Snapshot {
            namespaces: base.namespaces.clone(),
            nodes: base.nodes.clone(),
            external_nodes: base.external_nodes.clone(),
            mappings: without_pod_rules(&base.mappings),
            ..Snapshot::default()
        };
        snapshot
            .nodes
            .insert(REPLAY_NODE.to_string(), Node::default());
        let mut addresses = HashMap::new();
        let mut pod_keys = HashMap::new();
        let mut keys = BTreeSet::new();
        for (i, e) in ends.into_iter().enumerate() {
            if e.kind != EndpointKind::Pod {
                addresses.insert(e.clone(), e.address);
                continue;
            }
            let address = if users.get(&e.address) == Some(&1) {
                e.address
            } else {
                spare.next(e.address.is_ipv4())
            };
            let namespace = e.namespace.clone().unwrap_or_else(|| "default".into());
            snapshot.namespaces.entry(namespace.clone()).or_default();
            keys.extend(e.labels.keys().cloned());
            let mut labels = e.labels.clone();
            labels.insert(MARKER.to_string(), i.to_string());
            let key = PodKey::new(namespace, format!("replay-{i}"));
            pod_keys.insert(e.clone(), key.clone());
            snapshot.pods.insert(
                key,
                Pod {
                    labels,
                    node: Some(REPLAY_NODE.to_string()),
                    addresses: vec![address],
                    ..Pod::default()
                },
            );
            addresses.insert(e, address);
        }
        snapshot
            .mappings
            .insert(REPLAY_MAPPING.to_string(), copy_mapping(keys));
        snapshot.endpoint_slices = service_slices(base, &backends, &addresses, &pod_keys);
        Self {
            snapshot,
            addresses,
        }
    }

    /// Compiles history under one policy set (the snapshot's own are replaced).
    pub fn compile(&self, policies: &PolicySet, options: &CompileOptions) -> Output {
        let mut snapshot = self.snapshot.clone();
        snapshot.policies = policies.policies.clone();
        snapshot.network_policies = policies.network_policies.clone();
        let options = CompileOptions {
            network_policies: options.network_policies || !snapshot.network_policies.is_empty(),
            ..options.clone()
        };
        compile(&snapshot, &options, &IdentityAllocation::default())
    }

    /// `out` (a [`HistoryCluster::compile`] of this cluster), ready to judge records.
    pub fn judge<'a>(&'a self, out: &'a Output) -> Replay<'a> {
        Replay {
            cluster: self,
            judge: Judge::new(out),
            out,
        }
    }

    fn address(&self, ep: &FlowEndpoint) -> IpAddr {
        self.addresses
            .get(&EndKey::of(ep))
            .copied()
            .unwrap_or(ep.address)
    }
}

/// One compiled policy set over history.
pub struct Replay<'a> {
    cluster: &'a HistoryCluster,
    judge: Judge<'a>,
    out: &'a Output,
}

impl std::fmt::Debug for Replay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("rule_maps", &self.out.rule_maps.len())
            .finish_non_exhaustive()
    }
}

impl Replay<'_> {
    /// What the policy set enforces on the flow of `record`: deny when
    /// either managed side drops it in its mode.
    pub fn verdict(&self, record: &FlowRecord) -> Verdict {
        self.judge.verdict(
            self.cluster.address(&record.source),
            self.cluster.address(&record.destination),
            record.protocol,
            record.port,
        )
    }

    /// The same question through `bulkhead_policy::simulate`, one scan of
    /// the whole output per flow: what [`Replay::verdict`] is held equal to.
    pub fn simulated(&self, record: &FlowRecord) -> Verdict {
        let query = FlowQuery {
            from: FlowEnd::Address(self.cluster.address(&record.source)),
            to: FlowEnd::Address(self.cluster.address(&record.destination)),
            protocol: record.protocol,
            port: record.port,
        };
        bulkhead_policy::simulate(self.out, &query).map_or(Verdict::Allow, |v| v.verdict)
    }
}

/// SegmentationPolicies and NetworkPolicies: one side of a what-if.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicySet {
    /// SegmentationPolicies by name.
    pub policies: BTreeMap<String, bulkhead_api::SegmentationPolicySpec>,
    /// NetworkPolicies by `namespace/name`.
    pub network_policies:
        BTreeMap<bulkhead_policy::netpol::NetworkPolicyKey, bulkhead_policy::netpol::NetworkPolicy>,
}

impl PolicySet {
    /// The policies of a snapshot.
    pub fn of(snapshot: &Snapshot) -> Self {
        Self {
            policies: snapshot.policies.clone(),
            network_policies: snapshot.network_policies.clone(),
        }
    }
}

/// The named Service a record went through, if the agent knew it.
fn recorded_service(r: &FlowRecord) -> Option<ServiceRef> {
    let (namespace, name) = crate::recommend::service_name(r)?;
    Some(ServiceRef {
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// EndpointSlices for `service` peers over history: a Service that records
/// went through is backed by the endpoints that answered for it then (each
/// recorded pod as its synthetic pod); a Service no record went through
/// keeps today's slices, by address only (today's pods are not in this
/// cluster, so an address resolves to whatever history had there).
fn service_slices(
    base: &Snapshot,
    backends: &BTreeMap<ServiceRef, BTreeSet<EndKey>>,
    addresses: &HashMap<EndKey, IpAddr>,
    pod_keys: &HashMap<EndKey, PodKey>,
) -> BTreeMap<EndpointSliceKey, EndpointSlice> {
    let mut slices: BTreeMap<EndpointSliceKey, EndpointSlice> = base
        .endpoint_slices
        .iter()
        .filter(|(_, s)| {
            s.service
                .as_ref()
                .is_some_and(|svc| !backends.contains_key(svc))
        })
        .map(|(k, s)| {
            let endpoints = s
                .endpoints
                .iter()
                .map(|b| Backend {
                    addresses: b.addresses.clone(),
                    pod: None,
                })
                .collect();
            (
                k.clone(),
                EndpointSlice {
                    service: s.service.clone(),
                    endpoints,
                },
            )
        })
        .collect();
    for (service, ends) in backends {
        let endpoints = ends
            .iter()
            .map(|e| Backend {
                addresses: vec![addresses.get(e).copied().unwrap_or(e.address)],
                pod: pod_keys.get(e).cloned(),
            })
            .collect();
        slices.insert(
            EndpointSliceKey::new(&service.namespace, format!("{}-replay", service.name)),
            EndpointSlice {
                service: Some(service.clone()),
                endpoints,
            },
        );
    }
    slices
}

/// Today's mappings minus what they say about pods: history's pods bring
/// their own labels.
fn without_pod_rules(
    mappings: &BTreeMap<String, LabelMappingSpec>,
) -> BTreeMap<String, LabelMappingSpec> {
    mappings
        .iter()
        .map(|(name, spec)| {
            let rules = spec
                .rules
                .iter()
                .filter(|r| {
                    let m = &r.match_;
                    m.nodes.is_some()
                        || m.external_nodes.is_some()
                        || m.cidrs.is_some()
                        || m.hostnames.is_some()
                })
                .map(|r| MappingRule {
                    match_: EndpointMatch {
                        pods: None,
                        ..r.match_.clone()
                    },
                    ..r.clone()
                })
                .collect();
            (
                name.clone(),
                LabelMappingSpec {
                    rules,
                    ..spec.clone()
                },
            )
        })
        .collect()
}

fn copy_mapping(keys: BTreeSet<String>) -> LabelMappingSpec {
    LabelMappingSpec {
        priority: i32::MAX,
        rules: vec![MappingRule {
            name: Some("recorded-labels".into()),
            match_: EndpointMatch {
                pods: Some(PodMatch {
                    pod_selector: Some(LabelSelector {
                        match_labels: BTreeMap::new(),
                        match_expressions: vec![bulkhead_api::selector::LabelSelectorRequirement {
                            key: MARKER.to_string(),
                            operator: bulkhead_api::selector::SelectorOperator::Exists,
                            values: Vec::new(),
                        }],
                    }),
                    namespace_selector: None,
                    node_selector: None,
                }),
                ..EndpointMatch::default()
            },
            labels: Labels::new(),
            copy_labels: keys
                .into_iter()
                .map(|k| CopyLabel {
                    key: k.clone(),
                    from_label: k,
                    source: LabelSource::Object,
                })
                .collect(),
        }],
    }
}

/// Addresses no record used, for pods whose recorded address is ambiguous.
struct SpareAddresses {
    taken: BTreeSet<IpAddr>,
    v4: u32,
    v6: u128,
}

impl SpareAddresses {
    fn new(taken: BTreeSet<IpAddr>) -> Self {
        Self {
            taken,
            // 100.64.0.0/10 (shared address space) and fd62:686b::/64.
            v4: u32::from(Ipv4Addr::new(100, 64, 0, 1)),
            v6: u128::from(Ipv6Addr::new(0xfd62, 0x686b, 0, 0, 0, 0, 0, 1)),
        }
    }

    fn next(&mut self, v4: bool) -> IpAddr {
        loop {
            let a = if v4 {
                self.v4 += 1;
                IpAddr::V4(Ipv4Addr::from(self.v4))
            } else {
                self.v6 += 1;
                IpAddr::V6(Ipv6Addr::from(self.v6))
            };
            if self.taken.insert(a) {
                return a;
            }
        }
    }
}
