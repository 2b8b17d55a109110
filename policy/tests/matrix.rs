//! Reachability matrices: namespaces x, y, z; pods a, b, c; ports 80 and 81;
//! TCP, UDP and SCTP. Each case names its policies and only the cells that
//! differ from a default; the harness checks all of them (see
//! `matrix/harness.rs`), after a full compile and after incremental changes.

mod support;

#[path = "matrix/harness.rs"]
mod harness;

use bulkhead_api::policy::Protocol::{Sctp, Tcp, Udp};
use bulkhead_policy::Verdict::{Allow, Deny};
use harness::{any, on, port, proto, Case, Family, Model, Truth};

/// Egress open, so that a full-mode scope only closes ingress.
const OPEN_EGRESS: &str = "egress: [{action: allow}]";
/// Ingress open, so that a full-mode scope only closes egress.
const OPEN_INGRESS: &str = "ingress: [{action: allow}]";

fn yaml(parts: &[&str]) -> String {
    parts.join("\n")
}

#[test]
fn no_policy_everything_reaches_everything() {
    Case::new("no policy").expect(Truth::allow_all()).run();
}

#[test]
fn deny_all_ingress_in_full_mode() {
    Case::new("deny all ingress to x")
        .policy(
            "x-closed",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
            ]),
        )
        .expect(Truth::allow_all().deny_to("x/*", any()))
        .run();
}

#[test]
fn full_mode_without_rules_isolates_both_ways() {
    Case::new("full mode, no rules")
        .policy(
            "x-isolated",
            "scope: {selector: {matchLabels: {ns: x}}}\nenforcement: full",
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .deny_from("x/*", any()),
        )
        .run();
}

#[test]
fn allow_from_same_namespace() {
    Case::new("allow from x to x")
        .policy(
            "x-internal",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: x}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("x/*", "x/*", any()),
        )
        .run();
}

#[test]
fn allow_from_other_namespace_by_label() {
    Case::new("allow from y to x")
        .policy(
            "x-from-y",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: y}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("y/*", "x/*", any()),
        )
        .run();
}

#[test]
fn allow_from_one_pod_of_other_namespace() {
    Case::new("allow from y/b to x, as a table")
        .policy(
            "x-from-yb",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: y, pod: b}}}]}]",
            ]),
        )
        .expect(Truth::allow_all().table(
            any(),
            "
                 x/a x/b x/c
            x/a   X   X   X
            x/b   X   X   X
            x/c   X   X   X
            y/a   X   X   X
            y/b   .   .   .
            y/c   X   X   X
            z/a   X   X   X
            z/b   X   X   X
            z/c   X   X   X
            ",
        ))
        .run();
}

#[test]
fn allow_by_match_expressions() {
    Case::new("allow from pods a and b outside x")
        .policy(
            "x-from-ab",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress:",
                "- action: allow",
                "  peers:",
                "  - selector:",
                "      matchExpressions:",
                "      - {key: ns, operator: NotIn, values: [x]}",
                "      - {key: pod, operator: In, values: [a, b]}",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("y/a,y/b,z/a,z/b", "x/*", any()),
        )
        .run();
}

#[test]
fn peers_of_one_rule_are_a_union() {
    Case::new("allow from y, or from any pod c")
        .policy(
            "x-from-y-or-c",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress:",
                "- action: allow",
                "  peers: [{selector: {matchLabels: {ns: y}}}, {selector: {matchLabels: {pod: c}}}]",
            ]),
        )
        .expect(Truth::allow_all().deny_to("x/*", any()).allow("y/*,*/c", "x/*", any()))
        .run();
}

#[test]
fn rules_of_overlapping_policies_add_up() {
    Case::new("two policies allow to x/a")
        .policy(
            "xa-from-y",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x, pod: a}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: y}}}]}]",
            ]),
        )
        .policy(
            "xa-from-za",
            &yaml(&[
                "scope: {selector: {matchLabels: {pod: a}}}",
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: z, pod: a}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/a", any())
                .allow("y/*,z/a", "x/a", any()),
        )
        .run();
}

#[test]
fn allow_on_one_port_and_protocol() {
    Case::new("x/a takes TCP/80 only")
        .policy(
            "xa-web",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x, pod: a}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, ports: [{protocol: TCP, port: 80}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/a", any())
                .allow_to("x/a", on(80, Tcp)),
        )
        .run();
}

#[test]
fn several_port_entries_are_a_union() {
    Case::new("x/a takes TCP/80 and UDP/81")
        .policy(
            "xa-two",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x, pod: a}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, ports: [{protocol: TCP, port: 80}, {protocol: UDP, port: 81}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/a", any())
                .allow_to("x/a", on(80, Tcp).or(on(81, Udp))),
        )
        .run();
}

