//! A deterministic generator of realistic clusters, for the compile benchmark
//! (`benches/compile.rs`) and the size report (`examples/compile_size.rs`).
//!
//! Shape: nodes in three zones; namespaces each with an env (prod, staging,
//! dev) and a team; apps with a primary tier (and some pods in a second one);
//! a LabelMapping copying `app` and `tier` from pods and `env` from
//! namespaces (a few hundred identities), giving nodes `role` and `zone`, and
//! labeling a few external ranges; policies that
//! scope by app (and env), allow between tiers on ports and port ranges, deny
//! dev→prod, name CIDRs with excepts, override-deny a few paths, and set
//! every enforcement mode. Same config, same cluster, on every machine.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use bulkhead_api::mapping::{CopyLabel, EndpointMatch, LabelSource, MappingRule, PodMatch};
use bulkhead_api::policy::{
    Action, EnforcementMode, Peer, PortSpec, Protocol, ReservedPeer, Rule, Scope,
    SegmentationPolicySpec,
};
use bulkhead_api::selector::{LabelSelectorRequirement, SelectorOperator};
use bulkhead_api::{LabelMappingSpec, LabelSelector, Labels};
use bulkhead_policy::snapshot::{Namespace, Node, Pod, PodKey};
use bulkhead_policy::{Change, Snapshot};

pub const TIERS: [&str; 5] = ["web", "api", "db", "cache", "queue"];
pub const ENVS: [&str; 3] = ["prod", "staging", "dev"];
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// How big a cluster to make.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub nodes: usize,
    pub namespaces: usize,
    pub pods: usize,
    pub apps: usize,
    pub policies: usize,
    pub seed: u64,
}

impl Size {
    /// 100 nodes, 10,000 pods in 50 namespaces, 60 apps, 1,000 policies.
    pub const LARGE: Size = Size {
        nodes: 100,
        namespaces: 50,
        pods: 10_000,
        apps: 60,
        policies: 1_000,
        seed: 0x5eed,
    };

    /// Three times LARGE: 300 nodes, 30,000 pods in 150 namespaces, 180
    /// apps, 3,000 policies (a step between LARGE and HUGE, to profile at).
    pub const MEDIUM: Size = Size {
        nodes: 300,
        namespaces: 150,
        pods: 30_000,
        apps: 180,
        policies: 3_000,
        seed: 0x5eed,
    };

    /// Ten times LARGE: 1,000 nodes, 100,000 pods in 500 namespaces, 600
    /// apps, 10,000 policies (the performance issue's scale target).
    pub const HUGE: Size = Size {
        nodes: 1_000,
        namespaces: 500,
        pods: 100_000,
        apps: 600,
        policies: 10_000,
        seed: 0x5eed,
    };

    /// A tenth of LARGE in every dimension but the vocabulary of apps.
    pub const SMALL: Size = Size {
        nodes: 10,
        namespaces: 5,
        pods: 1_000,
        apps: 60,
        policies: 100,
        seed: 0x5eed,
    };
}

/// xorshift64*: tiny, deterministic, good enough to spread labels.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn app_name(i: usize) -> String {
    format!("app-{i:02}")
}

/// The tier most pods of app `i` have.
pub fn primary_tier(i: usize) -> &'static str {
    TIERS[i % TIERS.len()]
}

/// The namespace a pod of app `app` lands in: each app lives in three
/// namespaces, so it spans envs.
fn namespace_of(rng: &mut Rng, app: usize, namespaces: usize) -> usize {
    (app * 7 + rng.below(3) * 17) % namespaces
}

pub fn pod_key(i: usize, namespace: usize, app: usize) -> PodKey {
    PodKey::new(
        format!("ns-{namespace:02}"),
        format!("{}-{i:05}", app_name(app)),
    )
}

