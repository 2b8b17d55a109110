//! Table-driven tests of the verdict semantics, as a user reads them in
//! docs/policy-semantics.md.

mod support;

use bulkhead_api::identity::{FIRST_ALLOCATED, UNLABELED};
use bulkhead_api::policy::EnforcementMode;
use bulkhead_api::policy::Protocol::{self, Icmp, Icmpv6, Sctp, Tcp, Udp};
use bulkhead_policy::snapshot::{Namespace, Pod, PodKey};
use bulkhead_policy::Verdict::{self, Allow, Deny};
use bulkhead_policy::{compile, Change, Compiler, EndpointRef, IdentityAllocation};
use support::*;

/// Two namespaces over two nodes, dual-stack pods, app/env labels.
fn base() -> World {
    World::new()
        .ns("prod", &[("env", "prod")])
        .ns("dev", &[("env", "dev")])
        .node("n1", "192.168.0.1,fd00::1", &[])
        .node("n2", "192.168.0.2,fd00::2", &[])
        .pod("prod", "web", "n1", "10.0.1.1,fd10::1:1", &[("app", "web")])
        .pod("prod", "db", "n2", "10.0.2.1,fd10::2:1", &[("app", "db")])
        .pod(
            "prod",
            "cache",
            "n1",
            "10.0.1.2,fd10::1:2",
            &[("app", "cache")],
        )
        .pod("dev", "web", "n2", "10.1.2.1,fd11::2:1", &[("app", "web")])
        .ns("sandbox", &[])
        .pod("sandbox", "bare", "n2", "10.1.2.2", &[])
        .mapping("app-env", APP_ENV_MAPPING)
}

fn db_ingress(mode: &str, rules: &str) -> String {
    format!("scope: {{selector: {{matchLabels: {{app: db, env: prod}}}}}}\n{mode}ingress:\n{rules}")
}

const ALLOW_WEB_80: &str = "- {action: allow, peers: [{selector: {matchLabels: {app: web}}}], ports: [{protocol: TCP, port: 80}]}\n";
const DENY_WEB_80: &str = "- {action: deny, peers: [{selector: {matchLabels: {app: web}}}], ports: [{protocol: TCP, port: 80}]}\n";
const OVERRIDE_DEV: &str =
    "- {action: overrideDeny, peers: [{selector: {matchLabels: {env: dev}}}]}\n";
const DENY_ALL: &str = "- {action: deny}\n";

#[test]
fn precedence_and_modes() {
    // (mode line, rules, prod/web→db:80, dev/web→db:80, prod/cache→db:80)
    let cases: Vec<(&str, String, [Verdict; 3])> = vec![
        (
            "enforcement: full\n",
            ALLOW_WEB_80.into(),
            [Allow, Allow, Deny],
        ),
        (
            "enforcement: full\n",
            DENY_WEB_80.into(),
            [Deny, Deny, Deny],
        ),
        (
            "enforcement: full\n",
            format!("{ALLOW_WEB_80}{DENY_WEB_80}"),
            [Allow, Allow, Deny],
        ),
        (
            "enforcement: full\n",
            format!("{ALLOW_WEB_80}{OVERRIDE_DEV}"),
            [Allow, Deny, Deny],
        ),
        (
            "enforcement: full\n",
            format!("{ALLOW_WEB_80}{DENY_ALL}"),
            [Allow, Allow, Deny],
        ),
        (
            "enforcement: selective\n",
            DENY_WEB_80.into(),
            [Deny, Deny, Allow],
        ),
        (
            "enforcement: selective\n",
            format!("{ALLOW_WEB_80}{DENY_ALL}"),
            [Allow, Allow, Deny],
        ),
        (
            "enforcement: selective\n",
            format!("{ALLOW_WEB_80}{OVERRIDE_DEV}"),
            [Allow, Deny, Allow],
        ),
        (
            "enforcement: visibility\n",
            format!("{DENY_ALL}{OVERRIDE_DEV}"),
            [Allow, Allow, Allow],
        ),
        // No enforcement field: the cluster default, visibility.
        ("", DENY_ALL.into(), [Allow, Allow, Allow]),
    ];
    for (mode, rules, expected) in cases {
        let out = base().policy("db", &db_ingress(mode, &rules)).compile();
        let got = [
            verdict(&out, "prod/web", "prod/db", Tcp, 80),
            verdict(&out, "dev/web", "prod/db", Tcp, 80),
            verdict(&out, "prod/cache", "prod/db", Tcp, 80),
        ];
        assert_eq!(got, expected, "mode {mode:?} rules:\n{rules}");
    }
}

