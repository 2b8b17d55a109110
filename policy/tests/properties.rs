//! Properties of the compiler over random small clusters (see
//! `properties/strategies.rs`): monotonicity of `allow` and `deny`, the
//! supremacy of `overrideDeny`, determinism and identity stability, and
//! incremental compiles equal to full ones after every change.
//!
//! Case counts are modest so the file runs in seconds in a debug build;
//! `PROPTEST_CASES=2000 cargo test -p bulkhead-policy --test properties`
//! digs deeper.

#[path = "properties/strategies.rs"]
mod strategies;
mod support;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::IpAddr;

use bulkhead_api::policy::{
    Action, EnforcementMode, Peer, PortSpec, Protocol, ReservedPeer, Rule, Scope,
    SegmentationPolicySpec,
};
use bulkhead_api::LabelSelector;
use bulkhead_policy::snapshot::{Node, PodKey};
use bulkhead_policy::{
    compile, simulate, Change, CompileOptions, Compiler, EndpointRef, FlowEnd, FlowQuery,
    IdentityAllocation, Output, Snapshot, Verdict,
};
use proptest::prelude::*;
use strategies::*;

/// `cases` unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

fn options() -> CompileOptions {
    CompileOptions::default()
}

fn full(snapshot: &Snapshot) -> Output {
    compile(snapshot, &options(), &IdentityAllocation::default())
}

/// Everything a flow can start or end at: pods that are endpoints, nodes by
/// name, and outside addresses.
fn flow_ends(snapshot: &Snapshot) -> Vec<(String, FlowEnd)> {
    let pods = snapshot
        .pods
        .iter()
        .filter(|(_, p)| p.node.is_some() && !p.addresses.is_empty() && !p.host_network)
        .map(|(k, _)| (k.to_string(), FlowEnd::Pod(k.clone())));
    let nodes = snapshot
        .nodes
        .keys()
        .map(|n| (n.clone(), FlowEnd::Host(n.clone())));
    let outside = OUTSIDE
        .iter()
        .map(|a| (a.to_string(), FlowEnd::Address(a.parse().expect("address"))));
    pods.chain(nodes).chain(outside).collect()
}

type Reach = BTreeMap<(String, String, Protocol, u16), Option<Verdict>>;

/// The verdict of every flow between two ends (at least one managed), for
/// each sample of traffic; `None` where the query has no answer (no common
/// address family, say).
fn reachability(out: &Output, ends: &[(String, FlowEnd)]) -> Reach {
    let mut reach = Reach::new();
    for (fname, from) in ends {
        for (tname, to) in ends {
            if matches!((from, to), (FlowEnd::Address(_), FlowEnd::Address(_))) {
                continue;
            }
            for (protocol, port) in TRAFFIC {
                let q = FlowQuery {
                    from: from.clone(),
                    to: to.clone(),
                    protocol,
                    port,
                };
                let v = simulate(out, &q).ok().map(|v| v.verdict);
                reach.insert((fname.clone(), tname.clone(), protocol, port), v);
            }
        }
    }
    reach
}

/// Where an extra rule goes.
#[derive(Clone, Debug)]
enum Placement {
    /// Into a new policy with this scope and no `enforcement` (so no mode changes).
    NewPolicy(Scope),
    /// Appended to the existing policy with this index (modulo their number).
    Existing(usize),
}

fn placement() -> impl Strategy<Value = Placement> {
    prop_oneof![
        scope().prop_map(Placement::NewPolicy),
        any::<usize>().prop_map(Placement::Existing)
    ]
}

fn with_rule(snapshot: &Snapshot, rule: Rule, ingress: bool, at: &Placement) -> Snapshot {
    let mut s = snapshot.clone();
    let existing = match at {
        Placement::Existing(i) if !s.policies.is_empty() => {
            let name = s.policies.keys().nth(i % s.policies.len()).cloned();
            name.and_then(|n| s.policies.get_mut(&n))
        }
        _ => None,
    };
    let target = match existing {
        Some(p) => p,
        None => {
            let scope = match at {
                Placement::NewPolicy(scope) => scope.clone(),
                Placement::Existing(_) => Scope {
                    selector: None,
                    cluster_wide: true,
                },
            };
            let spec = SegmentationPolicySpec {
                ownership: Default::default(),
                scope,
                enforcement: None,
                ingress: vec![],
                egress: vec![],
                promotion: None,
            };
            s.policies.entry("zz-added".into()).or_insert(spec)
        }
    };
    if ingress {
        target.ingress.push(rule);
    } else {
        target.egress.push(rule);
    }
    s
}

