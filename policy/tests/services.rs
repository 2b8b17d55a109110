//! `service` peers: a rule naming a Service means the identities of its
//! backends, as its EndpointSlices list them, and follows them as they move.

mod support;

use bulkhead_api::policy::Protocol::Tcp;
use bulkhead_policy::service::{Backend, EndpointSlice, EndpointSliceKey, ServiceRef};
use bulkhead_policy::snapshot::{Pod, PodKey};
use bulkhead_policy::Verdict::{Allow, Deny};
use bulkhead_policy::{compile, Change, CompileOptions, Compiler, IdentityAllocation};
use support::*;

/// web (full) may send to the Service prod/db on its backends' port 5432.
const WEB_TO_DB: &str = "scope: {selector: {matchLabels: {app: web}}}\nenforcement: full\negress:\n- {name: to-db, action: allow, peers: [{service: {namespace: prod, name: db}}], ports: [{protocol: TCP, port: 5432}]}\n";

fn base() -> World {
    World::new()
        .ns("prod", &[("env", "prod")])
        .node("n1", "192.168.0.1", &[])
        .node("n2", "192.168.0.2", &[])
        .pod("prod", "web", "n1", "10.0.1.1", &[("app", "web")])
        .pod("prod", "db-1", "n1", "10.0.1.2", &[("app", "db"), ("tier", "a")])
        .pod("prod", "db-2", "n2", "10.0.2.2", &[("app", "db"), ("tier", "b")])
        .pod("prod", "cache", "n2", "10.0.2.3", &[("app", "cache")])
        .mapping("app-env", APP_ENV_MAPPING)
        .mapping("tier", "priority: 20\nrules:\n- match: {pods: {}}\n  copyLabels: [{key: tier, fromLabel: tier}]\n- {match: {cidrs: [203.0.113.0/24]}, labels: {role: saas}}\n")
        .policy("web", WEB_TO_DB)
}

fn service(ns: &str, name: &str) -> ServiceRef {
    ServiceRef {
        namespace: ns.into(),
        name: name.into(),
    }
}

/// A slice of Service `prod/<svc>` over pods (`name=address`) and bare addresses.
fn slice(svc: &str, pods: &[(&str, &str)], bare: &[&str]) -> EndpointSlice {
    let pods = pods.iter().map(|(name, address)| Backend {
        addresses: addrs(address),
        pod: Some(PodKey::new("prod", *name)),
    });
    let bare = bare.iter().map(|address| Backend {
        addresses: addrs(address),
        pod: None,
    });
    EndpointSlice {
        service: Some(service("prod", svc)),
        endpoints: pods.chain(bare).collect(),
    }
}

fn with_slice(mut w: World, name: &str, s: EndpointSlice) -> World {
    w.snap
        .endpoint_slices
        .insert(EndpointSliceKey::new("prod", name), s);
    w
}

#[test]
fn a_service_peer_names_its_backends_and_nothing_else() {
    let w = with_slice(base(), "db-abc", slice("db", &[("db-1", "10.0.1.2")], &[]));
    let w = with_slice(w, "db-def", slice("db", &[("db-2", "10.0.2.2")], &[]));
    let out = w.compile();
    // (destination, port, verdict of web's egress)
    let table = [
        ("prod/db-1", 5432, Allow),
        ("prod/db-2", 5432, Allow),
        ("prod/db-1", 80, Deny),
        ("prod/cache", 5432, Deny),
        ("203.0.113.5", 5432, Deny),
    ];
    for (to, port, want) in table {
        assert_eq!(
            verdict(&out, "prod/web", to, Tcp, port),
            want,
            "web -> {to}:{port}"
        );
    }
    assert!(
        out.policies["web"].warnings.is_empty(),
        "{:?}",
        out.policies["web"].warnings
    );
}

#[test]
fn the_peer_selects_identities_so_a_twin_of_a_backend_is_named_too() {
    // db-3 has db-1's labels (so its identity) but is in no slice.
    let w = base().pod(
        "prod",
        "db-3",
        "n2",
        "10.0.2.4",
        &[("app", "db"), ("tier", "a")],
    );
    let out = with_slice(w, "db-abc", slice("db", &[("db-1", "10.0.1.2")], &[])).compile();
    assert_eq!(verdict(&out, "prod/web", "prod/db-3", Tcp, 5432), Allow);
    assert_eq!(verdict(&out, "prod/web", "prod/db-2", Tcp, 5432), Deny);
}

#[test]
fn a_service_without_endpoints_selects_nothing_and_the_status_says_so() {
    let out = base().compile();
    assert_eq!(verdict(&out, "prod/web", "prod/db-1", Tcp, 5432), Deny);
    let warnings = &out.policies["web"].warnings;
    assert!(
        warnings.iter().any(|w| w
            == "to-db peers[0] selects nothing: Service prod/db has no endpoints (no EndpointSlice lists a backend for it)"),
        "{warnings:?}"
    );
    // A slice of another Service changes nothing.
    let out = with_slice(
        base(),
        "cache-x",
        slice("cache", &[("cache", "10.0.2.3")], &[]),
    )
    .compile();
    assert_eq!(verdict(&out, "prod/web", "prod/cache", Tcp, 5432), Deny);
}

