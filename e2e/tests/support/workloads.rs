//! The workloads of the enforcement and spoofing lab tests:
//!
//! ```text
//!  node-1: prod/web-1 (web)  prod/api-1 (api)  dev/web-d1 (web)
//!  node-2: prod/api-2 (api)  dev/web-d2 (web)
//!  node-3: prod/db-3 (db)    prod/web-3 (web)
//!  every pod answers on TCP 8080 and 9090 and UDP 8080
//! ```

use bulkhead_e2e::lab::Agents;
use bulkhead_e2e::{kubelet, Lab, LabSpec, Workload};

use super::{ok, start};

/// app from the pod, env from its namespace.
pub const MAPPING: &str = include_str!("../../fixtures/workloads-mapping.yaml");

pub const PODS: [(&str, &str, &str, &str); 7] = [
    ("prod", "web-1", "node-1", "web"),
    ("prod", "api-1", "node-1", "api"),
    ("dev", "web-d1", "node-1", "web"),
    ("prod", "api-2", "node-2", "api"),
    ("dev", "web-d2", "node-2", "web"),
    ("prod", "db-3", "node-3", "db"),
    ("prod", "web-3", "node-3", "web"),
];

pub fn start_lab() -> Lab {
    let mut spec = LabSpec::new(3);
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
        listen(&mut lab, ns, name);
    }
    lab
}

pub fn listen(lab: &mut Lab, ns: &str, name: &str) {
    ok(
        lab.listen(ns, name, &[8080, 9090], &[8080]),
        "starting a listener",
    );
}