#[test]
fn visibility_reports_would_be_denies_and_the_deciding_rule() {
    let out = base()
        .policy("db", &db_ingress("enforcement: visibility\n", DENY_WEB_80))
        .compile();
    let q = bulkhead_policy::FlowQuery {
        from: end("prod/web"),
        to: end("prod/db"),
        protocol: Tcp,
        port: 80,
    };
    let v = bulkhead_policy::simulate(&out, &q).expect("simulate");
    let ingress = v.ingress.expect("db is managed");
    assert_eq!(v.verdict, Allow);
    assert_eq!(ingress.would_be, Deny);
    assert_eq!(ingress.mode, EnforcementMode::Visibility);
    let rule = ingress.rule.expect("a rule decided");
    assert_eq!(
        (rule.policy.as_str(), rule.rule.as_str()),
        ("db", "ingress[0]")
    );
}

#[test]
fn strictest_mode_wins() {
    let out = base()
        .policy(
            "vis",
            "scope: {selector: {matchLabels: {env: prod}}}\nenforcement: visibility\n",
        )
        .policy(
            "full",
            "scope: {selector: {matchLabels: {app: db}}}\nenforcement: full\n",
        )
        .policy(
            "sel",
            "scope: {selector: {matchLabels: {app: web}}}\nenforcement: selective\n",
        )
        .compile();
    let mode = |ns: &str, pod: &str| out.endpoints[&EndpointRef::Pod(PodKey::new(ns, pod))].mode;
    assert_eq!(mode("prod", "db"), EnforcementMode::Full);
    assert_eq!(mode("prod", "web"), EnforcementMode::Selective);
    assert_eq!(mode("prod", "cache"), EnforcementMode::Visibility);
    assert_eq!(mode("sandbox", "bare"), EnforcementMode::Visibility);
}

/// A promotion's mode (the operator's `effective_modes`) is what is
/// compiled; the spec stays as written, and taking it back restores it.
#[test]
fn the_effective_mode_of_a_promotion_is_what_gets_enforced() {
    let spec = db_ingress("enforcement: visibility\n", ALLOW_WEB_80);
    let world = base().policy("db", &spec);
    let mut compiler = Compiler::new(Default::default(), IdentityAllocation::default());
    compiler.load(world.snap.clone());
    let db = EndpointRef::Pod(PodKey::new("prod", "db"));
    let mode = |c: &Compiler| c.output().endpoints[&db].mode;
    let cache_to_db = |c: &Compiler| verdict(c.output(), "prod/cache", "prod/db", Tcp, 80);
    assert_eq!(mode(&compiler), EnforcementMode::Visibility);
    assert_eq!(cache_to_db(&compiler), Allow, "visibility drops nothing");
    compiler.apply(Change::SetEffectiveMode(
        "db".into(),
        Some(EnforcementMode::Full),
    ));
    assert_eq!(mode(&compiler), EnforcementMode::Full);
    assert_eq!(
        cache_to_db(&compiler),
        Deny,
        "promoted to full: the default denies"
    );
    assert_eq!(
        verdict(compiler.output(), "prod/web", "prod/db", Tcp, 80),
        Allow
    );
    let written = &compiler.snapshot().policies["db"];
    assert_eq!(
        written.enforcement,
        Some(EnforcementMode::Visibility),
        "spec untouched"
    );
    // Re-applying the same spec (GitOps) keeps the promotion.
    compiler.apply(Change::UpsertPolicy("db".into(), written.clone()));
    assert_eq!(mode(&compiler), EnforcementMode::Full);
    compiler.apply(Change::SetEffectiveMode("db".into(), None));
    assert_eq!(mode(&compiler), EnforcementMode::Visibility);
    assert_eq!(cache_to_db(&compiler), Allow);
}

#[test]
fn both_managed_sides_must_allow() {
    let allow_in = "scope: {selector: {matchLabels: {app: db}}}\nenforcement: full\ningress:\n- {action: allow}\n";
    let deny_out = "scope: {selector: {matchLabels: {app: web, env: prod}}}\nenforcement: full\negress:\n- {action: allow, peers: [{selector: {matchLabels: {app: cache}}}]}\n";
    let out = base()
        .policy("db", allow_in)
        .policy("web", deny_out)
        .compile();
    assert_eq!(
        verdict(&out, "prod/web", "prod/db", Tcp, 80),
        Deny,
        "web's egress denies"
    );
    assert_eq!(
        verdict(&out, "dev/web", "prod/db", Tcp, 80),
        Allow,
        "dev/web is visibility"
    );
    assert_eq!(verdict(&out, "prod/web", "prod/cache", Tcp, 80), Allow);
    let v = bulkhead_policy::simulate(
        &out,
        &bulkhead_policy::FlowQuery {
            from: end("prod/web"),
            to: end("prod/db"),
            protocol: Tcp,
            port: 80,
        },
    )
    .expect("simulate");
    assert_eq!(v.egress.as_ref().map(|s| s.verdict), Some(Deny));
    assert_eq!(v.ingress.as_ref().map(|s| s.verdict), Some(Allow));
}

