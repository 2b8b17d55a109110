//! Real packets between pods in the lab (root needed): a policy applied with
//! kubectl is enforced by the agents on the right nodes, for traffic on one
//! node and across nodes; label, mapping, policy and pod changes change what
//! passes; enforcement holds while the operator, the API server or an agent
//! is down, and catches up when they return.
//!
//! ```text
//!  node-1: prod/web-1 (web)  prod/api-1 (api)  dev/web-d1 (web)
//!  node-2: prod/api-2 (api)  dev/web-d2 (web)
//!  node-3: prod/db-3 (db)    prod/web-3 (web)
//!  every pod answers on TCP 8080 and 9090 and UDP 8080
//!  policy prod-api (full): prod apis accept TCP <port> from prod webs, nothing else
//! ```
//!
//! Agents run in cluster mode when `bulkhead-agent` has it; until then in
//! standalone mode, with the lab copying the published objects to their
//! files (`Lab::sync_agents`).

mod support;

use std::time::{Duration, Instant};

use bulkhead_e2e::lab::{Agents, Probe};
use bulkhead_e2e::observe;
use bulkhead_e2e::{Lab, LabSpec, Proto, Workload};
use support::workloads::*;
use support::*;

/// The mapping without env: no endpoint is `env=prod` any more.
const MAPPING_WITHOUT_ENV: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: LabelMapping
metadata: {name: workloads}
spec:
  rules:
  - name: app-only
    match: {pods: {}}
    copyLabels:
    - {key: app, fromLabel: app}
"#;

fn prod_api_policy(port: u16, mode: &str) -> String {
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
    ports: [{{protocol: TCP, port: {port}}}]
"#
    )
}

/// An expected outcome: `from -> to` over `proto` on `port` passes or not.
type Row = (&'static str, &'static str, Proto, u16, bool);

const TCP: Proto = Proto::Tcp;
const UDP: Proto = Proto::Udp;

