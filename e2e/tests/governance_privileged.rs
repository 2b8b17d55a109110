//! Governance end to end (root needed), on real packets: a flow blocked in
//! full mode, and `kubectl bulkhead why` names the owner of the policy that
//! blocks it; an exception requested with `exception request`, refused for
//! self-approval by the API server, approved by another person; traffic
//! flows; at `expiresAt` it stops, within 2 s; `recertify` lists the rule
//! nobody used (rule hits from the datapath, through the NodeRuleMaps'
//! status to the policy's), and an idle cluster writes no status.
//!
//! ```text
//!  node-1: prod/report-1 (report)      node-2: prod/db-2 (db, full mode)
//!  policy db: owner payments; from report only TCP 9100 (metrics, used)
//!             and TCP 7777 (legacy-backup, never used)
//!  exception report-db: ingress to app=db from app=report on TCP 5432
//! ```

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use bulkhead_e2e::kubeconfig::Impersonation;
use bulkhead_e2e::lab::{Agents, Probe};
use bulkhead_e2e::{kubelet, Lab, LabSpec, Workload};
use support::*;

const MAPPING: &str = include_str!("../fixtures/workloads-mapping.yaml");

const POLICY: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: db}
spec:
  scope: {selector: {matchLabels: {app: db}}}
  enforcement: full
  owner: payments
  contact: payments-oncall@example.com
  reviewBy: "2099-01-01"
  ingress:
  - name: metrics
    action: allow
    peers: [{selector: {matchLabels: {app: report}}}]
    ports: [{protocol: TCP, port: 9100}]
  - name: legacy-backup
    action: allow
    peers: [{selector: {matchLabels: {app: report}}}]
    ports: [{protocol: TCP, port: 7777}]
"#;