/// Flows whose verdict went from `from` to `to` between two reachabilities.
fn flipped(before: &Reach, after: &Reach, from: Verdict, to: Verdict) -> Vec<String> {
    before
        .iter()
        .filter(|(k, v)| **v == Some(from) && after.get(*k) == Some(&Some(to)))
        .map(|((f, t, p, n), _)| format!("{f} -> {t} {p:?}/{n}"))
        .collect()
}

fn explain(out: &Output, flow: &str) -> String {
    let mut parts = flow.split(' ');
    let (from, _, to) = (parts.next(), parts.next(), parts.next());
    let Some((proto, port)) = parts.next().and_then(|pp| pp.split_once('/')) else {
        return String::new();
    };
    let protocol = match proto {
        "Tcp" => Protocol::Tcp,
        "Udp" => Protocol::Udp,
        _ => Protocol::Sctp,
    };
    let end = |s: &str| {
        if let Ok(a) = s.parse::<IpAddr>() {
            FlowEnd::Address(a)
        } else if let Some((ns, n)) = s.split_once('/') {
            FlowEnd::Pod(PodKey::new(ns, n))
        } else {
            FlowEnd::Host(s.into())
        }
    };
    let (Some(from), Some(to), Ok(port)) = (from, to, port.parse()) else {
        return String::new();
    };
    format!(
        "{:#?}",
        simulate(
            out,
            &FlowQuery {
                from: end(from),
                to: end(to),
                protocol,
                port
            }
        )
    )
}

