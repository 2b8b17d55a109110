//! What a kubelet and a CNI plugin would tell the API server, written by
//! the lab instead: Nodes with their addresses, Pods bound to a node,
//! Running, with the address the topology gave them.
//!
//! There is no kubelet to finish a graceful deletion, so pods are deleted
//! with `--force --grace-period=0`; and no namespace controller, so a
//! deleted namespace would stay `Terminating` forever (the lab never
//! deletes one).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::json;

use crate::error::Result;
use crate::kubectl::Kubectl;

/// The field manager of everything the lab writes as a kubelet would.
pub const FIELD_MANAGER: &str = "bulkhead-lab";
/// The image the lab's pods name; nothing pulls it.
pub const POD_IMAGE: &str = "registry.k8s.io/pause:3.10";

pub type Labels = BTreeMap<String, String>;

/// Labels from `("key", "value")` pairs.
pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Labels {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A Node as the lab registers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRegistration {
    pub name: String,
    pub labels: Labels,
    /// Its InternalIPs, one per family.
    pub addresses: Vec<IpAddr>,
    pub pod_cidrs: Vec<String>,
}

/// A Pod as the lab registers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRegistration {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: Labels,
    /// Named ports of its one container.
    pub ports: Vec<ContainerPort>,
    /// Its addresses, the primary family first (`status.podIPs`).
    pub addresses: Vec<IpAddr>,
}

/// A named container port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: String,
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// Creates (or updates) a Node, then reports it Ready with its InternalIP
/// and host name through the status subresource, as its kubelet would.
pub fn register_node(kubectl: &Kubectl, node: &NodeRegistration) -> Result<()> {
    let mut labels = node.labels.clone();
    labels
        .entry("kubernetes.io/hostname".into())
        .or_insert_with(|| node.name.clone());
    labels
        .entry("kubernetes.io/os".into())
        .or_insert_with(|| "linux".into());
    let object = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": labels},
        "spec": {"podCIDR": node.pod_cidrs.first(), "podCIDRs": node.pod_cidrs},
    });
    apply(kubectl, &object)?;
    let mut addresses: Vec<serde_json::Value> = node
        .addresses
        .iter()
        .map(|a| json!({"type": "InternalIP", "address": a.to_string()}))
        .collect();
    addresses.push(json!({"type": "Hostname", "address": node.name}));
    let status = json!({"status": {
        "addresses": addresses,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "the bulkhead lab stands in for the kubelet",
        }],
    }});
    patch_status(kubectl, &["node", &node.name], &status)
}

/// Creates a Namespace, or brings an existing one's labels to `labels`.
pub fn ensure_namespace(kubectl: &Kubectl, name: &str, labels: &Labels) -> Result<()> {
    let object = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    });
    apply(kubectl, &object)
}

/// Creates a Pod bound to its node, then reports it Running with its
/// address, as the kubelet and the CNI plugin would.
pub fn create_pod(kubectl: &Kubectl, pod: &PodRegistration) -> Result<()> {
    apply(kubectl, &pod_object(pod))?;
    let status = json!({"status": pod_status(pod)});
    patch_status(kubectl, &["pod", "-n", &pod.namespace, &pod.name], &status)
}

/// [`create_pod`] for many pods in two kubectl runs: one server-side apply
/// of a List of the objects, one of their statuses (`--subresource=status`).
pub fn create_pods(kubectl: &Kubectl, pods: &[PodRegistration]) -> Result<()> {
    if pods.is_empty() {
        return Ok(());
    }
    let objects: Vec<serde_json::Value> = pods.iter().map(pod_object).collect();
    apply_list(kubectl, objects, None)?;
    let statuses: Vec<serde_json::Value> = pods
        .iter()
        .map(|pod| {
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod.name, "namespace": pod.namespace},
                "status": pod_status(pod),
            })
        })
        .collect();
    apply_list(kubectl, statuses, Some("status"))
}

fn pod_object(pod: &PodRegistration) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": pod.labels},
        "spec": {
            "nodeName": pod.node,
            "containers": [{
                "name": "app",
                "image": POD_IMAGE,
                "ports": pod.ports.iter().map(|p| json!({
                    "name": p.name, "containerPort": p.port, "protocol": p.protocol,
                })).collect::<Vec<_>>(),
            }],
            "terminationGracePeriodSeconds": 0,
        },
    })
}

