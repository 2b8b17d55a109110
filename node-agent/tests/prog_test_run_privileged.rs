//! Program logic on crafted packets with `BPF_PROG_TEST_RUN` (root needed;
//! fails, never skips, without it). Expected verdicts come from the
//! compiler's verdict function (`bulkhead_policy::verdict`) over the same
//! rule map the maps are programmed from.

mod support;

use std::net::IpAddr;
use std::path::Path;

use bulkhead_agent::flows::aggregate::{REASON_FAILSAFE, REASON_REEVALUATED};
use bulkhead_agent::flows::FlowAggregator;
use bulkhead_agent::layout::{VERDICT_ALLOW, VERDICT_DENY};
use bulkhead_agent::loader::{FROM_ENDPOINT, HOST_EGRESS, HOST_INGRESS, TO_ENDPOINT};
use bulkhead_agent::{spec, Desired};
use bulkhead_api::policy::Protocol;
use bulkhead_api::rule_map::NodeRuleMapSpec;
use bulkhead_api::IdentityMapSpec;
use support::*;

const PASS: u32 = u32::MAX; // TC_ACT_UNSPEC (-1): TCX_NEXT
const DROP: u32 = 2; // TC_ACT_SHOT

fn fixtures() -> (NodeRuleMapSpec, Vec<IdentityMapSpec>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rule_map = spec::read_rule_map(&dir.join("rule-map.yaml")).expect("rule map fixture");
    let ids = spec::read_identity_map(&dir.join("identities.yaml")).expect("identity fixture");
    (rule_map, vec![ids])
}

