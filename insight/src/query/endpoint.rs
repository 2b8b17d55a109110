//! Which endpoints a `--from`/`--to` names.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use bulkhead_api::flow::{EndpointKind, FlowEndpoint};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::QueryError;

/// One side of a flow as a user names it.
///
/// | input | meaning |
/// |---|---|
/// | `app=web,env=prod`, `tier!=db`, `app` | segmentation labels (every term must hold) |
/// | `shop/web-0` | the pod `web-0` in namespace `shop` |
/// | `node:worker-1` | the node or external node `worker-1` |
/// | `10.0.0.7`, `10.0.0.0/8`, `fd00::/8` | an address or a range |
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EndpointMatch {
    Labels(Vec<LabelRequirement>),
    Pod { namespace: String, name: String },
    Node(String),
    Net(IpNet),
}

/// One term of a label selector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LabelRequirement {
    /// `key=value` (also `key==value`).
    Equals { key: String, value: String },
    /// `key!=value`: the key is absent or has another value (as Kubernetes).
    NotEquals { key: String, value: String },
    /// `key`: the key is present.
    Exists { key: String },
}

impl LabelRequirement {
    pub fn key(&self) -> &str {
        match self {
            LabelRequirement::Equals { key, .. }
            | LabelRequirement::NotEquals { key, .. }
            | LabelRequirement::Exists { key } => key,
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelRequirement::Equals { key, value } => labels.get(key) == Some(value),
            LabelRequirement::NotEquals { key, value } => labels.get(key) != Some(value),
            LabelRequirement::Exists { key } => labels.contains_key(key),
        }
    }
}

impl EndpointMatch {
    /// Parses what a user typed; see the table on [`EndpointMatch`].
    pub fn parse(input: &str) -> Result<Self, QueryError> {
        let fail = |reason: String| QueryError::Endpoint {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(fail("empty".into()));
        }
        if let Some(node) = s.strip_prefix("node:") {
            return if is_dns_subdomain(node) {
                Ok(EndpointMatch::Node(node.to_string()))
            } else {
                Err(fail(format!("{node:?} is not a valid node name")))
            };
        }
        if s.contains('=') || s.contains('!') || s.contains(',') {
            return parse_selector(s).map(EndpointMatch::Labels).map_err(fail);
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(EndpointMatch::Net(net.trunc()));
        }
        if let Ok(addr) = s.parse::<IpAddr>() {
            return Ok(EndpointMatch::Net(IpNet::from(addr)));
        }
        if let Some((ns, pod)) = s.split_once('/') {
            if is_dns_label(ns) && is_dns_subdomain(pod) {
                return Ok(EndpointMatch::Pod {
                    namespace: ns.to_string(),
                    name: pod.to_string(),
                });
            }
            if ns
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == ':')
            {
                return Err(fail("not a valid address or CIDR".into()));
            }
        }
        parse_selector(s)
            .map(EndpointMatch::Labels)
            .map_err(|reason| {
                fail(format!(
                    "not a label selector, namespace/pod, node:NAME, address or CIDR ({reason})"
                ))
            })
    }

    /// Whether one side of a record is this endpoint.
    pub fn matches(&self, endpoint: &FlowEndpoint) -> bool {
        match self {
            EndpointMatch::Labels(reqs) => reqs.iter().all(|r| r.matches(&endpoint.labels)),
            EndpointMatch::Pod { namespace, name } => {
                endpoint.kind == EndpointKind::Pod
                    && endpoint
                        .name
                        .as_deref()
                        .and_then(|n| n.split_once('/'))
                        .is_some_and(|(ns, pod)| ns == namespace && pod == name)
            }
            EndpointMatch::Node(node) => {
                matches!(
                    endpoint.kind,
                    EndpointKind::Node | EndpointKind::ExternalNode
                ) && endpoint.name.as_deref() == Some(node.as_str())
            }
            EndpointMatch::Net(net) => net.contains(&endpoint.address),
        }
    }
}

impl fmt::Display for EndpointMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointMatch::Labels(reqs) => {
                for (i, r) in reqs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    match r {
                        LabelRequirement::Equals { key, value } => write!(f, "{key}={value}")?,
                        LabelRequirement::NotEquals { key, value } => write!(f, "{key}!={value}")?,
                        LabelRequirement::Exists { key } => f.write_str(key)?,
                    }
                }
                Ok(())
            }
            EndpointMatch::Pod { namespace, name } => write!(f, "{namespace}/{name}"),
            EndpointMatch::Node(n) => write!(f, "node:{n}"),
            EndpointMatch::Net(net) => write!(f, "{net}"),
        }
    }
}

fn parse_selector(s: &str) -> Result<Vec<LabelRequirement>, String> {
    let mut reqs = Vec::new();
    for term in s.split(',') {
        let term = term.trim();
        if term.is_empty() {
            return Err("empty selector term".into());
        }
        let req = if let Some((k, v)) = term.split_once("!=") {
            LabelRequirement::NotEquals {
                key: label_key(k.trim())?,
                value: label_value(v.trim())?,
            }
        } else if let Some((k, v)) = term.split_once('=') {
            let v = v.strip_prefix('=').unwrap_or(v);
            LabelRequirement::Equals {
                key: label_key(k.trim())?,
                value: label_value(v.trim())?,
            }
        } else {
            LabelRequirement::Exists {
                key: label_key(term)?,
            }
        };
        reqs.push(req);
    }
    Ok(reqs)
}

