//! When the conntrack table is full (docs/conntrack.md), with
//! `BPF_PROG_TEST_RUN` (root needed; fails, never skips, without it):
//! established flows of full-mode endpoints are never evicted by new flows,
//! of any mode; a new full-mode flow is refused (dropped, counted, reported
//! as `tableFull`) until the agent's sweep frees ended flows.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use bulkhead_agent::flows::FlowAggregator;
use bulkhead_agent::layout::{REASON_CT_FULL, VERDICT_DENY};
use bulkhead_agent::loader::{LoadOptions, FROM_ENDPOINT, TO_ENDPOINT};
use bulkhead_api::policy::Protocol;
use support::*;

const CAPACITY: u32 = 8;

fn programmed(name: &str, ct_timeout: Duration) -> TestDatapath {
    let opts = LoadOptions {
        conntrack_max_entries: CAPACITY,
        ct_timeout,
        ..LoadOptions::default()
    };
    programmed_fixture(name, opts)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Pod a (full) -> pod b:8000 (allowed), from `sport`.
fn a_to_b(sport: u16) -> Vec<u8> {
    packet(
        ip("10.98.0.10"),
        ip("10.98.0.11"),
        Protocol::Tcp,
        sport,
        8000,
    )
}

fn b_to_a(dport: u16) -> Vec<u8> {
    let mut p = packet(
        ip("10.98.0.11"),
        ip("10.98.0.10"),
        Protocol::Tcp,
        8000,
        dport,
    );
    p[14 + 20 + 13] = 0x10; // ACK
    p
}

#[test]
fn established_full_mode_flows_are_never_evicted_by_new_ones_privileged() {
    let mut t = programmed("ct-full", Duration::from_secs(600));
    let ports: Vec<u16> = (41000..41000 + CAPACITY as u16).collect();
    for &port in &ports {
        assert_eq!(
            run(&t, FROM_ENDPOINT, &a_to_b(port)),
            PASS,
            "flow {port} fits"
        );
    }
    // The table is full: a new full-mode flow is refused, not made room for.
    assert_eq!(run(&t, FROM_ENDPOINT, &a_to_b(42000)), DROP, "no room");
    // A flood of new flows of a visibility-mode pod goes to the LRU table.
    for port in 0..1000u16 {
        let p = packet(
            ip("10.98.0.12"),
            ip("10.99.0.254"),
            Protocol::Udp,
            20000 + port,
            53,
        );
        assert_eq!(run(&t, FROM_ENDPOINT, &p), PASS, "visibility flow {port}");
    }
    // Every established full-mode flow still has its entry: replies pass.
    for &port in &ports {
        assert_eq!(run(&t, TO_ENDPOINT, &b_to_a(port)), PASS, "reply of {port}");
    }
    assert_eq!(t.dp.maps.conntrack.count(), CAPACITY as usize);
    let counters = t.dp.counters().expect("counters");
    assert_eq!(counters["ct_full"], 1);
    let mut agg = FlowAggregator::default();
    t.dp.read_flows(&mut agg);
    let refused: Vec<_> = agg
        .drain(u64::MAX)
        .into_iter()
        .filter(|(e, _)| e.reason == REASON_CT_FULL)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].0.verdict, refused[0].0.local_identity),
        (VERDICT_DENY, 1000)
    );
}

/// Ended flows do not hold the table: the sweep frees expired entries and
/// new flows fit again.
#[test]
fn the_sweep_frees_expired_full_mode_entries_privileged() {
    let mut t = programmed("ct-sweep", Duration::from_nanos(1));
    for port in 43000..43000 + CAPACITY as u16 {
        assert_eq!(run(&t, FROM_ENDPOINT, &a_to_b(port)), PASS);
    }
    assert_eq!(
        run(&t, FROM_ENDPOINT, &a_to_b(44000)),
        DROP,
        "full of expired flows"
    );
    assert_eq!(t.dp.sweep_conntrack().expect("sweep"), CAPACITY as usize);
    assert_eq!(run(&t, FROM_ENDPOINT, &a_to_b(44000)), PASS, "room again");
}