fn programmed(name: &str) -> (TestDatapath, NodeRuleMapSpec, Vec<IdentityMapSpec>) {
    let (rule_map, shards) = fixtures();
    let mut t = TestDatapath::open(name);
    let desired = Desired::build(&rule_map, &shards).expect("valid fixture");
    t.dp.program(&desired).expect("programming");
    (t, rule_map, shards)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[test]
fn verdict_table_matches_the_verdict_function() {
    let (mut t, rule_map, shards) = programmed("table");
    let a4 = [
        "10.98.0.10",
        "10.98.0.11",
        "10.98.0.12",
        "10.99.0.1",
        "10.99.0.254",
        "10.99.0.200",
        "10.99.0.4",
    ];
    let a6 = [
        "fd98::10", "fd98::11", "fd98::12", "fd99::1", "fd99::fe", "fd99::c8", "fd99::4",
    ];
    let ports: &[(Protocol, &[u16])] = &[
        (
            Protocol::Tcp,
            &[22, 80, 443, 7000, 7999, 8000, 8080, 8099, 8100, 9000],
        ),
        (Protocol::Udp, &[53, 80, 5000, 5353, 6000, 6005, 6011]),
        (Protocol::Sctp, &[3868, 3869]),
        (Protocol::Icmp, &[0, 8]),
    ];
    let mut checked = 0;
    let mut drops = 0;
    for family in [a4, a6] {
        for src in family {
            for dst in family {
                if src == dst {
                    continue;
                }
                for (protocol, list) in ports {
                    for &port in *list {
                        let protocol = if family == a6 && *protocol == Protocol::Icmp {
                            Protocol::Icmpv6
                        } else {
                            *protocol
                        };
                        let port = match (protocol, port) {
                            (Protocol::Icmpv6, 8) => 128,
                            (Protocol::Icmpv6, _) => 129,
                            _ => port,
                        };
                        for program in [FROM_ENDPOINT, TO_ENDPOINT, HOST_INGRESS, HOST_EGRESS] {
                            t.dp.maps.conntrack.clear().expect("ct clear");
                            let (s, d) = (ip(src), ip(dst));
                            let pkt = packet(s, d, protocol, 40000, port);
                            let got = run(&t, program, &pkt);
                            let want = expected(&rule_map, &shards, program, s, d, protocol, port);
                            assert_eq!(got, want, "{program} {src} -> {dst} {protocol:?}/{port}");
                            checked += 1;
                            drops += usize::from(want == DROP);
                        }
                    }
                }
            }
        }
    }
    assert!(
        drops > 100 && checked - drops > 100,
        "table exercises both verdicts: {drops} of {checked}"
    );
    let mut agg = FlowAggregator::default();
    t.dp.read_flows(&mut agg);
    let records = agg.drain(u64::MAX);
    let denies: u64 = records
        .iter()
        .filter(|(e, _)| e.verdict == VERDICT_DENY)
        .map(|(_, c)| c.packets)
        .sum();
    assert!(
        denies >= drops as u64,
        "every drop reported: {denies} denied packets reported for {drops} drops"
    );
}

#[test]
fn malformed_and_odd_packets_get_defined_verdicts() {
    let (t, _, _) = programmed("malformed");
    let a = [10, 98, 0, 10];
    let b = [10, 98, 0, 11];
    let tcp = l4(Protocol::Tcp, 40000, 8000);
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "ARP passes",
            {
                let mut p = eth(0x0806);
                p.extend_from_slice(&[0; 28]);
                p
            },
            PASS,
        ),
        // BPF_PROG_TEST_RUN refuses to build an skb whose IPv4/IPv6 header is
        // shorter than the fixed header, so truncation is shown past it: an
        // IHL or an extension header that runs beyond the packet's end makes
        // the same bpf_skb_load_bytes fail that a cut header would.
        (
            "IPv4 IHL 15 over a 20-byte header and 4 bytes of TCP",
            {
                let mut p = ipv4(a, b, 6, 0, &tcp[..4]);
                p[14] = 0x4f;
                p
            },
            DROP,
        ),
        (
            "IPv4 IHL 4",
            {
                let mut p = ipv4(a, b, 6, 0, &tcp);
                p[14] = 0x44;
                p
            },
            DROP,
        ),
        (
            "IPv4 version 6 in an IPv4 frame",
            {
                let mut p = ipv4(a, b, 6, 0, &tcp);
                p[14] = 0x65;
                p
            },
            DROP,
        ),
        (
            "TCP header cut at 4 bytes",
            ipv4(a, b, 6, 0, &tcp[..4]),
            DROP,
        ),
        (
            "TCP data offset < 5",
            {
                let mut t2 = tcp.clone();
                t2[12] = 0x40;
                ipv4(a, b, 6, 0, &t2)
            },
            DROP,
        ),
        (
            "UDP header cut at 6 bytes",
            ipv4(a, b, 17, 0, &l4(Protocol::Udp, 1, 6000)[..6]),
            DROP,
        ),
        (
            "ICMP header cut at 2 bytes",
            ipv4(a, b, 1, 0, &[8, 0]),
            DROP,
        ),
        (
            "later IPv4 fragment passes (no L4 header)",
            ipv4(a, b, 6, 0x0010, &[0xde; 24]),
            PASS,
        ),
        (
            "first fragment is judged: A->B tcp/8000 allowed",
            ipv4(a, b, 6, 0x2000, &tcp),
            PASS,
        ),
        (
            "first fragment is judged: A->B tcp/8080 override-denied",
            ipv4(a, b, 6, 0x2000, &l4(Protocol::Tcp, 1, 8080)),
            DROP,
        ),
        (
            "unknown protocol (GRE) from A: no port-less rule allows it, full mode",
            ipv4(a, b, 47, 0, &[0; 8]),
            DROP,
        ),
        (
            "IPv6 hop-by-hop header running past the end",
            ipv6(v6("fd98::10"), v6("fd98::11"), 0, &[6, 8, 0, 0]),
            DROP,
        ),
        (
            "IPv6 neighbor solicitation passes",
            ipv6(
                v6("fd98::10"),
                v6("fd98::11"),
                58,
                &[135, 0, 0, 0, 0, 0, 0, 0],
            ),
            PASS,
        ),
        (
            "IPv6 later fragment passes",
            ipv6(
                v6("fd98::10"),
                v6("fd98::11"),
                44,
                &[6, 0, 0x01, 0x00, 0, 0, 0, 1, 0xde, 0xad],
            ),
            PASS,
        ),
        (
            "IPv6 first fragment judged (tcp/8080 denied)",
            {
                let mut f = vec![6, 0, 0x00, 0x01, 0, 0, 0, 1];
                f.extend_from_slice(&l4(Protocol::Tcp, 1, 8080));
                ipv6(v6("fd98::10"), v6("fd98::11"), 44, &f)
            },
            DROP,
        ),
        (
            "IPv6 hop-by-hop then TCP/8000 allowed",
            {
                let mut h = vec![6, 0, 1, 4, 0, 0, 0, 0];
                h.extend_from_slice(&tcp);
                ipv6(v6("fd98::10"), v6("fd98::11"), 0, &h)
            },
            PASS,
        ),
        (
            "IPv6 extension chain longer than 6",
            {
                let mut h = Vec::new();
                for _ in 0..7 {
                    h.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
                }
                ipv6(v6("fd98::10"), v6("fd98::11"), 60, &h)
            },
            DROP,
        ),
    ];
    for (name, pkt, want) in cases {
        let pkt = if pkt.len() < 14 {
            let mut p = pkt;
            p.resize(14, 0);
            p
        } else {
            pkt
        };
        eprintln!("case: {name}");
        assert_eq!(run(&t, FROM_ENDPOINT, &pkt), want, "{name}");
    }
    let counters = t.dp.counters().expect("counters");
    assert!(counters["malformed"] >= 9, "{counters:?}");
    assert!(counters["later_fragment"] >= 2, "{counters:?}");
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().expect("v6").octets()
}

