//! Random small clusters and policies for the property tests.
//!
//! Everything is drawn from a small vocabulary (three apps, two tiers, two
//! envs, two zones, a handful of CIDRs and ports) so that selectors match
//! often and rules overlap: the interesting cases are the collisions.

use std::net::IpAddr;

use bulkhead_api::policy::{
    Action, EnforcementMode, Peer, PortSpec, Protocol, ReservedPeer, Rule, Scope,
    SegmentationPolicySpec,
};
use bulkhead_api::selector::{LabelSelectorRequirement, SelectorOperator};
use bulkhead_api::{LabelMappingSpec, LabelSelector, Labels};
use bulkhead_policy::snapshot::{Namespace, Node, Pod, PodKey};
use bulkhead_policy::Snapshot;
use proptest::prelude::*;

pub const APPS: [&str; 3] = ["web", "db", "api"];
pub const TIERS: [&str; 2] = ["fe", "be"];
pub const ENVS: [&str; 2] = ["prod", "dev"];
pub const ZONES: [&str; 2] = ["a", "b"];
pub const PORTS: [u16; 4] = [80, 81, 443, 5432];

/// CIDR peers, with their excepts. Some cover pod addresses (10.1.0.0/16),
/// some nest inside each other and inside the range a mapping labels
/// (10.9.0.0/16).
pub const CIDRS: [(&str, &[&str]); 7] = [
    ("10.1.0.0/16", &[]),
    ("10.9.0.0/16", &["10.9.1.0/24"]),
    ("10.9.0.0/24", &[]),
    ("10.9.1.0/24", &["10.9.1.128/25"]),
    ("0.0.0.0/0", &["10.0.0.0/8"]),
    ("8.8.8.0/24", &[]),
    ("fd00::/8", &["fd00:9::/32"]),
];

/// Addresses that belong to no endpoint, used as flow ends.
pub const OUTSIDE: [&str; 6] = [
    "10.9.0.5",
    "10.9.1.5",
    "10.9.1.200",
    "10.1.200.1",
    "8.8.8.8",
    "fd00:9::1",
];

/// What a pod is, before it gets a name.
#[derive(Clone, Debug)]
pub struct PodSeed {
    pub ns: usize,
    pub node: usize,
    pub app: Option<usize>,
    pub tier: Option<usize>,
    pub v6: bool,
    pub scheduled: bool,
}

pub fn pod_seed() -> impl Strategy<Value = PodSeed> {
    (
        0..3usize,
        0..3usize,
        proptest::option::weighted(0.8, 0..3usize),
        proptest::option::of(0..2usize),
        any::<bool>(),
        proptest::bool::weighted(0.9),
    )
        .prop_map(|(ns, node, app, tier, v6, scheduled)| PodSeed {
            ns,
            node,
            app,
            tier,
            v6,
            scheduled,
        })
}

impl PodSeed {
    /// The pod in slot `slot`; `clash` gives it slot 0's IPv4 address.
    pub fn build(&self, slot: usize, nodes: usize, clash: bool) -> (PodKey, Pod) {
        let mut labels = Labels::new();
        if let Some(a) = self.app {
            labels.insert("app".into(), APPS[a].into());
        }
        if let Some(t) = self.tier {
            labels.insert("tier".into(), TIERS[t].into());
        }
        let host = if clash { 1 } else { slot + 1 };
        let mut addresses: Vec<IpAddr> = vec![format!("10.1.0.{host}").parse().expect("v4")];
        if self.v6 {
            addresses.push(format!("fd00::1:{}", slot + 1).parse().expect("v6"));
        }
        let pod = Pod {
            labels,
            node: self
                .scheduled
                .then(|| format!("n{}", self.node % nodes.max(1))),
            addresses,
            host_network: false,
            ..Pod::default()
        };
        (
            PodKey::new(format!("ns{}", self.ns), format!("p{slot}")),
            pod,
        )
    }
}

/// Which LabelMappings exist besides the base one.
#[derive(Clone, Copy, Debug)]
pub struct MappingSeed {
    /// 10.9.0.0/16 is labeled `app: ext`.
    pub cidr: bool,
    /// A second mapping of equal priority sets `tier: be` on web pods: a
    /// conflict wherever a web pod says `tier: fe`.
    pub conflict: bool,
    /// Nodes get their `zone`; node n1 is also `app: db`.
    pub nodes: bool,
    /// A higher-priority mapping forces `env: prod` on backend pods.
    pub override_env: bool,
}

pub fn mapping_seed() -> impl Strategy<Value = MappingSeed> {
    (
        any::<bool>(),
        proptest::bool::weighted(0.3),
        any::<bool>(),
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(cidr, conflict, nodes, override_env)| MappingSeed {
            cidr,
            conflict,
            nodes,
            override_env,
        })
}