#[test]
fn port_ranges_and_protocols() {
    let policy = "scope: {selector: {matchLabels: {app: db}}}\nenforcement: full\ningress:\n- action: allow\n  ports:\n  - {protocol: TCP, port: 8000, endPort: 8080}\n  - {protocol: UDP, port: 53}\n  - {protocol: SCTP}\n  - {protocol: ICMP, icmpType: 8}\n  - {protocol: ICMPv6}\n";
    let out = base().policy("db", policy).compile();
    let cases: &[(Protocol, u16, Verdict)] = &[
        (Tcp, 7999, Deny),
        (Tcp, 8000, Allow),
        (Tcp, 8042, Allow),
        (Tcp, 8080, Allow),
        (Tcp, 8081, Deny),
        (Udp, 53, Allow),
        (Udp, 8000, Deny),
        (Tcp, 53, Deny),
        (Sctp, 1, Allow),
        (Sctp, 65535, Allow),
        (Icmp, 8, Allow),
        (Icmp, 13, Deny),
    ];
    for (protocol, port, expected) in cases {
        assert_eq!(
            verdict(&out, "prod/web", "prod/db", *protocol, *port),
            *expected,
            "{protocol:?}/{port}"
        );
    }
    // ICMPv6 needs an IPv6 pair: dev/bare has no IPv6 address, so use addresses.
    assert_eq!(verdict(&out, "fd10::1:1", "fd10::2:1", Icmpv6, 128), Allow);
}

#[test]
fn cidr_peers_with_except_ipv4_and_ipv6() {
    let policy = r#"
scope: {selector: {matchLabels: {app: web, env: prod}}}
enforcement: full
egress:
- action: allow
  peers:
  - {cidr: 203.0.113.0/24, except: [203.0.113.0/28]}
  - {cidr: "2001:db8::/32", except: ["2001:db8:1::/48"]}
  - {cidr: 10.0.0.0/8}
"#;
    let out = base().policy("web", policy).compile();
    let cases = [
        ("203.0.113.5", Deny),
        ("203.0.113.20", Allow),
        ("198.51.100.1", Deny),
        ("2001:db8:2::1", Allow),
        ("2001:db8:1::1", Deny),
        // 10.0.0.0/8 covers pods' addresses, but CIDR peers only name
        // addresses that belong to no endpoint.
        ("10.0.2.1", Deny),
        ("10.200.0.1", Allow),
    ];
    for (to, expected) in cases {
        let from = if to.contains(':') {
            "fd10::1:1"
        } else {
            "prod/web"
        };
        assert_eq!(verdict(&out, from, to, Tcp, 443), expected, "to {to}");
    }
}

#[test]
fn reserved_peers() {
    let policy = r#"
scope: {selector: {matchLabels: {app: web, env: prod}}}
enforcement: full
egress:
- {action: allow, peers: [{reserved: world}], ports: [{protocol: TCP, port: 443}]}
- {action: allow, peers: [{reserved: host}], ports: [{protocol: TCP, port: 10250}]}
- {action: allow, peers: [{reserved: remoteNode}], ports: [{protocol: TCP, port: 9100}]}
- {action: allow, peers: [{reserved: unlabeled}], ports: [{protocol: TCP, port: 8080}]}
"#;
    let out = base().policy("web", policy).compile();
    let cases = [
        ("203.0.113.9", 443, Allow),
        ("prod/db", 443, Deny),
        ("192.168.0.1", 10250, Allow), // its own node
        ("192.168.0.2", 10250, Deny),  // another node is not `host`
        ("192.168.0.2", 9100, Allow),
        ("192.168.0.1", 9100, Deny),
        ("sandbox/bare", 8080, Allow),
        ("dev/web", 8080, Deny),
    ];
    for (to, port, expected) in cases {
        assert_eq!(
            verdict(&out, "prod/web", to, Tcp, port),
            expected,
            "to {to}:{port}"
        );
    }
    let bare = &out.endpoints[&EndpointRef::Pod(PodKey::new("sandbox", "bare"))];
    assert_eq!(bare.identity, UNLABELED);
    assert!(out
        .unlabeled
        .contains(&EndpointRef::Pod(PodKey::new("sandbox", "bare"))));
}

