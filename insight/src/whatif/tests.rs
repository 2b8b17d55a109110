//! Each kind of draft change against one small history.

use bulkhead_api::policy::Protocol::Tcp;
use bulkhead_api::LabelSelector;
use bulkhead_policy::netpol::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyRule};
use bulkhead_policy::snapshot::{Pod, PodKey};
use serde_json::json;

use super::*;
use crate::testing::{day, labels, pod, policy, record, world};

fn web_policy(ports: &[u16], extra_ingress: serde_json::Value) -> SegmentationPolicySpec {
    let mut ingress = vec![json!({
        "name": "from-client", "action": "allow",
        "peers": [{"selector": {"matchLabels": {"app": "client"}}}],
        "ports": ports.iter().map(|p| json!({"protocol": "TCP", "port": p})).collect::<Vec<_>>(),
    })];
    if let serde_json::Value::Array(more) = extra_ingress {
        ingress.extend(more);
    }
    policy(json!({
        "scope": {"selector": {"matchLabels": {"app": "web"}}},
        "enforcement": "full",
        "ingress": ingress,
        "egress": [{"name": "to-db", "action": "allow",
            "peers": [{"selector": {"matchLabels": {"app": "db"}}}],
            "ports": [{"protocol": "TCP", "port": 5432}]}],
    }))
}

fn db_policy(peer_app: &str) -> SegmentationPolicySpec {
    policy(json!({
        "scope": {"selector": {"matchLabels": {"app": "db"}}},
        "enforcement": "full",
        "ingress": [{"name": "from-web", "action": "allow",
            "peers": [{"selector": {"matchLabels": {"app": peer_app}}}],
            "ports": [{"protocol": "TCP", "port": 5432}]}],
    }))
}

fn api_policy(enforcement: &str, ingress: serde_json::Value) -> SegmentationPolicySpec {
    policy(json!({
        "scope": {"selector": {"matchLabels": {"app": "api"}}},
        "enforcement": enforcement,
        "ingress": ingress,
    }))
}

fn today() -> Snapshot {
    let mut s = Snapshot::default();
    s.policies
        .insert("web".into(), web_policy(&[80, 443], json!([])));
    s.policies.insert("db".into(), db_policy("web"));
    s.policies
        .insert("api".into(), api_policy("selective", json!([])));
    s
}

struct Edge {
    from: &'static str,
    to: &'static str,
    port: u16,
}

const CLIENT_WEB_80: Edge = Edge {
    from: "client",
    to: "web",
    port: 80,
};
const CLIENT_WEB_443: Edge = Edge {
    from: "client",
    to: "web",
    port: 443,
};
const WEB_DB: Edge = Edge {
    from: "web",
    to: "db",
    port: 5432,
};
const OTHER_WEB_80: Edge = Edge {
    from: "other",
    to: "web",
    port: 80,
};
const WEB_WORLD: Edge = Edge {
    from: "web",
    to: "198.51.100.7",
    port: 443,
};
const CLIENT_API: Edge = Edge {
    from: "client",
    to: "api",
    port: 8080,
};

fn end(app: &str) -> bulkhead_api::flow::FlowEndpoint {
    match app {
        "client" => pod("shop", "client-7f9", &[("app", "client")], "10.0.0.1"),
        "web" => pod("shop", "web-0", &[("app", "web")], "10.0.0.2"),
        "db" => pod("shop", "db-0", &[("app", "db")], "10.0.0.3"),
        "other" => pod("shop", "other-1", &[("app", "other")], "10.0.0.4"),
        "api" => pod("shop", "api-0", &[("app", "api")], "10.0.0.5"),
        addr => world(addr),
    }
}

