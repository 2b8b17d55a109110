//! The shape of recommendations, one behaviour at a time (the ground-truth
//! history test is in tests/recommend_ground_truth.rs).

use bulkhead_api::policy::Protocol::{Tcp, Udp};
use bulkhead_api::policy::{EnforcementMode, PortSpec};
use bulkhead_api::LabelSelector;

use super::*;
use crate::testing::{day, labels, pod, record, world};
use bulkhead_policy::Verdict;

fn web() -> FlowEndpoint {
    pod(
        "prod",
        "web-0",
        &[("env", "prod"), ("app", "shop"), ("role", "web")],
        "10.0.0.2",
    )
}
fn api() -> FlowEndpoint {
    pod(
        "prod",
        "api-0",
        &[("env", "prod"), ("app", "shop"), ("role", "api")],
        "10.0.0.3",
    )
}

fn options(layer: Layer) -> RecommendOptions {
    RecommendOptions::new(layer, day(0), day(60))
}

fn policy<'a>(rec: &'a Recommendation, name: &str) -> &'a RecommendedPolicy {
    rec.policies
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no policy {name} in {:?}",
                rec.policies.iter().map(|p| &p.name).collect::<Vec<_>>()
            )
        })
}

fn tcp(port: u16) -> PortSpec {
    PortSpec {
        protocol: Tcp,
        port: Some(port),
        end_port: None,
        icmp_type: None,
    }
}

#[test]
fn role_layer_gives_exact_ports_and_label_selectors_with_evidence() {
    let mut records = Vec::new();
    for d in 0..60 {
        records.push(record(&web(), &api(), Tcp, 8080, day(d), 3));
    }
    let rec = recommend(&records, &options(Layer::Role)).expect("recommends");
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    let p = policy(&rec, "recommended-role-prod-shop-web");
    assert_eq!(p.spec.enforcement, Some(EnforcementMode::Visibility));
    assert_eq!(
        p.spec.scope.selector,
        Some(LabelSelector::from_labels(labels(&[
            ("env", "prod"),
            ("app", "shop"),
            ("role", "web")
        ])))
    );
    let rule = &p.spec.egress[0];
    assert_eq!(rule.ports, vec![tcp(8080)]);
    assert_eq!(
        rule.peers[0].selector,
        Some(LabelSelector::from_labels(labels(&[
            ("env", "prod"),
            ("app", "shop"),
            ("role", "api")
        ])))
    );
    let ev = &p.evidence["egress-1"];
    assert_eq!((ev.flows, ev.days_seen, ev.periodic), (180, 60, false));
    assert_eq!(ev.first_seen, day(0));
    assert_eq!(ev.last_seen, day(59) + SignedDuration::from_mins(1));
    // The other side gets the matching ingress rule.
    let q = policy(&rec, "recommended-role-prod-shop-api");
    assert_eq!(q.spec.ingress[0].ports, vec![tcp(8080)]);
    assert!(q.spec.egress.is_empty());
}

#[test]
fn ephemeral_ports_become_one_range() {
    let records: Vec<_> = [40001, 45000, 61000, 21]
        .iter()
        .map(|p| record(&web(), &api(), Tcp, *p, day(1), 1))
        .collect();
    let mut opts = options(Layer::Role);
    opts.periodic_share = 0.0;
    let rec = recommend(&records, &opts).expect("recommends");
    let ports = &policy(&rec, "recommended-role-prod-shop-web").spec.egress[0].ports;
    assert_eq!(
        ports,
        &vec![
            tcp(21),
            PortSpec {
                end_port: Some(65535),
                ..tcp(32768)
            }
        ]
    );
}

