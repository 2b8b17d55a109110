//! The class-by-class exposure count equals the pair-by-pair one
//! (`exposure::naive`) on random small clusters: several nodes, host-network
//! pods (they share their node's address), a labeled CIDR, policies with
//! allow, deny and overrideDeny rules both ways, in every mode.

use std::collections::BTreeMap;

use bulkhead_api::policy::Protocol;
use bulkhead_api::{LabelMappingSpec, SegmentationPolicySpec};
use bulkhead_policy::snapshot::{Node, Pod, PodKey};
use bulkhead_policy::{compile, CompileOptions, IdentityAllocation, Output, Snapshot};
use proptest::prelude::*;

use super::ip;
use crate::exposure::{exposure, naive, ExposureOptions};

const APPS: [&str; 4] = ["a", "b", "c", "ext"];
const MODES: [&str; 3] = ["full", "selective", "visibility"];
const ACTIONS: [&str; 3] = ["allow", "deny", "overrideDeny"];
const PORTS: [(u16, u16); 4] = [(22, 22), (5432, 5440), (1, 1024), (443, 443)];

#[derive(Clone, Debug)]
struct PodSpec {
    node: usize,
    app: Option<usize>,
    env: usize,
    host_network: bool,
}

#[derive(Clone, Debug)]
struct RuleSpec {
    egress: bool,
    action: usize,
    /// A peer app, else an env.
    peer_app: Option<usize>,
    env: usize,
    ports: Option<usize>,
}

#[derive(Clone, Debug)]
struct PolicySpec {
    scope_app: usize,
    mode: usize,
    rules: Vec<RuleSpec>,
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        0..3usize,
        prop::option::of(0..3usize),
        0..2usize,
        prop::bool::weighted(0.15),
    )
        .prop_map(|(node, app, env, host_network)| PodSpec {
            node,
            app,
            env,
            host_network,
        })
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        any::<bool>(),
        0..3usize,
        prop::option::of(0..4usize),
        0..2usize,
        prop::option::of(0..4usize),
    )
        .prop_map(|(egress, action, peer_app, env, ports)| RuleSpec {
            egress,
            action,
            peer_app,
            env,
            ports,
        })
}

fn policy_spec() -> impl Strategy<Value = PolicySpec> {
    (
        0..3usize,
        0..3usize,
        prop::collection::vec(rule_spec(), 1..4),
    )
        .prop_map(|(scope_app, mode, rules)| PolicySpec {
            scope_app,
            mode,
            rules,
        })
}

fn policy_yaml(p: &PolicySpec) -> String {
    let mut ingress = String::new();
    let mut egress = String::new();
    for (i, r) in p.rules.iter().enumerate() {
        let peer = match r.peer_app {
            Some(a) => format!("{{app: {}}}", APPS[a]),
            None => format!("{{env: e{}}}", r.env),
        };
        let ports = r.ports.map_or(String::new(), |k| {
            let (first, last) = PORTS[k];
            format!(", ports: [{{protocol: TCP, port: {first}, endPort: {last}}}]")
        });
        let line = format!(
            "- {{name: r{i}, action: {}, peers: [{{selector: {{matchLabels: {peer}}}}}]{ports}}}\n",
            ACTIONS[r.action]
        );
        if r.egress {
            egress.push_str(&line);
        } else {
            ingress.push_str(&line);
        }
    }
    let mut y = format!(
        "scope: {{selector: {{matchLabels: {{app: {}}}}}}}\nenforcement: {}\n",
        APPS[p.scope_app], MODES[p.mode]
    );
    if !ingress.is_empty() {
        y.push_str(&format!("ingress:\n{ingress}"));
    }
    if !egress.is_empty() {
        y.push_str(&format!("egress:\n{egress}"));
    }
    y
}

fn build(pods: &[PodSpec], policies: &[PolicySpec]) -> Output {
    let mut snap = Snapshot::default();
    for n in 0..3 {
        snap.nodes.insert(
            format!("n{n}"),
            Node {
                labels: BTreeMap::new(),
                addresses: vec![ip(&format!("172.16.0.{}", n + 1))],
            },
        );
    }
    for (i, p) in pods.iter().enumerate() {
        let mut labels = BTreeMap::from([("env".to_string(), format!("e{}", p.env))]);
        if let Some(a) = p.app {
            labels.insert("app".into(), APPS[a].into());
        }
        let addr = if p.host_network {
            format!("172.16.0.{}", p.node + 1)
        } else {
            format!("10.0.{}.{}", p.node, i + 1)
        };
        snap.pods.insert(
            PodKey::new("x", format!("p{i}")),
            Pod {
                labels,
                node: Some(format!("n{}", p.node)),
                addresses: vec![ip(&addr)],
                host_network: p.host_network,
                ..Pod::default()
            },
        );
    }
    let mapping: LabelMappingSpec = serde_yaml::from_str(
        "rules:\n- match: {pods: {}}\n  copyLabels: [{key: app, fromLabel: app}, {key: env, fromLabel: env}]\n\
         - match: {cidrs: [192.168.0.0/24]}\n  labels: {app: ext, env: e1}\n",
    )
    .expect("mapping");
    snap.mappings.insert("labels".into(), mapping);
    for (i, p) in policies.iter().enumerate() {
        let spec: SegmentationPolicySpec =
            serde_yaml::from_str(&policy_yaml(p)).expect("policy yaml");
        snap.policies.insert(format!("p{i}"), spec);
    }
    compile(
        &snap,
        &CompileOptions::default(),
        &IdentityAllocation::default(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn classes_count_what_the_pair_by_pair_loop_counts(
        pods in prop::collection::vec(pod_spec(), 1..9),
        policies in prop::collection::vec(policy_spec(), 0..5),
    ) {
        let out = build(&pods, &policies);
        let opts = ExposureOptions {
            group_key: "app".into(),
            risky: vec![(Protocol::Tcp, 22), (Protocol::Tcp, 5432), (Protocol::Udp, 53)],
        };
        prop_assert_eq!(exposure(&out, &opts), naive::exposure(&out, &opts));
    }
}

/// The generator makes classes bigger than one (else the test above would
/// not test the multiplication).
#[test]
fn the_random_clusters_have_classes_with_many_members() {
    let pods: Vec<PodSpec> = (0..8)
        .map(|i| PodSpec {
            node: i % 3,
            app: Some(i % 2),
            env: 0,
            host_network: false,
        })
        .collect();
    let out = build(&pods, &[]);
    let opts = ExposureOptions::default();
    let e = exposure(&out, &opts);
    assert_eq!(e, naive::exposure(&out, &opts));
    assert_eq!(e.overall.endpoints, 11, "8 pods and 3 nodes");
}
