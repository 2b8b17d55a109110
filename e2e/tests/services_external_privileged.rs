//! NodePort and LoadBalancer Services reached from outside the cluster,
//! with the real kube-proxy (iptables mode) on every node (root needed):
//! verdicts and flow records as docs/policy-semantics.md ("Services") and
//! docs/flows.md ("Clients hidden by SNAT") say. One lab for every case.
//!
//! ```text
//!  outside host xn-1 (world to policy; 198.51.100.0/24 routed via node-1)
//!  node-1: prod/web-1 (app web, full mode, answers TCP 8080)    node-2: no backend
//!  Services over web-1, TCP 8080:
//!    np-local    NodePort 30081, externalTrafficPolicy Local
//!    np-cluster  NodePort 30082, externalTrafficPolicy Cluster
//!    lb-local    LoadBalancer 198.51.100.11 (nodePort 30083), Local
//!    lb-cluster  LoadBalancer 198.51.100.12 (nodePort 30084), Cluster
//!  phase 1: web accepts the outside client's address, nothing else
//!  phase 2: web denies the outside client's address, accepts its nodes
//! ```
//!
//! Local keeps the client's address: the backend's ingress judges the
//! client, and a node without a local backend answers nothing. Cluster
//! masquerades the client to the receiving node: the backend judges the
//! node (`host` on node-1, `remoteNode` through node-2), whatever it says
//! of the client, and the records say the client is hidden by SNAT.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use bulkhead_api::flow::FlowRecord;
use bulkhead_api::rule_map::Direction;
use bulkhead_e2e::lab::{Exposure, ServiceSpec};
use bulkhead_e2e::services::ProxyMode;
use bulkhead_e2e::{kubelet, Lab, LabSpec, Proto, Workload};
use support::*;

const MAPPING: &str = include_str!("../fixtures/workloads-mapping.yaml");
const PORT: u16 = 8080;
const LB_LOCAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const LB_CLUSTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);

fn policy(client: Ipv4Addr, phase: u8) -> String {
    let rules = if phase == 1 {
        format!(
            "- {{name: from-client, action: allow, peers: [{{cidr: \"{client}/32\"}}], ports: [{{protocol: TCP, port: {PORT}}}]}}"
        )
    } else {
        format!(
            "- {{name: not-the-client, action: deny, peers: [{{cidr: \"{client}/32\"}}]}}\n  \
             - {{name: from-nodes, action: allow, peers: [{{reserved: host}}, {{reserved: remoteNode}}], ports: [{{protocol: TCP, port: {PORT}}}]}}"
        )
    };
    format!(
        "apiVersion: bulkhead.dev/v1alpha1\nkind: SegmentationPolicy\nmetadata: {{name: web}}\nspec:\n  \
         scope: {{selector: {{matchLabels: {{app: web}}}}}}\n  enforcement: full\n  ingress:\n  {rules}\n"
    )
}

/// Where the outside client sends, and whether it must be answered.
struct Case {
    what: &'static str,
    addr: IpAddr,
    port: u16,
    phase1: bool,
    phase2: bool,
}

fn cases(lab: &Lab) -> Vec<Case> {
    let node = |n: &str| IpAddr::V4(ok(lab.node(n), "a node").address);
    let (n1, n2) = (node("node-1"), node("node-2"));
    let c = |what, addr, port, phase1, phase2| Case {
        what,
        addr,
        port,
        phase1,
        phase2,
    };
    vec![
        // Local: the client is judged; node-2 has no backend, answers nothing.
        c("NodePort Local via node-1", n1, 30081, true, false),
        c("NodePort Local via node-2", n2, 30081, false, false),
        c(
            "LoadBalancer Local",
            IpAddr::V4(LB_LOCAL),
            PORT,
            true,
            false,
        ),
        // Cluster: the node is judged, never the client.
        c("NodePort Cluster via node-1", n1, 30082, false, true),
        c("NodePort Cluster via node-2", n2, 30082, false, true),
        c(
            "LoadBalancer Cluster",
            IpAddr::V4(LB_CLUSTER),
            PORT,
            false,
            true,
        ),
    ]
}