#[test]
fn world_traffic_is_aggregated_into_prefixes_no_longer_than_asked() {
    let records: Vec<_> = [
        "203.0.113.7",
        "203.0.113.200",
        "203.0.112.9",
        "198.51.100.1",
    ]
    .iter()
    .flat_map(|a| (0..60).map(move |d| record(&web(), &world(a), Tcp, 443, day(d), 1)))
    .collect();
    let cidrs = |len: u8| {
        let mut opts = options(Layer::Role);
        opts.max_prefix_v4 = len;
        let rec = recommend(&records, &opts).expect("recommends");
        let rule = &policy(&rec, "recommended-role-prod-shop-web").spec.egress[0];
        assert_eq!(rule.ports, vec![tcp(443)]);
        rule.peers
            .iter()
            .map(|p| p.cidr.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cidrs(24),
        ["198.51.100.0/24", "203.0.112.0/23"],
        "adjacent /24s merge"
    );
    assert_eq!(
        cidrs(32),
        [
            "198.51.100.1/32",
            "203.0.112.9/32",
            "203.0.113.7/32",
            "203.0.113.200/32"
        ]
    );
    assert_eq!(cidrs(16), ["198.51.0.0/16", "203.0.0.0/16"]);
    let mut bad = options(Layer::Role);
    bad.max_prefix_v4 = 33;
    assert_eq!(
        recommend(&records, &bad),
        Err(RecommendError::PrefixLength(33, 32))
    );
}

#[test]
fn unlabeled_peers_are_listed_not_allowed() {
    let stray = pod("prod", "debug-shell", &[], "10.0.0.9");
    let records = vec![
        record(&stray, &api(), Tcp, 8080, day(3), 2),
        record(&web(), &api(), Tcp, 8080, day(3), 1),
    ];
    let rec = recommend(&records, &options(Layer::Role)).expect("recommends");
    let api_policy = policy(&rec, "recommended-role-prod-shop-api");
    assert_eq!(api_policy.spec.ingress.len(), 1, "only web is allowed");
    assert_eq!(rec.unlabeled.len(), 1);
    let u = &rec.unlabeled[0];
    assert_eq!(u.name.as_deref(), Some("prod/debug-shell"));
    assert_eq!((u.direction, u.flows), (Direction::Ingress, 2));
    assert_eq!(u.with.get("role").map(String::as_str), Some("api"));
    assert!(rec.policies.iter().all(|p| !p.name.contains("debug")));
}

#[test]
fn env_and_app_layers_drop_ports_and_finer_labels() {
    let db = pod(
        "prod",
        "db-0",
        &[("env", "prod"), ("app", "ledger"), ("role", "db")],
        "10.0.0.4",
    );
    let records: Vec<_> = (0..60)
        .flat_map(|d| {
            [
                record(&web(), &api(), Tcp, 8080, day(d), 1),
                record(&api(), &db, Udp, 5432, day(d), 1),
            ]
        })
        .collect();
    let env = recommend(&records, &options(Layer::Env)).expect("recommends");
    assert_eq!(env.policies.len(), 1);
    let p = policy(&env, "recommended-env-prod");
    assert_eq!((p.spec.ingress.len(), p.spec.egress.len()), (1, 1));
    assert!(p.spec.egress[0].ports.is_empty(), "every port at env layer");
    assert_eq!(p.evidence["egress-1"].flows, 120);
    let app = recommend(&records, &options(Layer::App)).expect("recommends");
    let names: Vec<_> = app.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["recommended-app-prod-ledger", "recommended-app-prod-shop"]
    );
    let shop = policy(&app, "recommended-app-prod-shop");
    // shop → shop (web → api) and shop → ledger.
    assert_eq!(shop.spec.egress.len(), 2);
    assert_eq!(shop.spec.ingress.len(), 1);
}

#[test]
fn rarely_seen_rules_are_periodic_and_kept_apart() {
    let mut records: Vec<_> = (0..60)
        .map(|d| record(&web(), &api(), Tcp, 8080, day(d), 1))
        .collect();
    // Monthly: days 0, 30.
    records.push(record(&web(), &api(), Tcp, 9090, day(0), 1));
    records.push(record(&web(), &api(), Tcp, 9090, day(30), 1));
    let rec = recommend(&records, &options(Layer::Role)).expect("recommends");
    let p = policy(&rec, "recommended-role-prod-shop-web");
    let names: Vec<_> = p
        .spec
        .egress
        .iter()
        .map(|r| r.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["egress-1", "egress-2-periodic"]);
    assert_eq!(p.spec.egress[1].ports, vec![tcp(9090)]);
    let ev = &p.evidence["egress-2-periodic"];
    assert!(ev.periodic);
    assert_eq!(ev.days_seen, 2);
    assert!(
        ev.annotation().ends_with("daysSeen=2 periodic"),
        "{}",
        ev.annotation()
    );
}

