//! `--from` and `--to`: from what a person types to a flow end the
//! simulator knows, with an error that says what is missing.

use std::net::IpAddr;

use bulkhead_policy::snapshot::PodKey;
use bulkhead_policy::FlowEnd;

use crate::error::{Error, Result};
use crate::load::Inventory;

/// Resolves `text` (`namespace/pod`, a Node or ExternalNode name, or an IP
/// address) against the input (`service:namespace/name` is
/// `simulate_service`'s). `flag` names the option in errors.
pub fn resolve(flag: &'static str, text: &str, inventory: &Inventory) -> Result<FlowEnd> {
    let fail = |message: String| Error::Endpoint {
        flag,
        value: text.to_string(),
        message,
    };
    let text = text.trim();
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(FlowEnd::Address(address));
    }
    let snapshot = &inventory.snapshot;
    if let Some((namespace, name)) = text.split_once('/') {
        let key = PodKey::new(namespace, name);
        if !snapshot.pods.contains_key(&key) {
            return Err(fail(format!(
                "no pod {key} in the input{}",
                pods_hint(inventory, namespace)
            )));
        }
        return resolve_pod(&key, inventory).map_err(fail);
    }
    host(text, inventory).map_err(fail)
}

/// A pod of the input as a flow end: itself, or its node when it uses the
/// host network. Errs saying why it is no endpoint.
pub fn resolve_pod(key: &PodKey, inventory: &Inventory) -> std::result::Result<FlowEnd, String> {
    let Some(pod) = inventory.snapshot.pods.get(key) else {
        return Err(format!("no pod {key} in the input"));
    };
    if pod.host_network {
        // A host-network pod is its node, as far as packets can tell.
        return match &pod.node {
            Some(node) => host(node, inventory),
            None => Err(format!(
                "pod {key} uses the host network but has no spec.nodeName"
            )),
        };
    }
    if pod.node.is_none() {
        return Err(format!(
            "pod {key} has no spec.nodeName: it is not scheduled, so no node enforces it"
        ));
    }
    if pod.addresses.is_empty() {
        return Err(format!(
            "pod {key} has no address: set status.podIP (or status.podIPs); \
             pods in phase Succeeded or Failed have none"
        ));
    }
    Ok(FlowEnd::Pod(key.clone()))
}

fn host(name: &str, inventory: &Inventory) -> std::result::Result<FlowEnd, String> {
    let snapshot = &inventory.snapshot;
    let addresses = match (snapshot.nodes.get(name), snapshot.external_nodes.get(name)) {
        (Some(node), _) => node.addresses.len(),
        (None, Some(external)) => external.spec.addresses.len(),
        (None, None) => {
            return Err(format!(
            "no Node or ExternalNode named {name:?} in the input (pods are written namespace/name)"
        ))
        }
    };
    if addresses == 0 {
        let why = if inventory.implied_nodes.contains(name) {
            "it is only named by pods' spec.nodeName; add the Node with its status.addresses"
        } else {
            "add its InternalIP to status.addresses"
        };
        return Err(format!("node {name} has no address: {why}"));
    }
    Ok(FlowEnd::Host(name.to_string()))
}

fn pods_hint(inventory: &Inventory, namespace: &str) -> String {
    let names: Vec<&str> = inventory
        .snapshot
        .pods
        .keys()
        .filter(|k| k.namespace == namespace)
        .map(|k| k.name.as_str())
        .collect();
    match names.len() {
        0 => format!(" (no pods in namespace {namespace:?} at all)"),
        1..=8 => format!(" (pods in namespace {namespace}: {})", names.join(", ")),
        _ => String::new(),
    }
}

/// How a flow end is written back to a person.
pub fn describe(end: &FlowEnd) -> String {
    match end {
        FlowEnd::Pod(key) => key.to_string(),
        FlowEnd::Host(name) => name.clone(),
        FlowEnd::Address(address) => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_policy::snapshot::{Node, Pod};

    fn inventory() -> Inventory {
        let mut inv = Inventory::default();
        let ip = |s: &str| s.parse::<IpAddr>().expect("test address");
        let pod = |node: Option<&str>, addrs: &[&str], host_network| Pod {
            node: node.map(str::to_string),
            addresses: addrs.iter().map(|a| ip(a)).collect(),
            host_network,
            ..Pod::default()
        };
        let pods = &mut inv.snapshot.pods;
        pods.insert(
            PodKey::new("shop", "web"),
            pod(Some("n1"), &["10.0.0.1"], false),
        );
        pods.insert(PodKey::new("shop", "pending"), pod(None, &[], false));
        pods.insert(PodKey::new("shop", "done"), pod(Some("n1"), &[], false));
        pods.insert(
            PodKey::new("kube-system", "proxy"),
            pod(Some("n1"), &["192.168.0.1"], true),
        );
        pods.insert(
            PodKey::new("shop", "ghost"),
            pod(Some("n2"), &["10.0.0.9"], false),
        );
        inv.snapshot.nodes.insert(
            "n1".into(),
            Node {
                addresses: vec![ip("192.168.0.1")],
                ..Node::default()
            },
        );
        inv.snapshot.nodes.insert("n2".into(), Node::default());
        inv.implied_nodes.insert("n2".into());
        inv
    }

    #[test]
    fn resolves_pods_hosts_and_addresses() {
        let inv = inventory();
        assert_eq!(
            resolve("--from", "shop/web", &inv).ok(),
            Some(FlowEnd::Pod(PodKey::new("shop", "web")))
        );
        assert_eq!(
            resolve("--from", "n1", &inv).ok(),
            Some(FlowEnd::Host("n1".into()))
        );
        assert_eq!(
            resolve("--from", "kube-system/proxy", &inv).ok(),
            Some(FlowEnd::Host("n1".into()))
        );
        assert_eq!(
            resolve("--to", "fd00::1", &inv).ok(),
            Some(FlowEnd::Address("fd00::1".parse().expect("ip")))
        );
    }

    #[test]
    fn errors_name_the_flag_and_what_is_missing() {
        let inv = inventory();
        let err = |flag, text| resolve(flag, text, &inv).expect_err("fails").to_string();
        assert_eq!(
            err("--from", "shop/nope"),
            "--from shop/nope: no pod shop/nope in the input (pods in namespace shop: done, ghost, pending, web)"
        );
        assert_eq!(
            err("--to", "prod/db"),
            "--to prod/db: no pod prod/db in the input (no pods in namespace \"prod\" at all)"
        );
        assert!(err("--to", "shop/pending").contains("has no spec.nodeName"));
        assert!(err("--to", "shop/done").contains("has no address"));
        assert_eq!(
            err("--to", "db1"),
            "--to db1: no Node or ExternalNode named \"db1\" in the input (pods are written namespace/name)"
        );
        assert!(err("--from", "n2").contains("only named by pods' spec.nodeName"));
    }
}