#[test]
fn port_range_covers_both_ports() {
    Case::new("TCP 80-81")
        .policy(
            "xa-range",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x, pod: a}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, ports: [{protocol: TCP, port: 80, endPort: 81}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/a", any())
                .allow_to("x/a", proto(Tcp)),
        )
        .run();
}

#[test]
fn port_ranges_are_inclusive_at_both_ends() {
    Case::new("TCP 81-9000 and UDP 1-80")
        .policy(
            "xb-ranges",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x, pod: b}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress:",
                "- action: allow",
                "  ports: [{protocol: TCP, port: 81, endPort: 9000}, {protocol: UDP, port: 1, endPort: 80}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/b", any())
                .allow_to("x/b", on(81, Tcp).or(on(80, Udp))),
        )
        .flow("y/a", "x/b", Tcp, 9000, Allow)
        .flow("y/a", "x/b", Tcp, 9001, Deny)
        .flow("y/a", "x/b", Udp, 1, Allow)
        .run();
}

#[test]
fn udp_only_rule() {
    Case::new("UDP, every port")
        .policy(
            "y-udp",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: y}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, ports: [{protocol: UDP}]}]",
            ]),
        )
        .expect(Truth::allow_all().deny_to("y/*", proto(Tcp).or(proto(Sctp))))
        .run();
}

#[test]
fn sctp_only_rule_on_one_port() {
    Case::new("SCTP/81 from z")
        .policy(
            "y-sctp",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: y}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress:",
                "- action: allow",
                "  peers: [{selector: {matchLabels: {ns: z}}}]",
                "  ports: [{protocol: SCTP, port: 81}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("y/*", any())
                .allow("z/*", "y/*", on(81, Sctp)),
        )
        .run();
}

#[test]
fn egress_deny_all_with_one_allowed_destination() {
    Case::new("x/a may only call y/b")
        .policy(
            "xa-out",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x, pod: a}}}",
                "enforcement: full",
                OPEN_INGRESS,
                "egress: [{action: allow, peers: [{selector: {matchLabels: {ns: y, pod: b}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_from("x/a", any())
                .allow("x/a", "y/b", any()),
        )
        .run();
}

#[test]
fn both_directions_are_required() {
    // y/c admits x/a, but x/a's egress only lets it call y/b.
    Case::new("egress of the client denies though the server's ingress allows")
        .policy(
            "xa-out",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x, pod: a}}}",
                "enforcement: full",
                OPEN_INGRESS,
                "egress: [{action: allow, peers: [{selector: {matchLabels: {ns: y, pod: b}}}]}]",
            ]),
        )
        .policy(
            "yc-in",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: y, pod: c}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: x, pod: a}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_from("x/a", any())
                .allow("x/a", "y/b", any())
                .deny_to("y/c", any()),
        )
        .run();
}

#[test]
fn selective_egress_deny_beats_full_ingress_allow() {
    Case::new("x/* selective egress deny to y; y/b admits x")
        .policy(
            "x-out",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: selective",
                "egress: [{action: deny, peers: [{selector: {matchLabels: {ns: y}}}]}]",
            ]),
        )
        .policy(
            "yb-in",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: y, pod: b}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: x}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("y/b", any())
                .allow("x/*", "y/b", any())
                .deny("x/*", "y/*", any()),
        )
        .run();
}

#[test]
fn override_deny_beats_allow_in_the_same_policy() {
    Case::new("overrideDeny y on TCP/80 over allow-all")
        .policy(
            "x",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress:",
                "- action: allow",
                "- action: overrideDeny",
                "  peers: [{selector: {matchLabels: {ns: y}}}]",
                "  ports: [{protocol: TCP, port: 80}]",
            ]),
        )
        .expect(Truth::allow_all().deny("y/*", "x/*", on(80, Tcp)))
        .run();
}

#[test]
fn override_deny_from_another_policy_beats_allow() {
    // The override names every pod a, but only x/a is in an enforcing mode.
    Case::new("overrideDeny z to pods a")
        .policy(
            "x-open",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                OPEN_INGRESS,
            ]),
        )
        .policy(
            "a-not-from-z",
            &yaml(&[
                "scope: {selector: {matchLabels: {pod: a}}}",
                "ingress: [{action: overrideDeny, peers: [{selector: {matchLabels: {ns: z}}}]}]",
            ]),
        )
        .expect(Truth::allow_all().deny("z/*", "x/a", any()))
        .run();
}

#[test]
fn allow_beats_deny() {
    Case::new("deny y, allow y/a")
        .policy(
            "x",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: selective",
                "ingress:",
                "- action: deny",
                "  peers: [{selector: {matchLabels: {ns: y}}}]",
                "- action: allow",
                "  peers: [{selector: {matchLabels: {ns: y, pod: a}}}]",
            ]),
        )
        .expect(Truth::allow_all().deny("y/b,y/c", "x/*", any()))
        .run();
}

#[test]
fn deny_in_selective_mode_lets_the_rest_through() {
    Case::new("selective: deny UDP from z")
        .policy(
            "x",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: selective",
                "ingress:",
                "- action: deny",
                "  peers: [{selector: {matchLabels: {ns: z}}}]",
                "  ports: [{protocol: UDP}]",
            ]),
        )
        .expect(Truth::allow_all().deny("z/*", "x/*", proto(Udp)))
        .run();
}

#[test]
fn selective_egress_deny_on_one_port() {
    Case::new("selective: x may not call pods c on port 81")
        .policy(
            "x",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: selective",
                "egress:",
                "- action: deny",
                "  peers: [{selector: {matchLabels: {pod: c}}}]",
                "  ports: [{protocol: TCP, port: 81}, {protocol: UDP, port: 81}, {protocol: SCTP, port: 81}]",
            ]),
        )
        .expect(Truth::allow_all().deny("x/*", "*/c", port(81)))
        .run();
}

