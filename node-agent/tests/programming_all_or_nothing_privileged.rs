//! Issue 15, defect 3: "the previous maps stay in force" after a kernel
//! error mid-update. The maps used to be written in place one after
//! another, so a pass the kernel refused half-way left a mix of two rule
//! maps in force. Now a pass writes the slot not in force and flips the
//! generation last (`src/maps/mod.rs`): these tests make the kernel refuse
//! a pass half-way, and a pass that cannot fit, and check with
//! `BPF_PROG_TEST_RUN` that every verdict is still the previous rule map's,
//! that the same content goes through when retried, and that established
//! flows (one conntrack, not one per slot) survive the flip.
//! Root needed; fails, never skips, without it.

mod support;

use std::net::IpAddr;
use std::path::Path;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Map, MapData};
use bulkhead_agent::error::Error;
use bulkhead_agent::layout::{PolicyKeyData, PolicyValue, ACTION_ALLOW, LAYOUT_VERSION};
use bulkhead_agent::loader::{LoadOptions, FROM_ENDPOINT, TO_ENDPOINT};
use bulkhead_agent::{spec, Desired};
use bulkhead_api::policy::{Action, Protocol};
use bulkhead_api::rule_map::{CompiledRule, Direction, NodeRuleMapSpec, PortRange};
use bulkhead_api::IdentityMapSpec;
use support::*;

fn fixture() -> (NodeRuleMapSpec, Vec<IdentityMapSpec>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rule_map = spec::read_rule_map(&dir.join("rule-map.yaml")).expect("rule map fixture");
    let ids = spec::read_identity_map(&dir.join("identities.yaml")).expect("identity fixture");
    (rule_map, vec![ids])
}

fn rule(
    id: u32,
    direction: Direction,
    subject: u32,
    protocol: Protocol,
    port: u16,
) -> CompiledRule {
    CompiledRule {
        id,
        policy: "next".into(),
        rule: format!("r{id}"),
        direction,
        action: Action::Allow,
        subjects: vec![subject],
        any_peer: true,
        peers: Default::default(),
        ports: vec![PortRange {
            protocol,
            first: port,
            last: port,
        }],
    }
}

