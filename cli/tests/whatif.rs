//! `kubectl bulkhead what-if` offline: today's cluster from manifests,
//! history from an export, a reproducible window.

mod support;

use support::{fixture, run, scratch};

const SINCE: &str = "2026-11-01T00:00:00Z";
const UNTIL: &str = "2026-11-29T00:00:00Z";

fn what_if(extra: &[&str]) -> support::Run {
    let cluster = fixture("whatif/cluster");
    let flows = fixture("whatif/history.jsonl");
    let mut args = vec![
        "what-if",
        "--cluster",
        &cluster,
        "--flows",
        &flows,
        "--since",
        SINCE,
        "--until",
        UNTIL,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn json(r: &support::Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr))
}

/// (from app, to app, port, flows) of one list.
fn entries(v: &serde_json::Value, list: &str) -> Vec<(String, String, u64, u64)> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} in {v}"))
        .iter()
        .map(|c| {
            (
                c["from"]["labels"]["app"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                c["to"]["labels"]["app"].as_str().unwrap_or("?").to_string(),
                c["port"].as_u64().unwrap_or(0),
                c["flows"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn e(from: &str, to: &str, port: u64, flows: u64) -> (String, String, u64, u64) {
    (from.into(), to.into(), port, flows)
}

#[test]
fn a_narrower_port_is_newly_denied_and_exits_3() {
    let draft = fixture("whatif/draft/web-443-only.yaml");
    let r = what_if(&[&draft, "-o", "json"]);
    assert_eq!(r.code, Some(3), "stderr: {}", r.stderr);
    let v = json(&r);
    assert_eq!(v["records"], 115);
    assert_eq!(entries(&v, "newlyDenied"), vec![e("client", "web", 80, 8)]);
    assert_eq!(entries(&v, "newlyAllowed"), vec![]);
    let c = &v["newlyDenied"][0];
    assert_eq!(c["protocol"], "TCP");
    assert_eq!(c["lastSeen"], "2026-11-17T09:01:00Z");
    assert_eq!(c["from"]["name"], serde_json::Value::Null);
    assert_eq!(c["to"]["labels"]["env"], "prod");
}

#[test]
fn delete_works_without_drafts_and_exits_0_when_nothing_is_denied() {
    let r = what_if(&["--delete", "db", "-o", "json"]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let v = json(&r);
    assert_eq!(entries(&v, "newlyAllowed"), vec![e("batch", "db", 5432, 7)]);
    assert_eq!(entries(&v, "newlyDenied"), vec![]);
    what_if(&["--delete", "nope"]).fails_with("--delete nope");
    assert_eq!(what_if(&["--delete", "nope"]).code, Some(1));
}

#[test]
fn as_enforced_judges_a_visibility_draft_in_full_mode() {
    let draft = fixture("whatif/draft/cache.yaml");
    let r = what_if(&[&draft, "-o", "json"]);
    assert_eq!(r.code, Some(0), "visibility drops nothing: {}", r.stdout);
    let r = what_if(&[&draft, "--as-enforced", "-o", "json"]);
    assert_eq!(r.code, Some(3));
    assert_eq!(
        entries(&json(&r), "newlyDenied"),
        vec![e("client", "cache", 6379, 28)]
    );
}

#[test]
fn the_window_is_reproducible() {
    let draft = fixture("whatif/draft/web-443-only.yaml");
    let cluster = fixture("whatif/cluster");
    let flows = fixture("whatif/history.jsonl");
    let r = run(&[
        "what-if",
        &draft,
        "--cluster",
        &cluster,
        "--flows",
        &flows,
        "--since",
        "2026-11-10T00:00:00Z",
        "--until",
        "2026-11-20T00:00:00Z",
        "-o",
        "json",
    ]);
    let v = json(&r);
    assert_eq!(
        v["records"],
        4 * 10 + 1,
        "ten days of four edges, and one client→web:80 day"
    );
    assert_eq!(entries(&v, "newlyDenied"), vec![e("client", "web", 80, 4)]);
}

#[test]
fn markdown_and_table_say_the_same() {
    let draft = fixture("whatif/draft/web-443-only.yaml");
    let md = what_if(&[&draft, "-o", "markdown"]);
    assert_eq!(md.code, Some(3));
    assert!(
        md.stdout.starts_with("### Bulkhead what-if"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains("Replayed **115** flow records"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains(
            "| `app=client,env=prod` | `app=web,env=prod` | 80/TCP | 8 | 2026-11-17T09:01:00Z |"
        ),
        "{}",
        md.stdout
    );
    let table = what_if(&[&draft]);
    assert_eq!(table.code, Some(3));
    assert!(table.stdout.contains("Newly denied: 1"), "{}", table.stdout);
    assert!(
        table.stdout.contains("Newly allowed: 0"),
        "{}",
        table.stdout
    );
}

#[test]
fn errors_exit_1_and_name_the_problem() {
    let dir = scratch("whatif-errors");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"schema\": \"flow/v1\"}\n").expect("write");
    let draft = fixture("whatif/draft/web-443-only.yaml");
    let cluster = fixture("whatif/cluster");
    let r = run(&[
        "what-if",
        &draft,
        "--cluster",
        &cluster,
        "--flows",
        bad.to_str().expect("utf-8"),
        "--since",
        SINCE,
    ]);
    assert_eq!(r.code, Some(1));
    r.fails_with("bad.jsonl:1: not a flow/v1 record");
    let r = what_if(&[]);
    assert_eq!(r.code, Some(1));
    r.fails_with("nothing to compare");
    let r = run(&[
        "what-if", "--delete", "web", "--flows", "x", "--since", UNTIL, "--until", SINCE,
    ]);
    r.fails_with("is not before --until");
}
