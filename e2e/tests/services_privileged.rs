//! Pods reaching each other through Services, with the real kube-proxy
//! translating ClusterIPs on every node and the real EndpointSlice
//! controller (root needed). Egress is judged on the backend kube-proxy
//! picks, never on the Service address: through a ClusterIP every pair
//! gets exactly the verdict it gets pod to pod, on one node and across
//! nodes, with both sides in `full` mode.
//!
//! ```text
//!  node-1: prod/web-1 (web, client)   prod/db-1 (db)
//!  node-2: prod/db-2 (db)             prod/cache-2 (cache)
//!  every pod answers on TCP and UDP 8080
//!  policies (full): web may send to db on 8080; db accepts web on 8080;
//!                   cache accepts web on 8080, but web may not send to cache
//!  Services: db-local -> db-1, db-remote -> db-2, db -> both, cache -> cache-2
//! ```
//!
//! Then web's egress names a Service (`service: {namespace, name}`) rather
//! than labels, and follows that Service's EndpointSlices as its backend
//! moves from db-2 to cache-2.

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bulkhead_e2e::lab::{Agents, ServiceSpec};
use bulkhead_e2e::services::ProxyMode;
use bulkhead_e2e::{kubelet, Lab, LabSpec, Proto, Workload};
use support::*;

const MAPPING: &str = include_str!("../fixtures/workloads-mapping.yaml");

const POLICIES: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: web}
spec:
  scope: {selector: {matchLabels: {app: web}}}
  enforcement: full
  egress:
  - {name: to-db, action: allow, peers: [{selector: {matchLabels: {app: db}}}], ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 8080}]}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: db}
spec:
  scope: {selector: {matchLabels: {app: db}}}
  enforcement: full
  ingress:
  - {name: from-web, action: allow, peers: [{selector: {matchLabels: {app: web}}}], ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 8080}]}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: cache}
spec:
  scope: {selector: {matchLabels: {app: cache}}}
  enforcement: full
  ingress:
  - {name: from-web, action: allow, peers: [{selector: {matchLabels: {app: web}}}], ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 8080}]}
"#;

const PODS: [(&str, &str, &str); 4] = [
    ("web-1", "node-1", "web"),
    ("db-1", "node-1", "db"),
    ("db-2", "node-2", "db"),
    ("cache-2", "node-2", "cache"),
];

const PORT: u16 = 8080;

fn start_lab(mode: ProxyMode) -> Lab {
    let mut spec = LabSpec::new(2);
    spec.agents = Agents::Cluster;
    spec.collector = false;
    spec.services = Some(mode);
    spec.namespaces = vec![("prod".into(), kubelet::labels([("env", "prod")]))];
    spec.workloads = PODS
        .iter()
        .map(|(name, node, app)| {
            Workload::new("prod", name, node, &[("app", app), ("backend", name)])
        })
        .collect();
    spec.listen = vec![PORT];
    start(spec)
}

/// A Service: name, selector, the backends it must reach.
type WantedService = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

/// A Service per backend, one over both db pods; their ClusterIPs once
/// every kube-proxy translates them.
fn services(lab: &Lab) -> Vec<(&'static str, IpAddr, Vec<&'static str>)> {
    let wanted: [WantedService; 4] = [
        ("db-local", &[("backend", "db-1")], &["prod/db-1"]),
        ("db-remote", &[("backend", "db-2")], &["prod/db-2"]),
        ("db", &[("app", "db")], &["prod/db-1", "prod/db-2"]),
        ("cache", &[("backend", "cache-2")], &["prod/cache-2"]),
    ];
    wanted
        .iter()
        .map(|(name, selector, backends)| {
            ok(
                lab.add_service(&ServiceSpec::new("prod", name, selector, PORT)),
                "creating a Service",
            );
            let vip = ok(
                lab.wait_service("prod", name, backends),
                "waiting for the Service",
            );
            (*name, IpAddr::V4(vip), backends.to_vec())
        })
        .collect()
}

