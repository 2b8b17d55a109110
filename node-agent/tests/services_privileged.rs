//! Pod egress to a Service address is judged on the backend, with
//! `BPF_PROG_TEST_RUN` (root needed; fails, never skips, without it). The
//! kernel's DNAT happens between the hooks, so each packet is handed to the
//! hook that would see it: as sent (to the Service address) to the pod
//! veth's TC ingress, as translated (to the backend) to the backend veth's
//! TC egress or the host interface's, carrying the mark the first set.
//! The lab test (e2e/tests/services_privileged.rs) runs the same against
//! the real kube-proxy.

mod support;

use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use bulkhead_agent::loader::{LoadOptions, FROM_ENDPOINT, HOST_EGRESS, HOST_INGRESS, TO_ENDPOINT};
use bulkhead_api::policy::Protocol;
use support::*;

/// `BH_MARK_VIA_SERVICE` (bpf/lib/common.h).
const MARK_VIA_SERVICE: u32 = 0x0020_0000;
/// Offset of `mark` in `struct __sk_buff`.
const MARK_OFFSET: usize = 8;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = packet(ip(src), ip(dst), Protocol::Tcp, sport, dport);
    let l3 = if src.contains(':') { 40 } else { 20 };
    p[14 + l3 + 13] = flags;
    p
}

/// Runs `program` on `packet` with `skb->mark = mark`: (verdict, mark after).
fn run_marked(t: &TestDatapath, program: &str, packet: &[u8], mark: u32) -> (u32, u32) {
    let prog = classifier(t, program);
    let mut ctx_in = vec![0u8; 256];
    ctx_in[MARK_OFFSET..MARK_OFFSET + 4].copy_from_slice(&mark.to_ne_bytes());
    let mut ctx_out = vec![0u8; 256];
    let mut out = vec![0u8; packet.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(packet),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx_in),
        ctx_out: Some(&mut ctx_out),
        ..TestRunOptions::default()
    };
    let verdict = prog.test_run(opts).expect("test_run").return_value;
    let mut m = [0u8; 4];
    m.copy_from_slice(&ctx_out[MARK_OFFSET..MARK_OFFSET + 4]);
    (verdict, u32::from_ne_bytes(m))
}

fn with_services(name: &str) -> TestDatapath {
    let opts = LoadOptions {
        service_cidrs: vec![
            "10.96.0.0/16".parse().expect("cidr"),
            "fd96::/108".parse().expect("cidr"),
        ],
        ..LoadOptions::default()
    };
    programmed_fixture(name, opts)
}

