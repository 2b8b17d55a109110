//! GHSA-pfhr-pccp-hwmh / CVE-2023-39347: a pod must not borrow another
//! endpoint's identity (or escape its own egress policy) by forging its
//! source address. `BPF_PROG_TEST_RUN` runs the programs on `lo`
//! (ifindex 1), so binding an endpoint to ifindex 1 makes the crafted
//! packets come from that endpoint's interface. Root needed; fails, never
//! skips, without it.

mod support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use bulkhead_agent::flows::aggregate::{RawEdge, REASON_SPOOFED};
use bulkhead_agent::flows::FlowAggregator;
use bulkhead_agent::layout::{EndpointKey, DIR_EGRESS, DIR_INGRESS, VERDICT_DENY};
use bulkhead_agent::loader::{LoadOptions, FROM_ENDPOINT, HOST_INGRESS};
use bulkhead_agent::{spec, Desired};
use bulkhead_api::policy::Protocol;
use support::*;

const LO: u32 = 1;

fn key(addr: &str) -> EndpointKey {
    let (family, bytes) = match addr.parse::<IpAddr>().expect("address") {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (4, b)
        }
        IpAddr::V6(a) => (6, a.octets()),
    };
    EndpointKey {
        family,
        pad: [0; 3],
        addr: bytes,
    }
}

/// The fixture node with `pod`'s addresses routed through `ifindex`.
fn bound(name: &str, opts: LoadOptions, pod: &[&str], ifindex: u32) -> TestDatapath {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rule_map = spec::read_rule_map(&dir.join("rule-map.yaml")).expect("rule map");
    let ids = spec::read_identity_map(&dir.join("identities.yaml")).expect("identities");
    let desired = Desired::build(&rule_map, &[ids]).expect("valid fixture");
    let routes: HashMap<EndpointKey, u32> = pod.iter().map(|a| (key(a), ifindex)).collect();
    let mut t = TestDatapath::open_with(name, opts);
    t.dp.program_with_routes(&desired, &routes)
        .expect("programming");
    t
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn spoofed_edges(t: &mut TestDatapath) -> Vec<RawEdge> {
    let mut agg = FlowAggregator::default();
    t.dp.read_flows(&mut agg);
    agg.drain(u64::MAX)
        .into_iter()
        .map(|(e, _)| e)
        .filter(|e| e.reason == REASON_SPOOFED)
        .collect()
}

/// ICMPv6 neighbour solicitation from the unspecified address (DAD).
fn neighbour_solicitation(src: &str, dst: &str) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (ip(src), ip(dst)) else {
        panic!("IPv6 only")
    };
    let mut body = vec![135, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&[0; 16]);
    ipv6(s.octets(), d.octets(), 58, &body)
}

/// Pod a (full mode, 10.98.0.10 and fd98::10) sends from its interface:
/// its own addresses go through policy as before; any other source is
/// dropped, whatever policy would say, and reported from a.
#[test]
fn ghsa_pfhr_pccp_hwmh_forged_sources_from_a_pod_interface_are_dropped_privileged() {
    let mut t = bound(
        "spoof-pod",
        LoadOptions::default(),
        &["10.98.0.10", "fd98::10"],
        LO,
    );
    let cases: &[(&str, &str, Protocol, u16, u32, &str)] = &[
        (
            "10.98.0.10",
            "10.98.0.11",
            Protocol::Tcp,
            8000,
            PASS,
            "own address, allowed port",
        ),
        (
            "10.98.0.10",
            "10.98.0.11",
            Protocol::Tcp,
            22,
            DROP,
            "own address, policy denies",
        ),
        (
            "fd98::10",
            "fd98::11",
            Protocol::Tcp,
            8000,
            PASS,
            "own IPv6 address",
        ),
        (
            "10.98.0.11",
            "10.98.0.12",
            Protocol::Tcp,
            8000,
            DROP,
            "another local pod's address",
        ),
        (
            "10.98.0.11",
            "10.98.0.12",
            Protocol::Udp,
            8080,
            DROP,
            "another pod's, UDP",
        ),
        (
            "fd98::11",
            "fd98::12",
            Protocol::Udp,
            8080,
            DROP,
            "another pod's IPv6 address",
        ),
        (
            "10.99.0.254",
            "10.98.0.11",
            Protocol::Tcp,
            8000,
            DROP,
            "an address of no endpoint",
        ),
        (
            "10.99.0.1",
            "10.98.0.11",
            Protocol::Tcp,
            7000,
            DROP,
            "the node's own address",
        ),
        (
            "fe80::1",
            "ff02::1",
            Protocol::Udp,
            547,
            PASS,
            "link-local to multicast stays on the link",
        ),
        (
            "fe80::1",
            "fe80::2",
            Protocol::Tcp,
            22,
            PASS,
            "link-local to link-local",
        ),
        (
            "fe80::1",
            "fd98::11",
            Protocol::Tcp,
            8000,
            DROP,
            "link-local source off the link",
        ),
    ];
    let before = t.dp.counters().expect("counters")["spoofed"];
    let mut spoofed = 0;
    for &(src, dst, protocol, port, want, what) in cases {
        t.dp.maps.conntrack.clear().expect("ct clear");
        let got = run(
            &t,
            FROM_ENDPOINT,
            &packet(ip(src), ip(dst), protocol, 40000, port),
        );
        assert_eq!(got, want, "{what}: {src} -> {dst} {protocol:?}/{port}");
        if want == DROP && port != 22 {
            spoofed += 1;
        }
    }
    let ns = neighbour_solicitation("::", "ff02::1:ff00:10");
    assert_eq!(
        run(&t, FROM_ENDPOINT, &ns),
        PASS,
        "DAD from :: keeps working"
    );
    let counters = t.dp.counters().expect("counters");
    assert_eq!(
        counters["spoofed"] - before,
        spoofed,
        "every forged packet counted"
    );
    let edges = spoofed_edges(&mut t);
    assert_eq!(
        edges.len() as u64,
        spoofed,
        "one spoofed event each: {edges:?}"
    );
    for e in &edges {
        assert_eq!(
            e.local_identity, 1000,
            "reported from pod a (its interface): {e:?}"
        );
        assert_eq!(
            (e.direction, e.verdict, e.ifindex),
            (DIR_EGRESS, VERDICT_DENY, LO)
        );
    }
    assert!(
        edges.iter().any(|e| e.src == ip("10.98.0.11")),
        "the forged address is kept"
    );
}

