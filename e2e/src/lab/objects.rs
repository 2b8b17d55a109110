//! Cluster objects of a running lab: namespaces, pods (network and object
//! together), labels, manifests.

use std::net::IpAddr;

use super::{Lab, LabPod, Workload};
use crate::error::{Error, Result};
use crate::kubelet::{self, Labels, PodRegistration};

impl Lab {
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
            address6: net.address6,
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
                ports: workload.ports.clone(),
                addresses: vec![IpAddr::V4(pod.address), IpAddr::V6(pod.address6)],
            },
        )?;
        Ok(pod)
    }

    /// Builds a pod's network on `node` without telling the API server: a
    /// veth that a CNI made before its pod is registered (or while the API
    /// server does not answer). Torn down with the lab.
    pub fn add_pod_network(&mut self, node: &str) -> Result<crate::topology::PodNet> {
        let net = self
            .topology
            .as_mut()
            .unwrap_or_else(|| unreachable!("the topology lives until drop"))
            .add_pod(node)?;
        self.save()?;
        Ok(net)
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
}
