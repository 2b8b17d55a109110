//! Kubernetes and Bulkhead objects → snapshot entries.
//!
//! ```text
//!  core/v1 Pod ────────► (PodKey, snapshot::Pod)        labels, node, addresses, hostNetwork
//!  core/v1 Namespace ──► (name, snapshot::Namespace)    labels
//!  core/v1 Node ───────► (name, snapshot::Node)         labels, InternalIP/ExternalIP
//!  ExternalNode ───────► (name, snapshot::ExternalNode) labels, spec (addresses checked)
//!  LabelMapping ───────► (name, LabelMappingSpec)
//!  SegmentationPolicy ─► (name, SegmentationPolicySpec)
//!  networking/v1 NetworkPolicy ─► (NetworkPolicyKey, netpol::NetworkPolicy)  convert/network_policy.rs
//!  discovery/v1 EndpointSlice ──► (EndpointSliceKey, service::EndpointSlice) convert/endpoint_slice.rs
//! ```
//!
//! Pure: the operator feeds these from its watches, the CLI from YAML files.
//! Every error names the object (`Kind namespace/name`) and the field, so a
//! person can find the line to fix.

use std::collections::BTreeSet;
use std::net::IpAddr;

use bulkhead_api::policy::Protocol;
use bulkhead_api::{ExternalNodeSpec, LabelMappingSpec, Labels, SegmentationPolicySpec};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::snapshot::{self, NamedPort, PodKey};

mod endpoint_slice;
mod network_policy;
pub use endpoint_slice::{endpoint_slice, SERVICE_NAME_LABEL};
pub use network_policy::network_policy;

/// Why an object could not be turned into a snapshot entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    /// `metadata.name` is absent or empty.
    #[error("{kind} without metadata.name{}", in_namespace(.namespace))]
    MissingName {
        /// The object's kind.
        kind: &'static str,
        /// Its namespace, when it has one.
        namespace: Option<String>,
    },
    /// A field that must hold an IP address holds something else.
    #[error("{kind} {object}: {field} {value:?} is not an IP address")]
    BadAddress {
        /// The object's kind.
        kind: &'static str,
        /// `namespace/name` or `name`.
        object: String,
        /// The field path, such as `status.podIPs[1].ip`.
        field: String,
        /// What it held.
        value: String,
    },
    /// A field holds a value the API server would have rejected.
    #[error("{kind} {object}: {field}: {message}")]
    Invalid {
        /// The object's kind.
        kind: &'static str,
        /// `namespace/name` or `name`.
        object: String,
        /// The field path, such as `spec.ingress[0].from[1].ipBlock.cidr`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

fn in_namespace(namespace: &Option<String>) -> String {
    namespace
        .as_ref()
        .map(|ns| format!(" in namespace {ns}"))
        .unwrap_or_default()
}

/// A Pod's key and what the compiler needs of it.
///
/// The namespace defaults to `default`, as `kubectl apply` would. A pod whose
/// phase is `Succeeded` or `Failed` keeps its key but gets no addresses: its
/// IP may already belong to another pod, so it is no endpoint.
pub fn pod(obj: &core::Pod) -> Result<(PodKey, snapshot::Pod), ConvertError> {
    let meta = &obj.metadata;
    let namespace = meta.namespace.clone().filter(|ns| !ns.is_empty());
    let namespace = namespace.unwrap_or_else(|| "default".to_string());
    let name = name_of("Pod", meta, Some(&namespace))?;
    let key = PodKey::new(namespace, name);
    let spec = obj.spec.as_ref();
    let status = obj.status.as_ref();
    let finished = status
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
    let mut addresses = Vec::new();
    if let Some(status) = status.filter(|_| !finished) {
        let listed = status.pod_ips.as_deref().unwrap_or_default();
        for (i, entry) in listed.iter().enumerate() {
            let field = format!("status.podIPs[{i}].ip");
            push_unique(
                &mut addresses,
                parse_ip("Pod", &key.to_string(), &field, &entry.ip)?,
            );
        }
        if let Some(ip) = status.pod_ip.as_deref().filter(|ip| !ip.is_empty()) {
            push_unique(
                &mut addresses,
                parse_ip("Pod", &key.to_string(), "status.podIP", ip)?,
            );
        }
    }
    let pod = snapshot::Pod {
        labels: labels_of(meta),
        node: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        addresses,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        named_ports: named_ports(spec, &key)?,
    };
    Ok((key, pod))
}

/// The named ports of the pod's containers (unnamed ones cannot be named by a policy).
fn named_ports(
    spec: Option<&core::PodSpec>,
    key: &PodKey,
) -> Result<BTreeSet<NamedPort>, ConvertError> {
    let mut out = BTreeSet::new();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    for (c, container) in containers.iter().enumerate() {
        for (p, port) in container.ports.iter().flatten().enumerate() {
            let Some(name) = port.name.clone().filter(|n| !n.is_empty()) else {
                continue;
            };
            let field = format!("spec.containers[{c}].ports[{p}]");
            let invalid = |field: String, message: String| ConvertError::Invalid {
                kind: "Pod",
                object: key.to_string(),
                field,
                message,
            };
            let protocol = match port.protocol.as_deref() {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                Some(other) => {
                    return Err(invalid(
                        format!("{field}.protocol"),
                        format!("{other:?} is not one of TCP, UDP, SCTP"),
                    ))
                }
            };
            let number = u16::try_from(port.container_port)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    invalid(
                        format!("{field}.containerPort"),
                        format!("{} is not a port between 1 and 65535", port.container_port),
                    )
                })?;
            out.insert(NamedPort {
                name,
                protocol,
                port: number,
            });
        }
    }
    Ok(out)
}

