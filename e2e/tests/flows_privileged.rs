//! Flows end to end (root needed): real packets between lab pods, judged by
//! the agents, shipped as flow/v1 batches to the real collector (TokenReview
//! against the lab's API server, node-bound ServiceAccount tokens), and read
//! back from its query API and with `kubectl bulkhead flows`.
//!
//! ```text
//!  node-1: prod/web-1 (web)  prod/api-1 (api)
//!  node-2: prod/api-2 (api)  dev/web-d2 (web)
//!  policy prod-api (full): prod apis accept TCP 8080 from prod webs; everything else visibility
//! ```

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bulkhead_api::flow::{FlowReason, FlowRecord, FlowVerdict};
use bulkhead_api::rule_map::Direction;
use bulkhead_e2e::lab::{Agents, Probe};
use bulkhead_e2e::{kubelet, Lab, LabSpec, Workload};
use support::*;

/// app from the pod, env from its namespace.
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
    // Checked on a pair the tests do not count.
    eventually("the policy to be enforced", || {
        lab.sync_agents(Duration::from_secs(30))?;
        let d2_to_api = lab.probe_all(&[Probe::tcp("dev/web-d2", "prod/api-2", 8080)])?;
        Ok((!d2_to_api[0].answered).then_some(()))
    });
    lab
}

/// Every record the collector holds from the last hour.
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

type Edge = (String, String, u16, String);

/// Flows per (source name, destination name, port, protocol), counting each
/// two-sided flow once.
fn counted(records: &[FlowRecord]) -> BTreeMap<Edge, u64> {
    let mut out = BTreeMap::new();
    for r in records.iter().filter(|r| r.counts()) {
        let key = (
            r.source.name.clone().unwrap_or_default(),
            r.destination.name.clone().unwrap_or_default(),
            r.port,
            format!("{:?}", r.protocol),
        );
        *out.entry(key).or_insert(0) += r.flows;
    }
    out
}

fn edge(from: &str, to: &str, port: u16, proto: &str) -> Edge {
    (from.into(), to.into(), port, proto.into())
}

/// Sends `n` new connections (or datagrams) per probe.
fn send(lab: &Lab, probes: &[(Probe, usize)]) -> Vec<bool> {
    let batch: Vec<Probe> = probes
        .iter()
        .flat_map(|(p, n)| std::iter::repeat_n(p.clone(), *n))
        .collect();
    ok(lab.probe_all(&batch), "probing")
        .iter()
        .map(|r| r.answered)
        .collect()
}

