//! Rule hits: how often each rule decided a new connection (or denied a
//! packet), and when it last did, from the datapath up to the policy.
//!
//! ```text
//!  bh_rule_hits (per CPU, per node) ──agent, every hits interval, on change──►
//!      NodeRuleMap.status.ruleHits   [{id, policy, rule, hits, lastHit}]
//!          │ operator, every hits interval, on change: sum of hits, latest lastHit
//!          ▼
//!      SegmentationPolicy.status.ruleHits   [{rule, hits, lastHit, nodes}]
//!          └─► `kubectl bulkhead recertify`, bulkhead_rules_recertify (operator metric)
//! ```
//!
//! A hit is counted by the rule that decided: the lowest-numbered rule of
//! the winning action (overrideDeny > allow > deny). A rule that another
//! rule always overrules (shadowed) never gets hits. Only rules with hits
//! are listed; a rule absent from `ruleHits` has never been hit.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One rule's hits on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRuleHits {
    /// The compiled rule's id (`spec.rules[].id`).
    pub id: u32,
    /// The SegmentationPolicy the rule came from.
    pub policy: String,
    /// Which rule of that policy: its name, or `ingress[i]` / `egress[i]`.
    pub rule: String,
    /// New connections the rule decided, and packets it denied, on this
    /// node since its datapath was loaded.
    pub hits: u64,
    /// When it last decided something (RFC 3339, to the second).
    pub last_hit: String,
}

/// One rule's hits over every node, in its policy's status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleHits {
    /// The rule: its name, or `ingress[i]` / `egress[i]`.
    pub rule: String,
    /// The sum of the nodes' hits as they last reported them. A node whose
    /// datapath restarts from nothing (a reboot) starts again from 0.
    pub hits: u64,
    /// When any node last saw it decide (RFC 3339). Never moves back, even
    /// when the node that reported it is gone.
    pub last_hit: String,
    /// How many nodes reported hits of it.
    pub nodes: u32,
}
