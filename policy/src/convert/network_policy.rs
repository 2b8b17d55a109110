//! `networking.k8s.io/v1` NetworkPolicy → [`crate::netpol::NetworkPolicy`],
//! with the API server's own checks: a value it would reject is an error
//! naming the field, never a silently different policy.

use bulkhead_api::policy::Protocol;
use bulkhead_api::rule_map::Direction;
use bulkhead_api::selector::{LabelSelectorRequirement, SelectorOperator};
use bulkhead_api::LabelSelector;
use ipnet::IpNet;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{name_of, ConvertError};
use crate::netpol::{
    NetworkPolicy, NetworkPolicyKey, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule,
    PortRef,
};

const KIND: &str = "NetworkPolicy";

/// A NetworkPolicy's key and spec. The namespace defaults to `default`, as
/// `kubectl apply` would.
pub fn network_policy(
    obj: &net::NetworkPolicy,
) -> Result<(NetworkPolicyKey, NetworkPolicy), ConvertError> {
    let meta = &obj.metadata;
    let namespace = meta.namespace.clone().filter(|ns| !ns.is_empty());
    let namespace = namespace.unwrap_or_else(|| "default".to_string());
    let name = name_of(KIND, meta, Some(&namespace))?;
    let key = NetworkPolicyKey::new(namespace, name);
    let at = At {
        object: key.to_string(),
    };
    let spec = obj.spec.clone().unwrap_or_default();
    let pod_selector = match &spec.pod_selector {
        Some(s) => at.selector(s, "spec.podSelector")?,
        None => LabelSelector::default(),
    };
    let policy_types = match &spec.policy_types {
        None => None,
        Some(types) => {
            let mut out = Vec::new();
            for (i, t) in types.iter().enumerate() {
                let direction = match t.as_str() {
                    "Ingress" => Direction::Ingress,
                    "Egress" => Direction::Egress,
                    other => {
                        return Err(at.invalid(
                            format!("spec.policyTypes[{i}]"),
                            format!("{other:?} is not Ingress or Egress"),
                        ))
                    }
                };
                if !out.contains(&direction) {
                    out.push(direction);
                }
            }
            Some(out)
        }
    };
    let mut ingress = Vec::new();
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        let path = format!("spec.ingress[{i}]");
        ingress.push(at.rule(&path, "from", rule.from.as_deref(), rule.ports.as_deref())?);
    }
    let mut egress = Vec::new();
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        let path = format!("spec.egress[{i}]");
        egress.push(at.rule(&path, "to", rule.to.as_deref(), rule.ports.as_deref())?);
    }
    Ok((
        key,
        NetworkPolicy {
            pod_selector,
            policy_types,
            ingress,
            egress,
        },
    ))
}

/// The object errors are about.
struct At {
    object: String,
}

impl At {
    fn invalid(&self, field: String, message: String) -> ConvertError {
        ConvertError::Invalid {
            kind: KIND,
            object: self.object.clone(),
            field,
            message,
        }
    }

    fn rule(
        &self,
        path: &str,
        peers_field: &str,
        peers: Option<&[net::NetworkPolicyPeer]>,
        ports: Option<&[net::NetworkPolicyPort]>,
    ) -> Result<NetworkPolicyRule, ConvertError> {
        let mut rule = NetworkPolicyRule::default();
        for (i, p) in peers.unwrap_or_default().iter().enumerate() {
            rule.peers
                .push(self.peer(p, &format!("{path}.{peers_field}[{i}]"))?);
        }
        for (i, p) in ports.unwrap_or_default().iter().enumerate() {
            rule.ports
                .push(self.port(p, &format!("{path}.ports[{i}]"))?);
        }
        Ok(rule)
    }