/// The next rule map: it differs from the fixture in every map of a slot.
/// Policy: a's TCP to b moves from 8000-8099 to 8100-8199, and c takes
/// `extra` more single-port rules (new keys, so the pass needs room).
/// Endpoints: b goes from selective to full. Ipcache: the CIDR identity
/// 3000 is gone, so 10.99.0.200 is world.
fn next(extra: u16) -> (NodeRuleMapSpec, Vec<IdentityMapSpec>) {
    let (mut rule_map, mut shards) = fixture();
    for r in &mut rule_map.rules {
        if r.id == 1 {
            r.ports[0].first = 8100;
            r.ports[0].last = 8199;
        }
    }
    for i in 0..extra {
        let id = 100 + u32::from(i);
        rule_map.rules.push(rule(
            id,
            Direction::Ingress,
            1002,
            Protocol::Tcp,
            20_000 + i,
        ));
    }
    for e in &mut rule_map.endpoints {
        if e.identity == 1001 {
            e.mode = bulkhead_api::policy::EnforcementMode::Full;
        }
    }
    shards[0].prefixes.retain(|p| p.identity != 3000);
    (rule_map, shards)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Packets from a pod (FROM_ENDPOINT) and to a pod (TO_ENDPOINT), over the
/// addresses and ports the two rule maps differ on.
fn sweep() -> Vec<(&'static str, IpAddr, IpAddr, Protocol, u16)> {
    let pods = ["10.98.0.10", "10.98.0.11", "10.98.0.12"];
    let peers = [
        "10.98.0.10",
        "10.98.0.11",
        "10.98.0.12",
        "10.99.0.200",
        "10.99.0.254",
    ];
    let ports = [
        (Protocol::Tcp, 7000),
        (Protocol::Tcp, 8050),
        (Protocol::Tcp, 8150),
        (Protocol::Tcp, 9000),
        (Protocol::Tcp, 9999),
        (Protocol::Tcp, 20_001),
        (Protocol::Udp, 5353),
        (Protocol::Udp, 6005),
        (Protocol::Sctp, 3868),
    ];
    let mut out = Vec::new();
    for pod in pods {
        for peer in peers.iter().filter(|p| **p != pod) {
            for (protocol, port) in ports {
                out.push((FROM_ENDPOINT, ip(pod), ip(peer), protocol, port));
                out.push((TO_ENDPOINT, ip(peer), ip(pod), protocol, port));
            }
        }
    }
    out
}

/// Runs the sweep as new flows (fresh source ports) and returns the packets
/// whose verdict is not `model`'s.
fn mismatches(
    t: &TestDatapath,
    model: &(NodeRuleMapSpec, Vec<IdentityMapSpec>),
    sport: &mut u16,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (program, src, dst, protocol, port) in sweep() {
        *sport += 1;
        let got = run(t, program, &packet(src, dst, protocol, *sport, port));
        let want = expected(&model.0, &model.1, program, src, dst, protocol, port);
        if got != want {
            wrong.push(format!(
                "{program} {src} -> {dst} {protocol:?}/{port}: got {got}, want {want}"
            ));
        }
    }
    wrong
}

/// How many sweep packets the two rule maps judge differently: the sweep
/// can tell which one is in force only if this is not 0.
fn differences(
    a: &(NodeRuleMapSpec, Vec<IdentityMapSpec>),
    b: &(NodeRuleMapSpec, Vec<IdentityMapSpec>),
) -> usize {
    sweep()
        .into_iter()
        .filter(|(program, src, dst, protocol, port)| {
            expected(&a.0, &a.1, program, *src, *dst, *protocol, *port)
                != expected(&b.0, &b.1, program, *src, *dst, *protocol, *port)
        })
        .count()
}

fn desired(m: &(NodeRuleMapSpec, Vec<IdentityMapSpec>)) -> Desired {
    Desired::build(&m.0, &m.1).expect("valid rule map")
}

/// Fills slot `_b`'s pinned policy map up to its capacity from outside the
/// agent (its own handle knows nothing of these entries), so that the
/// agent's next inserts there are refused by the kernel.
fn fill_policy_b(t: &TestDatapath, capacity: u32) -> usize {
    let pin = t.dir.join(format!("v{LAYOUT_VERSION}")).join("bh_policy_b");
    let data = MapData::from_pin(&pin).unwrap_or_else(|e| panic!("{}: {e}", pin.display()));
    let mut trie: LpmTrie<MapData, PolicyKeyData, PolicyValue> =
        LpmTrie::try_from(Map::LpmTrie(data)).expect("an LPM trie");
    let held = t.dp.maps.slots[1].policy.read().expect("read").len();
    let junk = capacity as usize - held;
    for i in 0..junk {
        let key = Key::new(
            96,
            PolicyKeyData {
                subject: 0xdead_0000 + i as u32,
                peer: 0,
                direction: 0,
                protocol: 6,
                port_be: 1,
            },
        );
        let value = PolicyValue {
            rule_id: 1,
            action: ACTION_ALLOW,
            pad: [0; 3],
        };
        trie.insert(&key, value, 0).expect("junk insert");
    }
    junk
}

fn counter(t: &TestDatapath, name: &str) -> u64 {
    t.dp.counters().expect("counters")[name]
}

#[test]
fn kernel_error_mid_update_leaves_the_previous_generation_in_force() {
    let before = fixture();
    let after = next(8);
    let (want_before, want_after) = (desired(&before), desired(&after));
    assert!(
        want_after.policy.len() > want_before.policy.len(),
        "the next rule map must need new policy entries"
    );
    assert!(
        differences(&before, &after) >= 10,
        "the sweep must tell the two rule maps apart"
    );
    // Room for either rule map, not for both at once.
    let capacity = want_after.policy.len() as u32 + 4;
    let mut t = TestDatapath::open_with(
        "all-or-nothing",
        LoadOptions {
            policy_max_entries: capacity,
            ..LoadOptions::default()
        },
    );
    // Twice: slot _b then slot _a hold the fixture, _a is in force, and the
    // agent's handle on _b remembers what it wrote there.
    assert_eq!(t.dp.program(&want_before).expect("first pass").slot, 1);
    let in_force = t.dp.program(&want_before).expect("second pass");
    assert_eq!((in_force.generation, in_force.slot), (2, 0));
    let mut sport = 30_000;
    let wrong = mismatches(&t, &before, &mut sport);
    assert!(wrong.is_empty(), "fixture in force: {wrong:#?}");

    // Two flows established under the fixture: a -> b SCTP 3868 stays
    // allowed, a -> 10.99.0.200 UDP 5353 (CIDR identity 3000) is not
    // allowed by the next rule map.
    let kept = packet(
        ip("10.98.0.10"),
        ip("10.98.0.11"),
        Protocol::Sctp,
        4000,
        3868,
    );
    let stopped = packet(
        ip("10.98.0.10"),
        ip("10.99.0.200"),
        Protocol::Udp,
        4001,
        5353,
    );
    assert_eq!(run(&t, FROM_ENDPOINT, &kept), PASS);
    assert_eq!(run(&t, FROM_ENDPOINT, &stopped), PASS);

    // The kernel refuses the pass half-way: slot _b is full of entries the
    // agent does not know about, so its policy inserts fail after its
    // ipcache and endpoints were written.
    fill_policy_b(&t, capacity);
    match t.dp.program(&want_after) {
        Err(Error::Map { map, operation, .. }) => {
            assert_eq!((map, operation), ("bh_policy_b", "insert"))
        }
        other => panic!("the kernel must refuse the pass: {other:?}"),
    }
    assert_eq!(t.dp.maps.state.generation().expect("generation"), 2);
    let wrong = mismatches(&t, &before, &mut sport);
    assert!(
        wrong.is_empty(),
        "after the failed pass the fixture must be in force, whole: {wrong:#?}"
    );
    assert_eq!(
        run(&t, FROM_ENDPOINT, &stopped),
        PASS,
        "nothing re-evaluated yet"
    );

    // The same content again: the agent reads what slot _b really holds,
    // clears it and flips.
    let established = counter(&t, "ct_established");
    let stats = t.dp.program(&want_after).expect("the retry goes through");
    assert_eq!((stats.generation, stats.slot), (3, 1));
    assert_eq!(
        t.dp.maps.slots[1].policy.read().expect("read"),
        want_after.policy,
        "slot _b holds exactly the next rule map"
    );
    let wrong = mismatches(&t, &after, &mut sport);
    assert!(wrong.is_empty(), "next rule map in force: {wrong:#?}");

    // One conntrack for both slots: the established flow goes on as
    // established, the one the new rules deny is stopped on re-evaluation.
    assert_eq!(run(&t, FROM_ENDPOINT, &kept), PASS);
    assert_eq!(counter(&t, "ct_established"), established + 1);
    let denied = counter(&t, "reeval_denied");
    assert_eq!(run(&t, FROM_ENDPOINT, &stopped), DROP);
    assert_eq!(counter(&t, "reeval_denied"), denied + 1);
}

#[test]
fn rule_map_too_big_for_the_maps_changes_nothing_in_force() {
    let before = fixture();
    let want_before = desired(&before);
    let smaller = next(2);
    let capacity = want_before.policy.len().max(desired(&smaller).policy.len()) as u32;
    let mut t = TestDatapath::open_with(
        "too-big",
        LoadOptions {
            policy_max_entries: capacity,
            ..LoadOptions::default()
        },
    );
    t.dp.program(&want_before).expect("fixture");
    let generation = t.dp.maps.state.generation().expect("generation");
    let too_big = next(64);
    let want = desired(&too_big);
    assert!(want.policy.len() > capacity as usize);
    match t.dp.program(&want) {
        Err(Error::MapFull { map, max, needed }) => {
            assert_eq!(
                (map, max, needed),
                ("bh_policy_a", capacity, want.policy.len())
            )
        }
        other => panic!("a rule map that cannot fit must be refused: {other:?}"),
    }
    assert_eq!(
        t.dp.maps.state.generation().expect("generation"),
        generation
    );
    let mut sport = 30_000;
    let wrong = mismatches(&t, &before, &mut sport);
    assert!(wrong.is_empty(), "fixture still in force: {wrong:#?}");
    // A rule map that fits goes through after it.
    t.dp.program(&desired(&smaller))
        .expect("a rule map that fits");
    let wrong = mismatches(&t, &smaller, &mut sport);
    assert!(wrong.is_empty(), "next rule map in force: {wrong:#?}");
}

#[test]
fn restarted_agent_programs_the_slot_not_in_force() {
    let before = fixture();
    let mut t = TestDatapath::open("restart-slot");
    t.dp.program(&desired(&before)).expect("fixture");
    let generation = t.dp.maps.state.generation().expect("generation");
    // A second agent on the same pins (the restart): it finds the
    // generation in force and writes the other slot.
    let opts = LoadOptions {
        pin_name: t
            .dir
            .file_name()
            .expect("pin name")
            .to_string_lossy()
            .into_owned(),
        ..LoadOptions::default()
    };
    let mut restarted = bulkhead_agent::Datapath::open(&opts).expect("reopen the pins");
    let after = next(2);
    let stats = restarted.program(&desired(&after)).expect("program");
    assert_eq!(stats.generation, generation + 1);
    assert_ne!(stats.slot, bulkhead_agent::maps::slot_of(generation));
    let mut sport = 30_000;
    let wrong = mismatches(&t, &after, &mut sport);
    assert!(
        wrong.is_empty(),
        "the restarted agent's rule map: {wrong:#?}"
    );
}