#[test]
fn conntrack_replies_and_generation_reevaluation() {
    let (mut t, mut rule_map, shards) = programmed("conntrack");
    let (a, b) = (ip("10.98.0.10"), ip("10.98.0.11"));
    // A -> B tcp/8000 is allowed by A's egress (rule 1); the reply B -> A enters
    // A, whose full mode has no ingress rule for it: only conntrack lets it in.
    assert_eq!(
        run(&t, FROM_ENDPOINT, &packet(a, b, Protocol::Tcp, 40001, 8000)),
        PASS
    );
    assert_eq!(
        run(&t, TO_ENDPOINT, &packet(b, a, Protocol::Tcp, 8000, 40001)),
        PASS,
        "reply via conntrack"
    );
    assert_eq!(
        run(&t, TO_ENDPOINT, &packet(b, a, Protocol::Tcp, 8000, 40002)),
        DROP,
        "not a reply"
    );
    // ICMP echo: request allowed to the host (rule 4), reply by identifier.
    let host = ip("10.99.0.1");
    assert_eq!(
        run(&t, FROM_ENDPOINT, &packet(a, host, Protocol::Icmp, 77, 8)),
        DROP,
        "host ingress has no ICMP rule"
    );
    // The same rule map again: a pass writes the slot not in force, so now
    // both slots hold it and the change below is a diff against it.
    t.dp.program(&Desired::build(&rule_map, &shards).expect("valid"))
        .expect("again");
    // Policy change: drop rule 1. The established flow stops at its next packet.
    rule_map.rules.retain(|r| r.id != 1);
    let stats =
        t.dp.program(&Desired::build(&rule_map, &shards).expect("valid"))
            .expect("reprogram");
    assert!(
        stats.policy.removed > 0 && stats.policy.added + stats.policy.changed == 0,
        "a diff: {:?}",
        stats.policy
    );
    assert_eq!(
        run(&t, FROM_ENDPOINT, &packet(a, b, Protocol::Tcp, 40001, 8000)),
        DROP,
        "re-evaluated"
    );
    let counters = t.dp.counters().expect("counters");
    assert_eq!(counters["reeval_denied"], 1, "{counters:?}");
    let mut agg = FlowAggregator::default();
    t.dp.read_flows(&mut agg);
    let edges = agg.drain(u64::MAX);
    let of_flow: u64 = edges
        .iter()
        .filter(|(e, _)| e.port == 8000)
        .map(|(_, c)| c.packets)
        .sum();
    assert_eq!(
        of_flow, 2,
        "the request and its reply, over both edges: {edges:?}"
    );
    let reeval: Vec<_> = edges
        .into_iter()
        .filter(|(e, _)| e.reason == REASON_REEVALUATED)
        .collect();
    assert_eq!(reeval.len(), 1, "{reeval:?}");
    let (edge, counts) = &reeval[0];
    assert_eq!(
        (
            edge.port,
            edge.local_identity,
            edge.peer_identity,
            edge.verdict
        ),
        (8000, 1000, 1001, VERDICT_DENY)
    );
    assert_eq!(
        (edge.src, edge.dst),
        (a, b),
        "named by the flow's opening tuple"
    );
    assert_eq!(
        (counts.flows, counts.packets),
        (0, 1),
        "the packets since the flow's opening event; the flow was counted then"
    );
    // Unchanged input: once it is in both slots (each pass writes the slot
    // not in force), an empty diff.
    t.dp.program(&Desired::build(&rule_map, &shards).expect("valid"))
        .expect("reprogram");
    let again =
        t.dp.program(&Desired::build(&rule_map, &shards).expect("valid"))
            .expect("reprogram");
    assert_eq!(
        again.policy.touched() + again.endpoints.touched() + again.ipcache_v4.touched(),
        0
    );
}

