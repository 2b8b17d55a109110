//! Exposure of a five-endpoint cluster, worked out by hand.
//!
//! Node n1 (unlabeled, visibility) runs pods web, admin, db and cache.
//! Sources per destination: the other four managed endpoints and `world`,
//! so 5 × 3 protocols × 65,535 ports = 983,025 possible pairs each.
//!
//! - db is in full enforcement with ingress rules: allow web on TCP 5432;
//!   allow admin on TCP 22–23; overrideDeny admin on TCP 22. Nothing else
//!   reaches it, and it cannot send anything (full mode, no egress rules).
//!   web → 5432: 1 · admin → 23 only (22 is override-denied): 1 · total 2
//! - cache is selective with one ingress deny: web on TCP 6379.
//!   web: 196,605 − 1 · admin, n1, world: 196,605 each · db: 0 (db's egress)
//!   total 786,419
//! - web, admin and n1 are in visibility: everyone but db reaches them.
//!   4 × 196,605 = 786,420 each
//!
//! Overall: possible 5 × 983,025 = 4,915,125; reachable 2 + 786,419 +
//! 3 × 786,420 = 3,145,681; removed 1 − 3,145,681 / 4,915,125 = 36.00 %.
//!
//! Risky ports 22, 5432 and 6379 (TCP): 15 possible pairs per destination.
//!   db: web → 5432 only: 1 · cache: web → 22, 5432 (6379 denied) + 3 × 3 = 11
//!   web, admin, n1: 4 sources × 3 = 12 each → 48 of 75 (36.00 % removed).
//!
//! If every endpoint were in full enforcement, only n1's six ingress
//! failsafe ports (TCP 22, 6443, 10250, 2379, 2380; UDP 68) would stay open,
//! and only from world: the pods have no egress allow, and no rule lets
//! world in. Of the risky ports that leaves world → n1:22.

use super::cluster;
use crate::exposure::{exposure, ExposureOptions, Reach};
use bulkhead_api::policy::Protocol;

const DB: &str = "
scope: {selector: {matchLabels: {app: db}}}
enforcement: full
ingress:
- {name: from-web, action: allow, peers: [{selector: {matchLabels: {app: web}}}], ports: [{protocol: TCP, port: 5432}]}
- {name: admin-ssh, action: allow, peers: [{selector: {matchLabels: {app: admin}}}], ports: [{protocol: TCP, port: 22, endPort: 23}]}
- {name: never-ssh, action: overrideDeny, peers: [{selector: {matchLabels: {app: admin}}}], ports: [{protocol: TCP, port: 22}]}
";

const CACHE: &str = "
scope: {selector: {matchLabels: {app: cache}}}
enforcement: selective
ingress:
- {name: no-web, action: deny, peers: [{selector: {matchLabels: {app: web}}}], ports: [{protocol: TCP, port: 6379}]}
";

const ALL: u64 = 196_605;

#[test]
fn exposure_of_a_small_cluster_matches_the_hand_count() {
    let out = cluster(
        &[
            ("web", "10.0.0.1", Some("web")),
            ("admin", "10.0.0.2", Some("admin")),
            ("db", "10.0.0.3", Some("db")),
            ("cache", "10.0.0.4", Some("cache")),
        ],
        &[("db-in", DB), ("cache-in", CACHE)],
    );
    let e = exposure(
        &out,
        &ExposureOptions {
            group_key: "app".into(),
            risky: [22, 5432, 6379]
                .iter()
                .map(|p| (Protocol::Tcp, *p))
                .collect(),
        },
    );
    assert_eq!(e.sources, 6, "5 managed endpoints and world");
    let apps: Vec<(&str, u64, u64, u64)> = e
        .applications
        .iter()
        .map(|g| {
            (
                g.name.as_str(),
                g.all_ports.possible,
                g.all_ports.reachable,
                g.risky_ports.reachable,
            )
        })
        .collect();
    let per = 5 * ALL;
    assert_eq!(
        apps,
        [
            ("(none)", per, 4 * ALL, 12),
            ("admin", per, 4 * ALL, 12),
            ("cache", per, 4 * ALL - 1, 11),
            ("db", per, 2, 1),
            ("web", per, 4 * ALL, 12),
        ]
    );
    let want = |possible: u64, reachable: u64, reachable_if_full: u64, pct: f64| Reach {
        possible,
        reachable,
        reachable_if_full,
        reduction_percent: pct,
    };
    assert_eq!(e.overall.endpoints, 5);
    assert_eq!(e.overall.all_ports, want(4_915_125, 3_145_681, 6, 36.0));
    assert_eq!(e.overall.risky_ports, want(75, 48, 1, 36.0));
    let db = e.applications.iter().find(|g| g.name == "db").expect("db");
    // 1 − 2 / 983,025 rounds to 100.00 %.
    assert_eq!(db.all_ports.reduction_percent, 100.0);
    assert_eq!(db.risky_ports, want(15, 1, 0, 93.33));
    let ports: Vec<(&str, u64)> = e
        .by_risky_port
        .iter()
        .map(|p| (p.port.as_str(), p.reach.reachable))
        .collect();
    // 22: cache(web, admin, n1, world) 4 + web/admin/n1 4 each = 16; db none.
    // 5432: db(web) 1 + the same 16 = 17. 6379: cache without web 3 + 12 = 15.
    assert_eq!(ports, [("22/TCP", 16), ("5432/TCP", 17), ("6379/TCP", 15)]);
}

#[test]
fn without_policy_nothing_is_removed_and_full_mode_would_remove_everything() {
    let out = cluster(
        &[
            ("web", "10.0.0.1", Some("web")),
            ("db", "10.0.0.3", Some("db")),
        ],
        &[],
    );
    let e = exposure(&out, &ExposureOptions::default());
    // Three endpoints (two pods, n1); each has the other two and world as sources.
    assert_eq!(e.overall.all_ports.possible, 3 * 3 * ALL);
    assert_eq!(e.overall.all_ports.reachable, 3 * 3 * ALL);
    assert_eq!(e.overall.all_ports.reduction_percent, 0.0);
    assert_eq!(e.overall.risky_ports.possible, 3 * 3 * 11);
    // n1 keeps its failsafe ports (SSH, the API server...) open whatever the mode.
    let n1 = e
        .applications
        .iter()
        .find(|g| g.name == "(none)")
        .expect("n1");
    assert!(n1.all_ports.reachable_if_full > 0);
    let pods_if_full: u64 = e
        .applications
        .iter()
        .filter(|g| g.name != "(none)")
        .map(|g| g.all_ports.reachable_if_full)
        .sum();
    assert_eq!(pods_if_full, 0);
}
