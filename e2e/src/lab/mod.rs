//! The whole lab as one value, and `up`, `down` and `status` around it.
//!
//! ```text
//!  Lab::start(LabSpec)
//!   1. Topology::build      bridge + node namespaces (the bridge address comes first:
//!                           the API server binds to it so agents in node namespaces reach it)
//!   2. ControlPlane         etcd, kube-apiserver on the bridge address, CRDs, kubeconfigs
//!   3. RBAC                 bulkhead-system, deploy/rbac/operator.yaml, agent.yaml.tmpl per node
//!   4. kubelet::*           Nodes (InternalIP = node address), Namespaces, Pods (+ pod namespaces)
//!   5. Operator::start      one process per replica, as user bulkhead-operator
//!   6. agent::start_agent   one per node, inside its namespace (cluster or standalone mode)
//!   7. services::*          when asked: the EndpointSlice controller, and kube-proxy per node
//! ```
//!
//! Everything is recorded in the state directory (`lab.json` and pid files),
//! so `down` in another invocation removes exactly what `up` made. Dropping
//! a `Lab` that was not detached undoes it in reverse: tests clean up even
//! when an assertion fails.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::agent::AgentMode;
use crate::binaries::ProjectBinaries;
use crate::collector::{Collector, CollectorConfig};
use crate::control_plane::{ControlPlane, ControlPlaneConfig, KEEP_ENV};
use crate::error::{Error, Result};
use crate::kubectl::Kubectl;
use crate::kubelet::{self, ContainerPort, Labels, NodeRegistration};
use crate::netns;
use crate::operator::{self, Operator};
use crate::process::{Lifetime, Process};
use crate::state::{LabRecord, StateDir};
use crate::topology::{self, NodeNet, Topology, TopologySpec};
use crate::traffic;

mod barrier;
mod batch;
mod external;
mod lifecycle;
mod objects;
mod probes;
mod replicas;
pub use barrier::Barrier;
pub use external::{external_node_labels, LAB_LEASE_DURATION_SECS};
mod outside;
mod services;
pub use replicas::failsafe_ports;

pub use crate::wait::wait_until;
pub use lifecycle::{dir_or_default, down, prune, status, up, Down, ProcessStatus, Pruned, Status};
pub use probes::{matrix, probe_all, probe_between, Conversation, Probe};
pub use services::{Exposure, ServiceSpec};

/// Whether the lab starts node agents, and in which mode. Chosen by the
/// test, never guessed from the binary: a check that depends on the mode
/// must not vanish because a guess went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agents {
    /// No agents (control-plane tests); `start_agent` later runs cluster mode.
    Off,
    /// Agents in cluster mode: rule maps from the API server.
    Cluster,
    /// Agents in standalone mode, from files the lab writes once the
    /// operator has published.
    Standalone,
}

/// A pod to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: Labels,
    /// Named container ports (what NetworkPolicy named ports resolve against).
    pub ports: Vec<ContainerPort>,
}

