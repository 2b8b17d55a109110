//! Connection lifecycle in conntrack, with `BPF_PROG_TEST_RUN` (root needed;
//! fails, never skips, without it):
//! - TCP FIN and RST move an entry to the closing timeout, and a SYN on a
//!   closing tuple is a new flow, judged and counted again;
//! - GHSA-c66w-hq56-4q97: an ICMP/ICMPv6 error is judged with the flow whose
//!   packet it quotes, and one that quotes no tracked flow is not a way
//!   through (and never creates an entry).

mod support;

use std::net::IpAddr;
use std::time::Duration;

use bulkhead_agent::flows::aggregate::RawEdge;
use bulkhead_agent::flows::FlowAggregator;
use bulkhead_agent::layout::{CT_F_CLOSING, REASON_UNRELATED, VERDICT_ALLOW, VERDICT_DENY};
use bulkhead_agent::loader::{LoadOptions, FROM_ENDPOINT, TO_ENDPOINT};
use bulkhead_api::policy::Protocol;
use support::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const SYN: u8 = 0x02;

/// A TCP packet with `flags`.
fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = packet(ip(src), ip(dst), Protocol::Tcp, sport, dport);
    let l3 = if src.contains(':') { 40 } else { 20 };
    p[14 + l3 + 13] = flags;
    p
}

/// An ICMP (IPv4) or ICMPv6 destination unreachable from `src` to `dst`
/// quoting a UDP packet `qsrc:qsport -> qdst:qdport`.
fn unreachable(src: &str, dst: &str, qsrc: &str, qdst: &str, qsport: u16, qdport: u16) -> Vec<u8> {
    quoting(
        src,
        dst,
        packet(ip(qsrc), ip(qdst), Protocol::Udp, qsport, qdport),
    )
}

/// The same, quoting a TCP segment.
fn unreachable_tcp(
    src: &str,
    dst: &str,
    qsrc: &str,
    qdst: &str,
    qsport: u16,
    qdport: u16,
) -> Vec<u8> {
    quoting(src, dst, tcp(qsrc, qdst, qsport, qdport, SYN | ACK))
}

fn quoting(src: &str, dst: &str, quoted: Vec<u8>) -> Vec<u8> {
    let v6 = src.contains(':');
    let mut body = if v6 {
        vec![1, 4, 0, 0, 0, 0, 0, 0]
    } else {
        vec![3, 3, 0, 0, 0, 0, 0, 0]
    };
    body.extend_from_slice(&quoted[14..]);
    match (ip(src), ip(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s.octets(), d.octets(), 1, 0, &body),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s.octets(), d.octets(), 58, &body),
        _ => panic!("mixed families"),
    }
}

fn edges(t: &mut TestDatapath) -> Vec<RawEdge> {
    let mut agg = FlowAggregator::default();
    t.dp.read_flows(&mut agg);
    agg.drain(u64::MAX).into_iter().map(|(e, _)| e).collect()
}

fn closing(t: &TestDatapath) -> usize {
    t.dp.maps
        .conntrack
        .entries()
        .iter()
        .filter(|(_, v)| v.flags & CT_F_CLOSING != 0)
        .count()
}

/// Pod a (full) talks to pod b on an allowed port; b's replies pass as the
/// replies of a's flow until the connection closes.
#[test]
fn fin_and_rst_move_entries_to_the_closing_timeout_privileged() {
    for end in [FIN_ACK, RST] {
        let t = programmed_fixture("ct-closing", LoadOptions::default());
        let a_to_b = |flags| tcp("10.98.0.10", "10.98.0.11", 40000, 8000, flags);
        let b_to_a = |flags| tcp("10.98.0.11", "10.98.0.10", 8000, 40000, flags);
        assert_eq!(run(&t, FROM_ENDPOINT, &a_to_b(SYN)), PASS);
        assert_eq!(run(&t, TO_ENDPOINT, &b_to_a(SYN | ACK)), PASS, "reply");
        assert_eq!(closing(&t), 0);
        assert_eq!(run(&t, FROM_ENDPOINT, &a_to_b(end)), PASS, "a closes");
        assert!(closing(&t) >= 1, "a's entry is closing after {end:#x}");
        // Within the (default, 10 s) closing timeout replies still pass.
        assert_eq!(run(&t, TO_ENDPOINT, &b_to_a(ACK)), PASS, "late reply");
        // A new SYN on the tuple is a new connection: counted and judged again.
        let before = t.dp.counters().expect("counters")["ct_new"];
        assert_eq!(run(&t, FROM_ENDPOINT, &a_to_b(SYN)), PASS);
        let after = t.dp.counters().expect("counters")["ct_new"];
        assert!(
            after > before,
            "a reused 4-tuple is a new flow ({before} -> {after})"
        );
    }
}

