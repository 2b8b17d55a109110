//! Designing policy from traffic, end to end (root needed): real packets in
//! visibility mode, collected; `kubectl bulkhead what-if` online (today's
//! objects from the API server, history from the collector) predicts what a
//! promotion would drop; `recommend` online writes policies that, enforced,
//! let every observed flow through and drop what was never seen, on real
//! packets.
//!
//! ```text
//!  node-1: prod/web-1 (web)  prod/api-1 (api)
//!  node-2: prod/api-2 (api)  dev/web-d2 (web)
//!  policy prod-api (visibility): prod apis accept TCP 8080 from prod webs
//! ```

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use bulkhead_api::flow::FlowRecord;
use bulkhead_e2e::lab::{Agents, Probe};
use bulkhead_e2e::{kubelet, Lab, LabSpec, Workload};
use support::*;

const MAPPING: &str = include_str!("../fixtures/workloads-mapping.yaml");

fn policy(mode: &str) -> String {
    format!(
        r#"
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {{name: prod-api}}
spec:
  scope: {{selector: {{matchLabels: {{app: api, env: prod}}}}}}
  enforcement: {mode}
  ingress:
  - name: from-prod-web
    action: allow
    peers: [{{selector: {{matchLabels: {{app: web, env: prod}}}}}}]
    ports: [{{protocol: TCP, port: 8080}}]
"#
    )
}

const PODS: [(&str, &str, &str, &str); 4] = [
    ("prod", "web-1", "node-1", "web"),
    ("prod", "api-1", "node-1", "api"),
    ("prod", "api-2", "node-2", "api"),
    ("dev", "web-d2", "node-2", "web"),
];

/// The flows sent: (from, to), TCP 8080.
const SENT: [(&str, &str); 3] = [
    ("prod/web-1", "prod/api-2"),
    ("dev/web-d2", "prod/api-1"),
    ("prod/api-1", "prod/web-1"),
];

fn start_lab() -> Lab {
    let mut spec = LabSpec::new(2);
    spec.agents = Agents::Cluster;
    spec.namespaces = vec![
        ("prod".into(), kubelet::labels([("env", "prod")])),
        ("dev".into(), kubelet::labels([("env", "dev")])),
    ];
    spec.workloads = PODS
        .iter()
        .map(|(ns, name, node, app)| Workload::new(ns, name, node, &[("app", app)]))
        .collect();
    let mut lab = start(spec);
    for (ns, name, _, _) in PODS {
        ok(lab.listen(ns, name, &[8080], &[]), "starting a listener");
    }
    let k = lab.kubectl();
    ok(k.run_with_stdin(&["apply", "-f", "-"], MAPPING), "mapping");
    ok(
        k.run_with_stdin(&["apply", "-f", "-"], &policy("visibility")),
        "policy",
    );
    ok(lab.sync_agents(Duration::from_secs(30)), "agents in sync");
    lab
}

fn collected(lab: &Lab) -> Vec<FlowRecord> {
    let collector = lab.collector().expect("the lab runs a collector");
    let (code, body) = ok(
        collector.get("/api/v1/flows?since=1h&limit=100000"),
        "querying the collector",
    );
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    serde_json::from_value(answer["records"].clone()).expect("flow/v1 records")
}

