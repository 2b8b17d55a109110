//! Tests on small, hand-checkable histories and clusters.

mod exposure;
mod exposure_classes;
mod report;

mod talkers;
mod unlabeled;

use std::collections::BTreeMap;
use std::net::IpAddr;

use bulkhead_api::flow::{
    EndpointKind, FlowEndpoint, FlowReason, FlowRecord, FlowVerdict, RuleRef, SCHEMA,
};
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::Direction;
use bulkhead_api::{LabelMappingSpec, SegmentationPolicySpec};
use bulkhead_policy::snapshot::{Node, Pod, PodKey};
use bulkhead_policy::{compile, CompileOptions, IdentityAllocation, Output, Snapshot};

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A labeled pod (`app` and, when given, `env`), managed (reported).
pub fn pod(addr: &str, name: &str, app: &str, env: &str) -> FlowEndpoint {
    let mut labels = BTreeMap::from([("app".to_string(), app.to_string())]);
    if !env.is_empty() {
        labels.insert("env".into(), env.into());
    }
    FlowEndpoint {
        address: ip(addr),
        identity: 300,
        labels,
        kind: EndpointKind::Pod,
        name: Some(name.into()),
        namespace: name.split('/').next().map(str::to_string),
        reported: true,
    }
}

/// A managed pod without segmentation labels.
pub fn bare_pod(addr: &str, name: &str) -> FlowEndpoint {
    FlowEndpoint {
        labels: BTreeMap::new(),
        identity: bulkhead_api::identity::UNLABELED,
        ..pod(addr, name, "x", "")
    }
}

/// An address nobody knows, with an optional name.
pub fn world(addr: &str, name: Option<&str>) -> FlowEndpoint {
    FlowEndpoint {
        address: ip(addr),
        identity: bulkhead_api::identity::WORLD,
        labels: BTreeMap::new(),
        kind: EndpointKind::World,
        name: name.map(str::to_string),
        namespace: None,
        reported: false,
    }
}

pub fn at(s: &str) -> jiff::Timestamp {
    s.parse().expect("test timestamp")
}

/// An allowed egress record from `node`, TCP unless the port is 53.
pub fn rec(
    node: &str,
    src: FlowEndpoint,
    dst: FlowEndpoint,
    port: u16,
    flows: u64,
    bytes: u64,
) -> FlowRecord {
    FlowRecord {
        schema: SCHEMA.into(),
        start: at("2026-11-30T10:00:00Z"),
        end: at("2026-11-30T10:01:00Z"),
        node: node.into(),
        source: src,
        destination: dst,
        port,
        protocol: if port == 53 {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        direction: Direction::Egress,
        verdict: FlowVerdict::Allow,
        would_verdict: FlowVerdict::Allow,
        mode: EnforcementMode::Visibility,
        reason: FlowReason::Default,
        rule: None,
        flows,
        packets: flows * 10,
        bytes,
        service: None,
        source_hidden_by_snat: false,
    }
}

/// The same flow as the destination's node reports it (not counted).
pub fn ingress_view(r: &FlowRecord, node: &str) -> FlowRecord {
    FlowRecord {
        node: node.into(),
        direction: Direction::Ingress,
        ..r.clone()
    }
}

pub fn with_rule(mut r: FlowRecord, policy: &str, name: &str) -> FlowRecord {
    r.reason = FlowReason::Policy;
    r.rule = Some(RuleRef {
        policy: policy.into(),
        name: name.into(),
        id: 1,
    });
    r
}

/// A cluster of pods (`name`, address, `app` label or none) on node n1
/// (172.16.0.1), a mapping that copies `app`, and the given policies.
pub fn cluster(pods: &[(&str, &str, Option<&str>)], policies: &[(&str, &str)]) -> Output {
    let mut snap = Snapshot::default();
    snap.nodes.insert(
        "n1".into(),
        Node {
            labels: BTreeMap::new(),
            addresses: vec![ip("172.16.0.1")],
        },
    );
    for (name, addr, app) in pods {
        let mut labels = BTreeMap::new();
        if let Some(app) = app {
            labels.insert("app".to_string(), app.to_string());
        }
        snap.pods.insert(
            PodKey::new("x", *name),
            Pod {
                labels,
                node: Some("n1".into()),
                addresses: vec![ip(addr)],
                ..Pod::default()
            },
        );
    }
    let mapping: LabelMappingSpec = serde_yaml::from_str(
        "rules:\n- match: {pods: {}}\n  copyLabels: [{key: app, fromLabel: app}]\n",
    )
    .expect("mapping");
    snap.mappings.insert("apps".into(), mapping);
    for (name, yaml) in policies {
        let spec: SegmentationPolicySpec = serde_yaml::from_str(yaml).expect("policy yaml");
        snap.policies.insert((*name).into(), spec);
    }
    compile(
        &snap,
        &CompileOptions::default(),
        &IdentityAllocation::default(),
    )
}