    fn peer(
        &self,
        peer: &net::NetworkPolicyPeer,
        path: &str,
    ) -> Result<NetworkPolicyPeer, ConvertError> {
        let selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
        match (&peer.ip_block, selectors) {
            (None, false) => Err(self.invalid(
                path.to_string(),
                "must specify a peer: podSelector, namespaceSelector or ipBlock".into(),
            )),
            (Some(_), true) => Err(self.invalid(
                path.to_string(),
                "may not specify both ipBlock and another peer".into(),
            )),
            (Some(block), false) => {
                let field = format!("{path}.ipBlock.cidr");
                let cidr = self.cidr(&block.cidr, &field)?;
                let mut except = Vec::new();
                for (i, e) in block.except.iter().flatten().enumerate() {
                    let field = format!("{path}.ipBlock.except[{i}]");
                    let e = self.cidr(e, &field)?;
                    if !(cidr.contains(&e) && e.prefix_len() > cidr.prefix_len()) {
                        return Err(
                            self.invalid(field, format!("must be a strict subset of cidr {cidr}"))
                        );
                    }
                    except.push(e);
                }
                Ok(NetworkPolicyPeer::IpBlock { cidr, except })
            }
            (None, true) => Ok(NetworkPolicyPeer::Pods {
                namespace_selector: peer
                    .namespace_selector
                    .as_ref()
                    .map(|s| self.selector(s, &format!("{path}.namespaceSelector")))
                    .transpose()?,
                pod_selector: peer
                    .pod_selector
                    .as_ref()
                    .map(|s| self.selector(s, &format!("{path}.podSelector")))
                    .transpose()?,
            }),
        }
    }

    fn cidr(&self, text: &str, field: &str) -> Result<IpNet, ConvertError> {
        let net: IpNet = text.trim().parse().map_err(|_| {
            self.invalid(field.to_string(), format!("{text:?} is not a valid CIDR"))
        })?;
        Ok(net.trunc())
    }

    fn port(
        &self,
        port: &net::NetworkPolicyPort,
        path: &str,
    ) -> Result<NetworkPolicyPort, ConvertError> {
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            Some(other) => {
                return Err(self.invalid(
                    format!("{path}.protocol"),
                    format!("{other:?} is not one of TCP, UDP, SCTP"),
                ))
            }
        };
        let number = |n: i64, field: &str| {
            u16::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                self.invalid(
                    format!("{path}.{field}"),
                    format!("{n} is not a port between 1 and 65535"),
                )
            })
        };
        let value = match &port.port {
            None => None,
            Some(IntOrString::Int(n)) => Some(PortRef::Number(number(i64::from(*n), "port")?)),
            Some(IntOrString::String(s)) => match s.parse::<i64>() {
                // An all-digits string is how YAML sometimes spells a number.
                Ok(n) => Some(PortRef::Number(number(n, "port")?)),
                Err(_) if is_port_name(s) => Some(PortRef::Name(s.clone())),
                Err(_) => {
                    return Err(self.invalid(
                        format!("{path}.port"),
                        format!("{s:?} is neither a port number nor a port name (IANA_SVC_NAME)"),
                    ))
                }
            },
        };
        let end_port = match port.end_port {
            None => None,
            Some(e) => {
                let e = number(i64::from(e), "endPort")?;
                match &value {
                    Some(PortRef::Number(p)) if e >= *p => Some(e),
                    Some(PortRef::Number(p)) => {
                        return Err(self.invalid(
                            format!("{path}.endPort"),
                            format!("{e} must be greater than or equal to port {p}"),
                        ))
                    }
                    _ => {
                        return Err(self.invalid(
                            format!("{path}.endPort"),
                            "may only be set with a numeric port".into(),
                        ))
                    }
                }
            }
        };
        Ok(NetworkPolicyPort {
            protocol,
            port: value,
            end_port,
        })
    }

    fn selector(
        &self,
        sel: &meta::LabelSelector,
        path: &str,
    ) -> Result<LabelSelector, ConvertError> {
        let mut out = LabelSelector {
            match_labels: sel
                .match_labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            match_expressions: Vec::new(),
        };
        for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
            let field = format!("{path}.matchExpressions[{i}]");
            let operator = match req.operator.as_str() {
                "In" => SelectorOperator::In,
                "NotIn" => SelectorOperator::NotIn,
                "Exists" => SelectorOperator::Exists,
                "DoesNotExist" => SelectorOperator::DoesNotExist,
                other => {
                    return Err(self.invalid(
                        format!("{field}.operator"),
                        format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
                    ))
                }
            };
            let values = req.values.clone().unwrap_or_default();
            let needs_values = matches!(operator, SelectorOperator::In | SelectorOperator::NotIn);
            if needs_values == values.is_empty() {
                return Err(self.invalid(
                    format!("{field}.values"),
                    "must be non-empty for In and NotIn and empty for Exists and DoesNotExist"
                        .into(),
                ));
            }
            out.match_expressions.push(LabelSelectorRequirement {
                key: req.key.clone(),
                operator,
                values,
            });
        }
        Ok(out)
    }
}

