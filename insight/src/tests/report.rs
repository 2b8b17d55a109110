//! The report's coverage, denials, unused rules, traffic map, CSV and HTML.

use super::{at, cluster, ingress_view, pod, rec, with_rule, world};
use crate::report::{build, csv, html, ReportOptions, Window};
use crate::unlabeled::unlabeled_endpoints;
use bulkhead_api::flow::{FlowRecord, FlowVerdict};
use bulkhead_api::policy::EnforcementMode;

const DB: &str = "
scope: {selector: {matchLabels: {app: db}}}
enforcement: full
ingress:
- {name: from-web, action: allow, peers: [{selector: {matchLabels: {app: web}}}], ports: [{protocol: TCP, port: 5432}]}
- {name: from-ops, action: allow, peers: [{selector: {matchLabels: {app: ops}}}]}
";
const IDLE: &str = "
scope: {selector: {matchLabels: {app: web}}}
enforcement: selective
egress:
- {name: no-telnet, action: deny, ports: [{protocol: TCP, port: 23}]}
";

/// Day 1: web → db 5432 allowed by db-in/from-web (20 flows, both views);
///        web → db 8080 denied at db's ingress (3 flows).
/// Day 2: web → 8.8.8.8:443 would be denied (visibility) (4 flows);
///        `<script>` is a hostile label value that must come out escaped.
fn history() -> Vec<FlowRecord> {
    let web = pod("10.0.0.1", "x/web", "web", "prod");
    let db = pod("10.0.0.3", "x/db", "db", "prod");
    let mut ok = with_rule(
        rec("n1", web.clone(), db.clone(), 5432, 20, 2000),
        "db-in",
        "from-web",
    );
    ok.mode = EnforcementMode::Selective;
    let mut ok_in = ingress_view(&ok, "n1");
    ok_in.mode = EnforcementMode::Full;
    let mut denied = ingress_view(&rec("n1", web.clone(), db, 8080, 3, 30), "n1");
    denied.verdict = FlowVerdict::Deny;
    denied.would_verdict = FlowVerdict::Deny;
    denied.mode = EnforcementMode::Full;
    let mut would = rec("n1", web, world("8.8.8.8", None), 443, 4, 40);
    would.would_verdict = FlowVerdict::Deny;
    would.start = at("2026-12-01T09:00:00Z");
    would.end = at("2026-12-01T09:01:00Z");
    let mut hostile = rec(
        "n1",
        pod("10.0.0.7", "x/evil", "<script>", "prod"),
        world("8.8.4.4", None),
        443,
        1,
        1,
    );
    hostile.start = would.start;
    vec![ok, ok_in, denied, would, hostile]
}

fn report() -> crate::report::Report {
    let out = cluster(
        &[
            ("web", "10.0.0.1", Some("web")),
            ("db", "10.0.0.3", Some("db")),
            ("legacy", "10.0.0.9", None),
        ],
        &[("db-in", DB), ("web-out", IDLE)],
    );
    let window = Window {
        since: at("2026-11-30T00:00:00Z"),
        until: at("2026-12-02T00:00:00Z"),
    };
    build(
        &history(),
        &out,
        &unlabeled_endpoints(&out),
        window,
        &ReportOptions::default(),
    )
}

#[test]
fn coverage_counts_modes_now_and_per_day() {
    let r = report();
    // web selective, db full, legacy and n1 visibility.
    let e = &r.coverage.endpoints;
    assert_eq!(
        (e.visibility, e.selective, e.full, e.total, e.percent_full),
        (2, 1, 1, 4, 25.0)
    );
    // Applications by app: web (selective), db (full); unlabeled ones have no app.
    let a = &r.coverage.applications;
    assert_eq!(
        (a.selective, a.full, a.total, a.percent_full),
        (1, 1, 2, 50.0)
    );
    // Day 1: web (selective, on its egress view) and db (full, ingress views).
    // Day 2: web (visibility in that record) and x/evil.
    let days: Vec<(&str, u64, u64, u64)> = r
        .coverage
        .daily
        .iter()
        .map(|d| {
            (
                d.day.as_str(),
                d.endpoints.visibility,
                d.endpoints.selective,
                d.endpoints.full,
            )
        })
        .collect();
    assert_eq!(days, [("2026-11-30", 0, 1, 1), ("2026-12-01", 2, 0, 0)]);
}

#[test]
fn totals_denials_unused_rules_and_the_queue() {
    let r = report();
    assert_eq!(r.totals.records, 5);
    assert_eq!(
        r.totals.flows,
        20 + 4 + 1,
        "ingress views of flows whose source reports them do not count"
    );
    assert_eq!((r.totals.denied_flows, r.totals.would_deny_flows), (3, 4));
    let d: Vec<(&str, u64, u64)> = r
        .denials
        .iter()
        .map(|d| (d.application.as_str(), d.denied_flows, d.would_deny_flows))
        .collect();
    // The deny was db's ingress; the would-deny web's egress.
    assert_eq!(d, [("web", 0, 4), ("db", 3, 0)]);
    // from-web matched; from-ops and the whole web-out policy did not.
    let rules: Vec<(&str, &str)> = r
        .unused
        .rules
        .iter()
        .map(|u| (u.policy.as_str(), u.rule.as_str()))
        .collect();
    assert_eq!(rules, [("db-in", "from-ops"), ("web-out", "no-telnet")]);
    assert_eq!(r.unused.policies, ["web-out"]);
    // legacy and n1 (endpoints) plus 8.8.8.8 and 8.8.4.4 (addresses).
    assert_eq!(
        (
            r.unlabeled.total,
            r.unlabeled.endpoints,
            r.unlabeled.addresses
        ),
        (4, 2, 2)
    );
}

#[test]
fn the_traffic_map_colors_edges_by_verdict() {
    let r = report();
    let ids: Vec<&str> = r.traffic_map.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["(world)", "<script>/prod", "db/prod", "web/prod"]);
    let edges: Vec<(&str, &str, &str, u64, u64, u64)> = r
        .traffic_map
        .edges
        .iter()
        .map(|e| {
            (
                e.source.as_str(),
                e.destination.as_str(),
                e.verdict.as_str(),
                e.allowed_flows,
                e.denied_flows,
                e.would_deny_flows,
            )
        })
        .collect();
    assert_eq!(
        edges,
        [
            ("<script>/prod", "(world)", "allow", 1, 0, 0),
            ("web/prod", "(world)", "would-deny", 0, 0, 4),
            ("web/prod", "db/prod", "deny", 20, 3, 0),
        ]
    );
    assert_eq!(r.traffic_map.nodes[3].cluster, "prod");
}

#[test]
fn csv_and_html_carry_the_numbers_and_escape_what_flows_carried() {
    let r = report();
    let text = csv::render(&r);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "section,name,metric,value");
    for row in [
        "totals,,deniedFlows,3",
        "coverage.endpoints,,percentFull,25",
        "denials,web,wouldDenyFlows,4",
        "unused.rule,db-in/from-ops,flows,0",
        "unlabeled,,total,4",
    ] {
        assert!(lines.contains(&row), "missing {row:?} in\n{text}");
    }
    assert!(lines.iter().all(|l| l.split(',').count() == 4), "{text}");

    let page = html::render(&r);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(!page.contains("<script"), "a label value became markup");
    assert!(page.contains("&lt;script&gt;/prod"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page fetches nothing"
    );
    assert!(page.contains("25%</div><div class=\"l\">endpoints in full enforcement"));
}
