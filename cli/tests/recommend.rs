//! `kubectl bulkhead recommend` offline, and its output fed back to the
//! loader and to `what-if`.

mod support;

use support::{fixture, run, scratch};

const SINCE: &str = "2026-11-01T00:00:00Z";
const UNTIL: &str = "2026-11-29T00:00:00Z";

fn recommend(extra: &[&str]) -> support::Run {
    let flows = fixture("whatif/history.jsonl");
    let mut args = vec![
        "recommend",
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

#[test]
fn role_layer_json_has_policies_evidence_and_the_short_window_warning() {
    let r = recommend(&["--layer", "role", "-o", "json"]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(
        r.stderr
            .contains("warning: the window is 28.0 days, shorter than the minimum of 35"),
        "{}",
        r.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let names: Vec<&str> = v["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "recommended-role-prod-batch",
            "recommended-role-prod-cache",
            "recommended-role-prod-client",
            "recommended-role-prod-db",
            "recommended-role-prod-web"
        ]
    );
    let web = &v["policies"][4];
    assert_eq!(web["spec"]["enforcement"], "visibility");
    assert_eq!(
        web["spec"]["ingress"][0]["ports"],
        serde_json::json!([{"protocol": "TCP", "port": 443}])
    );
    assert_eq!(web["spec"]["ingress"][1]["name"], "ingress-2-periodic");
    assert_eq!(
        web["spec"]["ingress"][1]["ports"],
        serde_json::json!([{"protocol": "TCP", "port": 80}])
    );
    assert_eq!(
        web["metadata"]["annotations"]["evidence.bulkhead.dev/ingress-2-periodic"],
        "flows=8 firstSeen=2026-11-03T09:00:00Z lastSeen=2026-11-17T09:01:00Z daysSeen=2 periodic"
    );
}

#[test]
fn yaml_loads_as_manifests_and_what_if_finds_nothing_newly_denied() {
    let r = recommend(&["--min-window", "20d"]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let dir = scratch("recommend-yaml");
    let file = dir.join("recommended.yaml");
    std::fs::write(&file, &r.stdout).expect("write");
    let file = file.to_str().expect("utf-8");
    // The loader checks the schema and CEL rules, as the API server would.
    let cluster = fixture("whatif/cluster");
    let labels = run(&["labels", &cluster, file]);
    assert_eq!(labels.code, Some(0), "{}", labels.stderr);
    // Enforced, the recommendation drops nothing that was observed.
    let flows = fixture("whatif/history.jsonl");
    assert_eq!(
        what_if_enforced(file, &cluster, &flows)["newlyDenied"],
        serde_json::json!([])
    );
}

/// `what-if FILE --as-enforced` over `flows` in the window, as JSON.
fn what_if_enforced(file: &str, cluster: &str, flows: &str) -> serde_json::Value {
    let w = run(&[
        "what-if",
        file,
        "--as-enforced",
        "--cluster",
        cluster,
        "--flows",
        flows,
        "--since",
        SINCE,
        "--until",
        UNTIL,
        "-o",
        "json",
    ]);
    assert_eq!(w.code, Some(0), "{}\n{}", w.stdout, w.stderr);
    serde_json::from_str(&w.stdout).expect("json")
}

#[test]
fn scope_and_layer_narrow_the_output() {
    let r = recommend(&["--scope", "app=web", "--layer", "app", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let p = v["policies"].as_array().expect("policies");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["metadata"]["name"], "recommended-app-prod-web");
    assert_eq!(
        p[0]["spec"]["egress"].as_array().map(Vec::len),
        Some(2),
        "to db and to cache"
    );
    assert!(
        p[0]["spec"]["egress"][0].get("ports").is_none(),
        "every port at the app layer"
    );
    recommend(&["--scope", "shop/web-0"])
        .fails_with("recommendations are made for label selectors");
    recommend(&["--max-prefix-len", "40"]).fails_with("max prefix length 40");
}

#[test]
fn service_peers_name_the_service_and_what_if_still_finds_nothing_newly_denied() {
    // The fixture's web -> db traffic, as if web had asked for Service shop/db.
    let dir = scratch("recommend-service");
    let history = dir.join("history.jsonl");
    let text = std::fs::read_to_string(fixture("whatif/history.jsonl")).expect("fixture");
    let mut through = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("record");
            if v["destination"]["name"] == "shop/db-0" && v["source"]["name"] == "shop/web-0" {
                through += 1;
                v["service"] = serde_json::json!({
                    "address": "10.96.0.20", "port": 5432, "namespace": "shop", "name": "db"
                });
            }
            v.to_string()
        })
        .collect();
    assert!(through > 0, "the fixture has web -> db records");
    std::fs::write(&history, lines.join("\n") + "\n").expect("write");
    let history = history.to_str().expect("utf-8");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "recommend",
            "--flows",
            history,
            "--since",
            SINCE,
            "--until",
            UNTIL,
            "--min-window",
            "20d",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    let r = args(&["--service-peers", "-o", "json"]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let web = v["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .find(|p| p["metadata"]["name"] == "recommended-role-prod-web")
        .expect("web's policy");
    let peers: Vec<&serde_json::Value> = web["spec"]["egress"]
        .as_array()
        .expect("egress")
        .iter()
        .flat_map(|r| r["peers"].as_array().expect("peers"))
        .collect();
    assert!(
        peers.contains(&&serde_json::json!({"service": {"namespace": "shop", "name": "db"}})),
        "{peers:?}"
    );
    assert!(
        !peers
            .iter()
            .any(|p| p["selector"]["matchLabels"]["app"] == "db"),
        "db is reached only through its Service: {peers:?}"
    );

    let yaml = args(&["--service-peers"]);
    assert_eq!(yaml.code, Some(0), "stderr: {}", yaml.stderr);
    let file = dir.join("recommended.yaml");
    std::fs::write(&file, &yaml.stdout).expect("write");
    let file = file.to_str().expect("utf-8");
    let cluster = fixture("whatif/cluster");
    let labels = run(&["labels", &cluster, file]);
    assert_eq!(labels.code, Some(0), "{}", labels.stderr);
    assert_eq!(
        what_if_enforced(file, &cluster, history)["newlyDenied"],
        serde_json::json!([])
    );
}
