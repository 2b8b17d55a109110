//! One NetworkPolicy → one internal prepared policy.
//!
//! For each direction the policy isolates, in this order:
//! `<dir>[i]` allow per rule (peers, ports; a rule with named ports gives a
//! second `<dir>[i]` rule for them), `<dir> (own node)` allow from/to the
//! pod's node (Kubernetes never lets a NetworkPolicy cut a pod off its node),
//! and `<dir> (isolation)`, a deny of everything else.

use bulkhead_api::policy::{Action, EnforcementMode, ReservedPeer};
use bulkhead_api::rule_map::{Direction, PortRange};
use bulkhead_api::selector::{LabelSelectorRequirement, SelectorOperator};
use bulkhead_api::LabelSelector;

use super::model::{
    NetworkPolicy, NetworkPolicyKey, NetworkPolicyPeer, NetworkPolicyRule, PortRef,
};
use super::{NAMESPACE_LABEL, NAMESPACE_PREFIX, POD_PREFIX, PORT_PREFIX};
use crate::selection::{direction_name, PeerSel, PreparedPolicy, PreparedRule, ScopeKind};

/// The internal policy of one NetworkPolicy.
pub(crate) fn prepare(key: &NetworkPolicyKey, policy: &NetworkPolicy) -> PreparedPolicy {
    let mut rules = Vec::new();
    for direction in [Direction::Ingress, Direction::Egress] {
        if !policy.isolates(direction) {
            continue;
        }
        let dir = direction_name(direction);
        for (i, rule) in policy.rules(direction).iter().enumerate() {
            rules.extend(allow_rules(&format!("{dir}[{i}]"), direction, key, rule));
        }
        rules.push(PreparedRule {
            name: format!("{dir} (own node)"),
            direction,
            action: Action::Allow,
            peers: Some(vec![PeerSel::Reserved(ReservedPeer::Host)]),
            ports: Vec::new(),
            named_ports: Vec::new(),
            expires: None,
            expired: false,
        });
        rules.push(PreparedRule {
            name: format!("{dir} (isolation)"),
            direction,
            action: Action::Deny,
            peers: None,
            ports: Vec::new(),
            named_ports: Vec::new(),
            expires: None,
            expired: false,
        });
    }
    PreparedPolicy {
        scope: Some(in_namespace(&key.namespace, Some(&policy.pod_selector))),
        scope_kind: ScopeKind::Kubernetes,
        // Isolation is a deny: it takes at least selective mode to enforce.
        enforcement: Some(EnforcementMode::Selective),
        rules,
        errors: Vec::new(),
    }
}

fn allow_rules(
    name: &str,
    direction: Direction,
    key: &NetworkPolicyKey,
    rule: &NetworkPolicyRule,
) -> Vec<PreparedRule> {
    let peers = (!rule.peers.is_empty())
        .then(|| rule.peers.iter().map(|p| peer(key, p)).collect::<Vec<_>>());
    let mut numeric = Vec::new();
    let mut named = Vec::new();
    for port in &rule.ports {
        match &port.port {
            None => numeric.push(PortRange {
                protocol: port.protocol,
                first: 0,
                last: u16::MAX,
            }),
            Some(PortRef::Number(first)) => numeric.push(PortRange {
                protocol: port.protocol,
                first: *first,
                last: port.end_port.unwrap_or(*first).max(*first),
            }),
            Some(PortRef::Name(n)) => named.push((port.protocol, n.clone())),
        }
    }
    let base = PreparedRule {
        name: name.to_string(),
        direction,
        action: Action::Allow,
        peers,
        ports: numeric,
        named_ports: Vec::new(),
        expires: None,
        expired: false,
    };
    if named.is_empty() {
        return vec![base];
    }
    // Only pods have named ports: an egress rule to any peer needs no more
    // than the pods that declare one of the names, and naming them keeps the
    // selection (and so the node maps) up to date as such pods come and go.
    let peers = match (&base.peers, direction) {
        (None, Direction::Egress) => Some(
            named
                .iter()
                .map(|(_, n)| {
                    PeerSel::Pods(LabelSelector {
                        match_labels: Default::default(),
                        match_expressions: vec![exists(&format!("{PORT_PREFIX}{n}"))],
                    })
                })
                .collect(),
        ),
        (peers, _) => peers.clone(),
    };
    let for_names = PreparedRule {
        peers,
        ports: Vec::new(),
        named_ports: named,
        ..base.clone()
    };
    if base.ports.is_empty() {
        vec![for_names]
    } else {
        vec![base, for_names]
    }
}

fn peer(key: &NetworkPolicyKey, peer: &NetworkPolicyPeer) -> PeerSel {
    match peer {
        NetworkPolicyPeer::Pods {
            namespace_selector: None,
            pod_selector,
        } => PeerSel::Pods(in_namespace(&key.namespace, pod_selector.as_ref())),
        NetworkPolicyPeer::Pods {
            namespace_selector: Some(namespaces),
            pod_selector,
        } => {
            let mut sel = prefixed(namespaces, NAMESPACE_PREFIX);
            if let Some(pods) = pod_selector {
                let pods = prefixed(pods, POD_PREFIX);
                sel.match_labels.extend(pods.match_labels);
                sel.match_expressions.extend(pods.match_expressions);
            }
            // Any namespace at all still means pods, not nodes or ranges.
            sel.match_expressions.push(exists(NAMESPACE_LABEL));
            PeerSel::Pods(sel)
        }
        NetworkPolicyPeer::IpBlock { cidr, except } => PeerSel::IpBlock {
            net: *cidr,
            except: except.clone(),
        },
    }
}

/// Pods of `namespace` that `pods` selects (all of them for `None`).
fn in_namespace(namespace: &str, pods: Option<&LabelSelector>) -> LabelSelector {
    let mut sel = pods.map_or_else(LabelSelector::default, |s| prefixed(s, POD_PREFIX));
    sel.match_labels
        .insert(NAMESPACE_LABEL.to_string(), namespace.to_string());
    sel
}

/// The selector with every key moved under `prefix`.
fn prefixed(sel: &LabelSelector, prefix: &str) -> LabelSelector {
    LabelSelector {
        match_labels: sel
            .match_labels
            .iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
            .collect(),
        match_expressions: sel
            .match_expressions
            .iter()
            .map(|r| LabelSelectorRequirement {
                key: format!("{prefix}{}", r.key),
                ..r.clone()
            })
            .collect(),
    }
}

fn exists(key: &str) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: SelectorOperator::Exists,
        values: Vec::new(),
    }
}