#[test]
fn denies_without_a_mode_are_only_reported() {
    Case::new("no enforcement field: visibility")
        .policy(
            "x",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "ingress: [{action: deny}, {action: overrideDeny}]",
                "egress: [{action: overrideDeny}]",
            ]),
        )
        .expect(Truth::allow_all())
        .run();
}

#[test]
fn visibility_mode_never_drops() {
    Case::new("visibility with overrideDeny everywhere")
        .policy(
            "all",
            &yaml(&[
                "scope: {clusterWide: true}",
                "enforcement: visibility",
                "ingress: [{action: overrideDeny}]",
                "egress: [{action: overrideDeny}]",
            ]),
        )
        .expect(Truth::allow_all())
        .run();
}

#[test]
fn strictest_mode_wins() {
    Case::new("visibility + selective + full")
        .policy(
            "x-deny-y",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: visibility",
                "ingress: [{action: deny, peers: [{selector: {matchLabels: {ns: y}}}]}]",
            ]),
        )
        .policy(
            "a-selective",
            "scope: {selector: {matchLabels: {pod: a}}}\nenforcement: selective",
        )
        // x/a is selective (its deny now counts); x/b and x/c stay in visibility.
        .expect(Truth::allow_all().deny("y/*", "x/a", any()))
        .then("x goes to full mode")
        .policy(
            "x-full",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: x}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("x/*", "x/*", any()),
        )
        .then("the full-mode policy is removed again")
        .delete_policy("x-full")
        .expect(Truth::allow_all().deny("y/*", "x/a", any()))
        .run();
}

#[test]
fn cluster_wide_scope() {
    Case::new("cluster-wide full mode, ingress from x only")
        .policy(
            "everyone",
            &yaml(&[
                "scope: {clusterWide: true}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: x}}}]}]",
            ]),
        )
        .expect(Truth::deny_all().allow_from("x/*", any()))
        .run();
}

#[test]
fn cidr_peer_does_not_select_pods() {
    // 10.0.0.0/8 covers every pod address, but CIDR peers only name
    // addresses that belong to no endpoint.
    Case::new("egress to 10.0.0.0/8")
        .policy(
            "x-out",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_INGRESS,
                "egress: [{action: allow, peers: [{cidr: 10.0.0.0/8}]}]",
            ]),
        )
        .expect(Truth::allow_all().deny_from("x/*", any()))
        .flow("x/a", "10.99.0.5", Tcp, 80, Allow)
        .flow("x/a", "10.0.2.1", Tcp, 80, Deny) // y/a's address: a pod, not the range
        .flow("x/a", "172.16.0.1", Tcp, 80, Deny)
        .flow("y/a", "172.16.0.1", Tcp, 80, Allow)
        .run();
}

#[test]
fn cidr_peer_with_except() {
    Case::new("egress to 10.99.0.0/16 except 10.99.1.0/24")
        .policy(
            "x-out",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_INGRESS,
                "egress: [{action: allow, peers: [{cidr: 10.99.0.0/16, except: [10.99.1.0/24]}]}]",
            ]),
        )
        .expect(Truth::allow_all().deny_from("x/*", any()))
        .flow("x/b", "10.99.0.5", Udp, 81, Allow)
        .flow("x/b", "10.99.255.254", Udp, 81, Allow)
        .flow("x/b", "10.99.1.5", Udp, 81, Deny)
        .flow("x/b", "10.98.0.1", Udp, 81, Deny)
        .run();
}