proptest! {
    #![proptest_config(config(96))]

    /// (a) Adding an `allow` rule never takes reachability away.
    #[test]
    fn adding_an_allow_never_removes_reachability(
        seed in cluster(10, 4),
        rule in rule_with(Just(Action::Allow)),
        ingress in any::<bool>(),
        at in placement(),
    ) {
        let before_snap = seed.snapshot();
        let after_snap = with_rule(&before_snap, rule, ingress, &at);
        let ends = flow_ends(&before_snap);
        let (before, after) = (full(&before_snap), full(&after_snap));
        let lost = flipped(&reachability(&before, &ends), &reachability(&after, &ends), Verdict::Allow, Verdict::Deny);
        prop_assert!(
            lost.is_empty(),
            "allowed before, denied after adding the allow: {lost:?}\nfirst, before: {}\nafter: {}",
            explain(&before, &lost[0]),
            explain(&after, &lost[0]),
        );
    }

    /// (b) Adding a `deny` rule never adds reachability.
    #[test]
    fn adding_a_deny_never_adds_reachability(
        seed in cluster(10, 4),
        rule in rule_with(Just(Action::Deny)),
        ingress in any::<bool>(),
        at in placement(),
    ) {
        let before_snap = seed.snapshot();
        let after_snap = with_rule(&before_snap, rule, ingress, &at);
        let ends = flow_ends(&before_snap);
        let (before, after) = (full(&before_snap), full(&after_snap));
        let gained = flipped(&reachability(&before, &ends), &reachability(&after, &ends), Verdict::Deny, Verdict::Allow);
        prop_assert!(
            gained.is_empty(),
            "denied before, allowed after adding the deny: {gained:?}\nfirst, before: {}\nafter: {}",
            explain(&before, &gained[0]),
            explain(&after, &gained[0]),
        );
    }

    /// (c) An `overrideDeny` that matches a flow's egress (or ingress) on an
    /// endpoint in full or selective mode denies it, whatever else exists.
    /// The override's policy may set that mode itself, or leave it to the others.
    #[test]
    fn override_deny_always_wins(
        seed in cluster(10, 5),
        subject in any::<usize>(),
        peer in any::<usize>(),
        traffic in 0..TRAFFIC.len(),
        egress in any::<bool>(),
        specific_peer in any::<bool>(),
        enforcement in prop_oneof![Just(None), Just(Some(EnforcementMode::Selective)), Just(Some(EnforcementMode::Full))],
    ) {
        let snap = seed.snapshot();
        let before = full(&snap);
        let ends = flow_ends(&snap);
        let managed: Vec<&(String, FlowEnd)> =
            ends.iter().filter(|(_, e)| !matches!(e, FlowEnd::Address(_))).collect();
        prop_assume!(!managed.is_empty());
        let (subject_name, subject_end) = managed[subject % managed.len()];
        let (peer_name, peer_end) = &ends[peer % ends.len()];
        let (protocol, port) = TRAFFIC[traffic];

        let subject_ref = endpoint_ref(subject_end);
        let subject_facts = &before.endpoints[&subject_ref];
        let scope = if subject_facts.labels.is_empty() {
            Scope { selector: None, cluster_wide: true }
        } else {
            Scope { selector: Some(LabelSelector { match_labels: subject_facts.labels.clone(), ..Default::default() }), cluster_wide: false }
        };
        let peers = if specific_peer {
            vec![specific(&before, subject_facts.node.as_deref(), peer_end)]
        } else {
            vec![]
        };
        let rule = Rule {
            ownership: Default::default(),
            expires: None,
            name: Some("override".into()),
            action: Action::OverrideDeny,
            peers,
            ports: vec![PortSpec { protocol, port: Some(port), end_port: None, icmp_type: None }],
        };
        let spec = SegmentationPolicySpec {
            ownership: Default::default(),
            scope,
            enforcement,
            ingress: if egress { vec![] } else { vec![rule.clone()] },
            egress: if egress { vec![rule] } else { vec![] },
            promotion: None,
        };
        let mut after_snap = snap.clone();
        after_snap.policies.insert("zz-override".into(), spec);
        let after = full(&after_snap);
        let mode = after.endpoints[&subject_ref].mode;
        if mode == EnforcementMode::Visibility {
            return Ok(()); // nothing is enforced: not what this property is about
        }
        let (from, to) = if egress { (subject_end, peer_end) } else { (peer_end, subject_end) };
        let q = FlowQuery { from: from.clone(), to: to.clone(), protocol, port };
        let Ok(v) = simulate(&after, &q) else { return Ok(()) };
        let side = if egress { &v.egress } else { &v.ingress };
        let decided_by_override = side
            .as_ref()
            .and_then(|s| s.rule.as_ref())
            .is_some_and(|r| r.action == Action::OverrideDeny);
        prop_assert!(
            v.verdict == Verdict::Deny && decided_by_override,
            "{subject_name} ({mode:?}) {} {peer_name} {protocol:?}/{port}: {v:#?}",
            if egress { "->" } else { "<-" },
        );
    }

    /// (d) Compiling is deterministic, and recompiling with the previous
    /// allocation (in memory, or rebuilt from the published shards after a
    /// restart) keeps every identity.
    #[test]
    fn compiling_twice_gives_identical_output(seed in cluster(12, 5), other in cluster(12, 5)) {
        let snap = seed.snapshot();
        let first = full(&snap);
        prop_assert_eq!(&full(&snap), &first);

        let again = compile(&snap, &options(), &first.allocation);
        prop_assert!(again == first, "recompile with the allocation: {:#?}", diff(&again, &first));

        let restored = IdentityAllocation::from_identity_maps(&first.identity_maps);
        let after_restart = compile(&snap, &options(), &restored);
        prop_assert_eq!(&after_restart.identities, &first.identities);
        prop_assert_eq!(&after_restart.endpoints, &first.endpoints);
        prop_assert_eq!(&after_restart.rule_maps, &first.rule_maps);

        let mut compiler = Compiler::new(options(), IdentityAllocation::default());
        compiler.load(snap.clone());
        let loaded = compiler.output().clone();
        prop_assert!(loaded == first, "Compiler::load vs compile: {:#?}", diff(&loaded, &first));
        compiler.load(snap.clone());
        prop_assert!(compiler.output() == &loaded, "second load: {:#?}", diff(compiler.output(), &loaded));

        // Another cluster compiled after this one keeps the numbers of the
        // label sets both use.
        let next = compile(&other.snapshot(), &options(), &first.allocation);
        for (labels, id) in next.allocation.iter() {
            if let Some(old) = first.allocation.get(labels) {
                prop_assert_eq!(id, old, "label set {:?} was renumbered", labels);
            }
        }
    }
}

