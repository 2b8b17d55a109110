//! Implicit labels: the part of a pod's Kubernetes state that NetworkPolicies
//! can select, carried in its identity's label set.
//!
//! Only what some NetworkPolicy reads goes in (the [`Vocabulary`]): label
//! keys its selectors name, port names, `ipBlock` ranges. A selector's answer
//! depends only on the keys it names, so this is exact; and labels nobody
//! selects on (`pod-template-hash`, say) do not split identities.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::rule_map::Direction;
use bulkhead_api::{LabelSelector, Labels};
use ipnet::IpNet;

use super::model::{NetworkPolicy, NetworkPolicyKey, NetworkPolicyPeer, PortRef};
use super::named_ports;
use super::{
    cidr_label, IN_RANGE, METADATA_NAME, NAMESPACE_LABEL, NAMESPACE_PREFIX, POD_PREFIX, PORT_PREFIX,
};
use crate::snapshot::Pod;

/// What the NetworkPolicies of a snapshot read of pods and namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Vocabulary {
    pod_keys: BTreeSet<String>,
    namespace_keys: BTreeSet<String>,
    port_names: BTreeSet<String>,
    ranges: BTreeSet<IpNet>,
}

impl Vocabulary {
    pub(crate) fn of(policies: &BTreeMap<NetworkPolicyKey, NetworkPolicy>) -> Self {
        let mut v = Self::default();
        for policy in policies.values() {
            keys_of(&policy.pod_selector, &mut v.pod_keys);
            for direction in [Direction::Ingress, Direction::Egress] {
                if !policy.isolates(direction) {
                    continue;
                }
                for rule in policy.rules(direction) {
                    for peer in &rule.peers {
                        match peer {
                            NetworkPolicyPeer::Pods {
                                namespace_selector,
                                pod_selector,
                            } => {
                                if let Some(s) = namespace_selector {
                                    keys_of(s, &mut v.namespace_keys);
                                }
                                if let Some(s) = pod_selector {
                                    keys_of(s, &mut v.pod_keys);
                                }
                            }
                            NetworkPolicyPeer::IpBlock { cidr, except } => {
                                v.ranges.insert(*cidr);
                                v.ranges.extend(except.iter().copied());
                            }
                        }
                    }
                    for port in &rule.ports {
                        if let Some(PortRef::Name(name)) = &port.port {
                            v.port_names.insert(name.clone());
                        }
                    }
                }
            }
        }
        v
    }
}

fn keys_of(selector: &LabelSelector, keys: &mut BTreeSet<String>) {
    keys.extend(selector.match_labels.keys().cloned());
    keys.extend(selector.match_expressions.iter().map(|r| r.key.clone()));
}

/// The implicit labels of a pod of `namespace` (whose labels are `namespace_labels`).
pub(crate) fn implicit_labels(
    vocabulary: &Vocabulary,
    namespace: &str,
    pod: &Pod,
    namespace_labels: &Labels,
) -> Labels {
    let mut out = Labels::new();
    out.insert(NAMESPACE_LABEL.to_string(), namespace.to_string());
    for key in &vocabulary.pod_keys {
        if let Some(value) = pod.labels.get(key) {
            out.insert(format!("{POD_PREFIX}{key}"), value.clone());
        }
    }
    for key in &vocabulary.namespace_keys {
        // The API server sets this label on every namespace; manifests read
        // offline may leave it out.
        let value = if key == METADATA_NAME {
            Some(namespace)
        } else {
            namespace_labels.get(key).map(String::as_str)
        };
        if let Some(value) = value {
            out.insert(format!("{NAMESPACE_PREFIX}{key}"), value.to_string());
        }
    }
    for name in &vocabulary.port_names {
        let ports: Vec<String> = pod
            .named_ports
            .iter()
            .filter(|p| &p.name == name)
            .map(|p| named_ports::port_text(p.protocol, p.port))
            .collect();
        if !ports.is_empty() {
            out.insert(format!("{PORT_PREFIX}{name}"), ports.join(","));
        }
    }
    for range in &vocabulary.ranges {
        if pod.addresses.iter().any(|a| range.contains(a)) {
            out.insert(cidr_label(range), IN_RANGE.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netpol::{NetworkPolicyPort, NetworkPolicyRule};
    use crate::snapshot::NamedPort;
    use bulkhead_api::policy::Protocol;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_what_policies_read_becomes_a_label() {
        let policy = NetworkPolicy {
            pod_selector: LabelSelector::from_labels([("app", "db")]),
            ingress: vec![NetworkPolicyRule {
                peers: vec![
                    NetworkPolicyPeer::Pods {
                        namespace_selector: Some(LabelSelector::from_labels([(
                            METADATA_NAME,
                            "web",
                        )])),
                        pod_selector: None,
                    },
                    NetworkPolicyPeer::IpBlock {
                        cidr: "10.0.0.0/8".parse().expect("net"),
                        except: vec!["10.9.0.0/16".parse().expect("net")],
                    },
                ],
                ports: vec![NetworkPolicyPort {
                    protocol: Protocol::Tcp,
                    port: Some(PortRef::Name("sql".into())),
                    end_port: None,
                }],
            }],
            ..NetworkPolicy::default()
        };
        let vocabulary = Vocabulary::of(&BTreeMap::from([(
            NetworkPolicyKey::new("db", "p"),
            policy,
        )]));
        let pod = Pod {
            labels: labels(&[("app", "db"), ("pod-template-hash", "abc")]),
            addresses: vec!["10.9.1.1".parse().expect("ip")],
            named_ports: BTreeSet::from([NamedPort {
                name: "sql".into(),
                protocol: Protocol::Tcp,
                port: 5432,
            }]),
            ..Pod::default()
        };
        let got = implicit_labels(&vocabulary, "db", &pod, &labels(&[("team", "a")]));
        assert_eq!(
            got,
            labels(&[
                ("k8s:namespace", "db"),
                ("k8s:pod/app", "db"),
                ("k8s:ns/kubernetes.io/metadata.name", "db"),
                ("k8s:port/sql", "5432/TCP"),
                ("k8s:cidr/10.0.0.0/8", "in"),
                ("k8s:cidr/10.9.0.0/16", "in"),
            ])
        );
    }
}