/// A Namespace's name and labels.
pub fn namespace(obj: &core::Namespace) -> Result<(String, snapshot::Namespace), ConvertError> {
    let name = name_of("Namespace", &obj.metadata, None)?;
    Ok((
        name,
        snapshot::Namespace {
            labels: labels_of(&obj.metadata),
        },
    ))
}

/// A Node's name, labels and its `InternalIP` and `ExternalIP` addresses
/// (host names and other address types are not addresses packets carry).
pub fn node(obj: &core::Node) -> Result<(String, snapshot::Node), ConvertError> {
    let name = name_of("Node", &obj.metadata, None)?;
    let mut addresses = Vec::new();
    let listed = obj
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_deref())
        .unwrap_or_default();
    for (i, entry) in listed.iter().enumerate() {
        if entry.type_ != "InternalIP" && entry.type_ != "ExternalIP" {
            continue;
        }
        let field = format!("status.addresses[{i}].address");
        push_unique(
            &mut addresses,
            parse_ip("Node", &name, &field, &entry.address)?,
        );
    }
    Ok((
        name,
        snapshot::Node {
            labels: labels_of(&obj.metadata),
            addresses,
        },
    ))
}

/// An ExternalNode's name, labels and spec. Its addresses must parse, as the
/// CRD's validation demands; the spec is kept as written.
pub fn external_node(
    obj: &bulkhead_api::ExternalNode,
) -> Result<(String, snapshot::ExternalNode), ConvertError> {
    let name = name_of("ExternalNode", &obj.metadata, None)?;
    for (i, address) in obj.spec.addresses.iter().enumerate() {
        parse_ip(
            "ExternalNode",
            &name,
            &format!("spec.addresses[{i}]"),
            address,
        )?;
    }
    let spec: ExternalNodeSpec = obj.spec.clone();
    Ok((
        name,
        snapshot::ExternalNode {
            labels: labels_of(&obj.metadata),
            spec,
        },
    ))
}

/// A LabelMapping's name and spec.
pub fn label_mapping(
    obj: &bulkhead_api::LabelMapping,
) -> Result<(String, LabelMappingSpec), ConvertError> {
    let name = name_of("LabelMapping", &obj.metadata, None)?;
    Ok((name, obj.spec.clone()))
}

/// A SegmentationPolicy's name and spec.
pub fn segmentation_policy(
    obj: &bulkhead_api::SegmentationPolicy,
) -> Result<(String, SegmentationPolicySpec), ConvertError> {
    let name = name_of("SegmentationPolicy", &obj.metadata, None)?;
    Ok((name, obj.spec.clone()))
}

