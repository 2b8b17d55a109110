//! Builders shared by the compiler's tests and benchmarks: a cluster in a few
//! lines, policies and mappings as YAML, and a one-call verdict.

#![allow(dead_code)]

use std::net::IpAddr;

use bulkhead_api::policy::Protocol;
use bulkhead_api::{ExternalNodeSpec, LabelMappingSpec, Labels, SegmentationPolicySpec};
use bulkhead_policy::snapshot::{ExternalNode, Namespace, Node, Pod, PodKey};
use bulkhead_policy::{
    compile, simulate, CompileOptions, FlowEnd, FlowQuery, IdentityAllocation, Output, Snapshot,
    Verdict,
};

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn addrs(list: &str) -> Vec<IpAddr> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|a| a.trim().parse().expect("test address"))
        .collect()
}

/// A cluster under construction.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub snap: Snapshot,
    pub options: CompileOptions,
}

impl World {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ns(mut self, name: &str, l: &[(&str, &str)]) -> Self {
        self.snap
            .namespaces
            .insert(name.into(), Namespace { labels: labels(l) });
        self
    }

    pub fn node(mut self, name: &str, addresses: &str, l: &[(&str, &str)]) -> Self {
        self.snap.nodes.insert(
            name.into(),
            Node {
                labels: labels(l),
                addresses: addrs(addresses),
            },
        );
        self
    }

    pub fn pod(
        mut self,
        ns: &str,
        name: &str,
        node: &str,
        addresses: &str,
        l: &[(&str, &str)],
    ) -> Self {
        self.snap.pods.insert(
            PodKey::new(ns, name),
            Pod {
                labels: labels(l),
                node: Some(node.into()),
                addresses: addrs(addresses),
                host_network: false,
                ..Pod::default()
            },
        );
        self
    }

    pub fn external(mut self, name: &str, addresses: &str, l: &[(&str, &str)]) -> Self {
        let spec = ExternalNodeSpec {
            hostname: None,
            addresses: addresses.split(',').map(str::to_string).collect(),
            interfaces: vec![],
        };
        self.snap.external_nodes.insert(
            name.into(),
            ExternalNode {
                labels: labels(l),
                spec,
            },
        );
        self
    }

    pub fn mapping(mut self, name: &str, yaml: &str) -> Self {
        let spec: LabelMappingSpec = serde_yaml::from_str(yaml).expect("mapping yaml");
        self.snap.mappings.insert(name.into(), spec);
        self
    }

    pub fn policy(mut self, name: &str, yaml: &str) -> Self {
        let spec: SegmentationPolicySpec = serde_yaml::from_str(yaml).expect("policy yaml");
        self.snap.policies.insert(name.into(), spec);
        self
    }

    pub fn without_policy(mut self, name: &str) -> Self {
        self.snap.policies.remove(name);
        self
    }

    pub fn compile(&self) -> Output {
        compile(&self.snap, &self.options, &IdentityAllocation::default())
    }
}

/// A mapping that copies pod label `app` into `app` and the namespace's
/// `env` into `env`: enough for most tests.
pub const APP_ENV_MAPPING: &str = r#"
priority: 10
rules:
- match: {pods: {}}
  copyLabels:
  - {key: app, fromLabel: app}
  - {key: env, fromLabel: env, source: namespace}
"#;

pub fn end(s: &str) -> FlowEnd {
    if let Ok(a) = s.parse::<IpAddr>() {
        FlowEnd::Address(a)
    } else if let Some((ns, name)) = s.split_once('/') {
        FlowEnd::Pod(PodKey::new(ns, name))
    } else {
        FlowEnd::Host(s.into())
    }
}

pub fn verdict(out: &Output, from: &str, to: &str, protocol: Protocol, port: u16) -> Verdict {
    let q = FlowQuery {
        from: end(from),
        to: end(to),
        protocol,
        port,
    };
    simulate(out, &q)
        .unwrap_or_else(|e| panic!("simulate {from} -> {to}: {e}"))
        .verdict
}
