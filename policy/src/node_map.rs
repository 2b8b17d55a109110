//! One node's rules, built from the policies' selections: all of them when a
//! node is (re)built, or one policy's when only that policy moved.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::identity::{FIRST_ALLOCATED, HOST};
use bulkhead_api::rule_map::{CompiledRule, LocalEndpoint};
use bulkhead_api::Labels;

use crate::netpol::named_ports;
use crate::selection::{PreparedPolicy, Selection};

/// A policy as a node build sees it.
pub(crate) struct PolicyView<'a> {
    pub(crate) name: &'a str,
    pub(crate) policy: &'a PreparedPolicy,
    pub(crate) selection: &'a Selection,
    pub(crate) rule_ids: &'a [u32],
}

/// What every rule of one node depends on besides its policy.
pub(crate) struct NodeContext<'a> {
    /// Identities of the node's endpoints, its own included.
    local: BTreeSet<u32>,
    /// The node's own label identity: where a rule names it, it names `host` too.
    host_alias: Option<u32>,
    /// Every identity's labels, to resolve NetworkPolicy named ports.
    identities: &'a BTreeMap<u32, Labels>,
}

impl<'a> NodeContext<'a> {
    pub(crate) fn new(
        host: &LocalEndpoint,
        endpoints: &[LocalEndpoint],
        identities: &'a BTreeMap<u32, Labels>,
    ) -> Self {
        let local = std::iter::once(host.identity)
            .chain(endpoints.iter().map(|e| e.identity))
            .collect();
        // The node's own addresses are `host` here. Reserved identities never
        // stand for this node (remoteNode means the others).
        let host_alias = (host.identity >= FIRST_ALLOCATED).then_some(host.identity);
        Self {
            local,
            host_alias,
            identities,
        }
    }

    /// The identities present on the node.
    pub(crate) fn local(&self) -> &BTreeSet<u32> {
        &self.local
    }

    /// Appends one policy's rules as they apply on this node (none when its
    /// scope holds no local identity), in the policy's own order.
    pub(crate) fn policy_rules(&self, view: &PolicyView<'_>, rules: &mut Vec<CompiledRule>) {
        let subjects: Vec<u32> = view
            .selection
            .scope
            .intersection(&self.local)
            .copied()
            .collect();
        if subjects.is_empty() {
            return;
        }
        for (r, rule) in view.policy.rules.iter().enumerate() {
            if rule.expired {
                continue;
            }
            let peers = view.selection.rule_peers.get(r).and_then(Option::as_ref);
            let any_peer = peers.is_none();
            let mut peers: Vec<u32> = peers.into_iter().flatten().copied().collect();
            if self
                .host_alias
                .is_some_and(|h| peers.binary_search(&h).is_ok())
                && !peers.contains(&HOST)
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
                rules.extend(named_ports::expand(
                    compiled,
                    &rule.named_ports,
                    self.identities,
                ));
            }
        }
    }
}

/// Orders a node's rules by id. The sort is stable, so rules that share an
/// id (named-port expansions of one rule) keep their policy's order whether
/// the node was built whole or patched.
pub(crate) fn sort_rules(rules: &mut [CompiledRule]) {
    rules.sort_by_key(|r| r.id);
}
