//! Hosts outside the cluster (root needed): two external hosts joined with
//! `kubectl bulkhead externalnode add`, each running its own agent with its
//! own ServiceAccount token, enforce policy with real packets.
//!
//! ```text
//!  node-1: prod/web-1 (app=web)     node-2: prod/api-2 (app=api)     every pod answers TCP 8080
//!  xn-1 (app=legacy-db): eth0 on the bridge, eth1 to its segment (172.30.L.6, world)
//!        answers TCP 22 (SSH), 5432, 8080, 9000 on every address
//!  xn-2 (app=batch): answers TCP 22, 8080, 8081, 8082; its own iptables drops 8081
//!  LabelMapping: app from the ExternalNode labels (host=xn-1 -> legacy-db, host=xn-2 -> batch)
//!  legacy-db (full): in  from web TCP 5432, from the segment peer TCP 9000; out to api TCP 8080
//!  api (full):       in  from legacy-db TCP 8080
//!  batch (full):     in  from web TCP 8080, 8081
//! ```

mod support;

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use bulkhead_e2e::lab::LAB_LEASE_DURATION_SECS;
use bulkhead_e2e::process::Process;
use bulkhead_e2e::traffic::{self, Ports, Proto};
use bulkhead_e2e::{kubelet, Lab, LabSpec, Workload};
use support::*;

const MAPPING: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: LabelMapping
metadata: {name: workloads}
spec:
  rules:
  - name: pods
    match: {pods: {}}
    copyLabels:
    - {key: app, fromLabel: app}
  - name: legacy-db
    match: {externalNodes: {matchLabels: {host: xn-1}}}
    labels: {app: legacy-db}
  - name: batch
    match: {externalNodes: {matchLabels: {host: xn-2, tier: external}}}
    labels: {app: batch}
"#;

fn policies(segment_peer: &str) -> String {
    format!(
        r#"
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {{name: legacy-db}}
spec:
  scope: {{selector: {{matchLabels: {{app: legacy-db}}}}}}
  enforcement: full
  ingress:
  - {{name: from-web, action: allow, peers: [{{selector: {{matchLabels: {{app: web}}}}}}], ports: [{{protocol: TCP, port: 5432}}]}}
  - {{name: from-segment, action: allow, peers: [{{cidr: "{segment_peer}/32"}}], ports: [{{protocol: TCP, port: 9000}}]}}
  egress:
  - {{name: to-api, action: allow, peers: [{{selector: {{matchLabels: {{app: api}}}}}}], ports: [{{protocol: TCP, port: 8080}}]}}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {{name: api}}
spec:
  scope: {{selector: {{matchLabels: {{app: api}}}}}}
  enforcement: full
  ingress:
  - {{name: from-legacy-db, action: allow, peers: [{{selector: {{matchLabels: {{app: legacy-db}}}}}}], ports: [{{protocol: TCP, port: 8080}}]}}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {{name: batch}}
spec:
  scope: {{selector: {{matchLabels: {{app: batch}}}}}}
  enforcement: full
  ingress:
  - {{name: from-web, action: allow, peers: [{{selector: {{matchLabels: {{app: web}}}}}}], ports: [{{protocol: TCP, port: 8080, endPort: 8081}}]}}
"#
    )
}

/// Where a probe starts: a pod (namespace/name) or a namespace by name.
#[derive(Clone, Copy, Debug)]
enum From<'a> {
    Pod(&'a str),
    Netns(&'a str),
}

struct Row<'a> {
    what: &'a str,
    from: From<'a>,
    to: IpAddr,
    port: u16,
    answers: bool,
}

fn netns_of(lab: &Lab, from: From<'_>) -> String {
    match from {
        From::Netns(ns) => ns.to_owned(),
        From::Pod(key) => lab
            .pods()
            .find(|p| p.key() == key)
            .unwrap_or_else(|| panic!("no pod {key}"))
            .netns
            .clone(),
    }
}