fn repo_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The plugin as `user` (impersonated by the admin's credentials).
fn cli(lab: &Lab, user: &str, groups: &[&str], args: &[&str]) -> (bool, String, String) {
    let who = Impersonation {
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    };
    let config = ok(
        lab.plane().impersonating_kubeconfig(user, &who),
        "kubeconfig",
    );
    let url = lab.collector().expect("collector").url();
    let out = Command::new(lab.project_binaries().cli())
        .args(args)
        .env("KUBECONFIG", &config)
        .env("BULKHEAD_COLLECTOR", &url)
        .output()
        .expect("kubectl-bulkhead runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn answered(lab: &Lab, probe: &Probe) -> bulkhead_e2e::Result<bool> {
    Ok(lab.probe_all(std::slice::from_ref(probe))?[0].answered)
}

#[test]
fn a_blocked_flow_its_owner_an_approved_exception_and_its_expiry() {
    let mut spec = LabSpec::new(2);
    spec.agents = Agents::Cluster;
    spec.namespaces = vec![("prod".into(), kubelet::labels([("env", "prod")]))];
    spec.workloads = vec![
        Workload::new("prod", "report-1", "node-1", &[("app", "report")]),
        Workload::new("prod", "db-2", "node-2", &[("app", "db")]),
    ];
    // Rule hits gathered every second (the chart's default is a minute).
    spec.operator_args = vec!["--hits-interval=1s".into()];
    let mut lab = start(spec);
    ok(lab.listen("prod", "db-2", &[5432, 9100], &[]), "a listener");
    let k = lab.kubectl();
    for (what, yaml) in [
        ("mapping", MAPPING.to_string()),
        ("policy", POLICY.to_string()),
        ("exception RBAC", repo_file("deploy/rbac/exceptions.yaml")),
        ("admission policy", repo_file("deploy/admission/exception-approval.yaml")),
        (
            "requesters",
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: app-teams-request-exceptions}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: bulkhead-exception-requester}
subjects: [{kind: Group, apiGroup: rbac.authorization.k8s.io, name: app-teams}]
"#
            .to_string(),
        ),
    ] {
        ok(k.run_with_stdin(&["apply", "-f", "-"], &yaml), what);
    }
    ok(lab.sync_agents(Duration::from_secs(30)), "agents in sync");
    let probe = Probe::tcp("prod/report-1", "prod/db-2", 5432);
    // The metrics rule is used; nobody ever connects to 7777.
    let metrics = Probe::tcp("prod/report-1", "prod/db-2", 9100);
    assert!(ok(answered(&lab, &metrics), "probing"), "report → db:9100");

    // 1. Blocked, and `why` names the owner.
    assert!(
        !ok(answered(&lab, &probe), "probing"),
        "full mode blocks report → db"
    );
    let why = eventually("the denied flow in the collector, explained", || {
        let (done, out, _) = cli(
            &lab,
            "alice",
            &["app-teams"],
            &[
                "why",
                "--from",
                "prod/report-1",
                "--to",
                "prod/db-2",
                "--port",
                "5432",
                "--since",
                "1h",
            ],
        );
        Ok(done.then_some(out))
    });
    for words in [
        "denied:",
        "policy db: owner payments, contact payments-oncall@example.com",
        "exception request",
    ] {
        assert!(why.contains(words), "{words:?} not in:\n{why}");
    }

    // 2. Requested (what-if first), refused for self-approval, approved.
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(90);
    let expires = expires
        .round(jiff::Unit::Second)
        .expect("round")
        .to_string();
    let (done, out, err) = cli(
        &lab,
        "alice",
        &["app-teams"],
        &[
            "exception",
            "request",
            "report-db",
            "--scope",
            "app=db",
            "--peer",
            "app=report",
            "--port",
            "5432/TCP",
            "--reason",
            "quarterly report",
            "--ticket",
            "REQ-1",
            "--expires",
            &expires,
            "--since",
            "1h",
        ],
    );
    assert!(done, "alice requests: {out}\n{err}");
    assert!(out.contains("what-if of exception report-db"), "{out}");
    assert!(out.contains("pending approval"), "{out}");
    let (done, _, err) = cli(
        &lab,
        "alice",
        &["app-teams"],
        &["exception", "approve", "report-db"],
    );
    assert!(!done, "alice approved her own exception");
    assert!(err.contains("cannot approve"), "{err}");
    assert!(
        !ok(answered(&lab, &probe), "probing"),
        "pending: still blocked"
    );
    let (done, out, err) = cli(
        &lab,
        "bob",
        &["bulkhead:exception-approvers"],
        &["exception", "approve", "report-db"],
    );
    assert!(done, "bob approves: {out}\n{err}");

    // 3. Traffic flows.
    eventually("the exception enforced", || {
        lab.sync_agents(Duration::from_secs(30))?;
        Ok(answered(&lab, &probe)?.then_some(()))
    });
    let (_, list, _) = cli(
        &lab,
        "bob",
        &["bulkhead:exception-approvers"],
        &["exception", "list"],
    );
    assert!(
        list.contains("report-db") && list.contains("Active") && list.contains("bob"),
        "{list}"
    );

    // 4. Expiry stops it, within 2 s of expiresAt.
    let at: jiff::Timestamp = expires.parse().expect("time");
    let wait = at.duration_since(jiff::Timestamp::now());
    assert!(
        wait.is_positive(),
        "the exception expired {wait:#} before the test could watch its expiry (request to enforcement took too long)"
    );
    std::thread::sleep(Duration::try_from(wait).unwrap_or_default());
    let started = Instant::now();
    let mut stopped = None;
    while started.elapsed() < Duration::from_secs(10) {
        // When the refused attempt began, measured from expiresAt itself: a
        // refused probe waits out its timeout.
        let tried =
            Duration::try_from(jiff::Timestamp::now().duration_since(at)).unwrap_or_default();
        if !ok(answered(&lab, &probe), "probing") {
            stopped = Some(tried);
            break;
        }
    }
    let stopped = stopped.expect("the exception stopped being enforced within 10 s of expiresAt");
    println!("packets stopped {stopped:?} after expiresAt");
    assert!(
        stopped <= Duration::from_secs(2),
        "stopped {stopped:?} after expiresAt, not within 2 s"
    );
    let state = eventually("the Expired state", || {
        let s = k.run(&[
            "get",
            "segex",
            "report-db",
            "-o",
            "jsonpath={.status.state}",
        ])?;
        Ok((s == "Expired").then_some(s))
    });
    assert_eq!(state, "Expired");
    let events = ok(
        k.run(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            "involvedObject.name=report-db",
        ]),
        "events",
    );
    assert!(events.contains("Expired"), "{events}");

    // 5. `recertify` lists the rule nobody used, and not the one in use.
    step5_recertify_lists_the_unused_rule(&mut lab);
}

