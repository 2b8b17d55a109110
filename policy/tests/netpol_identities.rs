//! NetworkPolicy support as the rest of the compiler sees it: off by default,
//! identities that carry implicit labels without changing what segmentation
//! labels mean (the labeling queue included), and incremental compiles equal
//! to whole ones through every kind of change.

mod support;

use std::collections::BTreeSet;

use bulkhead_api::identity::UNLABELED;
use bulkhead_api::policy::Protocol;
use bulkhead_policy::netpol::{self, NetworkPolicyKey};
use bulkhead_policy::snapshot::{NamedPort, Namespace, PodKey};
use bulkhead_policy::{compile, convert, Change, CompileOptions, Compiler, EndpointRef, Snapshot};
use bulkhead_policy::{IdentityAllocation, Output};
use support::{labels, World, APP_ENV_MAPPING};

fn network_policy(yaml: &str) -> (NetworkPolicyKey, netpol::NetworkPolicy) {
    let obj = serde_yaml::from_str(yaml).expect("NetworkPolicy YAML");
    convert::network_policy(&obj).expect("converts")
}

fn on() -> CompileOptions {
    CompileOptions {
        network_policies: true,
        ..CompileOptions::default()
    }
}

fn cluster() -> World {
    let mut world = World::new()
        .node("n1", "192.168.0.1", &[])
        .ns("shop", &[("env", "prod")])
        .ns("ops", &[])
        .pod("shop", "web", "n1", "10.0.0.1", &[("app", "web")])
        .pod("shop", "db", "n1", "10.0.0.2", &[("app", "db")])
        .pod("ops", "probe", "n1", "10.0.1.1", &[("app", "probe")]);
    let db = world
        .snap
        .pods
        .get_mut(&PodKey::new("shop", "db"))
        .expect("db");
    db.named_ports = BTreeSet::from([NamedPort {
        name: "sql".into(),
        protocol: Protocol::Tcp,
        port: 5432,
    }]);
    let (key, policy) = network_policy(
        "metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: sql}]",
    );
    world.snap.network_policies.insert(key, policy);
    world
}

fn pod(out: &Output, ns: &str, name: &str) -> bulkhead_policy::EndpointFacts {
    out.endpoints[&EndpointRef::Pod(PodKey::new(ns, name))].clone()
}

#[test]
fn network_policies_are_ignored_unless_enabled() {
    let out = cluster().compile();
    assert!(
        out.policies
            .keys()
            .all(|p| !p.starts_with("networkpolicy:")),
        "{:?}",
        out.policies.keys()
    );
    assert_eq!(pod(&out, "shop", "db").identity, UNLABELED);
    assert!(out
        .identities
        .values()
        .all(|l| l.keys().all(|k| !netpol::is_implicit(k))));
}

#[test]
fn the_labeling_queue_still_lists_pods_without_segmentation_labels() {
    let world = World {
        options: on(),
        ..cluster()
    };
    let out = world.compile();
    let db = pod(&out, "shop", "db");
    assert!(db.labels.is_empty(), "segmentation labels stay empty");
    assert_ne!(
        db.identity, UNLABELED,
        "the identity carries implicit labels"
    );
    assert_eq!(
        out.identities[&db.identity],
        labels(&[
            ("k8s:namespace", "shop"),
            ("k8s:pod/app", "db"),
            ("k8s:port/sql", "5432/TCP"),
        ])
    );
    let unlabeled_pods = |out: &Output| {
        let pods = out.unlabeled.iter();
        pods.filter(|e| matches!(e, EndpointRef::Pod(_))).count()
    };
    assert_eq!(unlabeled_pods(&out), 3, "{:?}", out.unlabeled);
    let facts = &out.policies["networkpolicy:shop/db"];
    assert_eq!(facts.matched_endpoints, 1);
    assert!(facts.warnings.is_empty(), "{:?}", facts.warnings);

    // With segmentation labels the queue empties; implicit labels join them.
    let labeled = world.mapping("app-env", APP_ENV_MAPPING).compile();
    assert_eq!(unlabeled_pods(&labeled), 0, "{:?}", labeled.unlabeled);
    let db = pod(&labeled, "shop", "db");
    assert_eq!(db.labels, labels(&[("app", "db"), ("env", "prod")]));
    assert!(labeled.identities[&db.identity].contains_key("k8s:port/sql"));
}

#[test]
fn rules_are_named_after_the_network_policy() {
    let out = World {
        options: on(),
        ..cluster()
    }
    .compile();
    let rules: BTreeSet<(String, String)> = out.rule_maps["n1"]
        .rules
        .iter()
        .map(|r| (r.policy.clone(), r.rule.clone()))
        .collect();
    let expected = ["ingress[0]", "ingress (own node)", "ingress (isolation)"]
        .map(|r| ("networkpolicy:shop/db".to_string(), r.to_string()));
    assert_eq!(rules, BTreeSet::from(expected));
}

/// After every change, the incremental output equals a whole compile from
/// the allocation the compiler had just before it.
#[test]
fn incremental_equals_full_through_network_policy_changes() {
    let world = cluster().mapping("app-env", APP_ENV_MAPPING);
    let mut snap: Snapshot = world.snap.clone();
    let mut compiler = Compiler::new(on(), IdentityAllocation::default());
    compiler.load(snap.clone());
    let (wide_key, wide) = network_policy(
        "metadata: {name: out, namespace: ops}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.2/32]}
    - namespaceSelector: {matchExpressions: [{key: env, operator: NotIn, values: [dev]}]}
      podSelector: {matchLabels: {tier: front}}
    ports: [{port: sql}, {port: 80, endPort: 90, protocol: UDP}]",
    );
    let mut web = snap.pods[&PodKey::new("shop", "web")].clone();
    web.labels.insert("tier".into(), "front".into());
    let mut dev = Namespace::default();
    dev.labels.insert("env".into(), "dev".into());
    let mut db = snap.pods[&PodKey::new("shop", "db")].clone();
    db.addresses = vec!["10.0.0.3".parse().expect("ip")];
    let changes = vec![
        Change::UpsertNetworkPolicy(wide_key.clone(), wide),
        Change::UpsertPod(PodKey::new("shop", "web"), web),
        Change::UpsertNamespace("shop".into(), dev),
        Change::UpsertPod(PodKey::new("shop", "db"), db),
        Change::DeletePod(PodKey::new("shop", "web")),
        Change::DeleteNetworkPolicy(NetworkPolicyKey::new("shop", "db")),
        Change::DeleteNetworkPolicy(wide_key),
    ];
    for (i, change) in changes.into_iter().enumerate() {
        let before = compiler.output().allocation.clone();
        snap.apply(change.clone());
        compiler.apply(change.clone());
        let whole = compile(&snap, &on(), &before);
        assert!(
            compiler.output() == &whole,
            "after change {i} ({change:?}):\nincremental {:#?}\nwhole {:#?}",
            compiler.output().rule_maps,
            whole.rule_maps
        );
    }
}
