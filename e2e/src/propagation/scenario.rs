//! The cluster the benchmark measures: `nodes × pods` pods under a label
//! mapping and background policies that put every pod in selective mode
//! with rules, plus one client and one server on different nodes whose
//! flow the trials flip.
//!
//! ```text
//!  node-1: prod/bench-client (app=bench-client)   other pods: web/api/db/cache
//!  node-2: prod/bench-server (app=bench-server)   in prod and dev, alternating
//!  policy bench-server (full): UDP 7070 from app=bench-client  allow | deny
//!  policy trial: flip the rule's action     label trial: app=bench-client | bench-client-off
//! ```

use crate::kubelet;
use crate::lab::{Agents, LabSpec, Workload};
use crate::topology::node_name;

pub const NAMESPACE: &str = "prod";
pub const CLIENT: &str = "bench-client";
pub const SERVER: &str = "bench-server";
/// The client's `app` label when the server admits it, and when it does not.
pub const CLIENT_APP: &str = "bench-client";
pub const CLIENT_APP_OFF: &str = "bench-client-off";
/// The UDP port the server answers on.
pub const PORT: u16 = 7070;
/// The policy the policy trials change.
pub const POLICY: &str = "bench-server";

const APPS: [&str; 4] = ["web", "api", "db", "cache"];

/// The lab: `nodes` nodes with `pods_per_node` pods each, the client as
/// node-1's first pod and the server as node-2's.
pub fn lab_spec(nodes: u8, pods_per_node: u8, verbose: bool) -> LabSpec {
    let mut spec = LabSpec::new(nodes);
    spec.agents = Agents::Cluster;
    // No collector: the figures before and after each change are of the
    // control plane and the agents alone (the first ones were measured
    // before labs ran a collector), and bench/propagation.sh builds none.
    spec.collector = false;
    spec.verbose |= verbose;
    for env in ["prod", "dev"] {
        spec.namespaces
            .push((env.into(), kubelet::labels([("env", env)])));
    }
    for i in 1..=nodes {
        for j in 0..pods_per_node {
            let node = node_name(i);
            let workload = match (i, j) {
                (1, 0) => Workload::new(NAMESPACE, CLIENT, &node, &[("app", CLIENT_APP)]),
                (2, 0) => Workload::new(NAMESPACE, SERVER, &node, &[("app", SERVER)]),
                _ => {
                    let namespace = if j % 2 == 0 { "prod" } else { "dev" };
                    let app = APPS[usize::from(j / 2) % APPS.len()];
                    Workload::new(namespace, &format!("{app}-{i}-{j}"), &node, &[("app", app)])
                }
            };
            spec.workloads.push(workload);
        }
    }
    spec
}

/// The label mapping and the background policies: each app takes TCP 8080
/// from the next one and nothing from dev, in selective mode.
pub fn background() -> String {
    let mut yaml = String::from(
        r#"apiVersion: bulkhead.dev/v1alpha1
kind: LabelMapping
metadata: {name: bench-workloads}
spec:
  rules:
  - name: app-and-env
    match: {pods: {}}
    copyLabels:
    - {key: app, fromLabel: app}
    - {key: env, fromLabel: env, source: namespace}
"#,
    );
    for (i, app) in APPS.iter().enumerate() {
        let peer = APPS[(i + 1) % APPS.len()];
        yaml.push_str(&format!(
            r#"---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {{name: bench-{app}}}
spec:
  scope: {{selector: {{matchLabels: {{app: {app}}}}}}}
  enforcement: selective
  ingress:
  - name: from-{peer}
    action: allow
    peers: [{{selector: {{matchLabels: {{app: {peer}}}}}}}]
    ports: [{{protocol: TCP, port: 8080}}]
  - name: not-from-dev
    action: deny
    peers: [{{selector: {{matchLabels: {{env: dev}}}}}}]
"#
        ));
    }
    yaml
}

/// The server's policy, admitting the client or refusing it.
pub fn server_policy(allow: bool) -> String {
    let action = if allow { "allow" } else { "deny" };
    format!(
        r#"apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {{name: {POLICY}}}
spec:
  scope: {{selector: {{matchLabels: {{app: {SERVER}}}}}}}
  enforcement: full
  ingress:
  - name: from-client
    action: {action}
    peers: [{{selector: {{matchLabels: {{app: {CLIENT_APP}}}}}}}]
    ports: [{{protocol: UDP, port: {PORT}}}]
"#
    )
}
