//! Many pods at once: the networks node by node with `ip -batch`, the
//! objects in two kubectl runs. What makes a lab of hundreds of pods start
//! in seconds instead of minutes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Lab, LabPod, Workload};
use crate::error::{Error, Result};
use crate::kubelet::{self, PodRegistration};

impl Lab {
    /// [`Lab::add_pod`] for every workload: the same networks and objects.
    pub fn add_pods(&mut self, workloads: &[Workload]) -> Result<Vec<LabPod>> {
        let mut by_node: BTreeMap<&str, Vec<&Workload>> = BTreeMap::new();
        let mut keys = BTreeSet::new();
        for workload in workloads {
            let key = format!("{}/{}", workload.namespace, workload.name);
            if self.pods.contains_key(&key) || !keys.insert(key.clone()) {
                return Err(Error::Topology(format!("pod {key} exists already")));
            }
            by_node.entry(&workload.node).or_default().push(workload);
        }
        let mut added = Vec::with_capacity(workloads.len());
        let mut registrations = Vec::with_capacity(workloads.len());
        for (node, group) in by_node {
            let nets = self
                .topology
                .as_mut()
                .unwrap_or_else(|| unreachable!("the topology lives until drop"))
                .add_pods(node, group.len())?;
            for (workload, net) in group.into_iter().zip(nets) {
                let pod = LabPod {
                    namespace: workload.namespace.clone(),
                    name: workload.name.clone(),
                    node: workload.node.clone(),
                    address: net.address,
                    address6: net.address6,
                    netns: net.netns,
                };
                registrations.push(PodRegistration {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    node: pod.node.clone(),
                    labels: workload.labels.clone(),
                    ports: workload.ports.clone(),
                    addresses: vec![IpAddr::V4(pod.address), IpAddr::V6(pod.address6)],
                });
                self.pods.insert(pod.key(), pod.clone());
                added.push(pod);
            }
        }
        self.save()?;
        kubelet::create_pods(&self.kubectl(), &registrations)?;
        Ok(added)
    }
}