#[test]
fn failsafe_ports_keep_hosts_reachable() {
    let lockdown = "scope: {clusterWide: true}\nenforcement: full\n";
    let out = base().policy("lockdown", lockdown).compile();
    assert_eq!(verdict(&out, "203.0.113.9", "n1", Tcp, 22), Allow);
    assert_eq!(verdict(&out, "203.0.113.9", "n1", Tcp, 6443), Allow);
    assert_eq!(verdict(&out, "203.0.113.9", "n1", Tcp, 80), Deny);
    assert_eq!(
        verdict(&out, "203.0.113.9", "prod/web", Tcp, 22),
        Deny,
        "pods have no failsafe"
    );
}

#[test]
fn label_precedence_and_conflicts() {
    let low = "priority: 10\nrules:\n- {match: {pods: {podSelector: {matchLabels: {app: web}}}}, labels: {tier: front, zone: a}}\n";
    let high = "priority: 20\nrules:\n- {match: {pods: {namespaceSelector: {matchLabels: {env: prod}}}}, labels: {tier: edge}}\n";
    let rival = "priority: 20\nrules:\n- {match: {pods: {podSelector: {matchLabels: {app: web}}}}, labels: {tier: web}}\n";
    let agree = "priority: 20\nrules:\n- {match: {pods: {podSelector: {matchLabels: {app: web}}}}, labels: {tier: edge}}\n";
    let labels_of = |w: &World, ns: &str, pod: &str| {
        w.compile().endpoints[&EndpointRef::Pod(PodKey::new(ns, pod))]
            .labels
            .clone()
    };

    let w = base().mapping("low", low).mapping("high", high);
    let l = labels_of(&w, "prod", "web");
    assert_eq!(
        l.get("tier").map(String::as_str),
        Some("edge"),
        "higher priority wins"
    );
    assert_eq!(
        l.get("zone").map(String::as_str),
        Some("a"),
        "keys are decided one by one"
    );
    assert_eq!(
        labels_of(&w, "dev", "web").get("tier").map(String::as_str),
        Some("front")
    );

    let w = base()
        .mapping("low", low)
        .mapping("high", high)
        .mapping("rival", rival);
    let out = w.compile();
    let web = &out.endpoints[&EndpointRef::Pod(PodKey::new("prod", "web"))];
    assert_eq!(
        web.labels.get("tier"),
        None,
        "a conflict leaves the key unset"
    );
    assert_eq!(web.labels.get("zone").map(String::as_str), Some("a"));
    let conflict = out
        .conflicts
        .iter()
        .find(|c| c.key == "tier")
        .expect("conflict reported");
    assert_eq!(conflict.priority, 20);
    assert_eq!(conflict.sources.len(), 2);
    assert_eq!(out.mappings["rival"].conflicts.len(), 1);
    assert_eq!(out.mappings["high"].conflicts.len(), 1);
    assert!(out.mappings["low"].conflicts.is_empty());

    let w = base().mapping("high", high).mapping("agree", agree);
    assert!(
        w.compile().conflicts.is_empty(),
        "equal values are no conflict"
    );
}

