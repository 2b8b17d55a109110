//! Services in a running lab: the controllers that make them work
//! (`crate::services`), Services themselves, and probes to their addresses.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::{split_key, Lab};
use crate::error::{Error, Result};
use crate::services::{self, ProxyMode, ServiceBinaries};
use crate::traffic::{self, ProbeResult, Proto};
use crate::wait::wait_until;

/// How long kube-proxy and the EndpointSlice controller get to catch up.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(60);

/// A Service to create: `selector` picks its backends by pod label; it
/// listens on `port` and sends to `target_port` (TCP and UDP both).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub namespace: String,
    pub name: String,
    pub selector: Vec<(String, String)>,
    pub port: u16,
    pub target_port: u16,
    /// More ports, each sent to the same port on the backends.
    pub more_ports: Vec<u16>,
    /// SCTP as well as TCP and UDP on every port.
    pub sctp: bool,
    /// ClusterIP, NodePort or LoadBalancer, and how outside traffic is routed.
    pub exposure: Exposure,
}

/// How a Service is reached from outside the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// `type: ClusterIP`: from inside only.
    ClusterIp,
    /// `type: NodePort` on this node port (the first Service port).
    NodePort { node_port: u16, local: bool },
    /// `type: LoadBalancer` on this node port; the address comes from
    /// [`Lab::set_load_balancer_ip`], as a cloud controller would write it.
    LoadBalancer { node_port: u16, local: bool },
}

impl Exposure {
    fn fields(self) -> (&'static str, Option<(u16, bool)>) {
        match self {
            Exposure::ClusterIp => ("ClusterIP", None),
            Exposure::NodePort { node_port, local } => ("NodePort", Some((node_port, local))),
            Exposure::LoadBalancer { node_port, local } => {
                ("LoadBalancer", Some((node_port, local)))
            }
        }
    }
}

impl ServiceSpec {
    pub fn new(namespace: &str, name: &str, selector: &[(&str, &str)], port: u16) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            selector: selector
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            port,
            target_port: port,
            more_ports: Vec::new(),
            sctp: false,
            exposure: Exposure::ClusterIp,
        }
    }

    /// The same Service, exposed outside the cluster.
    pub fn exposed(self, exposure: Exposure) -> Self {
        Self { exposure, ..self }
    }

    /// The same Service on several ports (the first is `port`), over TCP,
    /// UDP and SCTP.
    pub fn on_ports(namespace: &str, name: &str, selector: &[(&str, &str)], ports: &[u16]) -> Self {
        let first = ports.first().copied().unwrap_or(0);
        Self {
            more_ports: ports.iter().skip(1).copied().collect(),
            sctp: true,
            ..Self::new(namespace, name, selector, first)
        }
    }

    fn manifest(&self) -> serde_json::Value {
        let selector: serde_json::Map<String, serde_json::Value> = self
            .selector
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let protocols: &[&str] = if self.sctp {
            &["TCP", "UDP", "SCTP"]
        } else {
            &["TCP", "UDP"]
        };
        let mut ports = Vec::new();
        for (i, (port, target)) in std::iter::once((self.port, self.target_port))
            .chain(self.more_ports.iter().map(|p| (*p, *p)))
            .enumerate()
        {
            for proto in protocols {
                // The first port's names stay `tcp` and `udp`.
                let name = if i == 0 {
                    proto.to_lowercase()
                } else {
                    format!("{}-{port}", proto.to_lowercase())
                };
                let mut entry = serde_json::json!({"name": name, "protocol": proto,
                                                   "port": port, "targetPort": target});
                if let (0, Some((node_port, _))) = (i, self.exposure.fields().1) {
                    entry["nodePort"] = node_port.into();
                }
                ports.push(entry);
            }
        }
        let (kind, outside) = self.exposure.fields();
        let mut spec = serde_json::json!({"type": kind, "selector": selector, "ports": ports});
        if let Some((_, local)) = outside {
            spec["externalTrafficPolicy"] = if local { "Local" } else { "Cluster" }.into();
        }
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": self.namespace, "name": self.name},
            "spec": spec,
        })
    }
}