#[test]
fn a_short_window_or_history_draws_a_warning() {
    let records = vec![record(&web(), &api(), Tcp, 8080, day(50), 1)];
    let short = RecommendOptions::new(Layer::Role, day(40), day(60));
    let rec = recommend(&records, &short).expect("recommends");
    assert!(
        rec.warnings[0].contains("20.0 days, shorter than the minimum of 35"),
        "{:?}",
        rec.warnings
    );
    let rec = recommend(&records, &options(Layer::Role)).expect("recommends");
    assert!(
        rec.warnings[0].contains("covers only 10.0 days"),
        "{:?}",
        rec.warnings
    );
}

#[test]
fn the_scope_limits_which_endpoints_get_policies() {
    let dev = pod(
        "dev",
        "web-0",
        &[("env", "dev"), ("app", "shop"), ("role", "web")],
        "10.1.0.2",
    );
    let records = vec![
        record(&web(), &api(), Tcp, 8080, day(1), 1),
        record(&dev, &api(), Tcp, 8080, day(1), 1),
    ];
    let mut opts = options(Layer::Role);
    opts.scope = Some(EndpointMatch::parse("env=dev").expect("selector"));
    let rec = recommend(&records, &opts).expect("recommends");
    let names: Vec<_> = rec.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["recommended-role-dev-shop-web"]);
    opts.scope = Some(EndpointMatch::parse("dev/web-0").expect("pod"));
    assert!(matches!(
        recommend(&records, &opts),
        Err(RecommendError::Scope(_))
    ));
}

fn db() -> FlowEndpoint {
    pod(
        "prod",
        "db-0",
        &[("env", "prod"), ("app", "shop"), ("role", "db")],
        "10.0.0.4",
    )
}

/// `r` as if the client had asked for Service `ns/name` at 10.96.0.10:80.
fn via(mut r: FlowRecord, ns: &str, name: &str) -> FlowRecord {
    r.service = Some(bulkhead_api::flow::ServiceAddress {
        address: crate::testing::ip("10.96.0.10"),
        port: 80,
        namespace: Some(ns.into()),
        name: Some(name.into()),
        port_name: None,
    });
    r
}

/// 60 days of web → Service prod/api (answered by api-0 on 8080), web → db
/// direct on 5432, and web → Service prod/legacy answered by an unlabeled pod.
fn service_history() -> Vec<FlowRecord> {
    let legacy = pod("prod", "legacy-0", &[], "10.0.0.9");
    (0..60)
        .flat_map(|d| {
            [
                via(record(&web(), &api(), Tcp, 8080, day(d), 3), "prod", "api"),
                record(&web(), &db(), Tcp, 5432, day(d), 1),
                via(
                    record(&web(), &legacy, Tcp, 9000, day(d), 1),
                    "prod",
                    "legacy",
                ),
            ]
        })
        .collect()
}

fn peers_of(rule: &bulkhead_api::policy::Rule) -> Vec<String> {
    rule.peers
        .iter()
        .map(|p| match (&p.service, &p.selector) {
            (Some(s), _) => format!("service {s}"),
            (None, Some(sel)) => format!("selector {:?}", sel.match_labels),
            _ => format!("{p:?}"),
        })
        .collect()
}

