//! `top-talkers`, `unlabeled` and `report` offline, over a fixture history
//! (tests/fixtures/reports/history.jsonl) and cluster (…/cluster).

mod support;

use std::collections::BTreeMap;

use support::{fixture, run, scratch};

const WINDOW: [&str; 4] = [
    "--since",
    "2026-11-29T00:00:00Z",
    "--until",
    "2026-12-02T00:00:00Z",
];

fn with_history(cmd: &[&str], extra: &[&str]) -> support::Run {
    let flows = fixture("reports/history.jsonl");
    let mut args: Vec<&str> = cmd.to_vec();
    args.extend(["--flows", flows.as_str()]);
    args.extend(WINDOW);
    args.extend(extra);
    run(&args)
}

fn cluster() -> String {
    fixture("reports/cluster")
}

#[test]
fn top_talkers_rank_groups_with_their_peers_and_ports() {
    let v = with_history(&["top-talkers"], &["--by", "app,env", "-o", "json"]).json();
    let got: Vec<(String, u64, u64)> = v["talkers"]
        .as_array()
        .expect("talkers")
        .iter()
        .map(|t| {
            let g = &t["group"];
            (
                format!(
                    "{},{}",
                    g["app"].as_str().unwrap_or("?"),
                    g["env"].as_str().unwrap_or("?")
                ),
                t["sent"]["flows"].as_u64().unwrap_or(0),
                t["received"]["flows"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    // web,prod: 40 to db + 12 DNS sent, 9 from the partner received. db:
    // 40 + 6 (dev, denied at db) + 2 (legacy) received. "-,-": world and
    // the unlabeled pod. Ingress views of managed sources do not count again.
    let want = [
        ("web,prod", 52, 9),
        ("db,prod", 0, 48),
        ("-,-", 11, 20),
        ("web,dev", 14, 0),
    ];
    let want: Vec<(String, u64, u64)> = want
        .iter()
        .map(|(g, s, r)| (g.to_string(), *s, *r))
        .collect();
    assert_eq!(got, want);
    let v = with_history(
        &["top-talkers"],
        &[
            "--sort",
            "bytes",
            "--direction",
            "egress",
            "--limit",
            "1",
            "-o",
            "json",
        ],
    )
    .json();
    assert_eq!(v["talkers"][0]["group"]["app"], "web");
    assert_eq!(v["talkers"].as_array().map(Vec::len), Some(1));
    let table = with_history(&["top-talkers"], &["--by", "namespace"]);
    assert_eq!(table.code, Some(0), "{}", table.stderr);
    assert!(table.stdout.starts_with("#  NAMESPACE"), "{}", table.stdout);
    with_history(&["top-talkers"], &["--by", ""]).fails_with("--by");
}

#[test]
fn the_unlabeled_queue_agrees_with_the_compilers_and_orders_by_traffic() {
    let c = cluster();
    let v = with_history(&["unlabeled", c.as_str()], &["-o", "json"]).json();
    let got: Vec<(String, u64)> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("?").to_string(),
                e["flows"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let want = [
        ("8.8.8.8", 12),
        ("198.51.100.7", 9),
        ("203.0.113.10", 5),
        ("203.0.113.11", 3),
        ("ops/legacy-0", 2),
        ("node-1", 0),
        ("node-2", 0),
    ];
    let want: Vec<(String, u64)> = want.iter().map(|(n, f)| (n.to_string(), *f)).collect();
    assert_eq!(got, want);
    // The managed entries are what `labels` (and LabelMapping status) call unlabeled.
    let labels = run(&["labels", c.as_str(), "-o", "json"]).json();
    let mut from_labels: Vec<String> = labels["unlabeled"]
        .as_array()
        .expect("unlabeled")
        .iter()
        .filter_map(|n| n.as_str())
        .map(|n| n.trim_start_matches("node/").to_string())
        .collect();
    from_labels.sort();
    let mut managed: Vec<String> = got
        .iter()
        .filter(|(n, _)| !n.starts_with(char::is_numeric))
        .map(|(n, _)| n.clone())
        .collect();
    managed.sort();
    assert_eq!(managed, from_labels);
    let table = with_history(&["unlabeled", c.as_str()], &[]);
    assert!(
        table.stdout.contains("198.51.100.7 (partner.example.com)"),
        "{}",
        table.stdout
    );
}

#[test]
fn suggestions_are_a_label_mapping_the_loader_accepts() {
    let c = cluster();
    let out = with_history(&["unlabeled", c.as_str()], &["--suggest"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for needle in [
        "kind: LabelMapping",
        "- 8.8.8.8/32",
        "- 203.0.113.10/31",
        "- partner.example.com",
        "- node-1",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} missing:\n{}",
            out.stdout
        );
    }
    let dir = scratch("suggest");
    let file = dir.join("suggestions.yaml");
    std::fs::write(&file, &out.stdout).expect("write");
    // Applied with the cluster, the suggestion validates and labels the nodes
    // (hostnames) and the ranges (cidrs); only the pod is left to a person.
    let labels = run(&[
        "labels",
        c.as_str(),
        file.to_str().expect("path"),
        "-o",
        "json",
    ])
    .json();
    assert_eq!(labels["unlabeled"], serde_json::json!(["ops/legacy-0"]));
    let cidrs: Vec<&str> = labels["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter(|e| e["kind"] == "cidr")
        .filter_map(|e| e["endpoint"].as_str())
        .collect();
    assert!(cidrs.iter().any(|c| c.contains("8.8.8.8/32")), "{cidrs:?}");
    assert!(
        cidrs.iter().any(|c| c.contains("203.0.113.10/31")),
        "{cidrs:?}"
    );
}

/// Every (source, destination, risky port) pair through `simulate`, counted
/// per destination application, must equal the report's risky exposure.
#[test]
fn report_exposure_agrees_with_simulate() {
    let c = cluster();
    let ports = ["22/TCP", "443/TCP", "5432/TCP"];
    let v = with_history(
        &["report", c.as_str()],
        &["-o", "json", "--risky-ports", &ports.join(",")],
    )
    .json();
    assert_eq!(v["schema"], "report/v1");
    let labels = run(&["labels", c.as_str(), "-o", "json"]).json();
    // Pods by namespace/name, nodes by name; world as an address outside all.
    let mut ends: Vec<(String, String)> = Vec::new();
    for e in labels["endpoints"].as_array().expect("endpoints") {
        let name = e["endpoint"].as_str().expect("name");
        let end = match e["kind"].as_str() {
            Some("pod") => name.to_string(),
            Some("node") => name.trim_start_matches("node/").to_string(),
            _ => continue,
        };
        let app = e["labels"]["app"].as_str().unwrap_or("(none)").to_string();
        ends.push((end, app));
    }
    assert_eq!(ends.len(), 6, "{ends:?}");
    let mut sources: Vec<String> = ends.iter().map(|(e, _)| e.clone()).collect();
    sources.push("192.0.2.1".into());
    let mut reachable: BTreeMap<String, u64> = BTreeMap::new();
    for (dst, app) in &ends {
        for src in sources.iter().filter(|s| *s != dst) {
            for p in ports {
                let (port, _) = p.split_once('/').expect("port/proto");
                let s = run(&[
                    "simulate",
                    c.as_str(),
                    "--from",
                    src,
                    "--to",
                    dst,
                    "--port",
                    port,
                    "-o",
                    "json",
                ])
                .json();
                *reachable.entry(app.clone()).or_default() += u64::from(s["verdict"] == "allow");
            }
        }
    }
    let from_report: BTreeMap<String, u64> = v["exposure"]["applications"]
        .as_array()
        .expect("applications")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or("?").to_string(),
                a["riskyPorts"]["reachable"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(from_report, reachable);
    assert_eq!(
        v["exposure"]["overall"]["riskyPorts"]["possible"],
        6 * 6 * 3
    );
}

#[test]
fn the_report_counts_what_the_history_holds() {
    let c = cluster();
    let v = with_history(&["report", c.as_str()], &["--format", "json"]).json();
    assert_eq!(v["totals"]["flows"], 40 + 6 + 12 + 5 + 3 + 2 + 9);
    assert_eq!(v["totals"]["deniedFlows"], 6);
    // dev/web-0's egress (6 + 5 + 3) and legacy's egress and db's ingress (2 each).
    assert_eq!(v["totals"]["wouldDenyFlows"], 6 + 5 + 3 + 2 + 2);
    let denials: Vec<(&str, u64, u64)> = v["denials"]
        .as_array()
        .expect("denials")
        .iter()
        .map(|d| {
            (
                d["application"].as_str().unwrap_or("?"),
                d["deniedFlows"].as_u64().unwrap_or(0),
                d["wouldDenyFlows"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(denials, [("web", 0, 14), ("db", 6, 2), ("(none)", 0, 2)]);
    assert_eq!(v["unused"]["policies"], serde_json::json!(["retired"]));
    assert_eq!(v["coverage"]["endpoints"]["full"], 1);
    assert_eq!(v["coverage"]["endpoints"]["total"], 6);
    assert_eq!(v["coverage"]["daily"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["unlabeled"]["total"], 7);

    let csv = with_history(&["report", c.as_str()], &["--format", "csv"]);
    assert!(
        csv.stdout.starts_with("section,name,metric,value\n"),
        "{}",
        csv.stdout
    );
    assert!(
        csv.stdout.contains("\ndenials,db,deniedFlows,6\n"),
        "{}",
        csv.stdout
    );
    let table = with_history(&["report", c.as_str()], &[]);
    assert!(
        table.stdout.contains("16.67% in full enforcement"),
        "{}",
        table.stdout
    );

    let dir = scratch("report-html");
    let page = dir.join("report.html");
    let out = with_history(
        &["report", c.as_str()],
        &["--format", "html", "--out", page.to_str().expect("path")],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let html = std::fs::read_to_string(&page).expect("page");
    assert!(html.contains("<svg") && html.contains("Traffic map"));
    with_history(&["report", c.as_str()], &["--risky-ports", "ICMP"]).fails_with("--risky-ports");
}
