//! The flattened policy-map encoding, looked up the way the kernel does
//! (exact peer, then ANY; longest prefix), agrees with the compiler's
//! verdict function on random rules and packets.

use bulkhead_agent::desired::policy::{direction_byte, flatten, lookup};
use bulkhead_agent::layout::{ACTION_ALLOW, ACTION_DENY, ACTION_OVERRIDE_DENY};
use bulkhead_api::policy::{Action, Protocol};
use bulkhead_api::rule_map::{CompiledRule, Direction, PortRange};
use bulkhead_policy::verdict::deciding_rule;
use proptest::prelude::*;

const SUBJECTS: [u32; 2] = [300, 301];
const PEERS: [u32; 5] = [1, 2, 256, 257, 258];
const PROTOCOLS: [Protocol; 4] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp, Protocol::Icmp];

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..40, Just(65535u16), 65500u16..=65535, any::<u16>()]
}

fn range() -> impl Strategy<Value = PortRange> {
    (
        0..PROTOCOLS.len(),
        port(),
        0u16..20,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(p, first, span, all)| {
            let (first, last) = if all {
                (0, 65535)
            } else {
                (first, first.saturating_add(span))
            };
            PortRange {
                protocol: PROTOCOLS[p],
                first,
                last,
            }
        })
}

fn rule() -> impl Strategy<Value = (Action, bool, Vec<u32>, Vec<u32>, Vec<PortRange>, bool)> {
    (
        prop_oneof![
            Just(Action::Allow),
            Just(Action::Deny),
            Just(Action::OverrideDeny)
        ],
        prop::bool::weighted(0.3),
        prop::sample::subsequence(SUBJECTS.to_vec(), 1..=2),
        prop::sample::subsequence(PEERS.to_vec(), 1..=3),
        prop::collection::vec(range(), 0..3),
        any::<bool>(),
    )
}

fn rules() -> impl Strategy<Value = Vec<CompiledRule>> {
    prop::collection::vec(rule(), 0..12).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(
                |(i, (action, any_peer, subjects, peers, ports, ingress))| CompiledRule {
                    id: (i as u32 + 1) * 3 % 37 + 1, // ids not in list order
                    policy: "p".into(),
                    rule: format!("r{i}"),
                    direction: if ingress {
                        Direction::Ingress
                    } else {
                        Direction::Egress
                    },
                    action,
                    subjects,
                    any_peer,
                    peers: if any_peer { Vec::new() } else { peers }.into(),
                    ports,
                },
            )
            .collect()
    })
}

fn action_byte(a: Action) -> u8 {
    match a {
        Action::Allow => ACTION_ALLOW,
        Action::Deny => ACTION_DENY,
        Action::OverrideDeny => ACTION_OVERRIDE_DENY,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]
    #[test]
    fn flattened_lookup_equals_deciding_rule(
        rules in rules(),
        packets in prop::collection::vec((0..2usize, any::<bool>(), prop_oneof![0..PEERS.len(), Just(99usize)], 0..PROTOCOLS.len(), port()), 1..40),
    ) {
        let mut rules = rules;
        // ids must be unique, as the compiler guarantees
        rules.sort_by_key(|r| r.id);
        rules.dedup_by_key(|r| r.id);
        let entries = flatten(&rules);
        for (s, ingress, p, proto, port) in packets {
            let subject = SUBJECTS[s];
            let direction = if ingress { Direction::Ingress } else { Direction::Egress };
            let peer = if p == 99 { 4242 } else { PEERS[p] };
            let protocol = PROTOCOLS[proto];
            let want = deciding_rule(&rules, subject, direction, peer, protocol, port)
                .map(|r| (action_byte(r.action), r.id));
            let got = lookup(&entries, subject, direction_byte(direction), peer, protocol.number(), port)
                .map(|v| (v.action, v.rule_id));
            prop_assert_eq!(got, want, "subject {} {:?} peer {} {:?}/{}", subject, direction, peer, protocol, port);
        }
    }
}
