//! Regression tests named after peers' advisories (docs/security.md), on the
//! real programs with `BPF_PROG_TEST_RUN` (root needed; fails, never skips,
//! without it). The maps are programmed from what the compiler makes of a
//! small cluster, so each test covers compiler, agent translation and
//! datapath together; the compiler's own answer (`simulate`) is checked
//! beside the kernel's.

mod support;

use std::net::IpAddr;

use bulkhead_agent::loader::FROM_ENDPOINT;
use bulkhead_agent::Desired;
use bulkhead_api::policy::{Action, EnforcementMode, Protocol};
use bulkhead_api::rule_map::{
    CompiledRule, Direction, LocalEndpoint, NodeKind, NodeRuleMapSpec, PortRange,
};
use bulkhead_api::{LabelMappingSpec, Labels, SegmentationPolicySpec};
use bulkhead_policy::snapshot::{Namespace, Node, Pod, PodKey};
use bulkhead_policy::{
    compile, simulate, CompileOptions, FlowEnd, FlowQuery, IdentityAllocation, Output, Snapshot,
    Verdict,
};
use support::*;

const WEB4: &str = "10.98.0.10";
const WEB6: &str = "fd98::10";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Node n1 with one pod, shop/web (`app: web`), and `policies`.
fn cluster(mappings: &[(&str, &str)], policies: &[(&str, &str)]) -> Snapshot {
    let mut s = Snapshot::default();
    s.nodes.insert(
        "n1".into(),
        Node {
            labels: Labels::new(),
            addresses: vec![ip("192.168.50.1")],
        },
    );
    s.namespaces.insert("shop".into(), Namespace::default());
    s.pods.insert(
        PodKey::new("shop", "web"),
        Pod {
            labels: [("app".to_string(), "web".to_string())].into(),
            node: Some("n1".into()),
            addresses: vec![ip(WEB4), ip(WEB6)],
            ..Pod::default()
        },
    );
    let base =
        "priority: 10\nrules:\n- match: {pods: {}}\n  copyLabels: [{key: app, fromLabel: app}]";
    for (name, yaml) in std::iter::once(&("base", base)).chain(mappings) {
        let spec: LabelMappingSpec = serde_yaml::from_str(yaml).expect("mapping yaml");
        s.mappings.insert((*name).into(), spec);
    }
    for (name, yaml) in policies {
        let spec: SegmentationPolicySpec = serde_yaml::from_str(yaml).expect("policy yaml");
        s.policies.insert((*name).into(), spec);
    }
    s
}

/// Compiles `snapshot` and programs n1's rule map into a fresh datapath.
fn programmed(name: &str, snapshot: &Snapshot) -> (TestDatapath, Output) {
    let out = compile(
        snapshot,
        &CompileOptions::default(),
        &IdentityAllocation::default(),
    );
    let rule_map = out.rule_maps.get("n1").expect("n1's rule map");
    let desired = Desired::build(rule_map, &out.identity_maps).expect("valid compiler output");
    let mut t = TestDatapath::open(name);
    t.dp.program(&desired).expect("programming");
    (t, out)
}

/// web's egress to `dst`: the compiler's verdict and the kernel's return code.
fn egress(
    t: &mut TestDatapath,
    out: &Output,
    dst: &str,
    protocol: Protocol,
    port: u16,
) -> (Verdict, u32) {
    let src = if dst.contains(':') { WEB6 } else { WEB4 };
    let q = FlowQuery {
        from: FlowEnd::Pod(PodKey::new("shop", "web")),
        to: FlowEnd::Address(ip(dst)),
        protocol,
        port,
    };
    let verdict = simulate(out, &q).expect("simulate").verdict;
    t.dp.maps.conntrack.clear().expect("ct clear");
    let got = run(
        t,
        FROM_ENDPOINT,
        &packet(ip(src), ip(dst), protocol, 40000, port),
    );
    (verdict, got)
}

/// GO-2024-3208 (Cilium GHSA-3wwx-63fv-pfq6): a deny of a prefix broader
/// than /32 was ignored when another rule named a narrower prefix inside it
/// and an allow-all rule existed. The narrower prefix gets an identity of
/// its own (longest prefix wins in the ipcache), so the broad rule must be
/// programmed for that identity too. Ours: an `overrideDeny` of 10.0.0.0/8
/// and fd00::/8 beside allows of 10.1.0.0/16, 10.1.2.3/32 and fd00:1::/32
/// (and a labeled range inside the /8) and an allow of everything.
#[test]
fn go_2024_3208_a_broad_cidr_override_deny_holds_against_narrower_allows() {
    require_root();
    let snapshot = cluster(
        &[("ranges", "priority: 10\nrules:\n- match: {cidrs: [10.7.0.0/16]}\n  labels: {app: partner}")],
        &[
            (
                "block-scary-range",
                "scope: {selector: {matchLabels: {app: web}}}
enforcement: full
egress:
- {action: overrideDeny, peers: [{cidr: 10.0.0.0/8}, {cidr: 'fd00::/8'}]}",
            ),
            (
                "narrow-allows",
                "scope: {selector: {matchLabels: {app: web}}}
egress:
- action: allow
  peers: [{cidr: 10.1.0.0/16}, {cidr: 10.1.2.3/32}, {cidr: 'fd00:1::/32'}, {selector: {matchLabels: {app: partner}}}]
  ports: [{protocol: TCP, port: 443}]
- {action: allow}",
            ),
        ],
    );
    let (mut t, out) = programmed("go-2024-3208", &snapshot);
    let denied = [
        ("10.1.2.3", Protocol::Tcp, 443),
        ("10.1.9.9", Protocol::Tcp, 443),
        ("10.1.9.9", Protocol::Udp, 53),
        ("10.7.0.1", Protocol::Tcp, 443),
        ("10.200.0.1", Protocol::Tcp, 80),
        ("fd00:1::5", Protocol::Tcp, 443),
        ("fd00:2::5", Protocol::Udp, 53),
    ];
    for (dst, protocol, port) in denied {
        let (verdict, got) = egress(&mut t, &out, dst, protocol, port);
        assert_eq!(
            verdict,
            Verdict::Deny,
            "compiler: web -> {dst} {protocol:?}/{port}"
        );
        assert_eq!(got, DROP, "kernel: web -> {dst} {protocol:?}/{port}");
    }
    // Outside the denied ranges the allow-all rule holds (so the drops above
    // are the override's, not a default deny).
    for (dst, protocol, port) in [
        ("8.8.8.8", Protocol::Udp, 53),
        ("11.0.0.1", Protocol::Tcp, 443),
        ("fe00::1", Protocol::Tcp, 443),
    ] {
        let (verdict, got) = egress(&mut t, &out, dst, protocol, port);
        assert_eq!(
            verdict,
            Verdict::Allow,
            "compiler: web -> {dst} {protocol:?}/{port}"
        );
        assert_eq!(got, PASS, "kernel: web -> {dst} {protocol:?}/{port}");
    }
}