fn expect(lab: &Lab, client: &bulkhead_e2e::topology::ExternalHostNet, phase: u8) {
    let cases = cases(lab);
    eventually(&format!("phase {phase} verdicts from outside"), || {
        let mut wrong = Vec::new();
        for case in &cases {
            let want = if phase == 1 { case.phase1 } else { case.phase2 };
            let got = lab.probe_from_outside(client, case.addr, Proto::Tcp, case.port)?;
            if got.answered != want {
                wrong.push(format!(
                    "{} ({}:{}): expected {want}, got {} ({})",
                    case.what, case.addr, case.port, got.answered, got.detail
                ));
            }
        }
        if !wrong.is_empty() {
            eprintln!("phase {phase}, not yet:\n{}", wrong.join("\n"));
        }
        Ok(wrong.is_empty().then_some(()))
    });
}

fn records(lab: &Lab, node: &str) -> Vec<FlowRecord> {
    let log = lab
        .state()
        .root()
        .join(format!("agents/{node}/flows.jsonl"));
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn node_ports_and_load_balancers_judge_the_client_or_the_node_as_documented() {
    let mut spec = LabSpec::new(2);
    spec.collector = false;
    spec.services = Some(ProxyMode::Iptables);
    spec.namespaces = vec![("prod".into(), kubelet::labels([("env", "prod")]))];
    spec.workloads = vec![Workload::new("prod", "web-1", "node-1", &[("app", "web")])];
    spec.listen = vec![PORT];
    let mut lab = start(spec);
    let client = ok(lab.add_outside_client("node-1"), "the outside client");
    ok(lab.apply(MAPPING), "applying the mapping");
    let services = [
        (
            "np-local",
            Exposure::NodePort {
                node_port: 30081,
                local: true,
            },
        ),
        (
            "np-cluster",
            Exposure::NodePort {
                node_port: 30082,
                local: false,
            },
        ),
        (
            "lb-local",
            Exposure::LoadBalancer {
                node_port: 30083,
                local: true,
            },
        ),
        (
            "lb-cluster",
            Exposure::LoadBalancer {
                node_port: 30084,
                local: false,
            },
        ),
    ];
    for (name, exposure) in services {
        let svc = ServiceSpec::new("prod", name, &[("app", "web")], PORT).exposed(exposure);
        ok(lab.add_service(&svc), "creating a Service");
        ok(
            lab.wait_service("prod", name, &["prod/web-1"]),
            "the Service's backend",
        );
    }
    ok(
        lab.set_load_balancer_ip("prod", "lb-local", LB_LOCAL),
        "lb-local's address",
    );
    ok(
        lab.set_load_balancer_ip("prod", "lb-cluster", LB_CLUSTER),
        "lb-cluster's address",
    );
    for port in [30081, 30082, 30083, 30084] {
        ok(lab.wait_proxy_rules(&port.to_string()), "the node ports");
    }

    ok(lab.apply(&policy(client.address, 1)), "phase 1 policy");
    ok(lab.sync_agents(SETTLE), "waiting for the agents");
    expect(&lab, &client, 1);
    // Local: web-1's ingress record names the outside client itself.
    eventually("web-1's record of the outside client", || {
        Ok(records(&lab, "node-1")
            .into_iter()
            .find(|r| {
                r.source.address == IpAddr::V4(client.address)
                    && r.direction == Direction::Ingress
                    && r.port == PORT
                    && !r.source_hidden_by_snat
            })
            .map(drop))
    });

    ok(lab.apply(&policy(client.address, 2)), "phase 2 policy");
    ok(lab.sync_agents(SETTLE), "waiting for the agents");
    expect(&lab, &client, 2);
    let n1 = IpAddr::V4(ok(lab.node("node-1"), "node-1").address);
    let n2 = IpAddr::V4(ok(lab.node("node-2"), "node-2").address);
    // Cluster through node-1: web-1's ingress from node-1, hidden by SNAT.
    eventually(
        "web-1's ingress record from node-1 marked hidden by SNAT",
        || {
            Ok(records(&lab, "node-1")
                .into_iter()
                .find(|r| {
                    r.source.address == n1
                        && r.direction == Direction::Ingress
                        && r.port == PORT
                        && r.source_hidden_by_snat
                })
                .map(drop))
        },
    );
    // Cluster through node-2: node-2 forwarded it, masqueraded, and says so.
    eventually(
        "node-2's record of the forwarded hop marked hidden by SNAT",
        || {
            Ok(records(&lab, "node-2")
                .into_iter()
                .find(|r| r.source.address == n2 && r.port == PORT && r.source_hidden_by_snat)
                .map(drop))
        },
    );
}