#[test]
fn ingress_cidr_deny_spares_pods() {
    Case::new("selective: deny ingress from 0.0.0.0/0")
        .policy(
            "y-in",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: y}}}",
                "enforcement: selective",
                "ingress: [{action: deny, peers: [{cidr: 0.0.0.0/0}]}]",
            ]),
        )
        .expect(Truth::allow_all())
        .flow("203.0.113.9", "y/a", Tcp, 80, Deny)
        .flow("10.0.1.1", "y/a", Tcp, 80, Allow) // x/a's address resolves to x/a
        .flow("203.0.113.9", "x/a", Tcp, 80, Allow)
        .run();
}

#[test]
fn reserved_world_peer() {
    Case::new("x talks to the world only")
        .policy(
            "x-world",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                "ingress: [{action: allow, peers: [{reserved: world}]}]",
                "egress: [{action: allow, peers: [{reserved: world}]}]",
            ]),
        )
        .policy(
            // a CIDR identity is still part of the world
            "names-a-range",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: z}}}",
                "egress: [{action: allow, peers: [{cidr: 8.8.8.0/24}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .deny_from("x/*", any()),
        )
        .flow("203.0.113.9", "x/a", Tcp, 80, Allow)
        .flow("x/a", "8.8.8.8", Udp, 81, Allow)
        .flow("x/a", "9.9.9.9", Udp, 81, Allow)
        .flow("x/a", "n2", Tcp, 80, Deny) // another node is not the world
        .flow("x/a", "n1", Tcp, 80, Deny) // nor is its own
        .run();
}

#[test]
fn reserved_host_peer() {
    // x/a runs on n1, x/b on n2, x/c on n3.
    Case::new("x admits its own node only")
        .policy(
            "x-host",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{reserved: host}]}]",
            ]),
        )
        .expect(Truth::allow_all().deny_to("x/*", any()))
        .flow("n1", "x/a", Tcp, 80, Allow)
        .flow("n2", "x/b", Tcp, 80, Allow)
        .flow("n2", "x/a", Tcp, 80, Deny)
        .flow("192.168.0.3", "x/c", Tcp, 81, Allow)
        .run();
}

#[test]
fn reserved_unlabeled_peer() {
    let model = Model::standard()
        .ns("u", &[])
        .pod("u/d", "n2", "10.0.9.4", &[]);
    Case::on("x admits unlabeled endpoints only", model)
        .policy(
            "x-unlabeled",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{reserved: unlabeled}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("u/d", "x/*", any()),
        )
        .then("u/d gets a label: it is no longer unlabeled")
        .relabel_pod("u/d", &[("pod", "d")])
        .expect(Truth::allow_all().deny_to("x/*", any()))
        .then("and loses it again")
        .relabel_pod("u/d", &[])
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("u/d", "x/*", any()),
        )
        .run();
}

#[test]
fn pod_relabel_changes_which_rules_name_it() {
    Case::new("x admits pods a; y/b becomes an a, x/a stops being one")
        .policy(
            "x-from-a",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {pod: a}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("*/a", "x/*", any()),
        )
        .then("y/b relabeled pod=a")
        .relabel_pod("y/b", &[("pod", "a")])
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("*/a,y/b", "x/*", any()),
        )
        .then("x/a relabeled pod=z")
        .relabel_pod("x/a", &[("pod", "z")])
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("y/a,z/a,y/b", "x/*", any()),
        )
        .run();
}

#[test]
fn pod_relabel_moves_it_out_of_scope() {
    Case::new("pods a admit y only; x/a leaves the scope")
        .policy(
            "a-from-y",
            &yaml(&[
                "scope: {selector: {matchLabels: {pod: a}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: y}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("*/a", any())
                .allow("y/*", "*/a", any()),
        )
        .then("x/a relabeled pod=d")
        .relabel_pod("x/a", &[("pod", "d")])
        .expect(
            Truth::allow_all()
                .deny_to("y/a,z/a", any())
                .allow("y/*", "*/a", any()),
        )
        .then("z/b relabeled pod=a: it joins the scope")
        .relabel_pod("z/b", &[("pod", "a")])
        .expect(
            Truth::allow_all()
                .deny_to("y/a,z/a,z/b", any())
                .allow("y/*", "y/a,z/a,z/b", any()),
        )
        .run();
}

