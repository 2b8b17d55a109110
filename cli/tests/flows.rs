//! `kubectl bulkhead flows --flows FILE`: the collector's filters, offline.

mod support;

use support::{fixture, run, scratch};

const SINCE: &str = "2026-11-30T00:00:00Z";

fn flows(extra: &[&str]) -> support::Run {
    let file = fixture("flows/history.jsonl");
    let mut args = vec!["flows", "--flows", file.as_str(), "--since", SINCE];
    args.extend_from_slice(extra);
    run(&args)
}

fn nodes_and_ports(v: &serde_json::Value) -> Vec<(String, u64)> {
    v["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["node"].as_str().expect("node").to_string(),
                r["port"].as_u64().expect("port"),
            )
        })
        .collect()
}

#[test]
fn filters_select_by_labels_names_verdicts_and_time() {
    let all = flows(&["-o", "json"]).json();
    assert_eq!(all["records"].as_array().map(Vec::len), Some(5));
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, u64)]);
    let cases: [Case; 7] = [
        (
            &["--from", "app=web,env=prod"],
            &[("node-1", 5432), ("node-2", 5432)],
        ),
        (
            &["--from", "dev/web-0"],
            &[("node-3", 5432), ("node-2", 5432)],
        ),
        (&["--verdict", "would-deny"], &[("node-3", 5432)]),
        (&["--verdict", "deny"], &[("node-2", 5432)]),
        (
            &["--to", "10.244.1.0/24", "--port", "443"],
            &[("node-1", 443)],
        ),
        (&["--node", "node-1"], &[("node-1", 5432), ("node-1", 443)]),
        (
            &["--until", "2026-11-30T10:05:00Z"],
            &[("node-1", 5432), ("node-2", 5432)],
        ),
    ];
    for (args, want) in cases {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let got = nodes_and_ports(&flows(&a).json());
        let want: Vec<(String, u64)> = want.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        assert_eq!(got, want, "{args:?}");
    }
}

#[test]
fn the_table_names_both_sides_the_verdict_and_the_rule() {
    let out = flows(&["--from", "app=web,env=prod"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("START"), "{}", out.stdout);
    assert!(
        lines[1].contains("shop/web-0 [app=web,env=prod]"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("shop/db-0 [app=db,env=prod]"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("web-to-db/postgres"), "{}", lines[1]);
    assert!(lines[1].contains("5432/TCP"), "{}", lines[1]);
}

#[test]
fn export_round_trips_through_flows() {
    let dir = scratch("flows-export");
    let out = dir.join("export.jsonl");
    let file = fixture("flows/history.jsonl");
    let r = run(&[
        "flows",
        "export",
        "--flows",
        &file,
        "--since",
        SINCE,
        "--verdict",
        "allow",
        "--out",
        out.to_str().expect("path"),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let text = std::fs::read_to_string(&out).expect("export");
    assert_eq!(text.lines().count(), 4, "allowed, would-be denies included");
    let again = run(&[
        "flows",
        "--flows",
        out.to_str().expect("path"),
        "--since",
        SINCE,
        "-o",
        "jsonl",
    ]);
    assert_eq!(again.stdout, text, "an export reads back as itself");
}

#[test]
fn bad_input_names_the_line_or_the_parameter() {
    let bad = fixture("flows/bad-line.jsonl");
    run(&["flows", "--flows", &bad, "--since", SINCE])
        .fails_with("bad-line.jsonl:2: not a flow/v1 record");
    flows(&["--verdict", "maybe"]).fails_with("parameter verdict");
    flows(&["--from", "a/b/c"]).fails_with("parameter from");
    run(&[
        "flows",
        "--flows",
        &fixture("flows/history.jsonl"),
        "--since",
        "soon",
    ])
    .fails_with("parameter since");
}

#[test]
fn an_unreachable_collector_is_named() {
    run(&[
        "flows",
        "--collector",
        "http://127.0.0.1:9",
        "--since",
        "1h",
    ])
    .fails_with("reaching the collector at http://127.0.0.1:9/api/v1/flows");
}
