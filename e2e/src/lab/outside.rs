//! Clients outside the cluster, reaching it as they would a real one: a
//! NodePort on a node's address, or a LoadBalancer address the lab routes to
//! a node (as a cloud's load balancer would forward it).
//!
//! ```text
//!  netns bh-L-xn-K  eth0 172.31.L.(100+K)   no ExternalNode object, no agent:
//!                   route 198.51.100.0/24 via node-1 (topology::plan::LOAD_BALANCER_CIDR)
//!   ── NodePort ──►  node-i:nodePort          kube-proxy DNAT (and, with
//!   ── LB IP ────►  198.51.100.x:port        externalTrafficPolicy Cluster, SNAT)
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::Lab;
use crate::error::{Error, Result};
use crate::netns::ip_in;
use crate::services;
use crate::topology::{plan, ExternalHostNet};
use crate::traffic::{self, ProbeResult, Proto};
use crate::wait::wait_until;

const SERVICE_TIMEOUT: Duration = Duration::from_secs(60);

impl Lab {
    /// A host on the bridge that the cluster knows nothing about (its
    /// address is `world` to policy), with the LoadBalancer range routed
    /// to `via_node`.
    pub fn add_outside_client(&mut self, via_node: &str) -> Result<ExternalHostNet> {
        let index = self.topology().external_hosts.len() as u8 + 1;
        let gateway = self.node(via_node)?.address;
        let host = self
            .topology
            .as_mut()
            .ok_or_else(|| Error::Topology("the lab has no topology".into()))?
            .add_external_host(index)?;
        self.save()?;
        ip_in(
            &host.netns,
            &format!("route add {} via {gateway}", plan::LOAD_BALANCER_CIDR),
        )?;
        Ok(host)
    }

    /// Writes a LoadBalancer Service's `status.loadBalancer.ingress`, as a
    /// cloud controller would, and waits until every node's kube-proxy
    /// has rules for the address.
    pub fn set_load_balancer_ip(&self, namespace: &str, name: &str, ip: Ipv4Addr) -> Result<()> {
        let patch =
            serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string()}]}}});
        self.kubectl().run(&[
            "patch",
            "service",
            "-n",
            namespace,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ])?;
        self.wait_proxy_rules(&ip.to_string())
    }

    /// Waits until every node's kube-proxy rules mention `needle` (a node
    /// port, a LoadBalancer address).
    pub fn wait_proxy_rules(&self, needle: &str) -> Result<()> {
        let mode = self.proxy_mode().ok_or_else(|| {
            Error::Topology("the lab runs no kube-proxy (LabSpec::services)".into())
        })?;
        for node in &self.topology().nodes {
            wait_until(
                &format!("kube-proxy on {} to program {needle}", node.name),
                SERVICE_TIMEOUT,
                || {
                    Ok(services::proxy_rules(node, mode)?
                        .contains(needle)
                        .then_some(()))
                },
            )?;
        }
        Ok(())
    }

    /// One request from an outside host to an address (a node's, for a
    /// NodePort; a LoadBalancer's).
    pub fn probe_from_outside(
        &self,
        host: &ExternalHostNet,
        addr: IpAddr,
        proto: Proto,
        port: u16,
    ) -> Result<ProbeResult> {
        traffic::probe(&host.netns, proto, addr, port, Duration::from_secs(1))
    }
}