pub(crate) fn name_of(
    kind: &'static str,
    meta: &ObjectMeta,
    namespace: Option<&str>,
) -> Result<String, ConvertError> {
    meta.name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ConvertError::MissingName {
            kind,
            namespace: namespace.map(str::to_string),
        })
}

pub(crate) fn labels_of(meta: &ObjectMeta) -> Labels {
    meta.labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

pub(crate) fn parse_ip(
    kind: &'static str,
    object: &str,
    field: &str,
    value: &str,
) -> Result<IpAddr, ConvertError> {
    value.trim().parse().map_err(|_| ConvertError::BadAddress {
        kind,
        object: object.to_string(),
        field: field.to_string(),
        value: value.to_string(),
    })
}

fn push_unique(addresses: &mut Vec<IpAddr>, ip: IpAddr) {
    if !addresses.contains(&ip) {
        addresses.push(ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_yaml::from_str(text).expect("test YAML parses")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address parses")
    }

    #[test]
    fn pod_takes_labels_node_addresses_and_host_network() {
        let obj: core::Pod = yaml(
            "metadata: {name: web, namespace: shop, labels: {app: web}}\n\
             spec: {nodeName: node-a, hostNetwork: false, containers: []}\n\
             status: {phase: Running, podIP: 10.0.0.5, podIPs: [{ip: 10.0.0.5}, {ip: 'fd00::5'}]}\n",
        );
        let (key, pod) = pod(&obj).expect("converts");
        assert_eq!(key, PodKey::new("shop", "web"));
        assert_eq!(pod.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(pod.node.as_deref(), Some("node-a"));
        assert_eq!(pod.addresses, vec![ip("10.0.0.5"), ip("fd00::5")]);
        assert!(!pod.host_network);
    }

    #[test]
    fn pod_defaults_namespace_and_falls_back_to_pod_ip() {
        let obj: core::Pod = yaml(
            "metadata: {name: web}\nspec: {hostNetwork: true, containers: []}\nstatus: {podIP: 10.0.0.7}\n",
        );
        let (key, pod) = pod(&obj).expect("converts");
        assert_eq!(key, PodKey::new("default", "web"));
        assert_eq!(pod.addresses, vec![ip("10.0.0.7")]);
        assert_eq!(pod.node, None);
        assert!(pod.host_network);
    }

    #[test]
    fn pod_keeps_its_named_container_ports() {
        let obj: core::Pod = yaml(
            "metadata: {name: db, namespace: shop}\n\
             spec:\n  containers:\n\
             \x20 - {name: db, ports: [{name: sql, containerPort: 5432}, {containerPort: 9000}]}\n\
             \x20 - {name: dns, ports: [{name: dns, containerPort: 53, protocol: UDP}]}\n",
        );
        let (_, db) = pod(&obj).expect("converts");
        let ports: Vec<(&str, Protocol, u16)> = db
            .named_ports
            .iter()
            .map(|p| (p.name.as_str(), p.protocol, p.port))
            .collect();
        assert_eq!(
            ports,
            vec![("dns", Protocol::Udp, 53), ("sql", Protocol::Tcp, 5432)]
        );
        let obj: core::Pod = yaml(
            "metadata: {name: db}\nspec: {containers: [{name: c, ports: [{name: x, containerPort: 70000}]}]}\n",
        );
        assert_eq!(
            pod(&obj).expect_err("bad port").to_string(),
            "Pod default/db: spec.containers[0].ports[0].containerPort: 70000 is not a port between 1 and 65535"
        );
    }

    #[test]
    fn finished_pods_are_no_endpoints() {
        for phase in ["Succeeded", "Failed"] {
            let obj: core::Pod = yaml(&format!(
                "metadata: {{name: job}}\nspec: {{nodeName: n, containers: []}}\n\
                 status: {{phase: {phase}, podIP: 10.0.0.9}}\n"
            ));
            let (_, pod) = pod(&obj).expect("converts");
            assert!(pod.addresses.is_empty(), "phase {phase}");
        }
    }

    #[test]
    fn pod_errors_name_object_and_field() {
        let obj: core::Pod = yaml(
            "metadata: {name: web, namespace: default}\n\
             status: {podIPs: [{ip: 10.0.0.1}, {ip: 10.0.0.x}]}\n",
        );
        let err = pod(&obj).expect_err("bad address");
        assert_eq!(
            err.to_string(),
            r#"Pod default/web: status.podIPs[1].ip "10.0.0.x" is not an IP address"#
        );
        let obj: core::Pod = yaml("metadata: {name: web}\nstatus: {podIP: nope}\n");
        let err = pod(&obj).expect_err("bad address");
        assert_eq!(
            err.to_string(),
            r#"Pod default/web: status.podIP "nope" is not an IP address"#
        );
        let obj: core::Pod = yaml("metadata: {namespace: shop}\n");
        assert_eq!(
            pod(&obj).expect_err("no name").to_string(),
            "Pod without metadata.name in namespace shop"
        );
    }

    #[test]
    fn node_keeps_only_ip_addresses() {
        let obj: core::Node = yaml(
            "metadata: {name: node-a, labels: {zone: a}}\n\
             status: {addresses: [{type: Hostname, address: node-a}, {type: InternalIP, address: 192.168.1.10},\n\
             {type: ExternalIP, address: '2001:db8::10'}, {type: InternalIP, address: 192.168.1.10}]}\n",
        );
        let (name, node) = node(&obj).expect("converts");
        assert_eq!(name, "node-a");
        assert_eq!(node.addresses, vec![ip("192.168.1.10"), ip("2001:db8::10")]);
        assert_eq!(node.labels.get("zone").map(String::as_str), Some("a"));
    }

    #[test]
    fn node_error_names_field() {
        let obj: core::Node =
            yaml("metadata: {name: n}\nstatus: {addresses: [{type: InternalIP, address: '300.1.1.1'}]}\n");
        assert_eq!(
            node(&obj).expect_err("bad").to_string(),
            r#"Node n: status.addresses[0].address "300.1.1.1" is not an IP address"#
        );
        let obj: core::Node = yaml("metadata: {labels: {a: b}}\n");
        assert_eq!(
            node(&obj).expect_err("no name").to_string(),
            "Node without metadata.name"
        );
    }

    #[test]
    fn namespace_and_custom_resources() {
        let obj: core::Namespace = yaml("metadata: {name: shop, labels: {env: prod}}\n");
        let (name, ns) = namespace(&obj).expect("converts");
        assert_eq!(
            (name.as_str(), ns.labels.get("env").map(String::as_str)),
            ("shop", Some("prod"))
        );

        let obj: bulkhead_api::ExternalNode = yaml(
            "apiVersion: bulkhead.dev/v1alpha1\nkind: ExternalNode\n\
             metadata: {name: db1, labels: {role: db}}\nspec: {addresses: [10.9.0.1, 'fd00::1']}\n",
        );
        let (name, xn) = external_node(&obj).expect("converts");
        assert_eq!(name, "db1");
        assert_eq!(xn.labels.get("role").map(String::as_str), Some("db"));
        assert_eq!(xn.spec.addresses.len(), 2);

        let obj: bulkhead_api::ExternalNode = yaml(
            "apiVersion: bulkhead.dev/v1alpha1\nkind: ExternalNode\n\
             metadata: {name: db1}\nspec: {addresses: [10.9.0.1, db1.example]}\n",
        );
        assert_eq!(
            external_node(&obj).expect_err("bad").to_string(),
            r#"ExternalNode db1: spec.addresses[1] "db1.example" is not an IP address"#
        );

        let obj: bulkhead_api::SegmentationPolicy = yaml(
            "apiVersion: bulkhead.dev/v1alpha1\nkind: SegmentationPolicy\n\
             metadata: {name: p}\nspec: {scope: {clusterWide: true}, enforcement: full}\n",
        );
        let (name, spec) = segmentation_policy(&obj).expect("converts");
        assert_eq!(name, "p");
        assert!(spec.scope.cluster_wide);

        let obj: bulkhead_api::LabelMapping = yaml(
            "apiVersion: bulkhead.dev/v1alpha1\nkind: LabelMapping\nmetadata: {}\n\
             spec: {rules: [{match: {pods: {}}, copyLabels: [{key: app, fromLabel: app}]}]}\n",
        );
        assert_eq!(
            label_mapping(&obj).expect_err("no name").to_string(),
            "LabelMapping without metadata.name"
        );
    }
}