/// CVE-2026-25804 (Antrea GHSA-86x4-wp9f-wrr9): a 16-bit priority overflowed
/// with many policies, so lower-precedence rules won. Ours has no numeric
/// priorities: precedence is the action (overrideDeny, then allow, then
/// deny), and rule ids are 32-bit names, never ranks. Checked (1) through
/// the compiler with 1,500 policies, the overriding one sorting last, and
/// (2) on a rule map whose ids cross 2^16 and reach 2^32-1, where a 16-bit
/// truncation would make id 65,537 equal id 1.
#[test]
fn cve_2026_25804_precedence_does_not_depend_on_how_many_rules_or_their_ids() {
    require_root();
    let mut policies: Vec<(String, String)> = (0..1500)
        .map(|i| {
            (
                format!("p{i:04}"),
                format!(
                    "scope: {{selector: {{matchLabels: {{app: web}}}}}}
egress:
- {{action: allow, peers: [{{cidr: 10.{}.{}.0/24}}], ports: [{{protocol: TCP, port: 443}}]}}",
                    i / 250 + 1,
                    i % 250
                ),
            )
        })
        .collect();
    policies.push((
        "zz-override".into(),
        "scope: {selector: {matchLabels: {app: web}}}
enforcement: full
egress:
- {action: overrideDeny, peers: [{cidr: 10.3.0.0/16}], ports: [{protocol: TCP, port: 443}]}
- {action: deny, peers: [{cidr: 0.0.0.0/0}]}"
            .into(),
    ));
    let refs: Vec<(&str, &str)> = policies
        .iter()
        .map(|(n, y)| (n.as_str(), y.as_str()))
        .collect();
    let (mut t, out) = programmed("cve-2026-25804-compiled", &cluster(&[], &refs));
    let ids: Vec<u32> = out.rule_maps["n1"].rules.iter().map(|r| r.id).collect();
    assert!(ids.len() > 1500, "{} rules", ids.len());
    for (dst, want, code) in [
        ("10.3.5.9", Verdict::Deny, DROP),  // allowed by p0505, overridden
        ("10.2.5.9", Verdict::Allow, PASS), // allowed by p0255; the deny loses to it
        ("10.9.0.1", Verdict::Deny, DROP),  // no allow: the plain deny
    ] {
        let (verdict, got) = egress(&mut t, &out, dst, Protocol::Tcp, 443);
        assert_eq!(verdict, want, "compiler: web -> {dst}");
        assert_eq!(got, code, "kernel: web -> {dst}");
    }

    // (2) The ids themselves.
    let rule = |id: u32, action, port: u16| CompiledRule {
        id,
        policy: format!("p{id}"),
        rule: "r".into(),
        direction: Direction::Egress,
        action,
        subjects: vec![1000],
        any_peer: true,
        peers: Default::default(),
        ports: vec![PortRange {
            protocol: Protocol::Tcp,
            first: port,
            last: port,
        }],
    };
    let rule_map = NodeRuleMapSpec {
        node_kind: NodeKind::Node,
        host: LocalEndpoint {
            name: "n1".into(),
            addresses: vec!["192.168.50.1".into()],
            identity: 500,
            mode: EnforcementMode::Full,
        },
        endpoints: vec![LocalEndpoint {
            name: "shop/web".into(),
            addresses: vec![WEB4.into()],
            identity: 1000,
            mode: EnforcementMode::Full,
        }],
        rules: vec![
            rule(1, Action::Allow, 80),
            rule(65_537, Action::OverrideDeny, 80), // 1 in 16 bits
            rule(65_535, Action::Allow, 81),
            rule(u32::MAX, Action::Deny, 81),
            rule(2, Action::Deny, 82),
            rule(u32::MAX - 1, Action::OverrideDeny, 82),
            rule(65_536, Action::Allow, 83), // 0 in 16 bits
        ],
        failsafe_ports: vec![],
    };
    let desired = Desired::build(&rule_map, &[]).expect("valid rule map");
    let mut t = TestDatapath::open("cve-2026-25804-ids");
    t.dp.program(&desired).expect("programming");
    for (port, code) in [(80, DROP), (81, PASS), (82, DROP), (83, PASS), (84, DROP)] {
        t.dp.maps.conntrack.clear().expect("ct clear");
        let got = run(
            &t,
            FROM_ENDPOINT,
            &packet(ip(WEB4), ip("10.50.0.1"), Protocol::Tcp, 40000, port),
        );
        assert_eq!(got, code, "TCP/{port}");
    }
}