fn history() -> Vec<FlowRecord> {
    let mut out = Vec::new();
    for (i, e) in [
        CLIENT_WEB_80,
        CLIENT_WEB_443,
        WEB_DB,
        OTHER_WEB_80,
        WEB_WORLD,
        CLIENT_API,
    ]
    .iter()
    .enumerate()
    {
        for d in 0..3 {
            out.push(record(
                &end(e.from),
                &end(e.to),
                Tcp,
                e.port,
                day(d),
                1 + i as u64,
            ));
        }
    }
    out
}

fn options(as_enforced: bool) -> WhatIfOptions {
    WhatIfOptions {
        since: day(0),
        until: day(10),
        as_enforced,
        compile: CompileOptions::default(),
    }
}

/// The changes as (from, to, port), for exact comparison.
fn edges(changes: &[Change]) -> Vec<(String, String, u16)> {
    let side = |g: &EndpointGroup| {
        g.labels
            .get("app")
            .cloned()
            .or_else(|| g.name.clone())
            .unwrap_or_default()
    };
    let mut out: Vec<_> = changes
        .iter()
        .map(|c| (side(&c.from), side(&c.to), c.port))
        .collect();
    out.sort();
    out
}

fn expect(edges_: &[Edge]) -> Vec<(String, String, u16)> {
    let mut out: Vec<_> = edges_
        .iter()
        .map(|e| (e.from.to_string(), e.to.to_string(), e.port))
        .collect();
    out.sort();
    out
}

fn run(today: &Snapshot, draft: Draft, as_enforced: bool) -> WhatIf {
    what_if(today, &draft, &history(), &options(as_enforced)).expect("what-if runs")
}

fn draft_policy(name: &str, spec: SegmentationPolicySpec) -> Draft {
    Draft {
        policies: [(name.to_string(), spec)].into(),
        ..Draft::default()
    }
}

#[test]
fn each_kind_of_change_gives_exactly_the_expected_differences() {
    let netpol = NetworkPolicy {
        pod_selector: LabelSelector::from_labels([("app", "api")]),
        policy_types: None,
        ingress: vec![NetworkPolicyRule {
            peers: vec![NetworkPolicyPeer::Pods {
                namespace_selector: None,
                pod_selector: Some(LabelSelector::from_labels([("app", "web")])),
            }],
            ports: Vec::new(),
        }],
        egress: Vec::new(),
    };
    let cases: Vec<(&str, Draft, Vec<Edge>, Vec<Edge>)> = vec![
        (
            "narrower port",
            draft_policy("web", web_policy(&[443], json!([]))),
            vec![CLIENT_WEB_80],
            vec![],
        ),
        (
            "removed peer",
            draft_policy("db", db_policy("batch")),
            vec![WEB_DB],
            vec![],
        ),
        (
            "added deny (a selective endpoint)",
            draft_policy(
                "api",
                api_policy(
                    "selective",
                    json!([{"action": "deny",
                "peers": [{"selector": {"matchLabels": {"app": "client"}}}]}]),
                ),
            ),
            vec![CLIENT_API],
            vec![],
        ),
        (
            "added deny under an allow changes nothing",
            draft_policy(
                "web",
                web_policy(
                    &[80, 443],
                    json!([{"action": "deny",
                "peers": [{"selector": {"matchLabels": {"app": "client"}}}]}]),
                ),
            ),
            vec![],
            vec![],
        ),
        (
            "added overrideDeny beats the allow",
            draft_policy(
                "web",
                web_policy(
                    &[80, 443],
                    json!([{"action": "overrideDeny",
                "peers": [{"selector": {"matchLabels": {"app": "client"}}}],
                "ports": [{"protocol": "TCP", "port": 80}]}]),
                ),
            ),
            vec![CLIENT_WEB_80],
            vec![],
        ),
        (
            "deleted policy",
            Draft {
                delete: vec!["web".into()],
                ..Draft::default()
            },
            vec![],
            vec![OTHER_WEB_80, WEB_WORLD],
        ),
        (
            "a NetworkPolicy",
            Draft {
                network_policies: [(NetworkPolicyKey::new("shop", "api-from-web"), netpol)].into(),
                ..Draft::default()
            },
            vec![CLIENT_API],
            vec![],
        ),
        ("no change", Draft::default(), vec![], vec![]),
    ];
    for (name, draft, denied, allowed) in cases {
        let got = run(&today(), draft, false);
        assert_eq!(got.records, 18, "{name}: records in the window");
        assert_eq!(
            edges(&got.newly_denied),
            expect(&denied),
            "{name}: newlyDenied"
        );
        assert_eq!(
            edges(&got.newly_allowed),
            expect(&allowed),
            "{name}: newlyAllowed"
        );
    }
}