/// Probes `web-1` -> every backend directly and through every Service, TCP
/// and UDP, until they match `expected` (the agents program
/// asynchronously), up to `SETTLE`.
fn assert_same_through_services(
    lab: &Lab,
    svcs: &[(&str, IpAddr, Vec<&str>)],
    expected: &[(&str, bool)],
) {
    let want = |backend: &str| {
        expected
            .iter()
            .find(|(b, _)| *b == backend)
            .map(|(_, w)| *w)
            .unwrap_or_else(|| panic!("no expectation for {backend}"))
    };
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut wrong = Vec::new();
        for proto in [Proto::Tcp, Proto::Udp] {
            for (backend, w) in expected {
                let got = ok(
                    lab.probe("prod/web-1", backend, proto, PORT),
                    "probing a pod",
                );
                if got.answered != *w {
                    wrong.push(format!(
                        "web-1 -> {backend} {proto:?}: expected {w}, got {} ({})",
                        got.answered, got.detail
                    ));
                }
            }
            for (name, vip, backends) in svcs {
                // A Service over several backends answers when the one
                // kube-proxy picked does; they are all allowed or all not.
                let w = backends.iter().all(|b| want(b));
                assert!(
                    backends.iter().all(|b| want(b) == w),
                    "{name}: mixed expectations"
                );
                let got = ok(
                    lab.probe_address("prod/web-1", *vip, proto, PORT),
                    "probing a Service",
                );
                if got.answered != w {
                    wrong.push(format!(
                        "web-1 -> Service {name} ({vip}) {proto:?}: expected {w}, got {} ({})",
                        got.answered, got.detail
                    ));
                }
            }
        }
        if wrong.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let logs: String = lab
                .node_names()
                .iter()
                .map(|n| format!("--- agent {n}:\n{}\n", lab.agent_log(n)))
                .collect();
            panic!(
                "reachability through Services differs\n{}\n{logs}",
                wrong.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run(mode: ProxyMode) {
    let lab = start_lab(mode);
    ok(lab.apply(MAPPING), "applying the mapping");
    let svcs = services(&lab);
    // Before any policy every endpoint is in visibility mode: all pass.
    assert_same_through_services(
        &lab,
        &svcs,
        &[
            ("prod/db-1", true),
            ("prod/db-2", true),
            ("prod/cache-2", true),
        ],
    );
    ok(lab.apply(POLICIES), "applying the policies");
    ok(lab.sync_agents(SETTLE), "waiting for the agents to program");
    // web in full mode: a Service address is no workload, so judging the
    // VIP would deny all; judged on the backend, db passes and cache (which
    // would accept web) stays denied by web's own egress.
    assert_same_through_services(
        &lab,
        &svcs,
        &[
            ("prod/db-1", true),
            ("prod/db-2", true),
            ("prod/cache-2", false),
        ],
    );
    flows_name_the_service_address_beside_the_backend(&lab, &svcs);
    backend_change_keeps_established_connections(&lab);
    a_service_peer_follows_its_endpoint_slices(&lab, &svcs);
}

/// web's egress names the Service `pick` instead of a selector (and a
/// Service with no endpoints, which its status reports). `pick` is on db-2
/// now: web reaches db's identity directly and through the ClusterIPs, and
/// not cache; moving `pick` to cache-2 (an EndpointSlice change, nothing
/// else) turns that around.
fn a_service_peer_follows_its_endpoint_slices(lab: &Lab, svcs: &[(&str, IpAddr, Vec<&str>)]) {
    let started = Instant::now();
    let pick = IpAddr::V4(ok(lab.cluster_ip("prod", "pick"), "Service pick"));
    let vip = |name: &str| svcs.iter().find(|(n, _, _)| *n == name).expect("service").1;
    ok(
        lab.apply(WEB_TO_PICK),
        "applying web's policy naming Service pick",
    );
    let warned = "to-pick peers[1] selects nothing: Service prod/nothing has no endpoints";
    eventually(
        "web's status to report the Service without endpoints",
        || {
            let status = lab
                .kubectl()
                .json(&["get", "segpol", "web", "-o", "json"])?;
            let warnings = status["status"]["warnings"].to_string();
            Ok(warnings.contains(warned).then_some(()))
        },
    );
    let db = [
        ("prod/db-1", None),
        ("prod/db-2", None),
        ("db", Some(vip("db"))),
    ];
    let cache = [("prod/cache-2", None), ("cache", Some(vip("cache")))];
    let via_pick = [("pick", Some(pick))];
    let table = |db_ok: bool| -> Vec<(&str, Option<IpAddr>, bool)> {
        let db = db.iter().map(|(n, a)| (*n, *a, db_ok));
        let cache = cache.iter().map(|(n, a)| (*n, *a, !db_ok));
        let pick = via_pick.iter().map(|(n, a)| (*n, *a, true));
        db.chain(cache).chain(pick).collect()
    };
    assert_reachability(lab, &table(true));
    ok(
        lab.relabel_pod("prod", "db-2", &[("pick", None)]),
        "unlabeling db-2",
    );
    ok(
        lab.relabel_pod("prod", "cache-2", &[("pick", Some("yes"))]),
        "labeling cache-2",
    );
    ok(
        lab.wait_service("prod", "pick", &["prod/cache-2"]),
        "Service pick on cache-2",
    );
    assert_reachability(lab, &table(false));
    eprintln!("service peer phase: {:?}", started.elapsed());
}

const WEB_TO_PICK: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: web}
spec:
  scope: {selector: {matchLabels: {app: web}}}
  enforcement: full
  egress:
  - name: to-pick
    action: allow
    peers: [{service: {namespace: prod, name: pick}}, {service: {namespace: prod, name: nothing}}]
    ports: [{protocol: TCP, port: 8080}]
"#;

/// Probes web-1 over TCP to pods (`ns/name`, no address) and Service
/// addresses until each answers as wanted, up to `SETTLE`.
fn assert_reachability(lab: &Lab, want: &[(&str, Option<IpAddr>, bool)]) {
    let mut wrong = Vec::new();
    let done = bulkhead_e2e::wait::wait_until("web-1's reachability", SETTLE, || {
        wrong.clear();
        for (name, address, w) in want {
            let got = match address {
                Some(a) => lab.probe_address("prod/web-1", *a, Proto::Tcp, PORT)?,
                None => lab.probe("prod/web-1", name, Proto::Tcp, PORT)?,
            };
            if got.answered != *w {
                wrong.push(format!(
                    "web-1 -> {name}: expected {w}, got {} ({})",
                    got.answered, got.detail
                ));
            }
        }
        Ok(wrong.is_empty().then_some(()))
    });
    assert!(
        done.is_ok(),
        "reachability with a service peer differs:\n{}",
        wrong.join("\n")
    );
}

/// The client's node records flows through a Service with the address
/// that was asked for, and the Service's namespace and name, beside the
/// backend that answered.
fn flows_name_the_service_address_beside_the_backend(
    lab: &Lab,
    svcs: &[(&str, IpAddr, Vec<&str>)],
) {
    let log = lab.state().root().join("agents/node-1/flows.jsonl");
    for (name, vip, backends) in svcs
        .iter()
        .filter(|(n, _, _)| *n == "db-local" || *n == "db-remote")
    {
        let backend = ok(
            lab.pod("prod", backends[0].trim_start_matches("prod/")),
            "the backend",
        )
        .address;
        // The agent watches Services: the record names the Service too.
        eventually(
            &format!("a flow record web-1 -> {backend} via Service prod/{name} ({vip})"),
            || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                Ok(text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<bulkhead_api::flow::FlowRecord>(l).ok())
                    .find(|r| {
                        r.destination.address == IpAddr::V4(backend)
                            && r.direction == bulkhead_api::rule_map::Direction::Egress
                            && r.service.as_ref().is_some_and(|s| {
                                s.address == *vip
                                    && s.port == PORT
                                    && s.namespace.as_deref() == Some("prod")
                                    && s.name.as_deref() == Some(*name)
                            })
                    })
                    .map(drop))
            },
        );
    }
    // `kubectl bulkhead flows --to service:ns/name` finds them by the
    // Service's name, over the agent's own log.
    let cli = lab.project_binaries().cli();
    let db_local = svcs
        .iter()
        .find(|(n, _, _)| *n == "db-local")
        .expect("db-local")
        .1;
    // `flows --to service:prod/db-local -o json` over the log, its records.
    let flows_to_db_local = |kubeconfig: &std::path::Path| -> Vec<serde_json::Value> {
        let out = std::process::Command::new(&cli)
            .env("KUBECONFIG", kubeconfig)
            .args(["flows", "--flows"])
            .arg(&log)
            .args([
                "--since",
                "1h",
                "--to",
                "service:prod/db-local",
                "-o",
                "json",
            ])
            .output()
            .expect("kubectl-bulkhead flows");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        answer["records"].as_array().expect("records").clone()
    };
    let records = flows_to_db_local(lab.plane().admin_kubeconfig());
    assert!(
        !records.is_empty(),
        "flows --to service:prod/db-local finds the flows through it"
    );
    assert!(
        records.iter().all(|r| {
            r["service"]["address"] == db_local.to_string()
                && r["service"]["namespace"] == "prod"
                && r["service"]["name"] == "db-local"
        }),
        "only flows through db-local, named so: {records:?}"
    );
    // The names flow/v1 records carry, not a lookup: the same answer with no
    // API server to resolve the ClusterIP (matched by name only).
    let by_name = flows_to_db_local(&lab.state().root().join("no-such-kubeconfig"));
    assert!(
        by_name.len() >= records.len()
            && by_name.iter().all(|r| r["service"]["name"] == "db-local"),
        "by the recorded name alone: {by_name:?}"
    );
}

