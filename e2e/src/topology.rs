//! Nodes and pods as network namespaces, wired as a small dual-stack
//! cluster network.
//!
//! ```text
//!  root namespace                          lab id L (1..=250), node i (1..), pod j (0..)
//!  ┌──────────────────────────────────────────────────────────────────────────────┐
//!  │ bridge bh<L>br 172.31.L.1/24, fd42:L::1/64  ◄── the API server binds here    │
//!  │   ├── bh<L>n1 ─veth─┐        ├── bh<L>n2 ─veth─┐                             │
//!  └─────────────────────┼────────────────────────-─┼─────────────────────────────┘
//!   netns bh-L-node-1    │ eth0 172.31.L.11/24      │ eth0 172.31.L.12/24   (bh-L-node-2)
//!                        │      fd42:L::b/64        │      fd42:L::c/64
//!     route 10.L.2.0/24 via 172.31.L.12, fd42:L:2::/64 via fd42:L::c  (and so on)
//!     veth0 ─┐  route 10.L.1.10/32 and fd42:L:1::a/128 dev veth0, permanent neighbours
//!   netns bh-L-pod-1-0
//!     eth0 10.L.1.10/32, fd42:L:1::a/128 (L, i and j+10 in hex in IPv6)
//!     default via 169.254.1.1 and fe80::1 (the node's veth0, permanent neighbours)
//! ```
//!
//! Pods reach their node through a link-local next hop, as Calico wires
//! them, so the node side of a pod veth needs no address and the agent finds
//! endpoints by the `veth` prefix. Nodes route each other's pod CIDRs over
//! the bridge. Nothing leaves the namespaces the lab creates: the root
//! namespace only holds the bridge, its address and the node uplinks.
//!
//! The lab id is claimed by creating the bridge (creation is atomic), so
//! parallel labs never share names or addresses. Everything made is recorded
//! in a [`TopologyRecord`], which is all [`teardown`] needs.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::netns::{self, ip, ip_in, sysctl_in};

mod external;
pub mod plan;
pub use external::{external_host_name, ExternalHostNet, EXTERNAL_HOST_OFFSET, SEGMENT_INTERFACE};

/// The highest lab id; addresses are 172.31.<id>.0/24 and 10.<id>.<node>.0/24
/// (fd42:<id>::/64 and fd42:<id>:<node>::/64).
pub const MAX_LAB_ID: u8 = 250;
/// Pod j's address is .<j + POD_HOST_OFFSET>; node i's is .<i + NODE_HOST_OFFSET>.
pub const POD_HOST_OFFSET: u8 = 10;
pub const NODE_HOST_OFFSET: u8 = 10;
/// The pods' next hops: link-local addresses their node answers for.
pub const POD_GATEWAY: &str = "169.254.1.1";
pub const POD_GATEWAY6: &str = "fe80::1";
/// The first 16 bits of every IPv6 address of the lab (a ULA prefix):
/// fd42:<lab>::/64 between nodes, fd42:<lab>:<node>::/64 for its pods.
const ULA: u16 = 0xfd42;
/// Names of the interfaces inside the namespaces.
pub const NODE_UPLINK: &str = "eth0";
pub const POD_INTERFACE: &str = "eth0";
/// The prefix of the node-side ends of pod veths (the agent's endpoint prefix).
pub const POD_VETH_PREFIX: &str = "veth";

/// How big a network to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopologySpec<'a> {
    pub nodes: u8,
    pub pods_per_node: u8,
    /// The lab's state directory, written on the bridge (its alias) with
    /// this process's id, so `prune` can tell a live lab from a crashed one.
    pub owner_dir: &'a Path,
}

/// Everything the topology made; `teardown` removes exactly this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyRecord {
    /// The lab id, part of every name and address.
    pub lab: u8,
    /// The bridge in the root namespace.
    pub bridge: String,
    /// The bridge's address: the root namespace as the nodes see it.
    pub gateway: Ipv4Addr,
    #[serde(default = "unspecified6")]
    pub gateway6: Ipv6Addr,
    pub nodes: Vec<NodeNet>,
    /// Hosts outside the cluster (`--external-nodes`), see external.rs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_hosts: Vec<ExternalHostNet>,
}