impl Workload {
    pub fn new(namespace: &str, name: &str, node: &str, labels: &[(&str, &str)]) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            node: node.to_owned(),
            labels: kubelet::labels(labels.iter().copied()),
            ports: Vec::new(),
        }
    }

    /// The same pod with these named container ports.
    pub fn with_ports(self, ports: Vec<ContainerPort>) -> Self {
        Self { ports, ..self }
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct LabSpec {
    /// The state directory; `None` for a temporary one (tests).
    pub dir: Option<PathBuf>,
    pub nodes: u8,
    /// Labels of every node (each also gets `kubernetes.io/hostname`).
    pub node_labels: Labels,
    pub namespaces: Vec<(String, Labels)>,
    pub workloads: Vec<Workload>,
    /// Operator replicas to start, by Lease identity.
    pub operators: Vec<String>,
    pub agents: Agents,
    /// TCP and UDP ports every pod answers on (a listener per pod).
    pub listen: Vec<u16>,
    /// Whether those listeners answer SCTP INITs on the same ports too.
    pub listen_sctp: bool,
    /// More flags for every operator replica (e.g. `--network-policies`).
    pub operator_args: Vec<String>,
    /// Run the collector, and have every agent ship its flows to it.
    pub collector: bool,
    /// More flags for the collector (e.g. `--syslog=udp://...`).
    pub collector_args: Vec<String>,
    pub lifetime: Lifetime,
    /// Print each step and its duration to stderr (also `$BULKHEAD_LAB_VERBOSE`).
    pub verbose: bool,
    /// Hosts outside the cluster (`xn-1` ..), each joined with
    /// `kubectl bulkhead externalnode add` and running its own agent.
    pub external_nodes: u8,
    /// Run the EndpointSlice controller and a kube-proxy per node, in this mode.
    pub services: Option<crate::services::ProxyMode>,
}

impl LabSpec {
    /// `nodes` nodes in a temporary directory, one operator, cluster-mode
    /// agents, no namespaces or pods yet.
    pub fn new(nodes: u8) -> Self {
        Self {
            dir: None,
            nodes,
            node_labels: Labels::new(),
            namespaces: Vec::new(),
            workloads: Vec::new(),
            operators: vec!["a".into()],
            agents: Agents::Cluster,
            listen: Vec::new(),
            listen_sctp: false,
            operator_args: Vec::new(),
            collector: true,
            collector_args: Vec::new(),
            lifetime: Lifetime::Attached,
            verbose: std::env::var_os("BULKHEAD_LAB_VERBOSE").is_some(),
            external_nodes: 0,
            services: None,
        }
    }

    /// The workloads `bulkhead-lab up --pods M` creates: namespaces `prod`
    /// and `dev` (label `env`), pods alternating between them with `app`
    /// labels `web`, `api`, `db`, `cache`, M per node.
    pub fn with_default_workloads(mut self, pods_per_node: u8) -> Self {
        const APPS: [&str; 4] = ["web", "api", "db", "cache"];
        for env in ["prod", "dev"] {
            self.namespaces
                .push((env.into(), kubelet::labels([("env", env)])));
        }
        for i in 1..=self.nodes {
            for j in 0..pods_per_node {
                let namespace = if j % 2 == 0 { "prod" } else { "dev" };
                let app = APPS[usize::from(j / 2) % APPS.len()];
                let name = format!("{app}-{i}-{j}");
                self.workloads.push(Workload::new(
                    namespace,
                    &name,
                    &topology::node_name(i),
                    &[("app", app)],
                ));
            }
        }
        self
    }
}

/// A pod the lab made: its object and its network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabPod {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub address: Ipv4Addr,
    #[serde(default = "unspecified6")]
    pub address6: Ipv6Addr,
    pub netns: String,
}

fn unspecified6() -> Ipv6Addr {
    Ipv6Addr::UNSPECIFIED
}

impl LabPod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What `lab.json` says beyond the control plane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabParts {
    pub topology: Option<topology::TopologyRecord>,
    /// The bpffs the agents pin their maps in.
    pub bpffs: Option<PathBuf>,
    pub pods: Vec<LabPod>,
    /// `cluster` or `standalone`, when agents run.
    pub agent_mode: Option<String>,
    /// Operator replica name → its metrics address.
    pub operators: BTreeMap<String, String>,
    /// The TCP and UDP ports every pod answers on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<u16>,
}

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    // Field order is drop order only for what `Drop` does not stop by hand.
    plane: Option<ControlPlane>,
    topology: Option<Topology>,
    project: ProjectBinaries,
    operators: BTreeMap<String, Operator>,
    agents: BTreeMap<String, Process>,
    agent_mode: AgentMode,
    collector: Option<Collector>,
    collector_args: Vec<String>,
    /// kube-controller-manager and the kube-proxies, when the lab runs Services.
    service_processes: Vec<Process>,
    proxy_mode: Option<crate::services::ProxyMode>,
    /// Listeners by the key of the pod they run in.
    listeners: Vec<(String, Process)>,
    listen: Vec<u16>,
    pods: BTreeMap<String, LabPod>,
    bpffs: PathBuf,
    lifetime: Lifetime,
    detached: bool,
    temp: Option<tempfile::TempDir>,
}

/// The API server's port on the lab's bridge address.
pub const API_SERVER_PORT: u16 = 6443;

/// How long the operator gets for its first full compile.
pub const OPERATOR_READY_TIMEOUT: Duration = Duration::from_secs(60);