fn mapping(yaml: &str) -> LabelMappingSpec {
    serde_yaml::from_str(yaml).expect("mapping yaml")
}

impl MappingSeed {
    pub fn mappings(&self) -> Vec<(String, LabelMappingSpec)> {
        let mut out = vec![(
            "base".to_string(),
            mapping(
                "priority: 10
rules:
- match: {pods: {}}
  copyLabels:
  - {key: app, fromLabel: app}
  - {key: tier, fromLabel: tier}
  - {key: env, fromLabel: env, source: namespace}
  - {key: zone, fromLabel: zone, source: node}",
            ),
        )];
        if self.cidr {
            out.push((
                "ranges".into(),
                mapping(
                    "priority: 10\nrules:\n- match: {cidrs: [10.9.0.0/16]}\n  labels: {app: ext}",
                ),
            ));
        }
        if self.conflict {
            out.push((
                "web-is-backend".into(),
                mapping(
                    "priority: 10\nrules:\n- match: {pods: {podSelector: {matchLabels: {app: web}}}}\n  labels: {tier: be}",
                ),
            ));
        }
        if self.nodes {
            out.push((
                "nodes".into(),
                mapping(
                    "priority: 5
rules:
- match: {nodes: {}}
  copyLabels: [{key: zone, fromLabel: zone}]
- match: {hostnames: [n1]}
  labels: {app: db}",
                ),
            ));
        }
        if self.override_env {
            out.push((
                "backends-are-prod".into(),
                mapping("priority: 20\nrules:\n- match: {pods: {podSelector: {matchLabels: {tier: be}}}}\n  labels: {env: prod}"),
            ));
        }
        out
    }
}

/// A random cluster: nodes, namespaces, pods, mappings, policies.
#[derive(Clone, Debug)]
pub struct ClusterSeed {
    pub nodes: Vec<Option<usize>>,
    pub namespaces: Vec<Option<usize>>,
    pub pods: Vec<PodSeed>,
    pub mappings: MappingSeed,
    pub policies: Vec<SegmentationPolicySpec>,
}

pub fn cluster(max_pods: usize, max_policies: usize) -> impl Strategy<Value = ClusterSeed> {
    (
        proptest::collection::vec(proptest::option::of(0..2usize), 2..=3),
        proptest::collection::vec(proptest::option::weighted(0.8, 0..2usize), 3),
        proptest::collection::vec(pod_seed(), 0..=max_pods),
        mapping_seed(),
        proptest::collection::vec(policy(), 0..=max_policies),
    )
        .prop_map(
            |(nodes, namespaces, pods, mappings, policies)| ClusterSeed {
                nodes,
                namespaces,
                pods,
                mappings,
                policies,
            },
        )
}

pub fn node(i: usize, zone: Option<usize>) -> (String, Node) {
    let mut labels = Labels::new();
    if let Some(z) = zone {
        labels.insert("zone".into(), ZONES[z].into());
    }
    let addresses = vec![format!("192.168.0.{}", i + 1)
        .parse()
        .expect("node address")];
    (format!("n{i}"), Node { labels, addresses })
}

pub fn namespace(env: Option<usize>) -> Namespace {
    let mut labels = Labels::new();
    if let Some(e) = env {
        labels.insert("env".into(), ENVS[e].into());
    }
    Namespace { labels }
}

impl ClusterSeed {
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for (i, zone) in self.nodes.iter().enumerate() {
            let (name, node) = node(i, *zone);
            s.nodes.insert(name, node);
        }
        for (i, env) in self.namespaces.iter().enumerate() {
            s.namespaces.insert(format!("ns{i}"), namespace(*env));
        }
        for (slot, seed) in self.pods.iter().enumerate() {
            let (key, pod) = seed.build(slot, self.nodes.len(), false);
            s.pods.insert(key, pod);
        }
        s.mappings.extend(self.mappings.mappings());
        for (i, p) in self.policies.iter().enumerate() {
            s.policies.insert(format!("pol{i}"), p.clone());
        }
        s
    }
}

fn label_pair() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        (0..APPS.len()).prop_map(|i| ("app", APPS[i])),
        (0..TIERS.len()).prop_map(|i| ("tier", TIERS[i])),
        (0..ENVS.len()).prop_map(|i| ("env", ENVS[i])),
        (0..ZONES.len()).prop_map(|i| ("zone", ZONES[i])),
        Just(("app", "ext")),
    ]
}

