//! Rule hits in the datapath, with `BPF_PROG_TEST_RUN` on crafted packets
//! (root needed): a hit per new flow and per denied packet, by the deciding
//! rule; nothing for established flows, replies, re-evaluations or the
//! mode's default. Rules of the fixture (tests/fixtures/rule-map.yaml):
//!
//! ```text
//!  1  a-out/to-b          a egress → b, allow TCP 8000-8099
//!  2  guard/no-8080       a egress → any, overrideDeny TCP 8080   (overrules 1 on 8080)
//!  7  c-in/not-from-a     c ingress ← a, deny (c is in visibility mode)
//! ```

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use bulkhead_agent::datapath::monotonic_ns;
use bulkhead_agent::loader::{FROM_ENDPOINT, TO_ENDPOINT};
use bulkhead_agent::maps::hits::RuleHits;
use bulkhead_agent::{spec, Desired};
use bulkhead_api::policy::Protocol;
use support::*;

const PASS: u32 = u32::MAX;
const DROP: u32 = 2;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn counts(hits: &BTreeMap<u32, RuleHits>) -> BTreeMap<u32, u64> {
    hits.iter().map(|(id, h)| (*id, h.count)).collect()
}

#[test]
fn a_hit_per_new_flow_or_denied_packet_by_the_deciding_rule_privileged() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut rule_map = spec::read_rule_map(&dir.join("rule-map.yaml")).expect("rule map");
    let shards = vec![spec::read_identity_map(&dir.join("identities.yaml")).expect("ids")];
    let mut t = TestDatapath::open("hits");
    t.dp.program(&Desired::build(&rule_map, &shards).expect("valid"))
        .expect("programming");
    let (a, b, c) = (ip("10.98.0.10"), ip("10.98.0.11"), ip("10.98.0.12"));
    let world = ip("10.99.0.254");
    assert!(t.dp.rule_hits().expect("read").is_empty(), "no hits yet");

    let before = monotonic_ns();
    // One new flow, then its own packets and its replies: one hit of rule 1.
    let flow = packet(a, b, Protocol::Tcp, 40001, 8000);
    for _ in 0..3 {
        assert_eq!(run(&t, FROM_ENDPOINT, &flow), PASS);
        let reply = packet(b, a, Protocol::Tcp, 8000, 40001);
        assert_eq!(run(&t, TO_ENDPOINT, &reply), PASS, "reply");
    }
    let after = monotonic_ns();
    let hits = t.dp.rule_hits().expect("read");
    assert_eq!(counts(&hits), BTreeMap::from([(1, 1)]), "{hits:?}");
    let last = hits[&1].last_hit_ns;
    assert!(
        (before..=after).contains(&last),
        "{before} <= {last} <= {after}"
    );
    // A second flow of the same rule.
    assert_eq!(
        run(&t, FROM_ENDPOINT, &packet(a, b, Protocol::Tcp, 40002, 8001)),
        PASS
    );
    // 8080: the overrideDeny rule decides, not the allow rule it overrules;
    // every denied packet is a hit (a denied flow keeps no entry).
    for _ in 0..2 {
        assert_eq!(
            run(&t, FROM_ENDPOINT, &packet(a, b, Protocol::Tcp, 40003, 8080)),
            DROP
        );
    }
    // No rule: full mode's default denies, and no rule gets the hit.
    assert_eq!(
        run(
            &t,
            FROM_ENDPOINT,
            &packet(a, world, Protocol::Tcp, 40004, 12345)
        ),
        DROP
    );
    // Visibility: the deny rule that would drop it gets the hit, the packet passes.
    assert_eq!(
        run(&t, TO_ENDPOINT, &packet(a, c, Protocol::Tcp, 40005, 5432)),
        PASS
    );
    let hits = t.dp.rule_hits().expect("read");
    assert_eq!(
        counts(&hits),
        BTreeMap::from([(1, 2), (2, 2), (7, 1)]),
        "{hits:?}"
    );

    // A policy change that drops rule 1 re-evaluates the established flow
    // at its next packet, and stops it: no hit of anything.
    rule_map.rules.retain(|r| r.id != 1);
    t.dp.program(&Desired::build(&rule_map, &shards).expect("valid"))
        .expect("reprogram");
    assert_eq!(run(&t, FROM_ENDPOINT, &flow), DROP, "re-evaluated");
    assert_eq!(counts(&t.dp.rule_hits().expect("read")), counts(&hits));

    // The agent forgets the hits of rules the node no longer carries.
    let keep: BTreeSet<u32> = rule_map.rules.iter().map(|r| r.id).collect();
    assert_eq!(t.dp.forget_rule_hits(&keep).expect("forget"), 1);
    assert_eq!(
        counts(&t.dp.rule_hits().expect("read")),
        BTreeMap::from([(2, 2), (7, 1)])
    );
}