/// Runs the plugin against the lab: its kubeconfig, its collector.
fn cli(lab: &Lab, args: &[&str]) -> (Option<i32>, String, String) {
    let url = lab.collector().expect("collector").url();
    let out = Command::new(lab.project_binaries().cli())
        .args(args)
        .args(["--collector", &url])
        .env("KUBECONFIG", &lab.kubectl().kubeconfig)
        .output()
        .expect("kubectl-bulkhead runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (from app/env, to app/env, port) of a what-if list.
fn groups(v: &serde_json::Value, list: &str) -> BTreeSet<(String, String, u64)> {
    let side = |g: &serde_json::Value| {
        format!(
            "{}/{}",
            g["labels"]["env"].as_str().unwrap_or("?"),
            g["labels"]["app"].as_str().unwrap_or("?")
        )
    };
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} in {v}"))
        .iter()
        .map(|c| {
            (
                side(&c["from"]),
                side(&c["to"]),
                c["port"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn g(from: &str, to: &str) -> (String, String, u64) {
    (from.into(), to.into(), 8080)
}

#[test]
fn what_if_and_recommend_online_predict_real_packets() {
    let lab = start_lab();
    let probes: Vec<Probe> = SENT.iter().map(|(a, b)| Probe::tcp(a, b, 8080)).collect();
    let answered = ok(lab.probe_all(&probes), "probing");
    assert!(
        answered.iter().all(|r| r.answered),
        "visibility drops nothing: {answered:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: BTreeSet<(String, String)> = collected(&lab)
            .iter()
            .filter(|r| r.counts() && r.port == 8080)
            .map(|r| {
                (
                    r.source.name.clone().unwrap_or_default(),
                    r.destination.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        if SENT
            .iter()
            .all(|(a, b)| seen.contains(&(a.to_string(), b.to_string())))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the collector has the flows sent: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // 1. What would promoting prod-api to full drop? Today's objects come
    //    from the API server, history from the collector.
    let dir = tempfile::tempdir().expect("tempdir");
    let draft = dir.path().join("prod-api-full.yaml");
    std::fs::write(&draft, policy("full")).expect("draft");
    let draft = draft.to_str().expect("utf-8");
    let (code, out, err) = cli(&lab, &["what-if", draft, "--since", "1h", "-o", "json"]);
    assert_eq!(code, Some(3), "newly denied traffic exits 3: {out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        groups(&v, "newlyDenied"),
        BTreeSet::from([g("dev/web", "prod/api"), g("prod/api", "prod/web")]),
        "dev → prod api is not allowed, and a full-mode api sends nothing no rule allows"
    );
    assert_eq!(groups(&v, "newlyAllowed"), BTreeSet::new());
    // --delete alone: removing a visibility policy changes no verdict.
    let (code, out, _) = cli(
        &lab,
        &[
            "what-if", "--delete", "prod-api", "--since", "1h", "-o", "json",
        ],
    );
    assert_eq!(
        code,
        Some(0),
        "deleting a visibility policy drops nothing: {out}"
    );

    // 2. Recommend from the same history, check it, enforce it.
    let (code, yaml, err) = cli(
        &lab,
        &[
            "recommend",
            "--scope",
            "env=prod",
            "--since",
            "1h",
            "--min-window",
            "1h",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let recommended = dir.path().join("recommended.yaml");
    std::fs::write(&recommended, &yaml).expect("write");
    let recommended = recommended.to_str().expect("utf-8");
    let (code, out, err) = cli(
        &lab,
        &[
            "what-if",
            recommended,
            "--as-enforced",
            "--since",
            "1h",
            "-o",
            "json",
        ],
    );
    assert_eq!(
        code,
        Some(0),
        "enforced, the recommendation drops nothing observed: {out}\n{err}"
    );
    let enforced = yaml.replace("enforcement: visibility", "enforcement: full");
    ok(
        lab.kubectl()
            .run_with_stdin(&["apply", "-f", "-"], &enforced),
        "applying the recommendation",
    );
    // Real packets: what was seen passes; prod/web-1 takes nothing from dev.
    let unseen = Probe::tcp("dev/web-d2", "prod/web-1", 8080);
    eventually("the recommendation to be enforced", || {
        lab.sync_agents(Duration::from_secs(30))?;
        let r = lab.probe_all(std::slice::from_ref(&unseen))?;
        Ok((!r[0].answered).then_some(()))
    });
    let again = ok(lab.probe_all(&probes), "probing");
    assert!(
        again.iter().all(|r| r.answered),
        "every observed flow still passes: {again:?}"
    );
}