#[test]
fn entries_carry_labels_names_flows_and_last_seen() {
    let got = run(
        &today(),
        Draft {
            delete: vec!["web".into()],
            ..Draft::default()
        },
        false,
    );
    let world = got
        .newly_allowed
        .iter()
        .find(|c| c.to.labels.is_empty())
        .expect("the world peer");
    assert_eq!(world.from.labels, labels(&[("app", "web")]));
    assert_eq!(world.from.name, None, "a labeled pod is its labels");
    assert_eq!(world.to.name.as_deref(), Some("198.51.100.7"));
    assert_eq!(world.protocol, Tcp);
    assert_eq!(
        world.flows,
        3 * 5,
        "five connections per window, three windows"
    );
    assert_eq!(world.last_seen, day(2) + jiff::SignedDuration::from_mins(1));
}

#[test]
fn as_enforced_judges_the_draft_in_full_mode() {
    // The same api policy, selective: nothing changes; as enforced, its
    // default becomes deny and the client's calls would be dropped.
    let draft = draft_policy("api", api_policy("selective", json!([])));
    assert_eq!(run(&today(), draft.clone(), false).newly_denied, vec![]);
    assert_eq!(
        edges(&run(&today(), draft, true).newly_denied),
        expect(&[CLIENT_API])
    );
}

#[test]
fn a_pod_that_no_longer_exists_is_judged_by_its_recorded_labels() {
    // Today web's address belongs to a pod labeled app=legacy, and no pod is
    // labeled web at all; history still says web, so deleting the web
    // policy frees other → web.
    let mut now = today();
    now.pods.insert(
        PodKey::new("shop", "legacy-0"),
        Pod {
            labels: labels(&[("app", "legacy")]),
            node: Some("node-1".into()),
            addresses: vec![crate::testing::ip("10.0.0.2")],
            ..Pod::default()
        },
    );
    let got = run(
        &now,
        Draft {
            delete: vec!["web".into()],
            ..Draft::default()
        },
        false,
    );
    assert_eq!(
        edges(&got.newly_allowed),
        expect(&[OTHER_WEB_80, WEB_WORLD])
    );
}

#[test]
fn the_window_bounds_the_records() {
    let opts = WhatIfOptions {
        since: day(1),
        until: day(2),
        ..options(false)
    };
    let got = what_if(
        &today(),
        &draft_policy("web", web_policy(&[443], json!([]))),
        &history(),
        &opts,
    )
    .expect("runs");
    assert_eq!(got.records, 6, "one window of each of six edges");
    assert_eq!(
        got.newly_denied[0].flows, 1,
        "client→web:80 once in that window"
    );
    let reversed = WhatIfOptions {
        since: day(2),
        until: day(1),
        ..options(false)
    };
    assert!(matches!(
        what_if(&today(), &Draft::default(), &history(), &reversed),
        Err(WhatIfError::EmptyWindow { .. })
    ));
}

#[test]
fn deleting_an_unknown_name_is_an_error() {
    let draft = Draft {
        delete: vec!["nope".into()],
        ..Draft::default()
    };
    assert_eq!(
        what_if(&today(), &draft, &history(), &options(false)),
        Err(WhatIfError::UnknownDelete("nope".into()))
    );
}
