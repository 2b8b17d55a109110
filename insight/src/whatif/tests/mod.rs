//! Each kind of draft change against one small history.

use bulkhead_api::policy::Protocol::Tcp;
use bulkhead_api::LabelSelector;
use bulkhead_policy::netpol::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyRule};
use bulkhead_policy::snapshot::{Pod, PodKey};
use serde_json::json;

use super::*;

mod fixture;
use crate::testing::{day, labels};
use fixture::*;

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