/// Pod a (full mode) may send TCP 8000-8099 to pod b and nothing else to
/// a world address. To a Service address it is not judged (there is no
/// workload there) but marked; on the backend it is judged exactly as if
/// it had been sent there.
#[test]
fn egress_to_a_service_is_judged_on_the_backend_privileged() {
    for (vip, a, b) in [
        ("10.96.0.10", "10.98.0.10", "10.98.0.11"),
        ("fd96::a", "fd98::10", "fd98::11"),
    ] {
        let t = with_services("svc-backend");
        // As sent: passes on, marked, whatever port.
        let (v, mark) = run_marked(&t, FROM_ENDPOINT, &tcp(a, vip, 40000, 80, SYN), 0);
        assert_eq!(
            (v, mark & MARK_VIA_SERVICE),
            (PASS, MARK_VIA_SERVICE),
            "{vip}: deferred"
        );
        // Translated to b:8000, which a may reach: passes, and a's egress entry
        // is that of the backend tuple.
        let (v, _) = run_marked(
            &t,
            TO_ENDPOINT,
            &tcp(a, b, 40000, 8000, SYN),
            MARK_VIA_SERVICE,
        );
        assert_eq!(v, PASS, "{vip} -> {b}:8000 allowed");
        let has_backend_entry = t.dp.maps.conntrack.entries().iter().any(|(k, v)| {
            k.direction == bulkhead_agent::layout::DIR_EGRESS
                && k.dport_be == 8000u16.to_be()
                && v.verdict == bulkhead_agent::layout::VERDICT_ALLOW
        });
        assert!(
            has_backend_entry,
            "{vip}: a's egress is tracked on the backend tuple"
        );
        let via_service = t.dp.maps.conntrack.entries().iter().any(|(k, v)| {
            k.dport_be == 80u16.to_be() && v.flags & bulkhead_agent::layout::CT_F_VIA_SERVICE != 0
        });
        assert!(
            via_service,
            "{vip}: the flow as sent is a VIA_SERVICE entry"
        );
        // The Service's reply (source rewritten back to the VIP) reaches a.
        let (v, _) = run_marked(&t, TO_ENDPOINT, &tcp(vip, a, 80, 40000, SYN | ACK), 0);
        assert_eq!(v, PASS, "{vip}: the Service's reply");
        // Nothing a never asked for comes from a Service address.
        let (v, _) = run_marked(&t, TO_ENDPOINT, &tcp(vip, a, 80, 40999, SYN | ACK), 0);
        assert_eq!(v, DROP, "{vip}: an unasked packet from a Service address");

        // Translated to b:9999, which a may not reach (b, selective, would
        // accept): a denied backend stays denied through the Service.
        let (v, _) = run_marked(&t, FROM_ENDPOINT, &tcp(a, vip, 40001, 81, SYN), 0);
        assert_eq!(v, PASS);
        let (v, _) = run_marked(
            &t,
            TO_ENDPOINT,
            &tcp(a, b, 40001, 9999, SYN),
            MARK_VIA_SERVICE,
        );
        assert_eq!(v, DROP, "{vip} -> {b}:9999 denied by a's egress");
        // The mark is what carries the decision there: unmarked, the same
        // packet was judged (and allowed) when a sent it, so only b's side runs.
        let (v, _) = run_marked(&t, TO_ENDPOINT, &tcp(a, b, 40002, 9999, SYN), 0);
        assert_eq!(
            v, PASS,
            "{vip}: unmarked, only b's ingress (selective) is judged"
        );
        // Two packets went to the Service address; the counter behind
        // `bulkhead_agent_service_deferred_packets_total` counts exactly
        // those, not the translated packets nor the replies.
        let counters = t.dp.counters().expect("counters");
        assert_eq!(counters["via_service"], 2, "{vip}: {counters:?}");
    }
}

/// A backend on another node, or outside the cluster: the translated packet
/// leaves through the host interface, where a's deferred egress is judged.
#[test]
fn egress_to_a_remote_backend_is_judged_on_the_host_interface_privileged() {
    let t = with_services("svc-remote");
    let a = "10.98.0.10";
    // 10.99.0.200 is CIDR identity 3000: a may send TCP 9000 to it.
    let (v, _) = run_marked(
        &t,
        HOST_EGRESS,
        &tcp(a, "10.99.0.200", 40000, 9000, SYN),
        MARK_VIA_SERVICE,
    );
    assert_eq!(v, PASS, "allowed backend");
    // 10.99.0.254 is world: a may not.
    let (v, _) = run_marked(
        &t,
        HOST_EGRESS,
        &tcp(a, "10.99.0.254", 40001, 9000, SYN),
        MARK_VIA_SERVICE,
    );
    assert_eq!(v, DROP, "denied backend");
    // Unmarked pod traffic is not the host program's business.
    let (v, _) = run_marked(&t, HOST_EGRESS, &tcp(a, "10.99.0.254", 40002, 9000, SYN), 0);
    assert_eq!(v, PASS, "unmarked pod traffic passes the host program");
}

/// Without Service ranges a ClusterIP is an address like any other: a
/// full-mode pod's packet to it is judged as `world`, and denied.
#[test]
fn without_service_ranges_a_cluster_ip_is_world_privileged() {
    let t = programmed_fixture("svc-none", LoadOptions::default());
    let (v, mark) = run_marked(
        &t,
        FROM_ENDPOINT,
        &tcp("10.98.0.10", "10.96.0.10", 40000, 80, SYN),
        0,
    );
    assert_eq!((v, mark & MARK_VIA_SERVICE), (DROP, 0));
}

