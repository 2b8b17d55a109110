//! Node agents: one real `bulkhead-agent` per node, inside the node's network
//! namespace (`ip netns exec`), protecting the node's uplink and the node
//! side of every pod veth.
//!
//! [`start_agent`] is the one place an agent is started. It runs the agent in
//! the mode the binary offers ([`AgentMode::detect`] reads `--help` for
//! `--node-name`):
//!
//! - **cluster**: the agent watches its own NodeRuleMap and the IdentityMap
//!   shards with its node's kubeconfig (user `bulkhead:agent:<node>`, rights
//!   from `deploy/rbac/agent.yaml.tmpl`) and reports what it programmed in
//!   the rule map's status;
//! - **standalone**: the agent reads files; the lab writes the node's
//!   published NodeRuleMap and shards there ([`write_standalone_files`]),
//!   refreshed when the lab is asked to (`Lab::sync_agents`). A fallback for
//!   agents built without cluster mode.
//!
//! Every agent pins its maps in one bpffs the lab mounts in its state
//! directory (pin directory = node name), so an agent that restarts finds
//! its maps, and `down` drops every pin by unmounting it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::kubectl::Kubectl;
use crate::netns;
use crate::process::{Lifetime, Process};
use crate::state::StateDir;
use crate::topology::{NodeNet, NODE_UPLINK, POD_VETH_PREFIX};

/// The flag that names the node in cluster mode (the client comes from
/// `KUBECONFIG`).
const NODE_NAME_FLAG: &str = "--node-name";

/// How an agent gets its rule map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentMode {
    /// From the API server, with the node's kubeconfig.
    Cluster,
    /// From files the lab writes.
    Standalone,
}

impl AgentMode {
    pub fn name(self) -> &'static str {
        match self {
            AgentMode::Cluster => "cluster",
            AgentMode::Standalone => "standalone",
        }
    }
}

/// Everything one agent is started with.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub binary: PathBuf,
    pub mode: AgentMode,
    pub node: NodeNet,
    /// The node's kubeconfig (cluster mode).
    pub kubeconfig: PathBuf,
    /// The lab's bpffs mount.
    pub bpffs: PathBuf,
    /// Where standalone files, the flow log and the status file go.
    pub dir: PathBuf,
    pub lifetime: Lifetime,
    /// The collector's URL; the agent ships flows there with
    /// [`AgentConfig::collector_token`].
    pub collector: Option<String>,
}

impl AgentConfig {
    pub fn flow_log(&self) -> PathBuf {
        self.dir.join("flows.jsonl")
    }
    pub fn rule_map_file(&self) -> PathBuf {
        self.dir.join("rule-map.json")
    }
    pub fn status_file(&self) -> PathBuf {
        self.dir.join("status.json")
    }
    /// The node-bound ServiceAccount token the agent shows the collector.
    pub fn collector_token(&self) -> PathBuf {
        self.dir.join("collector-token")
    }
    pub fn spool_dir(&self) -> PathBuf {
        self.dir.join("spool")
    }
    /// `/metrics`, `/healthz`, `/readyz`, on the node's own address.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(std::net::IpAddr::V4(self.node.address), AGENT_METRICS_PORT)
    }
    fn identities_dir(&self) -> PathBuf {
        self.dir.join("identities")
    }
}

/// The agents' metrics port, on each node's address.
pub const AGENT_METRICS_PORT: u16 = 9465;

/// The name of a node's agent among the lab's processes.
pub fn process_name(node: &str) -> String {
    format!("agent-{node}")
}

