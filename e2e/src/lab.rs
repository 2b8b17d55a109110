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
//! ```
//!
//! Everything is recorded in the state directory (`lab.json` and pid files),
//! so `down` in another invocation removes exactly what `up` made. Dropping
//! a `Lab` that was not detached undoes it in reverse: tests clean up even
//! when an assertion fails.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::agent::{self, AgentConfig, AgentMode};
use crate::binaries::ProjectBinaries;
use crate::control_plane::{ControlPlane, ControlPlaneConfig, KEEP_ENV};
use crate::error::{Error, Result};
use crate::kubectl::Kubectl;
use crate::kubelet::{self, Labels, NodeRegistration, PodRegistration};
use crate::netns;
use crate::operator::{self, Operator, OperatorConfig};
use crate::process::{self, Lifetime, Process};
use crate::state::{LabRecord, StateDir};
use crate::topology::{self, NodeNet, Topology, TopologySpec};
use crate::traffic::{self, ProbeResult, Proto};

/// Whether the lab starts node agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agents {
    /// No agents (control-plane tests).
    Off,
    /// Agents in cluster mode when the binary has it; none otherwise.
    IfClusterMode,
    /// Agents in whatever mode the binary has (standalone: from files the
    /// lab writes once the operator has published).
    Always,
}

/// A pod to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: Labels,
}

impl Workload {
    pub fn new(namespace: &str, name: &str, node: &str, labels: &[(&str, &str)]) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            node: node.to_owned(),
            labels: kubelet::labels(labels.iter().copied()),
        }
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
    pub lifetime: Lifetime,
    /// Print each step and its duration to stderr (also `$BULKHEAD_LAB_VERBOSE`).
    pub verbose: bool,
}

