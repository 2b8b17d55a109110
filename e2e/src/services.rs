//! Services in the lab: the real kube-proxy on every node and the real
//! EndpointSlice controller (kube-controller-manager), both built by
//! `e2e/tools.sh` from the same Kubernetes module as the API server.
//!
//! ```text
//!  root namespace   kube-controller-manager --controllers=endpointslice
//!                     Services + Ready pods with podIPs (the lab's kubelet) -> EndpointSlices
//!  netns node-i     kube-proxy --proxy-mode=iptables|nftables --hostname-override=node-i
//!                     EndpointSlices -> DNAT rules in the node's own netfilter
//! ```
//!
//! Each kube-proxy runs inside its node's namespace, so its rules, its
//! conntrack table and its sysctls are that node's alone: pods reach a
//! ClusterIP through their node exactly as on a real node.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::binaries;
use crate::error::{Error, Result};
use crate::netns;
use crate::process::{Lifetime, Process};
use crate::state::StateDir;
use crate::topology::NodeNet;

/// The API server's `--service-cluster-ip-range` (one family: the lab's
/// Services are IPv4). The agents are told the same range. Above every
/// lab's cluster CIDR (10.<lab id>.0.0/16): `topology::plan` checks it.
pub const SERVICE_CIDR: &str = "10.255.0.0/16";

/// How kube-proxy programs the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    Iptables,
    Nftables,
}

impl ProxyMode {
    pub fn name(self) -> &'static str {
        match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Nftables => "nftables",
        }
    }
}

/// kube-proxy and kube-controller-manager, from `e2e/tools.sh`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceBinaries {
    pub kube_proxy: PathBuf,
    pub controller_manager: PathBuf,
}

impl ServiceBinaries {
    /// `$KUBE_PROXY` and `$KUBE_CONTROLLER_MANAGER`, or what the tools
    /// script reports; an error saying how to build them otherwise.
    pub fn locate() -> Result<Self> {
        Ok(Self {
            kube_proxy: binaries::locate_one("KUBE_PROXY", "kube-proxy")?,
            controller_manager: binaries::locate_one(
                "KUBE_CONTROLLER_MANAGER",
                "kube-controller-manager",
            )?,
        })
    }
}

/// Starts the EndpointSlice controller (nothing else of the controller
/// manager) in the root namespace, with the admin's kubeconfig.
pub fn start_controller_manager(
    state: &StateDir,
    binary: &Path,
    kubeconfig: &Path,
    lifetime: Lifetime,
) -> Result<Process> {
    let mut cmd = std::process::Command::new(binary);
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--controllers=endpointslice-controller")
        .arg("--leader-elect=false")
        // Nothing scrapes it; 0 serves no HTTPS at all.
        .arg("--secure-port=0")
        .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
        .arg("--v=1");
    Process::spawn(state, "kube-controller-manager", cmd, lifetime)
}

/// The name of a node's kube-proxy among the lab's processes.
pub fn proxy_process_name(node: &str) -> String {
    format!("kube-proxy-{node}")
}

/// Starts `node`'s kube-proxy inside the node's namespace.
pub fn start_kube_proxy(
    state: &StateDir,
    binary: &Path,
    node: &NodeNet,
    cluster_cidr: &str,
    kubeconfig: &Path,
    mode: ProxyMode,
    lifetime: Lifetime,
) -> Result<Process> {
    let mut cmd = netns::command_in(&node.netns, binary);
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--hostname-override={}", node.name))
        .arg(format!("--proxy-mode={}", mode.name()))
        // Pods of the cluster are not masqueraded on their way to a
        // Service: the backend sees (and policy judges) the real client.
        .arg(format!("--cluster-cidr={cluster_cidr}"))
        // nf_conntrack_max is global to the machine, not the namespace's:
        // leave it alone.
        .arg("--conntrack-max-per-core=0")
        .arg(format!(
            "--healthz-bind-address={}:{HEALTHZ_PORT}",
            node.address
        ))
        .arg(format!(
            "--metrics-bind-address={}:{METRICS_PORT}",
            node.address
        ))
        .arg("--v=1");
    Process::spawn(state, &proxy_process_name(&node.name), cmd, lifetime)
}

/// kube-proxy's `/healthz` and `/metrics` ports, on each node's address.
pub const HEALTHZ_PORT: u16 = 10256;
pub const METRICS_PORT: u16 = 10249;

/// The rules kube-proxy wrote in `node`'s namespace, as text: what
/// `iptables-save -t nat` or `nft list table ip kube-proxy` prints.
pub fn proxy_rules(node: &NodeNet, mode: ProxyMode) -> Result<String> {
    let out = match mode {
        ProxyMode::Iptables => netns::command_in(&node.netns, "iptables-save")
            .args(["-t", "nat"])
            .output(),
        ProxyMode::Nftables => netns::command_in(&node.netns, "nft")
            .args(["list", "table", "ip", "kube-proxy"])
            .output(),
    }
    .map_err(|source| Error::Spawn {
        program: "iptables-save/nft".into(),
        source,
    })?;
    // Before kube-proxy's first sync the nft table does not exist yet.
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `node`'s kube-proxy rules name the Service address and every
/// one of `backends` (the caller waits on the EndpointSlice first; the
/// rules are what the node's packets meet).
pub fn translates(
    node: &NodeNet,
    mode: ProxyMode,
    vip: Ipv4Addr,
    backends: &[Ipv4Addr],
) -> Result<bool> {
    let rules = proxy_rules(node, mode)?;
    let has = |ip: Ipv4Addr| {
        let s = ip.to_string();
        // Whole addresses only: 10.1.1.1 must not match inside 10.1.1.10.
        rules
            .match_indices(&s)
            .any(|(i, _)| !rules[i + s.len()..].starts_with(|c: char| c.is_ascii_digit()))
    };
    Ok(has(vip) && backends.iter().all(|b| has(*b)))
}
