//! Hosts outside the cluster (ExternalNodes): network namespaces beside the
//! nodes, not in any pod network, routed to the pods through the nodes.
//!
//! ```text
//!  bridge bh<L>br 172.31.L.1/24 ── bh<L>x<K> ─veth─ eth0 172.31.L.(100+K)/24   netns bh-L-xn-K
//!                                                   routes 10.L.i.0/24 via node i (172.31.L.(10+i))
//!                                                   eth1 172.30.L.(4K+1)/30 ─veth─ eth0 172.30.L.(4K+2)/30
//!                                                                                  netns bh-L-xs-K (a segment
//!                                                                                  only the host reaches)
//! ```
//!
//! Each host has two interfaces, so enforcement on every interface of a
//! host is tested by real packets on both. Deleting a host's namespaces
//! destroys its veths, so teardown needs only the namespace names.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{Topology, NODE_UPLINK};
use crate::error::Result;
use crate::netns::{self, ip, ip_in, sysctl_in};

/// A host's addresses start at .(100 + K) on the bridge.
pub const EXTERNAL_HOST_OFFSET: u8 = 100;
/// The host's second interface, towards its segment.
pub const SEGMENT_INTERFACE: &str = "eth1";

/// One external host's network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalHostNet {
    /// Its ExternalNode name, `xn-<index>`.
    pub name: String,
    pub index: u8,
    pub netns: String,
    /// On the bridge (eth0).
    pub address: Ipv4Addr,
    /// On its segment side (eth1).
    pub segment_address: Ipv4Addr,
    /// The segment peer's namespace and address (behind eth1).
    pub segment_netns: String,
    pub segment_peer: Ipv4Addr,
}

pub fn external_host_name(index: u8) -> String {
    format!("xn-{index}")
}

impl Topology {
    /// Adds external host `index` (1..): its namespace on the bridge, routes
    /// to every node's pod CIDR, and a segment behind its second interface.
    pub fn add_external_host(&mut self, index: u8) -> Result<ExternalHostNet> {
        let lab = self.record.lab;
        let host = ExternalHostNet {
            name: external_host_name(index),
            index,
            netns: format!("bh-{lab}-xn-{index}"),
            address: Ipv4Addr::new(172, 31, lab, EXTERNAL_HOST_OFFSET + index),
            segment_address: Ipv4Addr::new(172, 30, lab, 4 * index + 1),
            segment_netns: format!("bh-{lab}-xs-{index}"),
            segment_peer: Ipv4Addr::new(172, 30, lab, 4 * index + 2),
        };
        // Recorded first, so a half-built host is torn down too.
        self.record.external_hosts.push(host.clone());
        let ns = &host.netns;
        for n in [ns, &host.segment_netns] {
            netns::run("ip", &["netns", "add", n])?;
            ip_in(n, "link set lo up")?;
        }
        sysctl_in(ns, "net.ipv4.conf.all.rp_filter", "0")?;
        let uplink = format!("bh{lab}x{index}");
        ip(&format!(
            "link add {uplink} type veth peer name {NODE_UPLINK} netns {ns}"
        ))?;
        ip(&format!("link set {uplink} master {}", self.record.bridge))?;
        ip(&format!("link set {uplink} up"))?;
        ip_in(
            ns,
            &format!("addr add {}/24 dev {NODE_UPLINK}", host.address),
        )?;
        ip_in(ns, &format!("link set {NODE_UPLINK} up"))?;
        for node in &self.record.nodes {
            ip_in(
                ns,
                &format!("route add {} via {}", node.pod_cidr, node.address),
            )?;
        }
        ip_in(
            ns,
            &format!(
                "link add {SEGMENT_INTERFACE} type veth peer name {NODE_UPLINK} netns {}",
                host.segment_netns
            ),
        )?;
        ip_in(
            ns,
            &format!(
                "addr add {}/30 dev {SEGMENT_INTERFACE}",
                host.segment_address
            ),
        )?;
        ip_in(ns, &format!("link set {SEGMENT_INTERFACE} up"))?;
        let seg = &host.segment_netns;
        ip_in(
            seg,
            &format!("addr add {}/30 dev {NODE_UPLINK}", host.segment_peer),
        )?;
        ip_in(seg, &format!("link set {NODE_UPLINK} up"))?;
        Ok(host)
    }
}

/// Removes the hosts' namespaces (their veths go with them).
pub fn teardown_external_hosts(hosts: &[ExternalHostNet]) -> Result<()> {
    let mut first_error = None;
    for host in hosts {
        for ns in [&host.segment_netns, &host.netns] {
            if let Err(e) = netns::delete_netns(ns) {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