/// A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a
/// name of at most 63 characters.
pub(crate) fn label_key(k: &str) -> Result<String, String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if !is_dns_subdomain(p) {
            return Err(format!(
                "label key {k:?}: prefix {p:?} is not a DNS subdomain"
            ));
        }
    }
    if name.is_empty() || name.len() > 63 || !is_label_name(name) {
        return Err(format!(
            "label key {k:?}: the name must be 1-63 characters, alphanumeric, '-', '_' or '.', \
             starting and ending alphanumeric"
        ));
    }
    Ok(k.to_string())
}

fn label_value(v: &str) -> Result<String, String> {
    if v.is_empty() || (v.len() <= 63 && is_label_name(v)) {
        Ok(v.to_string())
    } else {
        Err(format!(
            "label value {v:?}: at most 63 characters, alphanumeric, '-', '_' or '.', \
             starting and ending alphanumeric"
        ))
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(k: &str, v: &str) -> LabelRequirement {
        LabelRequirement::Equals {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn parses_every_form() {
        let cases: Vec<(&str, EndpointMatch)> = vec![
            ("app=web", EndpointMatch::Labels(vec![eq("app", "web")])),
            (
                "app=web,env=prod",
                EndpointMatch::Labels(vec![eq("app", "web"), eq("env", "prod")]),
            ),
            ("app==web", EndpointMatch::Labels(vec![eq("app", "web")])),
            (
                "tier!=db",
                EndpointMatch::Labels(vec![LabelRequirement::NotEquals {
                    key: "tier".into(),
                    value: "db".into(),
                }]),
            ),
            (
                "app",
                EndpointMatch::Labels(vec![LabelRequirement::Exists { key: "app".into() }]),
            ),
            (
                "bulkhead.dev/role=db",
                EndpointMatch::Labels(vec![eq("bulkhead.dev/role", "db")]),
            ),
            (
                "bulkhead.dev/role",
                EndpointMatch::Labels(vec![LabelRequirement::Exists {
                    key: "bulkhead.dev/role".into(),
                }]),
            ),
            (
                "shop/web-0",
                EndpointMatch::Pod {
                    namespace: "shop".into(),
                    name: "web-0".into(),
                },
            ),
            ("node:worker-1", EndpointMatch::Node("worker-1".into())),
            (
                "10.0.0.7",
                EndpointMatch::Net("10.0.0.7/32".parse().expect("net")),
            ),
            (
                "10.1.2.3/8",
                EndpointMatch::Net("10.0.0.0/8".parse().expect("net")),
            ),
            (
                "fd00::1",
                EndpointMatch::Net("fd00::1/128".parse().expect("net")),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(EndpointMatch::parse(input), Ok(want.clone()), "{input}");
            assert_eq!(
                EndpointMatch::parse(&want.to_string()),
                Ok(want),
                "{input} round trip"
            );
        }
    }

    #[test]
    fn refuses_bad_input_naming_it() {
        let cases = [
            ("", "empty"),
            ("node:", "not a valid node name"),
            ("node:Bad_Name", "not a valid node name"),
            ("app=", ""),
            ("=web", "label key \"\""),
            ("app=web,", "empty selector term"),
            ("app=we b", "label value"),
            ("10.0.0.300/8", "not a valid address or CIDR"),
            ("a/b/c", "not a label selector"),
            ("-bad-", "not a label selector"),
        ];
        for (input, reason) in cases {
            match EndpointMatch::parse(input) {
                Err(e @ QueryError::Endpoint { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(reason), "{input:?}: {msg}");
                    assert!(msg.contains(&format!("{input:?}")), "{input:?}: {msg}");
                }
                Ok(m) if reason.is_empty() => {
                    // `app=` selects an empty value, which Kubernetes allows.
                    assert_eq!(m, EndpointMatch::Labels(vec![eq("app", "")]));
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    fn endpoint(kind: EndpointKind, name: Option<&str>, labels: &[(&str, &str)]) -> FlowEndpoint {
        FlowEndpoint {
            address: "10.0.0.7".parse().expect("ip"),
            identity: 1000,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            kind,
            name: name.map(str::to_string),
            namespace: None,
            reported: true,
        }
    }

    #[test]
    fn matches_truth_table() {
        let web = endpoint(
            EndpointKind::Pod,
            Some("shop/web-0"),
            &[("app", "web"), ("env", "prod")],
        );
        let node = endpoint(EndpointKind::Node, Some("worker-1"), &[]);
        let ext = endpoint(
            EndpointKind::ExternalNode,
            Some("mainframe"),
            &[("app", "db")],
        );
        let cases = [
            ("app=web", &web, true),
            ("app=web,env=prod", &web, true),
            ("app=web,env=dev", &web, false),
            ("app!=db", &web, true),
            ("app!=web", &web, false),
            ("tier!=db", &web, true),
            ("app", &web, true),
            ("tier", &web, false),
            ("shop/web-0", &web, true),
            ("shop/web-1", &web, false),
            ("other/web-0", &web, false),
            ("node:worker-1", &node, true),
            ("node:worker-1", &web, false),
            ("node:mainframe", &ext, true),
            ("10.0.0.0/24", &web, true),
            ("10.0.1.0/24", &web, false),
            ("10.0.0.7", &node, true),
            ("app=db", &ext, true),
        ];
        for (input, ep, want) in cases {
            let m = EndpointMatch::parse(input).expect(input);
            assert_eq!(m.matches(ep), want, "{input} vs {:?}", ep.name);
        }
    }
}