/// `BH_MARK_ARRIVED` (bpf/lib/common.h).
const MARK_ARRIVED: u32 = 0x0040_0000;

fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    packet(ip(src), ip(dst), Protocol::Udp, sport, dport)
}

/// The conntrack flags of the entry with this source port and direction.
fn entry_flags(t: &TestDatapath, sport: u16, direction: u8) -> Option<u8> {
    t.dp.maps
        .conntrack
        .entries()
        .iter()
        .find(|(k, _)| k.sport_be == sport.to_be() && k.direction == direction)
        .map(|(_, v)| v.flags)
}

/// NodePort and LoadBalancer traffic under `externalTrafficPolicy:
/// Cluster`: the node receives it (host ingress marks it), kube-proxy
/// masquerades it to the node's own address, and the hooks after routing
/// see the node as its source. Those flows are tracked (and reported) as
/// hiding their client; the node's own connections to the same places are
/// not.
#[test]
fn a_client_masqueraded_by_the_node_is_marked_hidden_by_snat_privileged() {
    use bulkhead_agent::layout::{CT_F_SNAT_HIDDEN, DIR_EGRESS, DIR_INGRESS};
    let t = with_services("svc-snat");
    let host = "10.99.0.1";
    // A client outside sends to a node port: the host program marks it.
    let (_, mark) = run_marked(&t, HOST_INGRESS, &udp("10.99.0.254", host, 40000, 30053), 0);
    assert_eq!(
        mark & MARK_ARRIVED,
        MARK_ARRIVED,
        "host ingress marks what it receives"
    );
    // Backend b on this node (selective, DNS is a failsafe egress port of
    // the host): masqueraded to the host's address, marked.
    let (v, _) = run_marked(
        &t,
        TO_ENDPOINT,
        &udp(host, "10.98.0.11", 41000, 53),
        MARK_ARRIVED,
    );
    assert_eq!(v, PASS);
    let flags = entry_flags(&t, 41000, DIR_INGRESS).expect("b's ingress entry");
    assert_eq!(
        flags & CT_F_SNAT_HIDDEN,
        CT_F_SNAT_HIDDEN,
        "b's ingress hides the client"
    );
    // The node's own connection to b, same port: not marked, not hidden.
    let (v, _) = run_marked(&t, TO_ENDPOINT, &udp(host, "10.98.0.11", 41001, 53), 0);
    assert_eq!(v, PASS);
    let flags = entry_flags(&t, 41001, DIR_INGRESS).expect("b's ingress entry");
    assert_eq!(flags & CT_F_SNAT_HIDDEN, 0, "the node itself is the client");
    // A backend elsewhere: the masqueraded packet leaves through the host
    // interface as the host's egress (UDP 5000 to world is allowed).
    let (v, _) = run_marked(
        &t,
        HOST_EGRESS,
        &udp(host, "10.99.0.254", 41002, 5000),
        MARK_ARRIVED,
    );
    assert_eq!(v, PASS);
    let flags = entry_flags(&t, 41002, DIR_EGRESS).expect("the host's egress entry");
    assert_eq!(
        flags & CT_F_SNAT_HIDDEN,
        CT_F_SNAT_HIDDEN,
        "forwarded for a hidden client"
    );
    let (v, _) = run_marked(&t, HOST_EGRESS, &udp(host, "10.99.0.254", 41003, 5000), 0);
    assert_eq!(v, PASS);
    let flags = entry_flags(&t, 41003, DIR_EGRESS).expect("the host's egress entry");
    assert_eq!(flags & CT_F_SNAT_HIDDEN, 0, "the host's own egress");
    // A pod's packet from another node arrives marked too, but its source is
    // no address of this node: nothing is hidden.
    let (v, _) = run_marked(
        &t,
        TO_ENDPOINT,
        &udp("10.99.0.4", "10.98.0.12", 41004, 53),
        MARK_ARRIVED,
    );
    assert_eq!(v, PASS);
    let flags = entry_flags(&t, 41004, DIR_INGRESS).expect("c's ingress entry");
    assert_eq!(
        flags & CT_F_SNAT_HIDDEN,
        0,
        "a remote source is its own client"
    );
}