#[test]
fn policy_update_changes_the_matrix() {
    Case::new("x/b: TCP/80 from anyone, then UDP/81 from z, then visibility, then gone")
        .policy(
            "xb",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x, pod: b}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, ports: [{protocol: TCP, port: 80}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/b", any())
                .allow_to("x/b", on(80, Tcp)),
        )
        .then("rule changed to UDP/81 from z")
        .policy(
            "xb",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x, pod: b}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress:",
                "- action: allow",
                "  peers: [{selector: {matchLabels: {ns: z}}}]",
                "  ports: [{protocol: UDP, port: 81}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/b", any())
                .allow("z/*", "x/b", on(81, Udp)),
        )
        .then("scope widened to all of x")
        .policy(
            "xb",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress:",
                "- action: allow",
                "  peers: [{selector: {matchLabels: {ns: z}}}]",
                "  ports: [{protocol: UDP, port: 81}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("z/*", "x/*", on(81, Udp)),
        )
        .then("enforcement removed")
        .policy(
            "xb",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "ingress: [{action: deny}]",
            ]),
        )
        .expect(Truth::allow_all())
        .then("deleted")
        .delete_policy("xb")
        .expect(Truth::allow_all())
        .run();
}

#[test]
fn namespace_relabel_moves_its_pods() {
    Case::new("x admits x; namespace y is relabeled ns=x")
        .policy(
            "x-internal",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: x}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("x/*", "x/*", any()),
        )
        .then("namespace y labeled ns=x")
        .relabel_ns("y", &[("ns", "x")])
        .expect(
            Truth::allow_all()
                .deny_to("x/*,y/*", any())
                .allow("x/*,y/*", "x/*,y/*", any()),
        )
        .then("namespace y loses its labels")
        .relabel_ns("y", &[])
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("x/*", "x/*", any()),
        )
        .run();
}

#[test]
fn deleted_pod_leaves_the_matrix() {
    Case::new("z/c is deleted; then the only pod c left is x/c and y/c")
        .policy(
            "y-from-c",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: y}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: z, pod: c}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("y/*", any())
                .allow("z/c", "y/*", any()),
        )
        .then("z/c deleted")
        .delete_pod("z/c")
        .expect(Truth::allow_all().deny_to("y/*", any()))
        .then("z/b takes its labels")
        .relabel_pod("z/b", &[("pod", "c")])
        .expect(
            Truth::allow_all()
                .deny_to("y/*", any())
                .allow("z/b", "y/*", any()),
        )
        .run();
}

#[test]
fn ipv6_only_pods() {
    Case::on("IPv6: x admits y, x calls fd00:99::/32", Model::with_family(Family::V6))
        .policy(
            "x",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: y}}}]}]",
                "egress: [{action: allow, peers: [{cidr: 'fd00:99::/32'}, {selector: {matchLabels: {ns: z}}}]}]",
            ]),
        )
        .expect(
            Truth::allow_all()
                .deny_to("x/*", any())
                .allow("y/*", "x/*", any())
                .deny_from("x/*", any())
                .allow("x/*", "z/*", any()),
        )
        .flow("x/a", "fd00:99::5", Tcp, 80, Allow)
        .flow("x/a", "2001:db8::1", Tcp, 80, Deny)
        .flow("x/a", "fd00::2:1", Tcp, 80, Deny) // y/a: a pod, not the world
        .flow("fd00::2:2", "x/c", Udp, 81, Allow) // y/b
        .run();
}

#[test]
fn dual_stack_pods() {
    Case::on("dual stack: x admits y and 10.99.0.0/16, on either family", Model::with_family(Family::Dual))
        .policy(
            "x",
            &yaml(&[
                "scope: {selector: {matchLabels: {ns: x}}}",
                "enforcement: full",
                OPEN_EGRESS,
                "ingress: [{action: allow, peers: [{selector: {matchLabels: {ns: y}}}, {cidr: 'fd00:99::/32'}]}]",
            ]),
        )
        .expect(Truth::allow_all().deny_to("x/*", any()).allow("y/*", "x/*", any()))
        .flow("fd00::2:1", "x/a", Tcp, 80, Allow) // y/a by its IPv6 address
        .flow("fd00::3:1", "x/a", Tcp, 80, Deny) // z/a
        .flow("10.0.3.1", "x/a", Tcp, 80, Deny) // z/a by its IPv4 address
        .flow("fd00:99::1", "x/b", Sctp, 80, Allow)
        .flow("fd00:98::1", "x/b", Sctp, 80, Deny)
        .run();
}
