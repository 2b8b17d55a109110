//! One node's rules, built from the policies' selections: all of them when a
//! node is (re)built, or one policy's when only that policy moved.
//!
//! ```text
//!  Selection (sets) ──► PolicyRules (flat, once per selection change) ─┐
//!                                                                      ├─► CompiledRule per node
//!  scope index ∩ node's identities ──► subjects (per node) ────────────┘
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::identity::{FIRST_ALLOCATED, HOST};
use bulkhead_api::policy::{Action, Protocol};
use bulkhead_api::rule_map::{CompiledRule, Direction, LocalEndpoint, PeerIds, PortRange};
use bulkhead_api::Labels;

use crate::netpol::named_ports;
use crate::selection::{PreparedPolicy, Selection};

/// A policy's rules as every node shares them: ids, names, ports and peer
/// lists resolved once per selection change, so a node build copies flat
/// lists instead of walking sets and looking names up again.
#[derive(Debug)]
pub(crate) struct PolicyRules {
    rules: Vec<RuleTemplate>,
}

/// One live (not expired) rule, missing only its node's subjects.
#[derive(Debug)]
struct RuleTemplate {
    id: u32,
    name: String,
    direction: Direction,
    action: Action,
    /// `None` matches any peer; else the sorted peer identities, shared by
    /// every node the rule lands on.
    peers: Option<PeerIds>,
    ports: Vec<PortRange>,
    named_ports: Vec<(Protocol, String)>,
}

impl PolicyRules {
    pub(crate) fn new(policy: &PreparedPolicy, selection: &Selection, rule_ids: &[u32]) -> Self {
        let rules = (policy.rules.iter().enumerate())
            .filter(|(_, rule)| !rule.expired)
            .map(|(r, rule)| RuleTemplate {
                id: rule_ids[r],
                name: rule.name.clone(),
                direction: rule.direction,
                action: rule.action,
                peers: (selection.rule_peers.get(r).and_then(Option::as_ref))
                    .map(|set| set.iter().copied().collect()),
                ports: rule.ports.clone(),
                named_ports: rule.named_ports.clone(),
            })
            .collect();
        Self { rules }
    }
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

    /// Appends one policy's rules as they apply on this node to `subjects`
    /// (its scope's identities present here, sorted), in the policy's order.
    pub(crate) fn policy_rules(
        &self,
        name: &str,
        policy: &PolicyRules,
        subjects: &[u32],
        rules: &mut Vec<CompiledRule>,
    ) {
        if subjects.is_empty() {
            return;
        }
        for rule in &policy.rules {
            let peers = match &rule.peers {
                None => PeerIds::default(),
                Some(p) => match self.host_alias.filter(|h| p.binary_search(h).is_ok()) {
                    // Naming this node's identity names `host` too, here only.
                    Some(_) => match p.binary_search(&HOST) {
                        Ok(_) => p.clone(),
                        Err(at) => {
                            let mut v = p.to_vec();
                            v.insert(at, HOST);
                            v.into()
                        }
                    },
                    None => p.clone(),
                },
            };
            let compiled = CompiledRule {
                id: rule.id,
                policy: name.to_string(),
                rule: rule.name.clone(),
                direction: rule.direction,
                action: rule.action,
                subjects: subjects.to_vec(),
                any_peer: rule.peers.is_none(),
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
