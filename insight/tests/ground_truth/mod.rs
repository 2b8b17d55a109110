//! A known cluster and its ground-truth policy, and 120 days of history
//! generated from it.
//!
//! Three namespaces (prod, staging, dev, each its own `env`), twelve apps
//! (four per namespace), each with `web`, `api` and `db` roles:
//!
//! ```text
//!   web ─8080─► api ─5432─► db          (every app; ftp: api ─21, 32768-65535─► db)
//!   api ─8443─► the next app's api      (a0→a1→a2→a3 in each namespace)
//!   prod/shop/api ─443─► 203.0.113.10-20 (the world)
//!   prod/billing/batch ─5432─► prod/billing/db              monthly: days 0, 30, 60, 90
//!   prod/pay/db ─5433─► staging/ledger/dr-replica           quarterly DR test: days 15, 105
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowReason, FlowRecord, FlowVerdict, SCHEMA};
use bulkhead_api::mapping::{CopyLabel, EndpointMatch, LabelSource, MappingRule, PodMatch};
use bulkhead_api::policy::{
    Action, EnforcementMode, Peer, PortSpec, Protocol, Rule, Scope, SegmentationPolicySpec,
};
use bulkhead_api::rule_map::Direction;
use bulkhead_api::{LabelMappingSpec, LabelSelector, Labels};
use bulkhead_policy::snapshot::{Node, Pod, PodKey, Snapshot};
use jiff::{SignedDuration, Timestamp};

pub const DAYS: i64 = 120;
pub const ENVS: [&str; 3] = ["prod", "staging", "dev"];
pub const APPS: [[&str; 4]; 3] = [
    ["shop", "pay", "search", "billing"],
    ["catalog", "review", "notify", "ledger"],
    ["sandbox", "metrics", "auth", "ftp"],
];
pub const WORLD_NET: &str = "203.0.113.0/24";

/// One workload: env, app, role.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    pub env: usize,
    pub app: usize,
    pub role: &'static str,
}