fn step5_recertify_lists_the_unused_rule(lab: &mut Lab) {
    let step = Instant::now();
    let k = lab.kubectl();
    let hits = eventually("the metrics rule's hits in the policy's status", || {
        let st = k.run(&[
            "get",
            "segpol",
            "db",
            "-o",
            "jsonpath={.status.ruleHits[?(@.rule==\"metrics\")].hits}",
        ])?;
        Ok(st.trim().parse::<u64>().ok().filter(|h| *h >= 1))
    });
    println!("rule metrics: {hits} hits");
    let (done, json, err) = cli(
        lab,
        "auditor",
        &["system:masters"],
        &["recertify", "--unused-for", "90d", "-o", "json"],
    );
    assert!(done, "recertify: {err}");
    let found: serde_json::Value = serde_json::from_str(&json).expect("recertify -o json");
    let rules: Vec<(&str, &str)> = found
        .as_array()
        .expect("a list")
        .iter()
        .map(|f| {
            (
                f["policy"].as_str().unwrap_or(""),
                f["rule"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(rules, [("db", "legacy-backup")], "{json}");
    assert_eq!(
        found[0]["reasons"],
        serde_json::json!(["never-hit"]),
        "{json}"
    );
    assert_eq!(found[0]["owner"], "payments", "{json}");
    let (_, table, _) = cli(
        lab,
        "auditor",
        &["system:masters"],
        &["recertify", "--unused-for", "90d"],
    );
    assert!(
        table.contains("legacy-backup") && table.contains("never-hit"),
        "{table}"
    );
    let (_, csv, _) = cli(
        lab,
        "auditor",
        &["system:masters"],
        &["recertify", "-o", "csv"],
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with("db,legacy-backup,ingress[1],never-hit,0,")),
        "{csv}"
    );

    // The metric counts it too.
    let name = lab.operator_names()[0].clone();
    let operator = ok(lab.operator(&name), "operator").metrics_addr;
    let text = |addr| {
        ok(
            bulkhead_e2e::operator::http_get(addr, "/metrics"),
            "/metrics",
        )
        .1
    };
    let never = bulkhead_e2e::observe::metric_sum_where(
        &text(operator),
        "bulkhead_operator_rules_recertify",
        "reason=\"never_hit\"",
    );
    assert_eq!(
        never, 1.0,
        "bulkhead_operator_rules_recertify{{reason=\"never_hit\"}}"
    );

    // Idle: three hits passes of the operator and three reads of each
    // agent later, no status moved (resourceVersions unchanged).
    ok(lab.sync_agents(Duration::from_secs(30)), "agents in sync");
    let versions = || -> Vec<String> {
        let mut v = vec![ok(
            k.run(&[
                "get",
                "segpol",
                "db",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ]),
            "rv",
        )];
        for node in ["node-1", "node-2"] {
            v.push(ok(
                k.run(&[
                    "get",
                    "nrm",
                    node,
                    "-o",
                    "jsonpath={.metadata.resourceVersion}",
                ]),
                "rv",
            ));
        }
        v
    };
    let agents: Vec<std::net::SocketAddr> = ["node-1", "node-2"]
        .iter()
        .map(|n| {
            let address = ok(lab.node(n), "node").address;
            std::net::SocketAddr::new(
                std::net::IpAddr::V4(address),
                bulkhead_e2e::agent::AGENT_METRICS_PORT,
            )
        })
        .collect();
    let ticks = || -> Vec<f64> {
        let mut t = vec![bulkhead_e2e::observe::metric_sum_where(
            &text(operator),
            "bulkhead_operator_passes_total",
            "kind=\"hits\"",
        )];
        for a in &agents {
            t.push(bulkhead_e2e::observe::metric_sum(
                &text(*a),
                "bulkhead_agent_rule_hits_reads_total",
            ));
        }
        t
    };
    let (before, t0) = (versions(), ticks());
    let started = Instant::now();
    eventually(
        "three hits passes of the operator and reads of every agent",
        || {
            let now = ticks();
            Ok(now
                .iter()
                .zip(&t0)
                .all(|(n, b)| *n >= b + 3.0)
                .then_some(()))
        },
    );
    assert_eq!(
        versions(),
        before,
        "an idle cluster wrote a status (policy db, node-1, node-2)"
    );
    println!("idle for {:?}: no status writes", started.elapsed());
    println!("step 5 took {:?}", step.elapsed());
}