#[test]
fn mappings_label_nodes_external_nodes_and_cidrs() {
    let m = r#"
priority: 5
rules:
- {match: {nodes: {matchLabels: {pool: infra}}}, labels: {role: infra-node}}
- {match: {hostnames: ["db-*"]}, labels: {role: database, env: prod}}
- {match: {cidrs: [198.51.100.0/24]}, labels: {role: mainframe}}
- match: {pods: {nodeSelector: {matchLabels: {zone: z1}}}}
  copyLabels: [{key: loc, fromLabel: zone, source: node}]
"#;
    let w = base()
        .node("n3", "192.168.0.3", &[("pool", "infra"), ("zone", "z1")])
        .pod("prod", "edge", "n3", "10.0.3.1", &[("app", "edge")])
        .external("db-01", "172.16.9.1", &[])
        .mapping("assets", m)
        .policy(
            "web",
            "scope: {selector: {matchLabels: {app: web, env: prod}}}\nenforcement: full\negress:\n- {action: allow, peers: [{selector: {matchLabels: {role: mainframe}}}, {selector: {matchLabels: {role: database}}}]}\n",
        );
    let out = w.compile();
    let labels = |r: EndpointRef| out.endpoints[&r].labels.clone();
    assert_eq!(
        labels(EndpointRef::Node("n3".into()))
            .get("role")
            .map(String::as_str),
        Some("infra-node")
    );
    assert_eq!(
        labels(EndpointRef::ExternalNode("db-01".into()))
            .get("role")
            .map(String::as_str),
        Some("database")
    );
    assert_eq!(
        labels(EndpointRef::Pod(PodKey::new("prod", "edge")))
            .get("loc")
            .map(String::as_str),
        Some("z1")
    );
    assert_eq!(verdict(&out, "prod/web", "198.51.100.7", Tcp, 23), Allow);
    assert_eq!(verdict(&out, "prod/web", "198.51.101.7", Tcp, 23), Deny);
    assert_eq!(verdict(&out, "prod/web", "db-01", Tcp, 5432), Allow);
    assert!(
        out.rule_maps.contains_key("db-01"),
        "external nodes get a rule map"
    );
}

#[test]
fn identities_are_stable_across_recompiles_and_restarts() {
    let w = base();
    let first = w.compile();
    // Same input, fresh compile: same numbers.
    assert_eq!(w.compile(), first);
    // New label sets get new numbers; old ones keep theirs.
    let grown = base().pod("dev", "api", "n1", "10.1.1.9", &[("app", "api")]);
    let second = compile(&grown.snap, &grown.options, &first.allocation);
    for (id, labels) in &first.identities {
        assert_eq!(
            second.identities.get(id),
            Some(labels),
            "identity {id} moved"
        );
    }
    assert!(second.identities.len() > first.identities.len());
    // A restart: rebuild the allocation from the published shards only.
    let restored = IdentityAllocation::from_identity_maps(&second.identity_maps);
    let third = compile(&grown.snap, &grown.options, &restored);
    assert_eq!(third.identities, second.identities);
    assert_eq!(third.rule_maps, second.rule_maps);
    assert!(first.identities.keys().all(|id| *id >= FIRST_ALLOCATED));
}

#[test]
fn policy_facts_for_status() {
    let out = base()
        .policy("db", &db_ingress("enforcement: full\n", ALLOW_WEB_80))
        .policy("ghost", "scope: {selector: {matchLabels: {app: nothing}}}\ningress:\n- {action: allow, peers: [{selector: {matchLabels: {app: nobody}}}]}\n")
        .policy("broken", "scope: {}\ningress: []\n")
        .compile();
    let db = &out.policies["db"];
    assert_eq!(db.matched_endpoints, 1);
    assert_eq!(
        db.nodes.iter().map(String::as_str).collect::<Vec<_>>(),
        ["n2"]
    );
    assert!(db.warnings.is_empty(), "{:?}", db.warnings);
    let ghost = &out.policies["ghost"];
    assert_eq!(ghost.matched_endpoints, 0);
    assert!(ghost
        .warnings
        .iter()
        .any(|w| w.contains("scope selects no endpoint")));
    assert!(ghost
        .warnings
        .iter()
        .any(|w| w.contains("ingress[0] peers[0] selects nothing")));
    let broken = &out.policies["broken"];
    assert!(
        broken.warnings.iter().any(|w| w.contains("clusterWide")),
        "{:?}",
        broken.warnings
    );
    assert_eq!(out.mappings["app-env"].endpoints_labeled, 4);
}