/// One node: a namespace with an uplink into the bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeNet {
    /// Its Kubernetes name, `node-<index>`.
    pub name: String,
    pub index: u8,
    pub netns: String,
    pub address: Ipv4Addr,
    #[serde(default = "unspecified6")]
    pub address6: Ipv6Addr,
    /// The root-namespace end of its uplink, enslaved to the bridge.
    pub uplink: String,
    /// `10.<lab>.<index>.0/24`.
    pub pod_cidr: String,
    /// `fd42:<lab>:<index>::/64`.
    #[serde(default)]
    pub pod_cidr6: String,
    pub pods: Vec<PodNet>,
}

/// One pod's network: a namespace with a veth into its node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodNet {
    pub index: u8,
    pub netns: String,
    pub address: Ipv4Addr,
    #[serde(default = "unspecified6")]
    pub address6: Ipv6Addr,
    /// The node-side end of its veth (inside the node's namespace).
    pub veth: String,
}

impl TopologyRecord {
    pub fn node(&self, name: &str) -> Option<&NodeNet> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn external_host(&self, name: &str) -> Option<&ExternalHostNet> {
        self.external_hosts.iter().find(|h| h.name == name)
    }

    /// The node and the pod network that own `address`.
    pub fn pod_by_address(&self, address: Ipv4Addr) -> Option<(&NodeNet, &PodNet)> {
        self.nodes
            .iter()
            .find_map(|n| n.pods.iter().find(|p| p.address == address).map(|p| (n, p)))
    }
}

/// A built topology. Dropping it tears it down, unless it was kept.
#[derive(Debug)]
pub struct Topology {
    record: TopologyRecord,
    keep: bool,
}

impl Topology {
    /// Claims a lab id and builds `spec.nodes` nodes with `spec.pods_per_node`
    /// pod networks each. On error, what was built is removed.
    pub fn build(spec: TopologySpec<'_>) -> Result<Self> {
        let lab = claim_lab_id()?;
        if let Err(e) = plan::check(lab) {
            let _ = netns::delete_link(&bridge_name(lab));
            return Err(e);
        }
        let owner = Owner {
            pid: std::process::id(),
            dir: spec.owner_dir.to_owned(),
        };
        // Recorded on the bridge at once: a lab whose builder dies now is
        // still recognised as a crashed lab's leftovers.
        let alias = owner.to_alias();
        let set = netns::run("ip", &["link", "set", &bridge_name(lab), "alias", &alias]);
        if let Err(e) = set {
            let _ = netns::delete_link(&bridge_name(lab));
            return Err(e);
        }
        let mut topology = Self {
            record: TopologyRecord {
                lab,
                bridge: bridge_name(lab),
                gateway: Ipv4Addr::new(172, 31, lab, 1),
                gateway6: Ipv6Addr::new(ULA, lab.into(), 0, 0, 0, 0, 0, 1),
                nodes: Vec::new(),
                external_hosts: Vec::new(),
            },
            keep: false,
        };
        ip(&format!(
            "addr add {}/24 dev {}",
            topology.record.gateway, topology.record.bridge
        ))?;
        ip(&format!(
            "-6 addr add {}/64 dev {} nodad",
            topology.record.gateway6, topology.record.bridge
        ))?;
        ip(&format!("link set {} up", topology.record.bridge))?;
        for index in 1..=spec.nodes {
            topology.add_node(index)?;
        }
        topology.route_between_nodes()?;
        for index in 1..=spec.nodes {
            topology.add_pods(&node_name(index), spec.pods_per_node.into())?;
        }
        Ok(topology)
    }

    pub fn record(&self) -> &TopologyRecord {
        &self.record
    }

    /// Leaves everything in place when this value is dropped (`bulkhead-lab up`).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// A new pod network on `node`, with the next free index.
    pub fn add_pod(&mut self, node: &str) -> Result<PodNet> {
        let mut pods = self.add_pods(node, 1)?;
        pods.pop()
            .ok_or_else(|| Error::Topology(format!("no pod network was added to {node}")))
    }