/// IANA_SVC_NAME, as container port names are: 1-15 lowercase letters,
/// digits and inner single hyphens, with at least one letter.
fn is_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(text: &str) -> Result<(NetworkPolicyKey, NetworkPolicy), ConvertError> {
        let obj: net::NetworkPolicy = serde_yaml::from_str(text).expect("test YAML parses");
        network_policy(&obj)
    }

    #[test]
    fn every_field_is_read() {
        let (key, policy) = convert(
            "metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}
      namespaceSelector: {}
    - ipBlock: {cidr: 10.0.0.1/8, except: [10.9.0.0/16]}
    ports: [{port: 5432}, {protocol: UDP, port: metrics}, {protocol: SCTP, port: 80, endPort: 90}]
  egress:
  - {}
",
        )
        .expect("converts");
        assert_eq!(key, NetworkPolicyKey::new("shop", "db"));
        assert_eq!(
            policy.policy_types,
            Some(vec![Direction::Ingress, Direction::Egress])
        );
        let rule = &policy.ingress[0];
        assert!(matches!(
            &rule.peers[0],
            NetworkPolicyPeer::Pods { namespace_selector: Some(ns), pod_selector: Some(_) } if ns.is_empty()
        ));
        assert_eq!(
            rule.peers[1],
            NetworkPolicyPeer::IpBlock {
                cidr: "10.0.0.0/8".parse().expect("net"),
                except: vec!["10.9.0.0/16".parse().expect("net")],
            }
        );
        let ports: Vec<(Protocol, Option<PortRef>, Option<u16>)> = rule
            .ports
            .iter()
            .map(|p| (p.protocol, p.port.clone(), p.end_port))
            .collect();
        assert_eq!(
            ports,
            vec![
                (Protocol::Tcp, Some(PortRef::Number(5432)), None),
                (Protocol::Udp, Some(PortRef::Name("metrics".into())), None),
                (Protocol::Sctp, Some(PortRef::Number(80)), Some(90)),
            ]
        );
        assert_eq!(policy.egress, vec![NetworkPolicyRule::default()]);
    }

    #[test]
    fn what_the_api_server_rejects_is_an_error_naming_the_field() {
        let cases = [
            (
                "spec: {ingress: [{from: [{}]}]}",
                "spec.ingress[0].from[0]: must specify a peer",
            ),
            (
                "spec: {egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
                "spec.egress[0].to[0]: may not specify both",
            ),
            (
                "spec: {egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]}",
                "spec.egress[0].to[0].ipBlock.except[0]: must be a strict subset",
            ),
            (
                "spec: {ingress: [{from: [{ipBlock: {cidr: 10.0.0.300/8}}]}]}",
                "spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.300/8\" is not a valid CIDR",
            ),
            (
                "spec: {ingress: [{ports: [{protocol: ICMP}]}]}",
                "spec.ingress[0].ports[0].protocol",
            ),
            (
                "spec: {ingress: [{ports: [{port: http, endPort: 90}]}]}",
                "spec.ingress[0].ports[0].endPort: may only be set with a numeric port",
            ),
            (
                "spec: {ingress: [{ports: [{port: 90, endPort: 80}]}]}",
                "spec.ingress[0].ports[0].endPort: 80 must be greater",
            ),
            (
                "spec: {ingress: [{ports: [{port: 0}]}]}",
                "spec.ingress[0].ports[0].port: 0 is not a port",
            ),
            ("spec: {policyTypes: [Both]}", "spec.policyTypes[0]"),
            (
                "spec: {podSelector: {matchExpressions: [{key: a, operator: In}]}}",
                "spec.podSelector.matchExpressions[0].values",
            ),
        ];
        for (spec, expected) in cases {
            let text = format!("metadata: {{name: p, namespace: x}}\n{spec}\n");
            let err = convert(&text).expect_err(spec).to_string();
            assert!(
                err.starts_with(&format!("NetworkPolicy x/p: {expected}")),
                "{spec}: {err}"
            );
        }
    }

    #[test]
    fn defaults_and_port_names() {
        let (key, policy) = convert("metadata: {name: p}\nspec: {}\n").expect("converts");
        assert_eq!(key, NetworkPolicyKey::new("default", "p"));
        assert!(policy.isolates(Direction::Ingress) && !policy.isolates(Direction::Egress));
        for (name, ok) in [
            ("http", true),
            ("serve-80-tcp", true),
            ("a-b", true),
            ("8080x", true),
            ("-http", false),
            ("ht--tp", false),
            ("HTTP", false),
            ("a-very-long-port-name", false),
        ] {
            assert_eq!(is_port_name(name), ok, "{name}");
        }
    }
}
