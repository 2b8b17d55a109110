//! What-if: observed traffic replayed under today's policy and under a draft.
//!
//! ```text
//!  today's Snapshot ──┬─► PolicySet (today) ──────────────┐
//!                     └─► Draft: replace/add, --delete ───┴► PolicySet (draft)
//!  records in [since, until) ─► HistoryCluster (labels as recorded) ─► compile each set
//!        each distinct edge ─► judge under both ─► verdict changed? ─► WhatIf report
//!                                                  (newlyDenied / newlyAllowed, grouped by
//!                                                   source group, destination group, port, protocol)
//! ```
//!
//! "Denied" is what the datapath would drop: each side in the mode its
//! policy set gives it. [`WhatIfOptions::as_enforced`] puts the draft's
//! SegmentationPolicies in full mode first, the question asked before a
//! promotion.

mod report;

use std::collections::{BTreeMap, HashMap};

use bulkhead_api::flow::FlowRecord;
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::SegmentationPolicySpec;
use bulkhead_policy::netpol::{NetworkPolicy, NetworkPolicyKey};
use bulkhead_policy::snapshot::Snapshot;
use bulkhead_policy::{CompileOptions, Verdict};
use jiff::Timestamp;

use crate::replay::{HistoryCluster, PolicySet};

pub use report::{Change, EndpointGroup, WhatIf};

/// The proposed change: objects that replace same-named ones or add new
/// ones, and names to delete.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Draft {
    /// SegmentationPolicies by name.
    pub policies: BTreeMap<String, SegmentationPolicySpec>,
    /// NetworkPolicies by `namespace/name`.
    pub network_policies: BTreeMap<NetworkPolicyKey, NetworkPolicy>,
    /// Names to remove: a SegmentationPolicy's name, or a NetworkPolicy's
    /// `namespace/name`.
    pub delete: Vec<String>,
}

/// Why a what-if cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhatIfError {
    /// `--delete` names nothing in today's policy.
    #[error("--delete {0}: no SegmentationPolicy of that name, and no NetworkPolicy of that namespace/name, in today's policy")]
    UnknownDelete(String),
    /// The window is empty or reversed.
    #[error("window: since {since} is not before until {until}")]
    EmptyWindow {
        /// Start.
        since: Timestamp,
        /// End.
        until: Timestamp,
    },
}

/// How to replay.
#[derive(Clone, Debug, PartialEq)]
pub struct WhatIfOptions {
    /// Records that start at or after this time.
    pub since: Timestamp,
    /// Records that start before this time.
    pub until: Timestamp,
    /// Judge the draft's SegmentationPolicies as if they set `full` mode.
    pub as_enforced: bool,
    /// Compiler settings (the default mode above all).
    pub compile: CompileOptions,
}

impl Draft {
    /// Today's policy with the draft applied.
    pub fn apply(&self, today: &PolicySet, as_enforced: bool) -> Result<PolicySet, WhatIfError> {
        let mut set = today.clone();
        for name in &self.delete {
            let by_netpol = name
                .split_once('/')
                .map(|(ns, n)| NetworkPolicyKey::new(ns, n));
            let removed = set.policies.remove(name).is_some()
                || by_netpol.is_some_and(|k| set.network_policies.remove(&k).is_some());
            if !removed {
                return Err(WhatIfError::UnknownDelete(name.clone()));
            }
        }
        for (name, spec) in &self.policies {
            let mut spec = spec.clone();
            if as_enforced {
                spec.enforcement = Some(EnforcementMode::Full);
            }
            set.policies.insert(name.clone(), spec);
        }
        for (key, np) in &self.network_policies {
            set.network_policies.insert(key.clone(), np.clone());
        }
        Ok(set)
    }
}

/// Replays the records of the window under today's policy (the policies of
/// `today`) and under `today` with `draft` applied.
pub fn what_if(
    today: &Snapshot,
    draft: &Draft,
    records: &[FlowRecord],
    options: &WhatIfOptions,
) -> Result<WhatIf, WhatIfError> {
    if options.since >= options.until {
        return Err(WhatIfError::EmptyWindow {
            since: options.since,
            until: options.until,
        });
    }
    let before_set = PolicySet::of(today);
    let after_set = draft.apply(&before_set, options.as_enforced)?;
    let in_window: Vec<&FlowRecord> = records
        .iter()
        .filter(|r| r.start >= options.since && r.start < options.until)
        .collect();
    // One flow reported by both of its nodes is judged once, and identical
    // edges of many windows are judged once.
    let mut edges: HashMap<EdgeKey<'_>, (&FlowRecord, u64, Timestamp)> = HashMap::new();
    for r in in_window.iter().copied().filter(|r| r.counts()) {
        let e = edges.entry(EdgeKey::of(r)).or_insert((r, 0, r.end));
        e.1 += r.flows;
        e.2 = e.2.max(r.end);
    }
    let cluster = HistoryCluster::new(today, edges.values().map(|e| e.0));
    let before = cluster.compile(&before_set, &options.compile);
    let after = cluster.compile(&after_set, &options.compile);
    let (was_set, will_set) = (cluster.judge(&before), cluster.judge(&after));
    let mut report = report::Builder::default();
    for (record, flows, last_seen) in edges.values() {
        let was = was_set.verdict(record);
        let will = will_set.verdict(record);
        match (was, will) {
            (Verdict::Allow, Verdict::Deny) => report.denied(record, *flows, *last_seen),
            (Verdict::Deny, Verdict::Allow) => report.allowed(record, *flows, *last_seen),
            _ => {}
        }
    }
    Ok(report.finish(in_window.len()))
}

/// What makes two records the same edge for judging.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EdgeKey<'a> {
    source: (&'a bulkhead_api::Labels, Option<&'a str>, std::net::IpAddr),
    destination: (&'a bulkhead_api::Labels, Option<&'a str>, std::net::IpAddr),
    kinds: (
        bulkhead_api::flow::EndpointKind,
        bulkhead_api::flow::EndpointKind,
    ),
    port: u16,
    protocol: Protocol,
    /// The named Service it went through: a `service` peer tells these apart.
    service: Option<(&'a str, &'a str)>,
}

impl<'a> EdgeKey<'a> {
    fn of(r: &'a FlowRecord) -> Self {
        Self {
            source: (
                &r.source.labels,
                r.source.namespace.as_deref(),
                r.source.address,
            ),
            destination: (
                &r.destination.labels,
                r.destination.namespace.as_deref(),
                r.destination.address,
            ),
            kinds: (r.source.kind, r.destination.kind),
            port: r.port,
            protocol: r.protocol,
            service: crate::recommend::service_name(r),
        }
    }
}

#[cfg(test)]
mod tests;