#[test]
fn a_backend_outside_the_cluster_is_judged_by_its_address_identity() {
    // 203.0.113.5 lies in the labeled range role=saas; 198.51.100.9 in none.
    let out = with_slice(base(), "db-ext", slice("db", &[], &["203.0.113.5"])).compile();
    assert_eq!(verdict(&out, "prod/web", "203.0.113.5", Tcp, 5432), Allow);
    // The whole labeled range is one identity.
    assert_eq!(verdict(&out, "prod/web", "203.0.113.77", Tcp, 5432), Allow);
    assert_eq!(verdict(&out, "prod/web", "198.51.100.9", Tcp, 5432), Deny);
    assert!(out.policies["web"].warnings.is_empty());
    // An address no endpoint or labeled range owns is world, and the status says so.
    let out = with_slice(base(), "db-ext", slice("db", &[], &["198.51.100.9"])).compile();
    assert_eq!(verdict(&out, "prod/web", "198.51.100.9", Tcp, 5432), Allow);
    let warnings = &out.policies["web"].warnings;
    assert!(
        warnings.iter().any(|w| w.contains("Service prod/db has a backend address that no endpoint or labeled CIDR owns, so the peer names world")),
        "{warnings:?}"
    );
    // A bare address that is a pod's is that pod's identity.
    let out = with_slice(base(), "db-ext", slice("db", &[], &["10.0.2.3"])).compile();
    assert_eq!(verdict(&out, "prod/web", "prod/cache", Tcp, 5432), Allow);
}

#[test]
fn a_slice_naming_a_pod_not_yet_seen_waits_for_it() {
    let out = with_slice(base(), "db-abc", slice("db", &[("db-9", "10.0.1.9")], &[])).compile();
    // Not world: the address is not guessed at.
    assert_eq!(verdict(&out, "prod/web", "10.0.1.9", Tcp, 5432), Deny);
    let w = base().pod("prod", "db-9", "n1", "10.0.1.9", &[("app", "db9")]);
    let out = with_slice(w, "db-abc", slice("db", &[("db-9", "10.0.1.9")], &[])).compile();
    assert_eq!(verdict(&out, "prod/web", "prod/db-9", Tcp, 5432), Allow);
}

/// Backends moving, pods arriving after their slice, the policy and slice
/// going away: each change applied alone equals a whole compile.
#[test]
fn the_peer_follows_endpoint_slice_changes_incrementally() {
    let options = CompileOptions::default();
    let mut compiler = Compiler::new(options.clone(), IdentityAllocation::default());
    compiler.load(base().snap);
    let key = |name: &str| EndpointSliceKey::new("prod", name);
    let pod = |addr: &str, l: &[(&str, &str)]| Pod {
        labels: labels(l),
        node: Some("n2".into()),
        addresses: addrs(addr),
        ..Pod::default()
    };
    // (change, web -> db-1, web -> cache, web -> prod/late) after it
    let steps: Vec<(Change, [bulkhead_policy::Verdict; 3])> = vec![
        (
            Change::UpsertEndpointSlice(key("db-a"), slice("db", &[("db-1", "10.0.1.2")], &[])),
            [Allow, Deny, Deny],
        ),
        (
            Change::UpsertEndpointSlice(key("db-a"), slice("db", &[("cache", "10.0.2.3")], &[])),
            [Deny, Allow, Deny],
        ),
        (
            Change::UpsertEndpointSlice(key("db-b"), slice("db", &[("late", "10.0.2.9")], &[])),
            [Deny, Allow, Deny],
        ),
        (
            Change::UpsertPod(
                PodKey::new("prod", "late"),
                pod("10.0.2.9", &[("app", "late")]),
            ),
            [Deny, Allow, Allow],
        ),
        (
            Change::UpsertPod(
                PodKey::new("prod", "cache"),
                pod("10.0.2.3", &[("app", "db"), ("tier", "a")]),
            ),
            [Allow, Allow, Allow],
        ),
        (
            Change::DeleteEndpointSlice(key("db-a")),
            [Deny, Deny, Allow],
        ),
        (Change::DeletePolicy("web".into()), [Allow, Allow, Allow]),
        (
            Change::UpsertPolicy(
                "web".into(),
                serde_yaml::from_str(WEB_TO_DB).expect("policy"),
            ),
            [Deny, Deny, Allow],
        ),
        (Change::DeleteEndpointSlice(key("db-b")), [Deny, Deny, Deny]),
    ];
    for (i, (change, want)) in steps.into_iter().enumerate() {
        let before = compiler.output().allocation.clone();
        let label = format!("{change:?}");
        compiler.apply(change);
        let full = compile(compiler.snapshot(), &options, &before);
        assert_eq!(
            *compiler.output(),
            full,
            "step {i} {label}: incremental != full"
        );
        let out = compiler.output();
        let got = ["prod/db-1", "prod/cache", "10.0.2.9"]
            .map(|to| verdict(out, "prod/web", to, Tcp, 5432));
        assert_eq!(got, want, "step {i} {label}");
    }
}
