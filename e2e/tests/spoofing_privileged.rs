//! Forged source addresses in the lab (root needed), as a pod with NET_RAW
//! would try them (GHSA-pfhr-pccp-hwmh, CVE-2023-39347): a dev pod writes
//! raw TCP SYNs and UDP datagrams whose source is a prod/web pod, to prod
//! apis on its own node and on another, over IPv4 and IPv6; and, to escape
//! its own egress policy, packets from an address that is no endpoint.
//! Each is dropped on the sender's node, counted, and logged as spoofed
//! from the pod that sent it; none reaches a receiving agent's log as
//! traffic from the pod it claimed to be. The workloads are
//! `support/workloads.rs`'s.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bulkhead_e2e::lab::Probe;
use bulkhead_e2e::observe::metric_sum_where;
use bulkhead_e2e::{Lab, Proto};
use serde_json::Value;
use support::workloads::*;
use support::*;

/// prod apis (full) take TCP and UDP 8080 from prod webs only; dev webs
/// (full) may send TCP 9090 to prod apis and nothing else.
const POLICIES: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: prod-api}
spec:
  scope: {selector: {matchLabels: {app: api, env: prod}}}
  enforcement: full
  ingress:
  - name: from-prod-web
    action: allow
    peers: [{selector: {matchLabels: {app: web, env: prod}}}]
    ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 8080}]
  - name: from-dev-web-9090
    action: allow
    peers: [{selector: {matchLabels: {app: web, env: dev}}}]
    ports: [{protocol: TCP, port: 9090}]
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: dev-web}
spec:
  scope: {selector: {matchLabels: {app: web, env: dev}}}
  enforcement: full
  egress:
  - name: to-prod-api-9090
    action: allow
    peers: [{selector: {matchLabels: {app: api, env: prod}}}]
    ports: [{protocol: TCP, port: 9090}]
"#;

const SPOOFED: &str = "bulkhead_agent_dropped_packets_total";

fn addresses(lab: &Lab, key: &str) -> (IpAddr, IpAddr) {
    let (ns, name) = key.split_once('/').expect("ns/name");
    let pod = ok(lab.pod(ns, name), "pod");
    (IpAddr::V4(pod.address), IpAddr::V6(pod.address6))
}

fn flow_log(lab: &Lab, node: &str) -> Vec<Value> {
    let path = lab
        .state()
        .root()
        .join("agents")
        .join(node)
        .join("flows.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn spoofed_drops(lab: &Lab, node: &str) -> f64 {
    let text = ok(lab.agent_metrics(node), "reading the agent's metrics");
    metric_sum_where(&text, SPOOFED, r#"reason="spoofed""#)
}

#[test]
fn ghsa_pfhr_pccp_hwmh_forged_sources_are_dropped_counted_and_logged_from_their_sender() {
    let lab = start_lab();
    ok(lab.apply(MAPPING), "applying the LabelMapping");
    ok(lab.apply(POLICIES), "applying the policies");
    ok(lab.sync_agents(SETTLE), "waiting for the agents to program");
    // Enforcing: the real prod/web-3 reaches prod/api-2 on UDP 8080; dev
    // does not, and its own egress refuses TCP 8080. Probes from prod/web-1
    // are left out so that nothing but a forged packet could put its
    // address in an api's log.
    let expected = [
        (Probe::udp("prod/web-3", "prod/api-2", 8080), true),
        (Probe::udp("prod/web-3", "prod/api-2", 8080).v6(), true),
        (Probe::tcp("dev/web-d1", "prod/api-1", 9090), true),
        (Probe::udp("dev/web-d1", "prod/api-1", 8080), false),
        (Probe::tcp("dev/web-d1", "prod/db-3", 8080), false),
    ];
    let probes: Vec<Probe> = expected.iter().map(|(p, _)| p.clone()).collect();
    eventually("the policies enforced", || {
        let seen = lab.probe_all(&probes)?;
        Ok(seen
            .iter()
            .zip(&expected)
            .all(|(got, (_, want))| got.answered == *want)
            .then_some(()))
    });
    let before = spoofed_drops(&lab, "node-1");

    let (web4, web6) = addresses(&lab, "prod/web-1");
    let mut forged: Vec<(Proto, IpAddr, IpAddr, u16)> = Vec::new();
    for target in ["prod/api-1", "prod/api-2"] {
        let (api4, api6) = addresses(&lab, target);
        for proto in [Proto::Udp, Proto::Tcp] {
            forged.push((proto, web4, api4, 8080));
            forged.push((proto, web6, api6, 8080));
        }
    }
    // Sources that are no endpoint at all, to a peer dev's egress refuses.
    let (db4, db6) = addresses(&lab, "prod/db-3");
    let nobody4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77));
    let nobody6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x77));
    forged.push((Proto::Udp, nobody4, db4, 8080));
    forged.push((Proto::Tcp, nobody6, db6, 8080));
    for (proto, source, destination, port) in &forged {
        ok(
            lab.forge("dev/web-d1", *proto, *source, *destination, *port),
            "forging a packet",
        );
    }

    // Logged on the sender's node, as spoofed, from dev/web-d1's interface.
    let is_forged =
        |r: &Value, (proto, source, destination, port): &(Proto, IpAddr, IpAddr, u16)| {
            r["source"]["address"] == source.to_string().as_str()
                && r["destination"]["address"] == destination.to_string().as_str()
                && r["port"] == *port
                && r["protocol"].as_str().map(str::to_lowercase).as_deref() == Some(proto.name())
        };
    let records = eventually("every forged packet in node-1's flow log", || {
        let log = flow_log(&lab, "node-1");
        let found: Vec<Value> = forged
            .iter()
            .filter_map(|f| log.iter().find(|r| is_forged(r, f)).cloned())
            .collect();
        Ok((found.len() == forged.len()).then_some(found))
    });
    for r in &records {
        assert_eq!(
            (&r["reason"], &r["verdict"], &r["source"]["name"]),
            (
                &Value::from("spoofed"),
                &Value::from("deny"),
                &Value::from("dev/web-d1")
            ),
            "a forged packet is a denied spoofed flow from the pod that sent it: {r}"
        );
    }
    let counted = spoofed_drops(&lab, "node-1") - before;
    assert!(
        counted >= forged.len() as f64,
        "{} forged packets, {counted} counted as spoofed drops on node-1",
        forged.len()
    );

    // Nothing reached a receiver: no agent logged any of them otherwise,
    // and prod/web-1's address never appears as a source of traffic.
    for node in lab.node_names() {
        for r in flow_log(&lab, &node) {
            let as_sent = forged.iter().any(|f| is_forged(&r, f));
            if as_sent && r["reason"] == "spoofed" && node == "node-1" {
                continue;
            }
            assert!(
                !as_sent,
                "{node} logged a forged packet as something other than spoofed: {r}"
            );
        }
    }

    // The dev pod's real traffic is untouched: its one egress rule holds.
    let after = ok(lab.probe_all(&probes), "probing after the forgeries");
    for ((probe, want), got) in expected.iter().zip(&after) {
        assert_eq!(
            got.answered, *want,
            "{} -> {} {:?}/{} after the forgeries: {}",
            probe.from, probe.to, probe.proto, probe.port, got.detail
        );
    }
}