impl LabSpec {
    /// `nodes` nodes in a temporary directory, one operator, agents when the
    /// agent has cluster mode, no namespaces or pods yet.
    pub fn new(nodes: u8) -> Self {
        Self {
            dir: None,
            nodes,
            node_labels: Labels::new(),
            namespaces: Vec::new(),
            workloads: Vec::new(),
            operators: vec!["a".into()],
            agents: Agents::IfClusterMode,
            lifetime: Lifetime::Attached,
            verbose: std::env::var_os("BULKHEAD_LAB_VERBOSE").is_some(),
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

/// One request to send: from pod, to pod (`namespace/name`), protocol, port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub proto: Proto,
    pub port: u16,
}

impl Probe {
    pub fn tcp(from: &str, to: &str, port: u16) -> Self {
        Self {
            from: from.to_owned(),
            to: to.to_owned(),
            proto: Proto::Tcp,
            port,
        }
    }

    pub fn udp(from: &str, to: &str, port: u16) -> Self {
        Self {
            proto: Proto::Udp,
            ..Self::tcp(from, to, port)
        }
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
    pub netns: String,
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
    /// Listeners by the key of the pod they run in.
    listeners: Vec<(String, Process)>,
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
        let agent_mode = AgentMode::detect(&project.agent)?;
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
            listeners: Vec::new(),
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
        for workload in &spec.workloads {
            lab.add_pod(workload)?;
        }
        step.done("Namespaces and Pods");
        for name in &spec.operators {
            lab.start_operator(name)?;
        }
        step.done("operator ready");
        let start_agents = match spec.agents {
            Agents::Off => false,
            Agents::IfClusterMode => agent_mode == AgentMode::Cluster,
            Agents::Always => true,
        };
        if start_agents {
            lab.start_agents()?;
            step.done("agents started");
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

    pub fn project_binaries(&self) -> &ProjectBinaries {
        &self.project
    }

    // ---- cluster objects ---------------------------------------------------

    /// `kubectl apply -f -`.
    pub fn apply(&self, yaml: &str) -> Result<String> {
        self.kubectl().apply(yaml)
    }

    pub fn add_namespace(&self, name: &str, labels: &Labels) -> Result<()> {
        kubelet::ensure_namespace(&self.kubectl(), name, labels)
    }

    /// Builds the pod's network on its node and registers it Running.
    pub fn add_pod(&mut self, workload: &Workload) -> Result<LabPod> {
        let key = format!("{}/{}", workload.namespace, workload.name);
        if self.pods.contains_key(&key) {
            return Err(Error::Topology(format!("pod {key} exists already")));
        }
        let net = self
            .topology
            .as_mut()
            .unwrap_or_else(|| unreachable!("the topology lives until drop"))
            .add_pod(&workload.node)?;
        let pod = LabPod {
            namespace: workload.namespace.clone(),
            name: workload.name.clone(),
            node: workload.node.clone(),
            address: net.address,
            netns: net.netns,
        };
        self.pods.insert(key, pod.clone());
        self.save()?;
        kubelet::create_pod(
            &self.kubectl(),
            &PodRegistration {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                node: pod.node.clone(),
                labels: workload.labels.clone(),
                address: IpAddr::V4(pod.address),
            },
        )?;
        Ok(pod)
    }

    /// Deletes the Pod object, then its network.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) -> Result<()> {
        let key = format!("{namespace}/{name}");
        kubelet::delete_pod(&self.kubectl(), namespace, name)?;
        for (_, mut listener) in self.listeners.extract_if(.., |(k, _)| *k == key) {
            listener.kill()?;
        }
        if let Some(pod) = self.pods.remove(&key) {
            self.topology
                .as_mut()
                .unwrap_or_else(|| unreachable!("the topology lives until drop"))
                .remove_pod(pod.address)?;
        }
        self.save()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Result<&LabPod> {
        self.pods
            .get(&format!("{namespace}/{name}"))
            .ok_or_else(|| Error::Topology(format!("no pod {namespace}/{name} in the lab")))
    }

    pub fn pods(&self) -> impl Iterator<Item = &LabPod> {
        self.pods.values()
    }

    /// Sets (`Some`) or removes (`None`) labels of a pod.
    pub fn relabel_pod(
        &self,
        namespace: &str,
        name: &str,
        changes: &[(&str, Option<&str>)],
    ) -> Result<()> {
        kubelet::relabel(&self.kubectl(), &["pod", "-n", namespace, name], changes)
    }

    pub fn relabel_namespace(&self, name: &str, changes: &[(&str, Option<&str>)]) -> Result<()> {
        kubelet::relabel(&self.kubectl(), &["namespace", name], changes)
    }

    pub fn relabel_node(&self, name: &str, changes: &[(&str, Option<&str>)]) -> Result<()> {
        kubelet::relabel(&self.kubectl(), &["node", name], changes)
    }

    // ---- operator ----------------------------------------------------------

    /// Starts an operator replica and waits until it is ready.
    pub fn start_operator(&mut self, name: &str) -> Result<()> {
        self.start_operator_with(name, &[])
    }

    /// Starts an operator replica with more flags and waits until it is ready.
    pub fn start_operator_with(&mut self, name: &str, extra_args: &[&str]) -> Result<()> {
        if self.operators.contains_key(name) {
            return Err(Error::Unexpected {
                what: format!("operator {name}"),
                problem: "runs already".into(),
            });
        }
        let config = OperatorConfig {
            name: name.to_owned(),
            binary: self.project.operator.clone(),
            kubeconfig: self.plane().operator_kubeconfig().to_owned(),
            lifetime: self.lifetime,
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
        };
        let mut operator = Operator::start(self.state(), &config)?;
        operator.wait_ready(OPERATOR_READY_TIMEOUT)?;
        self.operators.insert(name.to_owned(), operator);
        self.save()
    }

    pub fn operator(&mut self, name: &str) -> Result<&mut Operator> {
        self.operators
            .get_mut(name)
            .ok_or_else(|| Error::Unexpected {
                what: format!("operator {name}"),
                problem: "is not running in this lab".into(),
            })
    }

    pub fn operator_names(&self) -> Vec<String> {
        self.operators.keys().cloned().collect()
    }

    /// Stops a replica with SIGTERM (a rolling update).
    pub fn stop_operator(&mut self, name: &str) -> Result<()> {
        let mut operator = self.take_operator(name)?;
        operator.stop()
    }

    /// Kills a replica with SIGKILL (a crash).
    pub fn kill_operator(&mut self, name: &str) -> Result<()> {
        let mut operator = self.take_operator(name)?;
        operator.kill()
    }

    fn take_operator(&mut self, name: &str) -> Result<Operator> {
        let operator = self
            .operators
            .remove(name)
            .ok_or_else(|| Error::Unexpected {
                what: format!("operator {name}"),
                problem: "is not running in this lab".into(),
            })?;
        self.save()?;
        Ok(operator)
    }

    // ---- agents ------------------------------------------------------------

    /// Starts every node's agent that is not running.
    pub fn start_agents(&mut self) -> Result<()> {
        for node in self.node_names() {
            if !self.agents.contains_key(&node) {
                self.start_agent(&node)?;
            }
        }
        Ok(())
    }

    /// Starts `node`'s agent (see `agent::start_agent`).
    pub fn start_agent(&mut self, node: &str) -> Result<()> {
        if !netns::is_mount_point(&self.bpffs) {
            netns::mount_bpffs(&self.bpffs)?;
            self.save()?;
        }
        let config = self.agent_config(node)?;
        if self.agent_mode == AgentMode::Standalone {
            let admin = self.kubectl();
            wait_until(
                &format!("the operator to publish NodeRuleMap {node}"),
                Duration::from_secs(30),
                || {
                    let files = agent::write_standalone_files(&admin, &config)?;
                    Ok((files != agent::Files::NotPublished).then_some(()))
                },
            )?;
        }
        let process = agent::start_agent(self.state(), &config)?;
        self.agents.insert(node.to_owned(), process);
        self.save()
    }

    /// Stops `node`'s agent with SIGTERM; its programs stay attached and keep
    /// enforcing the last maps (they are pinned).
    pub fn stop_agent(&mut self, node: &str) -> Result<()> {
        if let Some(mut process) = self.agents.remove(node) {
            process.stop()?;
        }
        self.save()
    }

    /// Returns once every running agent has programmed what is published
    /// now. Cluster mode: each node's rule map reports its generation as
    /// programmed. Standalone mode: the lab rewrites the agents' files from
    /// the published objects and waits for each agent to reload them.
    ///
    /// A rule map's generation does not cover the shards: a change that only
    /// moves an address between identities (a pod on another node) is not
    /// waited for here; probe until the expected verdict appears.
    pub fn sync_agents(&self, timeout: Duration) -> Result<()> {
        let admin = self.kubectl();
        for node in self.agents.keys() {
            match self.agent_mode {
                AgentMode::Cluster => {
                    wait_until(
                        &format!("the agent of {node} to program its rule map"),
                        timeout,
                        || {
                            let map = crate::observe::rule_map(&admin, node)?;
                            let programmed = map.as_ref().and_then(|m| {
                                let status = m.status.as_ref()?.programmed_generation?;
                                (Some(status) == m.metadata.generation).then_some(())
                            });
                            Ok(programmed)
                        },
                    )?;
                }
                AgentMode::Standalone => {
                    let config = self.agent_config(node)?;
                    let (before, _) = agent::standalone_status(&config);
                    if agent::write_standalone_files(&admin, &config)? != agent::Files::Changed {
                        continue;
                    }
                    wait_until(
                        &format!("the standalone agent of {node} to reload its files"),
                        timeout,
                        || match agent::standalone_status(&config) {
                            (_, Some(error)) => Err(Error::Unexpected {
                                what: format!("the agent of {node}"),
                                problem: format!("rejected its files: {error}"),
                            }),
                            (n, None) => Ok((n > before).then_some(())),
                        },
                    )?;
                }
            }
        }
        Ok(())
    }

    pub fn agent_log(&self, node: &str) -> String {
        self.agents
            .get(node)
            .map(|p| p.log_tail(40))
            .unwrap_or_default()
    }

    fn agent_config(&self, node: &str) -> Result<AgentConfig> {
        let net = self.node(node)?.clone();
        let kubeconfig = self
            .plane()
            .record()
            .kubeconfigs
            .get(&crate::certs::Identity::agent(node).name)
            .cloned()
            .ok_or_else(|| Error::Unexpected {
                what: format!("node {node}"),
                problem: "has no agent kubeconfig".into(),
            })?;
        Ok(AgentConfig {
            binary: self.project.agent.clone(),
            mode: self.agent_mode,
            node: net,
            kubeconfig,
            bpffs: self.bpffs.clone(),
            dir: self.state().root().join("agents").join(node),
            lifetime: self.lifetime,
        })
    }

    // ---- traffic -----------------------------------------------------------

    /// Starts a listener in a pod that answers on these ports until the lab ends.
    pub fn listen(&mut self, namespace: &str, name: &str, tcp: &[u16], udp: &[u16]) -> Result<()> {
        let pod = self.pod(namespace, name)?.clone();
        let process = traffic::start_listener(
            self.state(),
            &format!("{}-{}", pod.namespace, pod.name),
            &pod.netns,
            tcp,
            udp,
        )?;
        self.listeners.push((pod.key(), process));
        Ok(())
    }

    /// One request from pod `from` to pod `to` (`namespace/name` keys).
    pub fn probe(&self, from: &str, to: &str, proto: Proto, port: u16) -> Result<ProbeResult> {
        let (fns, fname) = split_key(from)?;
        let (tns, tname) = split_key(to)?;
        let src = self.pod(fns, fname)?;
        let dst = self.pod(tns, tname)?;
        traffic::probe(
            &src.netns,
            proto,
            IpAddr::V4(dst.address),
            port,
            traffic::PROBE_TIMEOUT,
        )
    }

    /// Many probes at once (each waits up to a second for its answer).
    pub fn probe_all(&self, probes: &[Probe]) -> Result<Vec<ProbeResult>> {
        std::thread::scope(|scope| {
            let running: Vec<_> = probes
                .iter()
                .map(|p| scope.spawn(move || self.probe(&p.from, &p.to, p.proto, p.port)))
                .collect();
            running
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Unexpected {
                            what: "a probe".into(),
                            problem: "its thread panicked".into(),
                        })
                    })
                })
                .collect()
        })
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
        });
        self.state().write_record(&record)
    }

    fn install_rbac(&self) -> Result<()> {
        let admin = self.kubectl();
        operator::install_rbac(&admin)?;
        for node in self.node_names() {
            operator::install_agent_rbac(&admin, &node)?;
        }
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
                    address: IpAddr::V4(node.address),
                    pod_cidr: node.pod_cidr.clone(),
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
        for (_, mut operator) in std::mem::take(&mut self.operators) {
            let _ = operator.stop();
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

/// Calls `check` until it returns `Some`, every 100 ms, for up to `timeout`.
/// The last error, if any, is in the timeout's message.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e.to_string()),
        }
        if Instant::now() > deadline {
            let what = match last_error {
                Some(e) => format!("{what} (last error: {e})"),
                None => what.to_owned(),
            };
            return Err(Error::Timeout {
                what,
                seconds: timeout.as_secs(),
            });
        }
        sleep(Duration::from_millis(100));
    }
}

