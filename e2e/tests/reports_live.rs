//! `report` and `unlabeled` without manifests read today's cluster from a
//! real kube-apiserver (KUBECONFIG), pods included, and say what they say
//! from the same objects exported as YAML.
//!
//! Root-free: a control plane (etcd, kube-apiserver), no lab network. Needs
//! the binaries from `make tools`; without them it fails, it does not skip.

use std::path::Path;
use std::process::Command;

use bulkhead_e2e::binaries::ProjectBinaries;
use bulkhead_e2e::kubelet::{self, labels, NodeRegistration, PodRegistration};
use bulkhead_e2e::ControlPlane;
use serde_json::Value;

const MAPPING: &str = "apiVersion: bulkhead.dev/v1alpha1
kind: LabelMapping
metadata: {name: apps}
spec:
  rules:
  - match: {pods: {}}
    copyLabels: [{key: app, fromLabel: app}]
";

const DB: &str = "apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: db}
spec:
  scope: {selector: {matchLabels: {app: db}}}
  enforcement: full
  ingress:
  - {name: from-web, action: allow, peers: [{selector: {matchLabels: {app: web}}}], ports: [{protocol: TCP, port: 5432}]}
";

fn pod(name: &str, app: Option<&str>, addr: &str) -> PodRegistration {
    PodRegistration {
        namespace: "prod".into(),
        name: name.into(),
        node: "n1".into(),
        labels: app.map(|a| labels([("app", a)])).unwrap_or_default(),
        ports: Vec::new(),
        addresses: vec![addr.parse().expect("address")],
    }
}

/// Runs the CLI with the control plane's admin kubeconfig; stdout as JSON.
fn cli(plane: &ControlPlane, args: &[&str]) -> Value {
    let binary = ProjectBinaries::locate()
        .unwrap_or_else(|e| panic!("{e}"))
        .cli();
    let out = Command::new(&binary)
        .args(args)
        .env("KUBECONFIG", plane.admin_kubeconfig())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn report_and_unlabeled_read_the_live_cluster_as_they_read_its_manifests() {
    let plane = ControlPlane::start_temp().unwrap_or_else(|e| panic!("control plane: {e}"));
    let kubectl = plane.kubectl();
    kubelet::register_node(
        &kubectl,
        &NodeRegistration {
            name: "n1".into(),
            labels: Default::default(),
            addresses: vec!["172.30.0.1".parse().expect("address")],
            pod_cidrs: vec!["10.40.0.0/24".into()],
        },
    )
    .expect("node");
    kubelet::ensure_namespace(&kubectl, "prod", &Default::default()).expect("namespace");
    kubelet::create_pods(
        &kubectl,
        &[
            pod("web", Some("web"), "10.40.0.2"),
            pod("db", Some("db"), "10.40.0.3"),
            pod("legacy", None, "10.40.0.4"),
        ],
    )
    .expect("pods");
    kubectl.apply(MAPPING).expect("mapping");
    kubectl.apply(DB).expect("policy");

    let dir = tempfile::tempdir().expect("tempdir");
    let objects = kubectl
        .run(&[
            "get",
            "namespaces,nodes,pods,externalnodes,labelmappings,segmentationpolicies",
            "-A",
            "-o",
            "yaml",
        ])
        .expect("export");
    std::fs::write(dir.path().join("cluster.yaml"), objects).expect("write");
    let flows = dir.path().join("flows.jsonl");
    std::fs::write(&flows, "").expect("write");
    let flows = flows.to_string_lossy().to_string();
    let manifests = dir.path().join("cluster.yaml");
    let manifests = manifests.to_string_lossy().to_string();
    let window = [
        "--flows",
        flows.as_str(),
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2026-01-02T00:00:00Z",
    ];
    let run = |cmd: &str, path: Option<&str>| {
        let mut args = vec![cmd];
        args.extend(path);
        args.extend(window);
        args.extend(["-o", "json"]);
        cli(&plane, &args)
    };

    let live = run("report", None);
    let offline = run("report", Some(&manifests));
    // Four endpoints: web, db, legacy and n1; db alone in full mode.
    assert_eq!(
        live["coverage"]["endpoints"]["total"], 4,
        "{:#}",
        live["coverage"]
    );
    assert_eq!(
        live["coverage"]["endpoints"]["full"], 1,
        "{:#}",
        live["coverage"]
    );
    // Sources per destination: the three others and world.
    assert_eq!(live["exposure"]["sources"], 5, "{:#}", live["exposure"]);
    let db = live["exposure"]["applications"]
        .as_array()
        .expect("applications")
        .iter()
        .find(|a| a["name"] == "db")
        .unwrap_or_else(|| panic!("db in {:#}", live["exposure"]));
    assert_eq!(
        db["allPorts"]["reachable"], 1,
        "only web on TCP 5432: {db:#}"
    );
    assert_eq!(live["coverage"], offline["coverage"]);
    assert_eq!(live["exposure"], offline["exposure"]);
    assert_eq!(live["unlabeled"], offline["unlabeled"]);

    let live = run("unlabeled", None);
    let offline = run("unlabeled", Some(&manifests));
    let names: Vec<&str> = live["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(names.contains(&"prod/legacy"), "{live:#}");
    assert!(!names.contains(&"prod/web"), "{live:#}");
    assert_eq!(live, offline);
    assert!(Path::new(&manifests).exists());

    // An approved exception lets report reach db; it counts once the
    // operator's status says it is enforced (no operator runs here: the
    // status is written as the operator writes it), live and from its export.
    kubelet::create_pods(&kubectl, &[pod("report", Some("report"), "10.40.0.5")]).expect("pod");
    kubectl.apply(&report_exception()).expect("exception");
    let db_reachable = |report: &Value| {
        report["exposure"]["applications"]
            .as_array()
            .expect("applications")
            .iter()
            .find(|a| a["name"] == "db")
            .map(|db| db["allPorts"]["reachable"].clone())
    };
    let pending = run("report", None);
    assert_eq!(db_reachable(&pending), Some(1.into()), "not yet enforced");
    kubectl
        .run(&[
            "patch",
            "segmentationexception",
            "report-to-db",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status": {"state": "Active", "observedGeneration": 1}}"#,
        ])
        .expect("status");
    let objects = kubectl
        .run(&[
            "get",
            "namespaces,nodes,pods,externalnodes,labelmappings,segmentationpolicies,segmentationexceptions",
            "-A",
            "-o",
            "yaml",
        ])
        .expect("export");
    std::fs::write(&manifests, objects).expect("write");
    let live = run("report", None);
    let offline = run("report", Some(&manifests));
    assert_eq!(
        db_reachable(&live),
        Some(2.into()),
        "web and, by the exception, report: {:#}",
        live["exposure"]
    );
    assert_eq!(live["exposure"], offline["exposure"]);
}

/// An approved exception for report -> db TCP 5432, a week from now.
fn report_exception() -> String {
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 7);
    let expires = expires.round(jiff::Unit::Second).expect("round");
    format!(
        "apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationException
metadata: {{name: report-to-db}}
spec:
  scope: {{selector: {{matchLabels: {{app: db}}}}}}
  direction: ingress
  peers: [{{selector: {{matchLabels: {{app: report}}}}}}]
  ports: [{{protocol: TCP, port: 5432}}]
  requester: alice
  approvedBy: bob
  reason: the nightly export
  ticket: REQ-7
  expiresAt: \"{expires}\"
"
    )
}