    /// `count` new pod networks on `node`, with the next free indices. Built
    /// with a handful of `ip -batch` runs (one per namespace involved, not one
    /// per command), so hundreds of pods take seconds.
    pub fn add_pods(&mut self, node: &str, count: usize) -> Result<Vec<PodNet>> {
        let lab = self.record.lab;
        let node = self
            .record
            .nodes
            .iter_mut()
            .find(|n| n.name == node)
            .ok_or_else(|| Error::Topology(format!("no node {node} in lab {lab}")))?;
        let mut added = Vec::with_capacity(count);
        for _ in 0..count {
            let index = (0..=u8::MAX - POD_HOST_OFFSET)
                .find(|j| !node.pods.iter().any(|p| p.index == *j))
                .ok_or_else(|| Error::Topology(format!("{} has no free pod address", node.name)))?;
            let pod = PodNet {
                index,
                netns: format!("bh-{lab}-pod-{}-{index}", node.index),
                address: Ipv4Addr::new(10, lab, node.index, index + POD_HOST_OFFSET),
                address6: Ipv6Addr::new(
                    ULA,
                    lab.into(),
                    node.index.into(),
                    0,
                    0,
                    0,
                    0,
                    (index + POD_HOST_OFFSET).into(),
                ),
                veth: format!("{POD_VETH_PREFIX}{index}"),
            };
            // Recorded before it is built, so a half-built pod is torn down too.
            node.pods.push(pod.clone());
            added.push(pod);
        }
        wire_pods(lab, node, &added)?;
        Ok(added)
    }

    /// Removes a pod network (its namespace, and with it the veth pair).
    pub fn remove_pod(&mut self, address: Ipv4Addr) -> Result<()> {
        for node in &mut self.record.nodes {
            if let Some(at) = node.pods.iter().position(|p| p.address == address) {
                let pod = node.pods.remove(at);
                // Deleting the veth destroys both ends at once; a namespace
                // some process still holds would keep its end (and the
                // name in the node) alive. Its route and neighbour go with it.
                if let Err(e) = ip_in(&node.netns, &format!("link del {}", pod.veth)) {
                    if ip_in(&node.netns, &format!("link show {}", pod.veth)).is_ok() {
                        return Err(e);
                    }
                }
                netns::delete_netns(&pod.netns)?;
                return Ok(());
            }
        }
        Err(Error::Topology(format!(
            "no pod network has address {address}"
        )))
    }

    fn add_node(&mut self, index: u8) -> Result<()> {
        let lab = self.record.lab;
        let node = NodeNet {
            name: node_name(index),
            index,
            netns: format!("bh-{lab}-node-{index}"),
            address: Ipv4Addr::new(172, 31, lab, index + NODE_HOST_OFFSET),
            address6: Ipv6Addr::new(
                ULA,
                lab.into(),
                0,
                0,
                0,
                0,
                0,
                (index + NODE_HOST_OFFSET).into(),
            ),
            uplink: format!("bh{lab}n{index}"),
            pod_cidr: format!("10.{lab}.{index}.0/24"),
            pod_cidr6: format!(
                "{}/64",
                Ipv6Addr::new(ULA, lab.into(), index.into(), 0, 0, 0, 0, 0)
            ),
            pods: Vec::new(),
        };
        self.record.nodes.push(node.clone());
        let ns = &node.netns;
        netns::run("ip", &["netns", "add", ns])?;
        ip_in(ns, "link set lo up")?;
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv6.conf.all.disable_ipv6", "0"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ] {
            sysctl_in(ns, key, value)?;
        }
        ip(&format!(
            "link add {} type veth peer name {NODE_UPLINK} netns {ns}",
            node.uplink
        ))?;
        ip(&format!(
            "link set {} master {}",
            node.uplink, self.record.bridge
        ))?;
        ip(&format!("link set {} up", node.uplink))?;
        ip_in(
            ns,
            &format!("addr add {}/24 dev {NODE_UPLINK}", node.address),
        )?;
        ip_in(
            ns,
            &format!("-6 addr add {}/64 dev {NODE_UPLINK} nodad", node.address6),
        )?;
        ip_in(ns, &format!("link set {NODE_UPLINK} up"))?;
        Ok(())
    }

    fn route_between_nodes(&self) -> Result<()> {
        for node in &self.record.nodes {
            for other in self.record.nodes.iter().filter(|o| o.name != node.name) {
                ip_in(
                    &node.netns,
                    &format!("route add {} via {}", other.pod_cidr, other.address),
                )?;
                ip_in(
                    &node.netns,
                    &format!("-6 route add {} via {}", other.pod_cidr6, other.address6),
                )?;
            }
        }
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = teardown(&self.record) {
                eprintln!("bulkhead-lab: tearing down lab {}: {e}", self.record.lab);
            }
        }
    }
}