/// Once the closing timeout has passed, the closed connection is gone: b's
/// packets to a's old port are a new flow into a full-mode pod, denied.
/// Without FIN/RST the 600 s timeout keeps them passing.
#[test]
fn closed_connections_stop_passing_after_the_closing_timeout_privileged() {
    let opts = LoadOptions {
        ct_closing_timeout: Duration::from_nanos(1),
        ..LoadOptions::default()
    };
    let t = programmed_fixture("ct-closed", opts);
    let a_to_b = |sport, flags| tcp("10.98.0.10", "10.98.0.11", sport, 8000, flags);
    let b_to_a = |dport, flags| tcp("10.98.0.11", "10.98.0.10", 8000, dport, flags);
    // Open, never closed: replies pass.
    assert_eq!(run(&t, FROM_ENDPOINT, &a_to_b(40001, SYN)), PASS);
    assert_eq!(run(&t, TO_ENDPOINT, &b_to_a(40001, ACK)), PASS);
    assert_eq!(
        run(&t, TO_ENDPOINT, &b_to_a(40001, ACK)),
        PASS,
        "open flows live 600 s"
    );
    // Closed with FIN: after the closing timeout, b -> a is new and denied.
    assert_eq!(run(&t, FROM_ENDPOINT, &a_to_b(40002, SYN)), PASS);
    assert_eq!(run(&t, FROM_ENDPOINT, &a_to_b(40002, FIN_ACK)), PASS);
    assert_eq!(
        run(&t, TO_ENDPOINT, &b_to_a(40002, ACK)),
        DROP,
        "closed: policy again"
    );
}

/// GHSA-c66w-hq56-4q97: errors about tracked flows pass with them; errors
/// about nothing do not, whatever the rules and the selective default say.
#[test]
fn ghsa_c66w_hq56_4q97_icmp_errors_are_judged_with_their_flow_privileged() {
    let mut t = programmed_fixture("ct-icmp", LoadOptions::default());
    // a (full) -> 10.99.0.200:5353 (CIDR 3000) is allowed (rule 3): tracked.
    let udp = packet(
        ip("10.98.0.10"),
        ip("10.99.0.200"),
        Protocol::Udp,
        40000,
        5353,
    );
    assert_eq!(run(&t, FROM_ENDPOINT, &udp), PASS);
    let udp6 = packet(ip("fd98::10"), ip("fd99::c8"), Protocol::Udp, 40000, 5353);
    assert_eq!(run(&t, FROM_ENDPOINT, &udp6), PASS);
    // world 10.99.0.254 -> b:7000 is allowed (rule 5): tracked as b's ingress.
    let syn = tcp("10.99.0.254", "10.98.0.11", 40000, 7000, SYN);
    assert_eq!(run(&t, TO_ENDPOINT, &syn), PASS);
    let entries = t.dp.maps.conntrack.count();
    let before = t.dp.counters().expect("counters");
    let cases = [
        // (error, expected, what)
        (
            unreachable(
                "10.99.0.254",
                "10.98.0.10",
                "10.98.0.10",
                "10.99.0.200",
                40000,
                5353,
            ),
            PASS,
            "a router's error about a's flow",
        ),
        (
            unreachable(
                "10.99.0.200",
                "10.98.0.10",
                "10.98.0.10",
                "10.99.0.200",
                40000,
                5353,
            ),
            PASS,
            "the peer's port unreachable",
        ),
        (
            unreachable(
                "10.99.0.1",
                "10.98.0.10",
                "10.98.0.10",
                "10.99.0.200",
                40000,
                5353,
            ),
            PASS,
            "the node's own error (PMTU) about a's flow",
        ),
        (
            unreachable("fd99::fe", "fd98::10", "fd98::10", "fd99::c8", 40000, 5353),
            PASS,
            "ICMPv6 about a's flow",
        ),
        (
            unreachable(
                "10.99.0.200",
                "10.98.0.10",
                "10.98.0.10",
                "10.99.0.200",
                40000,
                5354,
            ),
            DROP,
            "a's port 5354: no flow",
        ),
        (
            unreachable(
                "10.99.0.254",
                "10.98.0.10",
                "10.98.0.10",
                "10.99.0.254",
                40000,
                22,
            ),
            DROP,
            "a flow policy denied",
        ),
        (
            unreachable("fd99::fe", "fd98::10", "fd98::10", "fd99::fe", 40000, 53),
            DROP,
            "ICMPv6 about nothing",
        ),
        (
            unreachable_tcp(
                "10.99.0.254",
                "10.98.0.11",
                "10.98.0.11",
                "10.99.0.254",
                7000,
                40000,
            ),
            PASS,
            "about b's reply to an allowed flow",
        ),
        (
            unreachable_tcp(
                "10.99.0.254",
                "10.98.0.11",
                "10.98.0.11",
                "10.99.0.254",
                7001,
                40000,
            ),
            DROP,
            "selective b: its default does not let unrelated errors in",
        ),
        (
            unreachable(
                "10.99.0.254",
                "10.98.0.12",
                "10.98.0.12",
                "10.99.0.254",
                7000,
                40000,
            ),
            PASS,
            "visibility c: reported, not dropped",
        ),
    ];
    for (pkt, want, what) in &cases {
        let program = TO_ENDPOINT;
        assert_eq!(run(&t, program, pkt), *want, "{what}");
    }
    assert_eq!(
        t.dp.maps.conntrack.count(),
        entries,
        "no error opens an entry"
    );
    let after = t.dp.counters().expect("counters");
    assert_eq!(after["icmp_related"] - before["icmp_related"], 5);
    assert_eq!(after["icmp_unrelated"] - before["icmp_unrelated"], 5);
    let unrelated: Vec<RawEdge> = edges(&mut t)
        .into_iter()
        .filter(|e| e.reason == REASON_UNRELATED)
        .collect();
    assert_eq!(
        unrelated
            .iter()
            .filter(|e| e.verdict == VERDICT_DENY)
            .count(),
        4,
        "{unrelated:?}"
    );
    assert!(
        unrelated.iter().any(|e| e.verdict == VERDICT_ALLOW
            && e.would_verdict == VERDICT_DENY
            && e.local_identity == 1002),
        "visibility: a would-be deny: {unrelated:?}"
    );
}
