//! Records and batches the tests build.

use std::collections::BTreeMap;

use bulkhead_api::flow::{
    EndpointKind, FlowBatch, FlowEndpoint, FlowReason, FlowRecord, FlowVerdict, LossReport,
    RuleRef, SCHEMA,
};
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::Direction;
use jiff::{SignedDuration, Timestamp};

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect(s)
}

pub fn pod(addr: &str, ns: &str, name: &str, labels: &[(&str, &str)]) -> FlowEndpoint {
    FlowEndpoint {
        address: addr.parse().expect("ip"),
        identity: 1000 + labels.len() as u32,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        kind: EndpointKind::Pod,
        name: Some(format!("{ns}/{name}")),
        namespace: Some(ns.into()),
        reported: true,
    }
}

pub fn world(addr: &str) -> FlowEndpoint {
    FlowEndpoint {
        address: addr.parse().expect("ip"),
        identity: 2,
        labels: BTreeMap::new(),
        kind: EndpointKind::World,
        name: None,
        namespace: None,
        reported: false,
    }
}

pub fn node_ep(addr: &str, name: &str) -> FlowEndpoint {
    FlowEndpoint {
        address: addr.parse().expect("ip"),
        identity: 6,
        labels: BTreeMap::new(),
        kind: EndpointKind::Node,
        name: Some(name.into()),
        namespace: None,
        reported: false,
    }
}

pub fn web() -> FlowEndpoint {
    pod(
        "10.0.1.10",
        "shop",
        "web-0",
        &[("app", "web"), ("env", "prod")],
    )
}
pub fn db() -> FlowEndpoint {
    pod(
        "10.0.2.20",
        "shop",
        "db-0",
        &[("app", "db"), ("env", "prod")],
    )
}
pub fn cache() -> FlowEndpoint {
    pod(
        "10.0.2.30",
        "shop",
        "cache-0",
        &[("app", "cache"), ("bulkhead.dev/tier", "data")],
    )
}
pub fn v6pod() -> FlowEndpoint {
    pod("fd00::7", "lab", "probe-0", &[("app", "probe")])
}

/// A record of one flow, 10 s window starting at `start`.
pub fn rec(
    node: &str,
    start: Timestamp,
    src: FlowEndpoint,
    dst: FlowEndpoint,
    port: u16,
    dir: Direction,
) -> FlowRecord {
    FlowRecord {
        schema: SCHEMA.into(),
        start,
        end: start + SignedDuration::from_secs(10),
        node: node.into(),
        source: src,
        destination: dst,
        port,
        protocol: Protocol::Tcp,
        direction: dir,
        verdict: FlowVerdict::Allow,
        would_verdict: FlowVerdict::Allow,
        mode: EnforcementMode::Visibility,
        reason: FlowReason::Default,
        rule: None,
        flows: 1,
        packets: 10,
        bytes: 1_000,
        service: None,
        source_hidden_by_snat: false,
    }
}

pub fn batch(node: &str, id: &str, records: Vec<FlowRecord>) -> FlowBatch {
    FlowBatch {
        node: node.into(),
        batch_id: id.into(),
        records,
        losses: vec![],
    }
}

pub fn loss(node: &str, start: Timestamp, ring: u64, export: u64) -> LossReport {
    LossReport {
        node: node.into(),
        start,
        end: start + SignedDuration::from_secs(10),
        ring_buffer_events: ring,
        export_records: export,
    }
}

/// A mixed set at `t` from nodes n1 (web, cache) and n2 (db):
/// web→db seen by both nodes, a denied web→cache with a rule, a
/// would-deny from an IPv6 pod, an unmanaged world source into db, a
/// node-to-pod UDP flow.
pub fn mixed(t: Timestamp) -> (Vec<FlowRecord>, Vec<FlowRecord>) {
    let mut n1 = vec![rec("n1", t, web(), db(), 5432, Direction::Egress)];
    let mut denied = rec(
        "n1",
        t + SignedDuration::from_secs(10),
        web(),
        cache(),
        6379,
        Direction::Egress,
    );
    denied.verdict = FlowVerdict::Deny;
    denied.would_verdict = FlowVerdict::Deny;
    denied.mode = EnforcementMode::Full;
    denied.reason = FlowReason::Policy;
    denied.rule = Some(RuleRef {
        policy: "shop-data".into(),
        name: "deny-web-cache".into(),
        id: 7,
    });
    denied.packets = 3;
    denied.bytes = 180;
    n1.push(denied);
    let mut would = rec(
        "n1",
        t,
        v6pod(),
        pod("fd00::9", "lab", "target-0", &[("app", "target")]),
        8080,
        Direction::Egress,
    );
    would.would_verdict = FlowVerdict::Deny;
    would.bytes = 777;
    n1.push(would);
    let mut udp = rec(
        "n1",
        t,
        node_ep("192.168.0.1", "n1"),
        web(),
        53,
        Direction::Ingress,
    );
    udp.protocol = Protocol::Udp;
    udp.bytes = 64;
    n1.push(udp);

    let mut ingress_view = rec("n2", t, web(), db(), 5432, Direction::Ingress);
    ingress_view.packets = 11; // the destination saw one more packet: still not counted
    let mut from_world = rec(
        "n2",
        t + SignedDuration::from_secs(30),
        world("203.0.113.5"),
        db(),
        5432,
        Direction::Ingress,
    );
    from_world.bytes = 5_000;
    from_world.flows = 3;
    let n2 = vec![ingress_view, from_world];
    (n1, n2)
}