fn requirement() -> impl Strategy<Value = LabelSelectorRequirement> {
    let op = prop_oneof![
        Just(SelectorOperator::In),
        Just(SelectorOperator::NotIn),
        Just(SelectorOperator::Exists),
        Just(SelectorOperator::DoesNotExist),
    ];
    (label_pair(), label_pair(), op).prop_map(|((key, v1), (_, v2), operator)| {
        let values = match operator {
            SelectorOperator::In | SelectorOperator::NotIn => {
                let mut v = vec![v1.to_string()];
                if v2 != v1 {
                    v.push(v2.to_string());
                }
                v
            }
            _ => Vec::new(),
        };
        LabelSelectorRequirement {
            key: key.into(),
            operator,
            values,
        }
    })
}

pub fn selector() -> impl Strategy<Value = LabelSelector> {
    prop_oneof![
        3 => label_pair().prop_map(|p| LabelSelector::from_labels([p])),
        1 => (label_pair(), label_pair()).prop_map(|(a, b)| LabelSelector::from_labels([a, b])),
        2 => requirement().prop_map(|r| LabelSelector { match_labels: Labels::new(), match_expressions: vec![r] }),
    ]
}

pub fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        8 => selector().prop_map(|s| Scope { selector: Some(s), cluster_wide: false }),
        1 => Just(Scope { selector: None, cluster_wide: true }),
    ]
}

pub fn mode() -> impl Strategy<Value = Option<EnforcementMode>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(EnforcementMode::Visibility)),
        2 => Just(Some(EnforcementMode::Selective)),
        2 => Just(Some(EnforcementMode::Full)),
    ]
}

pub fn action() -> impl Strategy<Value = Action> {
    prop_oneof![3 => Just(Action::Allow), 2 => Just(Action::Deny), 1 => Just(Action::OverrideDeny)]
}

pub fn peer() -> impl Strategy<Value = Peer> {
    let reserved = prop_oneof![
        Just(ReservedPeer::World),
        Just(ReservedPeer::Host),
        Just(ReservedPeer::RemoteNode),
        Just(ReservedPeer::Unlabeled),
    ];
    prop_oneof![
        5 => selector().prop_map(|s| Peer { selector: Some(s), ..Peer::default() }),
        3 => (0..CIDRS.len(), any::<bool>()).prop_map(|(i, with_except)| {
            let (cidr, except) = CIDRS[i];
            Peer {
                cidr: Some(cidr.into()),
                except: (with_except && !except.is_empty())
                    .then(|| except.iter().map(|e| e.to_string()).collect()),
                ..Peer::default()
            }
        }),
        2 => reserved.prop_map(|r| Peer { reserved: Some(r), ..Peer::default() }),
    ]
}

pub fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp)
    ]
}

pub fn port_spec() -> impl Strategy<Value = PortSpec> {
    let spec = |protocol, port, end_port| PortSpec {
        protocol,
        port,
        end_port,
        icmp_type: None,
    };
    prop_oneof![
        1 => protocol().prop_map(move |p| spec(p, None, None)),
        3 => (protocol(), 0..PORTS.len()).prop_map(move |(p, i)| spec(p, Some(PORTS[i]), None)),
        2 => (protocol(), 0..PORTS.len(), prop_oneof![Just(0u16), Just(1), Just(400)])
            .prop_map(move |(p, i, w)| spec(p, Some(PORTS[i]), Some(PORTS[i] + w))),
        1 => Just(PortSpec { protocol: Protocol::Icmp, port: None, end_port: None, icmp_type: Some(8) }),
    ]
}

pub fn rule_with(action: impl Strategy<Value = Action>) -> impl Strategy<Value = Rule> {
    (
        action,
        proptest::collection::vec(peer(), 0..=2),
        proptest::collection::vec(port_spec(), 0..=2),
        proptest::option::weighted(0.2, "[a-z]{1,4}"),
    )
        .prop_map(|(action, peers, ports, name)| Rule {
            ownership: Default::default(),
            expires: None,
            name,
            action,
            peers,
            ports,
        })
}

pub fn policy() -> impl Strategy<Value = SegmentationPolicySpec> {
    (
        scope(),
        mode(),
        proptest::collection::vec(rule_with(action()), 0..=2),
        proptest::collection::vec(rule_with(action()), 0..=2),
    )
        .prop_map(
            |(scope, enforcement, ingress, egress)| SegmentationPolicySpec {
                ownership: Default::default(),
                scope,
                enforcement,
                ingress,
                egress,
                promotion: None,
            },
        )
}

/// The traffic judged for every pair of flow ends.
pub const TRAFFIC: [(Protocol, u16); 4] = [
    (Protocol::Tcp, 80),
    (Protocol::Udp, 81),
    (Protocol::Sctp, 443),
    (Protocol::Tcp, 5432),
];