/// Probes every row, over IPv4 and over IPv6, until all match (agents
/// program asynchronously), up to `SETTLE`; fails with the table of what
/// was seen otherwise.
fn assert_reachability(lab: &Lab, when: &str, rows: &[Row]) {
    let expected: Vec<(Probe, bool)> = rows
        .iter()
        .flat_map(|(from, to, proto, port, want)| {
            let probe = Probe::new(from, to, *proto, *port);
            [(probe.clone(), *want), (probe.v6(), *want)]
        })
        .collect();
    let probes: Vec<Probe> = expected.iter().map(|(p, _)| p.clone()).collect();
    let deadline = Instant::now() + SETTLE;
    loop {
        let results = ok(lab.probe_all(&probes), "probing");
        let wrong: Vec<String> = expected
            .iter()
            .zip(&results)
            .filter(|((_, want), got)| got.answered != *want)
            .map(|((p, want), got)| {
                format!(
                    "  {} -> {} {:?}/{} over IPv{}: expected {}, got {} ({})",
                    p.from,
                    p.to,
                    p.proto,
                    p.port,
                    if p.v6 { 6 } else { 4 },
                    if *want { "answer" } else { "no answer" },
                    if got.answered { "answer" } else { "no answer" },
                    got.detail
                )
            })
            .collect();
        if wrong.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let logs: String = lab
                .node_names()
                .iter()
                .map(|n| format!("--- agent {n}:\n{}\n", lab.agent_log(n)))
                .collect();
            panic!("{when}: reachability differs\n{}\n{logs}", wrong.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sync(lab: &Lab) {
    ok(lab.sync_agents(SETTLE), "waiting for the agents to program");
}

/// Waits until the operator published a rule map on `node` that satisfies `check`.
fn published(
    lab: &Lab,
    node: &str,
    what: &str,
    check: impl Fn(&bulkhead_api::NodeRuleMap) -> bool,
) {
    eventually(&format!("NodeRuleMap {node}: {what}"), || {
        Ok(observe::rule_map(&lab.kubectl(), node)?
            .filter(|m| check(m))
            .map(drop))
    });
}

fn governs_prod_api_on_port(map: &bulkhead_api::NodeRuleMap, port: u16) -> bool {
    map.spec
        .rules
        .iter()
        .any(|r| r.policy == "prod-api" && r.ports.iter().any(|p| p.first == port))
}

fn endpoint_mode(
    map: &bulkhead_api::NodeRuleMap,
    name: &str,
) -> Option<bulkhead_api::policy::EnforcementMode> {
    map.spec
        .endpoints
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.mode)
}

/// The policy is in place on node-1 and node-2 and every agent has it.
fn apply_policy(lab: &Lab, port: u16) {
    ok(
        lab.apply(&prod_api_policy(port, "full")),
        "applying the policy",
    );
    for node in ["node-1", "node-2"] {
        published(lab, node, &format!("prod-api on port {port}"), |m| {
            governs_prod_api_on_port(m, port)
        });
    }
    sync(lab);
}

/// With the policy on `port`: who reaches the prod apis.
fn policy_rows(port: u16) -> Vec<Row> {
    vec![
        ("prod/web-1", "prod/api-1", TCP, port, true), // same node, allowed
        ("prod/web-3", "prod/api-2", TCP, port, true), // across nodes, allowed
        ("dev/web-d1", "prod/api-1", TCP, port, false), // same node, not a prod web
        ("dev/web-d1", "prod/api-2", TCP, port, false), // across nodes
        ("dev/web-d2", "prod/api-2", TCP, port, false), // same node on node-2
        ("dev/web-d1", "prod/db-3", TCP, port, true),  // nothing governs db
    ]
}

#[test]
fn a_policy_applied_with_kubectl_is_enforced_on_the_right_nodes_and_follows_changes() {
    let mut lab = start_lab();
    ok(lab.apply(MAPPING), "applying the LabelMapping");
    published(&lab, "node-2", "prod/api-2 labeled", |m| {
        m.spec
            .endpoints
            .iter()
            .any(|e| e.name == "prod/api-2" && e.identity >= 256)
    });
    sync(&lab);
    // Visibility everywhere: everything passes.
    assert_reachability(
        &lab,
        "before any policy",
        &[
            ("dev/web-d1", "prod/api-1", TCP, 8080, true),
            ("dev/web-d2", "prod/api-2", TCP, 9090, true),
            ("prod/api-1", "prod/db-3", TCP, 8080, true),
            ("dev/web-d1", "prod/api-2", UDP, 8080, true),
        ],
    );

    apply_policy(&lab, 8080);
    let mut rows = policy_rows(8080);
    rows.extend([
        ("prod/web-1", "prod/api-2", TCP, 9090, false), // full: default deny on other ports
        ("prod/web-1", "prod/api-1", UDP, 8080, false), // and other protocols
        ("prod/api-1", "prod/db-3", TCP, 8080, false),  // full: the api's egress has no allow
        ("prod/web-3", "prod/db-3", TCP, 8080, true),   // same node, ungoverned
    ]);
    assert_reachability(&lab, "prod-api on 8080", &rows);
    let policy = eventually("prod-api Ready on 2/2 nodes", || {
        Ok(observe::policy(&lab.kubectl(), "prod-api")?.filter(|p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.nodes_total == 2 && s.nodes_programmed == 2)
        }))
    });
    assert_eq!(
        policy.status.and_then(|s| s.nodes_summary).as_deref(),
        Some("2/2")
    );

    // A pod label: prod/web-1 becomes a batch job and loses its access.
    ok(
        lab.relabel_pod("prod", "web-1", &[("app", Some("batch"))]),
        "relabeling a pod",
    );
    sync(&lab);
    assert_reachability(
        &lab,
        "prod/web-1 relabeled app=batch",
        &[
            ("prod/web-1", "prod/api-1", TCP, 8080, false),
            ("prod/web-1", "prod/api-2", TCP, 8080, false),
            ("prod/web-3", "prod/api-1", TCP, 8080, true),
        ],
    );
    ok(
        lab.relabel_pod("prod", "web-1", &[("app", Some("web"))]),
        "relabeling back",
    );

    // The LabelMapping: without env, nothing is a prod api; the apis fall
    // back to visibility and everything passes again.
    ok(lab.apply(MAPPING_WITHOUT_ENV), "changing the LabelMapping");
    published(&lab, "node-2", "prod/api-2 out of scope", |m| {
        endpoint_mode(m, "prod/api-2") == Some(bulkhead_api::policy::EnforcementMode::Visibility)
    });
    sync(&lab);
    assert_reachability(
        &lab,
        "mapping without env",
        &[
            ("dev/web-d1", "prod/api-1", TCP, 8080, true),
            ("dev/web-d2", "prod/api-2", TCP, 9090, true),
        ],
    );
    ok(lab.apply(MAPPING), "restoring the LabelMapping");
    published(&lab, "node-2", "prod/api-2 in scope again", |m| {
        endpoint_mode(m, "prod/api-2") == Some(bulkhead_api::policy::EnforcementMode::Full)
    });
    sync(&lab);
    assert_reachability(&lab, "mapping restored", &policy_rows(8080));

    // The policy: port 8080 becomes 9090.
    apply_policy(&lab, 9090);
    let mut rows = policy_rows(9090);
    rows.push(("prod/web-3", "prod/api-2", TCP, 8080, false));
    assert_reachability(&lab, "prod-api moved to 9090", &rows);

    // Pods created: a prod web on node-2 gets in on its node and across
    // nodes; a dev web on node-3 does not.
    ok(
        lab.add_pod(&Workload::new(
            "prod",
            "web-n2",
            "node-2",
            &[("app", "web")],
        )),
        "adding a pod",
    );
    ok(
        lab.add_pod(&Workload::new("dev", "web-n3", "node-3", &[("app", "web")])),
        "adding a pod",
    );
    listen(&mut lab, "prod", "web-n2");
    sync(&lab);
    assert_reachability(
        &lab,
        "new pods",
        &[
            ("prod/web-n2", "prod/api-2", TCP, 9090, true),
            ("prod/web-n2", "prod/api-1", TCP, 9090, true),
            ("dev/web-n3", "prod/api-1", TCP, 9090, false),
            ("dev/web-n3", "prod/api-2", TCP, 9090, false),
        ],
    );

    // A pod deleted, and its address reused by a dev pod: the address must
    // not keep the old pod's identity anywhere.
    let old = ok(lab.pod("prod", "web-n2"), "pod").address;
    ok(lab.delete_pod("prod", "web-n2"), "deleting a pod");
    let reused = ok(
        lab.add_pod(&Workload::new("dev", "web-r2", "node-2", &[("app", "web")])),
        "adding a pod",
    );
    assert_eq!(reused.address, old, "the lab reuses the freed address");
    sync(&lab);
    assert_reachability(
        &lab,
        "address reused by a dev pod",
        &[
            ("dev/web-r2", "prod/api-2", TCP, 9090, false),
            ("dev/web-r2", "prod/api-1", TCP, 9090, false),
        ],
    );
}