impl Lab {
    /// Builds everything `spec` asks for. On error, what was built is torn down.
    pub fn start(spec: LabSpec) -> Result<Self> {
        let mut step = Steps::new(spec.verbose);
        let project = ProjectBinaries::locate()?;
        step.done("operator and agent binaries (cargo build)");
        let agent_mode = match spec.agents {
            Agents::Standalone => AgentMode::Standalone,
            Agents::Off | Agents::Cluster => AgentMode::Cluster,
        };
        let (dir, temp) = match &spec.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("bulkhead-lab-test-")
                    .tempdir()
                    .map_err(Error::io(
                        "create a temporary directory in",
                        std::env::temp_dir(),
                    ))?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        let topology = Topology::build(TopologySpec {
            nodes: spec.nodes,
            pods_per_node: 0,
            owner_dir: &dir,
        })?;
        step.done("network namespaces and bridge");
        let mut config = ControlPlaneConfig::new(&dir)?;
        config.bind_address = IpAddr::V4(topology.record().gateway);
        // The address is this lab's alone, so the well-known port is free,
        // and it is the one the rule maps' failsafe ports keep open.
        config.port = Some(API_SERVER_PORT);
        config.lifetime = spec.lifetime;
        config.agents = topology
            .record()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect();
        let plane = ControlPlane::start_with(config)?;
        step.done("etcd, kube-apiserver and CRDs");
        let bpffs = plane.state().root().join("bpffs");
        let mut lab = Self {
            plane: Some(plane),
            topology: Some(topology),
            project,
            operators: BTreeMap::new(),
            agents: BTreeMap::new(),
            agent_mode,
            collector: None,
            collector_args: spec.collector_args.clone(),
            service_processes: Vec::new(),
            proxy_mode: None,
            listeners: Vec::new(),
            listen: spec.listen.clone(),
            pods: BTreeMap::new(),
            bpffs,
            lifetime: spec.lifetime,
            detached: false,
            temp,
        };
        lab.save()?;
        lab.install_rbac()?;
        lab.register_nodes(&spec.node_labels)?;
        step.done("RBAC and Nodes");
        for (name, labels) in &spec.namespaces {
            lab.add_namespace(name, labels)?;
        }
        lab.add_pods(&spec.workloads)?;
        step.done("Namespaces and Pods");
        if !spec.listen.is_empty() {
            let keys: Vec<(String, String)> = lab
                .pods
                .values()
                .map(|p| (p.namespace.clone(), p.name.clone()))
                .collect();
            let ports = traffic::Ports {
                tcp: spec.listen.clone(),
                udp: spec.listen.clone(),
                sctp: if spec.listen_sctp {
                    spec.listen.clone()
                } else {
                    Vec::new()
                },
            };
            for (ns, name) in keys {
                lab.listen_on(&ns, &name, &ports)?;
            }
            step.done("listeners in every pod");
        }
        if spec.collector {
            lab.start_collector()?;
            step.done("collector ready");
        }
        let operator_args: Vec<&str> = spec.operator_args.iter().map(String::as_str).collect();
        for name in &spec.operators {
            lab.start_operator_with(name, &operator_args)?;
        }
        step.done("operator ready");
        if spec.agents != Agents::Off {
            lab.start_agents()?;
            step.done("agents started");
        }
        if spec.external_nodes > 0 {
            lab.add_external_nodes(spec.external_nodes)?;
            step.done("external nodes joined, their agents started");
        }
        if let Some(mode) = spec.services {
            lab.start_services(mode)?;
            step.done("kube-controller-manager and kube-proxy");
        }
        lab.save()?;
        Ok(lab)
    }

    // ---- parts -------------------------------------------------------------

    pub fn plane(&self) -> &ControlPlane {
        self.plane
            .as_ref()
            .unwrap_or_else(|| unreachable!("the plane lives until drop"))
    }

    /// For `stop_api_server` / `start_api_server`.
    pub fn plane_mut(&mut self) -> &mut ControlPlane {
        self.plane
            .as_mut()
            .unwrap_or_else(|| unreachable!("the plane lives until drop"))
    }

    pub fn topology(&self) -> &topology::TopologyRecord {
        self.topology
            .as_ref()
            .unwrap_or_else(|| unreachable!("the topology lives until drop"))
            .record()
    }

    pub fn state(&self) -> &StateDir {
        self.plane().state()
    }

    /// kubectl as the cluster admin.
    pub fn kubectl(&self) -> Kubectl {
        self.plane().kubectl()
    }

