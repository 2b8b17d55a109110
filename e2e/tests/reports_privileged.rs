//! Reports end to end (root needed): real packets between lab pods, judged
//! by the agents and kept by the collector; then `kubectl bulkhead report
//! -o json` over the collector and the cluster as the API server has it must
//! agree with what was sent, with the collector's records, and with
//! `simulate` pair by pair.
//!
//! ```text
//!  node-1: prod/web-1 (web)  prod/api-1 (api)
//!  node-2: prod/api-2 (api)  dev/web-d2 (web)
//!  policy prod-api (full): prod apis accept TCP 8080 from prod webs; everything else visibility
//! ```

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bulkhead_api::flow::{FlowRecord, FlowVerdict};
use bulkhead_e2e::lab::{Agents, Probe};
use bulkhead_e2e::{kubelet, Lab, LabSpec, Workload};
use serde_json::Value;
use support::*;

const MAPPING: &str = include_str!("../fixtures/workloads-mapping.yaml");

const POLICY: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: prod-api}
spec:
  scope: {selector: {matchLabels: {app: api, env: prod}}}
  enforcement: full
  ingress:
  - name: from-prod-web
    action: allow
    peers: [{selector: {matchLabels: {app: web, env: prod}}}]
    ports: [{protocol: TCP, port: 8080}]
"#;

const PODS: [(&str, &str, &str, &str); 4] = [
    ("prod", "web-1", "node-1", "web"),
    ("prod", "api-1", "node-1", "api"),
    ("prod", "api-2", "node-2", "api"),
    ("dev", "web-d2", "node-2", "web"),
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
        ok(
            lab.listen(ns, name, &[8080], &[8080]),
            "starting a listener",
        );
    }
    let k = lab.kubectl();
    ok(k.run_with_stdin(&["apply", "-f", "-"], MAPPING), "mapping");
    ok(k.run_with_stdin(&["apply", "-f", "-"], POLICY), "policy");
    eventually("the policy to be enforced", || {
        lab.sync_agents(Duration::from_secs(30))?;
        let r = lab.probe_all(&[Probe::tcp("dev/web-d2", "prod/api-2", 8080)])?;
        Ok((!r[0].answered).then_some(()))
    });
    lab
}

fn collected(lab: &Lab) -> Vec<FlowRecord> {
    let collector = lab.collector().expect("the lab runs a collector");
    let (code, body) = ok(
        collector.get("/api/v1/flows?since=1h&limit=100000"),
        "querying the collector",
    );
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    serde_json::from_value(answer["records"].clone()).expect("flow/v1 records")
}

/// Counted flows of one pod pair (each two-sided flow once).
fn flows_between(records: &[FlowRecord], from: &str, to: &str) -> u64 {
    records
        .iter()
        .filter(|r| r.counts())
        .filter(|r| {
            r.source.name.as_deref() == Some(from) && r.destination.name.as_deref() == Some(to)
        })
        .map(|r| r.flows)
        .sum()
}