#[test]
fn enforcement_holds_while_the_operator_the_api_server_or_an_agent_is_down() {
    let mut lab = start_lab();
    ok(lab.apply(MAPPING), "applying the LabelMapping");
    apply_policy(&lab, 8080);
    let rows = policy_rows(8080);
    assert_reachability(&lab, "with the policy", &rows);

    // The operator stops: enforcement holds, and a change waits for it.
    ok(lab.stop_operator("a"), "stopping the operator");
    assert_reachability(&lab, "operator stopped", &rows);
    ok(
        lab.relabel_pod("dev", "web-d1", &[("app", Some("db"))]),
        "relabel",
    );
    ok(
        lab.apply(&prod_api_policy(8080, "full").replace("app: web, env: prod", "env: dev")),
        "changing the policy",
    );
    assert_reachability(&lab, "operator stopped, policy changed", &rows);
    ok(lab.start_operator("a"), "starting the operator");
    for node in ["node-1", "node-2"] {
        published(&lab, node, "the changed policy", |m| {
            m.metadata.generation > Some(1)
        });
    }
    sync(&lab);
    assert_reachability(
        &lab,
        "operator back: dev may call the apis, prod webs may not",
        &[
            ("dev/web-d1", "prod/api-1", TCP, 8080, true),
            ("dev/web-d2", "prod/api-2", TCP, 8080, true),
            ("prod/web-1", "prod/api-1", TCP, 8080, false),
            ("prod/web-3", "prod/api-2", TCP, 8080, false),
        ],
    );
    ok(
        lab.apply(&prod_api_policy(8080, "full")),
        "restoring the policy",
    );
    for node in ["node-1", "node-2"] {
        published(&lab, node, "the restored policy", |m| {
            governs_prod_api_on_port(m, 8080)
        });
    }
    sync(&lab);
    ok(
        lab.relabel_pod("dev", "web-d1", &[("app", Some("web"))]),
        "relabel back",
    );
    assert_reachability(&lab, "policy restored", &rows);

    // The API server stops: the agents keep their maps.
    ok(lab.plane_mut().stop_api_server(), "stopping the API server");
    assert_reachability(&lab, "API server stopped", &rows);
    // The outage itself (not a wait for a fact): 5 s more without an API server.
    std::thread::sleep(Duration::from_secs(5));
    assert_reachability(&lab, "API server stopped for a while", &rows);
    ok(
        lab.plane_mut().start_api_server(),
        "starting the API server",
    );
    apply_policy(&lab, 9090);
    assert_reachability(
        &lab,
        "API server back, policy moved to 9090",
        &policy_rows(9090),
    );

    // An agent stops: its programs stay attached with the last maps.
    ok(lab.stop_agent("node-2"), "stopping the agent of node-2");
    assert_reachability(&lab, "agent of node-2 stopped", &policy_rows(9090));
    ok(lab.start_agent("node-2"), "starting it again");
    apply_policy(&lab, 8080);
    assert_reachability(
        &lab,
        "agent of node-2 back, policy on 8080",
        &policy_rows(8080),
    );
}