impl Workload {
    pub fn labels(&self) -> Labels {
        [
            ("env", ENVS[self.env]),
            ("app", APPS[self.env][self.app]),
            ("role", self.role),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
    pub fn address(&self) -> IpAddr {
        let role = ["web", "api", "db", "batch", "dr-replica"]
            .iter()
            .position(|r| *r == self.role)
            .expect("known role");
        format!("10.{}.{}.{}", self.env + 1, self.app + 1, role + 10)
            .parse()
            .expect("address")
    }
    pub fn pod(&self) -> PodKey {
        PodKey::new(
            ENVS[self.env],
            format!("{}-{}-0", APPS[self.env][self.app], self.role),
        )
    }
    pub fn endpoint(&self) -> FlowEndpoint {
        let key = self.pod();
        FlowEndpoint {
            address: self.address(),
            identity: 0,
            labels: self.labels(),
            kind: EndpointKind::Pod,
            name: Some(key.to_string()),
            namespace: Some(key.namespace),
            reported: true,
        }
    }
}

/// A destination: a workload or a world address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dest {
    Workload(Workload),
    World(IpAddr),
}

/// One ground-truth edge and how often it happens.
#[derive(Clone, Debug)]
pub struct Edge {
    pub from: Workload,
    pub to: Dest,
    pub protocol: Protocol,
    /// Ports used; for the ephemeral edge, the truth allows the range.
    pub ports: Vec<u16>,
    /// The ports the ground truth writes (port, endPort).
    pub allowed: Vec<(u16, Option<u16>)>,
    /// Days it happens on: `None` for every day.
    pub days: Option<Vec<i64>>,
}

fn w(env: usize, app: usize, role: &'static str) -> Workload {
    Workload { env, app, role }
}

pub fn workloads() -> Vec<Workload> {
    let mut out = Vec::new();
    for env in 0..3 {
        for app in 0..4 {
            for role in ["web", "api", "db"] {
                out.push(w(env, app, role));
            }
        }
    }
    out.push(w(0, 3, "batch"));
    out.push(w(1, 3, "dr-replica"));
    out
}

fn tcp(from: Workload, to: Workload, port: u16, days: Option<Vec<i64>>) -> Edge {
    Edge {
        from,
        to: Dest::Workload(to),
        protocol: Protocol::Tcp,
        ports: vec![port],
        allowed: vec![(port, None)],
        days,
    }
}

pub fn edges() -> Vec<Edge> {
    let mut out = Vec::new();
    for env in 0..3 {
        for app in 0..4 {
            out.push(tcp(w(env, app, "web"), w(env, app, "api"), 8080, None));
            if env == 2 && app == 3 {
                out.push(Edge {
                    from: w(env, app, "api"),
                    to: Dest::Workload(w(env, app, "db")),
                    protocol: Protocol::Tcp,
                    ports: vec![21, 40000, 40017, 51234, 60999],
                    allowed: vec![(21, None), (32768, Some(65535))],
                    days: None,
                });
            } else {
                out.push(tcp(w(env, app, "api"), w(env, app, "db"), 5432, None));
            }
            if app < 3 {
                out.push(tcp(w(env, app, "api"), w(env, app + 1, "api"), 8443, None));
            }
        }
    }
    out.push(Edge {
        from: w(0, 0, "api"),
        to: Dest::World("203.0.113.10".parse().expect("address")),
        protocol: Protocol::Tcp,
        ports: vec![443],
        allowed: vec![(443, None)],
        days: None,
    });
    out.push(tcp(
        w(0, 3, "batch"),
        w(0, 3, "db"),
        5432,
        Some(vec![0, 30, 60, 90]),
    ));
    out.push(tcp(
        w(0, 1, "db"),
        w(1, 3, "dr-replica"),
        5433,
        Some(vec![15, 105]),
    ));
    out
}

pub fn day(n: i64) -> Timestamp {
    "2026-01-01T00:00:00Z"
        .parse::<Timestamp>()
        .expect("time")
        .checked_add(SignedDuration::from_hours(24 * n))
        .expect("in range")
}

fn record(
    src: &FlowEndpoint,
    dst: &FlowEndpoint,
    protocol: Protocol,
    port: u16,
    at: Timestamp,
    flows: u64,
) -> FlowRecord {
    FlowRecord {
        schema: SCHEMA.into(),
        start: at,
        end: at + SignedDuration::from_hours(1),
        node: "node-1".into(),
        source: src.clone(),
        destination: dst.clone(),
        port,
        protocol,
        direction: Direction::Egress,
        verdict: FlowVerdict::Allow,
        would_verdict: FlowVerdict::Deny,
        mode: EnforcementMode::Visibility,
        reason: FlowReason::Default,
        rule: None,
        flows,
        packets: flows * 10,
        bytes: flows * 1000,
        service: None,
        source_hidden_by_snat: false,
    }
}

/// 120 days, four hourly windows a day per edge that runs that day; the
/// world edge walks over 203.0.113.10-20, the ephemeral one over its ports.
pub fn history() -> Vec<FlowRecord> {
    let mut out = Vec::new();
    for (i, e) in edges().iter().enumerate() {
        for d in 0..DAYS {
            if e.days.as_ref().is_some_and(|days| !days.contains(&d)) {
                continue;
            }
            for (h, hour) in [1i64, 7, 13, 19].iter().enumerate() {
                let at = day(d) + SignedDuration::from_hours(*hour);
                let n = d as usize * 4 + h;
                let port = e.ports[n % e.ports.len()];
                let dst = match &e.to {
                    Dest::Workload(t) => t.endpoint(),
                    Dest::World(_) => FlowEndpoint {
                        address: format!("203.0.113.{}", 10 + n % 11)
                            .parse()
                            .expect("address"),
                        identity: bulkhead_api::identity::WORLD,
                        labels: Labels::new(),
                        kind: EndpointKind::World,
                        name: None,
                        namespace: None,
                        reported: false,
                    },
                };
                out.push(record(
                    &e.from.endpoint(),
                    &dst,
                    e.protocol,
                    port,
                    at,
                    1 + (i + n) as u64 % 3,
                ));
            }
        }
    }
    out
}

/// The cluster: every workload as a pod, labels copied by one mapping.
pub fn cluster() -> Snapshot {
    let mut s = Snapshot::default();
    s.nodes.insert(
        "node-1".into(),
        Node {
            labels: Labels::new(),
            addresses: vec!["192.168.0.1".parse().expect("address")],
        },
    );
    for env in ENVS {
        s.namespaces.insert(env.into(), Default::default());
    }
    for wl in workloads() {
        s.pods.insert(
            wl.pod(),
            Pod {
                labels: wl.labels(),
                node: Some("node-1".into()),
                addresses: vec![wl.address()],
                ..Pod::default()
            },
        );
    }
    s.mappings.insert(
        "labels".into(),
        LabelMappingSpec {
            priority: 0,
            rules: vec![MappingRule {
                name: Some("copy".into()),
                match_: EndpointMatch {
                    pods: Some(PodMatch::default()),
                    ..EndpointMatch::default()
                },
                labels: Labels::new(),
                copy_labels: ["env", "app", "role"]
                    .iter()
                    .map(|k| CopyLabel {
                        key: k.to_string(),
                        from_label: k.to_string(),
                        source: LabelSource::Object,
                    })
                    .collect(),
            }],
        },
    );
    s
}

fn port_specs(e: &Edge) -> Vec<PortSpec> {
    e.allowed
        .iter()
        .map(|(p, end)| PortSpec {
            protocol: e.protocol,
            port: Some(*p),
            end_port: *end,
            icmp_type: None,
        })
        .collect()
}

/// The ground truth: per workload, exactly its edges, in full mode.
pub fn truth() -> BTreeMap<String, SegmentationPolicySpec> {
    let mut out: BTreeMap<String, SegmentationPolicySpec> = BTreeMap::new();
    for e in edges() {
        let egress_peer = match &e.to {
            Dest::Workload(t) => Peer {
                selector: Some(LabelSelector::from_labels(t.labels())),
                ..Peer::default()
            },
            Dest::World(_) => Peer {
                cidr: Some(WORLD_NET.into()),
                ..Peer::default()
            },
        };
        let src = format!("truth-{}", e.from.pod().name);
        out.entry(src)
            .or_insert_with(|| empty(&e.from))
            .egress
            .push(Rule {
                ownership: Default::default(),
                expires: None,
                name: None,
                action: Action::Allow,
                peers: vec![egress_peer],
                ports: port_specs(&e),
            });
        if let Dest::Workload(t) = &e.to {
            out.entry(format!("truth-{}", t.pod().name))
                .or_insert_with(|| empty(t))
                .ingress
                .push(Rule {
                    ownership: Default::default(),
                    expires: None,
                    name: None,
                    action: Action::Allow,
                    peers: vec![Peer {
                        selector: Some(LabelSelector::from_labels(e.from.labels())),
                        ..Peer::default()
                    }],
                    ports: port_specs(&e),
                });
        }
    }
    out
}

fn empty(wl: &Workload) -> SegmentationPolicySpec {
    SegmentationPolicySpec {
        ownership: Default::default(),
        scope: Scope {
            selector: Some(LabelSelector::from_labels(wl.labels())),
            cluster_wide: false,
        },
        enforcement: Some(EnforcementMode::Full),
        ingress: Vec::new(),
        egress: Vec::new(),
        promotion: None,
    }
}
