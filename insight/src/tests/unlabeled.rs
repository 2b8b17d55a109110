//! The labeling queue: order, contents, suggestions, and agreement with the
//! compiler's unlabeled set (what LabelMapping status counts).

use super::{at, bare_pod, cluster, ip, pod, rec, world};
use crate::unlabeled::{queue, suggest, unlabeled_endpoints, EntryKind};
use bulkhead_api::flow::FlowRecord;
use bulkhead_api::rule_map::Direction;

/// x/legacy (unlabeled pod)  → db :5432                 7 flows
/// db                        → 203.0.113.10 :443        4 flows
/// db                        → 203.0.113.20 :443        2 flows (an hour later)
/// web                       → 198.51.100.7 :22         9 flows, known as backup.example.com
/// 192.0.2.50 (no agent)     → web :80                  1 flow, ingress view only
/// web                       → db :5432                50 flows (both labeled: not queued)
fn history() -> Vec<FlowRecord> {
    let web = pod("10.0.0.1", "x/web", "web", "");
    let db = pod("10.0.0.2", "x/db", "db", "");
    let mut later = rec("n1", db.clone(), world("203.0.113.20", None), 443, 2, 20);
    later.start = at("2026-11-30T11:00:00Z");
    later.end = at("2026-11-30T11:01:00Z");
    let mut inbound = rec("n1", world("192.0.2.50", None), web.clone(), 80, 1, 10);
    inbound.direction = Direction::Ingress;
    vec![
        rec(
            "n1",
            bare_pod("10.0.0.9", "x/legacy"),
            db.clone(),
            5432,
            7,
            70,
        ),
        rec("n1", db.clone(), world("203.0.113.10", None), 443, 4, 40),
        later,
        rec(
            "n1",
            web.clone(),
            world("198.51.100.7", Some("backup.example.com")),
            22,
            9,
            90,
        ),
        inbound,
        rec("n1", web, db, 5432, 50, 500),
    ]
}

#[test]
fn the_queue_puts_the_most_traffic_first() {
    let q = queue(&history(), None);
    let got: Vec<(EntryKind, &str, u64)> = q
        .iter()
        .map(|e| (e.kind, e.name.as_str(), e.flows))
        .collect();
    assert_eq!(
        got,
        [
            (EntryKind::Address, "198.51.100.7", 9),
            (EntryKind::Pod, "x/legacy", 7),
            (EntryKind::Address, "203.0.113.10", 4),
            (EntryKind::Address, "203.0.113.20", 2),
            (EntryKind::Address, "192.0.2.50", 1),
        ]
    );
    assert_eq!(q[0].hostname.as_deref(), Some("backup.example.com"));
    assert_eq!(q[0].peers, ["x/web"]);
    assert_eq!(q[0].ports, ["22/TCP"]);
    assert_eq!(q[1].peers, ["x/db"]);
    assert_eq!(q[1].first_seen, Some(at("2026-11-30T10:00:00Z")));
    assert_eq!(q[3].last_seen, Some(at("2026-11-30T11:01:00Z")));
}

#[test]
fn suggestions_cluster_addresses_and_use_known_names() {
    let s = suggest(&queue(&history(), None));
    let got: Vec<(Vec<String>, Vec<String>, u64)> = s
        .iter()
        .map(|s| {
            (
                s.cidrs.iter().map(ToString::to_string).collect(),
                s.hostnames.clone(),
                s.flows,
            )
        })
        .collect();
    // .10 = 0b0000_1010 and .20 = 0b0001_0100 share the first three bits of
    // the last octet: 203.0.113.0/27 covers both. 192.0.2.50 is alone: /32.
    // The unlabeled pod needs a pod selector, which is not guessed.
    let want: Vec<(Vec<String>, Vec<String>, u64)> = vec![
        (vec![], vec!["backup.example.com".into()], 9),
        (vec!["203.0.113.0/27".into()], vec![], 6),
        (vec!["192.0.2.50/32".into()], vec![], 1),
    ];
    assert_eq!(got, want);
    assert_eq!(s[0].app, "backup");
    assert_eq!(s[1].app, "external-203-0-113-0-27");
}

#[test]
fn with_a_cluster_the_queue_is_the_compilers_unlabeled_set() {
    // x/legacy and x/idle have no app label: unlabeled, as the mapping's
    // status counts them; the node n1 has no mapping either.
    let out = cluster(
        &[
            ("web", "10.0.0.1", Some("web")),
            ("db", "10.0.0.2", Some("db")),
            ("legacy", "10.0.0.9", None),
            ("idle", "10.0.0.8", None),
        ],
        &[],
    );
    let endpoints = unlabeled_endpoints(&out);
    let mut names: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["n1", "x/idle", "x/legacy"]);
    assert_eq!(out.unlabeled.len(), endpoints.len());
    let q = queue(&history(), Some(&endpoints));
    let managed: Vec<(&str, u64)> = q
        .iter()
        .filter(|e| e.kind != EntryKind::Address)
        .map(|e| (e.name.as_str(), e.flows))
        .collect();
    // Silent endpoints stay in the queue, last.
    assert_eq!(managed, [("x/legacy", 7), ("n1", 0), ("x/idle", 0)]);
    assert_eq!(
        q.iter()
            .find(|e| e.name == "x/legacy")
            .map(|e| e.addresses.clone()),
        Some(vec![ip("10.0.0.9")])
    );
}