/// The MAC addresses of a pod veth's two ends (node side, pod side): fixed,
/// so the pods' permanent neighbours can be written before anything is
/// read back. Locally administered; unique per lab, node and pod.
fn veth_macs(lab: u8, node: u8, pod: u8) -> (String, String) {
    let mac = |end: u8| format!("0a:42:{lab:02x}:{node:02x}:{pod:02x}:{end:02x}");
    (mac(1), mac(2))
}

/// Wires `pods` into `node`: their namespaces, veth pairs, addresses,
/// routes and permanent neighbours. One `ip -batch` for the namespaces, one
/// per pod inside it and two in the node, in this order: veths up on the
/// node, the pods' side, then the node's routes to them.
fn wire_pods(lab: u8, node: &NodeNet, pods: &[PodNet]) -> Result<()> {
    if pods.is_empty() {
        return Ok(());
    }
    let node_ns = &node.netns;
    let mut namespaces = String::new();
    let mut veths = String::new();
    let mut routes = String::new();
    for pod in pods {
        let (node_mac, pod_mac) = veth_macs(lab, node.index, pod.index);
        let (ns, veth) = (&pod.netns, &pod.veth);
        namespaces.push_str(&format!("netns add {ns}\n"));
        veths.push_str(&format!(
            "link add {veth} address {node_mac} type veth peer name {POD_INTERFACE} \
             address {pod_mac} netns {ns}\nlink set {veth} up\n"
        ));
        routes.push_str(&format!(
            "route add {v4}/32 dev {veth}\nroute add {v6}/128 dev {veth}\n\
             neigh add {v6} lladdr {pod_mac} dev {veth} nud permanent\n\
             neigh add {v4} lladdr {pod_mac} dev {veth} nud permanent\n",
            v4 = pod.address,
            v6 = pod.address6,
        ));
    }
    netns::ip_batch(None, &namespaces)?;
    netns::ip_batch(Some(node_ns), &veths)?;
    for pod in pods {
        let (node_mac, _) = veth_macs(lab, node.index, pod.index);
        let dev = POD_INTERFACE;
        // Families follow from the addresses (batch lines take no -6); the
        // IPv6 default route is spelled ::/0 for that reason.
        let inside = format!(
            "link set lo up\n\
             addr add {v4}/32 dev {dev}\n\
             addr add {v6}/128 dev {dev} nodad\n\
             link set {dev} up\n\
             route add {POD_GATEWAY} dev {dev} scope link\n\
             route add default via {POD_GATEWAY} dev {dev}\n\
             neigh add {POD_GATEWAY} lladdr {node_mac} dev {dev} nud permanent\n\
             route add ::/0 via {POD_GATEWAY6} dev {dev}\n\
             neigh add {POD_GATEWAY6} lladdr {node_mac} dev {dev} nud permanent\n",
            v4 = pod.address,
            v6 = pod.address6,
        );
        netns::ip_batch(Some(&pod.netns), &inside)?;
    }
    netns::ip_batch(Some(node_ns), &routes)
}

/// Removes everything `record` lists: pod namespaces, node namespaces (and
/// with them both ends of every veth), then the bridge. Tries every step and
/// reports the first failure.
pub fn teardown(record: &TopologyRecord) -> Result<()> {
    let mut first_error = None;
    let mut attempt = |r: Result<()>| {
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    };
    attempt(external::teardown_external_hosts(&record.external_hosts));
    for node in &record.nodes {
        for pod in &node.pods {
            attempt(netns::delete_netns(&pod.netns));
        }
    }
    for node in &record.nodes {
        attempt(netns::delete_netns(&node.netns));
        attempt(netns::delete_link(&node.uplink));
    }
    if !record.bridge.is_empty() {
        attempt(netns::delete_link(&record.bridge));
    }
    first_error.map_or(Ok(()), Err)
}

pub fn node_name(index: u8) -> String {
    format!("node-{index}")
}

fn bridge_name(lab: u8) -> String {
    format!("bh{lab}br")
}