fn pod_address(i: usize) -> IpAddr {
    IpAddr::from([10, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

fn pod_address_v6(i: usize) -> IpAddr {
    // Two groups, so 100k pods fit (the same addresses as one group below 64k).
    format!("fd00:100::{:x}:{:x}", (i + 1) >> 16, (i + 1) & 0xffff)
        .parse()
        .expect("v6 pod address")
}

/// A pod of app `app`, number `i`.
pub fn pod(rng: &mut Rng, i: usize, app: usize, nodes: usize) -> Pod {
    let tier = if rng.chance(25) {
        TIERS[(app + 1) % TIERS.len()]
    } else {
        primary_tier(app)
    };
    let mut l = labels(&[("app", &app_name(app)), ("tier", tier)]);
    // Labels no mapping reads: they must not split identities.
    l.insert(
        "pod-template-hash".into(),
        format!("{:08x}", rng.next_u64() as u32),
    );
    l.insert("version".into(), format!("v{}", rng.below(3)));
    let mut addresses = vec![pod_address(i)];
    if i.is_multiple_of(4) {
        addresses.push(pod_address_v6(i));
    }
    Pod {
        labels: l,
        node: Some(format!("node-{:03}", rng.below(nodes))),
        addresses,
        host_network: false,
        ..Pod::default()
    }
}

pub fn mapping() -> LabelMappingSpec {
    let copy = |key: &str, source| CopyLabel {
        key: key.into(),
        from_label: key.into(),
        source,
    };
    let mut rules = vec![
        MappingRule {
            name: Some("pods".into()),
            match_: EndpointMatch {
                pods: Some(PodMatch::default()),
                ..EndpointMatch::default()
            },
            labels: Labels::new(),
            copy_labels: vec![
                copy("app", LabelSource::Object),
                copy("tier", LabelSource::Object),
                copy("env", LabelSource::Namespace),
            ],
        },
        MappingRule {
            name: Some("nodes".into()),
            match_: EndpointMatch {
                nodes: Some(LabelSelector::default()),
                ..EndpointMatch::default()
            },
            labels: labels(&[("role", "node")]),
            copy_labels: vec![copy("zone", LabelSource::Object)],
        },
    ];
    for k in 0..10 {
        rules.push(MappingRule {
            name: Some(format!("ext-{k}")),
            match_: EndpointMatch {
                cidrs: Some(vec![format!("203.0.{k}.0/24")]),
                ..EndpointMatch::default()
            },
            labels: labels(&[("app", &format!("ext-{k}")), ("tier", "external")]),
            copy_labels: vec![],
        });
    }
    LabelMappingSpec {
        priority: 10,
        rules,
    }
}

fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector::from_labels(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn peer_sel(pairs: &[(&str, &str)]) -> Peer {
    Peer {
        selector: Some(sel(pairs)),
        ..Peer::default()
    }
}

fn peer_cidr(cidr: &str, except: &[&str]) -> Peer {
    Peer {
        cidr: Some(cidr.into()),
        except: (!except.is_empty()).then(|| except.iter().map(|e| e.to_string()).collect()),
        ..Peer::default()
    }
}

fn tcp(port: u16, end: Option<u16>) -> PortSpec {
    PortSpec {
        protocol: Protocol::Tcp,
        port: Some(port),
        end_port: end,
        icmp_type: None,
    }
}

fn rule(action: Action, peers: Vec<Peer>, ports: Vec<PortSpec>) -> Rule {
    Rule {
        ownership: Default::default(),
        expires: None,
        name: None,
        action,
        peers,
        ports,
    }
}

/// Policy number `i`: the mix described in the module doc.
pub fn policy(rng: &mut Rng, i: usize, apps: usize) -> SegmentationPolicySpec {
    let app = i % apps;
    let name = app_name(app);
    let tier = primary_tier(app);
    let env = *rng.pick(&ENVS);
    let enforcement = match rng.below(10) {
        0..=3 => None,
        4..=5 => Some(EnforcementMode::Visibility),
        6..=7 => Some(EnforcementMode::Selective),
        _ => Some(EnforcementMode::Full),
    };
    let upstream = TIERS[(app + TIERS.len() - 1) % TIERS.len()];
    let port = 8000 + (app as u16 % 50) * 10;
    let mut scope = Scope {
        selector: Some(sel(&[("app", &name)])),
        cluster_wide: false,
    };
    let (mut ingress, mut egress) = (Vec::new(), Vec::new());
    match i % 20 {
        // Tier to tier on a port or a range, from this env, plus a named caller.
        0..=11 => {
            if rng.chance(50) {
                scope.selector = Some(sel(&[("app", &name), ("env", env)]));
            }
            let ports = if rng.chance(30) {
                vec![tcp(port, Some(port + 9))]
            } else {
                vec![tcp(port, None)]
            };
            ingress.push(rule(
                Action::Allow,
                vec![peer_sel(&[("tier", upstream), ("env", env)])],
                ports,
            ));
            let caller = app_name(rng.below(apps));
            ingress.push(rule(
                Action::Allow,
                vec![peer_sel(&[("app", &caller)])],
                vec![tcp(port, None)],
            ));
            let callee = rng.below(apps);
            let callee_port = 8000 + (callee as u16 % 50) * 10;
            egress.push(rule(
                Action::Allow,
                vec![peer_sel(&[("app", &app_name(callee))])],
                vec![tcp(callee_port, None)],
            ));
        }
        // Dev never reaches prod.
        12..=14 => {
            scope.selector = Some(sel(&[("env", "prod"), ("tier", tier)]));
            ingress.push(rule(
                Action::Deny,
                vec![peer_sel(&[("env", "dev")])],
                vec![],
            ));
        }
        // The outside world: labeled ranges, a CIDR with excepts.
        15..=16 => {
            let k = rng.below(10);
            egress.push(rule(
                Action::Allow,
                vec![
                    peer_sel(&[("app", &format!("ext-{k}"))]),
                    peer_cidr(&format!("198.51.{k}.0/24"), &[]),
                ],
                vec![tcp(443, None)],
            ));
            ingress.push(rule(
                Action::Allow,
                vec![peer_cidr(
                    "0.0.0.0/0",
                    &["10.0.0.0/8", &format!("192.0.{k}.0/24")],
                )],
                vec![tcp(443, None), tcp(80, None)],
            ));
        }
        // Databases: nothing from the web tier, whatever else allows it.
        17 => {
            scope.selector = Some(LabelSelector {
                match_labels: Labels::new(),
                match_expressions: vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: SelectorOperator::In,
                    values: vec!["db".into(), "cache".into()],
                }],
            });
            ingress.push(rule(
                Action::OverrideDeny,
                vec![peer_sel(&[("tier", "web")])],
                vec![],
            ));
            ingress.push(rule(
                Action::Allow,
                vec![Peer {
                    reserved: Some(ReservedPeer::Host),
                    ..Peer::default()
                }],
                vec![],
            ));
        }
        // Whole tiers of an env, with a UDP range to the nodes of a zone.
        18 => {
            scope.selector = Some(sel(&[("tier", tier), ("env", env)]));
            egress.push(rule(
                Action::Allow,
                vec![peer_sel(&[("role", "node"), ("zone", *rng.pick(&ZONES))])],
                vec![PortSpec {
                    protocol: Protocol::Udp,
                    port: Some(9000),
                    end_port: Some(9100),
                    icmp_type: None,
                }],
            ));
        }
        // A cluster-wide baseline, now and then.
        _ => {
            if i % 200 == 19 {
                scope = Scope {
                    selector: None,
                    cluster_wide: true,
                };
                egress.push(rule(
                    Action::Allow,
                    vec![
                        peer_sel(&[("app", "dns")]),
                        Peer {
                            reserved: Some(ReservedPeer::World),
                            ..Peer::default()
                        },
                    ],
                    vec![
                        PortSpec {
                            protocol: Protocol::Udp,
                            port: Some(53),
                            end_port: None,
                            icmp_type: None,
                        },
                        tcp(53, None),
                    ],
                ));
            } else {
                ingress.push(rule(
                    Action::Allow,
                    vec![peer_sel(&[("app", &name)])],
                    vec![],
                ));
            }
        }
    }
    SegmentationPolicySpec {
        ownership: Default::default(),
        scope,
        enforcement,
        ingress,
        egress,
        promotion: None,
    }
}

/// The whole cluster.
pub fn cluster(size: Size) -> Snapshot {
    let mut rng = Rng::new(size.seed);
    let mut s = Snapshot::default();
    for i in 0..size.nodes {
        let addresses = vec![IpAddr::from([172, 16, (i >> 8) as u8, i as u8])];
        let node = Node {
            labels: labels(&[("zone", ZONES[i % ZONES.len()])]),
            addresses,
        };
        s.nodes.insert(format!("node-{i:03}"), node);
    }
    for i in 0..size.namespaces {
        let env = ENVS[i % ENVS.len()];
        let ns = Namespace {
            labels: labels(&[("env", env), ("team", &format!("team-{}", i % 10))]),
        };
        s.namespaces.insert(format!("ns-{i:02}"), ns);
    }
    for i in 0..size.pods {
        let app = rng.below(size.apps);
        let ns = namespace_of(&mut rng, app, size.namespaces);
        let pod = pod(&mut rng, i, app, size.nodes);
        s.pods.insert(pod_key(i, ns, app), pod);
    }
    s.mappings = BTreeMap::from([("standard".to_string(), mapping())]);
    for i in 0..size.policies {
        s.policies
            .insert(format!("policy-{i:04}"), policy(&mut rng, i, size.apps));
    }
    s
}

/// Two changes that undo each other, so a benchmark can alternate them and
/// make every iteration a real change.
#[derive(Clone, Debug)]
pub struct Toggle {
    pub forth: Change,
    pub back: Change,
}

/// The identity key of a pod: what the mapping makes of it.
fn identity_key(s: &Snapshot, key: &PodKey, tier: &str) -> (String, String, String) {
    let app = s.pods[key].labels.get("app").cloned().unwrap_or_default();
    let env = s.namespaces[&key.namespace]
        .labels
        .get("env")
        .cloned()
        .unwrap_or_default();
    (app, tier.to_string(), env)
}

/// One pod moves to the other tier of its app and back; both identities
/// have other pods, so no identity comes or goes: the common case.
pub fn pod_relabel(s: &Snapshot) -> Toggle {
    let mut members: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (key, pod) in &s.pods {
        let tier = pod.labels.get("tier").map_or("", String::as_str);
        *members.entry(identity_key(s, key, tier)).or_default() += 1;
    }
    let (key, pod, other) = s
        .pods
        .iter()
        .filter_map(|(key, pod)| {
            let tier = pod.labels.get("tier")?;
            let app: usize = pod
                .labels
                .get("app")?
                .trim_start_matches("app-")
                .parse()
                .ok()?;
            let other = if tier == primary_tier(app) {
                TIERS[(app + 1) % TIERS.len()]
            } else {
                primary_tier(app)
            };
            let stays = members[&identity_key(s, key, tier)] >= 2;
            let exists = members.contains_key(&identity_key(s, key, other));
            (stays && exists).then_some((key, pod, other))
        })
        .nth(s.pods.len() / 3)
        .expect("a pod whose identity survives its move");
    let mut moved = pod.clone();
    moved.labels.insert("tier".into(), other.into());
    Toggle {
        forth: Change::UpsertPod(key.clone(), moved),
        back: Change::UpsertPod(key.clone(), pod.clone()),
    }
}

/// One pod takes a label set nobody has (a canary) and back: an identity is
/// born and dies on every change, and every selector that matches it moves.
pub fn pod_relabel_new_identity(s: &Snapshot) -> Toggle {
    let (key, pod) = s.pods.iter().nth(s.pods.len() / 2).expect("a pod");
    let mut moved = pod.clone();
    moved.labels.insert("tier".into(), "canary".into());
    Toggle {
        forth: Change::UpsertPod(key.clone(), moved),
        back: Change::UpsertPod(key.clone(), pod.clone()),
    }
}

/// A new pod appears, and goes again.
pub fn pod_add_delete(s: &Snapshot, size: Size) -> Toggle {
    let mut rng = Rng::new(size.seed ^ 0xadd);
    let i = size.pods + 1;
    let app = rng.below(size.apps);
    let key = pod_key(i, namespace_of(&mut rng, app, size.namespaces), app);
    assert!(!s.pods.contains_key(&key));
    let pod = pod(&mut rng, i, app, size.nodes);
    Toggle {
        forth: Change::UpsertPod(key.clone(), pod),
        back: Change::DeletePod(key),
    }
}

/// An existing policy moves its first ingress rule to another port, and back.
pub fn policy_port_change(s: &Snapshot, which: usize) -> Toggle {
    let (name, spec) = s
        .policies
        .iter()
        .cycle()
        .skip(which % s.policies.len())
        .find(|(_, p)| p.ingress.first().is_some_and(|r| !r.ports.is_empty()))
        .expect("a policy with ports");
    let mut changed = spec.clone();
    for p in &mut changed.ingress[0].ports {
        p.port = p.port.map(|n| n + 1);
        p.end_port = p.end_port.map(|n| n + 1);
    }
    Toggle {
        forth: Change::UpsertPolicy(name.clone(), changed),
        back: Change::UpsertPolicy(name.clone(), spec.clone()),
    }
}

/// A new policy appears, and goes again.
pub fn policy_add_delete(size: Size) -> Toggle {
    let mut rng = Rng::new(size.seed ^ 0x9011c1);
    let spec = policy(&mut rng, 3, size.apps);
    let name = "policy-new".to_string();
    Toggle {
        forth: Change::UpsertPolicy(name.clone(), spec),
        back: Change::DeletePolicy(name),
    }
}