/// Waits until the collector's counts of `want`'s edges are exactly `want`.
fn expect_counts(lab: &Lab, want: &BTreeMap<Edge, u64>, timeout: Duration) -> Vec<FlowRecord> {
    let deadline = Instant::now() + timeout;
    loop {
        let records = collected(lab);
        let got = counted(&records);
        let seen: BTreeMap<Edge, u64> = want
            .keys()
            .map(|k| (k.clone(), got.get(k).copied().unwrap_or(0)))
            .collect();
        if &seen == want {
            return records;
        }
        if Instant::now() > deadline {
            panic!(
                "the collector's flow counts differ from what was sent\n want {want:#?}\n got {seen:#?}\n collector log:\n{}",
                lab.collector().map(|c| c.log_tail(30)).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn find<'a>(
    records: &'a [FlowRecord],
    from: &str,
    to: &str,
    direction: Direction,
) -> &'a FlowRecord {
    records
        .iter()
        .find(|r| {
            r.source.name.as_deref() == Some(from)
                && r.destination.name.as_deref() == Some(to)
                && r.direction == direction
        })
        .unwrap_or_else(|| panic!("no {direction:?} record {from} -> {to}"))
}

/// POST a body to the collector with an optional bearer token: the status.
fn post(lab: &Lab, token: Option<&str>, body: &str) -> u16 {
    let addr = lab.collector().expect("collector").config.listen;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "POST /api/v1/flows HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).ok();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn every_flow_sent_is_collected_named_labeled_and_counted_once() {
    let mut lab = start_lab();

    // 1. Known flows: allowed across nodes and on one node, denied, and
    //    would-be denied.
    let answered = send(
        &lab,
        &[
            (Probe::tcp("prod/web-1", "prod/api-2", 8080), 3),
            (Probe::tcp("prod/web-1", "prod/api-1", 8080), 2),
            (Probe::tcp("dev/web-d2", "prod/api-1", 8080), 2),
            (Probe::udp("prod/web-1", "dev/web-d2", 8080), 1),
        ],
    );
    assert_eq!(
        answered,
        [true, true, true, true, true, false, false, true],
        "what the policy lets through"
    );
    let mut want = BTreeMap::from([
        (edge("prod/web-1", "prod/api-2", 8080, "Tcp"), 3),
        (edge("prod/web-1", "prod/api-1", 8080, "Tcp"), 2),
        (edge("dev/web-d2", "prod/api-1", 8080, "Tcp"), 2),
        (edge("prod/web-1", "dev/web-d2", 8080, "Udp"), 1),
    ]);
    let records = expect_counts(&lab, &want, Duration::from_secs(30));

    // Both views of the cross-node flow, each with its own node and rule.
    let egress = find(&records, "prod/web-1", "prod/api-2", Direction::Egress);
    let ingress = find(&records, "prod/web-1", "prod/api-2", Direction::Ingress);
    assert_eq!(
        (egress.node.as_str(), ingress.node.as_str()),
        ("node-1", "node-2")
    );
    assert_eq!(egress.source.labels["app"], "web");
    assert_eq!(egress.source.labels["env"], "prod");
    assert_eq!(ingress.destination.labels["app"], "api");
    let rule = ingress.rule.as_ref().expect("the deciding rule");
    assert_eq!(
        (rule.policy.as_str(), rule.name.as_str()),
        ("prod-api", "from-prod-web")
    );
    assert_eq!(ingress.verdict, FlowVerdict::Allow);
    // The denied flow: allowed (would-be denied) at its source, denied at its destination.
    let out = find(&records, "dev/web-d2", "prod/api-1", Direction::Egress);
    let inn = find(&records, "dev/web-d2", "prod/api-1", Direction::Ingress);
    assert_eq!(
        (out.verdict, out.would_verdict, out.node.as_str()),
        (FlowVerdict::Allow, FlowVerdict::Deny, "node-2")
    );
    assert_eq!(
        (
            inn.verdict,
            inn.reason,
            inn.rule.is_none(),
            inn.node.as_str()
        ),
        (FlowVerdict::Deny, FlowReason::Default, true, "node-1")
    );

    // 2. `kubectl bulkhead flows` reads the same history.
    let cli = lab.project_binaries().cli();
    let url = lab.collector().expect("collector").url();
    let out = std::process::Command::new(&cli)
        .args([
            "flows",
            "--collector",
            &url,
            "--since",
            "1h",
            "--verdict",
            "deny",
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
    let denied: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let denied = denied["records"].as_array().expect("records");
    assert!(!denied.is_empty(), "the CLI finds the denied flow");
    assert!(denied.iter().all(|r| r["verdict"] == "deny"));

    // 3. The collector down for 60 s while traffic goes on: nothing is lost.
    ok(
        lab.collector_mut().expect("collector").kill(),
        "killing the collector",
    );
    let outage = Instant::now();
    let mut sent = 0;
    while outage.elapsed() < Duration::from_secs(60) {
        let a = send(&lab, &[(Probe::tcp("prod/web-1", "prod/api-2", 8080), 2)]);
        assert_eq!(a, [true, true]);
        sent += 2;
        // Traffic spread over the 60 s outage (not a wait for a fact).
        std::thread::sleep(Duration::from_secs(8));
    }
    ok(lab.start_collector(), "restarting the collector");
    *want
        .get_mut(&edge("prod/web-1", "prod/api-2", 8080, "Tcp"))
        .expect("edge") += sent;
    expect_counts(&lab, &want, Duration::from_secs(60));

    // 4. The source's agent stopped (a rolling update), then killed (a
    //    crash), with traffic while none runs: the pinned datapath goes on
    //    judging and queues its events, the next agent reads and names them,
    //    and the counts stay exact (docs/flows.md, "Agent restart").
    let api_2 = find(&records, "prod/web-1", "prod/api-2", Direction::Egress)
        .destination
        .address;
    for crash in [false, true] {
        let what = if crash { "killed" } else { "stopped" };
        if crash {
            ok(lab.kill_agent("node-1"), "killing node-1's agent");
        } else {
            ok(lab.stop_agent("node-1"), "stopping node-1's agent");
        }
        let a = send(&lab, &[(Probe::tcp("prod/web-1", "prod/api-2", 8080), 3)]);
        assert_eq!(
            a, [true; 3],
            "enforcement goes on with node-1's agent {what}"
        );
        ok(lab.start_agent("node-1"), "restarting node-1's agent");
        *want
            .get_mut(&edge("prod/web-1", "prod/api-2", 8080, "Tcp"))
            .expect("edge") += 3;
        let records = expect_counts(&lab, &want, Duration::from_secs(60));
        assert!(
            records
                .iter()
                .filter(|r| r.node == "node-1" && r.destination.address == api_2)
                .all(|r| r.source.name.as_deref() == Some("prod/web-1")
                    && r.source.labels.get("app").map(String::as_str) == Some("web")
                    && r.destination.name.as_deref() == Some("prod/api-2")),
            "node-1's records of web-1 -> api-2 are named and labeled after its agent was {what}"
        );
    }

    // 5. Wrong or missing credentials are refused, and the refusal logged.
    let node1_token =
        std::fs::read_to_string(lab.state().root().join("agents/node-1/collector-token"))
            .expect("node-1's token");
    let batch = |node: &str| format!(r#"{{"node":"{node}","batchId":"e2e-{node}","records":[]}}"#);
    assert_eq!(post(&lab, None, &batch("node-1")), 401, "no token");
    assert_eq!(
        post(&lab, Some("not-a-token"), &batch("node-1")),
        401,
        "a bad token"
    );
    assert_eq!(
        post(&lab, Some(node1_token.trim()), &batch("node-2")),
        403,
        "node-1's token for node-2's records"
    );
    assert_eq!(post(&lab, Some(node1_token.trim()), &batch("node-1")), 200);
    let log =
        std::fs::read_to_string(lab.collector().expect("collector").log_path()).unwrap_or_default();
    assert!(
        log.matches("refused").count() >= 3,
        "each refusal is logged:\n{log}"
    );
    assert!(
        !log.contains(node1_token.trim()),
        "tokens never reach the log"
    );
}

/// The agents' and the collector's /metrics pass `promtool check metrics`,
/// their health endpoints answer, and a real Prometheus scraping the lab
/// counts the flows that were sent.
#[test]
fn prometheus_scrapes_the_flows_that_were_sent() {
    let lab = start_lab();
    let promtool = which("promtool");
    let mut targets = Vec::new();
    for node in lab.node_names() {
        let address = ok(lab.node(&node), "node").address;
        let addr = std::net::SocketAddr::new(std::net::IpAddr::V4(address), 9465);
        let (code, metrics) = ok(
            bulkhead_e2e::operator::http_get(addr, "/metrics"),
            "agent /metrics",
        );
        assert_eq!(code, 200, "{metrics}");
        assert!(metrics.contains("bulkhead_agent_flows_total"), "{metrics}");
        promtool_check(&promtool, &metrics, &format!("agent {node}"));
        let (code, _) = ok(bulkhead_e2e::operator::http_get(addr, "/readyz"), "readyz");
        assert_eq!(code, 200, "agent {node} ready after its first programming");
        let (code, _) = ok(
            bulkhead_e2e::operator::http_get(addr, "/healthz"),
            "healthz",
        );
        assert_eq!(code, 200, "agent {node} healthy");
        targets.push(addr.to_string());
    }
    let collector = lab.collector().expect("collector").config.listen;
    let (code, metrics) = ok(
        lab.collector().expect("collector").get("/metrics"),
        "collector /metrics",
    );
    assert_eq!(code, 200);
    promtool_check(&promtool, &metrics, "collector");

    let prometheus = Prometheus::start(&targets, &collector.to_string());
    let query = r#"sum(bulkhead_agent_flows_total{verdict="would-deny",direction="egress",mode="visibility"})"#;
    prometheus.wait_targets_up(targets.len() + 1);
    let before = prometheus.settled(query);
    let answered = send(&lab, &[(Probe::tcp("prod/web-1", "prod/api-2", 8080), 5)]);
    assert_eq!(answered, [true; 5]);
    // prod/web-1 is in visibility with no egress rule: five would-be-denied
    // connections at its egress, and nothing else egresses in visibility.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = prometheus.value(query);
        if now == Some(before + 5.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PromQL {query}: {now:?}, expected {} ({before} before 5 connections)",
            before + 5.0
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A real Prometheus (Debian's package) scraping the lab every second, with
/// its own config and data directory, on a free loopback port.
struct Prometheus {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Prometheus {
    fn start(agents: &[String], collector: &str) -> Self {
        let binary = which("prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        let quoted = |v: &[String]| {
            v.iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n\
             - job_name: agents\n  static_configs: [{{targets: [{}]}}]\n\
             - job_name: collector\n  static_configs: [{{targets: ['{collector}']}}]\n",
            quoted(agents)
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let child = std::process::Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
            .spawn()
            .expect("prometheus");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    fn api(&self, path: &str) -> Option<serde_json::Value> {
        let (code, body) = bulkhead_e2e::operator::http_get(self.addr, path).ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    fn wait_targets_up(&self, n: usize) {
        eventually("every scrape target up in Prometheus", || {
            let up = self.api("/api/v1/query?query=sum(up)").and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok())
            });
            Ok((up == Some(n as f64)).then_some(()))
        });
    }

    fn value(&self, query: &str) -> Option<f64> {
        let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let v = self.api(&format!("/api/v1/query?query={encoded}"))?;
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
    }

    /// The value once two scrapes three seconds apart agree.
    fn settled(&self, query: &str) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        loop {
            let now = self.value(query);
            if now.is_some() && now == last {
                return now.unwrap_or_default();
            }
            assert!(
                Instant::now() < deadline,
                "PromQL {query} never settled: {now:?}"
            );
            last = now;
            std::thread::sleep(Duration::from_secs(3));
        }
    }
}

fn which(tool: &str) -> std::path::PathBuf {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .expect("sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "{tool} is missing: install Debian's prometheus package (scripts/deps.sh does)"
    );
    path.into()
}

fn promtool_check(promtool: &std::path::Path, metrics: &str, what: &str) {
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics on {what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