/// The cross-CPU conntrack hang: the client's packets are judged on one CPU,
/// the server's replies on another, and each refreshes the same entry. When
/// the other CPU stamps `last_seen_ns` after this CPU read its clock, the
/// entry is "seen in the future". An unsigned age wrapped to ~2^64 there, the
/// live entry was deleted as expired, and the reply was denied as a new flow.
/// Staged here exactly: the entry's stamp is moved 10 s ahead of any clock
/// this test will read, as the other CPU would have moved it.
#[test]
fn conntrack_entry_refreshed_by_another_cpu_is_not_expired() {
    let (mut t, _, _) = programmed("ct-cross-cpu");
    let (a, b) = (ip("10.98.0.10"), ip("10.98.0.11"));
    assert_eq!(
        run(&t, FROM_ENDPOINT, &packet(a, b, Protocol::Tcp, 40111, 8000)),
        PASS
    );
    let entries = t.dp.maps.conntrack.entries();
    let (key, mut value) = *entries
        .iter()
        .find(|(k, _)| u16::from_be(k.sport_be) == 40111)
        .expect("the flow's entry");
    let ahead = value.last_seen_ns + 10_000_000_000;
    value.last_seen_ns = ahead;
    t.dp.maps.conntrack.overwrite(&key, &value).expect("stage");

    assert_eq!(
        run(&t, TO_ENDPOINT, &packet(b, a, Protocol::Tcp, 8000, 40111)),
        PASS,
        "the reply of a flow another CPU just refreshed rides on conntrack"
    );
    assert_eq!(
        run(&t, FROM_ENDPOINT, &packet(a, b, Protocol::Tcp, 40111, 8000)),
        PASS,
        "and so does the next packet of the flow itself"
    );
    let after = t.dp.maps.conntrack.entries();
    let (_, v) = after
        .iter()
        .find(|(k, _)| *k == key)
        .expect("the entry is still there");
    assert_eq!(
        v.last_seen_ns, ahead,
        "an older clock never moves last_seen back"
    );
    assert_eq!(v.packets, 3, "both packets counted on the one entry");
    let counters = t.dp.counters().expect("counters");
    assert_eq!(counters["denied"], 0, "{counters:?}");
}

#[test]
fn visibility_reports_would_be_denies_and_failsafe_holds() {
    let (mut t, _, _) = programmed("visibility");
    let (a, c, host, world) = (
        ip("10.98.0.10"),
        ip("10.98.0.12"),
        ip("10.99.0.1"),
        ip("10.99.0.254"),
    );
    // C is in visibility; rule 7 denies A -> C. Nothing is dropped; the
    // connection is reported once, on its first packet.
    for _ in 0..3 {
        assert_eq!(
            run(&t, TO_ENDPOINT, &packet(a, c, Protocol::Udp, 41000, 9999)),
            PASS
        );
    }
    // Failsafe: SSH to the host from the world passes though the host is in full mode with no rule.
    assert_eq!(
        run(
            &t,
            HOST_INGRESS,
            &packet(world, host, Protocol::Tcp, 41001, 22)
        ),
        PASS
    );
    assert_eq!(
        run(
            &t,
            HOST_INGRESS,
            &packet(world, host, Protocol::Tcp, 41001, 23)
        ),
        DROP
    );
    assert_eq!(
        run(
            &t,
            HOST_EGRESS,
            &packet(host, world, Protocol::Udp, 41002, 53)
        ),
        PASS
    );
    let mut agg = FlowAggregator::default();
    t.dp.read_flows(&mut agg);
    assert_eq!(
        agg.events(),
        4,
        "one event per connection (A->C, SSH, DNS) and one per dropped packet (telnet)"
    );
    let records = agg.drain(u64::MAX);
    let would: Vec<_> = records
        .iter()
        .filter(|(e, _)| e.would_verdict == VERDICT_DENY && e.verdict == VERDICT_ALLOW)
        .collect();
    assert_eq!(would.len(), 1, "{records:#?}");
    assert_eq!((would[0].1.flows, would[0].0.rule_id), (1, 7));
    assert!(records
        .iter()
        .any(|(e, _)| e.reason == REASON_FAILSAFE && e.port == 22));
    t.dp.maps.conntrack.clear().expect("clear");
}