/// Probes every row until all match, up to `SETTLE`.
fn assert_rows(lab: &Lab, when: &str, rows: &[Row<'_>]) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut wrong = Vec::new();
        for row in rows {
            let ns = netns_of(lab, row.from);
            let got = ok(
                traffic::probe(
                    &ns,
                    Proto::Tcp,
                    row.to,
                    row.port,
                    Duration::from_millis(700),
                ),
                "probing",
            );
            if got.answered != row.answers {
                wrong.push(format!(
                    "  {} ({:?} -> {}:{}): expected {}, got {} ({})",
                    row.what,
                    row.from,
                    row.to,
                    row.port,
                    if row.answers { "answer" } else { "no answer" },
                    if got.answered { "answer" } else { "no answer" },
                    got.detail
                ));
            }
        }
        if wrong.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let logs: String = ["xn-1", "xn-2"]
                .iter()
                .map(|n| format!("--- agent {n}:\n{}\n", lab.agent_log(n)))
                .collect();
            panic!("{when}: reachability differs\n{}\n{logs}", wrong.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn listen(lab: &Lab, name: &str, ns: &str, tcp: &[u16]) -> Process {
    let ports = Ports {
        tcp: tcp.to_vec(),
        ..Ports::default()
    };
    ok(
        traffic::start_listener(
            lab.state(),
            name,
            ns,
            &ports,
            bulkhead_e2e::process::Lifetime::Attached,
        ),
        "starting a listener",
    )
}

/// kubectl with nothing but the host's own token from its agent.yaml.
fn as_host(lab: &Lab, host: &str, args: &[&str]) -> (bool, String) {
    let text = std::fs::read_to_string(lab.external_config(host)).expect("agent.yaml");
    let config: serde_yaml::Value = serde_yaml::from_str(&text).expect("agent.yaml is YAML");
    let token = config["token"].as_str().expect("a token in agent.yaml");
    let server = config["api-server"]
        .as_str()
        .expect("api-server in agent.yaml");
    let out = Command::new(&lab.plane().binaries().kubectl)
        .arg("--kubeconfig=/dev/null")
        .arg(format!("--server={server}"))
        .arg(format!(
            "--certificate-authority={}",
            lab.plane().record().ca_cert.display()
        ))
        .arg(format!("--token={token}"))
        .args(args)
        .output()
        .expect("running kubectl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn iptables(ns: &str, args: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "iptables"])
        .args(args.split_whitespace())
        .output()
        .expect("running iptables (the host firewall of the test)");
    assert!(
        out.status.success(),
        "iptables {args} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn policy_nodes_programmed(lab: &Lab, policy: &str) -> (u64, String) {
    let v = ok(
        lab.kubectl().json(&["get", "segmentationpolicy", policy]),
        "reading the policy",
    );
    (
        v["status"]["nodesProgrammed"].as_u64().unwrap_or(0),
        v["status"]["nodesSummary"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

#[test]
fn external_hosts_enforce_policy_with_their_own_credentials_and_heartbeats() {
    let mut spec = LabSpec::new(2);
    spec.namespaces = vec![("prod".into(), kubelet::labels([("env", "prod")]))];
    spec.workloads = vec![
        Workload::new("prod", "web-1", "node-1", &[("app", "web")]),
        Workload::new("prod", "api-2", "node-2", &[("app", "api")]),
    ];
    spec.listen = vec![8080];
    spec.collector = false;
    spec.external_nodes = 2;
    let mut lab = start(spec);
    let xn1 = lab.external_host("xn-1").expect("xn-1").clone();
    let xn2 = lab.external_host("xn-2").expect("xn-2").clone();
    let api2: IpAddr = lab
        .pods()
        .find(|p| p.key() == "prod/api-2")
        .expect("api-2")
        .address
        .into();
    let _l1 = listen(&lab, "xn-1", &xn1.netns, &[22, 5432, 8080, 9000]);
    let _l2 = listen(&lab, "xn-2", &xn2.netns, &[22, 8080, 8081, 8082]);
    for host in ["xn-1", "xn-2"] {
        ok(
            lab.wait_external_ready(host, "True", SETTLE),
            "the host turning Ready",
        );
    }
    let v = ok(lab.kubectl().json(&["get", "externalnode", "xn-1"]), "xn-1");
    assert_eq!(
        v["status"]["interfaces"],
        serde_json::json!(["eth0", "eth1"]),
        "every interface of the host: {v}"
    );
    assert_eq!(v["status"]["agentVersion"], env!("CARGO_PKG_VERSION"));

    // The host's own firewall: xn-2 drops TCP 8081 in INPUT.
    iptables(&xn2.netns, "-A INPUT -p tcp --dport 8081 -j DROP");

    let web = From::Pod("prod/web-1");
    let segment = From::Netns(&xn1.segment_netns);
    let h1 = IpAddr::V4(xn1.address);
    let h1_eth1 = IpAddr::V4(xn1.segment_address);
    let h2 = IpAddr::V4(xn2.address);
    // Visibility first: every listener answers but the firewalled port.
    assert_rows(
        &lab,
        "before any policy",
        &[
            Row {
                what: "web to legacy-db 8080",
                from: web,
                to: h1,
                port: 8080,
                answers: true,
            },
            Row {
                what: "segment to xn-1 eth1 8080",
                from: segment,
                to: h1_eth1,
                port: 8080,
                answers: true,
            },
            Row {
                what: "xn-2's iptables drops 8081",
                from: web,
                to: h2,
                port: 8081,
                answers: false,
            },
        ],
    );

    ok(lab.apply(MAPPING), "applying the mapping");
    ok(
        lab.apply(&policies(&xn1.segment_peer.to_string())),
        "applying the policies",
    );
    let enforced = [
        Row {
            what: "web to legacy-db 5432 (allowed)",
            from: web,
            to: h1,
            port: 5432,
            answers: true,
        },
        Row {
            what: "web to legacy-db 8080 (default deny on the host)",
            from: web,
            to: h1,
            port: 8080,
            answers: false,
        },
        Row {
            what: "batch host to legacy-db 5432 (not web)",
            from: From::Netns(&xn2.netns),
            to: h1,
            port: 5432,
            answers: false,
        },
        Row {
            what: "legacy-db to api 8080 (its egress and api's ingress)",
            from: From::Netns(&xn1.netns),
            to: api2,
            port: 8080,
            answers: true,
        },
        Row {
            what: "batch host to api 8080 (api's ingress denies)",
            from: From::Netns(&xn2.netns),
            to: api2,
            port: 8080,
            answers: false,
        },
        Row {
            what: "segment to xn-1 eth1 9000 (allowed by CIDR)",
            from: segment,
            to: h1_eth1,
            port: 9000,
            answers: true,
        },
        Row {
            what: "segment to xn-1 eth1 8080 (denied on the second interface)",
            from: segment,
            to: h1_eth1,
            port: 8080,
            answers: false,
        },
        Row {
            what: "SSH to xn-1 over eth0 (failsafe)",
            from: web,
            to: h1,
            port: 22,
            answers: true,
        },
        Row {
            what: "SSH to xn-1 over eth1 (failsafe)",
            from: segment,
            to: h1_eth1,
            port: 22,
            answers: true,
        },
        Row {
            what: "web to batch 8080 (both allow)",
            from: web,
            to: h2,
            port: 8080,
            answers: true,
        },
        Row {
            what: "web to batch 8081 (policy allows, iptables drops)",
            from: web,
            to: h2,
            port: 8081,
            answers: false,
        },
        Row {
            what: "web to batch 8082 (iptables allows, policy denies)",
            from: web,
            to: h2,
            port: 8082,
            answers: false,
        },
    ];
    assert_rows(&lab, "under the policies", &enforced);
    let counters = iptables(&xn2.netns, "-L INPUT -v -x -n");
    let dropped: u64 = counters
        .lines()
        .find(|l| l.contains("dpt:8081"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        dropped > 0,
        "the host's own DROP rule saw the 8081 packets:\n{counters}"
    );

    // Credentials: the host's token reaches its own objects only.
    let (read_own, out) = as_host(&lab, "xn-1", &["get", "noderulemap", "xn-1", "-o", "name"]);
    assert!(read_own, "xn-1 reads its own rule map: {out}");
    let (read_shards, out) = as_host(&lab, "xn-1", &["get", "identitymaps", "-o", "name"]);
    assert!(read_shards, "xn-1 reads the identity shards: {out}");
    for args in [
        &["get", "noderulemap", "xn-2"][..],
        &["get", "externalnode", "xn-2"][..],
        &["get", "noderulemap", "node-1"][..],
        &["get", "noderulemaps"][..],
        &[
            "patch",
            "externalnode",
            "xn-2",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"agentVersion":"forged"}}"#,
        ][..],
        &[
            "patch",
            "noderulemap",
            "xn-2",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"programmedGeneration":99}}"#,
        ][..],
        &[
            "patch",
            "externalnode",
            "xn-1",
            "--type=merge",
            "-p",
            r#"{"spec":{"interfaces":["lo"]}}"#,
        ][..],
        &["get", "lease", "-n", "bulkhead-external-nodes", "xn-2"][..],
    ] {
        let (allowed, out) = as_host(&lab, "xn-1", args);
        assert!(
            !allowed && (out.contains("Forbidden") || out.contains("forbidden")),
            "xn-1's token must not: kubectl {}\n{out}",
            args.join(" ")
        );
    }
    // create cannot be limited by RBAC names; the admission policy holds it.
    let forged_lease = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: xn-9, namespace: bulkhead-external-nodes}\nspec: {holderIdentity: xn-9}\n";
    let path = lab.state().root().join("forged-lease.yaml");
    std::fs::write(&path, forged_lease).expect("writing the forged lease");
    let (allowed, out) = as_host(&lab, "xn-1", &["create", "-f", &path.to_string_lossy()]);
    assert!(
        !allowed && out.contains("may write only its own objects"),
        "admission refuses another host's Lease:\n{out}"
    );

    // The API server goes away: no verdict changes on the hosts.
    ok(lab.plane_mut().stop_api_server(), "stopping the API server");
    assert_rows(&lab, "while the API server is down", &enforced);
    ok(
        lab.plane_mut().start_api_server(),
        "starting the API server",
    );
    // The hosts renew their Leases again (the operator may have found them
    // late meanwhile; they then report over its verdict).
    eventually(
        "legacy-db to count xn-1 as programmed after the outage",
        || {
            let (n, _) = policy_nodes_programmed(&lab, "legacy-db");
            Ok((n == 1).then_some(()))
        },
    );

    // xn-1's agent stops: Ready=False within the lease duration (plus
    // the operator's check interval), enforcement holds, policies count it out.
    ok(lab.stop_agent("xn-1"), "stopping xn-1's agent");
    let budget = Duration::from_secs(LAB_LEASE_DURATION_SECS + 5);
    let reason = ok(
        lab.wait_external_ready("xn-1", "False", budget),
        "xn-1 turning Ready=False",
    );
    assert_eq!(reason, "LeaseExpired");
    eventually("legacy-db to count xn-1 as not programmed", || {
        let (n, summary) = policy_nodes_programmed(&lab, "legacy-db");
        Ok((n == 0).then_some(summary))
    });
    assert_rows(&lab, "while xn-1's agent is down", &enforced);

    // It comes back and reports again.
    ok(lab.start_external_agent("xn-1"), "restarting xn-1's agent");
    ok(
        lab.wait_external_ready("xn-1", "True", SETTLE),
        "xn-1 Ready again",
    );
    eventually("legacy-db to count xn-1 as programmed again", || {
        let (n, _) = policy_nodes_programmed(&lab, "legacy-db");
        Ok((n == 1).then_some(()))
    });
    assert_rows(&lab, "after xn-1's agent restarted", &enforced[..3]);
}
