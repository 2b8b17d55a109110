//! One node's rule map, built from the policies' selections.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::identity::{FIRST_ALLOCATED, HOST};
use bulkhead_api::rule_map::{CompiledRule, FailsafePort, LocalEndpoint, NodeKind};
use bulkhead_api::{Labels, NodeRuleMapSpec};

use crate::netpol::named_ports;
use crate::selection::{PreparedPolicy, Selection};

/// A policy as a node build sees it.
pub(crate) struct PolicyView<'a> {
    pub(crate) name: &'a str,
    pub(crate) policy: &'a PreparedPolicy,
    pub(crate) selection: &'a Selection,
    pub(crate) rule_ids: &'a [u32],
}

/// Builds the map of one node from its endpoints and the policies whose scope
/// touches them (in any order; rules come out sorted by id). `identities`
/// (every identity's labels) resolves NetworkPolicy named ports.
pub(crate) fn build<'a>(
    kind: NodeKind,
    host: LocalEndpoint,
    endpoints: Vec<LocalEndpoint>,
    policies: impl Iterator<Item = PolicyView<'a>>,
    failsafe_ports: &[FailsafePort],
    identities: &BTreeMap<u32, Labels>,
) -> NodeRuleMapSpec {
    let local: BTreeSet<u32> = std::iter::once(host.identity)
        .chain(endpoints.iter().map(|e| e.identity))
        .collect();
    // The node's own addresses are `host` here; a rule naming the node's
    // label identity must name `host` too. Reserved identities never stand
    // for this node (remoteNode means the others).
    let host_alias = (host.identity >= FIRST_ALLOCATED).then_some(host.identity);
    let mut rules = Vec::new();
    for view in policies {
        let subjects: Vec<u32> = view.selection.scope.intersection(&local).copied().collect();
        if subjects.is_empty() {
            continue;
        }
        for (r, rule) in view.policy.rules.iter().enumerate() {
            let peers = view.selection.rule_peers.get(r).cloned().flatten();
            let any_peer = peers.is_none();
            let mut peers: Vec<u32> = peers.into_iter().flatten().collect();
            if host_alias.is_some_and(|h| peers.binary_search(&h).is_ok()) && !peers.contains(&HOST)
            {
                peers.push(HOST);
                peers.sort_unstable();
            }
            let compiled = CompiledRule {
                id: view.rule_ids[r],
                policy: view.name.to_string(),
                rule: rule.name.clone(),
                direction: rule.direction,
                action: rule.action,
                subjects: subjects.clone(),
                any_peer,
                peers,
                ports: rule.ports.clone(),
            };
            if rule.named_ports.is_empty() {
                rules.push(compiled);
            } else {
                rules.extend(named_ports::expand(compiled, &rule.named_ports, identities));
            }
        }
    }
    rules.sort_by_key(|r| r.id);
    NodeRuleMapSpec {
        node_kind: kind,
        host,
        endpoints,
        rules,
        failsafe_ports: failsafe_ports.to_vec(),
    }
}
