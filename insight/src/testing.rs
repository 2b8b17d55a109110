//! Record and policy builders for this crate's unit tests.

use std::net::IpAddr;

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowReason, FlowRecord, FlowVerdict, SCHEMA};
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::Direction;
use bulkhead_api::{Labels, SegmentationPolicySpec};
use jiff::{SignedDuration, Timestamp};

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

pub(crate) fn pod(ns: &str, name: &str, pairs: &[(&str, &str)], addr: &str) -> FlowEndpoint {
    FlowEndpoint {
        address: ip(addr),
        identity: 0,
        labels: labels(pairs),
        kind: EndpointKind::Pod,
        name: Some(format!("{ns}/{name}")),
        namespace: Some(ns.to_string()),
        reported: true,
    }
}

pub(crate) fn world(addr: &str) -> FlowEndpoint {
    FlowEndpoint {
        address: ip(addr),
        identity: bulkhead_api::identity::WORLD,
        labels: Labels::new(),
        kind: EndpointKind::World,
        name: None,
        namespace: None,
        reported: false,
    }
}

/// The epoch of test histories: 2026-01-01T00:00:00Z.
pub(crate) fn day(n: i64) -> Timestamp {
    "2026-01-01T00:00:00Z"
        .parse::<Timestamp>()
        .expect("test time")
        .checked_add(SignedDuration::from_hours(24 * n))
        .expect("in range")
}

/// One window of `flows` connections, reported by the source's node.
pub(crate) fn record(
    src: &FlowEndpoint,
    dst: &FlowEndpoint,
    protocol: Protocol,
    port: u16,
    at: Timestamp,
    flows: u64,
) -> FlowRecord {
    FlowRecord {
        schema: SCHEMA.to_string(),
        start: at,
        end: at + SignedDuration::from_mins(1),
        node: "node-1".to_string(),
        source: src.clone(),
        destination: dst.clone(),
        port,
        protocol,
        direction: Direction::Egress,
        verdict: FlowVerdict::Allow,
        would_verdict: FlowVerdict::Allow,
        mode: EnforcementMode::Visibility,
        reason: FlowReason::Default,
        rule: None,
        flows,
        packets: flows * 4,
        bytes: flows * 400,
        service: None,
        source_hidden_by_snat: false,
    }
}

pub(crate) fn policy(json: serde_json::Value) -> SegmentationPolicySpec {
    serde_json::from_value(json).expect("test policy")
}