fn cli(lab: &Lab, args: &[&str]) -> Value {
    let out = std::process::Command::new(lab.project_binaries().cli())
        .args(args)
        .output()
        .expect("kubectl-bulkhead runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn edge<'a>(report: &'a Value, from: &str, to: &str) -> &'a Value {
    report["trafficMap"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["source"] == from && e["destination"] == to)
        .unwrap_or_else(|| panic!("no edge {from} → {to} in {:#}", report["trafficMap"]))
}

#[test]
fn report_json_agrees_with_the_traffic_sent_and_with_simulate_privileged() {
    let lab = start_lab();
    let probes = [
        (Probe::tcp("prod/web-1", "prod/api-2", 8080), 3),
        (Probe::tcp("prod/web-1", "prod/api-1", 8080), 2),
        (Probe::tcp("dev/web-d2", "prod/api-1", 8080), 2),
    ];
    let batch: Vec<Probe> = probes
        .iter()
        .flat_map(|(p, n)| std::iter::repeat_n(p.clone(), *n))
        .collect();
    let answered: Vec<bool> = ok(lab.probe_all(&batch), "probing")
        .iter()
        .map(|r| r.answered)
        .collect();
    assert_eq!(answered, [true, true, true, true, true, false, false]);

    // Wait until the collector holds exactly what was sent on the counted pairs.
    let want = [
        ("prod/web-1", "prod/api-2", 3),
        ("prod/web-1", "prod/api-1", 2),
        ("dev/web-d2", "prod/api-1", 2),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let records = loop {
        let records = collected(&lab);
        let got: Vec<u64> = want
            .iter()
            .map(|(f, t, _)| flows_between(&records, f, t))
            .collect();
        if got == want.iter().map(|w| w.2).collect::<Vec<_>>() {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "the collector has {got:?} of {want:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };

    let cluster = ok(snapshot(&lab), "exporting the cluster");
    let dir = cluster.path().to_string_lossy().to_string();
    let url = lab.collector().expect("collector").url();
    let report = cli(
        &lab,
        &[
            "report",
            &dir,
            "--collector",
            &url,
            "--since",
            "1h",
            "--risky-ports",
            "8080/TCP",
            "-o",
            "json",
        ],
    );

    // What was sent: prod webs → prod apis, 3 + 2 flows, let through. The
    // webs have no policy of their own (visibility), so full mode would deny
    // their egress: the edge is would-deny, with all five flows.
    let prod = edge(&report, "web/prod", "api/prod");
    assert_eq!(
        (
            prod["allowedFlows"].as_u64(),
            prod["wouldDenyFlows"].as_u64(),
            prod["deniedFlows"].as_u64(),
            prod["verdict"].as_str()
        ),
        (Some(0), Some(5), Some(0), Some("would-deny")),
        "{prod}"
    );
    // dev → prod api: denied at the destination, as often as the collector
    // saw it (the 2 sent, and the probes that waited for enforcement).
    let dev = edge(&report, "web/dev", "api/prod");
    let denied_dev: u64 = records
        .iter()
        .filter(|r| r.verdict == FlowVerdict::Deny)
        .filter(|r| r.source.labels.get("env").map(String::as_str) == Some("dev"))
        .map(|r| r.flows)
        .sum();
    assert!(denied_dev >= 2);
    assert_eq!(dev["deniedFlows"].as_u64(), Some(denied_dev), "{dev}");
    assert_eq!(dev["verdict"], "deny");
    let denied_all: u64 = records
        .iter()
        .filter(|r| r.verdict == FlowVerdict::Deny)
        .map(|r| r.flows)
        .sum();
    assert_eq!(report["totals"]["deniedFlows"].as_u64(), Some(denied_all));
    let api = report["denials"]
        .as_array()
        .expect("denials")
        .iter()
        .find(|d| d["application"] == "api")
        .expect("api denials");
    assert_eq!(
        api["deniedFlows"].as_u64(),
        Some(denied_all),
        "prod-api's side denied them"
    );
    // The only rule matched: nothing unused.
    assert_eq!(report["unused"]["rules"], serde_json::json!([]));
    // Coverage: the two prod apis are in full enforcement, the rest (two
    // pods, two nodes) in visibility.
    assert_eq!(report["coverage"]["endpoints"]["full"], 2);
    assert_eq!(report["coverage"]["endpoints"]["total"], 6);

    // Exposure on TCP 8080, pair by pair through simulate.
    let labels = cli(&lab, &["labels", &dir, "-o", "json"]);
    let mut ends: Vec<(String, String)> = Vec::new();
    for e in labels["endpoints"].as_array().expect("endpoints") {
        let name = e["endpoint"].as_str().expect("name");
        let end = match e["kind"].as_str() {
            Some("pod") => name.to_string(),
            Some("node") => name.trim_start_matches("node/").to_string(),
            _ => continue,
        };
        ends.push((
            end,
            e["labels"]["app"].as_str().unwrap_or("(none)").to_string(),
        ));
    }
    let mut sources: Vec<String> = ends.iter().map(|(e, _)| e.clone()).collect();
    sources.push("192.0.2.1".into());
    let mut simulated: BTreeMap<String, u64> = BTreeMap::new();
    for (dst, app) in &ends {
        for src in sources.iter().filter(|s| *s != dst) {
            let s = cli(
                &lab,
                &[
                    "simulate", &dir, "--from", src, "--to", dst, "--port", "8080", "-o", "json",
                ],
            );
            *simulated.entry(app.clone()).or_default() += u64::from(s["verdict"] == "allow");
        }
    }
    let reported: BTreeMap<String, u64> = report["exposure"]["applications"]
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
    assert_eq!(reported, simulated);
    // And the traffic agrees with it: prod webs reach prod apis, dev webs do not.
    assert_eq!(
        cli(
            &lab,
            &[
                "simulate",
                &dir,
                "--from",
                "dev/web-d2",
                "--to",
                "prod/api-1",
                "--port",
                "8080",
                "-o",
                "json"
            ]
        )["verdict"],
        "deny"
    );
}