/// Events per connection, not per packet: an established flow in
/// visibility mode with no matching rule (a new install's default state)
/// emits its first packet and then nothing until a report is due; a TCP FIN
/// carries the flow's cumulative counters.
#[test]
fn visibility_flows_emit_per_connection_not_per_packet() {
    let (mut t, _, _) = programmed("per-connection");
    let (world, c) = (ip("10.99.0.254"), ip("10.98.0.12"));
    let syn = packet(world, c, Protocol::Tcp, 41500, 9999);
    for _ in 0..500 {
        assert_eq!(run(&t, TO_ENDPOINT, &syn), PASS);
    }
    let mut agg = FlowAggregator::default();
    t.dp.read_flows(&mut agg);
    assert_eq!(agg.events(), 1, "500 packets of one flow, one event");
    assert_eq!(
        run(&t, TO_ENDPOINT, &with_tcp_flags(syn.clone(), 0x11)), // FIN|ACK
        PASS
    );
    t.dp.read_flows(&mut agg);
    assert_eq!(agg.events(), 2, "the FIN reports");
    let edges = agg.drain(u64::MAX);
    assert_eq!(edges.len(), 1, "{edges:?}");
    let (edge, counts) = &edges[0];
    assert_eq!(
        (edge.verdict, edge.would_verdict),
        (VERDICT_ALLOW, VERDICT_DENY)
    );
    assert_eq!(
        (counts.flows, counts.packets),
        (1, 501),
        "one connection with all its packets"
    );
    let counters = t.dp.counters().expect("counters");
    assert_eq!(
        counters["would_deny"], 501,
        "per-packet counters still count"
    );
    t.dp.maps.conntrack.clear().expect("clear");
}

/// The packet with its TCP flags byte replaced (`packet` builds a SYN).
fn with_tcp_flags(mut pkt: Vec<u8>, flags: u8) -> Vec<u8> {
    let ip_len = if pkt[14] >> 4 == 4 { 20 } else { 40 };
    pkt[14 + ip_len + 13] = flags;
    pkt
}

#[test]
fn failsafe_connections_opened_before_the_programs_survive_strict_policy() {
    // An SSH session to the host (failsafe TCP 22 ingress) that was open
    // before the programs were attached: the first packet they see is the
    // host's answer, host:22 -> world:41005. Read as a new flow it would be
    // host egress to port 41005, which the host's full mode denies.
    let (mut t, mut rule_map, shards) = programmed("failsafe-midflow");
    let (host, world) = (ip("10.99.0.1"), ip("10.99.0.254"));
    const ACK: u8 = 0x10;
    const SYN: u8 = 0x02;
    let answer = |flags| with_tcp_flags(packet(host, world, Protocol::Tcp, 22, 41005), flags);
    assert_eq!(
        run(&t, HOST_EGRESS, &answer(SYN)),
        DROP,
        "a bare SYN from port 22 opens nothing"
    );
    assert_eq!(
        run(&t, HOST_EGRESS, &answer(ACK)),
        PASS,
        "mid-connection answer from the failsafe port"
    );
    let counters = t.dp.counters().expect("counters");
    assert_eq!(counters["failsafe"], 1, "{counters:?}");
    // Recorded the right way round: the client's next segment is the
    // established flow, and a policy change re-evaluates it as failsafe.
    assert_eq!(
        run(
            &t,
            HOST_INGRESS,
            &with_tcp_flags(packet(world, host, Protocol::Tcp, 41005, 22), ACK)
        ),
        PASS
    );
    rule_map.rules.retain(|r| r.id != 13);
    t.dp.program(&Desired::build(&rule_map, &shards).expect("valid"))
        .expect("reprogram");
    assert_eq!(
        run(&t, HOST_EGRESS, &answer(ACK)),
        PASS,
        "after re-evaluation"
    );
    let counters = t.dp.counters().expect("counters");
    assert_eq!(counters["reeval_denied"], 0, "{counters:?}");
    assert!(counters["reevaluated"] >= 1, "{counters:?}");
    // Port 23 is no failsafe port: its answers are judged like any packet.
    assert_eq!(
        run(
            &t,
            HOST_EGRESS,
            &with_tcp_flags(packet(host, world, Protocol::Tcp, 23, 41006), ACK)
        ),
        DROP
    );
    t.dp.maps.conntrack.clear().expect("clear");
}