#[test]
fn visibility_mode_drops_nothing_and_reports_what_full_would_drop() {
    let lab = start_lab();
    ok(lab.apply(MAPPING), "applying the LabelMapping");
    ok(
        lab.apply(&prod_api_policy(8080, "visibility")),
        "applying the policy in visibility",
    );
    published(&lab, "node-1", "prod-api", |m| {
        governs_prod_api_on_port(m, 8080)
    });
    sync(&lab);
    assert_reachability(
        &lab,
        "visibility",
        &[
            ("dev/web-d1", "prod/api-1", TCP, 8080, true),
            ("prod/web-1", "prod/api-1", TCP, 8080, true),
        ],
    );
    let api = ok(lab.pod("prod", "api-1"), "pod").address.to_string();
    let dev = ok(lab.pod("dev", "web-d1"), "pod").address.to_string();
    let flows = lab
        .state()
        .root()
        .join("agents")
        .join("node-1")
        .join("flows.jsonl");
    let record = eventually(
        "a would-be deny of dev/web-d1 -> prod/api-1 in node-1's flow log",
        || {
            let text = std::fs::read_to_string(&flows).unwrap_or_default();
            Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|r| {
                    r["source"]["address"] == dev.as_str()
                        && r["destination"]["address"] == api.as_str()
                        && r["port"] == 8080
                        && r["wouldVerdict"] == "deny"
                }))
        },
    );
    assert_eq!(
        record["verdict"], "allow",
        "visibility drops nothing: {record}"
    );
    assert_eq!(
        (
            &record["schema"],
            &record["source"]["name"],
            &record["destination"]["name"],
            &record["destination"]["labels"]["app"],
        ),
        (
            &serde_json::json!("flow/v1"),
            &serde_json::json!("dev/web-d1"),
            &serde_json::json!("prod/api-1"),
            &serde_json::json!("api"),
        ),
        "named and labeled: {record}"
    );
}

/// Two policies that exercise the verdict order: prod apis in full mode
/// take TCP 8080 from prod webs; dev, in selective mode, may not send TCP
/// 9090 to prod webs (an explicit deny, enforced although dev's default lets
/// the rest through).
const SIMULATED_POLICIES: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: prod-api}
spec:
  scope: {selector: {matchLabels: {app: api, env: prod}}}
  enforcement: full
  ingress:
  - {name: from-prod-web, action: allow, peers: [{selector: {matchLabels: {app: web, env: prod}}}], ports: [{protocol: TCP, port: 8080}]}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: dev-no-prod-web-9090}
spec:
  scope: {selector: {matchLabels: {env: dev}}}
  enforcement: selective
  egress:
  - {name: not-prod-web-9090, action: deny, peers: [{selector: {matchLabels: {app: web, env: prod}}}], ports: [{protocol: TCP, port: 9090}]}
"#;