fn endpoint_ref(end: &FlowEnd) -> EndpointRef {
    match end {
        FlowEnd::Pod(k) => EndpointRef::Pod(k.clone()),
        FlowEnd::Host(n) => EndpointRef::Node(n.clone()),
        FlowEnd::Address(a) => EndpointRef::Cidr((*a).into()),
    }
}

/// A peer that names exactly `end` as the subject's node sees it.
fn specific(out: &Output, subject_node: Option<&str>, end: &FlowEnd) -> Peer {
    let reserved = |r| Peer {
        reserved: Some(r),
        ..Peer::default()
    };
    match end {
        FlowEnd::Address(a) => Peer {
            cidr: Some(ipnet::IpNet::from(*a).to_string()),
            ..Peer::default()
        },
        FlowEnd::Host(n) if subject_node == Some(n.as_str()) => reserved(ReservedPeer::Host),
        FlowEnd::Pod(_) | FlowEnd::Host(_) => {
            let labels = &out.endpoints[&endpoint_ref(end)].labels;
            if !labels.is_empty() {
                Peer {
                    selector: Some(LabelSelector::from_labels(labels.clone())),
                    ..Peer::default()
                }
            } else if matches!(end, FlowEnd::Host(_)) {
                reserved(ReservedPeer::RemoteNode)
            } else {
                reserved(ReservedPeer::Unlabeled)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// (e) incremental == full

/// One change, described independently of what exists; resolved against the
/// compiler's snapshot when applied.
#[derive(Clone, Debug)]
enum Step {
    UpsertPod {
        slot: usize,
        seed: PodSeed,
        clash: bool,
    },
    DeletePod(usize),
    RelabelPod {
        pick: usize,
        app: Option<usize>,
        tier: Option<usize>,
    },
    RelabelNamespace {
        ns: usize,
        env: Option<usize>,
    },
    DeleteNamespace(usize),
    UpsertNode {
        node: usize,
        zone: Option<usize>,
    },
    DeleteNode(usize),
    UpsertPolicy {
        slot: usize,
        spec: Box<SegmentationPolicySpec>,
    },
    DeletePolicy(usize),
    Mappings(MappingSeed),
    DeleteMapping(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..14usize, pod_seed(), proptest::bool::weighted(0.1))
            .prop_map(|(slot, seed, clash)| Step::UpsertPod { slot, seed, clash }),
        2 => any::<usize>().prop_map(Step::DeletePod),
        3 => (any::<usize>(), proptest::option::of(0..3usize), proptest::option::of(0..2usize))
            .prop_map(|(pick, app, tier)| Step::RelabelPod { pick, app, tier }),
        2 => (0..4usize, proptest::option::of(0..2usize)).prop_map(|(ns, env)| Step::RelabelNamespace { ns, env }),
        1 => (0..4usize).prop_map(Step::DeleteNamespace),
        1 => (0..4usize, proptest::option::of(0..2usize)).prop_map(|(node, zone)| Step::UpsertNode { node, zone }),
        1 => (0..4usize).prop_map(Step::DeleteNode),
        4 => (0..6usize, policy()).prop_map(|(slot, spec)| Step::UpsertPolicy {
            slot,
            spec: Box::new(spec),
        }),
        2 => any::<usize>().prop_map(Step::DeletePolicy),
        1 => mapping_seed().prop_map(Step::Mappings),
        1 => any::<usize>().prop_map(Step::DeleteMapping),
    ]
}

/// The changes a step makes to `s` (a mapping seed may add and delete several).
fn resolve(s: &Snapshot, step: &Step) -> Vec<Change> {
    let nth = |n: usize, len: usize| (len > 0).then(|| n % len);
    match step {
        Step::UpsertPod { slot, seed, clash } => {
            let (key, pod) = seed.build(*slot, s.nodes.len().max(1), *clash);
            vec![Change::UpsertPod(key, pod)]
        }
        Step::DeletePod(pick) => nth(*pick, s.pods.len())
            .and_then(|i| s.pods.keys().nth(i))
            .map(|k| Change::DeletePod(k.clone()))
            .into_iter()
            .collect(),
        Step::RelabelPod { pick, app, tier } => nth(*pick, s.pods.len())
            .and_then(|i| s.pods.iter().nth(i))
            .map(|(k, p)| {
                let mut pod = p.clone();
                for (key, value) in [
                    ("app", app.map(|a| APPS[a])),
                    ("tier", tier.map(|t| TIERS[t])),
                ] {
                    match value {
                        Some(v) => pod.labels.insert(key.into(), v.into()),
                        None => pod.labels.remove(key),
                    };
                }
                Change::UpsertPod(k.clone(), pod)
            })
            .into_iter()
            .collect(),
        Step::RelabelNamespace { ns, env } => {
            vec![Change::UpsertNamespace(format!("ns{ns}"), namespace(*env))]
        }
        Step::DeleteNamespace(ns) => vec![Change::DeleteNamespace(format!("ns{ns}"))],
        Step::UpsertNode { node: i, zone } => {
            let (name, node): (String, Node) = node(*i, *zone);
            vec![Change::UpsertNode(name, node)]
        }
        Step::DeleteNode(i) => vec![Change::DeleteNode(format!("n{i}"))],
        Step::UpsertPolicy { slot, spec } => {
            vec![Change::UpsertPolicy(format!("pol{slot}"), (**spec).clone())]
        }
        Step::DeletePolicy(pick) => nth(*pick, s.policies.len())
            .and_then(|i| s.policies.keys().nth(i))
            .map(|k| Change::DeletePolicy(k.clone()))
            .into_iter()
            .collect(),
        Step::Mappings(seed) => {
            let wanted: BTreeMap<String, _> = seed.mappings().into_iter().collect();
            let mut changes: Vec<Change> = s
                .mappings
                .keys()
                .filter(|k| !wanted.contains_key(*k))
                .map(|k| Change::DeleteMapping(k.clone()))
                .collect();
            changes.extend(
                wanted
                    .into_iter()
                    .filter(|(k, v)| s.mappings.get(k) != Some(v))
                    .map(|(k, v)| Change::UpsertMapping(k, v)),
            );
            changes
        }
        Step::DeleteMapping(pick) => nth(*pick, s.mappings.len())
            .and_then(|i| s.mappings.keys().nth(i))
            .map(|k| Change::DeleteMapping(k.clone()))
            .into_iter()
            .collect(),
    }
}

fn any_options() -> impl Strategy<Value = CompileOptions> {
    let mode = prop_oneof![
        3 => Just(EnforcementMode::Visibility),
        1 => Just(EnforcementMode::Selective),
        1 => Just(EnforcementMode::Full),
    ];
    (mode, prop_oneof![Just(1u32), Just(4), Just(16)]).prop_map(
        |(default_mode, identity_shards)| CompileOptions {
            default_mode,
            identity_shards,
            ..CompileOptions::default()
        },
    )
}

proptest! {
    #![proptest_config(config(128))]

    /// (e) After every change, the incremental output equals a full compile
    /// of the same snapshot with the allocation the compiler had just before it.
    #[test]
    fn incremental_equals_full_after_every_change(
        seed in cluster(10, 4),
        steps in proptest::collection::vec(step(), 1..=12),
        options in any_options(),
    ) {
        let mut compiler = Compiler::new(options.clone(), IdentityAllocation::default());
        compiler.load(seed.snapshot());
        let mut applied = Vec::new();
        for step in &steps {
            for change in resolve(compiler.snapshot(), step) {
                let allocation = compiler.output().allocation.clone();
                applied.push(change.clone());
                compiler.apply(change);
                let whole = compile(compiler.snapshot(), &options, &allocation);
                let differences = diff(compiler.output(), &whole);
                prop_assert!(
                    differences.is_empty(),
                    "after {} change(s), the last {:?}:\n{}",
                    applied.len(),
                    applied.last(),
                    differences.join("\n"),
                );
            }
        }
    }
}

/// Where two outputs differ, field by field and key by key (left: incremental
/// or the first, right: full or the second).
fn diff(left: &Output, right: &Output) -> Vec<String> {
    let mut out = Vec::new();
    diff_map(&mut out, "endpoints", &left.endpoints, &right.endpoints);
    diff_value(&mut out, "unlabeled", &left.unlabeled, &right.unlabeled);
    diff_value(&mut out, "conflicts", &left.conflicts, &right.conflicts);
    diff_map(&mut out, "identities", &left.identities, &right.identities);
    diff_value(
        &mut out,
        "allocation.next",
        &left.allocation.next_id(),
        &right.allocation.next_id(),
    );
    let allocation = |o: &Output| {
        o.allocation
            .iter()
            .map(|(l, id)| (l.clone(), id))
            .collect::<BTreeMap<_, _>>()
    };
    diff_map(
        &mut out,
        "allocation",
        &allocation(left),
        &allocation(right),
    );
    diff_value(
        &mut out,
        "allocation.released",
        &left.allocation.released().collect::<Vec<_>>(),
        &right.allocation.released().collect::<Vec<_>>(),
    );
    diff_map(&mut out, "rule_maps", &left.rule_maps, &right.rule_maps);
    let shards = |o: &Output| {
        o.identity_maps
            .iter()
            .cloned()
            .enumerate()
            .collect::<BTreeMap<_, _>>()
    };
    diff_map(&mut out, "identity_maps", &shards(left), &shards(right));
    diff_map(&mut out, "policies", &left.policies, &right.policies);
    diff_map(&mut out, "mappings", &left.mappings, &right.mappings);
    out
}

fn diff_value<T: PartialEq + Debug>(out: &mut Vec<String>, what: &str, left: &T, right: &T) {
    if left != right {
        out.push(format!("{what}:\n  left:  {left:?}\n  right: {right:?}"));
    }
}

fn diff_map<K: Ord + Debug, V: PartialEq + Debug>(
    out: &mut Vec<String>,
    what: &str,
    left: &BTreeMap<K, V>,
    right: &BTreeMap<K, V>,
) {
    let keys: std::collections::BTreeSet<&K> = left.keys().chain(right.keys()).collect();
    for k in keys {
        let (l, r) = (left.get(k), right.get(k));
        if l != r {
            out.push(format!("{what}[{k:?}]:\n  left:  {l:?}\n  right: {r:?}"));
        }
    }
}

// ---------------------------------------------------------------------------
// What the properties found, reduced to the smallest cluster that shows it.

/// A mainframe range labeled by a mapping, a web pod allowed (full mode) to
/// reach it by label, and an api pod in visibility mode.
fn mainframe_world(web_rule: &str) -> support::World {
    support::World::new()
        .ns("prod", &[("env", "prod")])
        .node("n1", "192.168.0.1", &[])
        .pod("prod", "web", "n1", "10.0.1.1", &[("app", "web")])
        .pod("prod", "api", "n1", "10.0.1.2", &[("app", "api")])
        .mapping("m", support::APP_ENV_MAPPING)
        .mapping(
            "mainframe",
            "priority: 10\nrules:\n- match: {cidrs: [10.9.0.0/16]}\n  labels: {app: mainframe}",
        )
        .policy("web", web_rule)
}

/// Property (a), reduced. Another team's policy names 10.9.0.0/24 for its own
/// pods; that must not change what `app: mainframe` means for anybody else.
/// Today the new, narrower CIDR identity carries only the CIDR marker, not the
/// labels of the labeled range around it, so 10.9.0.5 stops being
/// `app: mainframe` and web loses its access.
#[test]
fn a_policy_cidr_inside_a_labeled_range_keeps_the_range_labels_for_allows() {
    use bulkhead_api::policy::Protocol::Tcp;
    let w = mainframe_world(
        "scope: {selector: {matchLabels: {app: web}}}\nenforcement: full\negress: [{action: allow, peers: [{selector: {matchLabels: {app: mainframe}}}]}]",
    );
    assert_eq!(
        support::verdict(&w.compile(), "prod/web", "10.9.0.5", Tcp, 443),
        Verdict::Allow
    );
    let w = w.policy(
        "api",
        "scope: {selector: {matchLabels: {app: api}}}\negress: [{action: allow, peers: [{cidr: 10.9.0.0/24}]}]",
    );
    assert_eq!(
        support::verdict(&w.compile(), "prod/web", "10.9.0.5", Tcp, 443),
        Verdict::Allow,
        "adding an allow for api took web's access to the mainframe away"
    );
}

/// Property (b), reduced: the same cause lets a deny open a flow.
#[test]
fn a_policy_cidr_inside_a_labeled_range_keeps_the_range_labels_for_denies() {
    use bulkhead_api::policy::Protocol::Tcp;
    let w = mainframe_world(
        "scope: {selector: {matchLabels: {app: web}}}\nenforcement: selective\negress: [{action: deny, peers: [{selector: {matchLabels: {app: mainframe}}}]}]",
    );
    assert_eq!(
        support::verdict(&w.compile(), "prod/web", "10.9.0.5", Tcp, 443),
        Verdict::Deny
    );
    let w = w.policy(
        "api",
        "scope: {selector: {matchLabels: {app: api}}}\negress: [{action: deny, peers: [{cidr: 10.9.0.0/24}]}]",
    );
    assert_eq!(
        support::verdict(&w.compile(), "prod/web", "10.9.0.5", Tcp, 443),
        Verdict::Deny,
        "adding a deny for api opened web's way to the mainframe"
    );
}

/// Property (e), reduced. When the last endpoint with a reserved identity
/// goes, the incremental compiler drops that identity from every reserved
/// peer set (`unlabeled` here) while a full compile keeps it: the rule maps
/// and the "selects nothing" warnings then differ from what a restart writes.
#[test]
fn incremental_keeps_reserved_peers_when_their_last_endpoint_leaves() {
    let w = support::World::new()
        .ns("prod", &[("env", "prod")])
        .node("n1", "192.168.0.1", &[])
        .pod("prod", "db", "n1", "10.0.1.1", &[("app", "db")])
        .pod("other", "job", "n1", "10.0.1.2", &[]) // no namespace labels, no pod labels
        .mapping("m", support::APP_ENV_MAPPING)
        .policy(
            "db",
            "scope: {selector: {matchLabels: {app: db}}}\nenforcement: full\ningress: [{action: allow, peers: [{reserved: unlabeled}]}]",
        );
    let mut compiler = Compiler::new(w.options.clone(), IdentityAllocation::default());
    compiler.load(w.snap.clone());
    let allocation = compiler.output().allocation.clone();
    compiler.apply(Change::DeletePod(PodKey::new("other", "job")));
    let whole = compile(compiler.snapshot(), &w.options, &allocation);
    let differences = diff(compiler.output(), &whole);
    assert!(
        differences.is_empty(),
        "incremental (left) vs full (right):\n{}",
        differences.join("\n")
    );
}

/// The same with `remoteNode`: the only unlabeled node is deleted.
#[test]
fn incremental_keeps_remote_node_peers_when_the_last_unlabeled_node_leaves() {
    let w = support::World::new()
        .ns("prod", &[("env", "prod")])
        .node("n1", "192.168.0.1", &[])
        .node("n2", "192.168.0.2", &[])
        .pod("prod", "db", "n1", "10.0.1.1", &[("app", "db")])
        .mapping("m", support::APP_ENV_MAPPING)
        .mapping("nodes", "rules:\n- match: {hostnames: [n1]}\n  labels: {app: node}")
        .policy(
            "db",
            "scope: {selector: {matchLabels: {app: db}}}\nenforcement: full\ningress: [{action: allow, peers: [{reserved: remoteNode}]}]",
        );
    let mut compiler = Compiler::new(w.options.clone(), IdentityAllocation::default());
    compiler.load(w.snap.clone());
    let allocation = compiler.output().allocation.clone();
    compiler.apply(Change::DeleteNode("n2".into()));
    let whole = compile(compiler.snapshot(), &w.options, &allocation);
    let differences = diff(compiler.output(), &whole);
    assert!(
        differences.is_empty(),
        "incremental (left) vs full (right):\n{}",
        differences.join("\n")
    );
}
