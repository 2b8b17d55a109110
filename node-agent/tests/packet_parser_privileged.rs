//! The packet parser (bpf/lib/parse.h) on malformed packets, through the
//! real programs with `BPF_PROG_TEST_RUN` (root needed; fails, never skips,
//! without it). Issue 14, item 5: no malformed packet may be let through
//! where a well-formed one of the same flow is dropped.
//!
//! For every flow of the fixture rule map that a program drops (the
//! verdict function says so, and the kernel agrees), each of:
//!
//! - every truncation of the packet, down to one byte past the Ethernet
//!   header (those shorter than an IP header the kernel will not build an
//!   skb of for a test run: they are listed, not counted);
//! - random values (a seeded generator, `SEED` to change it) in every
//!   header byte that does not name the flow: IPv4 TOS, length, id, flags,
//!   TTL, checksum, and a version/IHL that is invalid; IPv6 traffic class,
//!   flow label, payload length, hop limit and an invalid version; TCP
//!   sequence and acknowledgement numbers, data offset, flags, window,
//!   checksum; UDP length and checksum; SCTP tag, checksum and chunk; ICMP
//!   code, checksum, identifier and sequence;
//!
//! must be dropped too. The bytes left alone (addresses, protocol, ports,
//! ICMP type, fragment offset, ethertype) name another flow when changed,
//! or are the documented exemptions (later fragments and non-IP pass).

mod support;

use std::net::IpAddr;
use std::path::Path;

use bulkhead_agent::loader::{FROM_ENDPOINT, HOST_EGRESS, HOST_INGRESS, TO_ENDPOINT};
use bulkhead_agent::{spec, Desired};
use bulkhead_api::policy::Protocol;
use support::*;

const ETH: usize = 14;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 32) as u8
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Offsets (from the start of the frame) that may take any value without
/// naming another flow, for a packet of `protocol` in `v6` or not.
fn free_bytes(v6: bool, protocol: Protocol) -> Vec<usize> {
    let (ip_free, l4): (Vec<usize>, usize) = if v6 {
        (vec![1, 2, 3, 4, 5, 7], 40)
    } else {
        // 6: flags and the top of the offset, handled in `mutate`
        (vec![1, 2, 3, 4, 5, 6, 8, 10, 11], 20)
    };
    let l4_free: Vec<usize> = match protocol {
        Protocol::Tcp => (4..20).collect(),
        Protocol::Udp => (4..8).collect(),
        Protocol::Sctp => (4..32).collect(),
        Protocol::Icmp | Protocol::Icmpv6 => (1..8).collect(),
    };
    ip_free
        .into_iter()
        .map(|o| ETH + o)
        .chain(l4_free.into_iter().map(|o| ETH + l4 + o))
        .collect()
}

/// A copy of `packet` with 1-3 free bytes (or the version byte) changed.
fn mutate(rng: &mut Rng, packet: &[u8], free: &[usize], v6: bool) -> Vec<u8> {
    let mut p = packet.to_vec();
    for _ in 0..=rng.below(3) {
        if rng.below(8) == 0 {
            // the version/IHL byte, only to values the parser must refuse
            let b = loop {
                let b = rng.byte();
                let valid = if v6 {
                    b >> 4 == 6
                } else {
                    b >> 4 == 4 && b & 0xf >= 5
                };
                if !valid {
                    break b;
                }
            };
            p[ETH] = if v6 { (b & 0xf0) | (p[ETH] & 0x0f) } else { b };
            continue;
        }
        let at = free[rng.below(free.len())];
        p[at] = rng.byte();
        if !v6 && at == ETH + 6 {
            p[at] &= 0xe0; // flags (reserved, DF, MF) only: the offset stays 0
        }
    }
    p
}