// ---- bulkhead-lab up | down | status -----------------------------------------

/// Brings a lab up in `spec.dir` and leaves it running.
pub fn up(mut spec: LabSpec) -> Result<LabRecord> {
    spec.lifetime = Lifetime::Detached;
    Lab::start(spec)?.detach()
}

/// What `down` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Down {
    /// Processes stopped, newest first.
    pub stopped: Vec<String>,
    /// Network namespaces removed.
    pub namespaces: usize,
}

/// Stops every process the lab recorded (newest first: agents, operators,
/// the API server, etcd), unmounts the agents' bpffs, removes the
/// topology, then the state directory.
pub fn down(state: &StateDir) -> Result<Down> {
    let parts = state
        .read_record()
        .ok()
        .and_then(|r| r.parts)
        .unwrap_or_default();
    let stopped = process::stop_recorded(state)?;
    if let Some(bpffs) = &parts.bpffs {
        netns::unmount(bpffs)?;
    }
    let mut namespaces = 0;
    if let Some(topology) = &parts.topology {
        namespaces = topology.nodes.iter().map(|n| 1 + n.pods.len()).sum();
        topology::teardown(topology)?;
    }
    state.remove()?;
    Ok(Down {
        stopped,
        namespaces,
    })
}

/// One line of `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessStatus {
    pub name: String,
    pub pid: i32,
    pub running: bool,
}