/// Visibility mode drops nothing else, but drops forged packets.
#[test]
fn ghsa_pfhr_pccp_hwmh_visibility_mode_drops_forged_sources_privileged() {
    let mut t = bound(
        "spoof-vis",
        LoadOptions::default(),
        &["10.98.0.12", "fd98::12"],
        LO,
    );
    let allowed = packet(
        ip("10.98.0.12"),
        ip("10.99.0.254"),
        Protocol::Tcp,
        40000,
        22,
    );
    assert_eq!(
        run(&t, FROM_ENDPOINT, &allowed),
        PASS,
        "visibility: its own traffic passes"
    );
    for src in ["10.98.0.10", "10.99.0.254"] {
        let forged = packet(ip(src), ip("10.98.0.11"), Protocol::Tcp, 40000, 7000);
        assert_eq!(
            run(&t, FROM_ENDPOINT, &forged),
            DROP,
            "forged {src} in visibility mode"
        );
    }
    let edges = spoofed_edges(&mut t);
    assert_eq!(edges.len(), 2, "{edges:?}");
    assert!(edges
        .iter()
        .all(|e| e.local_identity == 1002 && e.mode == 0));
}

/// An interface the agent bound to nobody (an unmanaged pod, or one being
/// added): it may not claim addresses bound elsewhere, nor the node's.
#[test]
fn ghsa_pfhr_pccp_hwmh_unbound_interfaces_cannot_claim_bound_addresses_privileged() {
    let t = bound(
        "spoof-unbound",
        LoadOptions::default(),
        &["10.98.0.10", "fd98::10"],
        77,
    );
    let cases = [
        ("10.98.0.10", DROP, "pod a's address, bound to interface 77"),
        ("fd98::10", DROP, "pod a's IPv6 address"),
        ("10.99.0.1", DROP, "the node's address"),
        (
            "10.98.0.11",
            PASS,
            "pod b (unbound) to an allowed port, as before",
        ),
        (
            "10.99.0.254",
            PASS,
            "no endpoint's: not ours to judge, as before",
        ),
    ];
    for (src, want, what) in cases {
        let dst = if src.contains(':') {
            "fd98::11"
        } else {
            "10.98.0.11"
        };
        let got = run(
            &t,
            FROM_ENDPOINT,
            &packet(ip(src), ip(dst), Protocol::Tcp, 40000, 7000),
        );
        assert_eq!(got, want, "{what}");
    }
}

/// Host programs: a packet arriving on a host interface with a local pod's
/// address as its source is dropped and reported, whatever its destination.
#[test]
fn ghsa_pfhr_pccp_hwmh_host_interfaces_drop_local_pod_sources_privileged() {
    let mut t = bound("spoof-host", LoadOptions::default(), &[], LO);
    let cases = [
        ("10.98.0.10", "10.99.0.1", 443, DROP),
        ("fd98::11", "fd99::1", 22, DROP),
        ("10.98.0.12", "10.98.0.11", 7000, DROP),
        ("10.99.0.254", "10.99.0.1", 22, PASS),
    ];
    for (src, dst, port, want) in cases {
        let got = run(
            &t,
            HOST_INGRESS,
            &packet(ip(src), ip(dst), Protocol::Tcp, 40000, port),
        );
        assert_eq!(got, want, "{src} -> {dst}/{port}");
    }
    let edges = spoofed_edges(&mut t);
    assert_eq!(edges.len(), 3, "{edges:?}");
    assert!(edges.iter().all(|e| e.direction == DIR_INGRESS));
}

/// `--anti-spoofing=false`: the check is off, the address decides again.
#[test]
fn anti_spoofing_off_is_the_documented_setting_privileged() {
    let opts = LoadOptions {
        anti_spoofing: false,
        ..LoadOptions::default()
    };
    let t = bound("spoof-off", opts, &["10.98.0.10"], LO);
    let forged = packet(
        ip("10.98.0.11"),
        ip("10.98.0.12"),
        Protocol::Tcp,
        40000,
        8000,
    );
    assert_eq!(
        run(&t, FROM_ENDPOINT, &forged),
        PASS,
        "judged as pod b again"
    );
    let host = packet(ip("10.98.0.10"), ip("10.99.0.1"), Protocol::Tcp, 40000, 22);
    assert_eq!(
        run(&t, HOST_INGRESS, &host),
        PASS,
        "failsafe SSH to the host"
    );
    assert_eq!(t.dp.counters().expect("counters")["spoofed"], 0);
}