/// A Service's backend moves from db-1 (same node) to db-2 (the other
/// node): the open connection keeps its backend and keeps being answered;
/// new connections reach the new backend, judged there.
fn backend_change_keeps_established_connections(lab: &Lab) {
    ok(
        lab.relabel_pod("prod", "db-1", &[("pick", Some("yes"))]),
        "labeling db-1",
    );
    let svc = ServiceSpec::new("prod", "pick", &[("pick", "yes")], PORT);
    ok(lab.add_service(&svc), "creating Service pick");
    let vip = IpAddr::V4(ok(
        lab.wait_service("prod", "pick", &["prod/db-1"]),
        "Service pick on db-1",
    ));
    // The rules name the address as soon as kube-proxy knows the Service;
    // in nftables mode its endpoints may follow a sync later (until then the
    // address is refused): connect once it answers.
    let talk = eventually("a connection through Service pick", || {
        Ok(lab.converse_address("prod/web-1", vip, PORT).ok())
    });
    ok(
        talk.wait_answering(5, SETTLE),
        "the connection through pick answering",
    );
    ok(
        lab.relabel_pod("prod", "db-1", &[("pick", None)]),
        "unlabeling db-1",
    );
    ok(
        lab.relabel_pod("prod", "db-2", &[("pick", Some("yes"))]),
        "labeling db-2",
    );
    ok(
        lab.wait_service("prod", "pick", &["prod/db-2"]),
        "Service pick on db-2",
    );
    let before = talk.exchanges().len();
    ok(
        talk.wait_answering(10, SETTLE),
        "the connection still answering after the backend change",
    );
    let after = talk.exchanges();
    assert!(
        after[before..].iter().all(|l| l == "answered"),
        "the connection through pick was interrupted by the backend change: {after:?}"
    );
    // kube-proxy may pass through a moment with no endpoint for pick (db-1
    // gone, db-2 not yet added), when it refuses the address: the fact to
    // wait for is a new connection answered by db-2.
    let mut last = None;
    let reached = bulkhead_e2e::wait::wait_until(
        "a new connection through pick answered by db-2",
        SETTLE,
        || {
            let p = lab.probe_address("prod/web-1", vip, Proto::Tcp, PORT)?;
            let done = p.answered && p.detail.contains("db-2");
            last = Some(p);
            Ok(done.then_some(()))
        },
    );
    assert!(
        reached.is_ok(),
        "a new connection through pick reaches db-2; last probe: {last:?}"
    );
}

#[test]
fn through_cluster_ips_in_iptables_mode_verdicts_equal_pod_to_pod() {
    run(ProxyMode::Iptables);
}

#[test]
fn through_cluster_ips_in_nftables_mode_verdicts_equal_pod_to_pod() {
    run(ProxyMode::Nftables);
}