    pub fn node_names(&self) -> Vec<String> {
        self.topology()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    pub fn node(&self, name: &str) -> Result<&NodeNet> {
        self.topology()
            .node(name)
            .ok_or_else(|| Error::Topology(format!("no node {name}")))
    }

    pub fn agent_mode(&self) -> AgentMode {
        self.agent_mode
    }

    /// The collector, when the lab runs one.
    pub fn collector(&self) -> Option<&Collector> {
        self.collector.as_ref()
    }

    pub fn collector_mut(&mut self) -> Option<&mut Collector> {
        self.collector.as_mut()
    }

    /// Starts the collector (again, after a `kill`) and waits for `/readyz`.
    pub fn start_collector(&mut self) -> Result<()> {
        let config = match &self.collector {
            Some(c) => c.config.clone(),
            None => {
                let admin = self.kubectl();
                crate::collector::ensure_agent_service_account(&admin)?;
                CollectorConfig {
                    binary: self.project.collector(),
                    listen: SocketAddr::new(
                        IpAddr::V4(self.topology().gateway),
                        crate::collector::COLLECTOR_PORT,
                    ),
                    kubeconfig: self.plane().admin_kubeconfig().to_owned(),
                    data_dir: self.state().root().join("collector"),
                    extra_args: self.collector_args.clone(),
                    lifetime: self.lifetime,
                }
            }
        };
        let mut collector = Collector::start(self.state(), &config)?;
        collector.wait_ready(Duration::from_secs(30))?;
        self.collector = Some(collector);
        Ok(())
    }

    pub fn project_binaries(&self) -> &ProjectBinaries {
        &self.project
    }

    // ---- lifetime ----------------------------------------------------------

    /// Leaves everything running (`bulkhead-lab up`); `down` removes it.
    pub fn detach(mut self) -> Result<LabRecord> {
        self.save()?;
        let record = self.state().read_record()?;
        self.detached = true;
        if let Some(topology) = self.topology.as_mut() {
            topology.keep();
        }
        for operator in self.operators.values_mut() {
            operator.keep();
        }
        for agent in self.agents.values_mut() {
            agent.keep();
        }
        if let Some(c) = self.collector.as_mut() {
            c.keep();
        }
        for (_, listener) in &mut self.listeners {
            listener.keep();
        }
        for process in &mut self.service_processes {
            process.keep();
        }
        if let Some(temp) = self.temp.take() {
            let _ = temp.keep();
        }
        if let Some(plane) = self.plane.take() {
            plane.detach();
        }
        Ok(record)
    }

    /// Writes `lab.json`: the control plane's record and this lab's parts.
    fn save(&self) -> Result<()> {
        let mut record = self.plane().record().clone();
        record.parts = Some(LabParts {
            topology: Some(self.topology().clone()),
            bpffs: Some(self.bpffs.clone()),
            pods: self.pods.values().cloned().collect(),
            agent_mode: (!self.agents.is_empty()).then(|| self.agent_mode.name().to_owned()),
            operators: self
                .operators
                .iter()
                .map(|(n, o)| (n.clone(), o.metrics_addr.to_string()))
                .collect(),
            listen: self.listen.clone(),
        });
        self.state().write_record(&record)
    }

    fn install_rbac(&self) -> Result<()> {
        let admin = self.kubectl();
        operator::install_rbac(&admin)?;
        for node in self.node_names() {
            operator::install_agent_rbac(&admin, &node)?;
        }
        let external = operator::rbac_dir().join("external-nodes.yaml");
        admin.run(&["apply", "-f", &external.to_string_lossy()])?;
        Ok(())
    }

    fn register_nodes(&self, labels: &Labels) -> Result<()> {
        let admin = self.kubectl();
        for node in &self.topology().nodes {
            kubelet::register_node(
                &admin,
                &NodeRegistration {
                    name: node.name.clone(),
                    labels: labels.clone(),
                    addresses: vec![IpAddr::V4(node.address), IpAddr::V6(node.address6)],
                    pod_cidrs: vec![node.pod_cidr.clone(), node.pod_cidr6.clone()],
                },
            )?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        for (_, mut agent) in std::mem::take(&mut self.agents) {
            let _ = agent.stop();
        }
        for (_, mut listener) in std::mem::take(&mut self.listeners) {
            let _ = listener.kill();
        }
        for mut process in std::mem::take(&mut self.service_processes) {
            let _ = process.stop();
        }
        for (_, mut operator) in std::mem::take(&mut self.operators) {
            let _ = operator.stop();
        }
        if let Some(mut c) = self.collector.take() {
            let _ = c.kill();
        }
        let _ = netns::unmount(&self.bpffs);
        if let Some(plane) = self.plane.take() {
            let _ = plane.stop();
        }
        drop(self.topology.take());
        if let Some(temp) = self.temp.take() {
            if std::env::var_os(KEEP_ENV).is_some() {
                eprintln!("bulkhead-lab: kept {}", temp.keep().display());
            }
        }
    }
}

/// Prints how long each step of `start` took, when asked to.
struct Steps {
    verbose: bool,
    last: Instant,
}

impl Steps {
    fn new(verbose: bool) -> Self {
        Self {
            verbose,
            last: Instant::now(),
        }
    }

    fn done(&mut self, what: &str) {
        if self.verbose {
            eprintln!(
                "bulkhead-lab: {what} ({:.1}s)",
                self.last.elapsed().as_secs_f64()
            );
        }
        self.last = Instant::now();
    }
}

fn split_key(key: &str) -> Result<(&str, &str)> {
    key.split_once('/')
        .ok_or_else(|| Error::Topology(format!("{key:?} is not namespace/name")))
}