fn pod_status(pod: &PodRegistration) -> serde_json::Value {
    let ips: Vec<String> = pod.addresses.iter().map(IpAddr::to_string).collect();
    json!({
        "phase": "Running",
        "podIP": ips.first(),
        "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{
            "name": "app", "image": POD_IMAGE, "imageID": "", "ready": true,
            "started": true, "restartCount": 0, "state": {"running": {}},
        }],
    })
}

/// Deletes a Pod at once (no kubelet will confirm a graceful deletion).
pub fn delete_pod(kubectl: &Kubectl, namespace: &str, name: &str) -> Result<()> {
    kubectl
        .run(&[
            "delete",
            "pod",
            "-n",
            namespace,
            name,
            "--force",
            "--grace-period=0",
            "--ignore-not-found",
        ])
        .map(drop)
}

/// Sets (`Some`) or removes (`None`) labels of an object, e.g.
/// `relabel(k, &["pod", "-n", "prod", "web-1"], &[("app", Some("api"))])`.
pub fn relabel(kubectl: &Kubectl, object: &[&str], changes: &[(&str, Option<&str>)]) -> Result<()> {
    let changes: Vec<String> = changes
        .iter()
        .map(|(key, value)| match value {
            Some(v) => format!("{key}={v}"),
            None => format!("{key}-"),
        })
        .collect();
    let mut args = vec!["label", "--overwrite"];
    args.extend_from_slice(object);
    args.extend(changes.iter().map(String::as_str));
    kubectl.run(&args).map(drop)
}

/// Brings an object's labels to exactly `desired`, whoever set them: adds
/// and overwrites what differs and removes the rest, except `keep` (labels
/// the API server owns, such as `kubernetes.io/metadata.name`).
pub fn set_labels(
    kubectl: &Kubectl,
    object: &[&str],
    desired: &Labels,
    keep: &[&str],
) -> Result<()> {
    let mut args = vec!["get"];
    args.extend_from_slice(object);
    args.extend(["-o", "jsonpath={.metadata.labels}"]);
    let current = kubectl.run(&args)?;
    let current: Labels = if current.trim().is_empty() {
        Labels::new()
    } else {
        serde_json::from_str(current.trim()).map_err(|e| crate::Error::Unexpected {
            what: format!("the labels of {}", object.join(" ")),
            problem: format!("are not a string map ({e}): {current}"),
        })?
    };
    let mut patch = serde_json::Map::new();
    for key in current.keys() {
        if !desired.contains_key(key) && !keep.contains(&key.as_str()) {
            patch.insert(key.clone(), serde_json::Value::Null);
        }
    }
    for (key, value) in desired {
        if current.get(key) != Some(value) {
            patch.insert(key.clone(), value.clone().into());
        }
    }
    if patch.is_empty() {
        return Ok(());
    }
    let patch = json!({"metadata": {"labels": patch}}).to_string();
    let mut args = vec!["patch"];
    args.extend_from_slice(object);
    args.extend(["--type=merge", "-p", &patch]);
    kubectl.run(&args).map(drop)
}

fn apply(kubectl: &Kubectl, object: &serde_json::Value) -> Result<()> {
    kubectl
        .run_with_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                &format!("--field-manager={FIELD_MANAGER}"),
                "-f",
                "-",
            ],
            &object.to_string(),
        )
        .map(drop)
}

fn apply_list(
    kubectl: &Kubectl,
    items: Vec<serde_json::Value>,
    subresource: Option<&str>,
) -> Result<()> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let manager = format!("--field-manager={FIELD_MANAGER}");
    let mut args = vec!["apply", "--server-side", "--force-conflicts", &manager];
    let subresource = subresource.map(|s| format!("--subresource={s}"));
    args.extend(subresource.as_deref());
    args.extend(["-f", "-"]);
    kubectl.run_with_stdin(&args, &list.to_string()).map(drop)
}

fn patch_status(kubectl: &Kubectl, object: &[&str], status: &serde_json::Value) -> Result<()> {
    let patch = status.to_string();
    let mut args = vec!["patch"];
    args.extend_from_slice(object);
    args.extend(["--subresource=status", "--type=merge", "-p", &patch]);
    kubectl.run(&args).map(drop)
}