#[test]
fn real_packets_between_every_pair_of_pods_agree_with_kubectl_bulkhead_simulate() {
    let mut spec = LabSpec::new(3).with_default_workloads(4);
    spec.agents = Agents::Cluster;
    spec.listen = vec![8080, 9090];
    let lab = start(spec);
    ok(lab.apply(MAPPING), "applying the LabelMapping");
    ok(lab.apply(SIMULATED_POLICIES), "applying the policies");
    for node in lab.node_names() {
        published(&lab, &node, "both policies", |m| {
            ["prod-api", "dev-no-prod-web-9090"]
                .iter()
                .all(|p| m.spec.rules.iter().any(|r| r.policy == *p))
        });
    }
    sync(&lab);
    let pods: Vec<bulkhead_e2e::LabPod> = lab.pods().cloned().collect();
    for (proto, port, v6) in [
        (TCP, 8080, false),
        (TCP, 9090, false),
        (UDP, 8080, false),
        (TCP, 8080, true),
    ] {
        let simulated = ok(simulated_matrix(&lab, proto, port), "simulating");
        assert_eq!(
            simulated.len(),
            pods.len() * (pods.len() - 1),
            "simulate covers every pair"
        );
        let (mut allowed, mut denied) = (0, 0);
        for pass in simulated.values() {
            if *pass {
                allowed += 1
            } else {
                denied += 1
            }
        }
        assert!(
            allowed > 0 && denied > 0,
            "{proto:?}/{port}: a matrix worth comparing ({allowed} allowed, {denied} denied)"
        );
        let probes: Vec<Probe> = simulated
            .keys()
            .map(|(from, to)| Probe {
                from: from.clone(),
                to: to.clone(),
                proto,
                port,
                v6,
            })
            .collect();
        let deadline = Instant::now() + SETTLE;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let results = ok(lab.probe_all(&probes), "probing");
            let differ: Vec<String> = probes
                .iter()
                .zip(&results)
                .filter(|(p, r)| simulated[&(p.from.clone(), p.to.clone())] != r.answered)
                .map(|(p, r)| {
                    format!(
                        "  {} -> {}: simulate says {}, the packet {}",
                        p.from,
                        p.to,
                        if r.answered { "deny" } else { "allow" },
                        if r.answered {
                            "passed"
                        } else {
                            "got no answer"
                        }
                    )
                })
                .collect();
            if differ.is_empty() {
                break;
            }
            eprintln!(
                "{proto:?}/{port} (IPv6: {v6}): round {attempts}: {} pairs differ:\n{}",
                differ.len(),
                differ.join("\n")
            );
            assert!(
                Instant::now() < deadline,
                "{proto:?}/{port} (IPv6: {v6}): real packets differ from kubectl-bulkhead simulate on {} of {} pairs:\n{}",
                differ.len(),
                probes.len(),
                differ.join("\n")
            );
        }
    }
}

#[test]
fn established_connections_that_a_new_policy_denies_stop_and_the_allowed_ones_go_on() {
    let lab = start_lab();
    ok(lab.apply(MAPPING), "applying the LabelMapping");
    ok(
        lab.apply(&prod_api_policy(8080, "visibility")),
        "applying the policy in visibility",
    );
    published(&lab, "node-2", "prod-api", |m| {
        governs_prod_api_on_port(m, 8080)
    });
    sync(&lab);
    let across = ok(lab.converse("dev/web-d1", "prod/api-2", 8080), "connecting");
    let same_node = ok(lab.converse("dev/web-d2", "prod/api-2", 8080), "connecting");
    let allowed = ok(lab.converse("prod/web-3", "prod/api-2", 8080), "connecting");
    for c in [&across, &same_node, &allowed] {
        ok(
            c.wait_answering(5, SETTLE),
            "a conversation in visibility mode",
        );
    }

    ok(
        lab.apply(&prod_api_policy(8080, "full")),
        "enforcing the policy",
    );
    published(&lab, "node-2", "prod/api-2 in full mode", |m| {
        endpoint_mode(m, "prod/api-2") == Some(bulkhead_api::policy::EnforcementMode::Full)
    });
    sync(&lab);
    ok(
        across.wait_silent(5, SETTLE),
        "dev/web-d1 -> prod/api-2 (across nodes) must stop",
    );
    ok(
        same_node.wait_silent(5, SETTLE),
        "dev/web-d2 -> prod/api-2 (same node) must stop",
    );
    ok(
        allowed.wait_answering(10, SETTLE),
        "prod/web-3 -> prod/api-2 is allowed and goes on",
    );
}