/// Starts `config.node`'s agent inside the node's namespace. The seam
/// between the lab and the agent: the only function that knows its flags.
pub fn start_agent(state: &StateDir, config: &AgentConfig) -> Result<Process> {
    std::fs::create_dir_all(&config.dir).map_err(Error::io("create", config.dir.clone()))?;
    let mut cmd = netns::command_in(&config.node.netns, &config.binary);
    cmd.env("NO_COLOR", "1")
        .env(
            "RUST_LOG",
            std::env::var("BULKHEAD_AGENT_LOG").unwrap_or_else(|_| "info".into()),
        )
        .arg(format!("--host-interface={NODE_UPLINK}"))
        .arg(format!("--endpoint-prefix={POD_VETH_PREFIX}"))
        .arg(format!("--bpffs={}", config.bpffs.display()))
        .arg(format!("--pin-name={}", config.node.name))
        .arg(format!("--flow-log={}", config.flow_log().display()))
        .arg(format!("--metrics-addr={}", config.metrics_addr()))
        .arg("--flow-interval-ms=1000")
        .arg("--hits-interval-ms=1000")
        // Pods' egress to a ClusterIP is judged on the backend, after the
        // node's kube-proxy translated it.
        .arg(format!("--service-cidr={}", crate::services::SERVICE_CIDR));
    if let Some(url) = &config.collector {
        cmd.arg(format!("--collector={url}"))
            .arg(format!(
                "--collector-token-file={}",
                config.collector_token().display()
            ))
            .arg(format!("--spool-dir={}", config.spool_dir().display()));
    }
    match config.mode {
        AgentMode::Cluster => {
            cmd.env("KUBECONFIG", &config.kubeconfig)
                .arg(format!("{NODE_NAME_FLAG}={}", config.node.name));
        }
        AgentMode::Standalone => {
            cmd.arg(format!("--rule-map={}", config.rule_map_file().display()))
                .arg(format!("--status-file={}", config.status_file().display()));
            for shard in standalone_shard_files(config)? {
                cmd.arg(format!("--identities={}", shard.display()));
            }
        }
    }
    Process::spawn(
        state,
        &process_name(&config.node.name),
        cmd,
        config.lifetime,
    )
}

/// What `write_standalone_files` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Files {
    /// The operator has not published the node's rule map yet.
    NotPublished,
    /// The files already held what is published.
    Unchanged,
    /// At least one file was rewritten; the agent reloads on its next poll.
    Changed,
}

/// Writes the node's published NodeRuleMap and every IdentityMap shard
/// where a standalone agent reads them, each only if its content changed
/// (atomically, so a polling agent never reads half a file).
pub fn write_standalone_files(admin: &Kubectl, config: &AgentConfig) -> Result<Files> {
    let node = &config.node.name;
    let out = admin.output(&["get", "noderulemap", node, "-o", "json"], None)?;
    if !out.success {
        return Ok(Files::NotPublished);
    }
    std::fs::create_dir_all(config.identities_dir())
        .map_err(Error::io("create", config.identities_dir()))?;
    let mut changed = write_if_changed(&config.rule_map_file(), &out.stdout)?;
    let shards = admin.json(&["get", "identitymaps"])?;
    let items = shards["items"].as_array().cloned().unwrap_or_default();
    for item in items {
        let name = item["metadata"]["name"]
            .as_str()
            .unwrap_or("shard")
            .to_owned();
        let path = config.identities_dir().join(format!("{name}.json"));
        changed |= write_if_changed(&path, &item.to_string())?;
    }
    Ok(if changed {
        Files::Changed
    } else {
        Files::Unchanged
    })
}

/// How many times a standalone agent has programmed its maps, and its last
/// error, from its status file.
pub fn standalone_status(config: &AgentConfig) -> (u64, Option<String>) {
    let status: serde_json::Value = std::fs::read_to_string(config.status_file())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    (
        status["programmed"].as_u64().unwrap_or(0),
        status["error"].as_str().map(str::to_owned),
    )
}

fn write_if_changed(path: &Path, text: &str) -> Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    write_atomic(path, text)?;
    Ok(true)
}

fn standalone_shard_files(config: &AgentConfig) -> Result<Vec<PathBuf>> {
    let dir = config.identities_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(Error::io("read", dir.clone()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if !config.rule_map_file().exists() || files.is_empty() {
        return Err(Error::Unexpected {
            what: format!("the standalone agent of {}", config.node.name),
            problem: "the operator has published no rule map or identities for it yet".into(),
        });
    }
    Ok(files)
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(Error::io("write", tmp.clone()))?;
    std::fs::rename(&tmp, path).map_err(Error::io("rename", path))
}