/// Finds an id whose names and addresses are all free and claims it by
/// creating its bridge.
fn claim_lab_id() -> Result<u8> {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let salt = std::process::id().wrapping_mul(7) + CALLS.fetch_add(1, Ordering::Relaxed) * 13;
    let ids = u32::from(MAX_LAB_ID);
    for step in 0..ids {
        let lab = u8::try_from((salt + step) % ids + 1).unwrap_or(1);
        if !id_looks_free(lab) {
            continue;
        }
        if netns::run("ip", &["link", "add", &bridge_name(lab), "type", "bridge"]).is_ok() {
            return Ok(lab);
        }
    }
    Err(Error::Topology(format!(
        "no free lab id in 1..={MAX_LAB_ID}: every bh<id>br bridge exists or 172.31.<id>.0/24 is in use \
         (`bulkhead-lab prune` removes what crashed labs left)"
    )))
}

fn id_looks_free(lab: u8) -> bool {
    if netns::link_exists(&bridge_name(lab)) || netns::netns_exists(&format!("bh-{lab}-node-1")) {
        return false;
    }
    let subnet = format!("172.31.{lab}.0/24");
    let used = |args: &[&str]| {
        netns::run("ip", args)
            .map(|out| !out.trim().is_empty())
            .unwrap_or(true)
    };
    // Addresses in the subnet, or routes to any part of it (`root`: prefixes
    // inside it; a default route covering it is no conflict).
    !used(&["-4", "addr", "show", "to", &subnet])
        && !used(&["-4", "route", "show", "root", &subnet, "table", "all"])
        && !used(&[
            "-6",
            "route",
            "show",
            "root",
            &format!("{ULA:x}:{lab:x}::/32"),
            "table",
            "all",
        ])
}

/// Who built a lab's bridge: the building process and the state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub dir: PathBuf,
}

const ALIAS_PREFIX: &str = "bulkhead-lab";

impl Owner {
    fn to_alias(&self) -> String {
        format!("{ALIAS_PREFIX} {} {}", self.pid, self.dir.display())
    }

    fn from_alias(alias: &str) -> Option<Self> {
        let rest = alias.trim().strip_prefix(ALIAS_PREFIX)?.trim_start();
        let (pid, dir) = rest.split_once(' ')?;
        Some(Self {
            pid: pid.parse().ok()?,
            dir: PathBuf::from(dir),
        })
    }
}

/// A lab network found on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundLab {
    pub lab: u8,
    pub bridge: String,
    /// `None` when the bridge carries no owner (made by something older, or
    /// in the instant between its creation and its alias).
    pub owner: Option<Owner>,
}

/// Every `bh<id>br` bridge in the root namespace.
pub fn find_labs() -> Vec<FoundLab> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut found: Vec<FoundLab> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let lab: u8 = name.strip_prefix("bh")?.strip_suffix("br")?.parse().ok()?;
            let alias = std::fs::read_to_string(e.path().join("ifalias")).unwrap_or_default();
            Some(FoundLab {
                lab,
                owner: Owner::from_alias(&alias),
                bridge: name,
            })
        })
        .collect();
    found.sort_by_key(|f| f.lab);
    found
}

/// Removes every namespace and interface named for lab `lab`, recorded or
/// not: the sweep after a crash, when no record may be left.
pub fn sweep(lab: u8) -> Result<usize> {
    let mut removed = 0;
    let listed = netns::run("ip", &["netns", "list"])?;
    let prefix = format!("bh-{lab}-");
    let mut pods_first: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| ns.starts_with(&prefix))
        .collect();
    pods_first.sort_by_key(|ns| !ns.contains("-pod-"));
    for ns in pods_first {
        netns::delete_netns(ns)?;
        removed += 1;
    }
    let uplinks = format!("bh{lab}n");
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for name in entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
        {
            if name
                .strip_prefix(&uplinks)
                .is_some_and(|i| i.parse::<u8>().is_ok())
            {
                netns::delete_link(&name)?;
            }
        }
    }
    netns::delete_link(&bridge_name(lab))?;
    Ok(removed)
}

fn unspecified6() -> Ipv6Addr {
    Ipv6Addr::UNSPECIFIED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_round_trips_through_the_bridge_alias() {
        let owner = Owner {
            pid: 4242,
            dir: PathBuf::from("/tmp/bulkhead-lab-test-x y"),
        };
        assert_eq!(Owner::from_alias(&owner.to_alias()), Some(owner));
        assert_eq!(Owner::from_alias("something else"), None);
        assert_eq!(Owner::from_alias(""), None);
    }
}
