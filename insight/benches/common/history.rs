//! The generated history of the store and report benchmarks: `workloads`
//! pods (2,000 by default) in 50 namespaces, 400 apps, three envs and 20
//! roles, each talking to five spread-out peers on one of five ports; one
//! edge in 50 denied, one in 10 would be denied. Which (edge, bucket) pairs
//! are active and their counters are fixed functions, so every run and every
//! backend sees the same history.

#![allow(dead_code)]

use std::collections::BTreeMap;

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowReason, FlowRecord, FlowVerdict, SCHEMA};
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::Direction;
use jiff::Timestamp;

pub const PEERS: u32 = 5;
pub const PORTS: [u16; 5] = [80, 443, 5432, 6379, 8080];

pub fn workload(w: u32) -> FlowEndpoint {
    let ns = format!("ns{}", w % 50);
    FlowEndpoint {
        address: format!("10.{}.{}.1", w / 250, w % 250).parse().expect("ip"),
        identity: 1000 + w,
        labels: BTreeMap::from([
            ("app".to_string(), format!("app{}", w % 400)),
            (
                "env".to_string(),
                ["prod", "staging", "dev"][(w % 3) as usize].to_string(),
            ),
            ("role".to_string(), format!("role{}", w % 20)),
        ]),
        kind: EndpointKind::Pod,
        name: Some(format!("{ns}/w{w}")),
        namespace: Some(ns),
        reported: true,
    }
}

/// Edge `i`: workload i/5 to a spread-out peer, one of five ports.
pub fn edge(i: u32, workloads: u32) -> FlowRecord {
    let src = i / PEERS;
    let mut dst = (i * 37 + 11) % workloads;
    if dst == src {
        dst = (dst + 1) % workloads;
    }
    let deny = i.is_multiple_of(50);
    FlowRecord {
        schema: SCHEMA.into(),
        start: Timestamp::UNIX_EPOCH,
        end: Timestamp::UNIX_EPOCH,
        node: format!("node{}", src % 50),
        source: workload(src),
        destination: workload(dst),
        port: PORTS[(i % 5) as usize],
        protocol: Protocol::Tcp,
        direction: Direction::Egress,
        verdict: if deny {
            FlowVerdict::Deny
        } else {
            FlowVerdict::Allow
        },
        would_verdict: if deny || i.is_multiple_of(10) {
            FlowVerdict::Deny
        } else {
            FlowVerdict::Allow
        },
        mode: EnforcementMode::Visibility,
        reason: FlowReason::Default,
        rule: None,
        flows: 0,
        packets: 0,
        bytes: 0,
        service: None,
        source_hidden_by_snat: false,
    }
}

pub fn active(i: i64, k: i64, rate: i64) -> bool {
    (i * 7919 + k * 104_729) % 1000 < rate
}

pub fn counters(i: i64, k: i64) -> (i64, i64, i64) {
    let flows = 1 + (i + k) % 5;
    (flows, flows * 10, flows * 10 * (100 + i % 900))
}