/// What the state directory records and whether each process still runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub record: Option<LabRecord>,
    pub processes: Vec<ProcessStatus>,
    /// Recorded network namespaces that no longer exist.
    pub missing_namespaces: Vec<String>,
}

pub fn status(state: &StateDir) -> Result<Status> {
    let record = if state.record_path().exists() {
        Some(state.read_record()?)
    } else {
        None
    };
    let processes = process::recorded(state)?
        .into_iter()
        .map(|p| ProcessStatus {
            running: p.is_running(),
            name: p.name,
            pid: p.pid,
        })
        .collect();
    let mut missing_namespaces = Vec::new();
    if let Some(topology) = record
        .as_ref()
        .and_then(|r| r.parts.as_ref())
        .and_then(|p| p.topology.as_ref())
    {
        for node in &topology.nodes {
            let all = std::iter::once(&node.netns).chain(node.pods.iter().map(|p| &p.netns));
            missing_namespaces.extend(all.filter(|ns| !netns::netns_exists(ns)).cloned());
        }
    }
    Ok(Status {
        record,
        processes,
        missing_namespaces,
    })
}

/// The lab's directory for a `--dir` argument or the default.
pub fn dir_or_default(dir: Option<&Path>) -> PathBuf {
    dir.map_or_else(StateDir::default_root, Path::to_owned)
}