#[test]
fn service_peers_name_the_service_the_client_asked_for_and_only_on_egress() {
    let records = service_history();
    let mut o = options(Layer::Role);
    o.service_peers = true;
    let rec = recommend(&records, &o).expect("recommends");
    let web_policy = policy(&rec, "recommended-role-prod-shop-web");
    let egress: Vec<(Vec<String>, Vec<PortSpec>)> = web_policy
        .spec
        .egress
        .iter()
        .map(|r| (peers_of(r), r.ports.clone()))
        .collect();
    let db_selector = format!(
        "selector {:?}",
        labels(&[("env", "prod"), ("app", "shop"), ("role", "db")])
    );
    assert_eq!(
        egress,
        vec![
            (vec![db_selector], vec![tcp(5432)]),
            (vec!["service prod/api".to_string()], vec![tcp(8080)]),
        ],
        "the Service for what went through it, labels for what went direct"
    );
    // The backend's side sees a client, not a Service.
    let api_policy = policy(&rec, "recommended-role-prod-shop-api");
    assert_eq!(
        peers_of(&api_policy.spec.ingress[0]),
        vec![format!(
            "selector {:?}",
            labels(&[("env", "prod"), ("app", "shop"), ("role", "web")])
        )]
    );
    // A Service whose backend has no labels is not allowed by name either.
    assert_eq!(
        rec.unlabeled
            .iter()
            .map(|u| u.name.as_deref())
            .collect::<Vec<_>>(),
        vec![Some("prod/legacy-0")]
    );

    let plain = recommend(&records, &options(Layer::Role)).expect("recommends");
    let plain_web = policy(&plain, "recommended-role-prod-shop-web");
    assert!(
        plain_web
            .spec
            .egress
            .iter()
            .all(|r| r.peers.iter().all(|p| p.service.is_none())),
        "service peers only when asked for"
    );
}

#[test]
fn recommended_service_peers_replay_as_allowed_and_follow_the_recorded_backends() {
    use crate::replay::{HistoryCluster, PolicySet};
    use bulkhead_policy::CompileOptions;
    let mut records = service_history();
    let mut o = options(Layer::Role);
    o.service_peers = true;
    o.enforcement = EnforcementMode::Full;
    let rec = recommend(&records, &o).expect("recommends");
    let set = PolicySet {
        policies: rec
            .policies
            .iter()
            .map(|p| (p.name.clone(), p.spec.clone()))
            .collect(),
        ..PolicySet::default()
    };
    // A second api pod that answered for the Service once, and a cache pod
    // that web reached directly on the same port but is no backend.
    let api_1 = pod(
        "prod",
        "api-1",
        &[("env", "prod"), ("app", "shop"), ("role", "api-v2")],
        "10.0.0.5",
    );
    let cache = pod(
        "prod",
        "cache-0",
        &[("env", "prod"), ("app", "shop"), ("role", "cache")],
        "10.0.0.6",
    );
    let extra_backend = via(record(&web(), &api_1, Tcp, 8080, day(30), 1), "prod", "api");
    let not_a_backend = record(&web(), &cache, Tcp, 8080, day(30), 1);
    records.push(extra_backend.clone());
    records.push(not_a_backend.clone());
    let cluster = HistoryCluster::new(&bulkhead_policy::Snapshot::default(), &records);
    let out = cluster.compile(&set, &CompileOptions::default());
    let replay = cluster.judge(&out);
    for r in service_history()
        .iter()
        .filter(|r| r.destination.name.as_deref() != Some("prod/legacy-0"))
    {
        assert_eq!(
            replay.verdict(r),
            Verdict::Allow,
            "{:?} -> {:?}",
            r.source.name,
            r.destination.name
        );
        assert_eq!(replay.simulated(r), replay.verdict(r));
    }
    // The service peer is the Service's backends as history saw them: api-1
    // answered for it once, so web's egress allows it (api-1 has no policy
    // of its own); cache answered on the same port but for no Service.
    assert_eq!(replay.verdict(&extra_backend), Verdict::Allow);
    assert_eq!(replay.simulated(&extra_backend), Verdict::Allow);
    assert_eq!(replay.verdict(&not_a_backend), Verdict::Deny);
    assert_eq!(replay.simulated(&not_a_backend), Verdict::Deny);
}