/// Every kind of change, applied one at a time, equals a whole compile of the
/// same snapshot from the same previous allocation.
#[test]
fn incremental_equals_full() {
    let options = bulkhead_policy::CompileOptions::default();
    let start = base()
        .policy("db", &db_ingress("enforcement: full\n", &format!("{ALLOW_WEB_80}{OVERRIDE_DEV}")))
        .policy("wall", "scope: {selector: {matchLabels: {env: dev}}}\nenforcement: selective\negress:\n- {action: deny, peers: [{cidr: 203.0.113.0/24}]}\n");
    let mut compiler = Compiler::new(options.clone(), IdentityAllocation::default());
    compiler.load(start.snap.clone());
    let pod = |node: &str, addr: &str, l: &[(&str, &str)]| Pod {
        labels: labels(l),
        node: Some(node.into()),
        addresses: addrs(addr),
        host_network: false,
        ..Pod::default()
    };
    let policy = |yaml: &str| serde_yaml::from_str(yaml).expect("policy");
    let mapping = |yaml: &str| serde_yaml::from_str(yaml).expect("mapping");
    let changes = vec![
        Change::UpsertPod(PodKey::new("prod", "web2"), pod("n2", "10.0.2.9", &[("app", "web")])),
        Change::UpsertPod(PodKey::new("prod", "web"), pod("n1", "10.0.1.1", &[("app", "api")])),
        Change::UpsertPod(PodKey::new("prod", "web"), pod("n2", "10.0.2.7", &[("app", "web")])),
        Change::UpsertPod(PodKey::new("dev", "new"), pod("n1", "10.1.1.1", &[("app", "brand-new")])),
        Change::DeletePod(PodKey::new("dev", "new")),
        Change::UpsertNamespace("dev".into(), Namespace { labels: labels(&[("env", "staging")]) }),
        Change::UpsertPolicy("egress".into(), policy("scope: {selector: {matchLabels: {app: cache}}}\nenforcement: full\negress:\n- {action: allow, peers: [{cidr: 198.51.100.0/24, except: [198.51.100.128/25]}]}\n")),
        Change::UpsertPolicy("db".into(), policy("scope: {selector: {matchLabels: {app: db}}}\nenforcement: selective\ningress:\n- {action: deny, peers: [{reserved: world}]}\n")),
        Change::UpsertMapping("extra".into(), mapping("priority: 50\nrules:\n- {match: {cidrs: [198.51.100.0/25]}, labels: {role: partner}}\n- {match: {pods: {podSelector: {matchLabels: {app: cache}}}}, labels: {app: web}}\n")),
        Change::SetEffectiveMode("db".into(), Some(EnforcementMode::Full)),
        Change::DeletePolicy("wall".into()),
        Change::UpsertNode("n2".into(), bulkhead_policy::snapshot::Node { labels: labels(&[("zone", "b")]), addresses: addrs("192.168.0.2") }),
        Change::DeleteMapping("extra".into()),
        Change::DeleteNode("n2".into()),
        Change::DeleteNamespace("dev".into()),
        Change::DeletePolicy("egress".into()),
        Change::SetEffectiveMode("db".into(), None),
    ];
    for (i, change) in changes.into_iter().enumerate() {
        let before = compiler.output().allocation.clone();
        let label = format!("{change:?}");
        compiler.apply(change);
        let full = compile(compiler.snapshot(), &options, &before);
        let incr = compiler.output();
        assert_eq!(
            incr.endpoints, full.endpoints,
            "step {i} {label}: endpoints"
        );
        assert_eq!(
            incr.identities, full.identities,
            "step {i} {label}: identities"
        );
        assert_eq!(
            incr.rule_maps, full.rule_maps,
            "step {i} {label}: rule maps"
        );
        assert_eq!(
            incr.identity_maps, full.identity_maps,
            "step {i} {label}: shards"
        );
        assert_eq!(
            incr.policies, full.policies,
            "step {i} {label}: policy facts"
        );
        assert_eq!(*incr, full, "step {i} {label}");
    }
}

/// A range a policy names inside a labeled range inherits its labels, so
/// naming it elsewhere cannot take away what the labels allowed.
#[test]
fn narrower_ranges_inherit_labels_of_the_labeled_range() {
    let assets = "priority: 5\nrules:\n- {match: {cidrs: [198.51.100.0/24]}, labels: {role: mainframe}}\n- {match: {cidrs: [198.51.100.0/26]}, labels: {role: batch}}\n";
    let web = "scope: {selector: {matchLabels: {app: web, env: prod}}}\nenforcement: full\negress:\n- {action: allow, peers: [{selector: {matchLabels: {role: mainframe}}}]}\n";
    let other = "scope: {selector: {matchLabels: {app: db}}}\negress:\n- {action: allow, peers: [{cidr: 198.51.100.128/25}]}\n";
    let out = base()
        .mapping("assets", assets)
        .policy("web", web)
        .policy("other", other)
        .compile();
    assert_eq!(
        verdict(&out, "prod/web", "198.51.100.200", Tcp, 23),
        Allow,
        "inside the /25 named by another policy"
    );
    assert_eq!(verdict(&out, "prod/web", "198.51.100.70", Tcp, 23), Allow);
    assert_eq!(
        verdict(&out, "prod/web", "198.51.100.10", Tcp, 23),
        Deny,
        "the narrowest labeled range wins: batch"
    );
    assert!(
        out.conflicts.is_empty(),
        "nested ranges are no conflict: {:?}",
        out.conflicts
    );
}