impl Lab {
    /// Starts the EndpointSlice controller and one kube-proxy per node (in
    /// `mode`), and waits until every kube-proxy has written its base rules.
    pub fn start_services(&mut self, mode: ProxyMode) -> Result<()> {
        let bins = ServiceBinaries::locate()?;
        let admin = self.plane().admin_kubeconfig().to_owned();
        let kcm = services::start_controller_manager(
            self.state(),
            &bins.controller_manager,
            &admin,
            self.lifetime,
        )?;
        self.service_processes.push(kcm);
        let cluster_cidr = format!("10.{}.0.0/16", self.topology().lab);
        for node in self.topology().nodes.clone() {
            let proxy = services::start_kube_proxy(
                self.state(),
                &bins.kube_proxy,
                &node,
                &cluster_cidr,
                &admin,
                mode,
                self.lifetime,
            )?;
            self.service_processes.push(proxy);
        }
        self.proxy_mode = Some(mode);
        let base = match mode {
            ProxyMode::Iptables => "KUBE-SERVICES",
            ProxyMode::Nftables => "chain services",
        };
        for node in self.topology().nodes.clone() {
            wait_until(
                &format!("kube-proxy ({}) to program {}", mode.name(), node.name),
                SERVICE_TIMEOUT,
                || {
                    if let Some(dead) = self.dead_service_process() {
                        return Err(dead);
                    }
                    Ok(services::proxy_rules(&node, mode)?
                        .contains(base)
                        .then_some(()))
                },
            )?;
        }
        Ok(())
    }

    /// The kube-proxy mode the lab runs, if any.
    pub fn proxy_mode(&self) -> Option<ProxyMode> {
        self.proxy_mode
    }

    fn dead_service_process(&self) -> Option<Error> {
        self.service_processes
            .iter()
            .find(|p| p.has_exited())
            .map(|p| Error::NotReady {
                component: p.name().to_owned(),
                problem: "exited".into(),
                log: p.log_tail(30),
            })
    }

    /// Creates (or updates) a Service and returns its ClusterIP.
    pub fn add_service(&self, spec: &ServiceSpec) -> Result<Ipv4Addr> {
        self.apply(&spec.manifest().to_string())?;
        self.cluster_ip(&spec.namespace, &spec.name)
    }

    /// The ClusterIP the API server gave a Service.
    pub fn cluster_ip(&self, namespace: &str, name: &str) -> Result<Ipv4Addr> {
        let svc = self
            .kubectl()
            .json(&["get", "service", "-n", namespace, name])?;
        let ip = svc["spec"]["clusterIP"].as_str().unwrap_or_default();
        ip.parse().map_err(|_| {
            Error::Topology(format!(
                "Service {namespace}/{name} has no IPv4 ClusterIP ({ip:?})"
            ))
        })
    }

    /// Waits until the Service's EndpointSlices list exactly the addresses
    /// of `backends` (pod keys) as ready, and every node's kube-proxy
    /// translates its ClusterIP to them.
    pub fn wait_service(&self, namespace: &str, name: &str, backends: &[&str]) -> Result<Ipv4Addr> {
        let mode = self.proxy_mode.ok_or_else(|| {
            Error::Topology("the lab runs no kube-proxy (LabSpec::services)".into())
        })?;
        let vip = self.cluster_ip(namespace, name)?;
        let mut want: Vec<Ipv4Addr> = backends
            .iter()
            .map(|key| {
                let (ns, pod) = split_key(key)?;
                Ok(self.pod(ns, pod)?.address)
            })
            .collect::<Result<_>>()?;
        want.sort();
        let kubectl = self.kubectl();
        let selector = format!("kubernetes.io/service-name={name}");
        wait_until(
            &format!("EndpointSlices of {namespace}/{name} to list {want:?}"),
            SERVICE_TIMEOUT,
            || {
                let slices =
                    kubectl.json(&["get", "endpointslices", "-n", namespace, "-l", &selector])?;
                let mut ready: Vec<Ipv4Addr> = slices["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                    .filter(|e| e["conditions"]["ready"].as_bool() == Some(true))
                    .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                    .filter_map(|a| a.as_str().and_then(|s| s.parse().ok()))
                    .collect();
                ready.sort();
                Ok((ready == want).then_some(()))
            },
        )?;
        for node in &self.topology().nodes {
            wait_until(
                &format!("kube-proxy on {} to translate {vip} to {want:?}", node.name),
                SERVICE_TIMEOUT,
                || Ok(services::translates(node, mode, vip, &want)?.then_some(())),
            )?;
        }
        Ok(vip)
    }

    /// One request from pod `from` (`namespace/name`) to an address, such
    /// as a ClusterIP.
    pub fn probe_address(
        &self,
        from: &str,
        addr: IpAddr,
        proto: Proto,
        port: u16,
    ) -> Result<ProbeResult> {
        let (ns, name) = split_key(from)?;
        let pod = self.pod(ns, name)?;
        traffic::probe(&pod.netns, proto, addr, port, Duration::from_secs(1))
    }
}
