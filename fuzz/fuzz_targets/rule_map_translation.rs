//! The agent's rule-map-to-BPF-map translation (node-agent/src/desired) on
//! arbitrary rule maps and identity shards (fuzz/src/rule_map.rs):
//!
//! - `Desired::build` refuses bad input with an error and never panics;
//! - what it accepts holds every endpoint address with its identity and
//!   mode, and every host address as the `host` identity in the ipcache;
//! - the flattened policy map, looked up as the kernel does, gives the
//!   compiler's verdict (`deciding_rule`) for every packet;
//! - the host-route parsers take any text.

#![no_main]

use std::collections::HashMap;

use bulkhead_agent::desired::addresses::{address_bytes, parse_host_address};
use bulkhead_agent::desired::interfaces::{bind, parse_ipv4_routes, parse_ipv6_routes};
use bulkhead_agent::desired::policy::{direction_byte, lookup};
use bulkhead_agent::desired::{mode_byte, Desired};
use bulkhead_agent::layout::{EndpointKey, ACTION_ALLOW, ACTION_DENY, ACTION_OVERRIDE_DENY};
use bulkhead_api::identity::HOST;
use bulkhead_api::policy::Action;
use bulkhead_api::rule_map::Direction;
use bulkhead_fuzz::rule_map::Translation;
use bulkhead_policy::verdict::deciding_rule;
use libfuzzer_sys::fuzz_target;

fn action_byte(a: Action) -> u8 {
    match a {
        Action::Allow => ACTION_ALLOW,
        Action::Deny => ACTION_DENY,
        Action::OverrideDeny => ACTION_OVERRIDE_DENY,
    }
}

fuzz_target!(|input: Translation| {
    let Translation {
        rule_map,
        shards,
        packets,
        routes,
    } = input;
    let _ = parse_ipv4_routes(&routes);
    let _ = parse_ipv6_routes(&routes);
    let Ok(desired) = Desired::build(&rule_map, &shards) else {
        return;
    };
    assert!(
        rule_map.rules.iter().all(|r| r.id != 0),
        "rule id 0 accepted"
    );
    for endpoint in std::iter::once(&rule_map.host).chain(&rule_map.endpoints) {
        for text in &endpoint.addresses {
            let addr = parse_host_address(text).expect("accepted, so it parses");
            let (family, bytes) = address_bytes(addr);
            let key = EndpointKey {
                family,
                pad: [0; 3],
                addr: bytes,
            };
            let info = desired
                .endpoints
                .get(&key)
                .expect("every address is an endpoint");
            assert_eq!(
                info.identity, endpoint.identity,
                "{text} of {}",
                endpoint.name
            );
            assert_eq!(
                info.mode,
                mode_byte(endpoint.mode),
                "{text} of {}",
                endpoint.name
            );
        }
    }
    for text in &rule_map.host.addresses {
        let id = match parse_host_address(text).expect("accepted") {
            std::net::IpAddr::V4(a) => desired.ipcache_v4.get(&(32, a.octets())),
            std::net::IpAddr::V6(a) => desired.ipcache_v6.get(&(128, a.octets())),
        };
        assert_eq!(id, Some(&HOST), "host address {text}");
    }
    // Binding with no routes leaves every pod unbound and changes nothing else.
    let bound = bind(&desired.endpoints, &desired.pods, &HashMap::new());
    assert_eq!(bound.endpoints, desired.endpoints);
    assert!(bound.ifaces.is_empty());
    for (subject, ingress, peer, protocol, port) in packets {
        let direction = if ingress {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        let want = deciding_rule(&rule_map.rules, subject, direction, peer, protocol, port)
            .map(|r| (action_byte(r.action), r.id));
        let got = lookup(
            &desired.policy,
            subject,
            direction_byte(direction),
            peer,
            protocol.number(),
            port,
        )
        .map(|v| (v.action, v.rule_id));
        assert_eq!(
            got, want,
            "subject {subject} {direction:?} peer {peer} {protocol:?}/{port}"
        );
    }
});