/// `BPF_PROG_TEST_RUN` of `program` on `packet`: its return value, or
/// `None` when the kernel refuses to build an skb of it (EINVAL).
fn try_run(t: &TestDatapath, program: &str, packet: &[u8]) -> Option<u32> {
    use aya::programs::{TestRun, TestRunOptions};
    let mut out = vec![0u8; packet.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(packet),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    };
    match classifier(t, program).test_run(opts) {
        Ok(r) => Some(r.return_value),
        Err(e) if format!("{e:?}").contains("InvalidInput") => None,
        Err(e) => panic!("test_run {program}: {e:?}"),
    }
}

#[test]
fn malformed_packets_never_pass_where_the_well_formed_one_is_dropped() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rule_map = spec::read_rule_map(&dir.join("rule-map.yaml")).expect("rule map fixture");
    let shards = vec![spec::read_identity_map(&dir.join("identities.yaml")).expect("identities")];
    let mut t = TestDatapath::open("parser");
    t.dp.program(&Desired::build(&rule_map, &shards).expect("valid fixture"))
        .expect("programming");
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_b01d_u64);
    let mut rng = Rng(seed | 1);
    let a4 = ["10.98.0.10", "10.98.0.11", "10.99.0.1", "10.99.0.200"];
    let a6 = ["fd98::10", "fd98::11", "fd99::1", "fd99::c8"];
    let traffic = [
        (Protocol::Tcp, 9000),
        (Protocol::Tcp, 8080),
        (Protocol::Udp, 6011),
        (Protocol::Sctp, 3869),
        (Protocol::Icmp, 8),
    ];
    let (mut flows, mut runs) = (0, 0);
    let mut through = Vec::new();
    let mut refused: Vec<usize> = Vec::new();
    for (family, v6) in [(a4, false), (a6, true)] {
        for src in family {
            for dst in family {
                for (protocol, port) in traffic {
                    let (protocol, port) = match (v6, protocol) {
                        (true, Protocol::Icmp) => (Protocol::Icmpv6, 128),
                        _ => (protocol, port),
                    };
                    for program in [FROM_ENDPOINT, TO_ENDPOINT, HOST_INGRESS, HOST_EGRESS] {
                        let (s, d): (IpAddr, IpAddr) =
                            (src.parse().expect("a"), dst.parse().expect("a"));
                        if src == dst
                            || expected(&rule_map, &shards, program, s, d, protocol, port) != DROP
                        {
                            continue;
                        }
                        let good = packet(s, d, protocol, 40000, port);
                        t.dp.maps.conntrack.clear().expect("ct clear");
                        assert_eq!(
                            run(&t, program, &good),
                            DROP,
                            "{program} {src} -> {dst} {protocol:?}/{port}"
                        );
                        flows += 1;
                        let free = free_bytes(v6, protocol);
                        let variants = (ETH + 1..good.len())
                            .map(|len| (format!("truncated to {len}"), good[..len].to_vec()))
                            .chain((0..40).map(|_| {
                                let p = mutate(&mut rng, &good, &free, v6);
                                (format!("mutated {:02x?}", &p[ETH..]), p)
                            }));
                        for (what, bad) in variants {
                            t.dp.maps.conntrack.clear().expect("ct clear");
                            match try_run(&t, program, &bad) {
                                None => refused.push(bad.len()),
                                Some(DROP) => runs += 1,
                                Some(_) => {
                                    runs += 1;
                                    through.push(format!(
                                        "{program} {src} -> {dst} {protocol:?}/{port}: {what}"
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    refused.sort_unstable();
    refused.dedup();
    eprintln!(
        "parser: {flows} dropped flows, {runs} malformed variants run, seed {seed:#x}; \
         frame lengths the kernel would not test-run: {refused:?}"
    );
    assert!(
        flows > 40 && runs > 4000,
        "{flows} flows, {runs} runs: too few to mean much"
    );
    assert!(
        through.is_empty(),
        "{} malformed packets passed where the well-formed one is dropped (seed {seed:#x}):\n{}",
        through.len(),
        through[..through.len().min(30)].join("\n")
    );
}
